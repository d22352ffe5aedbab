//! Alternating least squares for implicit feedback (Hu, Koren & Volinsky 2008), solved
//! with a few conjugate-gradient steps per row (Takács, Pilászy & Tikk 2011, as implicit's
//! `AlternatingLeastSquares` does): a closed-form warm start for the id tables of two id
//! towers, before (or instead of) softmax epochs.
//!
//! Every observed (user, item) pair has weight `alpha` and target 1, every other pair weight
//! 1 and target 0, and both tables carry an L2 penalty `regularization` per row. With the
//! item table fixed, each user's row is the solution of a `dim × dim` linear system
//! `(YᵀY + λI + Σᵢ (α − 1) yᵢyᵢᵀ) x = α Σᵢ yᵢ` over the user's items `i`; the Gram matrix
//! `YᵀY` is shared by all users, so a sweep costs `O((users + items) · dim² + pairs · dim)`.
//!
//! ```
//! use twotower_model::als::Als;
//! use twotower_model::embedding::Embedding;
//! let mut rng = rand::thread_rng();
//! let (mut users, mut items) = (Embedding::uniform(3, 4, &mut rng), Embedding::uniform(5, 4, &mut rng));
//! let pairs = [(0, 1), (0, 2), (1, 2), (2, 4)];
//! Als { iterations: 5, ..Als::default() }.fit(&pairs, &mut users, &mut items, &|| false).unwrap();
//! ```

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use twotower_kernels::simd::dot;

use crate::embedding::Embedding;
use crate::{ModelError, Result};

/// The settings of an ALS warm start (implicit's names).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Als {
    /// Sweeps over both tables (each solves the users, then the items).
    pub iterations: usize,
    /// L2 penalty per row (λ).
    pub regularization: f32,
    /// Weight of an observed pair (confidence; unobserved pairs weigh 1).
    pub alpha: f32,
    /// Conjugate-gradient steps per row and sweep.
    pub cg_steps: usize,
    /// Frequency-scaled regularisation (Rendle et al. 2022, "Revisiting the performance of
    /// iALS"): a row with `n` pairs against `N` rows of the other side is penalised by
    /// `regularization · (alpha · n + N)^reg_exponent`; 0 is a flat penalty.
    #[serde(default)]
    pub reg_exponent: f32,
    /// Popularity-weighted negatives (He et al. 2016, eALS): the unobserved pairs of an
    /// item with `n` training pairs weigh `(n + 1)^popularity_exponent`, scaled to a mean of
    /// 1 over the items; 0 weighs them all 1.
    #[serde(default)]
    pub popularity_exponent: f32,
}

impl Default for Als {
    fn default() -> Self {
        Als {
            iterations: 15,
            regularization: 50.0,
            alpha: 20.0,
            cg_steps: 3,
            reg_exponent: 0.0,
            popularity_exponent: 0.0,
        }
    }
}

/// Rows of one side and, for each, the rows of the other side it was paired with.
struct Adjacency {
    offsets: Vec<usize>,
    others: Vec<u32>,
}

impl Adjacency {
    /// Distinct `(row, other)` pairs grouped by row, for `rows` rows.
    fn new(pairs: impl Iterator<Item = (u32, u32)>, rows: usize) -> Self {
        let mut sorted: Vec<(u32, u32)> = pairs.collect();
        sorted.sort_unstable();
        sorted.dedup();
        let mut offsets = vec![0usize; rows + 1];
        for &(r, _) in &sorted {
            offsets[r as usize + 1] += 1;
        }
        for i in 0..rows {
            offsets[i + 1] += offsets[i];
        }
        Adjacency {
            offsets,
            others: sorted.into_iter().map(|(_, o)| o).collect(),
        }
    }

    fn of(&self, row: usize) -> &[u32] {
        &self.others[self.offsets[row]..self.offsets[row + 1]]
    }
}

