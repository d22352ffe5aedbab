//! String vocabularies with Keras `StringLookup(mask_token=None)` semantics: index 0 is the
//! out-of-vocabulary token, known tokens follow in sorted (byte) order.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use crate::{DataError, Result};

/// The token Keras shows for index 0.
pub const OOV_TOKEN: &str = "[UNK]";

/// A string → index lookup; index 0 means "not in the vocabulary".
///
/// ```
/// use twotower_data::Vocabulary;
/// let v = Vocabulary::from_tokens(["b", "a", "b"]);
/// assert_eq!(v.len(), 3); // [UNK], a, b
/// assert_eq!(v.lookup("a"), 1);
/// assert_eq!(v.lookup("zzz"), 0);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Vocabulary {
    tokens: Vec<String>,
    index: HashMap<String, usize>,
}

impl Vocabulary {
    /// Builds a vocabulary from any tokens: duplicates collapse, order is sorted.
    pub fn from_tokens<I, S>(tokens: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        // Distinct first (a column repeats its values), then sorted.
        let distinct: std::collections::HashSet<String> =
            tokens.into_iter().map(Into::into).collect();
        let mut known: Vec<String> = distinct.into_iter().collect();
        known.sort_unstable();
        Self::from_ordered(known)
    }

    /// A vocabulary keeping the given order (after the OOV token); a repeated token keeps
    /// its first place. For vocabularies ranked by frequency.
    pub fn from_ordered_tokens<I, S>(tokens: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut seen = std::collections::HashSet::new();
        let known = tokens
            .into_iter()
            .map(Into::into)
            .filter(|t: &String| t != OOV_TOKEN && seen.insert(t.clone()))
            .collect();
        Self::from_ordered(known)
    }

    fn from_ordered(known: Vec<String>) -> Self {
        let mut tokens = Vec::with_capacity(known.len() + 1);
        tokens.push(OOV_TOKEN.to_string());
        tokens.extend(known);
        let index = tokens
            .iter()
            .enumerate()
            .skip(1)
            .map(|(i, t)| (t.clone(), i))
            .collect();
        Vocabulary { tokens, index }
    }

    /// The index of `token`, 0 when unknown.
    pub fn lookup(&self, token: &str) -> usize {
        self.index.get(token).copied().unwrap_or(0)
    }

    /// The index of `token`, `None` when unknown.
    pub fn get(&self, token: &str) -> Option<usize> {
        self.index.get(token).copied()
    }

    /// The token at `index` (index 0 is [`OOV_TOKEN`]).
    pub fn token(&self, index: usize) -> &str {
        &self.tokens[index]
    }

    /// Number of rows an embedding table needs: known tokens plus the OOV row.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// True when no token is known (only the OOV row exists).
    pub fn is_empty(&self) -> bool {
        self.tokens.len() == 1
    }

    /// All tokens, index 0 first.
    pub fn tokens(&self) -> &[String] {
        &self.tokens
    }

    /// One token per line, the OOV token first (like Keras `get_vocabulary()`); a token
    /// holding a line break cannot be stored that way and is an error naming it.
    pub fn to_text(&self) -> Result<String> {
        let mut out = String::with_capacity(self.tokens.iter().map(|t| t.len() + 1).sum());
        for t in &self.tokens {
            if t.contains(['\n', '\r']) {
                return Err(DataError::Invalid(format!(
                    "token {} holds a line break, which a vocabulary file cannot store",
                    crate::shown(t)
                )));
            }
            out.push_str(t);
            out.push('\n');
        }
        Ok(out)
    }

    /// Writes [`Vocabulary::to_text`] to `path`.
    pub fn write(&self, path: &Path) -> Result<()> {
        let text = self.to_text()?;
        let mut out = std::fs::File::create(path).map_err(|e| DataError::io(path, e))?;
        out.write_all(text.as_bytes())
            .map_err(|e| DataError::io(path, e))
    }

    /// Reads a file written by [`Vocabulary::write`], checking its shape.
    pub fn read(path: &Path) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
        let mut lines = Vec::new();
        for (i, line) in BufReader::new(file).lines().enumerate() {
            lines.push(line.map_err(|e| DataError::Parse {
                path: path.into(),
                line: i + 1,
                message: e.to_string(),
            })?);
        }
        Self::from_lines(path, lines)
    }

    /// [`Vocabulary::read`] of text already in memory (`path` names it in errors).
    pub fn parse(path: &Path, text: &str) -> Result<Self> {
        Self::from_lines(path, text.lines().map(str::to_string).collect())
    }

    fn from_lines(path: &Path, mut lines: Vec<String>) -> Result<Self> {
        if lines.first().map(String::as_str) != Some(OOV_TOKEN) {
            return Err(DataError::Parse {
                path: path.into(),
                line: 1,
                message: format!("expected the out-of-vocabulary token {OOV_TOKEN:?}"),
            });
        }
        let known = lines.split_off(1);
        for (i, pair) in known.windows(2).enumerate() {
            if pair[0] >= pair[1] {
                return Err(DataError::Parse {
                    path: path.into(),
                    line: i + 3,
                    message: "tokens must be unique and sorted".into(),
                });
            }
        }
        Ok(Self::from_ordered(known))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oov_is_zero_and_tokens_sorted_by_bytes() {
        let v = Vocabulary::from_tokens(["10", "2", "1", "2"]);
        assert_eq!(v.tokens(), &["[UNK]", "1", "10", "2"]);
        assert_eq!(v.lookup("1"), 1);
        assert_eq!(v.lookup("10"), 2);
        assert_eq!(v.lookup("2"), 3);
        assert_eq!(v.lookup("3"), 0);
        assert_eq!(v.get("3"), None);
        assert_eq!(v.len(), 4);
    }

    #[test]
    fn write_read_round_trip_and_rejects_bad_files() {
        let dir = std::env::temp_dir().join(format!("tt-vocab-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let v = Vocabulary::from_tokens(["Misérables, Les (1995)", "Babe (1995)"]);
        let p = dir.join("v.txt");
        v.write(&p).unwrap();
        assert_eq!(Vocabulary::read(&p).unwrap(), v);
        std::fs::write(&p, "a\nb\n").unwrap();
        let e = Vocabulary::read(&p).unwrap_err().to_string();
        assert!(e.contains("v.txt:1"), "{e}");
        std::fs::write(&p, "[UNK]\nb\na\n").unwrap();
        let e = Vocabulary::read(&p).unwrap_err().to_string();
        assert!(e.contains("v.txt:3"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
