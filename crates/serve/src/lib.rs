//! The HTTP recommendation service and its web page.
//!
//! [`serve`] binds an address, answers `/healthz` with 503 while the model folder loads in
//! the background, then serves the JSON API of [`router`] (recommendations, similar movies,
//! title search, user history, the model card), Prometheus metrics at `/metrics`, and a web
//! page at `/` that is compiled into the binary. It shuts down gracefully on SIGINT/SIGTERM,
//! finishing in-flight requests.
//!
//! ```no_run
//! # async fn run() -> Result<(), twotower_serve::ServeError> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await.unwrap();
//! twotower_serve::serve(listener, "model".into(), twotower_serve::shutdown_signal()).await
//! # }
//! ```

mod api;
mod metrics;
mod state;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

pub use api::{router, MAX_BODY_BYTES, MAX_K};
pub use state::{AppState, Loaded};

/// Why the server stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("loading the model failed: {0}")]
    Load(#[from] twotower_model::ModelError),
    #[error("server error: {0}")]
    Io(#[from] std::io::Error),
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

/// Serves `model_dir` on `listener` until `shutdown` resolves or the model fails to load.
pub async fn serve(
    listener: tokio::net::TcpListener,
    model_dir: PathBuf,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let state = Arc::new(AppState::new());
    let (failed_tx, failed_rx) = tokio::sync::oneshot::channel::<twotower_model::ModelError>();
    let loader = state.clone();
    tokio::task::spawn_blocking(move || {
        let start = Instant::now();
        match Loaded::open(&model_dir) {
            Ok(l) => {
                loader.set_loaded(l);
                tracing::info!(
                    "model loaded in {:.1} ms; ready",
                    start.elapsed().as_secs_f64() * 1e3
                );
                eprintln!(
                    "ready: model loaded in {:.1} ms",
                    start.elapsed().as_secs_f64() * 1e3
                );
            }
            Err(e) => {
                let _ = failed_tx.send(e);
            }
        }
    });
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let mut load_error = None;
    let app = router(state);
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        let _ = stop_rx.await;
    });
    let server = tokio::spawn(async move { server.await });
    // A dropped sender means the load succeeded: only a sent error stops the server.
    let failed = async {
        match failed_rx.await {
            Ok(e) => e,
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = shutdown => {},
        e = failed => load_error = Some(e),
    }
    let _ = stop_tx.send(());
    server.await.map_err(std::io::Error::other)??;
    match load_error {
        Some(e) => Err(ServeError::Load(e)),
        None => Ok(()),
    }
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
