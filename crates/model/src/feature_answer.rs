//! Answering queries with a saved feature model ([`FeatureModel`], model folder format 2):
//! a user's top-k rows as of now, rows similar to a row, and loading a model folder of
//! either format ([`AnyModel`]) for the commands that take both.
//!
//! A user's query "now" is the one after their last training interaction: their whole
//! training history, at a time just after it. Evaluation, by contrast, asks at each test
//! interaction's time (see [`FeatureModel::scorer`]).

use std::path::Path;

use twotower_data::{shown, Dataset, SplitSpec};
use twotower_index::{BruteForceIndex, Index, Neighbor};

use crate::checkpoint::{declared_version, IndexedModel};
use crate::eval::Metrics;
use crate::feature_folder::{SavedFeatureModel, FEATURE_FORMAT_VERSION};
use crate::feature_model::FeatureModel;
use crate::features::{Column, Input};
use crate::pipeline::{same_catalogue, SplitEval};
use crate::query_data::Query;
use crate::report::{SimilarItems, UserItems};
use crate::retrieve::search;
use crate::spec::FeatureSpec;
use crate::{ModelError, Recommendations, Result, SavedModel};

/// How many standard deviations from the training mean a visitor's numeric feature may
/// lie: far beyond anything a heavy-tailed training column holds (Last.fm's play counts
/// reach about 100), far below what overflows a score.
pub const MAX_STANDARD_SCORE: f32 = 1000.0;

impl FeatureModel {
    /// The exact dot-product index over the candidate vectors (recommendations).
    pub fn exact_index(&self) -> Result<BruteForceIndex> {
        let d = self.candidate.tower.output_width();
        Ok(BruteForceIndex::new(self.candidate_vectors()?, d)?)
    }

    /// The candidate vectors scaled to unit length, for cosine similarity.
    pub fn cosine_index(&self) -> Result<BruteForceIndex> {
        let d = self.candidate.tower.output_width();
        let mut v = self.candidate_vectors()?;
        crate::nn::l2_normalize(&mut v, d);
        Ok(BruteForceIndex::new(v, d)?)
    }

    /// The `k` best rows of `index` (exact, from [`FeatureModel::exact_index`], or the
    /// model folder's approximate one) for each of `users` now; `exclude_seen` drops their training items. A user neither seen in
    /// training nor described by the users' features is answered from what the towers give
    /// an unknown id (`known_user` false).
    pub fn recommend_batch(
        &self,
        index: &Index,
        users: &[u32],
        k: usize,
        exclude_seen: bool,
    ) -> Result<Vec<Recommendations>> {
        let queries: Vec<Query> = users
            .iter()
            .map(|&u| Query::at(u, self.data.last_time(u) + 1))
            .collect();
        let q = self.query_vectors(&queries)?;
        let seen: Vec<Vec<u32>> = users
            .iter()
            .map(|&u| {
                if exclude_seen {
                    self.data.rows_of(u)
                } else {
                    Vec::new()
                }
            })
            .collect();
        let seen: Vec<&[u32]> = seen.iter().map(Vec::as_slice).collect();
        let d = self.candidate.tower.output_width();
        let ranked = search(index, &q, d, k.min(self.catalogue.len()), &seen)?;
        Ok(ranked
            .into_iter()
            .zip(users)
            .map(|(items, &u)| Recommendations {
                known_user: self.data.knows(u),
                items,
            })
            .collect())
    }

    /// The `k` best rows of `index` for a visitor — a user the model never saw — whose
    /// history is `rows` (catalogue rows, oldest first), now; `exclude_given` drops those
    /// rows. The query tower must read a history.
    pub fn recommend_visitor(
        &self,
        index: &Index,
        rows: &[u32],
        described: &[(String, Column)],
        k: usize,
        exclude_given: bool,
    ) -> Result<Recommendations> {
        self.require_history_tower()?;
        let q = self.visitor_vector(rows, described)?;
        self.rank_visitor(index, &q, rows, k, exclude_given)
    }

    /// A visitor's query vector, now.
    fn visitor_vector(&self, rows: &[u32], described: &[(String, Column)]) -> Result<Vec<f32>> {
        let now = self.data.latest_time() + 1;
        self.query_vectors(&[Query::visitor(rows, described, now)])
    }

