//! Answering queries with a trained model: top-k rows for a user, similar rows for a row.
//!
//! Both go through an exact [`BruteForceIndex`] over the catalogue; in title-keyed models
//! rows that share a title (and so a vector) are returned once.

use twotower_index::{BruteForceIndex, Neighbor};

use crate::towers::TwoTowerModel;

/// Top-k rows for a user.
#[derive(Debug, Clone, PartialEq)]
pub struct Recommendations {
    /// False when the user id was not in the vocabulary (answered from the OOV vector).
    pub known_user: bool,
    pub items: Vec<Neighbor>,
}

impl TwoTowerModel {
    /// The `k` best rows for `user` by dot product; `exclude_seen` drops their training items.
    pub fn recommend(
        &self,
        index: &BruteForceIndex,
        user: &str,
        k: usize,
        exclude_seen: bool,
    ) -> Recommendations {
        let (q, known) = self.query.embed(user);
        let idx = self.query.vocab.lookup(user);
        let seen: &[u32] = if exclude_seen && known {
            self.seen.of(idx).0
        } else {
            &[]
        };
        Recommendations {
            known_user: known,
            items: self.distinct_keys(index.search(q, index.len(), seen), k),
        }
    }

    /// The `k` rows whose candidate vectors are closest in cosine to row `row`'s (itself and
    /// rows sharing its key excluded), with `index` built by [`TwoTowerModel::cosine_index`].
    pub fn similar(&self, index: &BruteForceIndex, row: usize, k: usize) -> Vec<Neighbor> {
        let own = self.row_keys[row];
        let hits = index.search(index.vector(row), index.len(), &[]);
        let others = hits
            .into_iter()
            .filter(|n| self.row_keys[n.id as usize] != own)
            .collect();
        self.distinct_keys(others, k)
    }

    /// The catalogue's candidate vectors scaled to unit length, for cosine similarity.
    pub fn cosine_index(&self) -> BruteForceIndex {
        let mut v = self.candidate.embedding.gather(&self.row_keys);
        for row in v.chunks_mut(self.dim()) {
            let n = row.iter().map(|x| x * x).sum::<f32>().sqrt();
            if n > 0.0 {
                row.iter_mut().for_each(|x| *x /= n);
            }
        }
        BruteForceIndex::new(v, self.dim()).expect("rows have the model's dimension")
    }

    fn distinct_keys(&self, ranked: Vec<Neighbor>, k: usize) -> Vec<Neighbor> {
        let mut taken = std::collections::HashSet::new();
        ranked
            .into_iter()
            .filter(|n| taken.insert(self.row_keys[n.id as usize]))
            .take(k)
            .collect()
    }
}
