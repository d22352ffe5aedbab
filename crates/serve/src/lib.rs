//! The HTTP recommendation service and its web page.
//!
//! [`serve`] binds an address, answers `/healthz` with 503 while the model folder loads in
//! the background, then serves the JSON API of [`router`] (recommendations, similar movies,
//! title search, user history, the model card), Prometheus metrics at `/metrics`, and a web
//! page at `/` that is compiled into the binary. Every connection and request is bounded
//! (see [`Limits`] and the limits of [`router`]); scoring runs on a compute pool of its
//! own at a lower priority, with a bounded queue (503 past it), so `/healthz` answers at
//! once whatever clients do. It shuts down when the
//! `shutdown` future resolves, giving requests in flight [`Limits::shutdown_grace`], and
//! stops with an error when the model folder cannot be loaded. Its principal types are
//! [`AppState`] (the loaded model, the compute pool and the metrics) and [`Limits`]. It owns
//! the HTTP layer only: what an answer holds comes from the model crate.
//!
//! ```no_run
//! # async fn run() -> Result<(), twotower_serve::ServeError> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await.unwrap();
//! twotower_serve::serve(listener, "model".into(), twotower_serve::shutdown_signal()).await
//! # }
//! ```

mod api;
mod metrics;
mod server;
mod state;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

pub use api::{router, MAX_BODY_BYTES, MAX_K, MAX_NAME_BYTES, MAX_RESULTS, REQUEST_TIMEOUT};
pub use server::Limits;
pub use state::{AppState, Compute, ComputeError, Loaded};

/// Why the server stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("loading the model failed")]
    Load(#[from] twotower_model::ModelError),
    #[error("loading the model failed: the loader stopped unexpectedly ({0})")]
    Loader(String),
    #[error("binding {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("server error: {0}")]
    Io(#[from] std::io::Error),
}

/// Serves `model_dir` on `addr` from a runtime of its own until SIGINT or SIGTERM (a
/// second signal exits the process at once, status 130), telling `on_listening` the bound
/// address (port 0 picks a free one). Returns once the server is down; work still on the
/// blocking pool (a load, a slow request) gets at most half a second more. What
/// `twotower serve` runs; a program with its own runtime calls [`serve_with`].
pub fn serve_blocking(
    addr: &str,
    model_dir: PathBuf,
    limits: Limits,
    on_listening: impl FnOnce(std::net::SocketAddr),
) -> Result<(), ServeError> {
    // Twice as many async workers as cores (at least 4): a worker that writes a large
    // answer is busy for milliseconds (over loopback the kernel does the receiver's work in
    // the writer's call), and a spare worker steals the light requests queued behind it
    // (`/healthz` p99 23 ms → 4 ms with 4 workers on 2 cores, bench/healthz_load.py).
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads((2 * cores).max(4))
        .enable_all()
        .build()?;
    let served = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| ServeError::Bind {
                addr: addr.to_string(),
                source,
            })?;
        on_listening(listener.local_addr()?);
        let shutdown = async {
            shutdown_signal().await;
            eprintln!("shutting down (a second signal exits at once)");
            tokio::spawn(async {
                shutdown_signal().await;
                eprintln!("second signal: exiting now");
                std::process::exit(130);
            });
        };
        serve_with(listener, model_dir, shutdown, limits).await
    });
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    served
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// Serves `model_dir` on `listener` with the default [`Limits`] (see [`serve_with`]).
pub async fn serve(
    listener: tokio::net::TcpListener,
    model_dir: PathBuf,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    serve_with(listener, model_dir, shutdown, Limits::default()).await
}

/// Serves `model_dir` on `listener` until `shutdown` resolves (then drains, see
/// [`Limits::shutdown_grace`]) or the model fails to load (then stops with that error).
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    model_dir: PathBuf,
    shutdown: impl Future<Output = ()> + Send + 'static,
    limits: Limits,
) -> Result<(), ServeError> {
    let state = Arc::new(AppState::new());
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<Result<(), ServeError>>();
    let loader = state.clone();
    tokio::task::spawn_blocking(move || {
        let start = Instant::now();
        let opened = std::panic::catch_unwind(|| Loaded::open(&model_dir));
        let outcome = match opened {
            Ok(Ok(l)) => {
                for w in &l.warnings {
                    eprintln!("warning: {w}");
                }
                loader.set_loaded(l);
                let ms = start.elapsed().as_secs_f64() * 1e3;
                tracing::info!("model loaded in {ms:.1} ms; ready");
                eprintln!("ready: model loaded in {ms:.1} ms");
                Ok(())
            }
            Ok(Err(e)) => Err(ServeError::Load(e)),
            Err(panic) => Err(ServeError::Loader(panic_text(&panic))),
        };
        let _ = done_tx.send(outcome);
    });
    // Only a successful load keeps the server up; an error, a panic or a loader that
    // vanished without a word all stop it.
    let load_failed = async {
        match done_rx.await {
            Ok(Ok(())) => std::future::pending().await,
            Ok(Err(e)) => e,
            Err(_) => ServeError::Loader("no answer from the loading thread".into()),
        }
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<Option<ServeError>>();
    let stop = async move {
        let failure = tokio::select! {
            _ = shutdown => None,
            e = load_failed => Some(e),
        };
        let _ = stop_tx.send(failure);
    };
    server::run(listener, router(state), limits, stop).await?;
    match stop_rx.await {
        Ok(Some(e)) => Err(e),
        _ => Ok(()),
    }
}

fn panic_text(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn raw_get(addr: std::net::SocketAddr, path: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn not_ready_until_the_model_is_loaded() {
        let state = Arc::new(AppState::new());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = router(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let health = raw_get(addr, "/healthz").await;
        assert!(health.starts_with("HTTP/1.1 503"), "{health}");
        assert!(health.contains("loading"));
        let rec = raw_get(addr, "/v1/recommend?user=1").await;
        assert!(
            rec.starts_with("HTTP/1.1 503") && rec.contains("still loading"),
            "{rec}"
        );
        // The page and metrics do not need the model.
        assert!(raw_get(addr, "/").await.starts_with("HTTP/1.1 200"));
        assert!(raw_get(addr, "/metrics").await.starts_with("HTTP/1.1 200"));
    }
}
