//! How results look to people (tables, numbered lists) and to scripts (JSON): one
//! rendering of metrics, ranked items and a training run, shared by the command line, the
//! server and bindings. Text comes from `Display`, JSON from `Serialize` (or `json()`).

use std::fmt;

use serde::Serialize;
use twotower_index::Neighbor;

use crate::checkpoint::{DatasetInfo, ModelCard, SavedModel};
use crate::cold::ColdReport;
use crate::eval::{Metrics, NDCG_KS, RECALL_KS, TOP_KS};
use crate::pipeline::Experiment;
use crate::towers::{Catalogue, ItemView, TwoTowerModel};
use crate::{EpochStats, Recommendations, Result, TrainConfig};

/// The metrics of a model and of popularity, side by side, as two tables (one per
/// protocol; a row "ties against" is added where ties change top-K accuracy), or as JSON:
/// the model's metrics at the top level and popularity's under `popularity`.
#[derive(Serialize)]
pub struct MetricsTable<'a> {
    #[serde(flatten)]
    pub model: &'a Metrics,
    pub popularity: &'a Metrics,
}

impl MetricsTable<'_> {
    fn rows(&self) -> [(&'static str, &Metrics); 2] {
        [("model", self.model), ("popularity", self.popularity)]
    }

    /// One warning for each side whose top-K accuracy ties change by more than 0.001.
    pub fn tie_warnings(&self) -> Vec<String> {
        self.rows()
            .iter()
            .filter(|(_, m)| m.ties_matter())
            .map(|(name, _)| {
                format!("{name}: ties change top-K accuracy by more than 0.001; both counts shown")
            })
            .collect()
    }
}

impl fmt::Display for MetricsTable<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "Protocol 1: factorized top-K accuracy over all candidates ({} test interactions)",
            self.model.test_interactions
        )?;
        write!(f, "{:<26}", "")?;
        for k in TOP_KS {
            write!(f, "{:>9}", format!("top-{k}"))?;
        }
        writeln!(f)?;
        let row = |f: &mut fmt::Formatter<'_>,
                   name: &str,
                   values: &std::collections::BTreeMap<usize, f64>| {
            write!(f, "{name:<26}")?;
            for k in TOP_KS {
                write!(f, "{:>9.4}", values.get(&k).copied().unwrap_or(f64::NAN))?;
            }
            writeln!(f)
        };
        for (name, m) in self.rows() {
            row(f, name, &m.factorized_top_k)?;
            if m.ties_matter() {
                row(
                    f,
                    &format!("{name} (ties against)"),
                    &m.factorized_top_k_ties_against,
                )?;
            }
        }
        writeln!(
            f,
            "Protocol 2: top-N with training items excluded ({} users)",
            self.model.test_users
        )?;
        write!(f, "{:<26}", "")?;
        for k in RECALL_KS {
            write!(f, "{:>11}", format!("Recall@{k}"))?;
        }
        for k in NDCG_KS {
            write!(f, "{:>11}", format!("NDCG@{k}"))?;
        }
        writeln!(f)?;
        for (name, m) in self.rows() {
            write!(f, "{name:<26}")?;
            let cells = RECALL_KS
                .iter()
                .map(|k| m.recall.get(k))
                .chain(NDCG_KS.iter().map(|k| m.ndcg.get(k)));
            for v in cells {
                write!(f, "{:>11.4}", v.copied().unwrap_or(f64::NAN))?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

/// Ranked items: a JSON array of [`ItemView`]s, or a numbered list with scores and genres.
#[derive(Serialize)]
#[serde(transparent)]
pub struct Ranked<'a>(pub Vec<ItemView<'a>>);

impl Catalogue {
    /// `items` (catalogue rows with scores, best first) ready to print or serialise.
    pub fn ranked(&self, items: &[Neighbor]) -> Ranked<'_> {
        Ranked(self.views(items))
    }
}

impl fmt::Display for Ranked<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, v) in self.0.iter().enumerate() {
            writeln!(
                f,
                "{:>3}. {:<50} {:>8.4}  [{}]",
                i + 1,
                v.title,
                v.score.unwrap_or(f32::NAN),
                v.genres.join(", ")
            )?;
        }
        Ok(())
    }
}

/// A user's ranked items, as `recommend --json`, `train --json` and the HTTP API give
/// them.
#[derive(Serialize)]
pub struct UserItems<'a> {
    pub user: String,
    /// False when the user was answered from the out-of-vocabulary vector.
    pub known_user: bool,
    pub items: Ranked<'a>,
}

/// The items most like one item, as `similar --json` and the HTTP API give them.
#[derive(Serialize)]
pub struct SimilarItems<'a> {
    pub item: ItemView<'a>,
    pub items: Ranked<'a>,
}

