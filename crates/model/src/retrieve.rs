//! Answering queries with a trained model: top-k rows for a user, similar rows for a row.
//!
//! Recommendations go through an [`Index`] over the catalogue's candidate vectors: exact (a
//! [`BruteForceIndex`]) or approximate (the model folder's `index/`). In title-keyed models
//! rows that share a title (and so a vector) are returned once.

use twotower_index::{BruteForceIndex, Index, Neighbor};

use crate::towers::TwoTowerModel;

/// Top-k rows for a user.
#[derive(Debug, Clone, PartialEq)]
pub struct Recommendations {
    /// False when the user id was not in the vocabulary (answered from the OOV vector).
    pub known_user: bool,
    pub items: Vec<Neighbor>,
}

/// The `want` best rows of `index` for each `d`-wide query of `q`, each query's `seen` rows
/// left out: with an exact index, blocks of queries against blocks of rows with a streaming
/// top-k; with an approximate one, a search per query.
pub(crate) fn search(
    index: &Index,
    q: &[f32],
    d: usize,
    want: usize,
    seen: &[&[u32]],
) -> crate::Result<Vec<Vec<Neighbor>>> {
    Ok(match index {
        Index::Exact(exact) => exact.search_batch_excluding(q, want, seen)?,
        Index::Approximate(ann) => q
            .chunks_exact(d.max(1))
            .zip(seen)
            .map(|(qv, skip)| ann.search(qv, want, skip))
            .collect(),
    })
}

impl TwoTowerModel {
    /// The `k` best rows for `user` by dot product; `exclude_seen` drops their training items.
    pub fn recommend(
        &self,
        index: &Index,
        user: &str,
        k: usize,
        exclude_seen: bool,
    ) -> Recommendations {
        let mut all = self.recommend_batch(index, &[user.to_string()], k, exclude_seen);
        all.pop().expect("one answer per user")
    }

    /// [`TwoTowerModel::recommend`] for many users: with an exact index, blocks of users
    /// scored by matrix products against blocks of rows with a streaming top-k (the users ×
    /// catalogue matrix never exists); with an approximate one, a search per user.
    pub fn recommend_batch(
        &self,
        index: &Index,
        users: &[String],
        k: usize,
        exclude_seen: bool,
    ) -> Vec<Recommendations> {
        let q = self.query_vectors(users);
        let d = self.dim();
        let user_rows: Vec<usize> = users.iter().map(|u| self.query.vocab.lookup(u)).collect();
        let seen: Vec<&[u32]> = user_rows
            .iter()
            .map(|&idx| {
                if exclude_seen && idx != 0 {
                    self.seen.of(idx).0
                } else {
                    &[]
                }
            })
            .collect();
        // No more than the catalogue can be returned: a huge k must not reserve memory.
        let k = k.min(self.catalogue.len());
        let want = k.saturating_add(self.shared_keys());
        let ranked =
            search(index, &q, d, want, &seen).expect("query vectors have the model's dimension");
        ranked
            .into_iter()
            .zip(user_rows)
            .map(|(items, idx)| Recommendations {
                known_user: idx != 0,
                items: self.distinct_keys(items, k),
            })
            .collect()
    }

    /// The `k` rows whose candidate vectors are closest in cosine to row `row`'s (itself and
    /// rows sharing its key excluded), with `index` built by [`TwoTowerModel::cosine_index`].
    pub fn similar(&self, index: &BruteForceIndex, row: usize, k: usize) -> Vec<Neighbor> {
        let own = self.row_keys[row];
        let k = k.min(self.catalogue.len());
        let hits = index.search(index.vector(row), k + 1 + self.shared_keys(), &[]);
        let others = hits
            .into_iter()
            .filter(|n| self.row_keys[n.id as usize] != own)
            .collect();
        self.distinct_keys(others, k)
    }

    /// Query vectors of up to `n` users of the vocabulary (not the out-of-vocabulary row),
    /// sampled with `seed`: the model's own queries, for tuning an approximate index.
    pub fn sample_queries(&self, n: usize, seed: u64) -> Vec<f32> {
        use rand::SeedableRng;
        let users = &self.query.vocab.tokens()[1..];
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let pick: Vec<String> = rand::seq::index::sample(&mut rng, users.len(), users.len().min(n))
            .iter()
            .map(|i| users[i].clone())
            .collect();
        self.query_vectors(&pick)
    }

    /// The catalogue's candidate vectors scaled to unit length, for cosine similarity.
    pub fn cosine_index(&self) -> BruteForceIndex {
        let mut v = self.candidate.vectors(&self.row_keys);
        crate::nn::l2_normalize(&mut v, self.dim());
        BruteForceIndex::new(v, self.dim()).expect("rows have the model's dimension")
    }

    /// How many catalogue rows repeat another row's key: fetching this many extra results
    /// leaves `k` after duplicates are dropped.
    fn shared_keys(&self) -> usize {
        (self.catalogue.len() + 1).saturating_sub(self.candidate.vocab.len())
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
