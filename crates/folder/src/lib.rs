//! Output folders that twotower owns: the `--out` rule and atomic replacement.
//!
//! Every command that writes a folder (a model, an index, a synthetic log) goes through
//! [`replace`]. It owns two promises:
//!
//! - **Nothing a user owns is lost.** A folder is only replaced when it can be proven to be
//!   one twotower wrote: it holds the manifest of its [`Kind`] (a JSON file whose `format`
//!   names the kind) and nothing but the files that kind writes (or that its manifest
//!   lists). Anything else — a thesis, a dataset, the input of the very command — is refused
//!   with an error naming the folder and what is in it. An empty folder may be filled.
//! - **Replacement is atomic.** The new content is written into a hidden sibling
//!   (`.NAME.tmp-PID-N`) and swapped with the old folder in one step (`renameat2` with
//!   `RENAME_EXCHANGE` on Linux; elsewhere two renames with a rollback), so readers see the
//!   whole old folder or the whole new one. Siblings left by killed processes are removed
//!   (or, for a folder a crash left missing, restored) on the next write.
//!
//! It knows nothing of what the folders hold: each owner declares its [`Kind`].
//!
//! ```
//! use twotower_folder::{replace, Kind};
//! const NOTES: Kind = Kind::new("a notes folder", "notes.json", "example-notes", &["a.txt"]);
//! let dir = std::env::temp_dir().join(format!("tt-folder-doc-{}", std::process::id()));
//! let write = |tmp: &std::path::Path| -> std::io::Result<()> {
//!     std::fs::write(tmp.join("a.txt"), "hello")?;
//!     std::fs::write(tmp.join("notes.json"), r#"{"format": "example-notes"}"#)
//! };
//! replace(&dir, &NOTES, write, |e| std::io::Error::other(e.to_string())).unwrap();
//! // Ours now: replacing it again is allowed.
//! replace(&dir, &NOTES, write, |e| std::io::Error::other(e.to_string())).unwrap();
//! // A user's file in it makes it foreign.
//! std::fs::write(dir.join("mine.txt"), "keep me").unwrap();
//! let err = replace(&dir, &NOTES, write, |e| std::io::Error::other(e.to_string())).unwrap_err();
//! assert!(err.to_string().contains("mine.txt"));
//! assert!(dir.join("mine.txt").exists());
//! # std::fs::remove_dir_all(&dir).unwrap();
//! ```

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A kind of folder twotower writes, as its owner declares it.
#[derive(Debug)]
pub struct Kind {
    /// What to call it in messages, with its article ("a model folder").
    pub what: &'static str,
    /// The manifest's file name ("model.json").
    pub manifest: &'static str,
    /// The value of the manifest's `format` field ("twotower-model").
    pub format: &'static str,
    /// Other paths (relative, `/`-separated) the kind may hold besides those its manifest
    /// lists under `files`.
    pub files: &'static [&'static str],
    /// Sub-folders that are folders of another kind (a model's `index/`).
    pub subfolders: &'static [(&'static str, &'static Kind)],
}

impl Kind {
    /// A kind without sub-folders.
    pub const fn new(
        what: &'static str,
        manifest: &'static str,
        format: &'static str,
        files: &'static [&'static str],
    ) -> Self {
        Kind {
            what,
            manifest,
            format,
            files,
            subfolders: &[],
        }
    }
}

/// Why a folder was not written.
#[derive(Debug, thiserror::Error)]
pub enum FolderError {
    #[error(
        "{}: refusing to replace it: it is not {} written by twotower ({reason}); \
         it holds {listing}. Choose another output folder, or move its contents away yourself",
        dir.display(), kind
    )]
    Foreign {
        dir: PathBuf,
        kind: &'static str,
        reason: String,
        listing: String,
    },
    #[error("{}: {error}", path.display())]
    Io {
        path: PathBuf,
        /// The I/O error, in the message (not a source, so that a chain of
        /// errors does not print it twice).
        error: std::io::Error,
    },
}

