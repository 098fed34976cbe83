//! `LeasedExecutorManager`: the handle and its async surface, over the
//! state machine behind one lock.
//!
//! Every change of state goes through [`Inner::with_core`]: lock, run the
//! transition, flag a graceful shutdown that may proceed, unlock, then
//! perform the effects (backend calls, wake-ups, log records) with the lock
//! released. The checker's pass, pool creation and the size provider's
//! thread live in `checker/`, graceful shutdown in `shutdown.rs`.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Instant;

use event_listener::Event;
use log::Level;

use crate::backend::LiveWorkers;
use crate::checker::sizer::{Sizer, read_units};
use crate::checker::{self, Checker};
use crate::contain::{contain, contain_logged};
use crate::job::{JobEnd, JobSink};
use crate::observe::{JobContext, LogObserver, Observer, Snapshot};
use crate::state::{Effects, LeaseState, Lifecycle, Limits};
use crate::wait::{Gate, StartGate, WakeSlot};
use crate::{
    Acquire, BackendPool, CallData, CallFn, Error, ExecutorBackend, LeaseId, LocalBackend,
    ManagerBuilder, ManagerConfig, ManagerStats,
};

/// The pool handle the state machine moves around.
pub(crate) type PoolRef<B> = Arc<<B as ExecutorBackend>::Pool>;
pub(crate) type State<B> = LeaseState<PoolRef<B>, Arc<WakeSlot>>;
pub(crate) type Fx<B> = Effects<PoolRef<B>, Arc<WakeSlot>>;

/// What the one lock guards: the state machine and the current run.
pub(crate) struct Core<B: ExecutorBackend> {
    pub(crate) state: State<B>,
    /// Published when the start in progress finishes.
    start_gate: Option<Arc<StartGate>>,
    /// Workers (and the checker) of the current or last run.
    pub(crate) live: Arc<LiveWorkers>,
    /// The current run's size-provider thread, if one is configured.
    sizer: Option<Arc<Sizer>>,
    /// The sequence number of the last observer snapshot.
    snapshot_seq: u64,
}

impl<B: ExecutorBackend> Core<B> {
    /// The `stop` transition plus the run's own threads: a start in
    /// progress is forgotten and the sizer retired.
    pub(crate) fn stop(&mut self, fx: &mut Fx<B>) {
        self.state.stop(fx);
        self.start_gate = None;
        if let Some(sizer) = self.sizer.take() {
            sizer.retire();
        }
    }
}

/// What a stop leaves to wait for: the run's workers and its sizer.
pub(crate) struct Stopped {
    pub(crate) live: Arc<LiveWorkers>,
    pub(crate) sizer: Option<Arc<Sizer>>,
}

impl Stopped {
    /// Waits until every worker has exited (at most until `bound`), then
    /// for the sizer unless it is inside the size provider. True if every
    /// worker exited.
    pub(crate) async fn ended(&self, bound: Option<Instant>) -> bool {
        let exited = crate::shutdown::workers_exited(&self.live, bound).await;
        if exited {
            if let Some(sizer) = &self.sizer {
                sizer.exited().await;
            }
        }
        exited
    }
}

pub(crate) struct Inner<B: ExecutorBackend> {
    pub(crate) id: u64,
    pub(crate) backend: B,
    pub(crate) config: ManagerConfig,
    core: Mutex<Core<B>>,
    pub(crate) checker: Arc<Checker>,
    /// Notified when a graceful shutdown may proceed.
    pub(crate) shutdown_ready: Event,
    /// Told of events and (if it wants them) snapshots; captures job
    /// context at submit.
    pub(crate) observer: Arc<dyn Observer>,
    /// `observer.wants_snapshots()`, read once.
    snapshots: bool,
}

