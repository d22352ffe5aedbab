//! Downloading MovieLens from GroupLens into the cache (the `download` feature).
//!
//! Every archive is checked before anything of it is used: MovieLens 100K by the SHA-256
//! of its `u.data` and `u.item`; 1M, latest-small, 20M and 25M by the size and SHA-256 of
//! the archive (as TensorFlow Datasets records them); 32M, for which no SHA-256 is on
//! record here, by the MD5 list `checksums.txt` that GroupLens ships inside it. Members are
//! hashed straight out of the zip, so the checks run before anything is unpacked; sizes are
//! capped (the download at [`Remote::max_archive_bytes`], unpacking at
//! [`Remote::max_unpacked_bytes`]); redirects go to http(s) addresses only. Installation is
//! all-or-nothing: the archive is unpacked into a temporary folder that is renamed into
//! place only after every check passes.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::fetch::{sha256_file, Check, Remote, DATA_DIR_ENV, GROUPLENS, MIRROR_ENV, REMOTES};
use crate::{DataError, Result};

fn help_offline(url: &str, folder: &str, err: impl std::fmt::Display) -> DataError {
    DataError::Download(format!(
        "could not download {url}: {err}\n\
         No internet here? Point twotower at a local copy instead: pass --data-dir DIR or set \
         {DATA_DIR_ENV}=DIR, where DIR holds the unpacked {folder}/ folder; or set \
         {MIRROR_ENV} to a mirror of {GROUPLENS}."
    ))
}

/// Downloads MovieLens 100K from `url` into the cache (see [`fetch`]).
pub fn fetch_movielens_100k(
    url: &str,
    cache: &Path,
    progress: &mut dyn FnMut(u64, Option<u64>),
) -> Result<PathBuf> {
    fetch(&REMOTES[0], url, cache, progress)
}

/// Downloads `url` (a copy of the dataset's archive), verifies it and installs it as
/// `cache/<folder>`.
///
/// `progress(done, total)` is called as bytes arrive. Fails within seconds when there is no
/// network, with a message that says how to use a local copy.
pub fn fetch(
    remote: &Remote,
    url: &str,
    cache: &Path,
    progress: &mut dyn FnMut(u64, Option<u64>),
) -> Result<PathBuf> {
    std::fs::create_dir_all(cache).map_err(|e| DataError::io(cache, e))?;
    let offline = |e: &dyn std::fmt::Display| help_offline(url, remote.folder, e);
    let response = get_following_redirects(url).map_err(|e| offline(&e))?;
    let total = response
        .header("Content-Length")
        .and_then(|s| s.parse::<u64>().ok());
    let cap = remote.max_archive_bytes();
    let too_big = |n: u64| {
        DataError::Download(format!(
            "{url}: the archive is {n} bytes or more, over the {cap} bytes expected for {}; \
             stopped (is the address right?)",
            remote.name
        ))
    };
    if let Some(n) = total.filter(|&n| n > cap) {
        return Err(too_big(n));
    }
    let zip_path = cache.join(format!(
        ".{}.{}.zip.part",
        remote.folder,
        std::process::id()
    ));
    let result = (|| {
        let mut out = std::fs::File::create(&zip_path).map_err(|e| DataError::io(&zip_path, e))?;
        let mut reader = response.into_reader();
        let mut buf = vec![0u8; 1 << 16];
        let mut done = 0u64;
        loop {
            let n = reader.read(&mut buf).map_err(|e| offline(&e))?;
            if n == 0 {
                break;
            }
            done += n as u64;
            if done > cap {
                return Err(too_big(done));
            }
            out.write_all(&buf[..n])
                .map_err(|e| DataError::io(&zip_path, e))?;
            progress(done, total);
        }
        out.sync_all().map_err(|e| DataError::io(&zip_path, e))?;
        install(remote, &zip_path, cache)
    })();
    let _ = std::fs::remove_file(&zip_path);
    result
}

/// Redirects followed at most.
const MAX_REDIRECTS: usize = 5;

