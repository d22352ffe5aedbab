//! The building blocks of towers: feature encoders (embedding lookups and bags, numeric
//! inputs) and dense layers, each with a forward pass over a batch and a backward pass that
//! gives its parameters' gradients — sparse rows for embedding tables, dense tensors for
//! layers — and [`Tower`], which joins encoders (their outputs concatenated) and layers.
//! Parameters are reached by name ([`Tower::params`]), so an optimizer or a model folder
//! iterates over them without knowing the tower's shape.
//!
//! An id-only tower (TFRS `StringLookup` + `Embedding`) is one single-valued
//! [`EmbeddingBag`] and no layer; its forward pass is a gather, its backward pass the
//! batch's gradient rows summed per distinct id.
//!
//! ```
//! use rand::SeedableRng;
//! use twotower_model::nn::{Activation, Dense, EmbeddingBag, Encoder, IdBatch, Pooling, Tower};
//! let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
//! let tower = Tower::new(
//!     vec![Encoder::Bag(EmbeddingBag::new(10, 4, Pooling::Mean, &mut rng))],
//!     vec![Dense::new(4, 2, Activation::Linear, &mut rng)],
//! )
//! .unwrap();
//! // Two examples: ids {3} and {1, 2}.
//! let inputs = vec![IdBatch::multi(vec![0, 1, 3], vec![3, 1, 2])];
//! let pass = tower.forward(&inputs, 2).unwrap();
//! assert_eq!(pass.output().len(), 2 * 2);
//! let grads = tower.backward(&inputs, &pass, vec![1.0; 4]);
//! assert_eq!(grads.sparse[0].rows, vec![3, 1, 2]);
//! ```

use rand::Rng;

use crate::embedding::Embedding;
use crate::{ModelError, Result};
use twotower_kernels::gemm::{gemm, MatRef};

/// How a bag of ids becomes one vector.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pooling {
    /// The mean of the rows (an empty bag gives zeros).
    Mean,
    /// The sum of the rows.
    Sum,
    /// A mean weighted by recency, for bags ordered oldest first: the last row weighs 1,
    /// each one before it `decay` times the next, the weights scaled to sum to 1.
    Recency { decay: f32 },
}

impl Pooling {
    /// The weight of position `j` of a bag of `len` rows.
    fn weight(self, len: usize, j: usize) -> f32 {
        match self {
            Pooling::Sum => 1.0,
            Pooling::Mean => 1.0 / len.max(1) as f32,
            Pooling::Recency { decay } => {
                let total = if decay >= 1.0 {
                    len as f32
                } else {
                    (1.0 - decay.powi(len as i32)) / (1.0 - decay)
                };
                decay.powi(len.saturating_sub(j + 1) as i32) / total.max(f32::MIN_POSITIVE)
            }
        }
    }
}

/// One feature's ids for a batch, CSR: example `i` holds `ids[offsets[i]..offsets[i + 1]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct IdBatch {
    pub offsets: Vec<u32>,
    pub ids: Vec<u32>,
    /// One id per example and no id twice (see [`IdBatch::distinct`]).
    distinct: bool,
}

impl IdBatch {
    /// One id per example.
    pub fn single(ids: Vec<u32>) -> Self {
        IdBatch {
            offsets: (0..=ids.len() as u32).collect(),
            ids,
            distinct: false,
        }
    }

    /// One id per example, no id twice (a deduplicated batch): the gradient of a plain
    /// lookup is then the output's gradient itself, with nothing to sum. Repeated ids are
    /// refused.
    pub fn distinct(ids: Vec<u32>) -> Result<Self> {
        let mut seen = std::collections::HashSet::with_capacity(ids.len());
        if let Some(&twice) = ids.iter().find(|&&id| !seen.insert(id)) {
            return Err(ModelError::Config(format!(
                "id {twice} is in the batch twice"
            )));
        }
        Ok(IdBatch {
            distinct: true,
            ..IdBatch::single(ids)
        })
    }

    /// [`IdBatch::distinct`] for ids the caller has deduplicated itself (unchecked).
    pub(crate) fn distinct_unchecked(ids: Vec<u32>) -> Self {
        IdBatch {
            distinct: true,
            ..IdBatch::single(ids)
        }
    }

