//! Reading helpers every reader shares: opening a file that can be read whole (a regular
//! file, not a device or a folder), its bytes without a UTF-8 byte-order mark, and numbers
//! with errors that name the file and line.

use std::fs::File;
use std::path::Path;

use crate::{DataError, Result};

/// The UTF-8 byte-order mark that Windows tools put at the start of text files.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Opens `path` for reading, refusing anything but a regular file: a device such as
/// `/dev/zero` would be read forever, a folder cannot be read at all.
pub(crate) fn open_regular(path: &Path) -> Result<File> {
    let file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let meta = file.metadata().map_err(|e| DataError::io(path, e))?;
    if !meta.is_file() {
        let what = if meta.is_dir() {
            "a folder"
        } else {
            "not a regular file (a device, pipe or socket)"
        };
        return Err(DataError::Invalid(format!(
            "{}: is {what}; give the path of a data file",
            path.display()
        )));
    }
    Ok(file)
}

/// Latin-1 bytes to text: each byte is the code point of the same value.
pub(crate) fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| b as char).collect()
}

/// The bytes of regular file `path`, without a leading UTF-8 byte-order mark.
pub(crate) fn read_bytes(path: &Path) -> Result<Vec<u8>> {
    use std::io::Read;
    let mut file = open_regular(path)?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .map_err(|e| DataError::io(path, e))?;
    if bytes.starts_with(BOM) {
        bytes.drain(..BOM.len());
    }
    Ok(bytes)
}

/// `s` (trimmed) as a number, or an error naming the file, line and field.
pub(crate) fn parse_num<T: std::str::FromStr>(
    path: &Path,
    line: usize,
    what: &str,
    s: &str,
) -> Result<T> {
    s.trim().parse().map_err(|_| DataError::Parse {
        path: path.into(),
        line,
        message: format!("{what} {} is not a valid number", crate::shown(s)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_a_byte_order_mark_and_refuses_devices_and_folders() {
        let dir = std::env::temp_dir().join(format!("tt-prim-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("bom.txt");
        std::fs::write(&p, b"\xEF\xBB\xBF1\t2\n").unwrap();
        assert_eq!(read_bytes(&p).unwrap(), b"1\t2\n");
        let e = read_bytes(&dir).unwrap_err().to_string();
        assert!(e.contains("is a folder"), "{e}");
        #[cfg(unix)]
        {
            let e = read_bytes(Path::new("/dev/zero")).unwrap_err().to_string();
            assert!(
                e.contains("/dev/zero") && e.contains("not a regular file"),
                "{e}"
            );
        }
        let e = parse_num::<u32>(&p, 3, "user id", "\u{1b}[2J")
            .unwrap_err()
            .to_string();
        assert!(e.contains("bom.txt:3") && e.contains("\\u{1b}"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[cfg(feature = "parquet")]
thread_local! {
    /// Set while [`contain`] runs a decoder on this thread: its panics are errors, not news.
    static CONTAINED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

#[cfg(feature = "parquet")]
/// Runs `decode` (a third-party decoder that may panic on damaged input) and turns a panic
/// into an error naming `path`. The panic message is not printed: the error carries it.
pub(crate) fn contain<T>(path: &Path, decode: impl FnOnce() -> Result<T>) -> Result<T> {
    static QUIET_HOOK: std::sync::Once = std::sync::Once::new();
    QUIET_HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !CONTAINED.with(|c| c.get()) {
                previous(info);
            }
        }));
    });
    let was = CONTAINED.with(|c| c.replace(true));
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(decode));
    CONTAINED.with(|c| c.set(was));
    outcome.unwrap_or_else(|panic| {
        let why = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown failure".into());
        Err(DataError::Invalid(format!(
            "{}: the file is damaged: its decoder failed ({})",
            path.display(),
            crate::shown(&why)
        )))
    })
}