/// GETs `url`, following up to [`MAX_REDIRECTS`] redirects by hand so that only `http` and
/// `https` addresses are ever requested (a redirect to `file://` or anything else is an
/// error, not a panic inside the client).
fn get_following_redirects(url: &str) -> std::result::Result<ureq::Response, String> {
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(5))
        .timeout_read(Duration::from_secs(30))
        .redirects(0)
        .build();
    let mut at = url.to_string();
    for _ in 0..=MAX_REDIRECTS {
        let scheme_ok = at.starts_with("http://") || at.starts_with("https://");
        if !scheme_ok {
            return Err(format!(
                "{} is not an http or https address",
                crate::shown(&at)
            ));
        }
        let response = agent.get(&at).call().map_err(|e| e.to_string())?;
        if !(300..400).contains(&response.status()) {
            return Ok(response);
        }
        let location = response
            .header("Location")
            .ok_or_else(|| format!("redirect {} without a Location", response.status()))?;
        at = if location.starts_with('/') {
            // An absolute path on the same host.
            let after_scheme = at.find("://").map_or(0, |i| i + 3);
            let host_end = at[after_scheme..]
                .find('/')
                .map_or(at.len(), |i| after_scheme + i);
            format!("{}{location}", &at[..host_end])
        } else {
            location.to_string()
        };
    }
    Err(format!("more than {MAX_REDIRECTS} redirects"))
}

/// Unpacks an ml-100k zip into `cache/ml-100k` (see [`install`]).
pub fn install_zip(zip_path: &Path, cache: &Path) -> Result<PathBuf> {
    install(&REMOTES[0], zip_path, cache)
}

