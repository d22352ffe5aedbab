//! The two towers and the model that joins them.
//!
//! [`QueryTower`] turns a user id into a vector, [`CandidateTower`] turns a movie key
//! (title or id) into a vector of the same size; the score is their dot product.
//! [`TwoTowerModel`] adds the catalogue (the rows that can be recommended) and the training
//! history of each user (for "exclude seen" and the model card).

use rand::SeedableRng;
use twotower_data::{Movie, Vocabulary};
use twotower_index::{BruteForceIndex, Index};

use crate::config::{CandidateKey, TrainConfig};
use crate::embedding::Embedding;
use crate::{ModelError, Result};

/// A tower that is one embedding lookup behind a vocabulary (TFRS: `StringLookup` +
/// `Embedding`).
#[derive(Debug, Clone)]
pub struct LookupTower {
    pub vocab: Vocabulary,
    pub embedding: Embedding,
}

impl LookupTower {
    /// The vector of `token` and whether it was known; unknown tokens get the OOV row.
    pub fn embed(&self, token: &str) -> (&[f32], bool) {
        let i = self.vocab.lookup(token);
        (self.embedding.row(i), i != 0)
    }
}

/// The query tower: user id → vector.
pub type QueryTower = LookupTower;
/// The candidate tower: movie title or id → vector.
pub type CandidateTower = LookupTower;

/// The rows that can be recommended, with their display fields.
#[derive(Debug, Clone, PartialEq)]
pub struct Catalogue {
    pub ids: Vec<String>,
    pub titles: Vec<String>,
    pub genres: Vec<Vec<String>>,
    pub release_dates: Vec<String>,
}

impl Catalogue {
    /// From the MovieLens movie list.
    pub fn from_movies(movies: &[Movie]) -> Self {
        Catalogue {
            ids: movies.iter().map(|m| m.id.to_string()).collect(),
            titles: movies.iter().map(|m| m.title.clone()).collect(),
            genres: movies.iter().map(|m| m.genres.clone()).collect(),
            release_dates: movies.iter().map(|m| m.release_date.clone()).collect(),
        }
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True when there are no rows.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The key of row `i` for the candidate tower.
    pub fn key(&self, i: usize, key: CandidateKey) -> &str {
        match key {
            CandidateKey::Title => &self.titles[i],
            CandidateKey::Id => &self.ids[i],
        }
    }

    /// The row of an id, or else of an exact title.
    pub fn find(&self, id_or_title: &str) -> Option<usize> {
        self.ids
            .iter()
            .position(|x| x == id_or_title)
            .or_else(|| self.titles.iter().position(|x| x == id_or_title))
    }
}

/// A catalogue row as people and scripts see it (the CLI's `--json` and the HTTP API):
/// id, title, genres and the year from the title, with a score when it was ranked.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ItemView<'a> {
    pub id: &'a str,
    pub title: &'a str,
    pub genres: &'a [String],
    pub year: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score: Option<f32>,
}

/// The year in parentheses at the end of a title: "Heat (1995)" → 1995.
pub fn year_of(title: &str) -> Option<u32> {
    let open = title.rfind('(')?;
    let inner = title[open + 1..].trim_end().strip_suffix(')')?;
    (inner.len() == 4).then(|| inner.parse().ok()).flatten()
}

impl Catalogue {
    /// Row `row` as an [`ItemView`], with `score` when it was ranked.
    pub fn view(&self, row: usize, score: Option<f32>) -> ItemView<'_> {
        ItemView {
            id: &self.ids[row],
            title: &self.titles[row],
            genres: &self.genres[row],
            year: year_of(&self.titles[row]),
            score,
        }
    }

    /// Ranked rows as views, best first.
    pub fn views(&self, ranked: &[twotower_index::Neighbor]) -> Vec<ItemView<'_>> {
        ranked
            .iter()
            .map(|n| self.view(n.id as usize, Some(n.score)))
            .collect()
    }
}

/// The items each user interacted with in training, as catalogue rows (CSR by user index).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SeenItems {
    pub offsets: Vec<u64>,
    pub rows: Vec<u32>,
    pub ratings: Vec<f32>,
}

impl SeenItems {
    /// Groups `(user index, catalogue row, rating)` triples by user; `users` is the number of
    /// user indices.
    pub fn build(users: usize, mut triples: Vec<(u32, u32, f32)>) -> Self {
        triples.sort_by_key(|t| (t.0, t.1));
        let mut offsets = vec![0u64; users + 1];
        for t in &triples {
            offsets[t.0 as usize + 1] += 1;
        }
        for i in 0..users {
            offsets[i + 1] += offsets[i];
        }
        SeenItems {
            offsets,
            rows: triples.iter().map(|t| t.1).collect(),
            ratings: triples.iter().map(|t| t.2).collect(),
        }
    }