    /// The `k` best rows of `index` for the visitor query `q` whose history is `rows`.
    fn rank_visitor(
        &self,
        index: &Index,
        q: &[f32],
        rows: &[u32],
        k: usize,
        exclude_given: bool,
    ) -> Result<Recommendations> {
        let seen: &[u32] = if exclude_given { rows } else { &[] };
        let d = self.candidate.tower.output_width();
        let mut ranked = search(index, q, d, k.min(self.catalogue.len()), &[seen])?;
        Ok(Recommendations {
            known_user: false,
            items: ranked.pop().unwrap_or_default(),
        })
    }

    /// A visitor's user features `(column, value)` as the query tower reads them (a number
    /// within [`MAX_STANDARD_SCORE`] standard deviations of the training mean): the
    /// column must be one it reads (not the user id, which a visitor has none of); a
    /// category must be one it knows (each of a `|`-separated multi value), a number a
    /// number. Errors name the feature and the value.
    pub fn describe(&self, features: &[(String, String)]) -> Result<Vec<(String, Column)>> {
        let tower = &self.query;
        let read: Vec<&str> = tower
            .spec
            .features
            .iter()
            .filter_map(|f| f.get_ref().column())
            .filter(|c| *c != "user_id")
            .collect();
        let mut out: Vec<(String, Column)> = Vec::new();
        for (name, value) in features {
            let bad = |m: String| ModelError::Config(format!("feature {}: {m}", shown(name)));
            if out.iter().any(|(c, _)| c == name) {
                return Err(bad("given twice".into()));
            }
            let Some(k) = tower
                .spec
                .features
                .iter()
                .position(|f| f.get_ref().column() == Some(name.as_str()) && name != "user_id")
            else {
                return Err(bad(format!(
                    "the query tower reads no such user feature (it reads: {})",
                    if read.is_empty() {
                        "none".to_string()
                    } else {
                        read.join(", ")
                    }
                )));
            };
            let unknown = |v: &str| {
                bad(format!(
                    "{} is not a value the model knows (values come from the training users)",
                    shown(v)
                ))
            };
            let column = match &tower.inputs[k] {
                Input::Lookup { vocab } => {
                    if vocab.get(value).is_none() {
                        return Err(unknown(value));
                    }
                    Column::Str(value.clone())
                }
                Input::Multi { vocab } => {
                    let parts: Vec<String> = value.split('|').map(str::to_string).collect();
                    if let Some(p) = parts.iter().find(|p| vocab.get(p).is_none()) {
                        return Err(unknown(p));
                    }
                    Column::Strs(parts)
                }
                Input::Hashed { .. } => Column::Str(value.clone()),
                Input::Text { .. } => Column::Text(value.clone()),
                Input::Number { stats, .. } => match value.trim().parse::<f32>() {
                    Ok(x) if x.is_finite() => {
                        // Standardised, a value far outside training scales every score
                        // with it: refuse what no training user came near.
                        let spread = if stats.std > 0.0 { stats.std } else { 1.0 };
                        let (lo, hi) = (
                            stats.mean - MAX_STANDARD_SCORE * spread,
                            stats.mean + MAX_STANDARD_SCORE * spread,
                        );
                        if !(lo..=hi).contains(&x) {
                            return Err(bad(format!(
                                "{} is outside what training makes meaningful ({lo} to {hi}: \
                                 the mean {} ± {MAX_STANDARD_SCORE} standard deviations)",
                                shown(value),
                                stats.mean
                            )));
                        }
                        Column::Number(Some(x))
                    }
                    _ => return Err(bad(format!("{} is not a number", shown(value)))),
                },
                Input::History { .. } => return Err(bad("not a user feature".into())),
            };
            out.push((name.clone(), column));
        }
        Ok(out)
    }

