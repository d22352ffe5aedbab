//! `twotower serve`: the HTTP API and web page for a saved model.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

#[derive(Args)]
pub struct ServeArgs {
    /// Model folder written by `twotower train --out`.
    #[arg(long, value_name = "DIR")]
    model: PathBuf,
    /// Address to listen on (port 0 picks a free port; the chosen address is printed).
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: String,
}

pub fn run(args: ServeArgs) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(&args.addr)
            .await
            .with_context(|| format!("binding {}", args.addr))?;
        let addr = listener.local_addr()?;
        println!("listening on http://{addr}");
        std::io::stdout().flush()?;
        twotower_serve::serve(
            listener,
            args.model.clone(),
            twotower_serve::shutdown_signal(),
        )
        .await
        .with_context(|| format!("serving {}", args.model.display()))?;
        eprintln!("shut down cleanly");
        Ok(())
    })
}
