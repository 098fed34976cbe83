//! The parent side of a pool: spawning workers, the handshake, dispatching
//! calls, one reader thread per worker, and reaping.
//!
//! Threads per worker: a *reader* (holds the worker's `WorkerGuard`, reads
//! its frames, reaps it) and, with stderr forwarding, a stderr reader (also
//! holding a guard). Per pool: a *watchdog* (`watchdog.rs`) that kills
//! workers past the shutdown grace or a call's time limit. Each worker is
//! its own process group; kills and reaping take the group (`group.rs`).
//!
//! Calls are encoded by the caller of `execute`, before the pool's lock is
//! taken. A worker is handed one call at a time, and only once it has
//! answered the previous one, so its stdin pipe is empty whenever a call
//! is written: a small frame is written directly by whichever thread
//! dispatches it (it fits in the pipe, the write cannot block), a large one
//! by a short-lived writer thread, so `execute` never blocks on a pipe.
//! While a pool's calls are short, its readers busy-poll between frames
//! (`linger.rs`). No leasepool job is completed while the pool's lock is
//! held.

mod dispatch;
mod group;
mod linger;
mod reader;
mod recycle;
mod spawn;
mod watchdog;

use std::collections::VecDeque;
use std::fmt;
use std::path::PathBuf;
use std::process::{Child, ChildStdin};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use leasepool_core::{BackendPool, BrokenSignal, Error, PoolContext, RemoteCall, Task};

use crate::ProcessBackend;
use crate::protocol::Signature;
use crate::worker::{is_worker_process, parent_registry};
use dispatch::{cancel, encode_call, fail, pump};
use group::kill;
use spawn::{abandon, await_handshake, new_token, start_worker};

/// One pool of the process backend: `workers_per_pool` worker processes.
pub struct ProcessPool {
    shared: Arc<Shared>,
}

impl fmt::Debug for ProcessPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.shared.lock();
        f.debug_struct("ProcessPool")
            .field("pool", &self.shared.ctx.pool_seq())
            .field(
                "pids",
                &state.workers.iter().map(|w| w.pid).collect::<Vec<_>>(),
            )
            .field("queued", &state.queue.len())
            .field("closed", &state.closed)
            .field("broken", &state.broken)
            .finish()
    }
}

/// What a pool's threads share.
struct Shared {
    state: Mutex<State>,
    ctx: PoolContext,
    broken_signal: BrokenSignal,
    config: Config,
    next_call: AtomicU64,
    /// A moving average of how long workers take to answer a call, in
    /// nanoseconds (0: no call answered yet).
    service_nanos: AtomicU64,
    /// Signalled (with `state` locked) when the watchdog may have something
    /// new to do: a call dispatched under a time limit, the pool shut down,
    /// a worker gone.
    changed: Condvar,
}

/// The backend options a pool needs, fixed at creation.
struct Config {
    program: PathBuf,
    backend: ProcessBackend,
    token: String,
    /// The parent's registry, if `init` was called here.
    expected_functions: Option<Vec<Signature>>,
}

#[derive(Default)]
struct State {
    /// Shut down: no new work, no replacements.
    closed: bool,
    /// When `shutdown` was first called (the start of `shutdown_grace`).
    closed_at: Option<Instant>,
    /// Revoked with `kill_on_hard_expiry`: the workers were killed.
    revoked: bool,
    /// Set once when the pool breaks; later calls fail with it.
    broken: Option<String>,
    queue: VecDeque<Queued>,
    workers: Vec<Worker>,
    next_worker: usize,
}

/// The parent's view of one worker process.
struct Worker {
    index: usize,
    pid: u32,
    child: Arc<Mutex<Option<Child>>>,
    /// The worker's stdin; `None` once it is to be closed (the pipe closes
    /// when the last clone, held only while a frame is written, is dropped).
    stdin: Option<Arc<ChildStdin>>,
    /// Handshake done: may take calls.
    ready: bool,
    in_flight: Option<InFlight>,
    jobs: usize,
    /// Told to exit (recycling): takes no more calls, its exit is expected.
    retiring: bool,
    /// Killed on purpose (by the watchdog): why, for its call's error.
    killed: Option<Kill>,
    /// When the process was started (for `max_worker_age`).
    started: Instant,
}

