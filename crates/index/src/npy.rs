//! Reading and writing 2-D arrays in numpy's `.npy` format (versions 1–3, little-endian,
//! C order): f32 vectors, and integer id tables (int32 or int64 in, int32 out).
//!
//! Every malformed file is an error naming the file and what is wrong with it: not an
//! `.npy` file, another dtype, Fortran order, a shape that is not 2-D, or data shorter or
//! longer than the shape says.

use std::io::Write;
use std::path::Path;

use crate::IndexError;

const MAGIC: &[u8] = b"\x93NUMPY";

/// A 2-D array read from a `.npy` file.
#[derive(Debug, Clone, PartialEq)]
pub struct Array2<T> {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<T>,
}

impl<T> Array2<T> {
    /// Row `r`.
    pub fn row(&self, r: usize) -> &[T] {
        &self.data[r * self.cols..(r + 1) * self.cols]
    }
}

struct Header {
    descr: String,
    rows: usize,
    cols: usize,
    data_offset: usize,
}

fn bad(path: &Path, problem: impl Into<String>) -> IndexError {
    IndexError::Npy {
        path: path.to_path_buf(),
        problem: problem.into(),
    }
}

fn parse_header(path: &Path, bytes: &[u8]) -> Result<Header, IndexError> {
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err(bad(path, "not a .npy file (no \\x93NUMPY magic)"));
    }
    let major = bytes[6];
    let (len, start) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        _ => return Err(bad(path, format!("unsupported .npy version {major}"))),
    };
    let end = start + len;
    if bytes.len() < end {
        return Err(bad(path, "truncated header"));
    }
    let text =
        std::str::from_utf8(&bytes[start..end]).map_err(|_| bad(path, "header is not text"))?;
    let field = |key: &str| -> Result<&str, IndexError> {
        let at = text
            .find(&format!("'{key}'"))
            .ok_or_else(|| bad(path, format!("header has no '{key}'")))?;
        let rest = &text[at + key.len() + 2..];
        let colon = rest
            .find(':')
            .ok_or_else(|| bad(path, format!("header field '{key}' has no value")))?;
        Ok(rest[colon + 1..].trim_start())
    };
    let descr = field("descr")?;
    let descr = descr
        .strip_prefix('\'')
        .and_then(|d| d.split('\'').next())
        .ok_or_else(|| bad(path, "header 'descr' is not a string"))?
        .to_string();
    let order = field("fortran_order")?;
    if order.starts_with("True") {
        return Err(bad(
            path,
            "array is in Fortran order; save it C-ordered (np.ascontiguousarray)",
        ));
    }
    if !order.starts_with("False") {
        return Err(bad(
            path,
            "header 'fortran_order' is neither True nor False",
        ));
    }
    let shape = field("shape")?;
    // A header may be megabytes of text: quote at most the start of the shape.
    let quoted = |upto: usize| format!("{:?}", shape[..upto].chars().take(60).collect::<String>());
    let close = shape
        .find(')')
        .filter(|_| shape.starts_with('('))
        .ok_or_else(|| bad(path, "header 'shape' is not a tuple"))?;
    let dims: Vec<usize> = shape[1..close]
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.trim_end_matches('L').parse::<usize>())
        .collect::<Result<_, _>>()
        .map_err(|_| bad(path, format!("bad shape {}", quoted(close + 1))))?;
    let [rows, cols] = dims[..] else {
        return Err(bad(
            path,
            format!("shape {} is not 2-D (rows × dimension)", quoted(close + 1)),
        ));
    };
    Ok(Header {
        descr,
        rows,
        cols,
        data_offset: end,
    })
}