/// Owns a bounded set of executor pools and lends them out as leases.
///
/// Cheap to clone: clones share one manager. Every method can be called from
/// any thread; the async methods run on any runtime (they need none), and
/// each has a blocking twin for plain threads, named with a `_blocking`
/// suffix (the builders' twins are a `.blocking()` method).
///
/// # Examples
///
/// ```
/// use leasepool_core::{Error, ExecutorBackend, LeasedExecutorManager};
/// # use leasepool_core::{BackendPool, LocalBackend, PoolContext, Task};
/// # struct Inline;
/// # struct InlinePool;
/// # impl ExecutorBackend for Inline {
/// #     type Pool = InlinePool;
/// #     fn name(&self) -> &'static str { "inline" }
/// #     fn create_pool(&self, _: PoolContext) -> Result<InlinePool, Error> { Ok(InlinePool) }
/// # }
/// # impl BackendPool for InlinePool {
/// #     fn execute(&self, task: Task) { task.run() }
/// #     fn shutdown(&self) {}
/// # }
/// # impl LocalBackend for Inline {}
///
/// # fn main() -> Result<(), Error> {
/// futures_lite::future::block_on(async {
///     let manager = LeasedExecutorManager::builder(Inline).max_pools(2).build()?;
///     manager.start().await?;
///     let lease = manager.acquire().owner("docs").await?;
///     assert_eq!(lease.run(|| 2 + 2).await?, 4);
///     lease.release().await;
///     manager.stop().await;
///     Ok(())
/// })
/// # }
/// ```
pub struct LeasedExecutorManager<B: ExecutorBackend> {
    pub(crate) inner: Arc<Inner<B>>,
}

impl<B: ExecutorBackend> Clone for LeasedExecutorManager<B> {
    fn clone(&self) -> Self {
        LeasedExecutorManager {
            inner: self.inner.clone(),
        }
    }
}