/// Why a worker was killed on purpose.
struct Kill {
    /// The error its in-flight call fails with.
    error: Error,
    /// Start a worker in its place once it is reaped.
    replace: bool,
}

impl Worker {
    fn is_idle(&self) -> bool {
        self.ready && !self.retiring && self.in_flight.is_none() && self.stdin.is_some()
    }
}

/// The call a worker is running.
struct InFlight {
    id: u64,
    call: RemoteCall,
    sent: Instant,
}

/// A call waiting for an idle worker, already encoded.
struct Queued {
    id: u64,
    frame: Vec<u8>,
    call: RemoteCall,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl ProcessPool {
    pub(crate) fn spawn(backend: &ProcessBackend, ctx: PoolContext) -> Result<Self, Error> {
        if is_worker_process() {
            return Err(Error::WorkerSetup(
                "this process was started as a leasepool worker but did not call \
                 leasepool::process::init first in main; refusing to start workers from it"
                    .to_owned(),
            ));
        }
        let program = match &backend.program {
            Some(program) => program.clone(),
            None => {
                if parent_registry().is_none() {
                    return Err(Error::WorkerSetup(
                        "the process backend re-executes this binary as its workers: \
                         call leasepool::process::init(registry) first in main"
                            .to_owned(),
                    ));
                }
                std::env::current_exe().map_err(|e| {
                    Error::Broken(format!("cannot find the current executable: {e}"))
                })?
            }
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            broken_signal: ctx.broken_signal(),
            config: Config {
                token: new_token(ctx.pool_seq()),
                expected_functions: parent_registry().map(|p| p.functions.clone()),
                program,
                backend: backend.clone(),
            },
            ctx,
            next_call: AtomicU64::new(0),
            service_nanos: AtomicU64::new(0),
            changed: Condvar::new(),
        });
        watchdog::start(&shared)
            .map_err(|e| Error::Broken(format!("cannot start the pool's watchdog thread: {e}")))?;
        let deadline = Instant::now() + backend.handshake_timeout;
        let mut pending = Vec::new();
        for _ in 0..shared.ctx.workers() {
            match start_worker(&shared) {
                Ok(Some(worker)) => pending.push(worker),
                Ok(None) => unreachable!("a new pool is not closed"),
                Err(error) => {
                    abandon(&shared);
                    return Err(error);
                }
            }
        }
        for worker in pending {
            if let Err(reason) = await_handshake(&shared, &worker, deadline) {
                abandon(&shared);
                return Err(Error::Broken(reason));
            }
        }
        log::debug!(
            target: leasepool_core::LOG_TARGET,
            "process pool {} started {} workers",
            shared.ctx.pool_seq(),
            shared.ctx.workers()
        );
        Ok(ProcessPool { shared })
    }

    /// The process ids of the pool's live workers.
    pub fn pids(&self) -> Vec<u32> {
        self.shared.lock().workers.iter().map(|w| w.pid).collect()
    }
}

impl BackendPool for ProcessPool {
    fn execute(&self, task: Task) {
        let call = match task.into_remote() {
            Ok(call) => call,
            Err(task) => {
                task.fail(Error::UnsupportedBackend(
                    "the process backend runs registered functions: use call(f, arg), \
                     not submit/run"
                        .to_owned(),
                ));
                return;
            }
        };
        let id = self.shared.next_call.fetch_add(1, Ordering::Relaxed);
        // The submitter's context (its tracing span) covers the encoding;
        // delivery enters it again on the reader thread.
        let frame = match call.in_context(|| encode_call(id, &call)) {
            Ok(frame) => frame,
            Err(error) => {
                fail(call, error);
                return;
            }
        };
        {
            let mut state = self.shared.lock();
            if let Some(reason) = &state.broken {
                let error = Error::Broken(reason.clone());
                drop(state);
                fail(call, error);
                return;
            }
            if state.closed {
                drop(state);
                cancel(call);
                return;
            }
            state.queue.push_back(Queued { id, frame, call });
        }
        pump(&self.shared);
    }