    /// Any number of ids per example.
    pub fn multi(offsets: Vec<u32>, ids: Vec<u32>) -> Self {
        IdBatch {
            offsets,
            ids,
            distinct: false,
        }
    }

    /// Number of examples.
    pub fn len(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    /// True when the batch holds no examples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn bag(&self, i: usize) -> &[u32] {
        &self.ids[self.offsets[i] as usize..self.offsets[i + 1] as usize]
    }
}

/// An embedding table read as bags: a single id per example is a plain lookup.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingBag {
    pub table: Embedding,
    pub pooling: Pooling,
}

impl EmbeddingBag {
    /// A `rows × dim` table, Keras-initialised (uniform in [-0.05, 0.05)).
    pub fn new(rows: usize, dim: usize, pooling: Pooling, rng: &mut impl Rng) -> Self {
        EmbeddingBag {
            table: Embedding::uniform(rows, dim, rng),
            pooling,
        }
    }

    /// Writes each example's pooled vector into `out` (row `i` at `i * stride + offset`).
    fn forward(&self, batch: &IdBatch, out: &mut [f32], stride: usize, offset: usize) {
        let dim = self.table.dim;
        if batch.distinct && stride == dim {
            // A plain lookup filling the whole output: a parallel gather.
            self.table.gather_into(&batch.ids, out);
            return;
        }
        for i in 0..batch.len() {
            let bag = batch.bag(i);
            let o = &mut out[i * stride + offset..i * stride + offset + dim];
            o.fill(0.0);
            for (j, &id) in bag.iter().enumerate() {
                let w = self.pooling.weight(bag.len(), j);
                for (o, x) in o.iter_mut().zip(self.table.row(id as usize)) {
                    *o += w * x;
                }
            }
        }
    }

    /// The table's gradient from the gradient of the pooled outputs (read like `forward`
    /// wrote them): one row per distinct id, in first-seen order.
    fn backward(&self, batch: &IdBatch, grad: Grad, stride: usize, offset: usize) -> SparseGrad {
        let dim = self.table.dim;
        if batch.distinct {
            // One row per id, each once, weight 1 under either pooling: nothing to sum.
            let grads = if stride == dim {
                match grad {
                    Grad::Owned(mut g) => {
                        g.truncate(batch.ids.len() * dim);
                        g
                    }
                    Grad::Borrowed(g) => g[..batch.ids.len() * dim].to_vec(),
                }
            } else {
                (0..batch.ids.len())
                    .flat_map(|i| &grad[i * stride + offset..i * stride + offset + dim])
                    .copied()
                    .collect()
            };
            return SparseGrad {
                rows: batch.ids.clone(),
                grads,
            };
        }
        let mut slot = std::collections::HashMap::new();
        let mut rows = Vec::new();
        let mut grads: Vec<f32> = Vec::new();
        for i in 0..batch.len() {
            let bag = batch.bag(i);
            let g = &grad[i * stride + offset..i * stride + offset + dim];
            for (j, &id) in bag.iter().enumerate() {
                let w = self.pooling.weight(bag.len(), j);
                let s = *slot.entry(id).or_insert_with(|| {
                    rows.push(id);
                    grads.extend(std::iter::repeat_n(0.0, dim));
                    rows.len() - 1
                });
                for (a, x) in grads[s * dim..(s + 1) * dim].iter_mut().zip(g) {
                    *a += w * x;
                }
            }
        }
        SparseGrad { rows, grads }
    }
}

/// A numeric input, standardised: `(x − mean) / std` (statistics of the training data).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Numeric {
    pub mean: f32,
    pub std: f32,
}

/// What turns one feature of a batch into columns of the tower's input.
#[derive(Debug, Clone, PartialEq)]
pub enum Encoder {
    /// Ids → an embedding row, or a pooled bag of rows.
    Bag(EmbeddingBag),
    /// A number → one standardised column (no parameters).
    Numeric(Numeric),
}

