//! `WorkGrinder`: batches many small submissions into leased pools.
//!
//! Callers hand the grinder small jobs; it queues them and, when enough are
//! pending (`batch_size_threshold`) or the oldest has waited `max_wait`,
//! takes everything pending as one batch, leases one pool for it (owner
//! `{owner_prefix}-batch-{n}`), runs every item there, and gives each item's
//! own result or error to its caller. Leasing once per batch instead of once
//! per item is what makes tiny jobs cheap.
//!
//! The grinder has one thread, its dispatcher: it decides when a batch is
//! due (sleeping until kicked or until the oldest item's deadline, no
//! runtime), polls each due batch's lease request without blocking (at most
//! `max_pools` batches at a time), and launches a batch on its lease. No
//! thread is started per batch: a batch's closure items are taken by puller
//! jobs on the leased pool itself, and the last puller to end finishes the
//! batch (see `batch`).

mod batch;
mod dispatcher;
mod queue;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use event_listener::Event;

use crate::call::{CallData, CallFn};
use crate::config;
use crate::job::{JobEnd, JobSink, LeaseLink};
use crate::job_scope;
use crate::lease::{Run, SubmitTask};
use crate::observe::{self, JobContext};
use crate::wait::{Alarm, wait_for};
use crate::{Error, ExecutorBackend, JobHandle, LeasedExecutorManager, LocalBackend, Task};

use batch::CancelBatch;
use queue::{Phase, Queue};

/// How [`WorkGrinder::stop`] treats work that has not run yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StopMode {
    /// Run everything already queued (at once, without waiting for the
    /// threshold or `max_wait`), then stop: `stop` returns once every
    /// batch has ended.
    Drain,
    /// Cancel everything that has not started, and stop without waiting
    /// for what has.
    ///
    /// Queued items, the items of batches still waiting for a lease, and
    /// the items of running batches that no worker has taken yet all get
    /// [`Error::Cancelled`] before `stop` returns. An item already running
    /// keeps running on its worker (a thread cannot be interrupted) and its
    /// own outcome still reaches its caller when it ends; `stop` does not
    /// wait for it. Its batch's lease is released at once and drains: the
    /// pool goes back to the manager when the running items end (until
    /// then [`GrinderStats::running_batches`] still counts the batch). Call
    /// items that a running batch already handed to its pool are ordinary
    /// jobs of that lease: they run, or are cancelled if the pool shuts
    /// down first. Either way every item gets exactly one outcome.
    Cancel,
}

/// A snapshot of a grinder, from [`WorkGrinder::stats`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct GrinderStats {
    /// True between `start` and the end of `stop`.
    pub started: bool,
    /// True while `stop` is in progress.
    pub stopping: bool,
    /// Items queued and not yet taken into a batch (cancelled items leave
    /// the count at once).
    pub pending: usize,
    /// Batches leasing or running now.
    pub running_batches: usize,
    /// The configured threshold.
    pub batch_size_threshold: usize,
    /// The configured longest wait of the oldest item.
    #[cfg_attr(
        feature = "serde",
        serde(serialize_with = "crate::serde_secs::duration")
    )]
    pub max_wait: Duration,
    /// The lease duration of each batch.
    #[cfg_attr(
        feature = "serde",
        serde(serialize_with = "crate::serde_secs::duration")
    )]
    pub lease: Duration,
    /// How long the oldest pending item has waited (`None`: nothing pending).
    #[cfg_attr(
        feature = "serde",
        serde(serialize_with = "crate::serde_secs::option_duration")
    )]
    pub oldest_wait: Option<Duration>,
}

/// Builds a [`WorkGrinder`]; every value is validated by
/// [`build`](Self::build).
///
/// | option | default | rule |
/// |---|---|---|
/// | `batch_size_threshold` | 20 | > 0 |
/// | `max_wait` | 10 s | > 0, representable |
/// | `lease` | 60 s | > 0, representable with the manager's grace |
/// | `owner_prefix` | "work-grinder" | not empty |
pub struct GrinderBuilder<B: ExecutorBackend> {
    manager: LeasedExecutorManager<B>,
    batch_size_threshold: usize,
    max_wait: Duration,
    lease: Duration,
    owner_prefix: String,
}

