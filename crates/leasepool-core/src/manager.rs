//! `LeasedExecutorManager`: the state machine behind one lock, plus the
//! checker thread and the async surface.

use std::collections::HashMap;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use event_listener::Event;

use crate::backend::{BrokenSignal, LiveWorkers};
use crate::checker::{self, CheckerSignal};
use crate::job::JobSink;
use crate::signal::{Gate, StartGate, WakeSlot, wait_for, wait_for_blocking};
use crate::state::{Effects, LeaseState, Limits, Note, Phase, PoolSlot};
use crate::{
    Acquire, BackendPool, Error, ExecutorBackend, LeaseId, ManagerBuilder, ManagerConfig,
    ManagerStats, PoolContext, ShutdownReport,
};

/// The pool handle the state machine moves around.
pub(crate) type PoolRef<B> = Arc<<B as ExecutorBackend>::Pool>;
pub(crate) type State<B> = LeaseState<PoolRef<B>, Arc<WakeSlot>>;
pub(crate) type Fx<B> = Effects<PoolRef<B>, Arc<WakeSlot>>;

const LOG_TARGET: &str = "leasepool";

/// What the one lock guards.
pub(crate) struct Core<B: ExecutorBackend> {
    pub(crate) state: State<B>,
    /// Published when the start in progress finishes.
    start_gate: Option<Arc<StartGate>>,
    /// Workers (and the checker) of the current or last run.
    live: Arc<LiveWorkers>,
    /// Pools reported broken, waiting for the checker to shut them down.
    deferred: Vec<PoolRef<B>>,
    /// Broken reports for pools still being created (a worker initializer
    /// can fail before `create_pool` returns), applied on installation.
    early_broken: HashMap<u64, String>,
}

impl<B: ExecutorBackend> Core<B> {
    /// The `stop` transition plus the manager's own state: pools waiting
    /// for the checker join the ones to shut down, early broken reports and
    /// a start in progress are forgotten. Returns how many leases ended.
    fn stop(&mut self, fx: &mut Fx<B>) -> usize {
        let ended = self.state.stop(fx);
        fx.shutdown.append(&mut self.deferred);
        self.early_broken.clear();
        self.start_gate = None;
        ended
    }

    /// Applies a broken report that arrived while pool `seq` was being
    /// created. Call right after the pool is installed.
    fn installed(&mut self, seq: u64, now: Instant, fx: &mut Fx<B>) {
        if let Some(reason) = self.early_broken.remove(&seq) {
            if self.state.pool_broken(seq, &reason, fx) {
                self.state.record_break(now);
            }
        }
    }
}

pub(crate) struct Inner<B: ExecutorBackend> {
    pub(crate) id: u64,
    pub(crate) backend: B,
    pub(crate) config: ManagerConfig,
    core: Mutex<Core<B>>,
    pub(crate) checker: Arc<CheckerSignal>,
    /// Jobs that ended without running, ever (for shutdown reports).
    jobs_cancelled: AtomicUsize,
    /// Notified when a graceful shutdown may proceed.
    shutdown_ready: Event,
}

