//! The ALS warm start of a feature model: alternating least squares fits user and item
//! factors to the training pairs before the softmax epochs, and they become the towers'
//! first state — the query tower's user-id table holds the user factors, a history's table
//! the item factors (each catalogue row its item's), and the candidate tower's item-id
//! table holds the item factors in the columns that face each of them in the dot product.
//! The first scores are then ALS's plus the item-item similarity of the candidate to the
//! user's recent items (`u·v + mean(v_h)·v`): a closed-form start that already ranks better
//! than ALS alone where the history helps, from which the softmax goes on. The other query
//! tables start at zero, so features the start does not cover add nothing until trained.
//!
//! It applies when both towers are concatenations of their features (no dense layers, no
//! normalisation), each has an id feature, and the query's id columns lie within the
//! candidate's; a history joins when its table is as wide as the user's and its columns
//! also face the candidate's id.

use crate::als::Als;
use crate::embedding::Embedding;
use crate::feature_model::{item_value, FeatureModel};
use crate::features::{first_string, FeatureTower, Input, Key};
use crate::nn::Encoder;
use crate::query_data::Query;
use crate::spec::FeatureSpec;
use crate::{ModelError, Result};
use twotower_data::Vocabulary;

/// Where a feature's table is in a tower: its encoder and the columns its output takes.
#[derive(Debug, Clone, Copy)]
struct Slot {
    encoder: usize,
    offset: usize,
    dim: usize,
}

impl Slot {
    /// Feature `k` of `tower`, when it has a table.
    fn of(tower: &FeatureTower, k: usize) -> Option<Slot> {
        let (encoder, _) = tower.table_of_feature(k)?;
        let offset = tower.tower.encoders[..encoder]
            .iter()
            .map(Encoder::width)
            .sum();
        Some(Slot {
            encoder,
            offset,
            dim: tower.tower.encoders[encoder].width(),
        })
    }

    /// This slot's first column within `c`'s columns, when they hold all of this slot's.
    fn within(&self, c: &Slot) -> Option<usize> {
        (self.offset >= c.offset && self.offset + self.dim <= c.offset + c.dim)
            .then(|| self.offset - c.offset)
    }
}

fn refused(why: &str) -> ModelError {
    ModelError::Config(format!(
        "the ALS warm start of feature towers needs {why} (the default towers have it; or \
         set --als-iterations 0)"
    ))
}

/// The first id feature of `tower`: its slot, vocabulary and column.
fn id_feature<'a>(tower: &'a FeatureTower, side: &str) -> Result<(Slot, &'a Vocabulary, &'a str)> {
    if !tower.tower.layers.is_empty() {
        return Err(refused(&format!("a {side} tower without dense layers")));
    }
    tower
        .spec
        .features
        .iter()
        .enumerate()
        .find_map(|(k, f)| match (f.get_ref(), tower.inputs.get(k)) {
            (FeatureSpec::Id { column, .. }, Some(Input::Lookup { vocab })) => {
                Some((Slot::of(tower, k)?, vocab, column.as_str()))
            }
            _ => None,
        })
        .ok_or_else(|| refused(&format!("an id feature in the {side} tower")))
}

fn table_mut(tower: &mut FeatureTower, encoder: usize) -> Option<&mut Embedding> {
    match tower.tower.encoders.get_mut(encoder) {
        Some(Encoder::Bag(b)) => Some(&mut b.table),
        _ => None,
    }
}

