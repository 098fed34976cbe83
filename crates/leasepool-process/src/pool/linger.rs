//! Busy-polling a worker's pipe between frames while its pool answers
//! short calls.
//!
//! A call's answer crosses one more thread than a bare pipe ping-pong: the
//! worker's reader thread, woken by the kernel when the answer is written,
//! hands it to the caller. On a virtual machine that wake-up costs about a
//! third of a small call's round trip. So when a pool's calls are answered
//! within half the backend's `busy_poll` window on average, its reader,
//! after each frame, polls the pipe without blocking for a few average
//! service times (at most the window) before it blocks again, and picks
//! the next answer up as soon as it is written.
//!
//! The cost is bounded: at most one reader in the process lingers at a
//! time, never for longer than the window per frame, and none on a
//! single-core machine, where it would only take time from the workers.

use std::process::ChildStdout;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::Shared;

/// Set while some reader lingers.
static LINGERING: AtomicBool = AtomicBool::new(false);

/// Polls `pipe` until it is readable or the pool's window has passed. Does
/// nothing if the pool's calls are not short or another reader lingers.
pub(super) fn linger(shared: &Shared, pipe: &ChildStdout) {
    let Some(window) = window(shared) else {
        return;
    };
    if !multi_core()
        || LINGERING
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
    {
        return;
    }
    let until = Instant::now() + window;
    while !readable(pipe) && Instant::now() < until {
        std::hint::spin_loop();
    }
    LINGERING.store(false, Ordering::Release);
}

/// How long to linger: a few average service times, if those are short
/// against the backend's window.
fn window(shared: &Shared) -> Option<Duration> {
    let limit = shared.config.backend.busy_poll;
    let average = Duration::from_nanos(shared.service_nanos.load(Ordering::Relaxed));
    (!average.is_zero() && average * 2 <= limit).then(|| (average * 4).min(limit))
}

fn multi_core() -> bool {
    static MULTI_CORE: OnceLock<bool> = OnceLock::new();
    *MULTI_CORE.get_or_init(|| std::thread::available_parallelism().is_ok_and(|n| n.get() > 1))
}

/// True if a `read` on `pipe` would not block (data, end of stream or an
/// error are all "readable").
#[cfg(unix)]
fn readable(pipe: &ChildStdout) -> bool {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let mut fds = [PollFd::new(pipe, PollFlags::IN)];
    let now = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    !matches!(poll(&mut fds, Some(&now)), Ok(0))
}

/// Without a portable zero-timeout poll, never linger.
#[cfg(not(unix))]
fn readable(_pipe: &ChildStdout) -> bool {
    true
}
