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
//! A [`Coarse`] part fits a second, small factorisation in the tables' last columns, its
//! weight chosen on held-out training pairs.
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
use twotower_kernels::gemm::matmul_nt;
use twotower_kernels::simd::{dot, dot_rows, rank_one_sum};

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
    /// A second, coarse factorisation fitted beside this one in the tables' last columns
    /// (`None`: all columns are this one's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coarse: Option<Coarse>,
}

/// A coarse factorisation beside the fine one: the last `dim` columns of both tables hold a
/// plain ALS fit of its own (flat penalty, every negative weighing 1) whose scores add to
/// the fine part's times `weight` (both sides hold its rows times √weight, so item-item
/// similarities weigh it alike). A few heavily regularised factors rank items by broad
/// taste and popularity, which the fine part's frequency-scaled penalty leaves out; on
/// Last.fm this lifts top-10 by ~5% at an unchanged top-100, on a synthetic log with no
/// such structure it costs at every K, so the weight is chosen per log on held-out pairs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Coarse {
    /// Columns of the coarse part (the fine part has the rest).
    pub dim: usize,
    /// Its L2 penalty per row (flat).
    pub regularization: f32,
    /// Its weight of an observed pair.
    pub alpha: f32,
    /// How much its scores count; `None`: chosen by [`Als::fit`] among [`COARSE_WEIGHTS`]
    /// on a carve of the training pairs (and recorded in the settings it returns).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<f32>,
}

/// The weights [`Als::fit`] chooses a coarse part's among.
pub const COARSE_WEIGHTS: [f32; 5] = [0.0, 0.25, 0.5, 0.75, 1.0];

/// One pair in this many is held out to choose a coarse part's weight.
const CARVE: u64 = 10;

/// The held-out pairs of at most this many users choose the weight.
const CHOOSE_USERS: usize = 2048;

impl Default for Als {
    fn default() -> Self {
        Als {
            iterations: 15,
            regularization: 50.0,
            alpha: 20.0,
            cg_steps: 3,
            reg_exponent: 0.0,
            popularity_exponent: 0.0,
            coarse: None,
        }
    }
}

/// Rows of one side and, for each, the rows of the other side it was paired with.
struct Adjacency {
    offsets: Vec<usize>,
    others: Vec<u32>,
}

/// Training pairs grouped both ways, shared by the parts fitted on them.
struct Sides {
    by_user: Adjacency,
    by_item: Adjacency,
}