impl<B: ExecutorBackend> fmt::Debug for LeasedExecutorManager<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeasedExecutorManager")
            .field("backend", &self.inner.backend.name())
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl<B: ExecutorBackend> LeasedExecutorManager<B> {
    /// Starts configuring a manager for `backend`.
    pub fn builder(backend: B) -> ManagerBuilder<B> {
        ManagerBuilder::new(backend)
    }

    pub(crate) fn from_parts(
        backend: B,
        config: ManagerConfig,
        observer: Option<Arc<dyn Observer>>,
    ) -> Self {
        let id = crate::id::next_manager_id();
        let observer = observer
            .or_else(|| contain(|| backend.observer(&config)).ok().flatten())
            .unwrap_or_else(|| Arc::new(LogObserver));
        let snapshots = contain(|| observer.wants_snapshots()).unwrap_or(false);
        let limits = Limits {
            max_pools: config.max_pools,
            min_pools: config.min_pools,
        };
        let fairness = config.fairness.clone();
        LeasedExecutorManager {
            inner: Arc::new(Inner {
                id,
                backend,
                config,
                core: Mutex::new(Core {
                    state: LeaseState::new(id, limits, fairness),
                    start_gate: None,
                    live: Arc::new(LiveWorkers::default()),
                    sizer: None,
                    snapshot_seq: 0,
                }),
                checker: Arc::new(Checker::default()),
                shutdown_ready: Event::new(),
                observer,
                snapshots,
            }),
        }
    }

    /// Creates the desired number of pools and starts the checker.
    ///
    /// Calling it while started does nothing. If a pool cannot be created
    /// (the backend returns an error or panics), every pool created so far
    /// is shut down, the manager stays stopped and the error is returned. A
    /// stopped manager can be started again.
    ///
    /// With a `size_provider`, start-up waits up to one second (or the
    /// `check_interval`, if shorter) for its first answer; a provider that
    /// has not answered by then counts as 0 units until it does.
    pub async fn start(&self) -> Result<(), Error> {
        match self.inner.begin_start()? {
            Some(gate) => gate.wait().await,
            None => Ok(()),
        }
    }

    /// [`start`](Self::start) for plain threads.
    pub fn start_blocking(&self) -> Result<(), Error> {
        futures_lite::future::block_on(self.start())
    }

    /// Stops the manager: stops the checker, shuts every pool down (queued
    /// jobs are cancelled, running jobs finish), fails every waiter with
    /// [`Error::ShuttingDown`], and ends every lease. Returns once every
    /// worker thread the manager started has exited.
    ///
    /// Called from inside a job running on one of this manager's pools,
    /// `stop()` cannot wait for the thread it runs on: it stops everything
    /// the same way and returns without waiting for workers.
    ///
    /// Safe before `start()` and safe to repeat.
    pub async fn stop(&self) {
        let stopped = self.inner.begin_stop();
        if !self.inner.called_from_own_job() {
            stopped.ended(None).await;
        }
    }

    /// [`stop`](Self::stop) for plain threads.
    pub fn stop_blocking(&self) {
        futures_lite::future::block_on(self.stop());
    }

    /// Borrows a pool. Configure the request on the returned builder and
    /// `.await` it (or call [`Acquire::blocking`] on a plain thread).
    ///
    /// Waiters are served first come, first served.
    pub fn acquire(&self) -> Acquire<'_, B> {
        Acquire::new(self)
    }

    /// Releases the lease with this id. Unknown or already released ids are
    /// ignored. Most code calls [`ExecutorLease::release`](crate::ExecutorLease::release)
    /// or drops the lease instead.
    pub async fn release(&self, id: &LeaseId) {
        self.release_now(id);
    }

    /// [`release`](Self::release) without an async context.
    pub fn release_now(&self, id: &LeaseId) {
        if id.manager() == self.inner.id {
            self.inner.release(id.seq());
        }
    }

    /// Runs one checker pass on the calling thread, as the checker thread
    /// does (revoke, plan creations, tick). For the scaling benchmarks
    /// only: not part of the API, and may go away.
    #[doc(hidden)]
    pub fn checker_pass_for_benchmarks(&self) {
        let _ = checker::pass(&self.inner);
    }

    /// Asks for a new reading of the size provider now; the checker applies
    /// it as soon as the provider answers.
    pub fn notify_scale_changed(&self) {
        match self.inner.sizer() {
            Some(sizer) => sizer.refresh(),
            None => self.inner.checker.kick(),
        }
    }

    /// The adaptive target: `min(max_pools, max(min_pools,
    /// ceil(size_provider() / units_per_pool)))`. Calls the size provider
    /// on the calling thread (a panic counts as 0 units).
    pub fn desired_executor_count(&self) -> usize {
        let units = self
            .inner
            .config
            .size_provider
            .as_ref()
            .map_or(0, read_units);
        self.inner.config.desired_for(units)
    }

    /// Idle pools.
    pub fn available_count(&self) -> usize {
        self.inner.core().state.available()
    }

    /// Leased pools (draining leases included).
    pub fn leased_count(&self) -> usize {
        self.inner.core().state.leased()
    }

    /// `available_count + leased_count`, read at one instant.
    pub fn total_count(&self) -> usize {
        self.inner.core().state.total()
    }

    /// True between a successful `start` and `stop`.
    pub fn is_started(&self) -> bool {
        self.inner.core().state.phase() == Lifecycle::Running
    }

    /// The backend's name ("thread", "rayon", "process", or a custom name).
    pub fn backend_name(&self) -> &'static str {
        self.inner.backend.name()
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.inner.backend
    }

    /// The validated configuration.
    pub fn config(&self) -> &ManagerConfig {
        &self.inner.config
    }

    /// A consistent snapshot of pools and leases, taken under one lock.
    pub fn stats(&self) -> ManagerStats {
        let now = Instant::now();
        let core = self.inner.core();
        let state = &core.state;
        let limits = state.limits();
        ManagerStats {
            backend: self.inner.backend.name(),
            desired: state.desired(),
            max_pools: limits.max_pools,
            min_pools: limits.min_pools,
            available: state.available(),
            leased: state.leased(),
            total: state.total(),
            workers_per_pool: self.inner.config.workers_per_pool,
            waiting: state.waiting(),
            leases: state.lease_stats(now),
            owners: state.owner_stats(),
            lanes: state.lane_stats(),
            counters: state.counters().clone(),
        }
    }
}

