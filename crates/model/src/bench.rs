//! Timing whole training runs as the TFRS anchors were timed: `train` in fresh processes,
//! with the kernel's account of wall time, CPU time and peak memory (`wait4`), the
//! throughput the run reported, medians over runs, and runs interleaved between thread
//! counts. `twotower bench train` prints what [`interleaved`] returns.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::{ModelError, Result};

fn failed(why: &str) -> ModelError {
    ModelError::Config(format!("benchmark run: {why}"))
}

/// What one child process cost, and the training throughput it reported.
pub struct Usage {
    pub wall: f64,
    pub cpu: f64,
    pub max_rss_mib: f64,
    /// Mean seconds per training epoch.
    pub epoch_seconds: f64,
    /// Training examples per second over all epochs.
    pub examples_per_second: f64,
    /// GFLOP/s of the loss's matrix products, and their share of the epochs' time.
    pub product_gflops: f64,
    pub product_share: f64,
}

/// What a finished child process cost, as the kernel accounted it, and what it printed.
pub struct Measured {
    pub wall: f64,
    pub cpu: f64,
    pub max_rss_mib: f64,
    pub stdout: String,
}

/// Runs `cmd` (stdout read, stderr discarded) to its end and measures it; `what` names the
/// command in errors (a failed run is an error: run it alone to see why).
pub fn measure(cmd: &mut Command, what: &str) -> Result<Measured> {
    let start = Instant::now();
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| failed(&format!("starting `{what}`: {e}")))?;
    // Read the output while the child runs (a full pipe would block it).
    let mut stdout = child
        .stdout
        .take()
        .ok_or_else(|| failed("the child's output was not piped"))?;
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut text).map(|_| text)
    });
    let (cpu, max_rss_mib) = wait_measured(&mut child, what)?;
    let wall = start.elapsed().as_secs_f64();
    let stdout = reader
        .join()
        .map_err(|_| failed("reading the child's output panicked"))?
        .map_err(|e| failed(&format!("reading the child's output: {e}")))?;
    Ok(Measured {
        wall,
        cpu,
        max_rss_mib,
        stdout,
    })
}

/// `EXE --threads THREADS train ARGS… --json --show-user ""`.
pub(crate) fn train_command(exe: &Path, args: &[String], threads: usize) -> Command {
    let mut cmd = Command::new(exe);
    cmd.arg("--threads")
        .arg(threads.to_string())
        .arg("train")
        .args(args)
        .args(if args.iter().any(|a| a == "--json") {
            &[][..]
        } else {
            &["--json"][..]
        })
        .arg("--show-user")
        .arg("");
    cmd
}

/// Runs `EXE --threads THREADS train ARGS… --json` and measures it.
pub fn run_child(exe: &Path, args: &[String], threads: usize) -> Result<Usage> {
    let what = format!("twotower train {}", args.join(" "));
    let m = measure(&mut train_command(exe, args, threads), &what)?;
    let t = throughput(&m.stdout)?;
    Ok(Usage {
        wall: m.wall,
        cpu: m.cpu,
        max_rss_mib: m.max_rss_mib,
        epoch_seconds: t.epoch_seconds,
        examples_per_second: t.examples_per_second,
        product_gflops: t.product_gflops,
        product_share: t.product_share,
    })
}

/// Waits for `child` (the command `what`) and returns its CPU seconds and peak resident
/// memory in MiB, as the kernel accounted them (`wait4`).
#[cfg(unix)]
fn wait_measured(child: &mut std::process::Child, what: &str) -> Result<(f64, f64)> {
    let mut status = 0i32;
    // SAFETY: rusage is plain data, zero is a valid value; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = child.id() as libc::pid_t;
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    if r != pid {
        return Err(failed(&format!(
            "waiting for the child failed: {}",
            std::io::Error::last_os_error()
        )));
    }
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        return Err(failed(&format!("`{what}` failed; run it alone to see why")));
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    // Linux reports ru_maxrss in KiB.
    Ok((
        secs(usage.ru_utime) + secs(usage.ru_stime),
        usage.ru_maxrss as f64 / 1024.0,
    ))
}