impl<B: ExecutorBackend> fmt::Debug for GrinderBuilder<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrinderBuilder")
            .field("batch_size_threshold", &self.batch_size_threshold)
            .field("max_wait", &self.max_wait)
            .field("lease", &self.lease)
            .field("owner_prefix", &self.owner_prefix)
            .finish_non_exhaustive()
    }
}

impl<B: ExecutorBackend> GrinderBuilder<B> {
    /// Pending items that start a batch at once (default 20).
    pub fn batch_size_threshold(mut self, n: usize) -> Self {
        self.batch_size_threshold = n;
        self
    }

    /// The longest the oldest pending item waits before a batch starts
    /// anyway (default 10 s).
    pub fn max_wait(mut self, wait: Duration) -> Self {
        self.max_wait = wait;
        self
    }

    /// The lease duration of each batch (default 60 s).
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// Owner label prefix of batch leases: `{prefix}-batch-{n}` (default
    /// "work-grinder").
    pub fn owner_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.owner_prefix = prefix.into();
        self
    }

    /// Validates every option and builds the (stopped) grinder.
    pub fn build(self) -> Result<WorkGrinder<B>, Error> {
        let batch_size_threshold =
            config::positive("batch_size_threshold", self.batch_size_threshold)?;
        let max_wait = config::duration("max_wait", self.max_wait, false)?;
        let grace = self.manager.config().lease_grace();
        let max_batches = self.manager.config().max_pools();
        let lease = config::lease_duration("lease", self.lease, grace)?;
        if self.owner_prefix.is_empty() {
            return Err(Error::invalid("owner_prefix", "must not be empty"));
        }
        Ok(WorkGrinder {
            inner: Arc::new_cyclic(|me| GrinderInner {
                me: me.clone(),
                id: next_grinder_id(),
                manager: self.manager,
                batch_size_threshold,
                max_batches,
                max_wait,
                lease,
                owner_prefix: self.owner_prefix,
                queue: Mutex::new(Queue::default()),
                signal: Arc::new(Alarm::default()),
                stopped: Event::new(),
            }),
        })
    }
}

/// Batches many small submissions into leased pools. Cheap to clone
/// (clones share one grinder).
///
/// # Ordering
///
/// Items are taken into batches in the order they were queued, and a
/// batch's items are handed to its pool in that order. Items run
/// concurrently on the pool's workers, and batches may run concurrently (up
/// to `max_pools`), so completion order is not guaranteed. Each caller gets
/// exactly its own item's result.
///
/// # Examples
///
/// ```
/// use leasepool_core::{LeasedExecutorManager, StopMode, WorkGrinder};
/// # use leasepool_core::{BackendPool, Error, ExecutorBackend, LocalBackend, PoolContext, Task};
/// # #[derive(Clone)] struct Inline;
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
/// use std::time::Duration;
///
/// # fn main() -> Result<(), Error> {
/// futures_lite::future::block_on(async {
///     let manager = LeasedExecutorManager::builder(Inline).max_pools(2).build()?;
///     manager.start().await?;
///     let grinder = WorkGrinder::builder(manager.clone())
///         .batch_size_threshold(2)
///         .max_wait(Duration::from_millis(50))
///         .build()?;
///     grinder.start().await?;
///     let (a, b) = futures_lite::future::zip(grinder.submit(|| 1), grinder.submit(|| 2)).await;
///     assert_eq!((a?, b?), (1, 2));
///     grinder.stop(StopMode::Drain).await;
///     manager.stop().await;
///     Ok(())
/// })
/// # }
/// ```
pub struct WorkGrinder<B: ExecutorBackend> {
    inner: Arc<GrinderInner<B>>,
}

impl<B: ExecutorBackend> Clone for WorkGrinder<B> {
    fn clone(&self) -> Self {
        WorkGrinder {
            inner: self.inner.clone(),
        }
    }
}

impl<B: ExecutorBackend> fmt::Debug for WorkGrinder<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkGrinder")
            .field("stats", &self.inner.stats())
            .finish()
    }
}