impl Catalogue {
    /// `recs` (answered for `user`) ready to print or serialise.
    pub fn user_items(&self, user: &str, recs: &Recommendations) -> UserItems<'_> {
        UserItems {
            user: user.to_string(),
            known_user: recs.known_user,
            items: self.ranked(&recs.items),
        }
    }

    /// `items` (ranked like row `row`) ready to print or serialise.
    pub fn similar_items(&self, row: usize, items: &[Neighbor]) -> SimilarItems<'_> {
        SimilarItems {
            item: self.view(row, None),
            items: self.ranked(items),
        }
    }
}

impl TwoTowerModel {
    /// `recs` (answered for `user`) ready to print or serialise.
    pub fn user_items(&self, user: &str, recs: &Recommendations) -> UserItems<'_> {
        self.catalogue.user_items(user, recs)
    }

    /// `items` (ranked like catalogue row `row`) ready to print or serialise.
    pub fn similar_items(&self, row: usize, items: &[Neighbor]) -> SimilarItems<'_> {
        self.catalogue.similar_items(row, items)
    }
}

/// A test-side sample: `evaluated` of `of` interactions.
#[derive(Serialize, Clone, Copy)]
pub struct EvalSample {
    pub evaluated: usize,
    pub of: usize,
}

/// What a training run found: the metrics of both protocols (the model's at the top
/// level of the JSON, as `eval --json` prints them), popularity, times, the configuration,
/// the data, the history and optional recommendations.
#[derive(Serialize)]
pub struct TrainReport<'a> {
    #[serde(flatten)]
    pub metrics: Metrics,
    pub popularity: Metrics,
    pub train_seconds: f64,
    pub eval_seconds: f64,
    pub preset: String,
    pub config: &'a TrainConfig,
    pub dataset: &'a DatasetInfo,
    pub history: &'a [EpochStats],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recommendations: Option<UserItems<'a>>,
    /// How many recommendations were asked for.
    #[serde(skip)]
    pub shown_k: usize,
    /// Where the model was saved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_dir: Option<String>,
    /// The example budget training stopped at, if one was set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_examples: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eval_sample: Option<EvalSample>,
    /// On a cold-items split: the model's mean per-user AUC over the cold items.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auc: Option<f64>,
    /// On a cold-items split: the cold-item metrics of the model and its baselines.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cold_items: Option<ColdReport>,
    /// On a cold-users split: the item-kNN baseline, scored from the given histories.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub item_knn: Option<Metrics>,
    /// GFLOP of the ALS warm start's products ([`crate::als::Als::gflop`]), when it ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warm_start_gflop: Option<f64>,
}

impl TrainReport<'_> {
    /// The metrics tables of this run.
    pub fn table(&self) -> MetricsTable<'_> {
        MetricsTable {
            model: &self.metrics,
            popularity: &self.popularity,
        }
    }
}

impl fmt::Display for TrainReport<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "Trained preset {:?} on {} ({} examples, {} epochs) in {:.2} s; evaluated in {:.3} s",
            self.preset,
            self.dataset.split,
            self.dataset.train_interactions,
            self.config.epochs,
            self.train_seconds,
            self.eval_seconds
        )?;
        if let Some(n) = self.max_examples {
            writeln!(
                f,
                "Training stopped after at most {n} examples (--max-examples)."
            )?;
        }
        if let Some(s) = self.eval_sample {
            writeln!(
                f,
                "Evaluated on a random sample of {} of the {} test interactions (--eval-sample).",
                s.evaluated, s.of
            )?;
        }
        write!(f, "{}", self.table())?;
        if let Some(c) = &self.cold_items {
            write!(f, "{c}")?;
        }
        if let Some(m) = &self.item_knn {
            let top = |k: usize| m.factorized_top_k.get(&k).copied().unwrap_or(0.0);
            let p2 =
                |v: &std::collections::BTreeMap<usize, f64>, k| v.get(&k).copied().unwrap_or(0.0);
            writeln!(
                f,
                "item-kNN from the given histories: top-10 {:.4}, top-50 {:.4}, top-100 {:.4}; \
                 Recall@20 {:.4}, NDCG@10 {:.4}",
                top(10),
                top(50),
                top(100),
                p2(&m.recall, 20),
                p2(&m.ndcg, 10)
            )?;
        }
        if let Some(r) = &self.recommendations {
            let unknown = if r.known_user {
                ""
            } else {
                " (unknown user: out-of-vocabulary vector)"
            };
            writeln!(f, "Top {} for user {}{unknown}:", self.shown_k, r.user)?;
            write!(f, "{}", r.items)?;
        }
        if let Some(dir) = &self.model_dir {
            writeln!(f, "Model saved to {dir}")?;
        }
        Ok(())
    }
}

