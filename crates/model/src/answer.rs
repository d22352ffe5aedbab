//! What a model of either format ([`AnyModel`]: id towers or feature towers) answers,
//! through one set of calls: the catalogue, users' top-k, similar items, the towers'
//! vectors, evaluation on a split, and saving. The Python package and the commands that
//! take both formats go through here instead of matching on the format themselves.

use std::path::Path;

use twotower_data::{Dataset, SplitSpec};
use twotower_index::{AnnIndex, Index, Neighbor};

use crate::feature_answer::{feature_user, AnyModel};
use crate::query_data::Query;
use crate::IndexedModel;
use crate::{Catalogue, EpochStats, Metrics, Recommendations, Result, SplitEval};

/// Vectors of a tower, row-major: `rows × dim`, with the id of each row.
pub struct Vectors {
    pub ids: Vec<String>,
    pub data: Vec<f32>,
    pub dim: usize,
}

impl AnyModel {
    /// The items the model ranks.
    pub fn catalogue(&self) -> &Catalogue {
        match self {
            AnyModel::Ids(m) => &m.model.catalogue,
            AnyModel::Features(m) => &m.model.catalogue,
        }
    }

    /// Test metrics (model and popularity) recorded when the model was trained.
    pub fn recorded_metrics(&self) -> &serde_json::Value {
        match self {
            AnyModel::Ids(m) => &m.card.metrics,
            AnyModel::Features(m) => &m.card.metrics,
        }
    }

    /// The training history, one entry per epoch.
    pub fn history(&self) -> &[EpochStats] {
        match self {
            AnyModel::Ids(m) => &m.history,
            AnyModel::Features(m) => &m.history,
        }
    }

    /// The width of the towers' vectors.
    pub fn dim(&self) -> usize {
        match self {
            AnyModel::Ids(m) => m.model.dim(),
            AnyModel::Features(m) => m.model.candidate.tower.output_width(),
        }
    }

    /// The exact index over the candidate vectors.
    pub fn exact_index(&self) -> Result<Index> {
        Ok(match self {
            AnyModel::Ids(m) => m.model.exact_index(),
            AnyModel::Features(m) => Index::Exact(m.model.exact_index()?),
        })
    }

    /// The `k` best rows of `index` (from [`AnyModel::exact_index`] or the model folder's
    /// approximate index) for each of `users` (ids as the data gives them) now;
    /// `exclude_seen` drops their training items. A user the model does not know is
    /// answered from what its towers give an unknown id (`known_user` false); a feature
    /// model needs integer ids.
    pub fn recommend(
        &self,
        index: &Index,
        users: &[String],
        k: usize,
        exclude_seen: bool,
    ) -> Result<Vec<Recommendations>> {
        match self {
            AnyModel::Ids(m) => Ok(m.model.recommend_batch(index, users, k, exclude_seen)),
            AnyModel::Features(m) => {
                let ids = users
                    .iter()
                    .map(|u| feature_user(u))
                    .collect::<Result<Vec<u32>>>()?;
                m.model.recommend_batch(index, &ids, k, exclude_seen)
            }
        }
    }

    /// For each catalogue row of `rows`, the `k` rows whose candidate vectors are closest
    /// by cosine, itself excluded.
    pub fn similar(&self, rows: &[usize], k: usize) -> Result<Vec<Vec<Neighbor>>> {
        Ok(match self {
            AnyModel::Ids(m) => {
                let cosine = m.model.cosine_index();
                rows.iter()
                    .map(|&r| m.model.similar(&cosine, r, k))
                    .collect()
            }
            AnyModel::Features(m) => {
                let cosine = m.model.cosine_index()?;
                rows.iter()
                    .map(|&r| m.model.similar(&cosine, r, k))
                    .collect()
            }
        })
    }

    /// The candidate tower's vector of every catalogue row.
    pub fn item_vectors(&self) -> Result<Vectors> {
        let data = match self {
            AnyModel::Ids(m) => m.model.candidate_index().vectors().to_vec(),
            AnyModel::Features(m) => m.model.candidate_vectors()?,
        };
        Ok(Vectors {
            ids: self.catalogue().ids.clone(),
            data,
            dim: self.dim(),
        })
    }

    /// The query tower's vector of every user the model knows, now (a feature model's
    /// query after the user's last training interaction), by id.
    pub fn user_vectors(&self) -> Result<Vectors> {
        let (ids, data) = match self {
            AnyModel::Ids(m) => {
                // Index 0 is the out-of-vocabulary row, not a user.
                let ids: Vec<String> = m
                    .model
                    .query
                    .vocab
                    .tokens()
                    .iter()
                    .skip(1)
                    .cloned()
                    .collect();
                let data = m.model.query_vectors(&ids);
                (ids, data)
            }
            AnyModel::Features(m) => {
                let users = m.model.data.user_ids();
                let queries: Vec<Query> = users
                    .iter()
                    .map(|&u| Query::at(u, m.model.data.last_time(u) + 1))
                    .collect();
                let data = m.model.query_vectors(&queries)?;
                (users.iter().map(u32::to_string).collect(), data)
            }
        };
        Ok(Vectors {
            ids,
            data,
            dim: self.dim(),
        })
    }

    /// Both protocols on `spec`'s test side of `ml` (whose catalogue must be the model's)
    /// and popularity's on the same split: (model, popularity). With `index`, ranked
    /// through that approximate index.
    pub fn evaluate(
        &self,
        ml: &Dataset,
        spec: &SplitSpec,
        index: Option<&AnnIndex>,
    ) -> Result<(Metrics, Metrics)> {
        match self {
            AnyModel::Ids(m) => {
                let split = SplitEval::for_model(&m.model, ml, spec)?;
                let metrics = match index {
                    Some(ann) => split.model_approximate(&m.model, ann),
                    None => split.model(&m.model),
                };
                Ok((metrics, split.popularity()))
            }
            AnyModel::Features(m) => m.model.evaluate_on(ml, spec, index),
        }
    }

    /// The approximate index of the model folder `dir` (`twotower index build --model`),
    /// checked against the model's vectors.
    pub fn require_index(&self, dir: &Path) -> Result<AnnIndex> {
        match self {
            AnyModel::Ids(m) => m.require_index(dir),
            AnyModel::Features(m) => m.require_index(dir),
        }
    }

    /// Writes the model folder `dir` (replacing only a model folder, atomically).
    pub fn save(&self, dir: &Path) -> Result<()> {
        match self {
            AnyModel::Ids(m) => m.save(dir),
            AnyModel::Features(m) => m.save(dir),
        }
    }
}