impl Als {
    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(ModelError::Config(format!("ALS warm start: {m}")));
        if !(self.regularization.is_finite() && self.regularization >= 0.0) {
            return bad("the regularization must be finite and at least 0");
        }
        if !(self.alpha.is_finite() && self.alpha > 0.0) {
            return bad("alpha must be finite and above 0");
        }
        if !(self.reg_exponent.is_finite() && self.popularity_exponent.is_finite()) {
            return bad("the exponents must be finite");
        }
        if self.cg_steps == 0 {
            return bad("at least one conjugate-gradient step per row is needed");
        }
        Ok(())
    }

    /// Fits `users` and `items` (same `dim`, their current rows the starting point) to the
    /// `(user row, item row)` pairs, stopping between sweeps once `stop()` says so.
    pub fn fit(
        &self,
        pairs: &[(u32, u32)],
        users: &mut Embedding,
        items: &mut Embedding,
        stop: &dyn Fn() -> bool,
    ) -> Result<()> {
        self.validate()?;
        if users.dim != items.dim {
            return Err(ModelError::Config(format!(
                "ALS warm start: the user table has {} columns and the item table {}",
                users.dim, items.dim
            )));
        }
        if let Some(&(u, i)) = pairs
            .iter()
            .find(|&&(u, i)| u as usize >= users.rows || i as usize >= items.rows)
        {
            return Err(ModelError::Config(format!(
                "ALS warm start: pair ({u}, {i}) is outside the tables ({} users, {} items)",
                users.rows, items.rows
            )));
        }
        let by_user = Adjacency::new(pairs.iter().copied(), users.rows);
        let by_item = Adjacency::new(pairs.iter().map(|&(u, i)| (i, u)), items.rows);
        let weights = self.negative_weights(&by_item, items.rows);
        for _ in 0..self.iterations {
            if stop() {
                break;
            }
            self.solve(users, &by_user, items, None, weights.as_deref());
            self.solve(items, &by_item, users, weights.as_deref(), None);
        }
        Ok(())
    }

    /// The weight of each item's unobserved pairs (`None`: all 1).
    fn negative_weights(&self, by_item: &Adjacency, items: usize) -> Option<Vec<f32>> {
        if self.popularity_exponent == 0.0 || items == 0 {
            return None;
        }
        let raw: Vec<f64> = (0..items)
            .map(|i| ((by_item.of(i).len() + 1) as f64).powf(self.popularity_exponent as f64))
            .collect();
        let mean = raw.iter().sum::<f64>() / items as f64;
        Some(raw.iter().map(|w| (w / mean) as f32).collect())
    }

    /// One half-sweep: every row of `x` solved against the fixed `y`. Unobserved pairs
    /// weigh `x_weights[row] · y_weights[other]` (1 where `None`).
    fn solve(
        &self,
        x: &mut Embedding,
        adjacency: &Adjacency,
        y: &Embedding,
        x_weights: Option<&[f32]>,
        y_weights: Option<&[f32]>,
    ) {
        let d = x.dim;
        if d == 0 {
            return;
        }
        let side = Fixed::new(y, y_weights);
        x.data.par_chunks_mut(d).enumerate().for_each_init(
            || Scratch::new(d),
            |s, (row, xr)| {
                let scale = x_weights.map_or(1.0, |w| w[row]);
                self.solve_row(&side, adjacency.of(row), scale, self.cg_steps, xr, s);
            },
        );
    }

    /// Query vectors for users training never saw, from the item rows each picked
    /// (`histories`): the row ALS would give such a user against the fitted `items` (the
    /// fold-in of a new user), solved to convergence from zero. `pairs` are the training
    /// pairs the items were fitted on (they set the popularity weights).
    pub fn fold_in(
        &self,
        pairs: &[(u32, u32)],
        items: &Embedding,
        histories: &[Vec<u32>],
    ) -> Result<Vec<Vec<f32>>> {
        self.validate()?;
        let bad = histories
            .iter()
            .flatten()
            .chain(pairs.iter().map(|(_, i)| i))
            .find(|&&i| i as usize >= items.rows);
        if let Some(i) = bad {
            return Err(ModelError::Config(format!(
                "ALS fold-in: item row {i} is outside the table of {} items",
                items.rows
            )));
        }
        let by_item = Adjacency::new(pairs.iter().map(|&(u, i)| (i, u)), items.rows);
        let weights = self.negative_weights(&by_item, items.rows);
        let side = Fixed::new(items, weights.as_deref());
        let d = items.dim;
        Ok(histories
            .par_iter()
            .map_init(
                || Scratch::new(d),
                |s, history| {
                    let mut picked = history.clone();
                    picked.sort_unstable();
                    picked.dedup();
                    let mut x = vec![0.0f32; d];
                    self.solve_row(&side, &picked, 1.0, d.max(self.cg_steps), &mut x, s);
                    x
                },
            )
            .collect())
    }

    /// Conjugate-gradient `steps` from `xr` towards the row's solution against `side`, its
    /// pairs `others`, its unobserved pairs scaled by `scale`.
    fn solve_row(
        &self,
        side: &Fixed,
        others: &[u32],
        scale: f32,
        steps: usize,
        xr: &mut [f32],
        s: &mut Scratch,
    ) {
        let (y, y_weights) = (side.y, side.weights);
        let lambda = self.regularization
            * (self.alpha * others.len() as f32 + y.rows as f32).powf(self.reg_exponent);
        // A·v = (s·G + λI) v + Σ (α − s·wᵢ) yᵢ (yᵢ·v) with G = Σ wⱼ yⱼyⱼᵀ over all rows of
        // y, and the sum over this row's pairs.
        let apply = |v: &[f32], out: &mut [f32]| {
            matvec(&side.gram, v, out);
            for (o, v) in out.iter_mut().zip(v) {
                *o = scale * *o + lambda * v;
            }
            for &o in others {
                let yo = y.row(o as usize);
                let w = y_weights.map_or(1.0, |w| w[o as usize]);
                let c = (self.alpha - scale * w) * dot(yo, v);
                axpy(c, yo, out);
            }
        };
        // r = b − A·x with b = α Σ yᵢ.
        apply(xr, &mut s.ap);
        s.r.fill(0.0);
        for &o in others {
            axpy(self.alpha, y.row(o as usize), &mut s.r);
        }
        for (r, a) in s.r.iter_mut().zip(&s.ap) {
            *r -= a;
        }
        s.p.copy_from_slice(&s.r);
        let mut rs = dot(&s.r, &s.r);
        for _ in 0..steps {
            if rs < 1e-20 {
                break;
            }
            apply(&s.p, &mut s.ap);
            let pap = dot(&s.p, &s.ap);
            // A zero or NaN curvature: nothing left to solve.
            if pap.is_nan() || pap <= 0.0 {
                break;
            }
            let step = rs / pap;
            axpy(step, &s.p, xr);
            axpy(-step, &s.ap, &mut s.r);
            let next = dot(&s.r, &s.r);
            let beta = next / rs;
            for (p, r) in s.p.iter_mut().zip(&s.r) {
                *p = r + beta * *p;
            }
            rs = next;
        }
    }
}