fn read_typed(path: &Path, accept: &[&str]) -> Result<(Header, Vec<u8>), IndexError> {
    let meta = std::fs::metadata(path).map_err(|e| IndexError::io(path, e))?;
    if !meta.is_file() {
        return Err(bad(path, "not a regular file"));
    }
    let bytes = std::fs::read(path).map_err(|e| IndexError::io(path, e))?;
    let h = parse_header(path, &bytes)?;
    if !accept.contains(&h.descr.as_str()) {
        return Err(bad(
            path,
            format!(
                "dtype {:?}, expected {} (convert with .astype)",
                h.descr.chars().take(20).collect::<String>(),
                accept.join(" or ")
            ),
        ));
    }
    let item = h.descr[2..].parse::<usize>().unwrap_or(4);
    let want = h
        .rows
        .checked_mul(h.cols)
        .and_then(|n| n.checked_mul(item))
        .ok_or_else(|| bad(path, "shape is too large"))?;
    let got = bytes.len() - h.data_offset;
    if got != want {
        return Err(bad(
            path,
            format!(
                "holds {got} bytes of data, shape ({}, {}) of {} needs {want}{}",
                h.rows,
                h.cols,
                h.descr,
                if got < want { " (truncated)" } else { "" }
            ),
        ));
    }
    let data = bytes[h.data_offset..].to_vec();
    Ok((h, data))
}

/// Reads a 2-D float32 array.
pub fn read_f32(path: &Path) -> Result<Array2<f32>, IndexError> {
    let (h, data) = read_typed(path, &["<f4"])?;
    let data: Vec<f32> = data
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    if let Some(i) = data.iter().position(|x| !x.is_finite()) {
        return Err(bad(
            path,
            format!(
                "row {} column {} is {} (vectors must be finite)",
                i / h.cols.max(1),
                i % h.cols.max(1),
                data[i]
            ),
        ));
    }
    Ok(Array2 {
        rows: h.rows,
        cols: h.cols,
        data,
    })
}

/// Reads a float32 array holding at least one vector.
pub fn read_vectors(path: &Path) -> Result<Array2<f32>, IndexError> {
    let a = read_f32(path)?;
    if a.rows == 0 || a.cols == 0 {
        return Err(bad(
            path,
            format!("shape ({}, {}) holds no vectors", a.rows, a.cols),
        ));
    }
    Ok(a)
}

/// Reads a float32 array of queries for an index of dimension `dim`.
pub fn read_queries(path: &Path, dim: usize) -> Result<Array2<f32>, IndexError> {
    let q = read_f32(path)?;
    if q.cols != dim {
        return Err(bad(
            path,
            format!("queries have dimension {}, the index has {dim}", q.cols),
        ));
    }
    Ok(q)
}

/// Reads a 2-D int32 or int64 array of ids (negative values are kept; callers decide).
pub fn read_ids(path: &Path) -> Result<Array2<i64>, IndexError> {
    let (h, data) = read_typed(path, &["<i4", "<i8"])?;
    let data = if h.descr == "<i4" {
        data.chunks_exact(4)
            .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64)
            .collect()
    } else {
        data.chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect()
    };
    Ok(Array2 {
        rows: h.rows,
        cols: h.cols,
        data,
    })
}