impl FolderError {
    fn io(path: &Path, source: std::io::Error) -> Self {
        FolderError::Io {
            path: path.to_path_buf(),
            error: source,
        }
    }
}

/// Name of the file every temporary folder holds until it is complete.
const PARTIAL: &str = ".twotower-partial";

/// Checks that `dir` may be replaced by a folder of `kind`: it does not exist, is an empty
/// folder, or is a folder of `kind` holding nothing else. Commands call this before long
/// work, so a refusal comes before the hour of training, not after.
pub fn check_replaceable(dir: &Path, kind: &Kind) -> Result<(), FolderError> {
    let meta = match std::fs::symlink_metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(FolderError::io(dir, e)),
    };
    if !meta.is_dir() {
        let what = if meta.file_type().is_symlink() {
            "a symbolic link"
        } else {
            "a file"
        };
        return Err(FolderError::Foreign {
            dir: dir.to_path_buf(),
            kind: kind.what,
            reason: format!("it is {what}, not a folder"),
            listing: format!("{} bytes", meta.len()),
        });
    }
    // A killed write of a sub-folder (`index build` into a model) leaves its temporary
    // sibling inside this folder: gone with its process, it is no stray of the user's.
    for (sub, sub_kind) in kind.subfolders {
        recover_stale(dir, sub, &dir.join(sub), sub_kind);
    }
    let entries = list(dir)?;
    if entries.is_empty() {
        return Ok(());
    }
    match foreign_entries(dir, kind, &entries)? {
        None => Ok(()),
        Some((reason, strays)) => Err(FolderError::Foreign {
            dir: dir.to_path_buf(),
            kind: kind.what,
            reason,
            listing: describe(&strays),
        }),
    }
}

/// Sorted names in `dir`, with a `/` after folders.
fn list(dir: &Path) -> Result<Vec<String>, FolderError> {
    let mut names = Vec::new();
    for e in std::fs::read_dir(dir).map_err(|e| FolderError::io(dir, e))? {
        let e = e.map_err(|e| FolderError::io(dir, e))?;
        let is_dir = e.file_type().map(|t| t.is_dir()).unwrap_or(false);
        let name = e.file_name().to_string_lossy().to_string();
        names.push(if is_dir { format!("{name}/") } else { name });
    }
    names.sort();
    Ok(names)
}