    fn shutdown(&self) {
        let (queued, stdins) = {
            let mut state = self.shared.lock();
            state.closed = true;
            state.closed_at.get_or_insert_with(Instant::now);
            self.shared.changed.notify_all();
            let queued: Vec<Queued> = state.queue.drain(..).collect();
            let stdins: Vec<_> = state
                .workers
                .iter_mut()
                .filter_map(|w| w.stdin.take())
                .collect();
            (queued, stdins)
        };
        // Closing stdin: each worker exits after its current call, and its
        // reader reaps it. The watchdog kills those still there after
        // `shutdown_grace`.
        drop(stdins);
        for queued in queued {
            cancel(queued.call);
        }
    }

    fn revoke(&self) {
        if !self.shared.config.backend.kill_on_hard_expiry {
            return;
        }
        let children: Vec<_> = {
            let mut state = self.shared.lock();
            state.revoked = true;
            state.workers.iter().map(|w| w.child.clone()).collect()
        };
        for child in children {
            kill(&child);
        }
    }
}

impl Drop for ProcessPool {
    /// A pool dropped without `shutdown` (outside a manager) still lets its
    /// workers go.
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    fn program(&self) -> String {
        self.config.program.display().to_string()
    }
}

/// Starts a worker in place of one that was recycled or killed for its
/// call's time limit (`which` says which, for the error), breaking the pool
/// if that fails.
fn replace_worker(shared: &Arc<Shared>, which: &str) {
    let deadline = Instant::now() + shared.config.backend.handshake_timeout;
    let result = match start_worker(shared) {
        Ok(None) => Ok(()),
        Ok(Some(pending)) => await_handshake(shared, &pending, deadline),
        Err(error) => Err(match error {
            Error::Broken(reason) => reason,
            other => other.to_string(),
        }),
    };
    if let Err(reason) = result {
        break_pool(shared, format!("cannot replace {which}: {reason}"));
    }
}

/// Marks the pool broken (once): reports it, fails every queued call and
/// kills every worker (their in-flight calls fail as the readers see them
/// go).
fn break_pool(shared: &Shared, reason: String) {
    let (queued, children) = {
        let mut state = shared.lock();
        if state.broken.is_some() || state.closed {
            return;
        }
        state.broken = Some(reason.clone());
        let queued: Vec<Queued> = state.queue.drain(..).collect();
        let children: Vec<_> = state.workers.iter().map(|w| w.child.clone()).collect();
        for worker in &mut state.workers {
            worker.stdin = None;
        }
        (queued, children)
    };
    log::warn!(target: leasepool_core::LOG_TARGET, "process pool {} is broken: {reason}", shared.ctx.pool_seq());
    // Report first, so a caller woken by the failure sees its lease ended.
    shared.broken_signal.report(&reason);
    for queued in queued {
        fail(queued.call, Error::Broken(reason.clone()));
    }
    for child in children {
        kill(&child);
    }
}

/// A worker's reader is done and the process reaped: forget the worker,
/// fail its in-flight call, and break the pool if the exit was unexpected.
fn worker_ended(
    shared: &Arc<Shared>,
    index: usize,
    pid: u32,
    status: &str,
    detail: Option<String>,
) {
    let (worker, unexpected, revoked) = {
        let mut state = shared.lock();
        let Some(position) = state.workers.iter().position(|w| w.index == index) else {
            return;
        };
        let worker = state.workers.remove(position);
        shared.changed.notify_all();
        let unexpected = worker.ready
            && !worker.retiring
            && worker.killed.is_none()
            && !state.closed
            && !state.revoked;
        (worker, unexpected, state.revoked)
    };
    let detail = detail.map(|d| format!(" {d}")).unwrap_or_default();
    let reason = format!("worker process {pid} exited: {status}{detail}");
    if unexpected {
        break_pool(shared, reason.clone());
    }
    if let Some(InFlight { call, .. }) = worker.in_flight {
        let error = if let Some(kill) = &worker.killed {
            kill.error.clone()
        } else if revoked {
            Error::Broken(format!(
                "worker process {pid} was killed because its lease passed its hard expiry"
            ))
        } else {
            // The pool's first failure, if it broke, else this exit.
            let broken = shared.lock().broken.clone();
            Error::Broken(broken.unwrap_or(reason))
        };
        fail(call, error);
    }
    if worker.killed.is_some_and(|kill| kill.replace) {
        replace_worker(shared, "a worker killed for overrunning call_timeout");
        pump(shared);
    }
}