/// Fits `model`'s tables to `examples` (user, catalogue row, time) with `als` as the module
/// says, stopping between sweeps when `stop` says so; returns the settings used and the
/// GFLOP of the fit's products ([`Als::gflop`]).
pub fn warm_start(
    model: &mut FeatureModel,
    examples: &[(u32, u32, i64)],
    als: &Als,
    stop: &dyn Fn() -> bool,
) -> Result<(Als, f64)> {
    if model.spec.normalize {
        return Err(refused("towers whose outputs are not normalised"));
    }
    let (q, q_vocab, q_column) = id_feature(&model.query, "query")?;
    let (c, c_vocab, c_column) = id_feature(&model.candidate, "candidate")?;
    let user_cols = q
        .within(&c)
        .ok_or_else(|| refused("the query's id columns to face the candidate's id columns"))?;
    // Histories with tables of their own, as wide as the user's, facing the candidate's id.
    let mut histories = Vec::new();
    for (k, f) in model.spec.query.features.iter().enumerate() {
        if let FeatureSpec::History {
            share_candidate_table: false,
            ..
        } = f.get_ref()
        {
            if let Some((slot, cols)) = Slot::of(&model.query, k)
                .and_then(|s| Some((s, s.within(&c)?)))
                .filter(|(s, _)| s.dim == q.dim)
            {
                histories.push((slot.encoder, cols));
            }
        }
    }
    let user_rows: Vec<u32> = examples
        .iter()
        .map(|e| {
            let v = model
                .data
                .value(&Query::of_example(e), Key::Column(q_column));
            first_string(v).map_or(0, |s| q_vocab.lookup(&s)) as u32
        })
        .collect();
    let item_rows: Vec<u32> = model
        .movies
        .iter()
        .map(|m| {
            let v = item_value(m, &model.item_features, Key::Column(c_column));
            first_string(v).map_or(0, |s| c_vocab.lookup(&s)) as u32
        })
        .collect();
    let pairs: Vec<(u32, u32)> = user_rows
        .iter()
        .zip(examples)
        .map(|(&u, &(_, row, _))| (u, item_rows.get(row as usize).copied().unwrap_or(0)))
        .collect();
    let dim = q.dim;
    let missing = || ModelError::Config("the ALS warm start lost a table".into());
    let mut users = table_mut(&mut model.query, q.encoder)
        .ok_or_else(missing)?
        .clone();
    let item_table = table_mut(&mut model.candidate, c.encoder).ok_or_else(missing)?;
    let mut items = item_table.columns(user_cols..user_cols + dim);
    let used = als.fit(&pairs, &mut users, &mut items, stop)?;
    let gflop = used.gflop(pairs.len(), users.rows, items.rows, dim);
    for r in 0..items.rows {
        let row = item_table.row_mut(r);
        row[user_cols..user_cols + dim].copy_from_slice(items.row(r));
        for &(_, cols) in &histories {
            row[cols..cols + dim].copy_from_slice(items.row(r));
        }
    }
    for (e, encoder) in model.query.tower.encoders.iter_mut().enumerate() {
        let Encoder::Bag(b) = encoder else { continue };
        if e == q.encoder {
            b.table = users.clone();
        } else if histories.iter().any(|&(h, _)| h == e) && b.table.rows == item_rows.len() {
            // A history's rows are catalogue rows: each takes its item's factors.
            for (r, &i) in item_rows.iter().enumerate() {
                b.table.row_mut(r).copy_from_slice(items.row(i as usize));
            }
        } else {
            b.table.data.fill(0.0);
        }
    }
    Ok((used, gflop))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feature_model::tests::tiny;
    use crate::spec::TowersSpec;
    use crate::TrainConfig;

    const SPEC: &str = r#"
[query]
features = [
  { kind = "id", column = "user_id", dim = 4 },
  { kind = "history", last = 2, dim = 4 },
  { kind = "categorical", column = "occupation", dim = 2 },
]
[candidate]
features = [
  { kind = "id", column = "item_id", dim = 8 },
  { kind = "multi", column = "genres", dim = 2 },
]
"#;

    fn model(spec: &str) -> (FeatureModel, Vec<(u32, u32, i64)>) {
        let ml = tiny();
        let spec = TowersSpec::parse("test", spec).unwrap();
        let cfg = TrainConfig::preset("default").unwrap();
        let (model, trainer) =
            FeatureModel::new(cfg, spec, &ml, &ml.ratings, Default::default()).unwrap();
        (model, trainer.examples)
    }

    fn table(tower: &FeatureTower, encoder: usize) -> &Embedding {
        match &tower.tower.encoders[encoder] {
            Encoder::Bag(b) => &b.table,
            Encoder::Numeric(_) => panic!("not a table"),
        }
    }

    /// The towers start as ALS fitted on their own: the user table is ALS's user factors,
    /// the item id's columns facing the user's and the history's are its item factors, the
    /// history's rows are their items' factors, the other query table is zero — so each
    /// first score is `u·v + mean(v_h)·v`.
    #[test]
    fn the_towers_start_as_als_plus_item_item_similarity() {
        let (mut m, examples) = model(SPEC);
        let als = Als {
            iterations: 4,
            ..Als::default()
        };
        // ALS by hand from the same starting rows.
        let (q, qv, _) = id_feature(&m.query, "query").unwrap();
        let (c, cv, _) = id_feature(&m.candidate, "candidate").unwrap();
        let (qv, cv) = (qv.clone(), cv.clone());
        let mut users = table(&m.query, q.encoder).clone();
        let items_full = table(&m.candidate, c.encoder).clone();
        let mut items = Embedding {
            rows: items_full.rows,
            dim: 4,
            data: (0..items_full.rows)
                .flat_map(|r| items_full.row(r)[..4].to_vec())
                .collect(),
        };
        let row_of: Vec<u32> = m
            .movies
            .iter()
            .map(|mv| cv.lookup(&mv.id.to_string()) as u32)
            .collect();
        let pairs: Vec<(u32, u32)> = examples
            .iter()
            .map(|&(u, r, _)| (qv.lookup(&u.to_string()) as u32, row_of[r as usize]))
            .collect();
        als.fit(&pairs, &mut users, &mut items, &|| false).unwrap();

        warm_start(&mut m, &examples, &als, &|| false).unwrap();
        assert_eq!(table(&m.query, q.encoder), &users);
        let cand = table(&m.candidate, c.encoder);
        for r in 0..items.rows {
            assert_eq!(&cand.row(r)[..4], items.row(r));
            assert_eq!(&cand.row(r)[4..], items.row(r));
        }
        let history = table(&m.query, 1);
        for (r, &i) in row_of.iter().enumerate() {
            assert_eq!(history.row(r), items.row(i as usize));
        }
        assert!(table(&m.query, 2).data.iter().all(|&x| x == 0.0));

        // A first score, against the definition.
        let (user, row, time) = examples[examples.len() - 1];
        let before: Vec<u32> = examples
            .iter()
            .filter(|&&(u, _, t)| u == user && t < time)
            .map(|&(_, r, _)| r)
            .collect();
        let recent = &before[before.len().saturating_sub(2)..];
        assert!(!recent.is_empty());
        let qvec = m.query_vectors(&[Query::at(user, time)]).unwrap();
        let cvecs = m.candidate_vectors().unwrap();
        let width = m.candidate.tower.output_width();
        let score: f32 = qvec
            .iter()
            .zip(&cvecs[row as usize * width..])
            .map(|(a, b)| a * b)
            .sum();
        let v = items.row(row_of[row as usize] as usize);
        let u = users.row(qv.lookup(&user.to_string()));
        let mut mean = [0f32; 4];
        for &h in recent {
            for (m, x) in mean.iter_mut().zip(items.row(row_of[h as usize] as usize)) {
                *m += x / recent.len() as f32;
            }
        }
        let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
        let want = dot(u, v) + dot(&mean, v);
        assert!((score - want).abs() < 1e-4, "{score} against {want}");
    }

    #[test]
    fn towers_the_start_cannot_reach_are_refused_with_the_reason() {
        let als = Als::default();
        let cases = [
            (
                "[query]\nlayers = [4]\nfeatures = [{ kind = \"id\", column = \"user_id\", dim = 4 }]\n\
                 [candidate]\nfeatures = [{ kind = \"id\", column = \"item_id\", dim = 4 }]\n",
                "dense layers",
            ),
            (
                "[query]\nfeatures = [{ kind = \"categorical\", column = \"occupation\", dim = 4 }]\n\
                 [candidate]\nfeatures = [{ kind = \"id\", column = \"item_id\", dim = 4 }]\n",
                "an id feature in the query tower",
            ),
            (
                "[query]\nfeatures = [{ kind = \"categorical\", column = \"occupation\", dim = 2 }, \
                 { kind = \"id\", column = \"user_id\", dim = 4 }]\n\
                 [candidate]\nfeatures = [{ kind = \"id\", column = \"item_id\", dim = 4 }, \
                 { kind = \"multi\", column = \"genres\", dim = 2 }]\n",
                "face the candidate's id",
            ),
            (
                "normalize = true\n[query]\nfeatures = [{ kind = \"id\", column = \"user_id\", dim = 4 }]\n\
                 [candidate]\nfeatures = [{ kind = \"id\", column = \"item_id\", dim = 4 }]\n",
                "not normalised",
            ),
        ];
        for (spec, why) in cases {
            let (mut m, examples) = model(spec);
            let e = warm_start(&mut m, &examples, &als, &|| false).unwrap_err();
            assert!(e.to_string().contains(why), "{e}");
        }
    }
}
