//! Printing metrics and recommendations for people (tables) and scripts (JSON).

use twotower_index::Neighbor;
use twotower_model::eval::{NDCG_KS, RECALL_KS, TOP_KS};
use twotower_model::{Metrics, TwoTowerModel};

/// The metrics of a model and of popularity, side by side.
pub fn print_metrics(model: &Metrics, popularity: &Metrics) {
    println!(
        "Protocol 1: factorized top-K accuracy over all candidates ({} test interactions)",
        model.test_interactions
    );
    print!("{:<26}", "");
    for k in TOP_KS {
        print!("{:>9}", format!("top-{k}"));
    }
    println!();
    for (name, m) in [("model", model), ("popularity", popularity)] {
        print!("{name:<26}");
        for k in TOP_KS {
            print!("{:>9.4}", m.factorized_top_k[&k]);
        }
        println!();
        if m.ties_matter() {
            print!("{:<26}", format!("{name} (ties against)"));
            for k in TOP_KS {
                print!("{:>9.4}", m.factorized_top_k_ties_against[&k]);
            }
            println!();
            eprintln!(
                "warning: {name}: ties change top-K accuracy by more than 0.001; both counts shown"
            );
        }
    }
    println!(
        "Protocol 2: top-N with training items excluded ({} users)",
        model.test_users
    );
    print!("{:<26}", "");
    for k in RECALL_KS {
        print!("{:>11}", format!("Recall@{k}"));
    }
    for k in NDCG_KS {
        print!("{:>11}", format!("NDCG@{k}"));
    }
    println!();
    for (name, m) in [("model", model), ("popularity", popularity)] {
        print!("{name:<26}");
        for k in RECALL_KS {
            print!("{:>11.4}", m.recall[&k]);
        }
        for k in NDCG_KS {
            print!("{:>11.4}", m.ndcg[&k]);
        }
        println!();
    }
}

/// Ranked rows as JSON, as the HTTP API gives them.
pub fn items_json(model: &TwoTowerModel, items: &[Neighbor]) -> serde_json::Value {
    serde_json::json!(model.catalogue.views(items))
}

/// Rows with scores as a numbered list.
pub fn print_items(model: &TwoTowerModel, items: &[Neighbor]) {
    for (i, n) in items.iter().enumerate() {
        let r = n.id as usize;
        println!(
            "{:>3}. {:<50} {:>8.4}  [{}]",
            i + 1,
            model.catalogue.titles[r],
            n.score,
            model.catalogue.genres[r].join(", ")
        );
    }
}