fn describe(names: &[String]) -> String {
    const SHOWN: usize = 6;
    let mut s = names
        .iter()
        .take(SHOWN)
        .map(|n| format!("{n:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        s.push_str(&format!(" and {} more", names.len() - SHOWN));
    }
    s
}

/// `None` when `dir` (non-empty, listed as `entries`) is a folder of `kind` and nothing
/// else; otherwise why not, and the entries that are not the kind's.
fn foreign_entries(
    dir: &Path,
    kind: &Kind,
    entries: &[String],
) -> Result<Option<(String, Vec<String>)>, FolderError> {
    let manifest = dir.join(kind.manifest);
    let text = match std::fs::read_to_string(&manifest) {
        Ok(t) => t,
        Err(_) => {
            return Ok(Some((
                format!("no readable {}", kind.manifest),
                entries.to_vec(),
            )));
        }
    };
    let json: serde_json::Value = match serde_json::from_str(&text) {
        Ok(j) => j,
        Err(_) => {
            return Ok(Some((
                format!("{} is not JSON", kind.manifest),
                entries.to_vec(),
            )))
        }
    };
    if json.get("format").and_then(|f| f.as_str()) != Some(kind.format) {
        return Ok(Some((
            format!("{} does not say format {:?}", kind.manifest, kind.format),
            entries.to_vec(),
        )));
    }
    let mut allowed: Vec<String> = kind.files.iter().map(|s| s.to_string()).collect();
    allowed.push(kind.manifest.to_string());
    if let Some(files) = json.get("files").and_then(|f| f.as_object()) {
        allowed.extend(files.keys().cloned());
    }
    let mut strays = Vec::new();
    stray_files(dir, "", kind, &allowed, &mut strays)?;
    Ok((!strays.is_empty()).then(|| ("it holds files twotower did not write".into(), strays)))
}

/// Collects into `strays` every path below `dir/prefix` that `kind` does not write.
fn stray_files(
    dir: &Path,
    prefix: &str,
    kind: &Kind,
    allowed: &[String],
    strays: &mut Vec<String>,
) -> Result<(), FolderError> {
    for name in list(&dir.join(prefix))? {
        let path = format!("{prefix}{name}");
        if let Some(sub) = path.strip_suffix('/') {
            if let Some((_, k)) = kind.subfolders.iter().find(|(n, _)| *n == sub) {
                if check_replaceable(&dir.join(sub), k).is_err() {
                    strays.push(path);
                }
            } else if allowed.iter().any(|a| a.starts_with(&path)) {
                stray_files(dir, &path, kind, allowed, strays)?;
            } else {
                strays.push(path);
            }
        } else if !allowed.contains(&path) {
            strays.push(path);
        }
    }
    Ok(())
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// Replaces folder `dir` by what `write` puts into a fresh temporary sibling, atomically,
/// after checking that `dir` may be replaced (see [`check_replaceable`]). `write` must put
/// the kind's manifest in the folder. On any error the old folder is left as it was and
/// the temporary one removed; `err` turns this crate's errors into the caller's type.
pub fn replace<E>(
    dir: &Path,
    kind: &Kind,
    write: impl FnOnce(&Path) -> Result<(), E>,
    err: impl Fn(FolderError) -> E,
) -> Result<(), E> {
    let (parent, name) = split(dir).map_err(&err)?;
    std::fs::create_dir_all(&parent).map_err(|e| err(FolderError::io(&parent, e)))?;
    recover_stale(&parent, &name, dir, kind);
    check_replaceable(dir, kind).map_err(&err)?;
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp = parent.join(format!(".{name}.tmp-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let made = std::fs::create_dir(&tmp)
        .and_then(|_| std::fs::write(tmp.join(PARTIAL), b""))
        .map_err(|e| err(FolderError::io(&tmp, e)));
    let written = made.and_then(|_| write(&tmp)).and_then(|_| {
        std::fs::remove_file(tmp.join(PARTIAL))
            .and_then(|_| sync_dir(&tmp))
            .map_err(|e| err(FolderError::io(&tmp, e)))
    });
    if let Err(e) = written {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    // The manifest is what later proves the folder ours: never install one without it.
    if let Err(e) = check_replaceable(&tmp, kind) {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(err(e));
    }
    let swapped = install(&tmp, dir, &parent, &name, n);
    let _ = std::fs::remove_dir_all(&tmp);
    swapped.map_err(|e| err(FolderError::io(dir, e)))?;
    let _ = sync_dir(&parent);
    Ok(())
}

/// The parent folder (`.` for a bare name) and the file name of `dir`.
fn split(dir: &Path) -> Result<(PathBuf, String), FolderError> {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .ok_or_else(|| {
            FolderError::io(
                dir,
                std::io::Error::other("not a folder name (it ends in `..` or is a root)"),
            )
        })?;
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok((parent, name))
}

/// Moves complete folder `tmp` to `dir`. Afterwards `tmp` holds the old folder (or
/// nothing), for the caller to remove.
fn install(tmp: &Path, dir: &Path, parent: &Path, name: &str, n: u64) -> std::io::Result<()> {
    if !dir.exists() {
        return std::fs::rename(tmp, dir);
    }
    match exchange(tmp, dir) {
        Ok(()) => return Ok(()),
        Err(e) if !exchange_unsupported(&e) => return Err(e),
        Err(_) => {}
    }
    // No atomic exchange here: two renames, with the old folder put back if the second fails.
    let old = parent.join(format!(".{name}.old-{}-{n}", std::process::id()));
    std::fs::rename(dir, &old)?;
    if let Err(e) = std::fs::rename(tmp, dir) {
        let _ = std::fs::rename(&old, dir);
        return Err(e);
    }
    std::fs::rename(&old, tmp)
}

#[cfg(target_os = "linux")]
fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let ca = CString::new(a.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    let cb = CString::new(b.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    // SAFETY: both are valid NUL-terminated paths; the call only renames.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            ca.as_ptr(),
            libc::AT_FDCWD,
            cb.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn exchange(_: &Path, _: &Path) -> std::io::Result<()> {
    Err(std::io::Error::from(std::io::ErrorKind::Unsupported))
}

fn exchange_unsupported(e: &std::io::Error) -> bool {
    #[cfg(unix)]
    if matches!(
        e.raw_os_error(),
        Some(libc::EINVAL | libc::ENOSYS | libc::ENOTSUP)
    ) {
        return true;
    }
    e.kind() == std::io::ErrorKind::Unsupported
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        std::fs::File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// Puts back folder `dir` of `kind` when a process killed between the two renames of a
/// replacement (on a file system without the atomic exchange) left it missing beside the
/// old copy, and removes what dead processes left half-written: what a reader calls when
/// `dir` is not there, so the old model is found again at its path. True when `dir`
/// exists afterwards.
pub fn recover(dir: &Path, kind: &Kind) -> bool {
    if let Ok((parent, name)) = split(dir) {
        recover_stale(&parent, &name, dir, kind);
    }
    dir.exists()
}

/// Removes the temporary siblings of `dir` that dead processes left (a half-written folder,
/// or an old one a crash kept), and puts back an old folder that a crash between two
/// renames left in place of a missing `dir`. Only folders that can be proven ours are
/// touched; anything else is left as it is.
fn recover_stale(parent: &Path, name: &str, dir: &Path, kind: &Kind) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    let tmp_prefix = format!(".{name}.tmp-");
    let old_prefix = format!(".{name}.old-");
    for e in entries.flatten() {
        let file = e.file_name().to_string_lossy().to_string();
        let (rest, is_old) = if let Some(r) = file.strip_prefix(&tmp_prefix) {
            (r, false)
        } else if let Some(r) = file.strip_prefix(&old_prefix) {
            (r, true)
        } else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if process_alive(pid) {
            continue;
        }
        let path = e.path();
        let partial = path.join(PARTIAL).is_file();
        let ours = partial || check_replaceable(&path, kind).is_ok();
        if !ours {
            continue;
        }
        if is_old && !partial && !dir.exists() && std::fs::rename(&path, dir).is_ok() {
            continue;
        }
        let _ = std::fs::remove_dir_all(&path);
    }
}

#[cfg(unix)]
fn process_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 only checks that the process exists.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[cfg(not(unix))]
fn process_alive(pid: u32) -> bool {
    // Without a cheap liveness check, only this process's own leftovers are known dead.
    pid != std::process::id()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUB: Kind = Kind::new("a sub folder", "sub.json", "t-sub", &[]);
    const TOP: Kind = Kind {
        what: "a test folder",
        manifest: "top.json",
        format: "t-top",
        files: &["a.txt", "inner/b.txt"],
        subfolders: &[("sub", &SUB)],
    };

    fn fresh(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("tt-folder-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn write_top(tmp: &Path, text: &str) -> Result<(), FolderError> {
        std::fs::create_dir_all(tmp.join("inner")).unwrap();
        std::fs::write(tmp.join("a.txt"), text).unwrap();
        std::fs::write(tmp.join("inner/b.txt"), text).unwrap();
        std::fs::write(tmp.join("top.json"), r#"{"format": "t-top"}"#).unwrap();
        Ok(())
    }

    fn names(dir: &Path) -> Vec<String> {
        list(dir).unwrap()
    }

    #[test]
    fn replaces_its_own_folders_and_nothing_else() {
        let root = fresh("own");
        let dir = root.join("out");
        replace(&dir, &TOP, |t| write_top(t, "one"), |e| e).unwrap();
        assert_eq!(std::fs::read_to_string(dir.join("a.txt")).unwrap(), "one");
        replace(&dir, &TOP, |t| write_top(t, "two"), |e| e).unwrap();
        assert_eq!(std::fs::read_to_string(dir.join("a.txt")).unwrap(), "two");
        // Nothing but the folder is left in the parent.
        assert_eq!(names(&root), vec!["out/"]);

        // A user's file anywhere inside makes the folder foreign, and it is kept.
        std::fs::write(dir.join("inner/thesis.txt"), "mine").unwrap();
        let e = replace(&dir, &TOP, |t| write_top(t, "three"), |e| e).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("inner/thesis.txt") && msg.contains("refusing"),
            "{msg}"
        );
        assert_eq!(std::fs::read_to_string(dir.join("a.txt")).unwrap(), "two");
        assert!(dir.join("inner/thesis.txt").exists());
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn refuses_foreign_folders_files_and_wrong_manifests() {
        let root = fresh("foreign");
        let data = root.join("data");
        std::fs::create_dir_all(data.join("sub")).unwrap();
        std::fs::write(data.join("u.data"), "1\t2\t3\t4\n").unwrap();
        std::fs::write(data.join("sub/photo.jpg"), "p").unwrap();
        let e = check_replaceable(&data, &TOP).unwrap_err().to_string();
        assert!(
            e.contains("no readable top.json") && e.contains("u.data") && e.contains("sub/"),
            "{e}"
        );
        std::fs::write(data.join("top.json"), r#"{"format": "other"}"#).unwrap();
        let e = check_replaceable(&data, &TOP).unwrap_err().to_string();
        assert!(e.contains("does not say format"), "{e}");
        let file = root.join("file");
        std::fs::write(&file, "x").unwrap();
        let e = check_replaceable(&file, &TOP).unwrap_err().to_string();
        assert!(e.contains("a file, not a folder"), "{e}");
        // An empty folder and a missing one may be written.
        std::fs::create_dir_all(root.join("empty")).unwrap();
        check_replaceable(&root.join("empty"), &TOP).unwrap();
        check_replaceable(&root.join("missing"), &TOP).unwrap();
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn subfolders_of_another_kind_are_checked_as_that_kind() {
        let root = fresh("sub");
        let dir = root.join("out");
        replace(&dir, &TOP, |t| write_top(t, "one"), |e| e).unwrap();
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(
            dir.join("sub/sub.json"),
            r#"{"format": "t-sub", "files": {"x": 1}}"#,
        )
        .unwrap();
        std::fs::write(dir.join("sub/x"), "x").unwrap();
        check_replaceable(&dir, &TOP).unwrap();
        std::fs::write(dir.join("sub/y"), "y").unwrap();
        let e = check_replaceable(&dir, &TOP).unwrap_err().to_string();
        assert!(e.contains("\"sub/\""), "{e}");
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_failed_write_keeps_the_old_folder_and_leaves_nothing_behind() {
        let root = fresh("fail");
        let dir = root.join("out");
        replace(&dir, &TOP, |t| write_top(t, "good"), |e| e).unwrap();
        let e = replace(
            &dir,
            &TOP,
            |t| {
                std::fs::write(t.join("a.txt"), "half").unwrap();
                Err(FolderError::io(t, std::io::Error::other("disk full")))
            },
            |e| e,
        )
        .unwrap_err();
        assert!(e.to_string().contains("disk full"));
        assert_eq!(std::fs::read_to_string(dir.join("a.txt")).unwrap(), "good");
        // A write that forgets the manifest is not installed either.
        let e = replace(
            &dir,
            &TOP,
            |t| std::fs::write(t.join("a.txt"), "x").map_err(|e| FolderError::io(t, e)),
            |e| e,
        )
        .unwrap_err();
        assert!(e.to_string().contains("no readable top.json"), "{e}");
        assert_eq!(std::fs::read_to_string(dir.join("a.txt")).unwrap(), "good");
        assert_eq!(names(&root), vec!["out/"]);
        std::fs::remove_dir_all(&root).unwrap();
    }

    fn dead_pid() -> u32 {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        pid
    }

    #[test]
    #[cfg(unix)]
    fn leftovers_of_dead_processes_are_cleaned_or_restored() {
        let root = fresh("stale");
        let dir = root.join("out");
        let dead = dead_pid();
        // A half-written folder of a killed run.
        let half = root.join(format!(".out.tmp-{dead}-0"));
        std::fs::create_dir_all(&half).unwrap();
        std::fs::write(half.join(PARTIAL), "").unwrap();
        std::fs::write(half.join("a.txt"), "half").unwrap();
        // Something of the user's that only looks like a leftover: kept.
        let lookalike = root.join(format!(".out.tmp-{dead}-1"));
        std::fs::create_dir_all(&lookalike).unwrap();
        std::fs::write(lookalike.join("notes.txt"), "mine").unwrap();
        // An old folder a crash between two renames left, with `out` missing: restored.
        let old = root.join(format!(".out.old-{dead}-2"));
        write_top(
            &{
                std::fs::create_dir_all(&old).unwrap();
                old.clone()
            },
            "old",
        )
        .unwrap();
        check_replaceable(&dir, &TOP).unwrap();
        recover_stale(&root, "out", &dir, &TOP);
        assert!(!half.exists());
        assert!(lookalike.join("notes.txt").exists());
        assert_eq!(std::fs::read_to_string(dir.join("a.txt")).unwrap(), "old");
        // The live process's own temporary folders are never touched.
        let live = root.join(format!(".out.tmp-{}-99", std::process::id()));
        std::fs::create_dir_all(&live).unwrap();
        std::fs::write(live.join(PARTIAL), "").unwrap();
        replace(&dir, &TOP, |t| write_top(t, "new"), |e| e).unwrap();
        assert!(live.exists());
        assert_eq!(std::fs::read_to_string(dir.join("a.txt")).unwrap(), "new");
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    #[cfg(unix)]
    fn a_killed_sub_folder_write_does_not_make_its_owner_foreign() {
        let root = fresh("stale-sub");
        let dir = root.join("out");
        replace(&dir, &TOP, |t| write_top(t, "one"), |e| e).unwrap();
        // `index build` into the folder, killed half-way: its temporary sibling of `sub`.
        let half = dir.join(format!(".sub.tmp-{}-0", dead_pid()));
        std::fs::create_dir_all(&half).unwrap();
        std::fs::write(half.join(PARTIAL), "").unwrap();
        check_replaceable(&dir, &TOP).unwrap();
        assert!(!half.exists());
        // A live one is a write in progress: the folder is not replaced under it.
        let live = dir.join(format!(".sub.tmp-{}-1", std::process::id()));
        std::fs::create_dir_all(&live).unwrap();
        std::fs::write(live.join(PARTIAL), "").unwrap();
        assert!(check_replaceable(&dir, &TOP).is_err());
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    #[cfg(unix)]
    fn a_reader_recovers_a_folder_left_between_two_renames() {
        let root = fresh("recover");
        let dir = root.join("out");
        let old = root.join(format!(".out.old-{}-0", dead_pid()));
        std::fs::create_dir_all(&old).unwrap();
        write_top(&old, "kept").unwrap();
        assert!(recover(&dir, &TOP));
        assert_eq!(std::fs::read_to_string(dir.join("a.txt")).unwrap(), "kept");
        assert!(!recover(&root.join("never"), &TOP));
        std::fs::remove_dir_all(&root).unwrap();
    }
}