/// One await for one job: acquire with the defaults, run, release.
impl<B: ExecutorBackend> LeasedExecutorManager<B> {
    /// Acquires a lease with the defaults (`default_lease`, the manager's
    /// `acquire_timeout`), runs the plain function `f` on `argument` there
    /// (see [`ExecutorLease::call`](crate::ExecutorLease::call)), and
    /// releases the lease. Works on every backend.
    ///
    /// Dropping the future before it is done cancels the job if it has not
    /// started, and releases the lease (which drains if the job runs).
    pub async fn call<F, A, R>(&self, f: F, argument: A) -> Result<R, Error>
    where
        F: CallFn<A, R>,
        A: CallData,
        R: CallData,
    {
        let lease = self.acquire().await?;
        let result = lease.call(f, argument).await;
        lease.release().await;
        result
    }
}

impl<B: LocalBackend> LeasedExecutorManager<B> {
    /// Acquires a lease with the defaults (`default_lease`, the manager's
    /// `acquire_timeout`), runs `f` on it, and releases it: the whole
    /// borrow in one await.
    ///
    /// ```
    /// # use leasepool_core::{BackendPool, Error, ExecutorBackend, LocalBackend, PoolContext, Task};
    /// # struct Inline;
    /// # struct InlinePool;
    /// # impl ExecutorBackend for Inline {
    /// #     type Pool = InlinePool;
    /// #     fn name(&self) -> &'static str { "inline" }
    /// #     fn create_pool(&self, _: PoolContext) -> Result<InlinePool, Error> { Ok(InlinePool) }
    /// # }
    /// # impl BackendPool for InlinePool {
    /// #     fn execute(&self, task: Task) { task.run() }
    /// #     fn shutdown(&self) {}
    /// # }
    /// # impl LocalBackend for Inline {}
    /// use leasepool_core::LeasedExecutorManager;
    ///
    /// # fn main() -> Result<(), Error> {
    /// futures_lite::future::block_on(async {
    ///     let manager = LeasedExecutorManager::builder(Inline).max_pools(1).build()?;
    ///     manager.start().await?;
    ///     assert_eq!(manager.run(|| 6 * 7).await?, 42);
    ///     manager.stop().await;
    ///     Ok(())
    /// })
    /// # }
    /// ```
    ///
    /// Dropping the future before it is done cancels the job if it has not
    /// started, and releases the lease (which drains if the job runs).
    pub async fn run<F, T>(&self, f: F) -> Result<T, Error>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let lease = self.acquire().await?;
        let result = lease.run(f).await;
        lease.release().await;
        result
    }
}

impl<B: ExecutorBackend> Inner<B> {
    pub(crate) fn core(&self) -> MutexGuard<'_, Core<B>> {
        self.core.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The one way to change state: runs `f` on the core under the lock,
    /// flags a graceful shutdown that may now proceed, then performs the
    /// effects with the lock released.
    pub(crate) fn with_core<R>(&self, f: impl FnOnce(&mut Core<B>, &mut Fx<B>) -> R) -> R {
        let mut fx = self.effects();
        let result = {
            let mut core = self.core();
            let result = f(&mut core, &mut fx);
            if core.state.phase() == Lifecycle::ShuttingDown && core.state.leased() == 0 {
                fx.shutdown_ready = true;
            }
            if self.snapshots {
                core.snapshot_seq += 1;
                let seq = core.snapshot_seq;
                fx.snapshot = Some(Box::new(self.snapshot(&core.state, seq)));
            }
            result
        };
        self.apply(fx);
        result
    }