pub(crate) struct GrinderInner<B: ExecutorBackend> {
    /// This grinder's number, unique in the process: its items mark the
    /// thread that runs them with it (see `job_scope`).
    id: u64,
    /// This grinder, for its items' links (they must not keep it alive).
    me: Weak<GrinderInner<B>>,
    manager: LeasedExecutorManager<B>,
    batch_size_threshold: usize,
    /// Batches that may lease or run at once: the manager's `max_pools`.
    max_batches: usize,
    max_wait: Duration,
    lease: Duration,
    owner_prefix: String,
    queue: Mutex<Queue>,
    /// Wakes the dispatcher; shared with it so it can sleep without keeping
    /// the grinder alive.
    signal: Arc<Alarm>,
    /// Notified when the grinder reaches `Stopped`.
    stopped: Event,
}

impl<B: ExecutorBackend> WorkGrinder<B> {
    /// Starts configuring a grinder that leases from `manager`.
    pub fn builder(manager: LeasedExecutorManager<B>) -> GrinderBuilder<B> {
        GrinderBuilder {
            manager,
            batch_size_threshold: 20,
            max_wait: Duration::from_secs(10),
            lease: Duration::from_secs(60),
            owner_prefix: "work-grinder".to_owned(),
        }
    }

    /// A snapshot of the queue and configuration; callable from any thread.
    pub fn stats(&self) -> GrinderStats {
        self.inner.stats()
    }
}

impl<B: ExecutorBackend> WorkGrinder<B> {
    /// Starts the dispatcher. Calling it while started does nothing; a
    /// stopped grinder can be started again (after `stop` has returned).
    pub async fn start(&self) -> Result<(), Error> {
        self.start_blocking()
    }

    /// [`start`](Self::start) for plain threads (it does not block).
    pub fn start_blocking(&self) -> Result<(), Error> {
        {
            let mut queue = self.inner.queue();
            match queue.phase {
                Phase::Running => return Ok(()),
                Phase::Stopping(_) => return Err(Error::NotStarted),
                Phase::Stopped => queue.phase = Phase::Running,
            }
        }
        if let Err(error) = dispatcher::spawn(self.inner.clone()) {
            self.inner.queue().phase = Phase::Stopped;
            return Err(error);
        }
        self.inner.observe(|| observe::Event::GrinderStarted {
            batch_size_threshold: self.inner.batch_size_threshold,
            max_wait: self.inner.max_wait,
            lease: self.inner.lease,
        });
        Ok(())
    }

    /// Stops the grinder: new submissions fail with [`Error::NotStarted`]
    /// at once; then, with [`StopMode::Drain`], everything queued runs and
    /// `stop` returns once no batch is running; with [`StopMode::Cancel`],
    /// everything that has not started is cancelled and `stop` returns
    /// without waiting for the items still running (see the mode). Never
    /// hangs on a lease: a cancelled batch stops waiting for one.
    ///
    /// # From inside one of the grinder's own items
    ///
    /// An item cannot wait for the batch that runs it. Called from inside
    /// an item of this grinder (on the thread running it, however nested),
    /// `stop` starts the stop as above (new submissions fail; with `Cancel`,
    /// what it cancels is cancelled before it returns) and then returns
    /// *without waiting for anything*. The grinder finishes stopping by
    /// itself once its batches, the caller's included, have ended (with
    /// `Drain`, once everything queued has run); [`stats`](Self::stats)
    /// then shows it not started, and it can be started again.
    pub async fn stop(&self, mode: StopMode) {
        if self.inner.begin_stop(mode) && !self.inner.called_from_own_item() {
            let inner = &self.inner;
            wait_for(&inner.stopped, || inner.is_stopped().then_some(())).await;
        }
    }

    /// [`stop`](Self::stop) for plain threads (from inside one of the
    /// grinder's items it does not wait either).
    pub fn stop_blocking(&self, mode: StopMode) {
        futures_lite::future::block_on(self.stop(mode));
    }

    /// Queues the plain function call `f(argument)` (the `call` form, see
    /// [`ExecutorLease::call`](crate::ExecutorLease::call)) and returns its
    /// handle at once.
    pub fn enqueue_call<F, A, R>(&self, f: F, argument: A) -> Result<JobHandle<R>, Error>
    where
        F: CallFn<A, R>,
        A: CallData,
        R: CallData,
    {
        GrinderInner::enqueue_task(&self.inner, |link, context| {
            Task::with_call(f, argument, Some(link), context)
        })
    }

