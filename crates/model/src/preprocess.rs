//! Preprocessing of feature values, fitted on training data and kept with the model:
//! text → token ids (Keras `TextVectorization` defaults), numbers → standardised values
//! (`Normalization`) and bucket ids (`Discretization`, equal-width or quantile boundaries).
//!
//! ```
//! use twotower_model::preprocess::{text_tokens, Buckets, TextVectorizer};
//! assert_eq!(text_tokens("Heat (1995)").collect::<Vec<_>>(), ["heat", "1995"]);
//! let v = TextVectorizer::fit(["a b", "b c", "b"], None);
//! assert_eq!(v.ids("B d"), [1, 0]); // "b" is the most frequent token; "d" is unknown
//! let b = Buckets::equal_width(&[0.0, 10.0], 5).unwrap();
//! assert_eq!(b.bucket(3.0), 1); // boundaries 2, 4, 6, 8
//! ```

use std::collections::HashMap;

use twotower_data::Vocabulary;

use crate::nn::{IdBatch, Numeric};
use crate::{ModelError, Result};

/// The tokens of `text` as `TextVectorization` makes them by default: ASCII lowercase,
/// ASCII punctuation removed, split on whitespace.
pub fn text_tokens(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split_whitespace()
        .map(|w| {
            w.chars()
                .filter(|c| !c.is_ascii_punctuation())
                .map(|c| c.to_ascii_lowercase())
                .collect::<String>()
        })
        .filter(|w| !w.is_empty())
}

/// Text → ids of its tokens in a vocabulary of the most frequent training tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct TextVectorizer {
    /// Index 0 is the out-of-vocabulary token; then tokens by falling frequency (ties in
    /// byte order).
    pub vocab: Vocabulary,
}

impl TextVectorizer {
    /// The vocabulary of `texts`' tokens, keeping the `max_tokens - 1` most frequent (with
    /// the OOV token, `max_tokens` in all) when a limit is given.
    pub fn fit<'a>(texts: impl IntoIterator<Item = &'a str>, max_tokens: Option<usize>) -> Self {
        let mut counts: HashMap<String, usize> = HashMap::new();
        for t in texts {
            for tok in text_tokens(t) {
                *counts.entry(tok).or_default() += 1;
            }
        }
        let mut ranked: Vec<(String, usize)> = counts.into_iter().collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        if let Some(m) = max_tokens {
            ranked.truncate(m.saturating_sub(1));
        }
        TextVectorizer {
            vocab: Vocabulary::from_ordered_tokens(ranked.into_iter().map(|(t, _)| t)),
        }
    }

    /// The ids of `text`'s tokens (0 for unknown ones), in order.
    pub fn ids(&self, text: &str) -> Vec<u32> {
        text_tokens(text)
            .map(|t| self.vocab.lookup(&t) as u32)
            .collect()
    }

    /// One bag of token ids per text.
    pub fn batch<'a>(&self, texts: impl IntoIterator<Item = &'a str>) -> IdBatch {
        let (mut offsets, mut ids) = (vec![0u32], Vec::new());
        for t in texts {
            ids.extend(self.ids(t));
            offsets.push(ids.len() as u32);
        }
        IdBatch::multi(offsets, ids)
    }
}

impl Numeric {
    /// Mean and standard deviation of `values` (population variance, as Keras'
    /// `Normalization.adapt`); a constant feature gets a standard deviation of 1.
    pub fn fit(values: &[f32]) -> Result<Numeric> {
        if values.is_empty() || values.iter().any(|v| !v.is_finite()) {
            return Err(ModelError::Config(
                "a numeric feature needs at least one value, all finite".into(),
            ));
        }
        let n = values.len() as f64;
        let mean = values.iter().map(|&v| v as f64).sum::<f64>() / n;
        let var = values
            .iter()
            .map(|&v| (v as f64 - mean).powi(2))
            .sum::<f64>()
            / n;
        let std = var.sqrt();
        Ok(Numeric {
            mean: mean as f32,
            std: if std > 1e-7 { std as f32 } else { 1.0 },
        })
    }
}

/// Bucket boundaries: a value `x` falls in bucket `i` when `boundaries[i - 1] <= x <
/// boundaries[i]` (bucket 0 below the first boundary, the last at or above the last), as
/// Keras' `Discretization` counts them.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Buckets {
    pub boundaries: Vec<f32>,
}