/// Owns a bounded set of executor pools and lends them out as leases.
///
/// Cheap to clone: clones share one manager. Every method can be called from
/// any thread; the async methods run on any runtime (they need none), and
/// each has a blocking twin for plain threads.
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

    pub(crate) fn from_parts(backend: B, config: ManagerConfig) -> Self {
        let id = crate::id::next_manager_id();
        let limits = Limits {
            max_pools: config.max_pools,
            min_pools: config.min_pools,
        };
        LeasedExecutorManager {
            inner: Arc::new(Inner {
                id,
                backend,
                config,
                core: Mutex::new(Core {
                    state: LeaseState::new(id, limits),
                    start_gate: None,
                    live: Arc::new(LiveWorkers::default()),
                    deferred: Vec::new(),
                    early_broken: HashMap::new(),
                }),
                checker: Arc::new(CheckerSignal::default()),
                jobs_cancelled: AtomicUsize::new(0),
                shutdown_ready: Event::new(),
            }),
        }
    }

    /// Creates the desired number of pools and starts the checker.
    ///
    /// Calling it while started does nothing. If a pool cannot be created,
    /// every pool created so far is shut down, the manager stays stopped and
    /// the error is returned. A stopped manager can be started again.
    pub async fn start(&self) -> Result<(), Error> {
        match self.inner.begin_start()? {
            Some(gate) => gate.wait().await,
            None => Ok(()),
        }
    }

    /// [`start`](Self::start) for plain threads.
    pub fn start_blocking(&self) -> Result<(), Error> {
        match self.inner.begin_start()? {
            Some(gate) => gate.wait_blocking(),
            None => Ok(()),
        }
    }

    /// Stops the manager: stops the checker, shuts every pool down (queued
    /// jobs are cancelled, running jobs finish), fails every waiter with
    /// [`Error::NotStarted`], and ends every lease. Returns once every
    /// worker thread the manager started has exited.
    ///
    /// Safe before `start()` and safe to repeat.
    pub async fn stop(&self) {
        let (live, _) = self.inner.begin_stop();
        wait_for(&live.exited, || (live.get() == 0).then_some(())).await;
    }

    /// [`stop`](Self::stop) for plain threads.
    pub fn stop_blocking(&self) {
        let (live, _) = self.inner.begin_stop();
        wait_for_blocking(&live.exited, || (live.get() == 0).then_some(()));
    }

    /// Shuts down gracefully within `deadline`, for a service with a
    /// termination budget.
    ///
    /// At once: new acquires fail with [`Error::NotStarted`], waiters are
    /// woken with `NotStarted`, idle pools are shut down, and the checker
    /// keeps revoking leases at hard expiry. Held leases keep working until
    /// they are released (and drained) or the deadline passes; then
    /// everything still held is revoked and the manager stops exactly like
    /// [`stop`](Self::stop) (which waits for running jobs). The report says
    /// what happened.
    ///
    /// On a manager that is not running this is `stop()` with an empty
    /// report.
    pub async fn shutdown(&self, deadline: Duration) -> ShutdownReport {
        let started = Instant::now();
        let cancelled_before = self.inner.jobs_cancelled.load(Ordering::Acquire);
        let at_start = self.inner.begin_shutdown(deadline);
        if at_start.is_some() {
            let inner = &self.inner;
            wait_for(&inner.shutdown_ready, || inner.shutdown_due().then_some(())).await;
        }
        let (live, revoked) = self.inner.begin_stop();
        wait_for(&live.exited, || (live.get() == 0).then_some(())).await;
        self.inner
            .shutdown_report(started, cancelled_before, at_start, revoked)
    }

    /// [`shutdown`](Self::shutdown) for plain threads.
    pub fn shutdown_blocking(&self, deadline: Duration) -> ShutdownReport {
        let started = Instant::now();
        let cancelled_before = self.inner.jobs_cancelled.load(Ordering::Acquire);
        let at_start = self.inner.begin_shutdown(deadline);
        if at_start.is_some() {
            let inner = &self.inner;
            wait_for_blocking(&inner.shutdown_ready, || inner.shutdown_due().then_some(()));
        }
        let (live, revoked) = self.inner.begin_stop();
        wait_for_blocking(&live.exited, || (live.get() == 0).then_some(()));
        self.inner
            .shutdown_report(started, cancelled_before, at_start, revoked)
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

    /// Wakes the checker so it re-reads the size provider now.
    pub fn notify_scale_changed(&self) {
        self.inner.checker.kick();
    }

    /// The adaptive target: `min(max_pools, max(min_pools,
    /// ceil(size_provider() / units_per_pool)))`. Calls the size provider.
    pub fn desired_executor_count(&self) -> usize {
        self.inner.compute_desired()
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
        self.inner.core().state.phase() == Phase::Running
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
        }
    }
}

impl<B: ExecutorBackend> Inner<B> {
    pub(crate) fn core(&self) -> MutexGuard<'_, Core<B>> {
        self.core.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on the state under the lock, then performs its effects with
    /// the lock released.
    pub(crate) fn transition<R>(&self, f: impl FnOnce(&mut State<B>, &mut Fx<B>) -> R) -> R {
        let mut fx = self.effects();
        let result = {
            let mut core = self.core();
            let result = f(&mut core.state, &mut fx);
            check_shutdown(&core.state, &mut fx);
            result
        };
        self.apply(fx);
        result
    }

    /// Fresh effects; log notes are built only when a logger is installed.
    pub(crate) fn effects(&self) -> Fx<B> {
        Effects::with_notes(log::max_level() != log::LevelFilter::Off)
    }

