//! The feature trainer held to the plain definition: its gradients — queries grouped per
//! user or per example, candidates deduplicated with multiplicities — against finite
//! differences of the per-example softmax, summed in f64, over every parameter.

use super::tests::{tiny, SPEC};
use super::*;
use crate::nn::TowerGrads;

/// The plain softmax of `batch`, in f64 sums: every example its own query row (the
/// model's own query of that example, with nothing grouped); as columns, in-batch every
/// example's positive (repeats included, accidental hits removed when asked), full
/// every catalogue row once.
fn plain_batch_loss(
    m: &FeatureModel,
    batch: &[(u32, u32, i64)],
    temperature: f64,
    remove_hits: bool,
) -> f64 {
    let queries: Vec<Query> = batch.iter().map(Query::of_example).collect();
    let q = m.query_vectors(&queries).unwrap();
    let c = m.candidate_vectors().unwrap();
    let d = m.candidate.tower.output_width();
    let logit = |i: usize, row: u32| -> f64 {
        (0..d)
            .map(|k| q[i * d + k] as f64 * c[row as usize * d + k] as f64)
            .sum::<f64>()
            / temperature
    };
    let full = m.config.negatives == Negatives::Full;
    let mut loss = 0.0;
    for (i, &(_, positive, _)) in batch.iter().enumerate() {
        let z: f64 = if full {
            (0..m.movies.len() as u32).map(|r| logit(i, r).exp()).sum()
        } else {
            (0..batch.len())
                .filter(|&j| !(remove_hits && j != i && batch[j].1 == positive))
                .map(|j| logit(i, batch[j].1).exp())
                .sum()
        };
        loss += z.ln() - logit(i, positive);
    }
    loss
}

/// Every parameter of both towers as (tower, encoder or layer, index) with its
/// gradient from `q` and `c` (zero for a table row the batch did not touch).
fn gradient_of(m: &FeatureModel, q: &TowerGrads, c: &TowerGrads) -> Vec<(bool, usize, usize, f64)> {
    let mut out = Vec::new();
    for (query, tower, grads) in [(true, &m.query.tower, q), (false, &m.candidate.tower, c)] {
        let mut table = 0;
        for (e, enc) in tower.encoders.iter().enumerate() {
            let Encoder::Bag(b) = enc else { continue };
            let g = &grads.sparse[table];
            table += 1;
            let dim = b.table.dim;
            for i in 0..b.table.data.len() {
                let (row, col) = ((i / dim) as u32, i % dim);
                let got = g
                    .rows
                    .iter()
                    .position(|&r| r == row)
                    .map_or(0.0, |k| g.grads[k * dim + col] as f64);
                out.push((query, e, i, got));
            }
        }
        for (l, layer) in tower.layers.iter().enumerate() {
            let g = &grads.dense[l];
            for i in 0..layer.weight.len() {
                out.push((query, usize::MAX - l, i, g.weight[i] as f64));
            }
            for i in 0..layer.bias.len() {
                out.push((
                    query,
                    usize::MAX - l,
                    layer.weight.len() + i,
                    g.bias[i] as f64,
                ));
            }
        }
    }
    out
}

/// `m` with one parameter (as [`gradient_of`] names it) moved by `by`.
fn moved(m: &FeatureModel, (query, at, i): (bool, usize, usize), by: f32) -> FeatureModel {
    let mut m = m.clone();
    let tower = if query {
        &mut m.query.tower
    } else {
        &mut m.candidate.tower
    };
    if at < tower.encoders.len() {
        if let Some(Encoder::Bag(b)) = tower.encoders.get_mut(at) {
            b.table.data[i] += by;
        }
    } else {
        let layer = &mut tower.layers[usize::MAX - at];
        let n = layer.weight.len();
        if i < n {
            layer.weight[i] += by;
        } else {
            layer.bias[i - n] += by;
        }
    }
    m
}

/// The feature trainer's gradients — its queries grouped per user (or per example when
/// a query reads the history or time), its candidates deduplicated with multiplicities —
/// equal finite differences of the plain per-example softmax for every table entry and
/// every dense weight: a wrong grouping of queries or columns shows here even where the
/// trainer's own loss is self-consistent.
#[test]
fn feature_gradients_match_the_plain_per_example_softmax() {
    let with_history = SPEC
        .replace(
            "{ kind = \"categorical\", column = \"occupation\", dim = 4 },",
            "{ kind = \"categorical\", column = \"occupation\", dim = 4 },\n  \
             { kind = \"history\", last = 3, dim = 4 },\n  \
             { kind = \"timestamp\", buckets = 5, dim = 2 },\n  \
             { kind = \"numeric\", column = \"age\", buckets = 3, dim = 2 },",
        )
        .replace("layers = [16, 8]", "layers = [8]");
    let cases = [
        (SPEC.to_string(), Negatives::InBatch, false),
        (with_history.clone(), Negatives::InBatch, true),
        (with_history, Negatives::Full, false),
    ];
    for (spec, negatives, remove_hits) in cases {
        let ml = tiny();
        let mut cfg = TrainConfig::preset("default").unwrap();
        cfg.batch_size = 8;
        cfg.l2 = 0.0;
        cfg.negatives = negatives;
        cfg.warm_start = None;
        let spec = TowersSpec::parse("t.toml", &spec).unwrap();
        let (mut model, mut trainer) =
            FeatureModel::new(cfg, spec, &ml, &ml.ratings, FeatureFiles::default()).unwrap();
        trainer.run_epoch(&mut model).unwrap();
        // Users and items that repeat: 12 examples of the training set.
        let batch: Vec<(u32, u32, i64)> = trainer.examples[..12].to_vec();
        let softmax = InBatchSoftmax {
            temperature: 0.5,
            remove_accidental_hits: remove_hits,
        };
        let (loss, q, c, _) = FeatureTrainer::gradients(&model, &batch, &softmax, &[]).unwrap();
        let plain = plain_batch_loss(&model, &batch, 0.5, remove_hits);
        assert!(
            (loss - plain).abs() < 1e-3 * (1.0 + plain.abs()),
            "{loss} vs {plain}"
        );
        let h = 1e-3f32;
        let mut checked = 0;
        for (query, at, i, analytic) in gradient_of(&model, &q, &c) {
            let numeric =
                (plain_batch_loss(&moved(&model, (query, at, i), h), &batch, 0.5, remove_hits)
                    - plain_batch_loss(
                        &moved(&model, (query, at, i), -h),
                        &batch,
                        0.5,
                        remove_hits,
                    ))
                    / (2.0 * h as f64);
            assert!(
                (analytic - numeric).abs() < 1e-2 * (1.0 + numeric.abs()),
                "{} tower, encoder/layer {at}, entry {i}: analytic {analytic}, numeric {numeric}",
                if query { "query" } else { "candidate" }
            );
            checked += usize::from(analytic != 0.0);
        }
        assert!(checked > 100, "only {checked} non-zero gradients checked");
    }
}
