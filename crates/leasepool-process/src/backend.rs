//! `ProcessBackend`: options, and pool creation.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use leasepool_core::{Error, ExecutorBackend, ManagerConfig, PoolContext, validate};

use crate::ProcessLogging;
use crate::pool::ProcessPool;
use crate::worker::parent_registry;

/// Runs each pool as a set of worker processes that execute registered
/// functions (`lease.call(f, arg)`).
///
/// By default a worker is this same executable, started again with the
/// environment variable `LEASEPOOL_PROCESS_WORKER` set, so `main` must call
/// [`init`](crate::init) first. Each pool has `workers_per_pool` workers;
/// each runs one call at a time. A call that panics fails with
/// `Error::Panicked` and its worker serves on. A worker that dies (crash,
/// `abort`, killed) breaks its pool: its calls fail with `Error::Broken`,
/// the lease ends, and the manager replaces the pool. Workers exit by
/// themselves when the parent goes away (their stdin closes), and every
/// worker is reaped before `stop()` returns (killed, with the processes it
/// started, if it is still running `shutdown_grace` after shutdown).
///
/// Closures cannot cross a process boundary, so process leases offer
/// `call` but not `submit`/`run`:
///
/// ```compile_fail,E0599
/// use leasepool_core::LeasedExecutorManager;
/// use leasepool_process::ProcessBackend;
///
/// let manager = LeasedExecutorManager::builder(ProcessBackend::new())
///     .max_pools(1)
///     .build()
///     .unwrap();
/// let lease = manager.acquire().blocking().unwrap();
/// let _ = lease.submit(|| 1 + 1); // error: ProcessBackend is not a LocalBackend
/// ```
///
/// Options:
///
/// ```
/// use leasepool_process::{ProcessBackend, ProcessLogging};
/// use std::time::Duration;
///
/// let backend = ProcessBackend::new()
///     .env("RUST_BACKTRACE", "1")
///     .jobs_per_worker(1_000) // recycle a worker after 1000 calls
///     .max_worker_age(Duration::from_secs(3600)) // ... or after an hour
///     .max_memory_per_worker(512 << 20) // ... or at 512 MiB resident (Linux)
///     .memory_limit(2 << 30) // each worker's address space (Unix)
///     .call_timeout(Duration::from_secs(30)) // kill and replace a stuck worker
///     .shutdown_grace(Duration::from_secs(2)) // then SIGKILL at shutdown
///     .kill_on_hard_expiry(true) // revoke = kill the workers
///     .handshake_timeout(Duration::from_secs(5))
///     .busy_poll(Duration::ZERO) // save parent CPU rather than latency
///     .logging(ProcessLogging::new().enabled(true));
/// # let _ = backend;
/// ```
#[derive(Debug, Clone)]
pub struct ProcessBackend {
    pub(crate) program: Option<PathBuf>,
    pub(crate) args: Vec<OsString>,
    pub(crate) env: Vec<(OsString, OsString)>,
    pub(crate) jobs_per_worker: Option<usize>,
    pub(crate) kill_on_hard_expiry: bool,
    pub(crate) handshake_timeout: Duration,
    pub(crate) busy_poll: Duration,
    pub(crate) logging: ProcessLogging,
    pub(crate) shutdown_grace: Duration,
    pub(crate) call_timeout: Option<Duration>,
    pub(crate) max_worker_age: Option<Duration>,
    pub(crate) max_memory_per_worker: Option<u64>,
    pub(crate) memory_limit: Option<u64>,
}

/// The longest `busy_poll` window accepted.
const BUSY_POLL_MAX: Duration = Duration::from_millis(1);

impl Default for ProcessBackend {
    fn default() -> Self {
        ProcessBackend {
            program: None,
            args: Vec::new(),
            env: Vec::new(),
            jobs_per_worker: None,
            kill_on_hard_expiry: false,
            handshake_timeout: Duration::from_secs(10),
            busy_poll: Duration::from_micros(100),
            logging: ProcessLogging::default(),
            shutdown_grace: Duration::from_secs(5),
            call_timeout: None,
            max_worker_age: None,
            max_memory_per_worker: None,
            memory_limit: None,
        }
    }
}