    /// Performs the effects of a transition. Never called under the lock.
    pub(crate) fn apply(&self, fx: Fx<B>) {
        if fx.is_empty() {
            return;
        }
        for note in &fx.notes {
            log_note(self.backend.name(), note);
        }
        for pool in fx.revoked {
            pool.revoke();
        }
        for pool in fx.shutdown {
            pool.shutdown();
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

    fn begin_shutdown(&self, deadline: Duration) -> Option<usize> {
        let at = crate::state::deadline_after(Instant::now(), deadline);
        let mut fx = self.effects();
        let held = {
            let mut core = self.core();
            let held = core.state.begin_shutdown(at, &mut fx);
            check_shutdown(&core.state, &mut fx);
            held
        };
        if let Some(held) = held {
            log::info!(
                target: LOG_TARGET,
                "shutting down within {deadline:?}: {held} leases held, no new leases"
            );
        }
        self.apply(fx);
        held
    }

    fn shutdown_due(&self) -> bool {
        self.core().state.shutdown_due(Instant::now())
    }

    fn shutdown_report(
        &self,
        started: Instant,
        cancelled_before: usize,
        at_start: Option<usize>,
        revoked: usize,
    ) -> ShutdownReport {
        let leases_at_start = at_start.unwrap_or(0);
        let revoked_at_deadline = if at_start.is_some() { revoked } else { 0 };
        let report = ShutdownReport {
            leases_at_start,
            ended_on_their_own: leases_at_start.saturating_sub(revoked_at_deadline),
            revoked_at_deadline,
            jobs_cancelled: self
                .jobs_cancelled
                .load(Ordering::Acquire)
                .saturating_sub(cancelled_before),
            elapsed: started.elapsed(),
        };
        if at_start.is_some() {
            log::info!(target: LOG_TARGET, "shutdown finished: {report:?}");
        }
        report
    }

    pub(crate) fn release(&self, key: u64) {
        self.transition(|state, fx| state.release(key, Instant::now(), fx));
    }

    pub(crate) fn compute_desired(&self) -> usize {
        let config = &self.config;
        let units = match &config.size_provider {
            None => 0,
            Some(provider) => match catch_unwind(AssertUnwindSafe(|| provider())) {
                Ok(units) => units,
                Err(_) => {
                    log::debug!(target: LOG_TARGET, "size_provider panicked; counting 0 units for this check");
                    0
                }
            },
        };
        units
            .div_ceil(config.units_per_pool)
            .clamp(config.min_pools, config.max_pools)
    }

    /// Moves to `Starting` and launches the checker thread, which creates
    /// the first pools. Returns the gate to wait on, or `None` if already
    /// running.
    fn begin_start(self: &Arc<Self>) -> Result<Option<Arc<StartGate>>, Error> {
        let mut core = self.core();
        match core.state.begin_start() {
            Phase::Running => return Ok(None),
            // A graceful shutdown is under way: the manager is stopping.
            Phase::ShuttingDown => return Err(Error::NotStarted),
            Phase::Starting => return Ok(core.start_gate.clone()),
            Phase::Stopped => {}
        }
        let gate = Arc::new(Gate::new());
        core.start_gate = Some(gate.clone());
        core.live = Arc::new(LiveWorkers::default());
        let generation = self.checker.next_generation();
        let spawned = checker::spawn(self, generation, gate.clone(), core.live.clone());
        if let Err(error) = spawned {
            core.state.abort_start();
            core.start_gate = None;
            return Err(error);
        }
        Ok(Some(gate))
    }

    /// Called on the checker thread: creates the first pools.
    pub(crate) fn create_initial_pools(self: &Arc<Self>, generation: u64) -> Result<(), Error> {
        let desired = self.compute_desired();
        let (seqs, live) = {
            let mut core = self.core();
            core.state.set_desired(desired);
            (core.state.reserve_pool_seqs(desired), core.live.clone())
        };
        let mut pools = Vec::with_capacity(seqs.len());
        for seq in seqs {
            match self.create_pool(seq, &live) {
                Ok(slot) => pools.push(slot),
                Err(error) => {
                    for slot in pools {
                        slot.pool.shutdown();
                    }
                    {
                        let mut core = self.core();
                        if self.checker.is_current(generation) {
                            core.state.abort_start();
                        }
                    }
                    log::warn!(target: LOG_TARGET, "start failed: {error}");
                    return Err(error);
                }
            }
        }
        let created: Vec<u64> = pools.iter().map(|slot| slot.seq).collect();
        let mut fx = self.effects();
        let installed = {
            let mut core = self.core();
            if self.checker.is_current(generation) {
                let installed = core.state.finish_start(pools);
                if installed.is_ok() {
                    for seq in &created {
                        core.installed(*seq, Instant::now(), &mut fx);
                    }
                }
                installed
            } else {
                Err(pools)
            }
        };
        self.apply(fx);
        match installed {
            Ok(()) => {
                for seq in created {
                    log::info!(target: LOG_TARGET, "created executor pool {seq} (backend {})", self.backend.name());
                }
                log::info!(
                    target: LOG_TARGET,
                    "started lease manager: backend {}, {desired} pools, max_pools {}",
                    self.backend.name(),
                    self.config.max_pools
                );
                Ok(())
            }
            Err(pools) => {
                for slot in pools {
                    slot.pool.shutdown();
                }
                Err(Error::NotStarted)
            }
        }
    }

    /// Builds pool `seq` through the backend.
    pub(crate) fn create_pool(
        self: &Arc<Self>,
        seq: u64,
        live: &Arc<LiveWorkers>,
    ) -> Result<PoolSlot<PoolRef<B>>, Error> {
        let weak = Arc::downgrade(self);
        let broken = BrokenSignal::new(Arc::new(move |reason: &str| {
            if let Some(inner) = weak.upgrade() {
                inner.pool_broken(seq, reason);
            }
        }));
        let ctx = PoolContext {
            seq,
            workers: self.config.workers_per_pool,
            name_prefix: self.config.name_prefix.clone(),
            broken,
            live: live.clone(),
        };
        let pool = self.backend.create_pool(ctx)?;
        Ok(PoolSlot {
            seq,
            pool: Arc::new(pool),
        })
    }

    /// A backend reported pool `seq` broken. The lease (if any) is retired
    /// now; the pool itself is shut down later by the checker, never on the
    /// reporting thread.
    fn pool_broken(&self, seq: u64, reason: &str) {
        let mut fx = self.effects();
        {
            let mut core = self.core();
            if core.state.pool_broken(seq, reason, &mut fx) {
                core.state.record_break(Instant::now());
            } else if core.state.is_being_created(seq) {
                core.early_broken.insert(seq, reason.to_owned());
            }
            let deferred = std::mem::take(&mut fx.shutdown);
            core.deferred.extend(deferred);
            check_shutdown(&core.state, &mut fx);
        }
        fx.wake_checker = true;
        self.apply(fx);
    }

    /// One checker pass. Returns when the next pass is due, or `None` once
    /// the manager is not running.
    pub(crate) fn checker_pass(self: &Arc<Self>) -> Option<Instant> {
        let desired = self.compute_desired();
        let now = Instant::now();
        let mut fx = self.effects();
        let (deadline, creations, live) = {
            let mut core = self.core();
            if !matches!(core.state.phase(), Phase::Running | Phase::ShuttingDown) {
                return None;
            }
            fx.shutdown.append(&mut core.deferred);
            core.state.set_desired(desired);
            // Revoke, then plan, then tick: the room an expired lease frees
            // counts, and a waiter a new pool will serve is not timed out
            // in the very pass that creates its pool.
            core.state.revoke_expired(now, &mut fx);
            let creations = match core.state.creation_held_until(now) {
                Some(_) => Vec::new(), // the tick's deadline wakes us when it ends
                None => core.state.plan_creations(),
            };
            let deadline = core.state.tick(now, self.config.check_interval, &mut fx);
            if core.state.shutdown_due(now) {
                fx.shutdown_ready = true;
            }
            (deadline, creations, core.live.clone())
        };
        self.apply(fx);
        for seq in creations {
            let created = self.create_pool(seq, &live);
            let mut fx = self.effects();
            {
                let mut core = self.core();
                let now = Instant::now();
                match created {
                    Ok(slot) => match core.early_broken.remove(&seq) {
                        // Broke while being created: never offer it.
                        Some(reason) => {
                            core.state.creation_discarded(seq, &reason, &mut fx);
                            core.state.record_break(now);
                            fx.shutdown.push(slot.pool);
                        }
                        None => core.state.pool_created(slot, now, &mut fx),
                    },
                    Err(error) => {
                        core.early_broken.remove(&seq);
                        core.state.pool_creation_failed(seq, error, &mut fx);
                        core.state.record_break(now);
                    }
                }
            }
            self.apply(fx);
        }
        Some(deadline)
    }

    /// Stops everything. Returns the worker count to wait on and the number
    /// of leases it ended.
    fn begin_stop(&self) -> (Arc<LiveWorkers>, usize) {
        let mut fx = self.effects();
        let (live, was_running, ended) = {
            let mut core = self.core();
            let was_running = core.state.phase() != Phase::Stopped;
            let ended = core.stop(&mut fx);
            self.checker.next_generation();
            (core.live.clone(), was_running, ended)
        };
        self.checker.kick();
        self.apply(fx);
        if was_running {
            log::info!(target: LOG_TARGET, "stopped lease manager (backend {})", self.backend.name());
        }
        (live, ended)
    }
}

impl<B: ExecutorBackend> JobSink for Inner<B> {
    fn job_finished(&self, lease_key: u64, cancelled: bool) {
        if cancelled {
            self.jobs_cancelled.fetch_add(1, Ordering::AcqRel);
        }
        self.transition(|state, fx| state.job_finished(lease_key, Instant::now(), fx));
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
        self.checker.kick();
        self.apply(fx);
    }
}

pub(crate) fn weak_sink<B: ExecutorBackend>(inner: &Arc<Inner<B>>) -> Weak<dyn JobSink> {
    let weak: Weak<Inner<B>> = Arc::downgrade(inner);
    weak
}

fn log_note(backend: &str, note: &Note) {
    use crate::state::Finalised;
    let owner = |o: &Option<Arc<str>>| o.as_deref().unwrap_or("-").to_owned();
    match note {
        Note::Leased {
            id,
            owner: o,
            pool,
            duration,
            grace,
        } => log::info!(
            target: LOG_TARGET,
            "leased pool {pool} as {id} (owner {}, lease {duration:?}, grace {grace:?}, backend {backend})",
            owner(o)
        ),
        Note::Draining { id, pending } => log::info!(
            target: LOG_TARGET,
            "released {id} with {pending} jobs pending: draining"
        ),
        Note::Finalised { id, pool, outcome } => {
            let outcome = match outcome {
                Finalised::HandedOff => "handed to the oldest waiter",
                Finalised::Idle => "returned to the idle set",
                Finalised::ShutDown => "shut down",
            };
            log::info!(target: LOG_TARGET, "finalised {id}: pool {pool} {outcome}")
        }
        Note::Renewed { id, duration } => log::info!(
            target: LOG_TARGET,
            "renewed {id} for {duration:?}"
        ),
        Note::SoftExpired { id, owner: o } => log::warn!(
            target: LOG_TARGET,
            "{id} (owner {}) passed its soft expiry; it will be revoked at hard expiry",
            owner(o)
        ),
        Note::Revoked { id, owner: o, pool } => log::warn!(
            target: LOG_TARGET,
            "revoked {id} (owner {}) at hard expiry; pool {pool} shut down",
            owner(o)
        ),
        Note::Retired {
            pool,
            lease,
            reason,
        } => match lease {
            Some(id) => log::warn!(
                target: LOG_TARGET,
                "retired broken pool {pool} held by {id}: {reason}"
            ),
            None => log::warn!(target: LOG_TARGET, "retired broken idle pool {pool}: {reason}"),
        },
        Note::Shrunk { pool } => log::info!(
            target: LOG_TARGET,
            "shut down idle pool {pool}: above the desired count"
        ),
        Note::Created { pool } => log::info!(
            target: LOG_TARGET,
            "created executor pool {pool} (backend {backend})"
        ),
        Note::CreateFailed { error } => log::warn!(
            target: LOG_TARGET,
            "could not create an executor pool: {error}"
        ),
        Note::WaiterTimedOut { waited } => log::debug!(
            target: LOG_TARGET,
            "an acquire timed out after {waited:?}"
        ),
    }
}

/// During a graceful shutdown, flags the effects once every lease has
/// ended, so the waiting `shutdown()` proceeds.
fn check_shutdown<P: Clone, S>(state: &LeaseState<P, S>, fx: &mut Effects<P, S>) {
    if state.phase() == Phase::ShuttingDown && state.leased() == 0 {
        fx.shutdown_ready = true;
    }
}

/// Used by the checker to sleep without holding the manager alive.
pub(crate) fn downgrade<B: ExecutorBackend>(inner: &Arc<Inner<B>>) -> Weak<Inner<B>> {
    Arc::downgrade(inner)
}
