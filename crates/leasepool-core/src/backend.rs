//! The `ExecutorBackend` trait: how a pool runs work.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use event_listener::Event;

use crate::observe::Observer;
use crate::{BrokenSignal, Error, ManagerConfig, Task};

/// A kind of executor pool.
///
/// leasepool owns the bookkeeping (who holds which pool, for how long, who
/// waits); a backend owns the workers. A backend creates pools, runs the
/// [`Task`]s handed to a pool, reports a pool that can no longer run work,
/// and shuts pools down when told to.
///
/// # What a backend must guarantee
///
/// 1. **Every task ends exactly once.** A [`Task`] given to
///    [`BackendPool::execute`] is either run ([`Task::run`]), failed
///    ([`Task::fail`]) or dropped (which reports [`Error::Cancelled`]). The
///    type system enforces "at most once" (each consumes the task); the
///    backend must not leak tasks, or their callers wait forever.
/// 2. **Shutdown is prompt and never blocks.** [`BackendPool::shutdown`]
///    returns at once. Queued tasks are dropped (cancelled), running tasks
///    may finish, and every worker exits soon after. It may be called from
///    any thread, including one of the pool's own workers, more than once,
///    and while other threads call `execute`.
/// 3. **Workers are accounted for.** Each OS thread or process the pool
///    starts holds a [`WorkerGuard`] (from [`PoolContext::worker_guard`])
///    until it has finished. `stop()` waits for every guard to drop, which is
///    how leasepool promises that no worker outlives the manager.
/// 4. **Brokenness is reported.** When the pool can no longer run work (an
///    initializer failed, a worker died), the backend calls
///    [`BrokenSignal::report`] once and fails its queued and later tasks with
///    [`Error::Broken`] instead of hanging them.
///
/// # What leasepool guarantees in return
///
/// - A pool is used by at most one lease at a time, and a pool is never
///   handed out again after `shutdown` or a broken report.
/// - Tasks arrive through `execute` only while the pool is leased, and a pool
///   returns to the idle set only after every task of its previous lease
///   ended (draining), so work from two leases never overlaps on one pool.
/// - No leasepool lock is held while calling into the backend, so backend
///   code may call back into the manager.
///
/// # Kinds of job
///
/// A [`Task`] carries an in-process closure. Backends that run closures in
/// this process implement the marker trait [`LocalBackend`], which unlocks
/// `submit` and `run` on leases; the types then say that closures never
/// reach a backend that cannot run them.
///
/// # Example
///
/// A minimal backend that gives each pool one dedicated thread:
///
/// ```
/// use leasepool_core::{BackendPool, Error, ExecutorBackend, LocalBackend, PoolContext, Task};
/// use std::sync::atomic::{AtomicBool, Ordering};
/// use std::sync::mpsc::{Sender, channel};
/// use std::sync::{Arc, Mutex};
///
/// struct OneThread;
///
/// struct OneThreadPool {
///     jobs: Mutex<Option<Sender<Task>>>,
///     closed: Arc<AtomicBool>,
/// }
///
/// impl ExecutorBackend for OneThread {
///     type Pool = OneThreadPool;
///
///     fn name(&self) -> &'static str {
///         "one-thread"
///     }
///
///     fn create_pool(&self, ctx: PoolContext) -> Result<OneThreadPool, Error> {
///         let (tx, rx) = channel::<Task>();
///         let closed = Arc::new(AtomicBool::new(false));
///         let guard = ctx.worker_guard();
///         let worker_closed = closed.clone();
///         std::thread::Builder::new()
///             .name(ctx.worker_name(0))
///             .spawn(move || {
///                 let _guard = guard; // held until the thread ends
///                 for task in rx {
///                     if worker_closed.load(Ordering::Acquire) {
///                         drop(task); // shut down: queued jobs are cancelled
///                     } else {
///                         task.run(); // catches panics
///                     }
///                 }
///             })
///             .map_err(|e| Error::Broken(format!("cannot spawn a worker thread: {e}")))?;
///         Ok(OneThreadPool { jobs: Mutex::new(Some(tx)), closed })
///     }
/// }
///
/// impl BackendPool for OneThreadPool {
///     fn execute(&self, task: Task) {
///         if let Some(tx) = &*self.jobs.lock().unwrap() {
///             let _ = tx.send(task); // a send error drops the task: cancelled
///         }
///     }
///
///     fn shutdown(&self) {
///         self.closed.store(true, Ordering::Release);
///         // Dropping the sender ends the worker's loop once the queue drains.
///         self.jobs.lock().unwrap().take();
///     }
/// }
///
/// impl LocalBackend for OneThread {}
/// ```
///
/// A longer example, which starts a new thread per job, is
/// `examples/custom_backend.rs`; the conformance suite (feature
/// `conformance`) checks a backend against this contract.
pub trait ExecutorBackend: Send + Sync + 'static {
    /// One pool of this backend.
    type Pool: BackendPool;

    /// The backend's name, shown in stats and logs ("thread", "rayon", ...).
    fn name(&self) -> &'static str;

    /// Creates a pool of `ctx.workers()` workers.
    ///
    /// Called on leasepool's checker thread, never under a lock, so it may
    /// block while workers start. An error here fails `start()` (during
    /// start-up) or the oldest waiter that needed the pool.
    fn create_pool(&self, ctx: PoolContext) -> Result<Self::Pool, Error>;

    /// Checks the manager configuration against this backend's own rules.
    /// Called once by `ManagerBuilder::build`; the default accepts anything.
    fn check_config(&self, config: &ManagerConfig) -> Result<(), Error> {
        let _ = config;
        Ok(())
    }

    /// The observer a manager on this backend uses unless its builder sets
    /// one ([`ManagerBuilder::observer`](crate::ManagerBuilder::observer)).
    /// Called once by `ManagerBuilder::build`; the default, `None`, means
    /// [`LogObserver`](crate::observe::LogObserver). leasepool's own
    /// backends return the `tracing` and `metrics` observers when those
    /// features are on; a custom backend can return them too (see the
    /// `leasepool-observe` crate).
    fn observer(&self, config: &ManagerConfig) -> Option<Arc<dyn Observer>> {
        let _ = config;
        None
    }
}