/// Without `wait4`, CPU time and peak memory are not measured (reported as NaN).
#[cfg(not(unix))]
fn wait_measured(child: &mut std::process::Child, what: &str) -> Result<(f64, f64)> {
    let status = child
        .wait()
        .map_err(|e| failed(&format!("waiting for the child: {e}")))?;
    if !status.success() {
        return Err(failed(&format!("`{what}` failed; run it alone to see why")));
    }
    Ok((f64::NAN, f64::NAN))
}

/// Training throughput read from a `train --json` report.
#[derive(Debug)]
struct Throughput {
    epoch_seconds: f64,
    examples_per_second: f64,
    product_gflops: f64,
    product_share: f64,
}

/// Throughput over all epochs of `train --json`'s history.
fn throughput(report: &str) -> Result<Throughput> {
    let v: serde_json::Value = serde_json::from_str(report).map_err(|e| {
        failed(&format!(
            "`twotower train --json` printed no JSON report: {e}"
        ))
    })?;
    let history = v["history"].as_array().filter(|h| !h.is_empty());
    let Some(history) = history else {
        return Err(failed("the train report has no epochs"));
    };
    let (mut seconds, mut examples, mut product_s, mut gflop) = (0.0, 0.0, 0.0, 0.0);
    for e in history {
        let f = |k: &str| e[k].as_f64().unwrap_or(0.0);
        seconds += f("seconds");
        examples += f("examples_per_second") * f("seconds");
        product_s += f("product_seconds");
        gflop += f("product_gflops_per_second") * f("product_seconds");
    }
    Ok(Throughput {
        epoch_seconds: seconds / history.len() as f64,
        examples_per_second: examples / seconds.max(1e-12),
        product_gflops: gflop / product_s.max(1e-12),
        product_share: product_s / seconds.max(1e-12),
    })
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The smallest and largest of `v` (`v` not empty).
pub fn min_max(v: &[f64]) -> (f64, f64) {
    v.iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| {
            (lo.min(x), hi.max(x))
        })
}

/// TFRS tutorial on u1, this machine kind (ANCHORS.md): fit with training metrics plus
/// evaluate, CPU seconds and wall seconds.
pub const TFRS_CPU: f64 = 51.1 + 2.3;
pub const TFRS_WALL: f64 = 74.6 + 2.56;

/// Medians over the runs at one thread count.
pub struct Summary {
    pub threads: usize,
    /// Every run's examples/s, in run order (the spread shows how noisy the host was).
    pub eps_runs: Vec<f64>,
    pub wall: f64,
    pub cpu: f64,
    pub rss: f64,
    pub epoch: f64,
    pub eps: f64,
    pub gflops: f64,
    pub share: f64,
}

impl Summary {
    /// Medians of `all`, the runs at `threads` threads.
    pub fn of(threads: usize, all: &[Usage]) -> Self {
        let m = |f: fn(&Usage) -> f64| median(all.iter().map(f).collect());
        Summary {
            threads,
            eps_runs: all.iter().map(|u| u.examples_per_second).collect(),
            wall: m(|u| u.wall),
            cpu: m(|u| u.cpu),
            rss: m(|u| u.max_rss_mib),
            epoch: m(|u| u.epoch_seconds),
            eps: m(|u| u.examples_per_second),
            gflops: m(|u| u.product_gflops),
            share: m(|u| u.product_share),
        }
    }

    /// The summary as `bench train --json` reports it.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "threads": self.threads,
            "median_wall_seconds": self.wall,
            "median_cpu_seconds": self.cpu,
            "median_peak_rss_mib": self.rss,
            "median_epoch_seconds": self.epoch,
            "median_examples_per_second": self.eps,
            "median_product_gflops_per_second": self.gflops,
            "median_product_share_of_epoch": self.share,
            "examples_per_second_runs": self.eps_runs,
        })
    }
}

