//! Time to quality, side by side: `twotower train` in fresh processes, alternating run by
//! run with another command (the ALS reference script, `bench/als_reference.py`), each
//! measured whole (wall, CPU, peak memory) with the quality it printed and, for twotower,
//! the work it did (examples trained on, GFLOP of the loss's and the ALS warm start's
//! matrix products). What
//! `twotower bench quality` prints.

use std::path::Path;
use std::process::Command;

use crate::bench::{measure, median, Measured};
use crate::{ModelError, Result};

/// One measured run and what it reached.
#[derive(Debug, Clone)]
pub struct QualityRun {
    pub wall: f64,
    pub cpu: f64,
    pub max_rss_mib: f64,
    /// Protocol 1 top-10 and top-100 on the test side.
    pub top10: f64,
    pub top100: f64,
    /// Training examples processed and GFLOP of the loss's and the ALS warm start's
    /// products (twotower runs only; NaN for another command).
    pub examples: f64,
    pub gflop: f64,
}

fn bad(what: &str, why: &str) -> ModelError {
    ModelError::Config(format!("benchmark run `{what}`: {why}"))
}

/// Reads `factorized_top_k` 10 and 100 (keys as strings, JSON's way) from `json`.
fn tops(json: &serde_json::Value, what: &str) -> Result<(f64, f64)> {
    let at = |k: &str| {
        json["factorized_top_k"][k]
            .as_f64()
            .ok_or_else(|| bad(what, &format!("its JSON has no factorized_top_k {k}")))
    };
    Ok((at("10")?, at("100")?))
}

impl QualityRun {
    fn new(m: &Measured, (top10, top100): (f64, f64), examples: f64, gflop: f64) -> Self {
        QualityRun {
            wall: m.wall,
            cpu: m.cpu,
            max_rss_mib: m.max_rss_mib,
            top10,
            top100,
            examples,
            gflop,
        }
    }

    /// A `train --json` run: its metrics, and its work summed over the history.
    fn of_train(m: Measured, what: &str) -> Result<Self> {
        let v: serde_json::Value = serde_json::from_str(&m.stdout)
            .map_err(|e| bad(what, &format!("printed no JSON report: {e}")))?;
        let (top10, top100) = tops(&v, what)?;
        let (mut examples, mut gflop) = (0.0, 0.0);
        for e in v["history"].as_array().into_iter().flatten() {
            let f = |k: &str| e[k].as_f64().unwrap_or(0.0);
            examples += f("examples_per_second") * f("seconds");
            gflop += f("product_gflops_per_second") * f("product_seconds");
        }
        gflop += v["warm_start_gflop"].as_f64().unwrap_or(0.0);
        Ok(QualityRun::new(
            &m,
            (top10, top100),
            examples.round(),
            gflop,
        ))
    }

    /// Another command's run: the last line of its output is a JSON object with
    /// `factorized_top_k`.
    fn of_other(m: Measured, what: &str) -> Result<Self> {
        let last = m.stdout.lines().rev().find(|l| !l.trim().is_empty());
        let v: serde_json::Value = last
            .and_then(|l| serde_json::from_str(l).ok())
            .ok_or_else(|| bad(what, "its last line of output is not a JSON object"))?;
        let (top10, top100) = tops(&v, what)?;
        Ok(QualityRun::new(&m, (top10, top100), f64::NAN, f64::NAN))
    }
}

/// Runs `EXE train TRAIN_ARGS` and, when given, the shell command `against`, alternately,
/// `runs` times each (so both see the same spells of a shared host), telling `on_run` of
/// every run: (twotower's runs, the other command's runs).
pub fn alternate(
    exe: &Path,
    train_args: &[String],
    against: Option<&str>,
    runs: usize,
    threads: usize,
    on_run: &mut dyn FnMut(usize, &str, &QualityRun),
) -> Result<(Vec<QualityRun>, Vec<QualityRun>)> {
    if runs == 0 || threads == 0 {
        return Err(ModelError::Config(
            "a benchmark needs at least one run and one thread".into(),
        ));
    }
    let what = format!("twotower train {}", train_args.join(" "));
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for i in 0..runs {
        let mut cmd = crate::bench::train_command(exe, train_args, threads);
        let run = QualityRun::of_train(measure(&mut cmd, &what)?, &what)?;
        on_run(i, "twotower", &run);
        ours.push(run);
        if let Some(other) = against {
            let mut cmd = Command::new("sh");
            cmd.arg("-c").arg(other);
            let run = QualityRun::of_other(measure(&mut cmd, other)?, other)?;
            on_run(i, "against", &run);
            theirs.push(run);
        }
    }
    Ok((ours, theirs))
}

/// Medians of runs.
#[derive(Debug, Clone, serde::Serialize)]
pub struct QualityMedians {
    pub wall_seconds: f64,
    pub cpu_seconds: f64,
    pub peak_rss_mib: f64,
    pub top10: f64,
    pub top100: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub examples: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gflop: Option<f64>,
    pub wall_runs: Vec<f64>,
}

impl QualityMedians {
    /// The medians of `runs` (not empty).
    pub fn of(runs: &[QualityRun]) -> Self {
        let m = |f: fn(&QualityRun) -> f64| median(runs.iter().map(f).collect());
        let work = |v: f64| v.is_finite().then_some(v);
        QualityMedians {
            wall_seconds: m(|r| r.wall),
            cpu_seconds: m(|r| r.cpu),
            peak_rss_mib: m(|r| r.max_rss_mib),
            top10: m(|r| r.top10),
            top100: m(|r| r.top100),
            examples: work(m(|r| r.examples)),
            gflop: work(m(|r| r.gflop)),
            wall_runs: runs.iter().map(|r| r.wall).collect(),
        }
    }
}