impl Sides {
    fn new(pairs: &[(u32, u32)], users: &Embedding, items: &Embedding) -> Self {
        Sides {
            by_user: Adjacency::new(pairs.iter().copied(), users.rows),
            by_item: Adjacency::new(pairs.iter().map(|&(u, i)| (i, u)), items.rows),
        }
    }
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
        if let Some(c) = &self.coarse {
            if c.dim == 0 {
                return bad("the coarse part needs at least one column");
            }
            if !(c.regularization.is_finite() && c.regularization >= 0.0) {
                return bad("the coarse part's regularization must be finite and at least 0");
            }
            if !(c.alpha.is_finite() && c.alpha > 0.0) {
                return bad("the coarse part's alpha must be finite and above 0");
            }
            if c.weight.is_some_and(|w| !(w.is_finite() && w >= 0.0)) {
                return bad("the coarse part's weight must be finite and at least 0");
            }
        }
        Ok(())
    }

    /// GFLOP of the products a [`Als::fit`] of `pairs` pairs between `users` and `items`
    /// rows of `dim` columns performs — each sweep, on each side: the fixed side's Gram
    /// matrix, and for every row its right-hand side and the conjugate-gradient steps (a
    /// Gram product and two passes over its pairs each) — for each part, over the sweeps
    /// it runs (with the coarse part's weight open: the fit on nine pairs in ten, then a
    /// third of the sweeps again; the weight's scoring of held-out pairs is not counted).
    pub fn gflop(&self, pairs: usize, users: usize, items: usize, dim: usize) -> f64 {
        let part = |d: usize, sweeps: usize| {
            let d = d as f64;
            let side = |rows: usize, other: usize| {
                let applies = (self.cg_steps + 1) as f64;
                2.0 * other as f64 * d * d
                    + rows as f64 * applies * 2.0 * d * d
                    + pairs as f64 * (applies * 4.0 * d + 2.0 * d)
            };
            sweeps as f64 * (side(users, items) + side(items, users))
        };
        let flops = match self.coarse {
            None => part(dim, self.iterations),
            Some(c) => {
                let sweeps = match c.weight {
                    Some(_) => self.iterations,
                    None => self.iterations + self.iterations.div_ceil(3),
                };
                part(dim.saturating_sub(c.dim), sweeps) + part(c.dim.min(dim), sweeps)
            }
        };
        flops / 1e9
    }

    /// Fits `users` and `items` (same `dim`, their current rows the starting point) to the
    /// `(user row, item row)` pairs, stopping between sweeps once `stop()` says so. Returns
    /// the settings used: with a coarse part whose weight is open, the weight chosen.
    pub fn fit(
        &self,
        pairs: &[(u32, u32)],
        users: &mut Embedding,
        items: &mut Embedding,
        stop: &dyn Fn() -> bool,
    ) -> Result<Als> {
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
        let Some(coarse) = self.coarse else {
            self.fit_part(&Sides::new(pairs, users, items), users, items, stop);
            return Ok(*self);
        };
        if coarse.dim >= users.dim {
            return Err(ModelError::Config(format!(
                "ALS warm start: the coarse part's {} columns leave none of the tables' {} to \
                 the fine part",
                coarse.dim, users.dim
            )));
        }
        let (fine, rough) = self.parts(&coarse);
        let fine_dim = users.dim - coarse.dim;
        let (mut uf, mut uc) = columns(users, fine_dim);
        let (mut vf, mut vc) = columns(items, fine_dim);
        let (weight, sweeps) = match coarse.weight {
            Some(w) => (w, self.iterations),
            None => {
                // Fitted on nine pairs in ten, the weight chosen on the tenth; then a third
                // of the sweeps over all pairs from there (ALS converges fast from a near
                // solution: on the validation carves of Last.fm and a synthetic log, 3, 5
                // and 15 more sweeps, or 15 from the start, were level within 0.002).
                let (kept, held): (Vec<_>, Vec<_>) =
                    pairs.iter().partition(|&&(u, i)| !held_out(u, i));
                let kept = Sides::new(&kept, users, items);
                fine.fit_part(&kept, &mut uf, &mut vf, stop);
                rough.fit_part(&kept, &mut uc, &mut vc, stop);
                let w = choose_weight(&held, [&uf, &vf], [&uc, &vc]);
                (w, self.iterations.div_ceil(3))
            }
        };
        let sweeps = |als: Als| Als {
            iterations: sweeps,
            ..als
        };
        let all = Sides::new(pairs, users, items);
        sweeps(fine).fit_part(&all, &mut uf, &mut vf, stop);
        sweeps(rough).fit_part(&all, &mut uc, &mut vc, stop);
        // √weight on both sides: the scores gain `weight ·` the coarse part's, and item-item
        // similarities weigh it the same way (nothing of it at weight 0).
        join(users, &uf, &uc, weight.sqrt());
        join(items, &vf, &vc, weight.sqrt());
        Ok(Als {
            coarse: Some(Coarse {
                weight: Some(weight),
                ..coarse
            }),
            ..*self
        })
    }

    /// The fine and coarse parts' settings as plain ALS.
    fn parts(&self, coarse: &Coarse) -> (Als, Als) {
        let fine = Als {
            coarse: None,
            ..*self
        };
        let rough = Als {
            regularization: coarse.regularization,
            alpha: coarse.alpha,
            reg_exponent: 0.0,
            popularity_exponent: 0.0,
            ..fine
        };
        (fine, rough)
    }

    /// Plain ALS sweeps over checked pairs and tables.
    fn fit_part(
        &self,
        pairs: &Sides,
        users: &mut Embedding,
        items: &mut Embedding,
        stop: &dyn Fn() -> bool,
    ) {
        let weights = self.negative_weights(&pairs.by_item, items.rows);
        for _ in 0..self.iterations {
            if stop() {
                break;
            }
            self.solve(users, &pairs.by_user, items, None, weights.as_deref());
            self.solve(items, &pairs.by_item, users, weights.as_deref(), None);
        }
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
    /// pairs the items were fitted on (they set the popularity weights); with a coarse part,
    /// its weight must be the one fitting chose (the settings [`Als::fit`] returned).
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
        let Some(coarse) = self.coarse else {
            return Ok(self.fold_in_part(&by_item, items, histories));
        };
        let Some(weight) = coarse.weight.filter(|_| coarse.dim < items.dim) else {
            return Err(ModelError::Config(format!(
                "ALS fold-in: the coarse part ({} columns of {}) has no chosen weight or no \
                 room",
                coarse.dim, items.dim
            )));
        };
        let (fine, rough) = self.parts(&coarse);
        let (vf, mut vc) = columns(items, items.dim - coarse.dim);
        let mut rows = fine.fold_in_part(&by_item, &vf, histories);
        // The coarse columns hold √weight times the coarse fit's rows (see `fit`): solved
        // against those rows, scaled like a fitted user's. Weight 0: nothing to solve.
        let scale = weight.sqrt();
        if scale > 0.0 {
            vc.data.iter_mut().for_each(|v| *v /= scale);
            let coarse_rows = rough.fold_in_part(&by_item, &vc, histories);
            for (x, c) in rows.iter_mut().zip(coarse_rows) {
                x.extend(c.iter().map(|v| scale * v));
            }
        } else {
            rows.iter_mut().for_each(|x| x.resize(items.dim, 0.0));
        }
        Ok(rows)
    }

    /// [`Als::fold_in`] of plain ALS over checked rows; `by_item`: the training pairs.
    fn fold_in_part(
        &self,
        by_item: &Adjacency,
        items: &Embedding,
        histories: &[Vec<u32>],
    ) -> Vec<Vec<f32>> {
        let weights = self.negative_weights(by_item, items.rows);
        let side = Fixed::new(items, weights.as_deref());
        let d = items.dim;
        histories
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
            .collect()
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
            rank_one_sum(&y.data, others, v, (self.alpha, scale), y_weights, out);
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

/// The first `k` columns of a table and the rest, as two tables.
fn columns(e: &Embedding, k: usize) -> (Embedding, Embedding) {
    (e.columns(0..k), e.columns(k..e.dim))
}

/// Writes `a`'s columns then `b`'s times `scale` into each row of `e`.
fn join(e: &mut Embedding, a: &Embedding, b: &Embedding, scale: f32) {
    for ((r, x), y) in e
        .data
        .chunks_exact_mut(e.dim.max(1))
        .zip(a.data.chunks_exact(a.dim.max(1)))
        .zip(b.data.chunks_exact(b.dim.max(1)))
    {
        let (head, tail) = r.split_at_mut(a.dim);
        head.copy_from_slice(x);
        for (t, v) in tail.iter_mut().zip(y) {
            *t = scale * v;
        }
    }
}

/// Whether a pair is among those held out to choose a coarse weight: one in [`CARVE`],
/// by a hash of the pair (the same pairs whatever their order or the threads).
fn held_out(u: u32, i: u32) -> bool {
    mix((u as u64) << 32 | i as u64).is_multiple_of(CARVE)
}

/// SplitMix64's finaliser: a well-spread hash of `x`.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The weight among [`COARSE_WEIGHTS`] under which the held-out pairs rank best against
/// every item (factorized top-10, 50 and 100, training items not excluded): the one whose
/// smallest gain over weight 0 across the three is largest (so a weight is taken only
/// when every K rises), ties to the smaller weight.
fn choose_weight(held: &[(u32, u32)], fine: [&Embedding; 2], coarse: [&Embedding; 2]) -> f32 {
    const KS: [usize; 3] = [10, 50, 100];
    type Hits = [[usize; KS.len()]; COARSE_WEIGHTS.len()];
    let mut by_user = held.to_vec();
    by_user.sort_unstable();
    let mut groups: Vec<&[(u32, u32)]> = by_user.chunk_by(|a, b| a.0 == b.0).collect();
    // At most CHOOSE_USERS users, the same whatever the order (a large log's scoring would
    // otherwise cost a product of every user against every item).
    if groups.len() > CHOOSE_USERS {
        groups.sort_by_key(|g| mix(g[0].0 as u64));
        groups.truncate(CHOOSE_USERS);
    }
    let n = fine[1].rows;
    // Scores of a block of users against every item, one product per part.
    let scores = |[q, v]: [&Embedding; 2], users: &[u32]| {
        matmul_nt(&q.gather(users), users.len(), &v.data, n, v.dim)
    };
    let mut hits: Hits = Default::default();
    for block in groups.chunks(128) {
        let users: Vec<u32> = block.iter().map(|g| g[0].0).collect();
        let (s1, s2) = (scores(fine, &users), scores(coarse, &users));
        let add = |mut a: Hits, b: Hits| {
            for (a, b) in a.iter_mut().flatten().zip(b.iter().flatten()) {
                *a += b;
            }
            a
        };
        let counted = block
            .par_iter()
            .zip(s1.par_chunks(n.max(1)).zip(s2.par_chunks(n.max(1))))
            .fold(Hits::default, |mut hits, (group, (s1, s2))| {
                let mut s = vec![0.0f32; n];
                for (h, &w) in hits.iter_mut().zip(&COARSE_WEIGHTS) {
                    for (s, (a, b)) in s.iter_mut().zip(s1.iter().zip(s2)) {
                        *s = a + w * b;
                    }
                    for &(_, t) in *group {
                        let truth = s[t as usize];
                        let rank = s.iter().filter(|&&x| x > truth).count();
                        for (h, &k) in h.iter_mut().zip(&KS) {
                            *h += usize::from(rank < k);
                        }
                    }
                }
                hits
            })
            .reduce(Hits::default, add);
        hits = add(hits, counted);
    }
    let gain = |h: &[usize; 3]| -> f64 {
        h.iter()
            .zip(&hits[0])
            .map(|(&h, &h0)| (h as f64 - h0 as f64) / (h0 + 1) as f64)
            .fold(f64::INFINITY, f64::min)
    };
    let mut best = (0.0f64, COARSE_WEIGHTS[0]);
    for (h, &w) in hits.iter().zip(&COARSE_WEIGHTS) {
        let g = gain(h);
        if g > best.0 {
            best = (g, w);
        }
    }
    best.1
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
    dot_rows(v, m, out);
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
            coarse: None,
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
    fn a_coarse_part_is_its_own_fit_beside_the_fine_one() {
        let (pairs, users, items) = problem();
        let coarse = Coarse {
            dim: 2,
            regularization: 1.0,
            alpha: 5.0,
            weight: Some(0.25),
        };
        let als = Als {
            iterations: 4,
            coarse: Some(coarse),
            ..settings(3)[1]
        };
        let (mut u, mut v) = (users.clone(), items.clone());
        assert_eq!(als.fit(&pairs, &mut u, &mut v, &|| false).unwrap(), als);
        // The same as fitting each part on its own columns: the fine one with the
        // refinements, the coarse one plain, both its sides scaled by √weight = 0.5 (its
        // scores by the weight).
        let (fine, rough) = als.parts(&coarse);
        assert_eq!(
            (rough.regularization, rough.alpha, rough.reg_exponent),
            (1.0, 5.0, 0.0)
        );
        assert_eq!((rough.popularity_exponent, fine.reg_exponent), (0.0, 1.0));
        let (mut uf, mut uc) = columns(&users, 4);
        let (mut vf, mut vc) = columns(&items, 4);
        fine.fit(&pairs, &mut uf, &mut vf, &|| false).unwrap();
        rough.fit(&pairs, &mut uc, &mut vc, &|| false).unwrap();
        let close = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(a, b)| (a - b).abs() < 1e-5);
        for r in 0..users.rows {
            let want: Vec<f32> = uf
                .row(r)
                .iter()
                .chain(&uc.row(r).iter().map(|x| 0.5 * x).collect::<Vec<_>>())
                .copied()
                .collect();
            assert!(
                close(u.row(r), &want),
                "user {r}: {:?} against {want:?}",
                u.row(r)
            );
        }
        for r in 0..items.rows {
            let half: Vec<f32> = vc.row(r).iter().map(|x| 0.5 * x).collect();
            assert!(close(&v.row(r)[..4], vf.row(r)) && close(&v.row(r)[4..], &half));
        }
        // A folded-in user likewise: each part's fold-in, the coarse one scaled.
        let history = [vec![1, 5, 11]];
        let both = als.fold_in(&pairs, &v, &history).unwrap();
        let f = fine.fold_in(&pairs, &vf, &history).unwrap();
        let c = rough.fold_in(&pairs, &vc, &history).unwrap();
        assert!(close(&both[0][..4], &f[0]));
        assert!(close(
            &both[0][4..],
            &c[0].iter().map(|x| 0.5 * x).collect::<Vec<_>>()
        ));
        // At weight 0 the coarse columns hold nothing, on either side or in a fold-in.
        let zero = Als {
            coarse: Some(Coarse {
                weight: Some(0.0),
                ..coarse
            }),
            ..als
        };
        let (mut u0, mut v0) = (users.clone(), items.clone());
        zero.fit(&pairs, &mut u0, &mut v0, &|| false).unwrap();
        let folded = zero.fold_in(&pairs, &v0, &history).unwrap();
        for row in (0..40).map(|r| u0.row(r)).chain((0..13).map(|r| v0.row(r))) {
            assert_eq!(&row[4..], &[0.0, 0.0]);
        }
        assert_eq!((folded[0].len(), &folded[0][4..]), (6, &[0.0f32, 0.0][..]));
        // The coarse part must leave the fine one a column, and its weight be a weight.
        let (mut narrow_u, mut narrow_v) = (
            Embedding::uniform(40, 2, &mut rand::thread_rng()),
            Embedding::uniform(13, 2, &mut rand::thread_rng()),
        );
        let e = als
            .fit(&pairs, &mut narrow_u, &mut narrow_v, &|| false)
            .unwrap_err();
        assert!(e.to_string().contains("coarse part's 2 columns"), "{e}");
        let negative = Coarse {
            weight: Some(-1.0),
            ..coarse
        };
        let e = Als {
            coarse: Some(negative),
            ..als
        }
        .validate()
        .unwrap_err();
        assert!(e.to_string().contains("weight"), "{e}");
    }

    #[test]
    fn the_coarse_weight_is_chosen_by_how_held_out_pairs_rank() {
        // 30 users, 300 items; user u held out item u. The informative tables score the
        // ten items i ≡ u (mod 30) 1 and the rest 0; the noise tables score about ±0.01.
        let (users, items) = (30, 300);
        let mut informative = [
            Embedding::uniform(users, 30, &mut rand::thread_rng()),
            Embedding::uniform(items, 30, &mut rand::thread_rng()),
        ];
        for e in &mut informative {
            e.data.fill(0.0);
        }
        for u in 0..users {
            informative[0].row_mut(u)[u] = 1.0;
        }
        for i in 0..items {
            informative[1].row_mut(i)[i % 30] = 1.0;
        }
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let noise = [
            Embedding::uniform(users, 4, &mut rng),
            Embedding::uniform(items, 4, &mut rng),
        ];
        let held: Vec<(u32, u32)> = (0..users as u32).map(|u| (u, u)).collect();
        let [a, b] = &informative;
        let [x, y] = &noise;
        // The fine part alone ranks every held-out item in its top 10: no coarse weight.
        assert_eq!(choose_weight(&held, [a, b], [x, y]), 0.0);
        // Noise alone does not; the smallest weight that does is taken.
        assert_eq!(choose_weight(&held, [x, y], [a, b]), 0.25);
        // No held-out pairs (a tiny log): weight 0.
        assert_eq!(choose_weight(&[], [x, y], [a, b]), 0.0);
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
