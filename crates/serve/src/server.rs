//! The connection loop: HTTP/1.1 over TCP with a limit on open connections, a time limit
//! on reading headers (which also closes idle keep-alive connections), and a shutdown
//! that always ends.
//!
//! On shutdown the listener closes, idle connections are closed, requests in flight get
//! [`Limits::shutdown_grace`] to finish, and then [`run`] returns whatever is still open.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

/// How much any client may hold of the server.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Open connections at most; a connection past it is answered 503 and closed.
    pub max_connections: usize,
    /// Time to send a request's headers, and the longest a keep-alive connection may idle.
    pub header_timeout: Duration,
    /// How long requests in flight may take to finish once shutdown starts.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    /// 1,024 connections (fewer when the process may open fewer files), 5 s for headers,
    /// 5 s of grace on shutdown.
    fn default() -> Self {
        Limits {
            max_connections: 1024.min(file_limit().saturating_sub(64).max(16)),
            header_timeout: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

/// The most files this process may have open.
fn file_limit() -> usize {
    #[cfg(unix)]
    {
        let mut l = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into the struct it is given.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) } == 0 {
            return usize::try_from(l.rlim_cur).unwrap_or(usize::MAX);
        }
    }
    usize::MAX
}

const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
connection: close\r\ncontent-length: 49\r\n\r\n{\"error\": \"too many open connections; try again\"}";

/// Serves `app` on `listener` until `shutdown` resolves, then drains (see the module doc).
pub async fn run(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors or a connection reset before accept: wait a
                    // little rather than spin, and keep serving.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            let _ = stream.try_write(BUSY);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = async { stop.wait_for(|s| *s).await.map(|_| ()) } => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let deadline = Instant::now() + limits.shutdown_grace;
    while slots.available_permits() < limits.max_connections {
        if Instant::now() >= deadline {
            let open = limits.max_connections - slots.available_permits();
            tracing::warn!("{open} connections still open after the shutdown grace; closing");
            eprintln!("shutdown: {open} connections did not finish within the grace period");
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}