    /// [`with_core`](Self::with_core) for a transition of the state alone.
    pub(crate) fn transition<R>(&self, f: impl FnOnce(&mut State<B>, &mut Fx<B>) -> R) -> R {
        self.with_core(|core, fx| f(&mut core.state, fx))
    }

    /// Fresh effects; events are built only at levels the observer wants.
    fn effects(&self) -> Fx<B> {
        Effects::observed(contain(|| self.observer.max_level()).unwrap_or(None))
    }

    /// The state as the observer's snapshot shows it.
    fn snapshot(&self, state: &State<B>, seq: u64) -> Snapshot {
        Snapshot {
            seq,
            manager: self.config.name_prefix.clone(),
            total: state.total(),
            available: state.available(),
            leased: state.leased(),
            waiting: state.waiting(),
            desired: state.desired(),
            max_pools: state.limits().max_pools,
            counters: state.counters().clone(),
        }
    }

    /// Tells the observer of one event outside a transition (start, stop,
    /// shutdown, grinder), if it wants the event's level.
    pub(crate) fn observe(&self, event: impl FnOnce() -> crate::observe::Event) {
        let mut fx = self.effects();
        fx.note(event);
        self.tell_observer(&fx);
    }

    /// Hands the effects' events and snapshot to the observer; a panicking
    /// observer loses them, not the thread.
    fn tell_observer(&self, fx: &Fx<B>) {
        if fx.events.is_empty() && fx.snapshot.is_none() {
            return;
        }
        let _ = contain(|| {
            for event in &fx.events {
                self.observer.event(event);
            }
            if let Some(snapshot) = &fx.snapshot {
                self.observer.snapshot(snapshot);
            }
        });
    }

    /// The observer's context for a job submitted now, on this thread.
    pub(crate) fn capture(&self) -> Option<Box<dyn JobContext>> {
        contain(|| self.observer.capture()).ok().flatten()
    }

    /// Performs the effects of a transition. Never called under the lock.
    /// A backend that panics in `revoke`, `shutdown` or its pool's `Drop`
    /// is logged, never allowed to unwind into the caller (often the
    /// checker).
    fn apply(&self, fx: Fx<B>) {
        if fx.is_empty() {
            return;
        }
        self.tell_observer(&fx);
        for pool in fx.revoked {
            contain_logged(Level::Error, "BackendPool::revoke", || pool.revoke());
        }
        for pool in fx.shutdown {
            self.shut_down_pool(&pool);
            // The last reference may run the backend's `Drop`.
            contain_logged(Level::Error, "dropping a pool", move || drop(pool));
        }
        for signal in fx.wake {
            signal.notify();
        }
        if fx.wake_checker {
            self.checker.kick();
        }
        if fx.shutdown_ready {
            self.shutdown_ready.notify(usize::MAX);
        }
    }

    /// Shuts a pool down; a panicking backend is logged.
    pub(crate) fn shut_down_pool(&self, pool: &PoolRef<B>) {
        contain_logged(Level::Error, "BackendPool::shutdown", || pool.shutdown());
    }

    /// The current run's sizer, if a size provider is configured.
    pub(crate) fn sizer(&self) -> Option<Arc<Sizer>> {
        self.core().sizer.clone()
    }

    /// True on a thread that is running a job of this manager's pools.
    pub(crate) fn called_from_own_job(&self) -> bool {
        crate::job_scope::running_job_of(self.id)
    }

    pub(crate) fn release(&self, key: u64) {
        self.transition(|state, fx| state.release(key, Instant::now(), fx));
    }

