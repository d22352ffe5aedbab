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

/// A file as the `csv` readers see it: CRLF line ends read as LF, so that the reader's
/// line numbers are the file's (`csv` counts a CRLF-ended record's line one short).
pub(crate) type TableFile = CrlfAsLf<File>;

/// Opens `path` (a regular file) for a `csv` reader.
pub(crate) fn open_table_file(path: &Path) -> Result<TableFile> {
    Ok(CrlfAsLf::new(open_regular(path)?))
}

/// A reader that drops each `\r` directly followed by `\n` (a lone `\r` is kept).
pub(crate) struct CrlfAsLf<R> {
    inner: R,
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl<R: std::io::Read> CrlfAsLf<R> {
    pub(crate) fn new(inner: R) -> Self {
        CrlfAsLf {
            inner,
            buf: vec![0; 64 * 1024],
            start: 0,
            end: 0,
        }
    }
}

impl<R: std::io::Read> std::io::Read for CrlfAsLf<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let mut w = 0;
        while w < out.len() {
            if self.start == self.end {
                if w > 0 {
                    break;
                }
                self.start = 0;
                self.end = self.inner.read(&mut self.buf)?;
                if self.end == 0 {
                    break;
                }
            }
            let b = self.buf[self.start];
            if b == b'\r' {
                if self.start + 1 == self.end {
                    // The next byte decides: keep the CR first and read on after it.
                    self.buf[0] = b'\r';
                    self.start = 0;
                    let n = self.inner.read(&mut self.buf[1..])?;
                    self.end = 1 + n;
                    if n == 0 {
                        // The end of the file: a CR that ends it stands for itself.
                        out[w] = b'\r';
                        w += 1;
                        self.start = 1;
                    }
                    continue;
                }
                if self.buf[self.start + 1] == b'\n' {
                    self.start += 1;
                    continue;
                }
            }
            out[w] = b;
            w += 1;
            self.start += 1;
        }
        Ok(w)
    }
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
    fn crlf_reads_as_lf_across_any_chunking() {
        use std::io::Read;
        let input = b"a,b\r\n1,2\r\n\r3\r\r\n4\r".to_vec();
        let want = b"a,b\n1,2\n\r3\r\n4\r".to_vec();
        // An inner reader that hands out `step` bytes at a time, and reads of `size`.
        struct Steps(Vec<u8>, usize);
        impl Read for Steps {
            fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
                let n = self.1.min(out.len()).min(self.0.len());
                out[..n].copy_from_slice(&self.0[..n]);
                self.0.drain(..n);
                Ok(n)
            }
        }
        for step in 1..6 {
            for size in 1..6 {
                let mut r = CrlfAsLf::new(Steps(input.clone(), step));
                let mut got = Vec::new();
                let mut chunk = vec![0; size];
                loop {
                    let n = r.read(&mut chunk).unwrap();
                    if n == 0 {
                        break;
                    }
                    got.extend_from_slice(&chunk[..n]);
                }
                assert_eq!(got, want, "step {step}, size {size}");
            }
        }
    }

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