fn write(
    path: &Path,
    descr: &str,
    rows: usize,
    cols: usize,
    data: &[u8],
) -> Result<(), IndexError> {
    let mut header =
        format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': ({rows}, {cols}), }}");
    // Pad so that the data starts on a 64-byte boundary, ending the header with '\n'.
    let total = MAGIC.len() + 4 + header.len() + 1;
    header.push_str(&" ".repeat((64 - total % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + data.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    let tmp = path.with_extension(format!("npy.tmp-{}", std::process::id()));
    let result = std::fs::File::create(&tmp)
        .and_then(|mut f| {
            f.write_all(&out)?;
            f.sync_all()
        })
        .and_then(|_| std::fs::rename(&tmp, path));
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(IndexError::io(path, e));
    }
    Ok(())
}

/// Writes a `rows × cols` float32 array (atomically: a temporary file renamed into place).
pub fn write_f32(path: &Path, data: &[f32], rows: usize, cols: usize) -> Result<(), IndexError> {
    assert_eq!(data.len(), rows * cols);
    let bytes: Vec<u8> = data.iter().flat_map(|x| x.to_le_bytes()).collect();
    write(path, "<f4", rows, cols, &bytes)
}

/// Writes a `rows × cols` int32 array (atomically).
pub fn write_i32(path: &Path, data: &[i32], rows: usize, cols: usize) -> Result<(), IndexError> {
    assert_eq!(data.len(), rows * cols);
    let bytes: Vec<u8> = data.iter().flat_map(|x| x.to_le_bytes()).collect();
    write(path, "<i4", rows, cols, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("twotower-npy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }

    #[test]
    fn round_trips_and_reads_numpy_headers() {
        let p = tmp("a.npy");
        write_f32(&p, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 2, 3).unwrap();
        let a = read_f32(&p).unwrap();
        assert_eq!((a.rows, a.cols), (2, 3));
        assert_eq!(a.row(1), &[4.0, 5.0, 6.0]);
        let bytes = std::fs::read(&p).unwrap();
        assert_eq!((bytes.len() - 24) % 64, 0, "data aligned to 64 bytes");
        write_i32(&p, &[7, -1], 1, 2).unwrap();
        assert_eq!(read_ids(&p).unwrap().data, vec![7, -1]);
        // A header exactly as numpy 1.26 writes it for np.zeros((2, 1), dtype=np.int64).
        let mut h = b"{'descr': '<i8', 'fortran_order': False, 'shape': (2, 1), }".to_vec();
        while !(h.len() + 11).is_multiple_of(64) {
            h.push(b' ');
        }
        h.push(b'\n');
        let mut f = b"\x93NUMPY\x01\x00".to_vec();
        f.extend_from_slice(&(h.len() as u16).to_le_bytes());
        f.extend_from_slice(&h);
        f.extend_from_slice(&5i64.to_le_bytes());
        f.extend_from_slice(&9i64.to_le_bytes());
        // The same header with a 'fortran_order' that is no boolean: refused.
        let mut garbled = f.clone();
        let at = garbled.windows(5).position(|w| w == b"False").unwrap();
        garbled[at..at + 5].copy_from_slice(b"(((((");
        std::fs::write(&p, &garbled).unwrap();
        let e = read_ids(&p).unwrap_err().to_string();
        assert!(e.contains("fortran_order"), "{e}");
        std::fs::write(&p, &f).unwrap();
        assert_eq!(read_ids(&p).unwrap().data, vec![5, 9]);
    }

    #[test]
    fn malformed_files_are_clear_errors() {
        let p = tmp("b.npy");
        write_i32(&p, &[1, 2], 1, 2).unwrap();
        let e = read_f32(&p).unwrap_err().to_string();
        assert!(e.contains("b.npy") && e.contains("dtype \"<i4\""), "{e}");
        write_f32(&p, &[1.0; 6], 2, 3).unwrap();
        let full = std::fs::read(&p).unwrap();
        std::fs::write(&p, &full[..full.len() - 5]).unwrap();
        let e = read_f32(&p).unwrap_err().to_string();
        assert!(e.contains("truncated"), "{e}");
        std::fs::write(&p, b"hello").unwrap();
        let e = read_f32(&p).unwrap_err().to_string();
        assert!(e.contains("not a .npy file"), "{e}");
        let replace = |from: &str, to: &str| {
            let at = full
                .windows(from.len())
                .position(|w| w == from.as_bytes())
                .unwrap();
            let mut b = full.clone();
            b[at..at + to.len()].copy_from_slice(to.as_bytes());
            b
        };
        std::fs::write(&p, replace("(2, 3)", "(6,)  ")).unwrap();
        let e = read_f32(&p).unwrap_err().to_string();
        assert!(e.contains("not 2-D"), "{e}");
        std::fs::write(&p, replace("False", "True ")).unwrap();
        let e = read_f32(&p).unwrap_err().to_string();
        assert!(e.contains("Fortran"), "{e}");
        write_f32(&p, &[1.0, f32::NAN], 1, 2).unwrap();
        let e = read_f32(&p).unwrap_err().to_string();
        assert!(e.contains("row 0 column 1"), "{e}");
    }
}