    /// Moves to `Starting` and launches the checker thread (which creates
    /// the first pools) and the sizer. Returns the gate to wait on, or
    /// `None` if already running.
    fn begin_start(self: &Arc<Self>) -> Result<Option<Arc<StartGate>>, Error> {
        self.with_core(|core, _| {
            match core.state.begin_start() {
                Lifecycle::Running => return Ok(None),
                // A graceful shutdown is under way: the manager is stopping.
                Lifecycle::ShuttingDown => return Err(Error::ShuttingDown),
                Lifecycle::Starting => return Ok(core.start_gate.clone()),
                Lifecycle::Stopped => {}
            }
            let gate = Arc::new(Gate::new());
            let generation = self.checker.next_generation();
            let launched = self.launch_run(core, generation, &gate);
            if let Err(error) = launched {
                core.state.abort_start();
                if let Some(sizer) = core.sizer.take() {
                    sizer.retire();
                }
                return Err(error);
            }
            core.start_gate = Some(gate.clone());
            Ok(Some(gate))
        })
    }

    /// Starts the threads of one run.
    fn launch_run(
        self: &Arc<Self>,
        core: &mut Core<B>,
        generation: u64,
        gate: &Arc<StartGate>,
    ) -> Result<(), Error> {
        core.live = Arc::new(LiveWorkers::default());
        if let Some(provider) = &self.config.size_provider {
            let weak = Arc::downgrade(self);
            let on_reading = Box::new(move |units: usize| {
                if let Some(inner) = weak.upgrade() {
                    inner.size_read(units);
                }
            });
            core.sizer = Some(Sizer::spawn(
                provider.clone(),
                self.config.check_interval,
                format!("{}-sizer", self.config.name_prefix),
                on_reading,
            )?);
        }
        checker::spawn(self, generation, gate.clone(), core.live.clone())
    }

    /// The sizer read `units`: the new desired count. Idle pools above it
    /// are shut down now; the checker creates what is missing.
    fn size_read(&self, units: usize) {
        let desired = self.config.desired_for(units);
        self.transition(|state, fx| state.apply_desired(desired, fx));
    }

    /// The pool of lease `key` is broken (its backend misbehaved).
    pub(crate) fn lease_pool_broken(&self, key: u64, reason: &str) {
        let seq = self.core().state.pool_of_lease(key);
        if let Some(seq) = seq {
            self.pool_broken(seq, reason);
        }
    }

    /// A backend reported pool `seq` broken. The lease (if any) is retired
    /// now; the pool itself is shut down later by the checker, never on the
    /// reporting thread.
    pub(crate) fn pool_broken(&self, seq: u64, reason: &str) {
        self.transition(|state, fx| state.report_broken(seq, reason, Instant::now(), fx));
    }

    /// Stops everything. Returns what to wait for.
    pub(crate) fn begin_stop(&self) -> Stopped {
        let (stopped, was_running) = self.with_core(|core, fx| {
            let was_running = core.state.phase() != Lifecycle::Stopped;
            let sizer = core.sizer.clone();
            core.stop(fx);
            self.checker.next_generation();
            fx.wake_checker = true;
            let live = core.live.clone();
            (Stopped { live, sizer }, was_running)
        });
        if was_running {
            let backend = self.backend.name();
            self.observe(|| crate::observe::Event::Stopped { backend });
        }
        stopped
    }
}

impl<B: ExecutorBackend> JobSink for Inner<B> {
    fn job_finished(&self, lease_key: u64, end: JobEnd) {
        self.transition(|state, fx| {
            state.count_job_end(end);
            state.job_finished(lease_key, Instant::now(), fx);
        });
    }
}

impl<B: ExecutorBackend> Drop for Inner<B> {
    fn drop(&mut self) {
        // Dropped without stop(): shut pools down without waiting, and let
        // the checker thread (which holds only a weak reference) exit.
        let mut fx = self.effects();
        self.core
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .stop(&mut fx);
        self.checker.next_generation();
        fx.wake_checker = true;
        self.apply(fx);
    }
}

pub(crate) fn weak_sink<B: ExecutorBackend>(inner: &Arc<Inner<B>>) -> Weak<dyn JobSink> {
    let weak: Weak<Inner<B>> = Arc::downgrade(inner);
    weak
}