/// Verifies a downloaded archive and unpacks it into `cache/<folder>`. Every check runs on
/// the archive before anything is unpacked (the archive's own digest, or the digests of its
/// members, streamed out of it); unpacking is capped at [`Remote::max_unpacked_bytes`];
/// on any failure nothing is left behind.
pub fn install(remote: &Remote, zip_path: &Path, cache: &Path) -> Result<PathBuf> {
    let size = std::fs::metadata(zip_path)
        .map_err(|e| DataError::io(zip_path, e))?
        .len();
    if size > remote.max_archive_bytes() {
        return Err(DataError::Invalid(format!(
            "{}: {size} bytes, over the {} bytes expected for {}",
            zip_path.display(),
            remote.max_archive_bytes(),
            remote.name
        )));
    }
    if let Check::Archive { bytes, sha256 } = remote.check {
        let actual = sha256_file(zip_path)?;
        if size != bytes || actual != sha256 {
            return Err(DataError::Checksum {
                path: zip_path.into(),
                expected: format!("SHA-256 {sha256} ({bytes} bytes)"),
                actual: format!("SHA-256 {actual} ({size} bytes)"),
            });
        }
    }
    let mut archive = Archive::open(zip_path, remote)?;
    match remote.check {
        Check::Members(members) => {
            for &(name, expected) in members {
                let actual = archive.digest::<Sha256>(name)?;
                if actual != expected {
                    return Err(DataError::Checksum {
                        path: archive.member_path(name),
                        expected: format!("SHA-256 {expected}"),
                        actual: format!("SHA-256 {actual}"),
                    });
                }
            }
        }
        Check::ShippedMd5 => {
            let list_path = archive.member_path("checksums.txt");
            let text = String::from_utf8_lossy(&archive.read("checksums.txt")?).to_string();
            let listed = parse_md5_list(&list_path, &text)?;
            for (name, expected) in listed {
                let actual = archive.digest::<md5::Md5>(&name)?;
                if !actual.eq_ignore_ascii_case(&expected) {
                    return Err(DataError::Checksum {
                        path: archive.member_path(&name),
                        expected: format!("MD5 {expected}"),
                        actual: format!("MD5 {actual}"),
                    });
                }
            }
        }
        Check::Archive { .. } => {}
    }
    let tmp = cache.join(format!(".{}.tmp-{}", remote.folder, std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let result = archive.unpack(&tmp).and_then(|()| {
        let inner = tmp.join(remote.folder);
        let unpacked = if inner.is_dir() { inner } else { tmp.clone() };
        let dest = cache.join(remote.folder);
        let _ = std::fs::remove_dir_all(&dest);
        std::fs::rename(&unpacked, &dest).map_err(|e| DataError::io(&dest, e))?;
        Ok(dest)
    });
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

/// `(file name, hex digest)` pairs of a `checksums.txt` (`MD5 (name) = hex` or `hex  name`
/// lines); the list must name at least one file.
fn parse_md5_list(list: &Path, text: &str) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let parsed = if let Some(rest) = line.strip_prefix("MD5 (") {
            rest.split_once(") = ")
        } else {
            line.split_once(char::is_whitespace)
                .map(|(h, n)| (n.trim().trim_start_matches('*'), h))
        };
        let Some((name, expected)) = parsed else {
            return Err(DataError::Parse {
                path: list.into(),
                line: i + 1,
                message: format!("not a checksum line: {}", crate::shown(line)),
            });
        };
        out.push((name.trim().to_string(), expected.trim().to_string()));
    }
    if out.is_empty() {
        return Err(DataError::Empty { path: list.into() });
    }
    Ok(out)
}

/// A downloaded zip archive, read with every size bounded.
struct Archive {
    zip: zip::ZipArchive<std::fs::File>,
    path: PathBuf,
    folder: &'static str,
    /// Bytes that may still be decompressed, over all reads and the unpacking.
    budget: u64,
}

impl Archive {
    fn open(path: &Path, remote: &Remote) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
        let zip = zip::ZipArchive::new(file).map_err(|e| Self::bad_in(path, e))?;
        Ok(Archive {
            zip,
            path: path.into(),
            folder: remote.folder,
            budget: remote.max_unpacked_bytes(),
        })
    }

    fn bad_in(path: &Path, e: impl std::fmt::Display) -> DataError {
        DataError::Invalid(format!("{}: {e}", path.display()))
    }

    /// How a member is named in messages: `archive.zip/name`.
    fn member_path(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// The index of member `name`, inside the dataset's folder or at the top.
    fn find(&self, name: &str) -> Result<usize> {
        let nested = format!("{}/{name}", self.folder);
        self.zip
            .index_for_name(&nested)
            .or_else(|| self.zip.index_for_name(name))
            .ok_or_else(|| {
                DataError::Invalid(format!(
                    "{}: the archive holds no {nested} (is it the right dataset?)",
                    self.path.display()
                ))
            })
    }

    /// Streams member `i` into `sink`, charging the decompressed bytes to the budget.
    fn copy(&mut self, i: usize, sink: &mut dyn Write) -> Result<()> {
        let path = self.path.clone();
        let mut entry = self.zip.by_index(i).map_err(|e| Self::bad_in(&path, e))?;
        let name = entry.name().to_string();
        let over = |budget: u64| {
            DataError::Invalid(format!(
                "{}: unpacking {} would pass the limit of {budget} more bytes for this \
                 dataset (a damaged or malicious archive)",
                path.display(),
                crate::shown(&name)
            ))
        };
        if entry.size() > self.budget {
            return Err(over(self.budget));
        }
        let n = std::io::copy(&mut (&mut entry).take(self.budget + 1), sink)
            .map_err(|e| Self::bad_in(&path, e))?;
        if n > self.budget {
            return Err(over(self.budget));
        }
        self.budget -= n;
        Ok(())
    }

    fn read(&mut self, name: &str) -> Result<Vec<u8>> {
        let i = self.find(name)?;
        let mut out = Vec::new();
        self.copy(i, &mut out)?;
        Ok(out)
    }

    fn digest<D: Digest>(&mut self, name: &str) -> Result<String> {
        /// Feeds written bytes to a digest.
        struct Hashing<D>(D);
        impl<D: Digest> Write for Hashing<D> {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.update(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let i = self.find(name)?;
        let mut hasher = Hashing(D::new());
        self.copy(i, &mut hasher)?;
        Ok(hex::encode(hasher.0.finalize()))
    }

    fn unpack(&mut self, into: &Path) -> Result<()> {
        for i in 0..self.zip.len() {
            let (rel, is_dir) = {
                let path = self.path.clone();
                let entry = self.zip.by_index(i).map_err(|e| Self::bad_in(&path, e))?;
                let Some(rel) = entry.enclosed_name() else {
                    return Err(DataError::Invalid(format!(
                        "{}: unsafe path {} in archive",
                        self.path.display(),
                        crate::shown(entry.name())
                    )));
                };
                (rel, entry.is_dir())
            };
            let out = into.join(rel);
            if is_dir {
                std::fs::create_dir_all(&out).map_err(|e| DataError::io(&out, e))?;
                continue;
            }
            if let Some(parent) = out.parent() {
                std::fs::create_dir_all(parent).map_err(|e| DataError::io(parent, e))?;
            }
            let mut f = std::fs::File::create(&out).map_err(|e| DataError::io(&out, e))?;
            self.copy(i, &mut f)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("tt-download-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// Answers each of `answers.len()` connections on a loopback port with the next raw
    /// HTTP answer; returns the base address.
    fn canned_server(answers: Vec<Vec<u8>>) -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for answer in answers {
                let Ok((mut s, _)) = listener.accept() else {
                    return;
                };
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf);
                let _ = s.write_all(&answer);
            }
        });
        format!("http://{addr}")
    }

    /// A zip at `path` holding `files` (name, content).
    fn zip_of(path: &Path, files: &[(&str, &[u8])]) {
        let mut w = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
        let opts = zip::write::SimpleFileOptions::default();
        for (name, content) in files {
            w.start_file(*name, opts).unwrap();
            w.write_all(content).unwrap();
        }
        w.finish().unwrap();
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn unreachable_server_fails_fast_with_help() {
        let cache = scratch("offline");
        // Port 9 on loopback: nothing listens, the connection is refused at once (the
        // connect timeout bounds the wait where a network drops packets instead).
        let err = fetch_movielens_100k("http://127.0.0.1:9/ml-100k.zip", &cache, &mut |_, _| {})
            .unwrap_err()
            .to_string();
        assert!(err.contains("http://127.0.0.1:9/ml-100k.zip"), "{err}");
        assert!(
            err.contains("--data-dir") && err.contains(DATA_DIR_ENV),
            "{err}"
        );
        assert!(!cache.join("ml-100k").exists());
    }

    #[test]
    fn redirects_go_to_http_addresses_only() {
        let cache = scratch("redirect");
        let base = canned_server(vec![
            b"HTTP/1.1 302 Found\r\nLocation: /elsewhere.zip\r\nContent-Length: 0\r\n\r\n".to_vec(),
            b"HTTP/1.1 302 Found\r\nLocation: file:///etc/passwd\r\nContent-Length: 0\r\n\r\n"
                .to_vec(),
        ]);
        let err = fetch_movielens_100k(&format!("{base}/ml-100k.zip"), &cache, &mut |_, _| {})
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("\"file:///etc/passwd\" is not an http or https address"),
            "{err}"
        );
        assert!(entries(&cache).is_empty(), "{:?}", entries(&cache));
    }

    #[test]
    fn downloads_larger_than_expected_are_stopped() {
        let cache = scratch("huge");
        let cap = REMOTES[0].max_archive_bytes();
        // Declared too large: refused before the body is read.
        let declared = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", cap + 1);
        // Undeclared and too large: stopped once past the cap.
        let mut streamed = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".to_vec();
        streamed.resize(streamed.len() + cap as usize + (1 << 20), b'z');
        let base = canned_server(vec![declared.into_bytes(), streamed]);
        for _ in 0..2 {
            let err = fetch_movielens_100k(&format!("{base}/ml-100k.zip"), &cache, &mut |_, _| {})
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(&format!("over the {cap} bytes expected")),
                "{err}"
            );
            assert!(entries(&cache).is_empty(), "{:?}", entries(&cache));
        }
    }

    #[test]
    fn unpacking_stops_at_the_size_budget() {
        let cache = scratch("bomb");
        let zip_path = cache.join("bomb.zip");
        let zeros = vec![0u8; 4 << 20];
        zip_of(
            &zip_path,
            &[("ml-100k/u.data", &zeros), ("ml-100k/u.item", b"x")],
        );
        // 4 MB of zeros deflate to a few KB: a small bomb against a 1 MB budget.
        assert!(std::fs::metadata(&zip_path).unwrap().len() < 64 << 10);
        let mut a = Archive::open(&zip_path, &REMOTES[0]).unwrap();
        a.budget = 1 << 20;
        let err = a.digest::<Sha256>("u.data").unwrap_err().to_string();
        assert!(err.contains("would pass the limit"), "{err}");
        let mut a = Archive::open(&zip_path, &REMOTES[0]).unwrap();
        a.budget = 1 << 20;
        let out = cache.join("out");
        let err = a.unpack(&out).unwrap_err().to_string();
        assert!(
            err.contains("u.data") && err.contains("would pass the limit"),
            "{err}"
        );
        // Within the budget it unpacks whole.
        let mut a = Archive::open(&zip_path, &REMOTES[0]).unwrap();
        a.unpack(&cache.join("ok")).unwrap();
        assert_eq!(
            std::fs::read(cache.join("ok/ml-100k/u.data"))
                .unwrap()
                .len(),
            4 << 20
        );
    }

    #[test]
    fn checksum_mismatch_keeps_nothing() {
        let cache = scratch("badsum");
        let zip_path = cache.join("x.zip");
        let mut w = zip::ZipWriter::new(std::fs::File::create(&zip_path).unwrap());
        let opts = zip::write::SimpleFileOptions::default();
        w.start_file("ml-100k/u.data", opts).unwrap();
        w.write_all(b"1\t1\t1\t1\n").unwrap();
        w.start_file("ml-100k/u.item", opts).unwrap();
        w.write_all(b"tampered").unwrap();
        w.finish().unwrap();
        let err = install_zip(&zip_path, &cache).unwrap_err().to_string();
        assert!(
            err.contains("checksum mismatch") && err.contains("u.data"),
            "{err}"
        );
        let left: Vec<_> = std::fs::read_dir(&cache)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, vec![std::ffi::OsString::from("x.zip")]);
    }

    #[test]
    fn archives_with_a_recorded_digest_are_checked_before_unpacking() {
        let cache = scratch("archive");
        let zip_path = cache.join("ml-1m.zip");
        zip_of(&zip_path, &[("ml-1m/ratings.dat", b"1::1::5::1\n")]);
        let err = install(Remote::named("movielens-1m").unwrap(), &zip_path, &cache)
            .unwrap_err()
            .to_string();
        assert!(err.contains("checksum mismatch"), "{err}");
        assert!(
            err.contains("a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20"),
            "{err}"
        );
        assert!(err.contains("5917549 bytes"), "{err}");
        assert_eq!(entries(&cache), vec!["ml-1m.zip"]);
    }

    #[test]
    fn movielens_32m_is_checked_against_its_shipped_md5_list() {
        let remote = Remote::named("movielens-32m").unwrap();
        // MD5("abc") and MD5("") are the RFC 1321 test vectors.
        let good = b"MD5 (ratings.csv) = 900150983cd24fb0d6963f7d28e17f72\n\
                     d41d8cd98f00b204e9800998ecf8427e  movies.csv\n";
        // A 32M-shaped archive whose ratings.csv holds `ratings`, in a fresh cache.
        let archive = |name: &str, ratings: &'static [u8]| {
            let cache = scratch(name);
            let zip_path = cache.join("a.zip");
            zip_of(
                &zip_path,
                &[
                    ("ml-32m/ratings.csv", ratings),
                    ("ml-32m/movies.csv", b""),
                    ("ml-32m/checksums.txt", good),
                ],
            );
            (cache, zip_path)
        };
        let (cache, zip_path) = archive("md5ok", b"abc");
        let dir = install(remote, &zip_path, &cache).unwrap();
        assert_eq!(dir, cache.join("ml-32m"));
        assert_eq!(std::fs::read(dir.join("ratings.csv")).unwrap(), b"abc");
        // One changed byte, and nothing is installed.
        let (cache, zip_path) = archive("md5bad", b"abd");
        let err = install(remote, &zip_path, &cache).unwrap_err().to_string();
        assert!(
            err.contains("ratings.csv") && err.contains("MD5 900150983cd24fb0d6963f7d28e17f72"),
            "{err}"
        );
        assert_eq!(entries(&cache), vec!["a.zip"]);
        // An archive without the list is refused too.
        let zip_path = cache.join("b.zip");
        zip_of(&zip_path, &[("ml-32m/ratings.csv", b"abc")]);
        let err = install(remote, &zip_path, &cache).unwrap_err().to_string();
        assert!(err.contains("checksums.txt"), "{err}");
    }
}