    /// This model with `new` items (which training never saw) added to its catalogue:
    /// their candidate vectors come from what the candidate tower reads of them (their id is
    /// out of vocabulary; title words, genres and year as for any item). A history table
    /// grows a zero row per new item (a visitor may list one; it adds nothing to the pooled
    /// history until the model is retrained). An id already in the catalogue, or twice among
    /// `new`, is an error naming it; so are items for a model whose spec declares item
    /// columns of its own (`--item-features`), which a catalogue file does not carry.
    pub fn with_new_items(&self, new: Vec<twotower_data::Movie>) -> Result<FeatureModel> {
        if !self.item_features.columns.is_empty() {
            return Err(ModelError::Config(
                "this model reads item columns from --item-features; adding items to it is \
                 not supported yet"
                    .into(),
            ));
        }
        let mut known: std::collections::HashSet<u32> = self.movies.iter().map(|m| m.id).collect();
        for m in &new {
            if !known.insert(m.id) {
                return Err(ModelError::Config(format!(
                    "item id {} is already in the model's catalogue (or given twice)",
                    m.id
                )));
            }
        }
        // An item the towers never saw gets the out-of-vocabulary id row: only what else the
        // candidate tower reads of it (title, genres, year) can tell new items apart.
        let content: Vec<&str> = self
            .candidate
            .spec
            .features
            .iter()
            .filter_map(|f| f.get_ref().column())
            .filter(|c| *c != "item_id")
            .collect();
        if content.is_empty() {
            return Err(ModelError::Config(
                "the model's candidate tower reads only the item id: every new item would get \
                 the same vector. Train towers whose candidate tower also reads the items' \
                 title, genres or year (for example --towers towers/movielens-cold.toml) to \
                 place new items"
                    .into(),
            ));
        }
        let added = new.len();
        let mut model = self.clone();
        model.movies.extend(new);
        model.catalogue = crate::towers::Catalogue::from_movies(&model.movies);
        for k in 0..model.query.inputs.len() {
            let Some((encoder, _)) = model.query.table_of_feature(k) else {
                continue;
            };
            if let Input::History { items, .. } = &mut model.query.inputs[k] {
                *items += added;
                if let Some(crate::nn::Encoder::Bag(b)) =
                    model.query.tower.encoders.get_mut(encoder)
                {
                    b.table
                        .data
                        .extend(std::iter::repeat_n(0.0, added * b.table.dim));
                    b.table.rows += added;
                }
            }
        }
        Ok(model)
    }

    /// An error unless the query tower reads a history (what describes a visitor).
    fn require_history_tower(&self) -> Result<()> {
        let reads_history = self
            .spec
            .query
            .features
            .iter()
            .any(|f| matches!(f.get_ref(), FeatureSpec::History { .. }));
        if !reads_history {
            return Err(ModelError::Mismatch(
                "this model's query tower reads no history (no `history` feature), so a \
                 history cannot describe a new user to it"
                    .into(),
            ));
        }
        Ok(())
    }

    /// A visitor described by the item ids `ids` (oldest first): ids not in the catalogue
    /// are skipped (and listed in the answer); when none is left, the answer is the most
    /// popular items of training, and says so. See [`FeatureModel::recommend_visitor`].
    pub fn recommend_history(
        &self,
        index: &Index,
        ids: &[String],
        features: &[(String, String)],
        k: usize,
        exclude_given: bool,
    ) -> Result<VisitorAnswer> {
        let described = self.describe(features)?;
        let (rows, skipped) = self.catalogue.rows_of_ids(ids);
        self.require_history_tower()?;
        // A history whose items no training interaction has (ids not in the catalogue, or
        // only items added after training, whose history rows training never wrote) says
        // nothing the model learned: popularity answers it.
        let counts = self.data.item_counts();
        if !rows
            .iter()
            .any(|&r| counts.get(r as usize).is_some_and(|&c| c > 0))
        {
            return Ok(VisitorAnswer {
                recommendations: self.popular(k),
                used: rows.len(),
                skipped,
                popularity: true,
            });
        }
        let q = self.visitor_vector(&rows, &described)?;
        Ok(VisitorAnswer {
            recommendations: self.rank_visitor(index, &q, &rows, k, exclude_given)?,
            used: rows.len(),
            skipped,
            popularity: false,
        })
    }

    /// The `k` items most often interacted with in training (scored by that count).
    pub fn popular(&self, k: usize) -> Recommendations {
        let mut counts: Vec<f32> = self.data.item_counts().iter().map(|&c| c as f32).collect();
        counts.resize(self.catalogue.len(), 0.0);
        Recommendations {
            known_user: false,
            items: twotower_index::top_k(&counts, k, &[]),
        }
    }

    /// [`FeatureModel::recommend_batch`] for one user, with an index built for it.
    pub fn recommend(&self, user: u32, k: usize, exclude_seen: bool) -> Result<Recommendations> {
        let index = Index::Exact(self.exact_index()?);
        let mut all = self.recommend_batch(&index, &[user], k, exclude_seen)?;
        all.pop()
            .ok_or_else(|| ModelError::Config("no answer for the user".into()))
    }