impl Encoder {
    /// Columns this encoder adds to the tower's input.
    pub fn width(&self) -> usize {
        match self {
            Encoder::Bag(b) => b.table.dim,
            Encoder::Numeric(_) => 1,
        }
    }
}

/// One feature of a batch, as its encoder reads it.
#[derive(Debug, Clone, PartialEq)]
pub enum FeatureBatch {
    Ids(IdBatch),
    Numbers(Vec<f32>),
}

impl From<IdBatch> for FeatureBatch {
    fn from(b: IdBatch) -> Self {
        FeatureBatch::Ids(b)
    }
}

/// The non-linearity after a dense layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    Relu,
    Linear,
}

/// A fully connected layer: `y = act(x · W + b)`, `W` row-major `inputs × outputs`.
#[derive(Debug, Clone, PartialEq)]
pub struct Dense {
    pub inputs: usize,
    pub outputs: usize,
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
    pub activation: Activation,
}

impl Dense {
    /// Glorot-uniform weights and zero biases (Keras' defaults).
    pub fn new(inputs: usize, outputs: usize, activation: Activation, rng: &mut impl Rng) -> Self {
        let limit = (6.0 / (inputs + outputs).max(1) as f32).sqrt();
        Dense {
            inputs,
            outputs,
            weight: (0..inputs * outputs)
                .map(|_| rng.gen_range(-limit..limit))
                .collect(),
            bias: vec![0.0; outputs],
            activation,
        }
    }

    /// `n` rows of output for `n` rows of input.
    pub fn forward(&self, x: &[f32], n: usize) -> Vec<f32> {
        let mut y = vec![0.0; n * self.outputs];
        gemm(
            MatRef::new(x, n, self.inputs),
            MatRef::new(&self.weight, self.inputs, self.outputs),
            0.0,
            &mut y,
        );
        for row in y.chunks_exact_mut(self.outputs.max(1)) {
            for (v, b) in row.iter_mut().zip(&self.bias) {
                *v += b;
                if self.activation == Activation::Relu && *v < 0.0 {
                    *v = 0.0;
                }
            }
        }
        y
    }

    /// From the input `x`, the output `y` of [`Dense::forward`] and the gradient of `y`:
    /// the gradient of `x` and of the weights and biases.
    pub fn backward(
        &self,
        x: &[f32],
        y: &[f32],
        grad_y: &[f32],
        n: usize,
    ) -> (Vec<f32>, DenseGrad) {
        let mut g = grad_y.to_vec();
        if self.activation == Activation::Relu {
            for (g, &y) in g.iter_mut().zip(y) {
                if y <= 0.0 {
                    *g = 0.0;
                }
            }
        }
        let mut weight = vec![0.0; self.inputs * self.outputs];
        let gm = MatRef::new(&g, n, self.outputs);
        gemm(MatRef::new(x, n, self.inputs).t(), gm, 0.0, &mut weight);
        let mut bias = vec![0.0; self.outputs];
        for row in g.chunks_exact(self.outputs.max(1)) {
            for (b, v) in bias.iter_mut().zip(row) {
                *b += v;
            }
        }
        let mut grad_x = vec![0.0; n * self.inputs];
        let w = MatRef::new(&self.weight, self.inputs, self.outputs);
        gemm(gm, w.t(), 0.0, &mut grad_x);
        (grad_x, DenseGrad { weight, bias })
    }
}

/// An output gradient as a table reads it: lent, or given (then it can become the
/// table's gradient without a copy).
enum Grad<'a> {
    Borrowed(&'a [f32]),
    Owned(Vec<f32>),
}

impl std::ops::Deref for Grad<'_> {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        match self {
            Grad::Borrowed(g) => g,
            Grad::Owned(g) => g,
        }
    }
}

/// Gradient rows of an embedding table: `grads` holds one row per entry of `rows`
/// (distinct), duplicates already summed.
#[derive(Debug, Clone, PartialEq)]
pub struct SparseGrad {
    pub rows: Vec<u32>,
    pub grads: Vec<f32>,
}

/// Gradients of a dense layer's weights and biases.
#[derive(Debug, Clone, PartialEq)]
pub struct DenseGrad {
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
}