/// The fixed side of a half-sweep: its table, the weights of its unobserved pairs and
/// their weighted Gram matrix.
struct Fixed<'a> {
    y: &'a Embedding,
    weights: Option<&'a [f32]>,
    gram: Vec<f32>,
}

impl<'a> Fixed<'a> {
    fn new(y: &'a Embedding, weights: Option<&'a [f32]>) -> Self {
        Fixed {
            y,
            weights,
            gram: gram(y, weights),
        }
    }
}

/// Per-thread vectors of one row's conjugate-gradient solve.
struct Scratch {
    r: Vec<f32>,
    p: Vec<f32>,
    ap: Vec<f32>,
}

impl Scratch {
    fn new(d: usize) -> Self {
        Scratch {
            r: vec![0.0; d],
            p: vec![0.0; d],
            ap: vec![0.0; d],
        }
    }
}

/// `Σⱼ wⱼ yⱼyⱼᵀ` over the rows of a table (`wⱼ` = 1 without `weights`), `dim × dim`
/// row-major: blocks of rows in parallel, their sums added in order (the same result
/// whatever the threads).
fn gram(y: &Embedding, weights: Option<&[f32]>) -> Vec<f32> {
    const BLOCK: usize = 1024;
    let d = y.dim;
    let blocks: Vec<Vec<f32>> = y
        .data
        .par_chunks(BLOCK * d)
        .enumerate()
        .map(|(b, block)| {
            let mut g = vec![0.0f32; d * d];
            for (j, r) in block.chunks_exact(d).enumerate() {
                let w = weights.map_or(1.0, |w| w[b * BLOCK + j]);
                for (k, &rk) in r.iter().enumerate() {
                    axpy(w * rk, r, &mut g[k * d..(k + 1) * d]);
                }
            }
            g
        })
        .collect();
    let mut sum = vec![0.0f32; d * d];
    for g in &blocks {
        axpy(1.0, g, &mut sum);
    }
    sum
}

/// `out = m · v` for a square row-major `m`.
fn matvec(m: &[f32], v: &[f32], out: &mut [f32]) {
    let d = v.len();
    for (o, row) in out.iter_mut().zip(m.chunks_exact(d)) {
        *o = dot(row, v);
    }
}

