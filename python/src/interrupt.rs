//! Long calls that Ctrl-C can stop: the work runs on a scoped thread while the calling
//! thread, the GIL released between checks, hands the work's events to Python and polls
//! for signals; a signal (or an error from the event handler) raises the work's stop flag,
//! waits for it to end, and is what the call raises.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pyo3::prelude::*;

use crate::errors::PyResult;

/// How often the waiting thread looks for Ctrl-C.
const POLL: Duration = Duration::from_millis(50);

/// Runs `work(events)` off the GIL, calling `on_event` (with the GIL) for each event it
/// sends. On Ctrl-C or an `on_event` error, `stop` is raised, and once `work` has ended
/// that error is returned; otherwise `work`'s result.
pub fn interruptible<T: Send, E: Send>(
    py: Python<'_>,
    stop: &Arc<AtomicBool>,
    work: impl FnOnce(mpsc::Sender<E>) -> T + Send,
    mut on_event: impl FnMut(Python<'_>, E) -> PyResult<()>,
) -> PyResult<T> {
    let (tx, rx) = mpsc::channel::<E>();
    // Waited on with the GIL released, which asks for a Sync receiver.
    let rx = Mutex::new(rx);
    std::thread::scope(|s| {
        let worker = s.spawn(move || work(tx));
        let mut failure: Option<PyErr> = None;
        loop {
            let got = py.detach(|| match rx.lock() {
                Ok(rx) => rx.recv_timeout(POLL),
                Err(_) => Err(RecvTimeoutError::Disconnected),
            });
            match got {
                Ok(event) => {
                    if failure.is_none() {
                        failure = on_event(py, event).err();
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                // The worker dropped its sender: it has ended.
                Err(RecvTimeoutError::Disconnected) => break,
            }
            if failure.is_none() {
                failure = py.check_signals().err();
            }
            if failure.is_some() {
                stop.store(true, Ordering::Relaxed);
            }
        }
        let outcome = py.detach(|| worker.join());
        if let Some(e) = failure {
            return Err(e);
        }
        outcome.map_err(|_| {
            pyo3::exceptions::PyRuntimeError::new_err(
                "the work failed unexpectedly (a panic in its thread); please report it",
            )
        })
    })
}