/// A tower's gradients: one [`SparseGrad`] per embedding encoder (in encoder order, the
/// numeric ones skipped) and one [`DenseGrad`] per layer.
#[derive(Debug, Clone, PartialEq)]
pub struct TowerGrads {
    pub sparse: Vec<SparseGrad>,
    pub dense: Vec<DenseGrad>,
}

/// A parameter as the optimizer and the model folder see it.
pub enum Param<'a> {
    /// An embedding table: updated by rows.
    Table(&'a Embedding),
    /// A dense tensor of this shape.
    Dense(&'a [f32], Vec<usize>),
}

/// Feature encoders whose outputs are concatenated, then dense layers.
#[derive(Debug, Clone, PartialEq)]
pub struct Tower {
    pub encoders: Vec<Encoder>,
    pub layers: Vec<Dense>,
}

/// The activations of a forward pass, kept for the backward pass.
pub struct Pass {
    rows: usize,
    /// The concatenated encoder outputs, then each layer's output.
    activations: Vec<Vec<f32>>,
}

impl Pass {
    /// The tower's output, row-major `rows × output width`.
    pub fn output(&self) -> &[f32] {
        self.activations.last().map_or(&[], Vec::as_slice)
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }
}

impl Tower {
    /// Checks that each layer takes what the one before gives.
    pub fn new(encoders: Vec<Encoder>, layers: Vec<Dense>) -> Result<Self> {
        if encoders.is_empty() {
            return Err(ModelError::Config(
                "a tower needs at least one feature".into(),
            ));
        }
        let tower = Tower { encoders, layers };
        let mut width = tower.input_width();
        for (i, l) in tower.layers.iter().enumerate() {
            if l.inputs != width {
                return Err(ModelError::Config(format!(
                    "layer {i} takes {} inputs but receives {width}",
                    l.inputs
                )));
            }
            width = l.outputs;
        }
        Ok(tower)
    }

    /// Replaces parameter `name` (as [`Tower::params`] names it) with `data` of `shape`,
    /// which must be the parameter's own shape.
    pub fn set_param(&mut self, name: &str, shape: &[usize], data: Vec<f32>) -> Result<()> {
        let bad = |m: String| Err(ModelError::Config(format!("parameter {name}: {m}")));
        let parts: Vec<&str> = name.split('.').collect();
        let (target, want): (&mut Vec<f32>, Vec<usize>) = match parts.as_slice() {
            ["features", i, "embedding"] => {
                let Some(Encoder::Bag(b)) = i
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| self.encoders.get_mut(i))
                else {
                    return bad("this tower has no such embedding".into());
                };
                let shape = vec![b.table.rows, b.table.dim];
                (&mut b.table.data, shape)
            }
            ["layers", i, which @ ("kernel" | "bias")] => {
                let Some(l) = i.parse::<usize>().ok().and_then(|i| self.layers.get_mut(i)) else {
                    return bad("this tower has no such layer".into());
                };
                if *which == "kernel" {
                    (&mut l.weight, vec![l.inputs, l.outputs])
                } else {
                    (&mut l.bias, vec![l.outputs])
                }
            }
            _ => return bad("not a parameter name".into()),
        };
        if shape != want.as_slice() || data.len() != want.iter().product::<usize>() {
            return bad(format!(
                "shape {shape:?} with {} values, expected {want:?}",
                data.len()
            ));
        }
        *target = data;
        Ok(())
    }

    /// True when every parameter is finite (a diverged tower is not).
    pub fn is_finite(&self) -> bool {
        self.params().iter().all(|(_, p)| match p {
            Param::Table(t) => t.data.iter().all(|v| v.is_finite()),
            Param::Dense(v, _) => v.iter().all(|v| v.is_finite()),
        })
    }

    /// Columns of the concatenated encoder outputs.
    pub fn input_width(&self) -> usize {
        self.encoders.iter().map(Encoder::width).sum()
    }

    /// Width of the tower's output vectors.
    pub fn output_width(&self) -> usize {
        self.layers.last().map_or(self.input_width(), |l| l.outputs)
    }

    /// Every parameter with its name: `features.{i}.embedding`, `layers.{i}.kernel`,
    /// `layers.{i}.bias`.
    pub fn params(&self) -> Vec<(String, Param<'_>)> {
        let mut out = Vec::new();
        for (i, e) in self.encoders.iter().enumerate() {
            if let Encoder::Bag(b) = e {
                out.push((format!("features.{i}.embedding"), Param::Table(&b.table)));
            }
        }
        for (i, l) in self.layers.iter().enumerate() {
            let shape = vec![l.inputs, l.outputs];
            out.push((format!("layers.{i}.kernel"), Param::Dense(&l.weight, shape)));
            out.push((
                format!("layers.{i}.bias"),
                Param::Dense(&l.bias, vec![l.outputs]),
            ));
        }
        out
    }

    /// The tower over `rows` examples, one [`FeatureBatch`] per encoder.
    pub fn forward(&self, features: &[impl AsFeature], rows: usize) -> Result<Pass> {
        if features.len() != self.encoders.len() {
            return Err(ModelError::Config(format!(
                "the tower has {} features, the batch {}",
                self.encoders.len(),
                features.len()
            )));
        }
        let width = self.input_width();
        let mut x = vec![0.0f32; rows * width];
        let mut offset = 0;
        for (i, (e, f)) in self.encoders.iter().zip(features).enumerate() {
            match (e, f.as_feature()) {
                (Encoder::Bag(b), Feature::Ids(ids)) if ids.len() == rows => {
                    if let Some(&bad) = ids.ids.iter().find(|&&id| id as usize >= b.table.rows) {
                        return Err(ModelError::Config(format!(
                            "feature {i}: id {bad} is outside its table of {} rows",
                            b.table.rows
                        )));
                    }
                    b.forward(ids, &mut x, width, offset)
                }
                (Encoder::Numeric(n), Feature::Numbers(v)) if v.len() == rows => {
                    for (r, &v) in v.iter().enumerate() {
                        x[r * width + offset] = (v - n.mean) / n.std;
                    }
                }
                _ => {
                    return Err(ModelError::Config(format!(
                        "feature {i}: the batch does not fit its encoder ({rows} rows expected)"
                    )))
                }
            }
            offset += e.width();
        }
        let mut activations = vec![x];
        for l in &self.layers {
            let y = l.forward(activations.last().map_or(&[][..], Vec::as_slice), rows);
            activations.push(y);
        }
        Ok(Pass { rows, activations })
    }

    /// Gradients of every parameter from the gradient of the output of `pass` (the
    /// forward pass over the same `features`). A plain lookup of distinct ids hands
    /// `grad_out` to its table's gradient without a copy.
    pub fn backward(
        &self,
        features: &[impl AsFeature],
        pass: &Pass,
        grad_out: Vec<f32>,
    ) -> TowerGrads {
        let n = pass.rows;
        let mut grad = grad_out;
        let mut dense = Vec::with_capacity(self.layers.len());
        for (i, l) in self.layers.iter().enumerate().rev() {
            let (gx, gw) = l.backward(&pass.activations[i], &pass.activations[i + 1], &grad, n);
            dense.push(gw);
            grad = gx;
        }
        dense.reverse();
        let width = self.input_width();
        let bags = self
            .encoders
            .iter()
            .filter(|e| matches!(e, Encoder::Bag(_)))
            .count();
        let mut sparse = Vec::new();
        let mut offset = 0;
        let mut grad = Some(grad);
        for (e, f) in self.encoders.iter().zip(features) {
            if let (Encoder::Bag(b), Feature::Ids(ids)) = (e, f.as_feature()) {
                // The last table to read the gradient may take it.
                let g = if sparse.len() + 1 == bags {
                    Grad::Owned(grad.take().unwrap_or_default())
                } else {
                    Grad::Borrowed(grad.as_deref().unwrap_or_default())
                };
                sparse.push(b.backward(ids, g, width, offset));
            }
            offset += e.width();
        }
        TowerGrads { sparse, dense }
    }
}