    /// The rows and ratings of user index `u` (sorted by row).
    pub fn of(&self, u: usize) -> (&[u32], &[f32]) {
        if u + 1 >= self.offsets.len() {
            return (&[], &[]);
        }
        let (a, b) = (self.offsets[u] as usize, self.offsets[u + 1] as usize);
        (&self.rows[a..b], &self.ratings[a..b])
    }
}

/// A trained (or freshly initialised) two-tower model over a catalogue.
#[derive(Debug, Clone)]
pub struct TwoTowerModel {
    pub config: TrainConfig,
    pub query: QueryTower,
    pub candidate: CandidateTower,
    pub catalogue: Catalogue,
    /// Candidate-vocabulary index of each catalogue row.
    pub row_keys: Vec<u32>,
    pub seen: SeenItems,
}

impl TwoTowerModel {
    /// A new model with Keras-style uniform(-0.05, 0.05) embeddings, seeded by the config.
    /// `Negatives::Auto` is settled here, by the catalogue's size.
    pub fn new(config: TrainConfig, users: Vocabulary, catalogue: Catalogue) -> Result<Self> {
        let config = config.for_catalogue(catalogue.len());
        config.validate()?;
        if catalogue.is_empty() {
            return Err(ModelError::Config("the catalogue is empty".into()));
        }
        let keys = (0..catalogue.len()).map(|i| catalogue.key(i, config.candidate_key).to_string());
        let items = Vocabulary::from_tokens(keys);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(config.seed);
        let query = LookupTower {
            embedding: Embedding::uniform(users.len(), config.embedding_dim, &mut rng),
            vocab: users,
        };
        let candidate = LookupTower {
            embedding: Embedding::uniform(items.len(), config.embedding_dim, &mut rng),
            vocab: items,
        };
        Self::assemble(config, query, candidate, catalogue, SeenItems::default())
    }

    /// Joins the parts, checking that they fit together.
    pub fn assemble(
        config: TrainConfig,
        query: QueryTower,
        candidate: CandidateTower,
        catalogue: Catalogue,
        seen: SeenItems,
    ) -> Result<Self> {
        let mut row_keys = Vec::with_capacity(catalogue.len());
        for i in 0..catalogue.len() {
            match candidate.vocab.get(catalogue.key(i, config.candidate_key)) {
                Some(k) => row_keys.push(k as u32),
                None => {
                    return Err(ModelError::Config(format!(
                        "catalogue row {i} ({:?}) is not in the candidate vocabulary",
                        catalogue.key(i, config.candidate_key)
                    )))
                }
            }
        }
        Ok(TwoTowerModel {
            config,
            query,
            candidate,
            catalogue,
            row_keys,
            seen,
        })
    }

    /// Embedding dimension, as the candidate table holds it.
    pub fn dim(&self) -> usize {
        self.candidate.embedding.dim
    }

    /// [`candidate_index`](Self::candidate_index) as an [`Index`] for recommendations.
    pub fn exact_index(&self) -> Index {
        Index::Exact(self.candidate_index())
    }

    /// The candidate vectors of every catalogue row, as an exact index.
    pub fn candidate_index(&self) -> BruteForceIndex {
        BruteForceIndex::new(self.candidate.embedding.gather(&self.row_keys), self.dim())
            .expect("embedding rows have the model's dimension")
    }

    /// Query vectors of many users (unknown users get the OOV row), row-major.
    pub fn query_vectors(&self, users: &[String]) -> Vec<f32> {
        let mut out = Vec::with_capacity(users.len() * self.dim());
        for u in users {
            out.extend_from_slice(self.query.embed(u).0);
        }
        out
    }
}

#[cfg(test)]
mod view_tests {
    use super::*;

    #[test]
    fn years_from_titles() {
        assert_eq!(year_of("Heat (1995)"), Some(1995));
        assert_eq!(year_of("Misérables, Les (1995)"), Some(1995));
        assert_eq!(year_of("unknown"), None);
        assert_eq!(year_of("Big Night (abc)"), None);
    }

    #[test]
    fn views_carry_the_year_and_the_score_only_when_ranked() {
        let c = Catalogue {
            ids: vec!["7".into()],
            titles: vec!["Heat (1995)".into()],
            genres: vec![vec!["Action".into()]],
            release_dates: vec![String::new()],
        };
        let plain = serde_json::to_value(c.view(0, None)).unwrap();
        assert_eq!(
            plain,
            serde_json::json!({"id": "7", "title": "Heat (1995)", "genres": ["Action"], "year": 1995})
        );
        let ranked = c.views(&[twotower_index::Neighbor { id: 0, score: 0.5 }]);
        assert_eq!(serde_json::to_value(&ranked).unwrap()[0]["score"], 0.5);
    }
}
