//! `twotower serve`: the HTTP API and web page for a saved model.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;

#[derive(Args)]
pub struct ServeArgs {
    /// Model folder written by `twotower train --out`.
    #[arg(long, value_name = "DIR")]
    model: PathBuf,
    /// Address to listen on (port 0 picks a free port; the chosen address is printed).
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: String,
    /// Open connections at most (default 1,024, or fewer when the process may open fewer
    /// files); more are answered 503 and closed.
    #[arg(long, value_name = "N")]
    max_connections: Option<usize>,
    /// Seconds a client has to send a request's headers; also how long an idle
    /// keep-alive connection is kept.
    #[arg(long, value_name = "SECONDS", default_value_t = 5.0)]
    header_timeout: f64,
    /// Seconds requests in flight get to finish after SIGTERM or Ctrl-C; a second signal
    /// exits at once.
    #[arg(long, value_name = "SECONDS", default_value_t = 5.0)]
    shutdown_grace: f64,
}

fn seconds(v: f64, flag: &str) -> Result<Duration> {
    if !(v.is_finite() && v > 0.0 && v <= 3600.0) {
        bail!("--{flag} must be a number of seconds above 0 and at most 3600, got {v}");
    }
    Ok(Duration::from_secs_f64(v))
}

pub fn run(args: ServeArgs) -> Result<()> {
    let mut limits = twotower_serve::Limits::default();
    if let Some(n) = args.max_connections {
        if n == 0 {
            bail!("--max-connections must be at least 1");
        }
        limits.max_connections = n;
    }
    limits
        .check()
        .map_err(|e| anyhow::anyhow!("--max-connections: {e}"))?;
    limits.header_timeout = seconds(args.header_timeout, "header-timeout")?;
    limits.shutdown_grace = seconds(args.shutdown_grace, "shutdown-grace")?;
    twotower_serve::serve_blocking(&args.addr, args.model.clone(), limits, |addr| {
        println!("listening on http://{addr}");
        let _ = std::io::stdout().flush();
    })
    .with_context(|| format!("serving {}", args.model.display()))?;
    eprintln!("shut down cleanly");
    Ok(())
}