    /// Queues `f(argument)` when first polled and waits for its result.
    pub fn submit_call<F, A, R>(&self, f: F, argument: A) -> Run<R>
    where
        F: CallFn<A, R>,
        A: CallData,
        R: CallData,
    {
        let inner = self.inner.clone();
        Run::on_first_poll(Box::new(move || {
            GrinderInner::enqueue_task(&inner, |link, context| {
                Task::with_call(f, argument, Some(link), context)
            })
        }))
    }
}

impl<B: LocalBackend> WorkGrinder<B> {
    /// Queues `f` and returns its handle at once; callable from any thread.
    /// Cancelling the handle before its batch runs it removes the item from
    /// the queue.
    pub fn enqueue<F, T>(&self, f: F) -> Result<JobHandle<T>, Error>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        GrinderInner::enqueue(&self.inner, f)
    }

    /// Queues `f` when first polled and waits for its result. Dropping the
    /// future before the item runs removes it from the queue.
    pub fn submit<F, T>(&self, f: F) -> Run<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        Run::built(f, self.inner.clone())
    }

    /// Queues `f` and blocks the current thread until its result arrives.
    /// Do not call this from async code: use [`submit`](Self::submit).
    pub fn submit_blocking<F, T>(&self, f: F) -> Result<T, Error>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.enqueue(f)?.wait()
    }
}

impl<B: ExecutorBackend> GrinderInner<B> {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn kick(&self) {
        self.signal.kick();
    }

    fn stats(&self) -> GrinderStats {
        let now = Instant::now();
        let queue = self.queue();
        GrinderStats {
            started: queue.phase != Phase::Stopped,
            stopping: matches!(queue.phase, Phase::Stopping(_)),
            pending: queue.pending(),
            running_batches: queue.running_batches,
            batch_size_threshold: self.batch_size_threshold,
            max_wait: self.max_wait,
            lease: self.lease,
            oldest_wait: queue
                .oldest_enqueued_at()
                .map(|at| now.saturating_duration_since(at)),
        }
    }

    /// Batch `number` ended (ran, failed, or was cancelled).
    fn batch_finished(&self, number: u64) {
        self.queue().batch_finished(number);
        self.kick();
    }

    /// Registers a batch that got its lease, for `stop(Cancel)`. False if
    /// that stop has begun already: the caller cancels the batch itself.
    fn register_running(&self, number: u64, batch: Weak<impl CancelBatch + 'static>) -> bool {
        let mut queue = self.queue();
        if queue.phase == Phase::Stopping(StopMode::Cancel) {
            return false;
        }
        queue.running.push((number, batch));
        true
    }

    /// True on a thread that is running one of this grinder's items: a
    /// `stop` from there must not wait for the batches to end.
    fn called_from_own_item(&self) -> bool {
        job_scope::running_item_of(self.id)
    }

    fn is_stopped(&self) -> bool {
        self.queue().phase == Phase::Stopped
    }

    /// Moves to `Stopping(mode)`; with `Cancel`, cancels what has not run.
    /// Returns false if the grinder was already stopped.
    fn begin_stop(&self, mode: StopMode) -> bool {
        let (cancelled, batches) = {
            let mut queue = self.queue();
            match queue.phase {
                Phase::Stopped => return false,
                Phase::Stopping(StopMode::Cancel) => (Vec::new(), Vec::new()),
                Phase::Stopping(StopMode::Drain) | Phase::Running => {
                    queue.phase = Phase::Stopping(mode);
                    match mode {
                        StopMode::Drain => (Vec::new(), Vec::new()),
                        StopMode::Cancel => (queue.cancel_all(), queue.batches_on_lease()),
                    }
                }
            }
        };
        // Outside the lock: failing a task tells its caller and the grinder.
        for task in cancelled {
            task.fail(Error::Cancelled);
        }
        // A batch launched after the phase changed cancels itself.
        for batch in batches {
            batch.cancel();
        }
        self.observe(|| observe::Event::GrinderStopping { mode });
        self.kick();
        true
    }
}

