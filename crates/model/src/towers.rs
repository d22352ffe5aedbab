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
use crate::nn::{EmbeddingBag, Encoder, IdBatch, Pass, Pooling, Tower, TowerGrads};
use crate::{ModelError, Result};

/// A tower keyed by one id behind a vocabulary (TFRS: `StringLookup` + `Embedding`): a
/// [`Tower`] whose first feature is the embedding of that id. Today's towers are this and
/// nothing more (one categorical feature, no hidden layer).
#[derive(Debug, Clone, PartialEq)]
pub struct IdTower {
    pub vocab: Vocabulary,
    tower: Tower,
}

impl IdTower {
    /// A tower with a Keras-initialised `vocab.len() × dim` id table.
    pub fn new(vocab: Vocabulary, dim: usize, rng: &mut impl rand::Rng) -> Self {
        let table = Embedding::uniform(vocab.len(), dim, rng);
        Self::from_table(vocab, table).expect("the table is made to fit the vocabulary")
    }

    /// A tower over a trained id table, which must have a row per vocabulary entry.
    pub fn from_table(vocab: Vocabulary, table: Embedding) -> Result<Self> {
        if table.rows != vocab.len() {
            return Err(ModelError::Config(format!(
                "an id table of {} rows for a vocabulary of {}",
                table.rows,
                vocab.len()
            )));
        }
        let bag = EmbeddingBag {
            table,
            pooling: Pooling::Mean,
        };
        Ok(IdTower {
            vocab,
            tower: Tower::new(vec![Encoder::Bag(bag)], Vec::new())?,
        })
    }

    /// The tower itself.
    pub fn tower(&self) -> &Tower {
        &self.tower
    }

    /// The tower, for an optimizer step.
    pub fn tower_mut(&mut self) -> &mut Tower {
        &mut self.tower
    }

    /// The id embedding table.
    pub fn embedding(&self) -> &Embedding {
        match self.tower.encoders.first() {
            Some(Encoder::Bag(b)) => &b.table,
            _ => unreachable!("an id tower's first feature is its id embedding"),
        }
    }

    /// True when every parameter is finite.
    pub fn is_finite(&self) -> bool {
        self.tower.is_finite()
    }

    /// The id embedding table, mutable.
    pub fn embedding_mut(&mut self) -> &mut Embedding {
        match self.tower.encoders.first_mut() {
            Some(Encoder::Bag(b)) => &mut b.table,
            _ => unreachable!("an id tower's first feature is its id embedding"),
        }
    }

    /// The forward pass over distinct vocabulary indices `ids` (a deduplicated batch), kept
    /// for [`IdTower::backward`].
    pub fn forward(&self, ids: &[u32]) -> Pass {
        self.tower
            .forward(&[IdBatch::distinct_unchecked(ids.to_vec())], ids.len())
            .expect("vocabulary indices are rows of the id table")
    }

    /// The gradients of the tower's parameters from the gradient of the output of
    /// `pass` = [`IdTower::forward`]`(ids)`.
    pub fn backward(&self, ids: &[u32], pass: &Pass, grad: Vec<f32>) -> TowerGrads {
        self.tower
            .backward(&[IdBatch::distinct_unchecked(ids.to_vec())], pass, grad)
    }

    /// The vectors of vocabulary indices `ids`, row-major.
    pub fn vectors(&self, ids: &[u32]) -> Vec<f32> {
        if self.tower.layers.is_empty() && self.tower.encoders.len() == 1 {
            // A plain lookup: gathered in parallel.
            return self.embedding().gather(ids);
        }
        self.tower
            .forward(&[IdBatch::single(ids.to_vec())], ids.len())
            .expect("vocabulary indices are rows of the id table")
            .output()
            .to_vec()
    }

    /// The vector of `token` and whether it was known; unknown tokens get the OOV row.
    pub fn embed(&self, token: &str) -> (Vec<f32>, bool) {
        let i = self.vocab.lookup(token);
        (self.vectors(&[i as u32]), i != 0)
    }
}

/// The query tower: user id → vector.
pub type QueryTower = IdTower;
/// The candidate tower: movie title or id → vector.
pub type CandidateTower = IdTower;

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

    /// The rows of the item ids `ids`, in order, and the ids not in the catalogue.
    pub fn rows_of_ids(&self, ids: &[String]) -> (Vec<u32>, Vec<String>) {
        let mut rows = Vec::with_capacity(ids.len());
        let mut unknown = Vec::new();
        for id in ids {
            match self.ids.iter().position(|x| x == id.trim()) {
                Some(r) => rows.push(r as u32),
                None => unknown.push(id.clone()),
            }
        }
        (rows, unknown)
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
        let query = IdTower::new(users, config.embedding_dim, &mut rng);
        let candidate = IdTower::new(items, config.embedding_dim, &mut rng);
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
        self.candidate.tower().output_width()
    }

    /// [`candidate_index`](Self::candidate_index) as an [`Index`] for recommendations.
    pub fn exact_index(&self) -> Index {
        Index::Exact(self.candidate_index())
    }

    /// The candidate vectors of every catalogue row, as an exact index.
    pub fn candidate_index(&self) -> BruteForceIndex {
        BruteForceIndex::new(self.candidate.vectors(&self.row_keys), self.dim())
            .expect("embedding rows have the model's dimension")
    }

    /// Query vectors of many users (unknown users get the OOV row), row-major.
    pub fn query_vectors(&self, users: &[String]) -> Vec<f32> {
        let mut out = Vec::with_capacity(users.len() * self.dim());
        for u in users {
            out.extend_from_slice(&self.query.embed(u).0);
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