impl Buckets {
    /// `n` buckets of equal width between the smallest and the largest of `values`.
    pub fn equal_width(values: &[f32], n: usize) -> Result<Buckets> {
        let (lo, hi) = Self::range(values, n)?;
        let width = (hi - lo) / n as f64;
        Ok(Buckets {
            boundaries: (1..n).map(|i| (lo + width * i as f64) as f32).collect(),
        })
    }

    /// Up to `n` buckets holding about equally many of `values` (repeated boundaries
    /// merged).
    pub fn quantiles(values: &[f32], n: usize) -> Result<Buckets> {
        Self::range(values, n)?;
        let mut sorted = values.to_vec();
        sorted.sort_by(f32::total_cmp);
        let mut boundaries: Vec<f32> = (1..n)
            .map(|i| sorted[(i * sorted.len() / n).min(sorted.len() - 1)])
            .collect();
        boundaries.dedup();
        Ok(Buckets { boundaries })
    }

    fn range(values: &[f32], n: usize) -> Result<(f64, f64)> {
        if n == 0 || values.is_empty() || values.iter().any(|v| !v.is_finite()) {
            return Err(ModelError::Config(
                "bucketing needs at least one bucket and one value, all finite".into(),
            ));
        }
        let lo = values.iter().copied().fold(f32::INFINITY, f32::min) as f64;
        let hi = values.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        Ok((lo, hi))
    }

    /// Number of buckets (the rows an embedding of them needs).
    pub fn len(&self) -> usize {
        self.boundaries.len() + 1
    }

    /// Always false: there is at least one bucket.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The bucket of `x` (NaN falls in bucket 0).
    pub fn bucket(&self, x: f32) -> u32 {
        self.boundaries.partition_point(|&b| b <= x) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_follow_text_vectorization_defaults() {
        let t: Vec<String> =
            text_tokens("  Star Wars: Episode IV (1977) ... Misérables, Les ").collect();
        assert_eq!(
            t,
            ["star", "wars", "episode", "iv", "1977", "misérables", "les"]
        );
    }

    #[test]
    fn the_vocabulary_keeps_the_most_frequent_tokens() {
        let v = TextVectorizer::fit(["the heat", "the net", "the heat", "a"], Some(3));
        assert_eq!(v.vocab.tokens(), ["[UNK]", "the", "heat"]);
        assert_eq!(v.ids("The Net, the Heat!"), [1, 0, 1, 2]);
        let b = v.batch(["heat", "", "the the"]);
        assert_eq!(b.offsets, [0, 1, 1, 3]);
        assert_eq!(b.ids, [2, 1, 1]);
    }

    #[test]
    fn numbers_are_standardised_with_training_statistics() {
        let n = Numeric::fit(&[1.0, 3.0, 5.0, 7.0]).unwrap();
        assert_eq!(n.mean, 4.0);
        assert!((n.std - 5.0f32.sqrt()).abs() < 1e-6);
        assert_eq!(Numeric::fit(&[2.0, 2.0]).unwrap().std, 1.0);
        assert!(Numeric::fit(&[]).is_err());
        assert!(Numeric::fit(&[1.0, f32::NAN]).is_err());
    }

    #[test]
    fn buckets_by_width_and_by_quantile() {
        let b = Buckets::equal_width(&[0.0, 4.0, 10.0], 5).unwrap();
        assert_eq!(b.boundaries, [2.0, 4.0, 6.0, 8.0]);
        assert_eq!(b.len(), 5);
        let got: Vec<u32> = [-1.0, 0.0, 1.9, 2.0, 9.9, 10.0, 50.0]
            .iter()
            .map(|&x| b.bucket(x))
            .collect();
        assert_eq!(got, [0, 0, 0, 1, 4, 4, 4]);
        let values: Vec<f32> = (0..100).map(|i| (i * i) as f32).collect();
        let q = Buckets::quantiles(&values, 4).unwrap();
        assert_eq!(q.boundaries, [625.0, 2500.0, 5625.0]);
        let per: Vec<usize> = (0..4)
            .map(|k| values.iter().filter(|&&v| q.bucket(v) == k).count())
            .collect();
        assert_eq!(per, [25, 25, 25, 25]);
        assert_eq!(Buckets::quantiles(&[1.0; 10], 4).unwrap().len(), 2);
        assert!(Buckets::equal_width(&[1.0], 0).is_err());
    }
}