impl<B: ExecutorBackend> GrinderInner<B> {
    /// Tells the manager's observer of a grinder event.
    pub(super) fn observe(&self, event: impl FnOnce() -> observe::Event) {
        self.manager.inner.observe(event);
    }

    fn enqueue<F, T>(this: &Arc<Self>, f: F) -> Result<JobHandle<T>, Error>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let (task, handle) = Task::with_link(f, None, None);
        this.queue_built(task)?;
        Ok(handle)
    }

    /// The link of item `id`: a cancelled item leaves the queue at once.
    fn link(&self, id: u64) -> LeaseLink {
        let sink: Weak<dyn JobSink> = self.me.clone();
        LeaseLink {
            sink,
            key: id,
            manager: 0,
            cancelled_only: true,
        }
    }

    /// Queues `task`, built without a link or context (by `enqueue`, or by
    /// a `submit` future on its first poll). The submitter's context is
    /// captured before the queue is locked (the observer is user code),
    /// and a refused task is dropped (cancelled) after it is unlocked.
    fn queue_built(&self, task: Task) -> Result<(), Error> {
        task.set_context(self.manager.inner.capture());
        let now = Instant::now();
        let mut queue = self.queue();
        if queue.phase != Phase::Running {
            drop(queue);
            drop(task);
            return Err(Error::NotStarted);
        }
        let id = queue.next_item_id();
        task.relink(self.link(id));
        self.push(queue, id, now, task);
        Ok(())
    }

    /// Queues the task `make` builds around the grinder's link for the new
    /// item and the submitter's context (a `call` item).
    fn enqueue_task<T>(
        this: &Arc<Self>,
        make: impl FnOnce(LeaseLink, Option<Box<dyn JobContext>>) -> (Task, JobHandle<T>),
    ) -> Result<JobHandle<T>, Error> {
        let context = this.manager.inner.capture();
        let now = Instant::now();
        let mut queue = this.queue();
        if queue.phase != Phase::Running {
            return Err(Error::NotStarted);
        }
        let id = queue.next_item_id();
        let (task, handle) = make(this.link(id), context);
        this.push(queue, id, now, task);
        Ok(handle)
    }

    /// Pushes item `id` and unlocks the queue, kicking the dispatcher if
    /// it needs to hear of it.
    fn push(&self, mut queue: MutexGuard<'_, Queue>, id: u64, now: Instant, mut task: Task) {
        task.mark_grinder_item(self.id);
        queue.push(id, now, task);
        // The dispatcher needs to hear only of the first item (it sets the
        // deadline) and of the item that reaches the threshold (it starts
        // a batch), and not even of those while it waits for a batch to
        // end (the end kicks it, and it looks at the queue again then).
        let pending = queue.pending();
        let kick = (pending == 1 || pending == self.batch_size_threshold)
            && queue.running_batches < self.max_batches;
        drop(queue);
        if kick {
            self.kick();
        }
    }
}

impl<B: ExecutorBackend> SubmitTask for GrinderInner<B> {
    fn submit_task(&self, task: Task) -> Result<(), Error> {
        self.queue_built(task)
    }
}

/// Hands out grinder numbers (0 is none).
fn next_grinder_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

impl<B: ExecutorBackend> Drop for GrinderInner<B> {
    fn drop(&mut self) {
        // Dropped without stop(): pending items are cancelled (dropping a
        // task reports it cancelled) and the dispatcher, which holds only a
        // weak reference, exits at its next wake.
        let queue = self.queue.get_mut().unwrap_or_else(PoisonError::into_inner);
        queue.phase = Phase::Stopped;
        let pending = queue.cancel_all();
        drop(pending);
        self.signal.kick();
    }
}

impl<B: ExecutorBackend> JobSink for GrinderInner<B> {
    fn job_finished(&self, item: u64, end: JobEnd) {
        if end == JobEnd::Cancelled {
            // A caller cancelled a pending item: it leaves the queue now,
            // so `pending` stays exact. (Items already in a batch are not in
            // the queue any more; nothing to do for them.)
            let removed = self.queue().remove(item);
            drop(removed);
        }
    }
}
