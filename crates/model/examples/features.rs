//! Trains a feature model (a `--towers` spec) on a MovieLens split and prints both
//! protocols, for measuring feature towers before they reach the command line.
//!
//! ```text
//! cargo run --release -p twotower-model --example features -- DATA_DIR SPEC.toml [SPLIT] [EPOCHS] [LR] [BATCH]
//! ```
//! e.g. `… ../shared/data towers.toml u1 20 0.003 1024`. The optimizer is the default
//! preset's (Adam) with full softmax over the catalogue.

use twotower_data::{Dataset, SplitParams, SplitSpec};
use twotower_model::eval::evaluate;
use twotower_model::feature_model::FeatureModel;
use twotower_model::spec::TowersSpec;
use twotower_model::{OptimizerConfig, SplitEval, TrainConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [data, spec_path, rest @ ..] = args.as_slice() else {
        return Err("usage: features DATA_DIR SPEC.toml [SPLIT] [EPOCHS] [LR] [BATCH]".into());
    };
    let split = rest.first().map_or("u1", String::as_str);
    let mut cfg = TrainConfig::preset("default")?;
    if let Some(e) = rest.get(1) {
        cfg.epochs = e.parse()?;
    }
    if let Some(lr) = rest.get(2) {
        cfg.optimizer = OptimizerConfig::adam(lr.parse()?);
    }
    if let Some(b) = rest.get(3) {
        cfg.batch_size = b.parse()?;
    }
    let ml = Dataset::open(data)?;
    let spec = SplitSpec::named(split, SplitParams::default())?;
    let (train, test) = ml.split(&spec)?;
    let towers = TowersSpec::read(std::path::Path::new(spec_path))?;
    let start = std::time::Instant::now();
    let (mut model, mut trainer) = FeatureModel::new(cfg, towers, &ml, &train, Default::default())?;
    for _ in 0..model.config.epochs {
        let s = trainer.run_epoch(&mut model)?;
        eprintln!("epoch {}: {s}", s.epoch);
    }
    let train_seconds = start.elapsed().as_secs_f64();
    let split_eval = SplitEval::new(&ml, &train, &test)?;
    let times: Vec<i64> = test.iter().map(|r| r.timestamp).collect();
    let scorer = model.scorer(&split_eval.test, &times)?;
    let m = evaluate(&scorer, ml.movies.len(), &split_eval.test, &split_eval.seen);
    let p = split_eval.popularity();
    print!(
        "{}",
        twotower_model::MetricsTable {
            model: &m,
            popularity: &p
        }
    );
    println!("trained in {train_seconds:.1} s");
    Ok(())
}
