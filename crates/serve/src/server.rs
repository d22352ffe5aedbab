//! The connection loop: HTTP/1.1 over TCP with a limit on open connections, a time limit
//! on reading headers (which also closes idle keep-alive connections), and a shutdown
//! that always ends.
//!
//! When every connection slot is taken, a new connection evicts the oldest connection
//! that has no request in flight (closed gracefully), so one client holding many idle
//! sockets cannot lock others out; only when every connection is busy is the new one
//! answered 503. A client that half-closes its side after sending a request
//! (`shutdown(SHUT_WR)`) still gets its answer.
//!
//! On shutdown the listener closes, idle connections are closed, requests in flight get
//! [`Limits::shutdown_grace`] to finish, and then [`run`] returns whatever is still open.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify, Semaphore};

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

impl Limits {
    /// An error unless `max_connections` fits the open-files limit (with room for the
    /// model's files and the listener): past it, accepting fails over and over.
    pub fn check(&self) -> Result<(), String> {
        let files = file_limit();
        let most = files.saturating_sub(64);
        if self.max_connections == 0 || self.max_connections > most {
            return Err(format!(
                "max connections is {}; this process may open {files} files, so at most {most} \
                 connections fit (raise `ulimit -n` for more)",
                self.max_connections
            ));
        }
        Ok(())
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

/// One open connection: requests in flight, and how to ask it to close.
struct Conn {
    busy: Arc<AtomicUsize>,
    close: Arc<Notify>,
}

/// The open connections by accept order, oldest first.
#[derive(Default)]
struct Conns {
    open: Mutex<BTreeMap<u64, Conn>>,
}

impl Conns {
    /// Asks the oldest connection with no request in flight to close; false when every
    /// connection is busy.
    fn evict_oldest_idle(&self) -> bool {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let idle = open
            .iter()
            .find(|(_, c)| c.busy.load(Ordering::Acquire) == 0)
            .map(|(&id, _)| id);
        match idle.and_then(|id| open.remove(&id)) {
            Some(c) => {
                c.close.notify_one();
                true
            }
            None => false,
        }
    }

    fn remove(&self, id: u64) {
        self.open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, then drains (see the module doc).
pub async fn run(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let conns = Arc::new(Conns::default());
    let mut next_id: u64 = 0;
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
        let permit = match slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                // Full: make room by closing the oldest idle connection, and wait (briefly)
                // for its slot; if every connection is busy, refuse this one.
                let freed = conns.evict_oldest_idle()
                    && tokio::time::timeout(
                        Duration::from_millis(500),
                        slots.clone().acquire_owned(),
                    )
                    .await
                    .is_ok_and(|p| p.is_ok());
                match (freed, slots.clone().try_acquire_owned()) {
                    (true, Ok(p)) => p,
                    _ => {
                        let _ = stream.try_write(BUSY);
                        continue;
                    }
                }
            }
        };
        let _ = stream.set_nodelay(true);
        let id = next_id;
        next_id += 1;
        let busy = Arc::new(AtomicUsize::new(0));
        let close = Arc::new(Notify::new());
        conns.open.lock().unwrap_or_else(|p| p.into_inner()).insert(
            id,
            Conn {
                busy: busy.clone(),
                close: close.clone(),
            },
        );
        let service = TowerToHyperService::new(Tracked {
            inner: app.clone(),
            busy,
        });
        let mut stop = stop_rx.clone();
        let conns = conns.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                // A client that shuts down its writing side after a request still gets the
                // answer (hyper would otherwise close on the read side's end).
                .half_close(true)
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = async { stop.wait_for(|s| *s).await.map(|_| ()) } => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
                _ = close.notified() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
            conns.remove(id);
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

/// The app, counting the requests in flight on one connection (what makes a connection
/// idle, and so evictable, when the server is full).
#[derive(Clone)]
struct Tracked {
    inner: Router,
    busy: Arc<AtomicUsize>,
}

/// Decrements a connection's count of requests in flight when dropped.
struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl<B> tower_service::Service<axum::http::Request<B>> for Tracked
where
    Router: tower_service::Service<axum::http::Request<B>>,
    <Router as tower_service::Service<axum::http::Request<B>>>::Future: Send + 'static,
{
    type Response = <Router as tower_service::Service<axum::http::Request<B>>>::Response;
    type Error = <Router as tower_service::Service<axum::http::Request<B>>>::Error;
    type Future = std::pin::Pin<
        Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send + 'static>,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        tower_service::Service::<axum::http::Request<B>>::poll_ready(&mut self.inner, cx)
    }

    fn call(&mut self, req: axum::http::Request<B>) -> Self::Future {
        self.busy.fetch_add(1, Ordering::AcqRel);
        let guard = InFlight(self.busy.clone());
        let answer = tower_service::Service::call(&mut self.inner, req);
        Box::pin(async move {
            let r = answer.await;
            drop(guard);
            r
        })
    }
}