/// One pool created by an [`ExecutorBackend`].
pub trait BackendPool: Send + Sync + 'static {
    /// Runs `task` on one of the pool's workers, or fails or drops it.
    /// Must not block for long: it is called from async code.
    fn execute(&self, task: Task);

    /// Stops the pool: refuse new tasks, drop queued ones, let running ones
    /// finish, let workers exit. Returns at once; may be called repeatedly
    /// and from the pool's own workers.
    fn shutdown(&self);

    /// Called just before [`shutdown`](Self::shutdown)
    /// when the pool's lease was revoked at hard expiry. A backend that can
    /// stop running work for real (the process backend kills its workers
    /// when asked to) does it here; the default does nothing more than the
    /// `shutdown` that follows. Must not block.
    fn revoke(&self) {}
}

/// Marker for backends whose pools run closures in this process (thread,
/// rayon). Leases on such backends offer `submit` and `run`.
pub trait LocalBackend: ExecutorBackend {}

/// Everything a backend needs to build one pool.
pub struct PoolContext {
    pub(crate) seq: u64,
    pub(crate) workers: usize,
    pub(crate) name_prefix: Arc<str>,
    pub(crate) broken: BrokenSignal,
    pub(crate) live: Arc<LiveWorkers>,
}

impl fmt::Debug for PoolContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolContext")
            .field("seq", &self.seq)
            .field("workers", &self.workers)
            .field("name_prefix", &self.name_prefix)
            .finish_non_exhaustive()
    }
}

impl PoolContext {
    /// A context for building a pool outside a manager (tests of a backend,
    /// benchmarks). Broken reports go nowhere.
    pub fn detached(seq: u64, workers: usize, name_prefix: &str) -> Self {
        PoolContext {
            seq,
            workers,
            name_prefix: Arc::from(name_prefix),
            broken: BrokenSignal::detached(),
            live: Arc::new(LiveWorkers::default()),
        }
    }

    /// The pool's sequence number within its manager (1, 2, ...).
    pub fn pool_seq(&self) -> u64 {
        self.seq
    }

    /// How many workers the pool should have (`workers_per_pool`).
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// The manager's `name_prefix`.
    pub fn name_prefix(&self) -> &str {
        &self.name_prefix
    }

    /// The name for worker `index`: `{name_prefix}-{pool_seq}_{index}`.
    pub fn worker_name(&self, index: usize) -> String {
        format!("{}-{}_{}", self.name_prefix, self.seq, index)
    }

    /// A guard that a worker holds until it has finished. `stop()` waits for
    /// every guard of every pool to drop.
    pub fn worker_guard(&self) -> WorkerGuard {
        Self::guard_for(&self.live)
    }

    pub(crate) fn guard_for(live: &Arc<LiveWorkers>) -> WorkerGuard {
        live.count.fetch_add(1, Ordering::AcqRel);
        WorkerGuard { live: live.clone() }
    }

    /// The signal to call when the pool can no longer run work.
    pub fn broken_signal(&self) -> BrokenSignal {
        self.broken.clone()
    }
}

/// Counts the workers (threads, processes) alive across a manager's pools.
#[derive(Debug, Default)]
pub(crate) struct LiveWorkers {
    pub(crate) count: AtomicUsize,
    pub(crate) exited: Event,
}

impl LiveWorkers {
    pub(crate) fn get(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }
}

/// Held by each worker of a pool until the worker has finished; see
/// [`PoolContext::worker_guard`].
#[derive(Debug)]
#[must_use = "a worker must hold its guard until it exits"]
pub struct WorkerGuard {
    live: Arc<LiveWorkers>,
}

impl Drop for WorkerGuard {
    fn drop(&mut self) {
        if self.live.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.live.exited.notify(usize::MAX);
        }
    }
}