/// Scales each `dim`-wide row of `x` to unit length (a zero row stays zero); returns the
/// rows' original norms, which [`l2_normalize_backward`] needs.
pub fn l2_normalize(x: &mut [f32], dim: usize) -> Vec<f32> {
    x.chunks_exact_mut(dim.max(1))
        .map(|row| {
            let n = row.iter().map(|v| v * v).sum::<f32>().sqrt();
            if n > 0.0 {
                row.iter_mut().for_each(|v| *v /= n);
            }
            n
        })
        .collect()
}

/// The gradient before [`l2_normalize`] from the gradient `g` after it, given its output
/// `y` and the norms it returned: `(g − y (y·g)) / ‖x‖`, in place.
pub fn l2_normalize_backward(g: &mut [f32], y: &[f32], norms: &[f32], dim: usize) {
    for ((g, y), &n) in g
        .chunks_exact_mut(dim.max(1))
        .zip(y.chunks_exact(dim.max(1)))
        .zip(norms)
    {
        if n > 0.0 {
            let dot: f32 = g.iter().zip(y).map(|(a, b)| a * b).sum();
            for (g, y) in g.iter_mut().zip(y) {
                *g = (*g - y * dot) / n;
            }
        }
    }
}

/// A borrowed view of one feature of a batch.
pub enum Feature<'a> {
    Ids(&'a IdBatch),
    Numbers(&'a [f32]),
}

/// Anything that can be read as one feature of a batch ([`IdBatch`], [`FeatureBatch`]).
pub trait AsFeature {
    fn as_feature(&self) -> Feature<'_>;
}

impl AsFeature for IdBatch {
    fn as_feature(&self) -> Feature<'_> {
        Feature::Ids(self)
    }
}

