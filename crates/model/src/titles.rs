//! Finding movies by title: substring search and "did you mean" suggestions.
//!
//! [`TitleIndex`] is built once per catalogue: every title lowercased, and an inverted
//! index of its character trigrams. A suggestion then costs the postings of the query's
//! trigrams (the query is cut to [`MAX_QUERY_CHARS`]), not a string distance against every
//! title, so a long or hostile query cannot occupy a server thread.
//!
//! ```
//! use twotower_model::TitleIndex;
//! let titles = ["Star Wars (1977)", "Star Trek: Generations (1994)", "Heat (1995)"]
//!     .map(String::from);
//! let index = TitleIndex::new(&titles);
//! assert_eq!(index.search("star", 10), vec![0, 1]);
//! assert_eq!(index.suggest("star wors", 1), vec!["Star Wars (1977)".to_string()]);
//! ```

use std::collections::HashMap;

/// Characters of a query that are looked at; the rest is ignored.
pub const MAX_QUERY_CHARS: usize = 200;

/// Lowercased titles with an inverted index of their trigrams.
#[derive(Debug, Clone, Default)]
pub struct TitleIndex {
    titles: Vec<String>,
    lower: Vec<String>,
    grams: HashMap<u64, Vec<u32>>,
    gram_counts: Vec<u32>,
}

/// Trigrams of `text` padded with two spaces in front and one behind (so short words and
/// word starts count), packed three characters to a `u64`, without repeats.
fn trigrams(text: &str) -> Vec<u64> {
    let chars: Vec<char> = "  "
        .chars()
        .chain(text.chars().take(MAX_QUERY_CHARS))
        .chain(" ".chars())
        .collect();
    let mut out: Vec<u64> = chars
        .windows(3)
        .map(|w| ((w[0] as u64) << 42) | ((w[1] as u64) << 21) | w[2] as u64)
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

impl TitleIndex {
    /// Indexes `titles` (row `i` is title `i`).
    pub fn new(titles: &[String]) -> Self {
        let lower: Vec<String> = titles.iter().map(|t| t.to_lowercase()).collect();
        let mut grams: HashMap<u64, Vec<u32>> = HashMap::new();
        let mut gram_counts = Vec::with_capacity(lower.len());
        for (row, t) in lower.iter().enumerate() {
            let g = trigrams(t);
            gram_counts.push(g.len() as u32);
            for x in g {
                grams.entry(x).or_default().push(row as u32);
            }
        }
        TitleIndex {
            titles: titles.to_vec(),
            lower,
            grams,
            gram_counts,
        }
    }

    fn query(text: &str) -> String {
        text.chars()
            .take(MAX_QUERY_CHARS)
            .collect::<String>()
            .to_lowercase()
    }

    /// Up to `limit` rows whose title contains `query` (case-insensitive), in row order.
    pub fn search(&self, query: &str, limit: usize) -> Vec<usize> {
        let q = Self::query(query);
        self.lower
            .iter()
            .enumerate()
            .filter(|(_, t)| t.contains(&q))
            .map(|(r, _)| r)
            .take(limit)
            .collect()
    }

    /// Up to `n` distinct titles closest to `query`: titles containing it first, then by
    /// the share of trigrams they have in common (Dice coefficient).
    pub fn suggest(&self, query: &str, n: usize) -> Vec<String> {
        let q = Self::query(query);
        let qg = trigrams(&q);
        let mut common: HashMap<u32, u32> = HashMap::new();
        for g in &qg {
            for &row in self.grams.get(g).map_or(&[][..], Vec::as_slice) {
                *common.entry(row).or_default() += 1;
            }
        }
        let mut scored: Vec<(f64, u32)> = common
            .into_iter()
            .map(|(row, c)| {
                let dice =
                    2.0 * c as f64 / (qg.len() + self.gram_counts[row as usize] as usize) as f64;
                let contains = if self.lower[row as usize].contains(&q) {
                    1.0
                } else {
                    0.0
                };
                (contains + dice, row)
            })
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        let mut out: Vec<String> = Vec::with_capacity(n);
        for (_, row) in scored {
            let t = &self.titles[row as usize];
            if !out.contains(t) {
                out.push(t.clone());
                if out.len() == n {
                    break;
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index() -> TitleIndex {
        let titles = [
            "Toy Story (1995)",
            "Star Wars (1977)",
            "Return of the Jedi (1983)",
            "Star Trek: The Wrath of Khan (1982)",
            "Twin",
            "Twin",
        ]
        .map(String::from);
        TitleIndex::new(&titles)
    }

    #[test]
    fn substring_search_is_case_insensitive_and_ordered() {
        let i = index();
        assert_eq!(i.search("STAR", 10), vec![1, 3]);
        assert_eq!(i.search("star", 1), vec![1]);
        assert_eq!(i.search("(19", 10), vec![0, 1, 2, 3]);
        assert!(i.search("zzz", 10).is_empty());
    }

    #[test]
    fn suggestions_rank_close_titles_first_and_skip_repeats() {
        let i = index();
        assert_eq!(
            i.suggest("retrun of the jedi", 1),
            vec!["Return of the Jedi (1983)"]
        );
        assert_eq!(i.suggest("toy story", 2)[0], "Toy Story (1995)");
        // Two rows share a title: it is suggested once.
        assert_eq!(
            i.suggest("twin", 5).iter().filter(|t| *t == "Twin").count(),
            1
        );
        assert!(i.suggest("", 5).len() <= 5);
    }

    #[test]
    fn huge_queries_are_cut_not_scanned_whole() {
        let i = index();
        let long = format!("star wars{}", "x".repeat(60_000));
        // Only the first MAX_QUERY_CHARS characters count, so this still finds Star Wars.
        assert_eq!(
            trigrams(&long).len(),
            trigrams(&long[..MAX_QUERY_CHARS]).len()
        );
        assert_eq!(i.suggest(&long, 1), vec!["Star Wars (1977)"]);
    }
}
