//! `twotower bench`: time whole commands in fresh processes (wall, CPU, peak memory) and
//! report medians, so speed claims are measured the way the TFRS anchors were.

use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};

#[derive(Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    command: BenchCommand,
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Run `twotower train ARGS…` several times, each in its own process, and report medians
    /// of wall seconds, CPU seconds (user+sys), peak resident memory, seconds per epoch and
    /// training examples per second.
    ///
    /// Example (the TFRS tutorial on u1: 3 epochs plus evaluation of 20,000 interactions):
    ///   twotower bench train --runs 5 -- --preset tfrs --split u1 --data-dir ../shared/data
    Train {
        /// Number of runs.
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
        /// Alternate the runs between these worker-thread counts (e.g. `1,2`) and report
        /// each count's medians and its examples/s over the first count's, as medians and
        /// run by run (run i against run i). Interleaving gives every count the same share
        /// of a shared host's slow and fast spells.
        #[arg(long, value_delimiter = ',', value_name = "N,N,…")]
        compare_threads: Vec<usize>,
        /// Arguments passed to `twotower train`.
        #[arg(last = true, required = true)]
        train_args: Vec<String>,
    },
}

/// What one child process cost, and the training throughput it reported.
struct Usage {
    wall: f64,
    cpu: f64,
    max_rss_mib: f64,
    /// Mean seconds per training epoch.
    epoch_seconds: f64,
    /// Training examples per second over all epochs.
    examples_per_second: f64,
    /// GFLOP/s of the loss's matrix products, and their share of the epochs' time.
    product_gflops: f64,
    product_share: f64,
}

/// Runs `twotower --threads THREADS train ARGS… --json` and measures it.
fn run_child(args: &[String], threads: usize) -> Result<Usage> {
    let exe = std::env::current_exe().context("locating the twotower binary")?;
    let start = Instant::now();
    let mut child = Command::new(exe)
        .arg("--threads")
        .arg(threads.to_string())
        .arg("train")
        .args(args)
        .args(if args.iter().any(|a| a == "--json") {
            &[][..]
        } else {
            &["--json"][..]
        })
        .arg("--show-user")
        .arg("")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("starting twotower train")?;
    // Read the report while the child runs (a full pipe would block it).
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut text).map(|_| text)
    });
    let (cpu, max_rss_mib) = wait_measured(&mut child, args)?;
    let wall = start.elapsed().as_secs_f64();
    let report = reader
        .join()
        .map_err(|_| anyhow::anyhow!("reading the child's report panicked"))?
        .context("reading the child's report")?;
    let t = throughput(&report)?;
    Ok(Usage {
        wall,
        cpu,
        max_rss_mib,
        epoch_seconds: t.epoch_seconds,
        examples_per_second: t.examples_per_second,
        product_gflops: t.product_gflops,
        product_share: t.product_share,
    })
}