/// `y += a · x`.
fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    for (y, x) in y.iter_mut().zip(x) {
        *y += a * x;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    /// The weight of pair (u, i), its target, and each row's penalty, straight from the
    /// definitions (no Gram matrix).
    struct Loss<'a> {
        als: &'a Als,
        set: std::collections::HashSet<(u32, u32)>,
        item_weight: Vec<f32>,
        user_count: Vec<usize>,
        item_count: Vec<usize>,
    }

    impl<'a> Loss<'a> {
        fn new(als: &'a Als, pairs: &[(u32, u32)], users: usize, items: usize) -> Self {
            let set: std::collections::HashSet<_> = pairs.iter().copied().collect();
            let mut user_count = vec![0; users];
            let mut item_count = vec![0; items];
            for &(u, i) in &set {
                user_count[u as usize] += 1;
                item_count[i as usize] += 1;
            }
            let raw: Vec<f64> = item_count
                .iter()
                .map(|&n| ((n + 1) as f64).powf(als.popularity_exponent as f64))
                .collect();
            let mean = raw.iter().sum::<f64>() / items as f64;
            Loss {
                als,
                set,
                item_weight: raw.iter().map(|w| (w / mean) as f32).collect(),
                user_count,
                item_count,
            }
        }

        /// (weight, target) of pair (u, i).
        fn pair(&self, u: usize, i: usize) -> (f32, f32) {
            if self.set.contains(&(u as u32, i as u32)) {
                (self.als.alpha, 1.0)
            } else {
                (self.item_weight[i], 0.0)
            }
        }

        fn penalty(&self, count: usize, others: usize) -> f32 {
            let a = self.als;
            a.regularization * (a.alpha * count as f32 + others as f32).powf(a.reg_exponent)
        }

        /// The norm of the loss's gradient in row `x` (penalised by `penalty`), paired with
        /// each row `j` of `others` as `pair(j)` = (weight, target) says.
        fn gradient_norm(
            &self,
            x: &[f32],
            penalty: f32,
            others: &Embedding,
            pair: impl Fn(usize) -> (f32, f32),
        ) -> f32 {
            let mut g: Vec<f32> = x.iter().map(|v| penalty * v).collect();
            for j in 0..others.rows {
                let (c, p) = pair(j);
                axpy(c * (dot(x, others.row(j)) - p), others.row(j), &mut g);
            }
            dot(&g, &g).sqrt()
        }

        fn value(&self, u: &Embedding, v: &Embedding) -> f64 {
            let mut loss = 0.0f64;
            for a in 0..u.rows {
                for b in 0..v.rows {
                    let (w, p) = self.pair(a, b);
                    loss += w as f64 * (p as f64 - dot(u.row(a), v.row(b)) as f64).powi(2);
                }
            }
            let norm = |r: &[f32]| r.iter().map(|&x| (x as f64).powi(2)).sum::<f64>();
            for a in 0..u.rows {
                loss += self.penalty(self.user_count[a], v.rows) as f64 * norm(u.row(a));
            }
            for b in 0..v.rows {
                loss += self.penalty(self.item_count[b], u.rows) as f64 * norm(v.row(b));
            }
            loss
        }
    }

    fn problem() -> (Vec<(u32, u32)>, Embedding, Embedding) {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let pairs: Vec<(u32, u32)> = (0..40u32)
            .flat_map(|u| [(u, u % 7), (u, (u * 3) % 11), (u, 11 + u % 2)])
            .collect();
        let users = Embedding::uniform(40, 6, &mut rng);
        let items = Embedding::uniform(13, 6, &mut rng);
        (pairs, users, items)
    }

    /// Plain iALS, and with both the frequency-scaled penalty and popularity-weighted
    /// negatives.
    fn settings(cg_steps: usize) -> [Als; 2] {
        let plain = Als {
            iterations: 1,
            regularization: 0.5,
            alpha: 10.0,
            cg_steps,
            reg_exponent: 0.0,
            popularity_exponent: 0.0,
        };
        let weighted = Als {
            regularization: 0.01,
            reg_exponent: 1.0,
            popularity_exponent: 0.5,
            ..plain
        };
        [plain, weighted]
    }

    #[test]
    fn each_sweep_lowers_the_objective_and_fits_the_pairs() {
        for als in settings(6) {
            let (pairs, mut users, mut items) = problem();
            let loss = Loss::new(&als, &pairs, users.rows, items.rows);
            let mut last = loss.value(&users, &items);
            for _ in 0..8 {
                als.fit(&pairs, &mut users, &mut items, &|| false).unwrap();
                let now = loss.value(&users, &items);
                assert!(now < last + 1e-6 * last, "{als:?}: {now} after {last}");
                last = now;
            }
            // The user's own items outscore the rest.
            let (mut own, mut other) = (0.0, 0.0);
            for u in 0..40 {
                for i in 0..13 {
                    let s = dot(users.row(u), items.row(i));
                    if loss.pair(u, i).1 == 1.0 {
                        own += s / pairs.len() as f32;
                    } else {
                        other += s / (40.0 * 13.0 - pairs.len() as f32);
                    }
                }
            }
            assert!(
                own > 0.5 && other < 0.2,
                "{als:?}: own {own}, other {other}"
            );
        }
    }

    #[test]
    fn a_half_sweep_zeroes_the_gradient_of_its_rows() {
        // With enough CG steps, a half-sweep solves each row exactly: the gradient of the
        // loss, summed over every pair from its definition, vanishes.
        for als in settings(40) {
            let (pairs, mut users, mut items) = problem();
            let loss = Loss::new(&als, &pairs, users.rows, items.rows);
            let by_user = Adjacency::new(pairs.iter().copied(), users.rows);
            let by_item = Adjacency::new(pairs.iter().map(|&(u, i)| (i, u)), items.rows);
            let w = als.negative_weights(&by_item, items.rows);
            als.solve(&mut users, &by_user, &items, None, w.as_deref());
            for u in 0..users.rows {
                let penalty = loss.penalty(loss.user_count[u], items.rows);
                let n = loss.gradient_norm(users.row(u), penalty, &items, |i| loss.pair(u, i));
                assert!(n < 2e-3, "{als:?} user {u}: gradient {n}");
            }
            als.solve(&mut items, &by_item, &users, w.as_deref(), None);
            for i in 0..items.rows {
                let penalty = loss.penalty(loss.item_count[i], users.rows);
                let n = loss.gradient_norm(items.row(i), penalty, &users, |u| loss.pair(u, i));
                assert!(n < 2e-3, "{als:?} item {i}: gradient {n}");
            }
        }
    }

    #[test]
    fn a_folded_in_user_gets_the_row_training_would_give_them() {
        for als in settings(40) {
            let (pairs, mut users, mut items) = problem();
            let fit = Als {
                iterations: 6,
                ..als
            };
            fit.fit(&pairs, &mut users, &mut items, &|| false).unwrap();
            // One more exact user half-sweep against the final items: each user's row is
            // then what folding in their items gives.
            let by_user = Adjacency::new(pairs.iter().copied(), users.rows);
            let by_item = Adjacency::new(pairs.iter().map(|&(u, i)| (i, u)), items.rows);
            let w = als.negative_weights(&by_item, items.rows);
            als.solve(&mut users, &by_user, &items, None, w.as_deref());
            let histories: Vec<Vec<u32>> =
                (0..users.rows).map(|u| by_user.of(u).to_vec()).collect();
            let folded = als.fold_in(&pairs, &items, &histories).unwrap();
            for (u, x) in folded.iter().enumerate() {
                let diff: f32 = x.iter().zip(users.row(u)).map(|(a, b)| (a - b).abs()).sum();
                assert!(
                    diff < 1e-3,
                    "{als:?} user {u}: {x:?} against {:?}",
                    users.row(u)
                );
            }
        }
        // An item outside the table is an error, not a panic.
        let (pairs, _, items) = problem();
        let e = Als::default()
            .fold_in(&pairs, &items, &[vec![1, 99]])
            .unwrap_err();
        assert!(e.to_string().contains("item row 99"), "{e}");
    }

    #[test]
    fn bad_settings_and_pairs_are_errors() {
        let (pairs, mut users, mut items) = problem();
        let mut bad = pairs.clone();
        bad.push((0, 99));
        let e = Als::default()
            .fit(&bad, &mut users, &mut items, &|| false)
            .unwrap_err();
        assert!(e.to_string().contains("(0, 99)"), "{e}");
        let e = Als {
            alpha: 0.0,
            ..Als::default()
        }
        .fit(&pairs, &mut users, &mut items, &|| false)
        .unwrap_err();
        assert!(e.to_string().contains("alpha"), "{e}");
    }
}
