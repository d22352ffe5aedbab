//! The on-disk form of an index: one folder, versioned by `index.json`, holding flat
//! little-endian arrays, each listed in `index.json` with its size and CRC-32.
//!
//! Folders are written to a temporary sibling and swapped into place, so a reader never
//! sees half an index, and only an index folder is ever replaced. Loading maps the arrays into memory with every page read in at once
//! (so the first query costs what the hundredth does) after checking sizes and checksums:
//! a truncated or altered file is an error naming it, never a wrong answer.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::ops::Deref;
use std::path::Path;
use std::sync::Arc;

use bytemuck::Pod;
use memmap2::{Mmap, MmapOptions};
use serde::{Deserialize, Serialize};

use crate::IndexError;

/// Name of the description file of an index folder.
pub const MANIFEST: &str = "index.json";
/// Value of the `format` field of `index.json`.
pub const FORMAT: &str = "twotower-index";
/// Version written by this build; folders of a later version are refused.
pub const VERSION: u32 = 1;

/// A read-only array, either owned or mapped from a file.
#[derive(Debug, Clone)]
pub enum Buf<T: Pod> {
    Owned(Vec<T>),
    Mapped(Arc<Mmap>),
}

impl<T: Pod> Deref for Buf<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        match self {
            Buf::Owned(v) => v,
            // Sizes and alignment were checked when the map was made (see `map_file`).
            Buf::Mapped(m) => bytemuck::cast_slice(&m[..]),
        }
    }
}

impl<T: Pod> From<Vec<T>> for Buf<T> {
    fn from(v: Vec<T>) -> Self {
        Buf::Owned(v)
    }
}

/// Size and checksum of one array file, as listed in `index.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FileEntry {
    pub bytes: u64,
    pub crc32: u32,
}

/// Fields every `index.json` starts with.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Head {
    pub format: String,
    pub version: u32,
    pub kind: String,
    pub dim: usize,
    pub len: usize,
}

impl Head {
    /// The head of an index of `kind` written by this build.
    pub fn new(kind: &str, dim: usize, len: usize) -> Self {
        Head {
            format: FORMAT.into(),
            version: VERSION,
            kind: kind.into(),
            dim,
            len,
        }
    }
}

/// What an index folder is, for the `--out` rule (see [`twotower_folder`]): `index.json`
/// saying format `twotower-index`, and the arrays it lists.
pub const FOLDER: twotower_folder::Kind =
    twotower_folder::Kind::new("an index folder", MANIFEST, FORMAT, &[]);

/// Writes the named arrays into a new folder `dir` with the manifest built by
/// `manifest(files)`, atomically; an existing `dir` is replaced only when it is an index
/// folder (see [`twotower_folder::replace`]).
pub fn write_folder(
    dir: &Path,
    arrays: &[(&str, &[u8])],
    manifest: impl FnOnce(BTreeMap<String, FileEntry>) -> serde_json::Value,
) -> Result<(), IndexError> {
    twotower_folder::replace(
        dir,
        &FOLDER,
        |tmp| {
            let mut files = BTreeMap::new();
            for (file, bytes) in arrays {
                write_file(&tmp.join(file), bytes)?;
                files.insert(
                    file.to_string(),
                    FileEntry {
                        bytes: bytes.len() as u64,
                        crc32: crc32fast::hash(bytes),
                    },
                );
            }
            let json = serde_json::to_vec_pretty(&manifest(files)).expect("manifest serialises");
            write_file(&tmp.join(MANIFEST), &json)
        },
        IndexError::Folder,
    )
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), IndexError> {
    let mut f = File::create(path).map_err(|e| IndexError::io(path, e))?;
    f.write_all(bytes).map_err(|e| IndexError::io(path, e))?;
    f.sync_all().map_err(|e| IndexError::io(path, e))
}

/// Reads and checks `index.json` of `dir`: the format name and a version this build reads.
pub fn read_manifest<M: for<'de> Deserialize<'de>>(dir: &Path) -> Result<M, IndexError> {
    let path = dir.join(MANIFEST);
    let text = std::fs::read_to_string(&path).map_err(|e| IndexError::io(&path, e))?;
    #[derive(Deserialize)]
    struct Head {
        format: String,
        version: u32,
    }
    let head: Head = serde_json::from_str(&text)
        .map_err(|e| IndexError::format(&path, format!("not an index description: {e}")))?;
    if head.format != FORMAT {
        return Err(IndexError::format(
            &path,
            format!("format is {:?}, expected {FORMAT:?}", head.format),
        ));
    }
    if head.version > VERSION {
        return Err(IndexError::format(
            &path,
            format!(
                "index version {} was written by a newer twotower (this one reads up to {VERSION})",
                head.version
            ),
        ));
    }
    serde_json::from_str(&text).map_err(|e| IndexError::format(&path, e.to_string()))
}

/// Maps `dir/name` after checking it against its manifest entry (size, CRC-32) and that it
/// holds exactly `count` values of `T`.
pub fn map_file<T: Pod>(
    dir: &Path,
    name: &str,
    files: &BTreeMap<String, FileEntry>,
    count: usize,
) -> Result<Buf<T>, IndexError> {
    let path = dir.join(name);
    let entry = files
        .get(name)
        .ok_or_else(|| IndexError::format(&dir.join(MANIFEST), format!("{name} is not listed")))?;
    let want = count as u64 * std::mem::size_of::<T>() as u64;
    if entry.bytes != want {
        return Err(IndexError::format(
            &dir.join(MANIFEST),
            format!(
                "{name} is listed with {} bytes, its shape needs {want}",
                entry.bytes
            ),
        ));
    }
    let file = File::open(&path).map_err(|e| IndexError::io(&path, e))?;
    let len = file.metadata().map_err(|e| IndexError::io(&path, e))?.len();
    if len != want {
        return Err(IndexError::format(
            &path,
            format!("file holds {len} bytes, expected {want} (truncated or replaced?)"),
        ));
    }
    if len == 0 {
        return Ok(Buf::Owned(Vec::new()));
    }
    // SAFETY: the map is read-only; the file is the index's own and not modified while in
    // use (a rewrite goes to a new folder that is renamed into place).
    let map = unsafe { MmapOptions::new().populate().map(&file) }
        .map_err(|e| IndexError::io(&path, e))?;
    if crc32fast::hash(&map) != entry.crc32 {
        return Err(IndexError::format(
            &path,
            "checksum mismatch: the file was altered or damaged since it was written",
        ));
    }
    bytemuck::try_cast_slice::<u8, T>(&map)
        .map_err(|e| IndexError::format(&path, format!("cannot view as an array: {e:?}")))?;
    Ok(Buf::Mapped(Arc::new(map)))
}

/// The bytes of an array, for writing.
pub fn bytes_of<T: Pod>(v: &[T]) -> &[u8] {
    bytemuck::cast_slice(v)
}