    /// Query vectors of up to `n` of the users the model knows, sampled with `seed`, each
    /// now: the model's own queries, for tuning an approximate index.
    pub fn sample_queries(&self, n: usize, seed: u64) -> Result<Vec<f32>> {
        use rand::SeedableRng;
        let users = self.data.user_ids();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let pick: Vec<Query> = rand::seq::index::sample(&mut rng, users.len(), users.len().min(n))
            .iter()
            .map(|i| Query::at(users[i], self.data.last_time(users[i]) + 1))
            .collect();
        self.query_vectors(&pick)
    }

    /// The `k` rows of `cosine` (from [`FeatureModel::cosine_index`]) closest to row
    /// `row`, itself excluded.
    pub fn similar(&self, cosine: &BruteForceIndex, row: usize, k: usize) -> Vec<Neighbor> {
        cosine.search(
            cosine.vector(row),
            k.min(self.catalogue.len()),
            &[row as u32],
        )
    }

    /// `recs` (answered for `user`) ready to print or serialise.
    pub fn user_items(&self, user: &str, recs: &Recommendations) -> UserItems<'_> {
        self.catalogue.user_items(user, recs)
    }

    /// `items` (ranked like catalogue row `row`) ready to print or serialise.
    pub fn similar_items(&self, row: usize, items: &[Neighbor]) -> SimilarItems<'_> {
        self.catalogue.similar_items(row, items)
    }
}

impl IndexedModel for SavedFeatureModel {
    fn candidate_vectors_index(&self) -> Result<BruteForceIndex> {
        self.model.exact_index()
    }

    fn own_queries(&self, n: usize, seed: u64) -> Result<Vec<f32>> {
        self.model.sample_queries(n, seed)
    }
}

/// The answer to a visitor's history (see [`FeatureModel::recommend_history`]).
#[derive(Debug, Clone)]
pub struct VisitorAnswer {
    pub recommendations: Recommendations,
    /// How many of the history's ids are in the catalogue (and were read).
    pub used: usize,
    /// The ids that are not.
    pub skipped: Vec<String>,
    /// True when no id was known (or only items added after training) and the answer is
    /// the most popular items.
    pub popularity: bool,
}

/// A model folder of either format.
#[derive(Debug)]
pub enum AnyModel {
    /// Format 1: id towers.
    Ids(Box<SavedModel>),
    /// Format 2: feature towers.
    Features(Box<SavedFeatureModel>),
}

impl AnyModel {
    /// Loads `dir` as the format its `model.json` says.
    pub fn load(dir: &Path) -> Result<Self> {
        if declared_version(dir) == Some(FEATURE_FORMAT_VERSION as u64) {
            return SavedFeatureModel::load(dir).map(|m| AnyModel::Features(Box::new(m)));
        }
        SavedModel::load(dir).map(|m| AnyModel::Ids(Box::new(m)))
    }

    /// Problems found on load that do not make the model wrong.
    pub fn warnings(&self) -> &[String] {
        match self {
            AnyModel::Ids(m) => &m.warnings,
            AnyModel::Features(m) => &m.warnings,
        }
    }
}

/// A user id of a feature model (an integer, as logs and MovieLens give them).
pub fn feature_user(user: &str) -> Result<u32> {
    user.trim().parse().map_err(|_| {
        ModelError::Mismatch(format!(
            "user {} is not an integer id (feature models key users by their integer ids)",
            twotower_data::shown(user)
        ))
    })
}

impl FeatureModel {
    /// Both protocols on `spec`'s test side of `ml` (whose catalogue must be the model's),
    /// each test interaction under its own query with the model's training histories, and
    /// popularity's on the same split: (model, popularity). With `index`, ranked through
    /// that approximate index (see [`crate::feature_scorer::FeatureRetriever`]).
    pub fn evaluate_on(
        &self,
        ml: &Dataset,
        spec: &SplitSpec,
        index: Option<&twotower_index::AnnIndex>,
    ) -> Result<(Metrics, Metrics)> {
        let (train, test) = ml.split(spec)?;
        same_catalogue(&self.catalogue, ml)?;
        let split = SplitEval::new(ml, &train, &test)?;
        let times: Vec<i64> = test.iter().map(|r| r.timestamp).collect();
        let scorer = self.scorer(&split.test, &times)?;
        let metrics = match index {
            Some(index) => {
                crate::eval::evaluate_retrieved(&scorer.through(index), &split.test, &split.seen)
            }
            None => crate::eval::evaluate(&scorer, self.catalogue.len(), &split.test, &split.seen),
        };
        Ok((metrics, split.popularity()))
    }
}