impl AsFeature for FeatureBatch {
    fn as_feature(&self) -> Feature<'_> {
        match self {
            FeatureBatch::Ids(b) => Feature::Ids(b),
            FeatureBatch::Numbers(v) => Feature::Numbers(v),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    /// A tower with every kind of part: a single id, a mean bag, a sum bag, a number, a
    /// ReLU layer and a linear one.
    fn tower() -> (Tower, Vec<FeatureBatch>, usize) {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let mut big = |rows, dim, pooling| {
            let mut b = EmbeddingBag::new(rows, dim, pooling, &mut rng);
            // Larger weights than Keras' so that the ReLU sees both signs clearly.
            b.table.data.iter_mut().for_each(|v| *v *= 20.0);
            Encoder::Bag(b)
        };
        let encoders = vec![
            big(5, 3, Pooling::Sum),
            big(6, 2, Pooling::Mean),
            big(4, 2, Pooling::Recency { decay: 0.5 }),
            Encoder::Numeric(Numeric {
                mean: 1.0,
                std: 2.0,
            }),
        ];
        let layers = vec![
            Dense::new(8, 6, Activation::Relu, &mut rng),
            Dense::new(6, 3, Activation::Linear, &mut rng),
        ];
        let mut t = Tower::new(encoders, layers).unwrap();
        for l in &mut t.layers {
            l.bias
                .iter_mut()
                .enumerate()
                .for_each(|(i, b)| *b = 0.1 * i as f32 - 0.2);
        }
        let features = vec![
            IdBatch::single(vec![1, 4, 1, 0]).into(),
            IdBatch::multi(vec![0, 2, 2, 5, 6], vec![1, 3, 0, 3, 5, 2]).into(),
            IdBatch::multi(vec![0, 1, 3, 3, 4], vec![2, 2, 3, 1]).into(),
            FeatureBatch::Numbers(vec![0.5, -1.0, 3.0, 2.0]),
        ];
        (t, features, 4)
    }

    /// Σ output · r for a fixed r: its gradient with respect to the output is r.
    fn objective(t: &Tower, f: &[FeatureBatch], n: usize, r: &[f32]) -> f64 {
        let pass = t.forward(f, n).unwrap();
        pass.output()
            .iter()
            .zip(r)
            .map(|(&o, &r)| o as f64 * r as f64)
            .sum()
    }

    #[test]
    fn every_gradient_matches_finite_differences() {
        let (t, f, n) = tower();
        let r: Vec<f32> = (0..n * t.output_width())
            .map(|i| ((i * 7 % 11) as f32 - 5.0) / 5.0)
            .collect();
        let pass = t.forward(&f, n).unwrap();
        let g = t.backward(&f, &pass, r.clone());
        let h = 1e-2f32;
        let check = |analytic: f32, perturbed: &dyn Fn(f32) -> Tower, what: &str| {
            let up = objective(&perturbed(h), &f, n, &r);
            let down = objective(&perturbed(-h), &f, n, &r);
            let numeric = (up - down) / (2.0 * h as f64);
            let tol = 1e-2 * (1.0 + numeric.abs());
            assert!(
                (analytic as f64 - numeric).abs() < tol,
                "{what}: analytic {analytic}, numeric {numeric}"
            );
        };
        let mut bag = 0;
        for (e, enc) in t.encoders.iter().enumerate() {
            let Encoder::Bag(b) = enc else { continue };
            let sg = &g.sparse[bag];
            bag += 1;
            for row in 0..b.table.rows {
                for d in 0..b.table.dim {
                    let analytic = sg
                        .rows
                        .iter()
                        .position(|&r| r as usize == row)
                        .map_or(0.0, |s| sg.grads[s * b.table.dim + d]);
                    let perturbed = |delta: f32| {
                        let mut t2 = t.clone();
                        if let Encoder::Bag(b2) = &mut t2.encoders[e] {
                            b2.table.data[row * b.table.dim + d] += delta;
                        }
                        t2
                    };
                    check(
                        analytic,
                        &perturbed,
                        &format!("feature {e} row {row} dim {d}"),
                    );
                }
            }
        }
        for (li, l) in t.layers.iter().enumerate() {
            for k in 0..l.weight.len() {
                let perturbed = |delta: f32| {
                    let mut t2 = t.clone();
                    t2.layers[li].weight[k] += delta;
                    t2
                };
                check(
                    g.dense[li].weight[k],
                    &perturbed,
                    &format!("layer {li} kernel {k}"),
                );
            }
            for k in 0..l.bias.len() {
                let perturbed = |delta: f32| {
                    let mut t2 = t.clone();
                    t2.layers[li].bias[k] += delta;
                    t2
                };
                check(
                    g.dense[li].bias[k],
                    &perturbed,
                    &format!("layer {li} bias {k}"),
                );
            }
        }
    }

    #[test]
    fn normalisation_gradients_match_finite_differences() {
        let x: Vec<f32> = vec![0.3, -1.2, 0.5, 2.0, 0.1, -0.4];
        let r = [0.7f32, -0.2, 0.4, -1.1, 0.9, 0.3];
        let f = |x: &[f32]| -> f64 {
            let mut y = x.to_vec();
            l2_normalize(&mut y, 3);
            y.iter().zip(&r).map(|(&a, &b)| a as f64 * b as f64).sum()
        };
        let mut y = x.clone();
        let norms = l2_normalize(&mut y, 3);
        let norm_0: f32 = y[..3].iter().map(|v| v * v).sum();
        assert!((norm_0 - 1.0).abs() < 1e-6);
        let mut g = r.to_vec();
        l2_normalize_backward(&mut g, &y, &norms, 3);
        let h = 1e-3f32;
        for i in 0..x.len() {
            let (mut p, mut m) = (x.clone(), x.clone());
            p[i] += h;
            m[i] -= h;
            let num = (f(&p) - f(&m)) / (2.0 * h as f64);
            assert!(
                (g[i] as f64 - num).abs() < 1e-3,
                "x[{i}]: {} vs {num}",
                g[i]
            );
        }
        let mut zero = vec![0.0f32; 3];
        assert_eq!(l2_normalize(&mut zero, 3), [0.0]);
        assert_eq!(zero, [0.0; 3]);
    }

    #[test]
    fn an_id_only_tower_is_a_lookup_and_its_gradient_sums_duplicates() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let bag = EmbeddingBag::new(5, 2, Pooling::Mean, &mut rng);
        let table = bag.table.clone();
        let t = Tower::new(vec![Encoder::Bag(bag)], Vec::new()).unwrap();
        let ids = [IdBatch::single(vec![3, 1, 3])];
        let pass = t.forward(&ids, 3).unwrap();
        assert_eq!(pass.output(), table.gather(&[3, 1, 3]).as_slice());
        let g = t.backward(&ids, &pass, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!(g.sparse[0].rows, vec![3, 1]);
        assert_eq!(g.sparse[0].grads, vec![6.0, 8.0, 3.0, 4.0]);
        assert!(g.dense.is_empty());
        // Deduplicated ids: the same vectors, and the gradient is the output's own.
        let ids = [IdBatch::distinct(vec![3, 1, 0]).unwrap()];
        let pass = t.forward(&ids, 3).unwrap();
        assert_eq!(pass.output(), table.gather(&[3, 1, 0]).as_slice());
        let g = t.backward(&ids, &pass, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!(g.sparse[0].rows, vec![3, 1, 0]);
        assert_eq!(g.sparse[0].grads, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let e = IdBatch::distinct(vec![2, 4, 2]).unwrap_err().to_string();
        assert!(e.contains("id 2 is in the batch twice"), "{e}");
    }

    #[test]
    fn recency_weights_the_newest_most_and_sums_to_one() {
        let p = Pooling::Recency { decay: 0.5 };
        // Oldest first: 1/7, 2/7, 4/7.
        let w: Vec<f32> = (0..3).map(|j| p.weight(3, j)).collect();
        for (a, b) in w.iter().zip([1.0 / 7.0, 2.0 / 7.0, 4.0 / 7.0]) {
            assert!((a - b).abs() < 1e-6, "{w:?}");
        }
        let flat = Pooling::Recency { decay: 1.0 };
        assert_eq!(flat.weight(4, 0), Pooling::Mean.weight(4, 0));
        assert_eq!(p.weight(1, 0), 1.0);
    }

    #[test]
    fn bags_pool_by_mean_or_sum_and_numbers_are_standardised() {
        let table = Embedding {
            rows: 3,
            dim: 2,
            data: vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
        };
        let bag = |pooling| {
            Encoder::Bag(EmbeddingBag {
                table: table.clone(),
                pooling,
            })
        };
        let t = Tower::new(
            vec![
                bag(Pooling::Mean),
                bag(Pooling::Sum),
                Encoder::Numeric(Numeric {
                    mean: 10.0,
                    std: 4.0,
                }),
            ],
            Vec::new(),
        )
        .unwrap();
        // Example 0: {1, 2}; example 1: the empty bag.
        let ids = IdBatch::multi(vec![0, 2, 2], vec![1, 2]);
        let f = vec![
            ids.clone().into(),
            ids.into(),
            FeatureBatch::Numbers(vec![18.0, 6.0]),
        ];
        let pass = t.forward(&f, 2).unwrap();
        assert_eq!(
            pass.output(),
            [4.0, 5.0, 8.0, 10.0, 2.0, 0.0, 0.0, 0.0, 0.0, -1.0]
        );
    }

    #[test]
    fn parameters_are_named_and_shapes_are_checked() {
        let (t, f, n) = tower();
        let names: Vec<String> = t.params().into_iter().map(|(name, _)| name).collect();
        assert_eq!(
            names,
            [
                "features.0.embedding",
                "features.1.embedding",
                "features.2.embedding",
                "layers.0.kernel",
                "layers.0.bias",
                "layers.1.kernel",
                "layers.1.bias"
            ]
        );
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let e = Tower::new(
            t.encoders.clone(),
            vec![Dense::new(7, 2, Activation::Linear, &mut rng)],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("layer 0 takes 7 inputs but receives 8"), "{e}");
        let e = t.forward(&f[..3], n).err().unwrap().to_string();
        assert!(e.contains("4 features, the batch 3"), "{e}");
        let e = t.forward(&f, n + 1).err().unwrap().to_string();
        assert!(e.contains("feature 0"), "{e}");
        let mut bad = f.clone();
        bad[0] = IdBatch::single(vec![1, 9, 1, 0]).into();
        let e = t.forward(&bad, n).err().unwrap().to_string();
        assert!(e.contains("id 9 is outside its table of 5 rows"), "{e}");
    }
}