/// Run i's examples/s at `s`'s thread count over run i's at `base`'s: the runs were made
/// one right after the other, so each ratio compares the same spell of the host.
pub fn pair_ratios(s: &Summary, base: &Summary) -> Vec<f64> {
    s.eps_runs
        .iter()
        .zip(&base.eps_runs)
        .map(|(a, b)| a / b)
        .collect()
}

/// What `bench train` reports: the medians per thread count, compared with the first count
/// when there are several, and with the TFRS tutorial when `train_args` run it.
pub struct TrainBench<'a> {
    pub summaries: &'a [Summary],
    pub runs: usize,
    pub train_args: &'a [String],
}

impl TrainBench<'_> {
    /// Whether the timed command is the TFRS tutorial job (`--preset tfrs` on MovieLens 100K).
    fn is_tfrs_tutorial(&self) -> bool {
        let a = self.train_args;
        a.windows(2).any(|w| w[0] == "--preset" && w[1] == "tfrs")
            && !a.iter().any(|x| x.starts_with("--dataset"))
    }

    /// The report as `bench train --json` prints it.
    pub fn json(&self) -> serde_json::Value {
        let Some(base) = self.summaries.first() else {
            return serde_json::Value::Null;
        };
        if self.summaries.len() == 1 {
            let mut v = base.json();
            v["runs"] = self.runs.into();
            v["train_args"] = serde_json::json!(self.train_args);
            v["tfrs_tutorial_cpu_seconds"] = TFRS_CPU.into();
            v["tfrs_tutorial_wall_seconds"] = TFRS_WALL.into();
            return v;
        }
        let by: Vec<serde_json::Value> = self
            .summaries
            .iter()
            .map(|s| {
                let mut v = s.json();
                v["examples_per_second_over_first"] = (s.eps / base.eps).into();
                v["pair_ratios"] = pair_ratios(s, base).into();
                v
            })
            .collect();
        serde_json::json!({ "runs": self.runs, "train_args": self.train_args, "by_threads": by })
    }
}

impl std::fmt::Display for TrainBench<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let runs = self.runs;
        for s in self.summaries {
            let t = s.threads;
            writeln!(
                f,
                "twotower train {} ({runs} runs, {t} worker thread{}, medians)",
                self.train_args.join(" "),
                if t == 1 { "" } else { "s" }
            )?;
            writeln!(
                f,
                "  wall {:.3} s, CPU (user+sys) {:.3} s, peak memory {:.1} MiB",
                s.wall, s.cpu, s.rss
            )?;
            let (lo, hi) = min_max(&s.eps_runs);
            writeln!(
                f,
                "  training: {:.3} s per epoch, {:.0} examples/s (runs {lo:.0}–{hi:.0})",
                s.epoch, s.eps
            )?;
            writeln!(
                f,
                "  matrix products of the loss: {:.1} GFLOP/s, {:.0}% of the epoch",
                s.gflops,
                s.share * 100.0
            )?;
        }
        let Some((base, rest)) = self.summaries.split_first() else {
            return Ok(());
        };
        for s in rest {
            writeln!(
                f,
                "scaling: {:.3}x the examples/s with {} threads as with {} (medians of \
                 {runs} interleaved runs each)",
                s.eps / base.eps,
                s.threads,
                base.threads
            )?;
            let pairs: Vec<String> = pair_ratios(s, base)
                .iter()
                .map(|r| format!("{r:.3}"))
                .collect();
            writeln!(f, "  run by run: {}", pairs.join(", "))?;
        }
        if rest.is_empty() && self.is_tfrs_tutorial() {
            writeln!(
                f,
                "  for reference, the TFRS tutorial on u1 (fit with metrics + evaluate, \
                 ANCHORS.md): {TFRS_CPU:.1} CPU-s, {TFRS_WALL:.1} s wall, ~1,750 MiB; ratio \
                 {:.0}x CPU, {:.0}x wall",
                TFRS_CPU / base.cpu,
                TFRS_WALL / base.wall
            )?;
        }
        Ok(())
    }
}