impl Experiment {
    /// Evaluates on a seeded random sample of `n` test interactions from now on; says how
    /// many of how many when that is fewer than all.
    pub fn sample_test(&mut self, n: usize) -> Option<EvalSample> {
        let of = self.split.test.len();
        self.split.sample(n, self.model.config.seed);
        let evaluated = self.split.test.len();
        (evaluated < of).then_some(EvalSample { evaluated, of })
    }

    /// Evaluates the trained model and popularity (timed), and ranks `show`'s `k` movies
    /// (a user id; `None` for none): the report of a run that took `train_seconds`.
    pub fn report(&self, train_seconds: f64, show: Option<(&str, usize)>) -> TrainReport<'_> {
        let start = std::time::Instant::now();
        let metrics = self.evaluate();
        let cold_items = self
            .split
            .cold_report(&crate::eval::ModelScorer::new(&self.model));
        let eval_seconds = start.elapsed().as_secs_f64();
        let recommendations = show.map(|(user, k)| {
            let r = self
                .model
                .recommend(&self.model.exact_index(), user, k, false);
            self.model.user_items(user, &r)
        });
        TrainReport {
            metrics,
            popularity: self.evaluate_popularity(),
            train_seconds,
            eval_seconds,
            preset: self.model.config.preset.clone(),
            config: &self.model.config,
            dataset: &self.dataset,
            history: &self.history,
            recommendations,
            shown_k: show.map_or(0, |(_, k)| k),
            model_dir: None,
            max_examples: None,
            eval_sample: None,
            auc: cold_items.as_ref().map(|c| c.model.auc),
            cold_items,
            item_knn: self.split.item_knn(),
            warm_start_gflop: self.warm_start_gflop,
        }
    }

    /// Saves the trained model with its card (holding `report`'s metrics) and history to
    /// `out`, replacing only a model folder, atomically.
    pub fn save(&self, report: &TrainReport, out: &std::path::Path) -> Result<()> {
        self.saved(report).save(out)
    }

    /// The trained model with its card (holding `report`'s metrics) and history, as
    /// [`Experiment::save`] writes it.
    pub fn saved(&self, report: &TrainReport) -> SavedModel {
        let mut card = ModelCard::describe(&self.model, self.dataset.clone(), report.train_seconds);
        card.metrics =
            serde_json::json!({ "model": report.metrics, "popularity": report.popularity });
        SavedModel {
            model: self.model.clone(),
            card,
            history: self.history.clone(),
            warnings: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn metrics(top: f64, against: f64) -> Metrics {
        let map = |ks: &[usize], v: f64| ks.iter().map(|&k| (k, v)).collect::<BTreeMap<_, _>>();
        Metrics {
            factorized_top_k: map(&TOP_KS, top),
            factorized_top_k_ties_against: map(&TOP_KS, against),
            recall: map(&RECALL_KS, 0.25),
            ndcg: map(&NDCG_KS, 0.125),
            test_interactions: 7,
            test_users: 3,
        }
    }

    #[test]
    fn the_table_shows_a_ties_row_and_a_warning_only_where_ties_matter() {
        let (model, popularity) = (metrics(0.5, 0.5), metrics(0.5, 0.4));
        let table = MetricsTable {
            model: &model,
            popularity: &popularity,
        };
        let text = table.to_string();
        assert!(text.contains("(7 test interactions)") && text.contains("(3 users)"));
        assert!(!text.contains("model (ties against)"), "{text}");
        assert!(
            text.contains("popularity (ties against)    0.4000"),
            "{text}"
        );
        assert_eq!(table.tie_warnings().len(), 1);
        assert!(table.tie_warnings()[0].starts_with("popularity:"));
        let recall_row = text.lines().rev().nth(1).unwrap();
        assert!(recall_row.starts_with("model") && recall_row.contains("0.2500"));
        assert!(recall_row.trim_end().ends_with("0.1250"));
        // JSON: the model's metrics at the top level, popularity's under its name.
        let v = serde_json::to_value(&table).unwrap();
        assert_eq!(v["test_users"], 3);
        assert_eq!(v["popularity"]["factorized_top_k_ties_against"]["1"], 0.4);
    }

    #[test]
    fn ranked_items_print_numbered_with_scores_and_serialise_as_views() {
        let movies = [twotower_data::Movie {
            id: 9,
            title: "Heat (1995)".into(),
            release_date: String::new(),
            genres: vec!["Action".into(), "Crime".into()],
        }];
        let catalogue = Catalogue::from_movies(&movies);
        let ranked = catalogue.ranked(&[Neighbor { id: 0, score: 1.5 }]);
        assert_eq!(
            ranked.to_string(),
            format!("  1. {:<50}   1.5000  [Action, Crime]\n", "Heat (1995)")
        );
        let v = serde_json::to_value(&ranked).unwrap();
        assert_eq!(v[0]["id"], "9");
        assert_eq!(v[0]["year"], 1995);
        assert_eq!(v[0]["score"], 1.5);
    }
}