/// Waits for `child` (a `train` run with `args`) and returns its CPU seconds and peak
/// resident memory in MiB, as the kernel accounted them (`wait4`).
#[cfg(unix)]
fn wait_measured(child: &mut std::process::Child, args: &[String]) -> Result<(f64, f64)> {
    let mut status = 0i32;
    // SAFETY: rusage is plain data, zero is a valid value; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = child.id() as libc::pid_t;
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    if r != pid {
        bail!(
            "waiting for the child failed: {}",
            std::io::Error::last_os_error()
        );
    }
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        bail!(
            "`twotower train {}` failed; run it alone to see why",
            args.join(" ")
        );
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
fn wait_measured(child: &mut std::process::Child, args: &[String]) -> Result<(f64, f64)> {
    let status = child.wait().context("waiting for the child")?;
    if !status.success() {
        bail!(
            "`twotower train {}` failed; run it alone to see why",
            args.join(" ")
        );
    }
    Ok((f64::NAN, f64::NAN))
}

/// Training throughput read from a `train --json` report.
struct Throughput {
    epoch_seconds: f64,
    examples_per_second: f64,
    product_gflops: f64,
    product_share: f64,
}

/// Throughput over all epochs of `train --json`'s history.
fn throughput(report: &str) -> Result<Throughput> {
    let v: serde_json::Value =
        serde_json::from_str(report).context("`twotower train --json` printed no JSON report")?;
    let history = v["history"].as_array().filter(|h| !h.is_empty());
    let Some(history) = history else {
        bail!("the train report has no epochs");
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

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The smallest and largest of `v` (`v` not empty).
fn min_max(v: &[f64]) -> (f64, f64) {
    v.iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| {
            (lo.min(x), hi.max(x))
        })
}

/// TFRS tutorial on u1, this machine kind (ANCHORS.md): fit with training metrics plus
/// evaluate, CPU seconds and wall seconds.
const TFRS_CPU: f64 = 51.1 + 2.3;
const TFRS_WALL: f64 = 74.6 + 2.56;

/// Medians over the runs at one thread count.
struct Summary {
    threads: usize,
    /// Every run's examples/s, in run order (the spread shows how noisy the host was).
    eps_runs: Vec<f64>,
    wall: f64,
    cpu: f64,
    rss: f64,
    epoch: f64,
    eps: f64,
    gflops: f64,
    share: f64,
}

impl Summary {
    fn of(threads: usize, all: &[Usage]) -> Self {
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

    fn json(&self) -> serde_json::Value {
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

    fn print(&self, train_args: &[String], runs: usize) {
        let Summary {
            threads,
            ref eps_runs,
            wall,
            cpu,
            rss,
            epoch,
            eps,
            gflops,
            share,
        } = *self;
        println!(
            "twotower train {} ({runs} runs, {threads} worker thread{}, medians)",
            train_args.join(" "),
            if threads == 1 { "" } else { "s" }
        );
        println!("  wall {wall:.3} s, CPU (user+sys) {cpu:.3} s, peak memory {rss:.1} MiB");
        let (lo, hi) = min_max(eps_runs);
        println!("  training: {epoch:.3} s per epoch, {eps:.0} examples/s (runs {lo:.0}–{hi:.0})");
        println!(
            "  matrix products of the loss: {gflops:.1} GFLOP/s, {:.0}% of the epoch",
            share * 100.0
        );
    }
}

/// Run i's examples/s at `s`'s thread count over run i's at `base`'s: the runs were made
/// one right after the other, so each ratio compares the same spell of the host.
fn pair_ratios(s: &Summary, base: &Summary) -> Vec<f64> {
    s.eps_runs
        .iter()
        .zip(&base.eps_runs)
        .map(|(a, b)| a / b)
        .collect()
}

pub fn run(args: BenchArgs) -> Result<()> {
    let BenchCommand::Train {
        runs,
        json,
        compare_threads,
        train_args,
    } = args.command;
    if runs == 0 {
        bail!("--runs must be at least 1");
    }
    if compare_threads.contains(&0) {
        bail!("--compare-threads: every thread count must be at least 1");
    }
    // Without --compare-threads the children get this process's worker count
    // (`twotower --threads N bench …`).
    let counts = if compare_threads.is_empty() {
        vec![rayon::current_num_threads()]
    } else {
        compare_threads
    };
    let mut all: Vec<Vec<Usage>> = counts.iter().map(|_| Vec::with_capacity(runs)).collect();
    for i in 0..runs {
        for (k, &threads) in counts.iter().enumerate() {
            let u = run_child(&train_args, threads)?;
            eprintln!(
                "run {}/{runs}, {threads} thread{}: wall {:.3} s, cpu {:.3} s, peak {:.1} MiB, \
                 {:.3} s/epoch, {:.0} examples/s",
                i + 1,
                if threads == 1 { "" } else { "s" },
                u.wall,
                u.cpu,
                u.max_rss_mib,
                u.epoch_seconds,
                u.examples_per_second
            );
            all[k].push(u);
        }
    }
    let summaries: Vec<Summary> = counts
        .iter()
        .zip(&all)
        .map(|(&t, runs)| Summary::of(t, runs))
        .collect();
    if counts.len() > 1 {
        let base = &summaries[0];
        if json {
            let by: Vec<serde_json::Value> = summaries
                .iter()
                .map(|s| {
                    let mut v = s.json();
                    v["examples_per_second_over_first"] = (s.eps / base.eps).into();
                    v["pair_ratios"] = pair_ratios(s, base).into();
                    v
                })
                .collect();
            let v = serde_json::json!({
                "runs": runs,
                "train_args": train_args,
                "by_threads": by,
            });
            println!("{}", serde_json::to_string_pretty(&v)?);
        } else {
            for s in &summaries {
                s.print(&train_args, runs);
            }
            for s in &summaries[1..] {
                println!(
                    "scaling: {:.3}x the examples/s with {} threads as with {} (medians of \
                     {runs} interleaved runs each)",
                    s.eps / base.eps,
                    s.threads,
                    base.threads
                );
                let pairs: Vec<String> = pair_ratios(s, base)
                    .iter()
                    .map(|r| format!("{r:.3}"))
                    .collect();
                println!("  run by run: {}", pairs.join(", "));
            }
        }
        return Ok(());
    }
    let s = &summaries[0];
    if json {
        let mut v = s.json();
        v["runs"] = runs.into();
        v["train_args"] = serde_json::json!(train_args);
        v["tfrs_tutorial_cpu_seconds"] = TFRS_CPU.into();
        v["tfrs_tutorial_wall_seconds"] = TFRS_WALL.into();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        s.print(&train_args, runs);
        let tfrs_tutorial = train_args
            .windows(2)
            .any(|w| w[0] == "--preset" && w[1] == "tfrs")
            && !train_args.iter().any(|a| a.starts_with("--dataset"));
        if !tfrs_tutorial {
            return Ok(());
        }
        println!(
            "  for reference, the TFRS tutorial on u1 (fit with metrics + evaluate, ANCHORS.md): \
             {TFRS_CPU:.1} CPU-s, {TFRS_WALL:.1} s wall, ~1,750 MiB; ratio {:.0}x CPU, {:.0}x wall",
            TFRS_CPU / s.cpu,
            TFRS_WALL / s.wall
        );
    }
    Ok(())
}