/// What `bench quality` reports: twotower's medians, the other command's, and the wall
/// ratio as a median and run by run.
#[derive(Debug, serde::Serialize)]
pub struct QualityBench {
    pub runs: usize,
    pub train_args: Vec<String>,
    pub twotower: QualityMedians,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub against: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub other: Option<QualityMedians>,
    /// The other command's wall time over twotower's, run i against run i.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub wall_ratio_runs: Vec<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub median_wall_ratio: Option<f64>,
}

impl QualityBench {
    /// The report of `ours` and `theirs` (empty without another command).
    pub fn new(
        train_args: &[String],
        against: Option<&str>,
        ours: &[QualityRun],
        theirs: &[QualityRun],
    ) -> Self {
        let ratios: Vec<f64> = theirs
            .iter()
            .zip(ours)
            .map(|(t, o)| t.wall / o.wall)
            .collect();
        QualityBench {
            runs: ours.len(),
            train_args: train_args.to_vec(),
            twotower: QualityMedians::of(ours),
            against: against.map(str::to_string),
            other: (!theirs.is_empty()).then(|| QualityMedians::of(theirs)),
            median_wall_ratio: (!ratios.is_empty()).then(|| median(ratios.clone())),
            wall_ratio_runs: ratios,
        }
    }
}

impl std::fmt::Display for QualityRun {
    /// One run in a line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "wall {:.3} s, cpu {:.3} s, peak {:.1} MiB, top-10 {:.4}, top-100 {:.4}",
            self.wall, self.cpu, self.max_rss_mib, self.top10, self.top100
        )
    }
}

impl std::fmt::Display for QualityBench {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let line = |f: &mut std::fmt::Formatter<'_>, name: &str, m: &QualityMedians| {
            writeln!(
                f,
                "{name}: wall {:.3} s, CPU {:.3} s, peak {:.1} MiB; top-10 {:.4}, top-100 {:.4}",
                m.wall_seconds, m.cpu_seconds, m.peak_rss_mib, m.top10, m.top100
            )
        };
        writeln!(
            f,
            "medians of {} runs, alternating (twotower train {}):",
            self.runs,
            self.train_args.join(" ")
        )?;
        line(f, "twotower", &self.twotower)?;
        if let (Some(e), Some(g)) = (self.twotower.examples, self.twotower.gflop) {
            writeln!(
                f,
                "  work: {e:.0} training examples, {g:.1} GFLOP of matrix products (the loss's \
                 and the ALS warm start's)"
            )?;
        }
        if let (Some(cmd), Some(other)) = (&self.against, &self.other) {
            line(f, cmd, other)?;
            if let Some(r) = self.median_wall_ratio {
                let runs: Vec<String> = self
                    .wall_ratio_runs
                    .iter()
                    .map(|r| format!("{r:.2}"))
                    .collect();
                writeln!(
                    f,
                    "wall time: the other command takes {r:.2}x twotower's (run by run: {})",
                    runs.join(", ")
                )?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measured(stdout: &str, wall: f64) -> Measured {
        Measured {
            wall,
            cpu: wall * 2.0,
            max_rss_mib: 10.0,
            stdout: stdout.into(),
        }
    }

    #[test]
    fn runs_read_quality_and_work_and_ratios_pair_runs() {
        let train = r#"{"factorized_top_k": {"10": 0.1, "100": 0.5}, "history": [
            {"seconds": 2.0, "examples_per_second": 100.0, "product_seconds": 1.0, "product_gflops_per_second": 3.0},
            {"seconds": 1.0, "examples_per_second": 100.0, "product_seconds": 1.0, "product_gflops_per_second": 5.0}]}"#;
        let ours = QualityRun::of_train(measured(train, 1.0), "t").unwrap();
        assert_eq!((ours.top10, ours.top100), (0.1, 0.5));
        assert_eq!((ours.examples, ours.gflop), (300.0, 8.0));
        // An ALS warm start's products count in the work too.
        let warm = train.replacen('{', r#"{"warm_start_gflop": 0.5, "#, 1);
        let warmed = QualityRun::of_train(measured(&warm, 1.0), "t").unwrap();
        assert_eq!((warmed.examples, warmed.gflop), (300.0, 8.5));
        let als = "fitting…\n{\"factorized_top_k\": {\"10\": 0.06, \"100\": 0.39}}\n";
        let theirs = QualityRun::of_other(measured(als, 3.0), "als").unwrap();
        assert_eq!(theirs.top100, 0.39);
        assert!(theirs.examples.is_nan());
        let b = QualityBench::new(
            &[],
            Some("als"),
            &[ours.clone(), ours],
            &[theirs.clone(), theirs],
        );
        assert_eq!(b.wall_ratio_runs, vec![3.0, 3.0]);
        assert_eq!(b.median_wall_ratio, Some(3.0));
        assert_eq!(b.twotower.examples, Some(300.0));
        assert_eq!(b.other.as_ref().and_then(|o| o.examples), None);
        let text = b.to_string();
        assert!(text.contains("3.00x"), "{text}");
        // Output without the metrics is an error naming the command.
        let e = QualityRun::of_other(measured("done\n", 1.0), "als").unwrap_err();
        assert!(e.to_string().contains("`als`"), "{e}");
        let e = QualityRun::of_train(measured("{}", 1.0), "t").unwrap_err();
        assert!(e.to_string().contains("factorized_top_k 10"), "{e}");
    }
}