impl ProcessBackend {
    /// Workers re-execute the current binary (`std::env::current_exe()`)
    /// without arguments; no recycling (by calls, age or memory); no memory
    /// limit; no call time limit; a revoked pool's running calls may
    /// finish within the 5 s shutdown grace; 10 s handshake timeout; 100 µs busy-poll window;
    /// no log forwarding.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts workers with `program args..` instead of the current binary.
    /// The program must call [`init`](crate::init) first in its `main`,
    /// with a registry holding the functions the parent calls (under the
    /// same names: the functions must live at the same paths).
    ///
    /// ```
    /// let backend = leasepool_process::ProcessBackend::new()
    ///     .worker_command("/usr/local/bin/my-worker", ["--quiet"]);
    /// # let _ = backend;
    /// ```
    pub fn worker_command<P, I, S>(mut self, program: P, args: I) -> Self
    where
        P: Into<PathBuf>,
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.program = Some(program.into());
        self.args = args.into_iter().map(Into::into).collect();
        self
    }

    /// Sets an environment variable for every worker (on top of the
    /// parent's environment, which workers inherit).
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Replaces a worker after it has run `n` calls (to bound leaks in the
    /// code it runs). The worker finishes its call and exits; a fresh one
    /// takes its place in the pool; no call fails because of it. Must be
    /// greater than 0.
    pub fn jobs_per_worker(mut self, n: usize) -> Self {
        self.jobs_per_worker = Some(n);
        self
    }

    /// Replaces a worker once it has run for `age` (to bound slow leaks and
    /// state that builds up): checked each time the worker finishes a call,
    /// so an idle worker is replaced after its next call. As with
    /// [`jobs_per_worker`](Self::jobs_per_worker), the worker finishes its
    /// call and exits, and no call fails because of it. Default: none; must
    /// be greater than 0.
    pub fn max_worker_age(mut self, age: Duration) -> Self {
        self.max_worker_age = Some(age);
        self
    }

    /// Replaces a worker whose resident memory (RSS) has reached `bytes`,
    /// checked each time it finishes a call (like Celery's
    /// `max_memory_per_child`). The worker finishes its call and exits; no
    /// call fails because of it. The parent reads `/proc/<pid>/statm`, so
    /// this is supported on Linux only (`build()` refuses it elsewhere).
    /// Default: none; must be greater than 0.
    pub fn max_memory_per_worker(mut self, bytes: u64) -> Self {
        self.max_memory_per_worker = Some(bytes);
        self
    }

    /// A hard limit on each worker's address space, `bytes`, that the
    /// worker applies to itself at start-up (`setrlimit(RLIMIT_AS)`, soft
    /// and hard, before the initializer runs; Unix only, `build()` refuses
    /// it elsewhere). An allocation over the limit fails in the worker: a
    /// fallible one (`Vec::try_reserve`) returns an error, any other aborts
    /// the worker, and its call fails with `Error::Broken` (the pool
    /// breaks, as with any crash). The limit counts virtual memory (thread
    /// stacks, allocator arenas), so leave room: a limit too small for the
    /// worker to start fails its handshake (the pool cannot start, with
    /// `Error::Broken`). Default: none; must be greater than 0.
    pub fn memory_limit(mut self, bytes: u64) -> Self {
        self.memory_limit = Some(bytes);
        self
    }

    /// When a lease passes its hard expiry, kill its pool's workers
    /// (`SIGKILL`, with the processes they started) instead of letting
    /// running calls finish; those calls fail with `Error::Broken`. (Without
    /// it, running calls still get only `shutdown_grace` to finish once the
    /// revoked pool shuts down.) The thread backend cannot do this (a
    /// thread cannot be killed). Default: off.
    pub fn kill_on_hard_expiry(mut self, kill: bool) -> Self {
        self.kill_on_hard_expiry = kill;
        self
    }

    /// How long a new worker may take to start and answer the handshake
    /// (default 10 s). Must be greater than 0.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Lowers the latency of short calls by busy-polling for answers.
    ///
    /// An answer reaches the caller through the worker's reader thread,
    /// which is normally asleep in `read` and must be woken by the kernel
    /// first; for a call of a few microseconds that wake-up is a third of
    /// the round trip. While a pool's calls are answered in under half of
    /// `window` on average, its reader instead polls the pipe without
    /// blocking for up to `window` after each frame (at most one reader
    /// in the process at a time, none on a single-core machine). That
    /// trades CPU time in the parent for latency: see the process backend
    /// section of `docs/performance.md`. Pools of longer calls never poll.
    ///
    /// Default 100 µs; `Duration::ZERO` turns it off; at most 1 ms.
    pub fn busy_poll(mut self, window: Duration) -> Self {
        self.busy_poll = window;
        self
    }

    /// How long a pool's workers may take to exit once the pool shuts down
    /// (`stop()`, a revoked lease, a broken pool, a pool above the desired
    /// count) before they are killed. Default 5 s.
    ///
    /// Shutting down closes each worker's stdin, which asks it to exit once
    /// its current call is done. A worker still there after `grace` (a
    /// long or stuck call, a process frozen with `SIGSTOP`) is killed with
    /// `SIGKILL`, together with its process group, and reaped; its call
    /// fails with `Error::Broken` naming the grace. So `stop()` never waits
    /// much longer than `grace` for the workers. `Duration::ZERO` kills
    /// running calls at once.
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }

    /// A time limit for each call, from when it is handed to a worker
    /// (time spent queued for a free worker does not count). Default: none.
    ///
    /// A call still running after `limit` has its worker killed (`SIGKILL`,
    /// with its process group) and fails with `Error::CallTimedOut`, which
    /// names the function and the limit (`call_timeout`). The pool
    /// is not broken: it starts a new worker in place of the killed one,
    /// and the lease serves on. Must be greater than 0.
    pub fn call_timeout(mut self, limit: Duration) -> Self {
        self.call_timeout = Some(limit);
        self
    }

    /// Forwards the workers' logs to the parent; see [`ProcessLogging`].
    pub fn logging(mut self, logging: ProcessLogging) -> Self {
        self.logging = logging;
        self
    }
}