impl std::fmt::Display for Usage {
    /// One run in a line: wall, CPU, peak memory, seconds per epoch, examples per second.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "wall {:.3} s, cpu {:.3} s, peak {:.1} MiB, {:.3} s/epoch, {:.0} examples/s",
            self.wall, self.cpu, self.max_rss_mib, self.epoch_seconds, self.examples_per_second
        )
    }
}

/// Runs `EXE train TRAIN_ARGS` `runs` times at each of the thread `counts`, alternating
/// between the counts run by run (so every count sees the same spells of a shared host),
/// reporting each run to `on_run`, and returns the medians per count.
pub fn interleaved(
    exe: &Path,
    train_args: &[String],
    runs: usize,
    counts: &[usize],
    on_run: &mut dyn FnMut(usize, usize, &Usage),
) -> Result<Vec<Summary>> {
    if runs == 0 || counts.is_empty() || counts.contains(&0) {
        return Err(ModelError::Config(
            "a benchmark needs at least one run and thread counts of at least 1".into(),
        ));
    }
    let mut all: Vec<Vec<Usage>> = counts.iter().map(|_| Vec::with_capacity(runs)).collect();
    for i in 0..runs {
        for (k, &threads) in counts.iter().enumerate() {
            let u = run_child(exe, train_args, threads)?;
            on_run(i, threads, &u);
            all[k].push(u);
        }
    }
    Ok(counts
        .iter()
        .zip(&all)
        .map(|(&t, runs)| Summary::of(t, runs))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(eps: f64) -> Usage {
        Usage {
            wall: 2.0,
            cpu: 3.0,
            max_rss_mib: 10.0,
            epoch_seconds: 1.0,
            examples_per_second: eps,
            product_gflops: 5.0,
            product_share: 0.5,
        }
    }

    #[test]
    fn medians_of_odd_and_even_counts() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(min_max(&[2.0, -1.0, 5.0]), (-1.0, 5.0));
    }

    #[test]
    fn summaries_keep_every_run_and_ratios_pair_run_i_with_run_i() {
        let one = Summary::of(1, &[usage(100.0), usage(120.0)]);
        let two = Summary::of(2, &[usage(190.0), usage(210.0)]);
        assert_eq!(one.eps_runs, vec![100.0, 120.0]);
        assert_eq!(one.eps, 110.0);
        assert_eq!(pair_ratios(&two, &one), vec![1.9, 1.75]);
        assert_eq!(pair_ratios(&one, &one), vec![1.0, 1.0]);
        let v = two.json();
        assert_eq!(v["threads"], 2);
        assert_eq!(v["median_examples_per_second"], 200.0);
        assert_eq!(
            v["examples_per_second_runs"],
            serde_json::json!([190.0, 210.0])
        );
    }

    #[test]
    fn throughput_weights_epochs_by_their_time() {
        let report = r#"{"history": [
            {"seconds": 1.0, "examples_per_second": 100.0, "product_seconds": 0.5, "product_gflops_per_second": 10.0},
            {"seconds": 3.0, "examples_per_second": 200.0, "product_seconds": 1.5, "product_gflops_per_second": 20.0}
        ]}"#;
        let t = throughput(report).unwrap();
        assert_eq!(t.epoch_seconds, 2.0);
        assert_eq!(t.examples_per_second, 700.0 / 4.0);
        assert_eq!(t.product_gflops, 35.0 / 2.0);
        assert_eq!(t.product_share, 0.5);
        assert!(throughput("{}")
            .unwrap_err()
            .to_string()
            .contains("no epochs"));
        assert!(throughput("not json").is_err());
    }
}