impl ExecutorBackend for ProcessBackend {
    type Pool = ProcessPool;

    fn name(&self) -> &'static str {
        "process"
    }

    fn create_pool(&self, ctx: PoolContext) -> Result<ProcessPool, Error> {
        ProcessPool::spawn(self, ctx)
    }

    /// The observer of leasepool-observe's enabled features (`tracing`,
    /// `metrics`), if any.
    fn observer(
        &self,
        config: &leasepool_core::ManagerConfig,
    ) -> Option<std::sync::Arc<dyn leasepool_core::observe::Observer>> {
        leasepool_observe::observer_for(config)
    }

    fn check_config(&self, _config: &ManagerConfig) -> Result<(), Error> {
        if let Some(n) = self.jobs_per_worker {
            validate::positive("jobs_per_worker", n)?;
        }
        validate::duration("handshake_timeout", self.handshake_timeout, false)?;
        validate::duration("shutdown_grace", self.shutdown_grace, true)?;
        if let Some(age) = self.max_worker_age {
            validate::duration("max_worker_age", age, false)?;
        }
        check_bytes(
            "max_memory_per_worker",
            self.max_memory_per_worker,
            cfg!(target_os = "linux"),
            "Linux (it reads /proc/<pid>/statm)",
        )?;
        check_bytes(
            "memory_limit",
            self.memory_limit,
            cfg!(unix),
            "Unix (setrlimit)",
        )?;
        if let Some(limit) = self.call_timeout {
            validate::duration("call_timeout", limit, false)?;
        }
        if self.busy_poll > BUSY_POLL_MAX {
            return Err(Error::invalid(
                "busy_poll",
                format!(
                    "{:?} is longer than the maximum of {BUSY_POLL_MAX:?}",
                    self.busy_poll
                ),
            ));
        }
        if let Some(parent) = parent_registry() {
            if !parent.errors.is_empty() {
                return Err(Error::invalid("registry", parent.errors.join("; ")));
            }
        }
        Ok(())
    }
}

/// A byte count must be greater than 0 and the option supported here.
fn check_bytes(
    field: &'static str,
    bytes: Option<u64>,
    supported: bool,
    platforms: &str,
) -> Result<(), Error> {
    match bytes {
        Some(0) => Err(Error::invalid(field, "must be greater than 0")),
        Some(_) if !supported => Err(Error::invalid(
            field,
            format!("is only supported on {platforms}"),
        )),
        _ => Ok(()),
    }
}
