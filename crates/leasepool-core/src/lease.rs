//! Leases: `ExecutorLease`, its submit-only proxy `LeasedExecutor`, and the
//! `Run` future.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::call::{CallData, CallFn};
use crate::config;
use crate::contain::contain;
use crate::job::LeaseLink;
use crate::manager::{Inner, PoolRef, weak_sink};
use crate::state::{EndCell, Grant};
use crate::{
    BackendPool, Error, ExecutorBackend, JobHandle, LeaseEnd, LeaseId, LocalBackend, Task,
};

/// What the lease and all its executor proxies share.
struct LeaseHandle<B: ExecutorBackend> {
    inner: Arc<Inner<B>>,
    key: u64,
    id: LeaseId,
    end: Arc<EndCell>,
}

impl<B: ExecutorBackend> LeaseHandle<B> {
    fn expired(&self) -> Error {
        Error::LeaseExpired {
            id: self.id,
            reason: self.end.get().unwrap_or(LeaseEnd::Released),
        }
    }

    /// Counts a new job against the lease and returns the pool to run it.
    fn begin_job(&self) -> Result<PoolRef<B>, Error> {
        if self.end.get().is_some() {
            return Err(self.expired());
        }
        self.inner
            .transition(|state, fx| state.begin_job(self.key, Instant::now(), fx))
            .ok_or_else(|| self.expired())
    }

    fn link(&self) -> LeaseLink {
        LeaseLink {
            sink: weak_sink(&self.inner),
            key: self.key,
            manager: self.id.manager(),
            cancelled_only: false,
        }
    }

    fn submit<F, T>(&self, f: F) -> Result<JobHandle<T>, Error>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let pool = self.begin_job()?;
        let (task, handle) = Task::with_link(f, Some(self.link()), self.inner.capture());
        self.execute(&pool, task);
        Ok(handle)
    }

    /// Runs `task`, built by `run` without a lease link or context, on
    /// the leased pool: what `submit` does, the closure already boxed.
    fn submit_built(&self, task: Task) -> Result<(), Error> {
        let pool = self.begin_job()?;
        task.relink(self.link());
        task.set_context(self.inner.capture());
        self.execute(&pool, task);
        Ok(())
    }

    /// Runs an existing task (a grinder item) on the leased pool, counted
    /// against the lease; a rejected task is failed with the lease's error.
    fn execute_task(&self, task: Task) {
        match self.begin_job() {
            Ok(pool) => {
                task.relink(self.link());
                self.execute(&pool, task);
            }
            Err(error) => task.fail(error),
        }
    }

    fn submit_call<F, A, R>(&self, f: F, argument: A) -> Result<JobHandle<R>, Error>
    where
        F: CallFn<A, R>,
        A: CallData,
        R: CallData,
    {
        let pool = self.begin_job()?;
        let (task, handle) = Task::with_call(f, argument, Some(self.link()), self.inner.capture());
        self.execute(&pool, task);
        Ok(handle)
    }

    /// Hands `task` to the backend. A backend that panics in `execute`
    /// loses nothing and kills no library thread (the grinder calls this
    /// from its own threads): the task it was given ends (dropped while
    /// unwinding, so its caller sees `Cancelled`), and the pool, which can
    /// no longer be trusted, is retired as broken and replaced.
    fn execute(&self, pool: &PoolRef<B>, task: Task) {
        if let Err(message) = contain(|| pool.execute(task)) {
            // Reported as the pool's retirement (a warning naming the
            // reason), like any broken pool.
            let reason = format!("the backend panicked in BackendPool::execute: {message}");
            self.inner.lease_pool_broken(self.key, &reason);
        }
    }
}

/// An exclusive, time-bounded right to run work on one pool.
///
/// Obtained from [`LeasedExecutorManager::acquire`](crate::LeasedExecutorManager::acquire).
/// Dropping the lease releases it. After release, hard expiry, revocation,
/// a broken pool or `stop()`, new submissions fail with
/// [`Error::LeaseExpired`]; jobs already submitted still deliver their
/// results (the lease *drains*, and its pool returns only after they end).
#[must_use = "a dropped lease is released at once; keep it while you submit work"]
pub struct ExecutorLease<B: ExecutorBackend> {
    handle: Arc<LeaseHandle<B>>,
    owner: Option<Arc<str>>,
    leased_at: Instant,
    grace: Duration,
    /// Changed only by `renew`, under the manager's lock.
    timing: Mutex<Timing>,
}

/// The parts of a lease that a renewal moves.
#[derive(Debug, Clone, Copy)]
struct Timing {
    duration: Duration,
    soft: Instant,
    hard: Instant,
}

impl<B: ExecutorBackend> fmt::Debug for ExecutorLease<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExecutorLease")
            .field("id", &self.handle.id)
            .field("owner", &self.owner)
            .field("lease_duration", &self.lease_duration())
            .field("grace", &self.grace)
            .field("ended", &self.handle.end.get())
            .finish()
    }
}

impl<B: ExecutorBackend> ExecutorLease<B> {
    pub(crate) fn new(inner: Arc<Inner<B>>, grant: Grant) -> Self {
        ExecutorLease {
            handle: Arc::new(LeaseHandle {
                inner,
                key: grant.key,
                id: grant.id,
                end: grant.end,
            }),
            owner: grant.owner,
            leased_at: grant.leased_at,
            grace: grant.grace,
            timing: Mutex::new(Timing {
                duration: grant.duration,
                soft: grant.soft,
                hard: grant.hard,
            }),
        }
    }

    fn timing(&self) -> Timing {
        *self.timing.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The lease id.
    pub fn id(&self) -> &LeaseId {
        &self.handle.id
    }

    /// The owner label given at acquire.
    pub fn owner(&self) -> Option<&str> {
        self.owner.as_deref()
    }

    /// The lease duration: from `leased_at` (or the last renewal) to soft
    /// expiry.
    pub fn lease_duration(&self) -> Duration {
        self.timing().duration
    }

    /// Time from soft to hard expiry.
    pub fn grace(&self) -> Duration {
        self.grace
    }

    /// When the lease was granted.
    pub fn leased_at(&self) -> Instant {
        self.leased_at
    }

    /// `leased_at + lease_duration` (or last renewal + duration): past this
    /// the lease is reported as overdue (a warning), but still works.
    pub fn soft_expires_at(&self) -> Instant {
        self.timing().soft
    }

    /// `soft_expires_at + grace`: past this the lease is revoked and its pool
    /// shut down.
    pub fn hard_expires_at(&self) -> Instant {
        self.timing().hard
    }

    /// Restarts the lease for its own duration from now, like a keep-alive:
    /// soft and hard expiry move (the grace is unchanged) and the soft-expiry
    /// warning is reset. Not async: callable from any thread.
    ///
    /// Fails with [`Error::LeaseExpired`] and changes nothing if the lease
    /// was released, is draining, passed hard expiry, was revoked, its pool
    /// broke, or the manager stopped. A renewal racing the revocation at
    /// hard expiry has exactly one winner: either the lease is renewed and
    /// keeps its pool, or it is revoked and the renewal fails.
    pub fn renew(&self) -> Result<(), Error> {
        self.renew_for(self.lease_duration())
    }

    /// Like [`renew`](Self::renew), for `duration` from now (validated like
    /// a lease duration: > 0 and representable); it becomes the lease's
    /// duration.
    pub fn renew_for(&self, duration: Duration) -> Result<(), Error> {
        let duration = config::lease_duration("lease", duration, self.grace)?;
        let handle = &self.handle;
        // The timing lock is taken inside the state transition, so two
        // renewals of one lease cannot publish out of order.
        handle.inner.transition(|state, fx| {
            let (soft, hard) = state
                .renew(handle.key, duration, Instant::now(), fx)
                .ok_or_else(|| handle.expired())?;
            *self.timing.lock().unwrap_or_else(PoisonError::into_inner) = Timing {
                duration,
                soft,
                hard,
            };
            Ok(())
        })
    }

    /// Workers in the leased pool (the manager's `workers_per_pool`).
    pub fn workers(&self) -> usize {
        self.handle.inner.config.workers_per_pool
    }

    /// Why the lease no longer accepts work, or `None` while it does.
    pub fn ended(&self) -> Option<LeaseEnd> {
        self.handle.end.get()
    }

    /// Runs an existing task on the leased pool, counted against the lease.
    pub(crate) fn execute_task(&self, task: Task) {
        self.handle.execute_task(task);
    }

    /// A cloneable proxy that can submit work to the leased pool (and
    /// nothing else: it cannot shut the pool down).
    pub fn executor(&self) -> LeasedExecutor<B> {
        LeasedExecutor {
            handle: self.handle.clone(),
        }
    }

    /// Runs the plain function `f` on `argument` on the leased pool and
    /// waits for the result. Works on every backend: in-process backends
    /// call `f(argument)` directly; the process backend sends `f`'s name and
    /// the encoded argument to a worker process, which must have `f` in its
    /// registry. Several arguments go in a tuple.
    ///
    /// `f` must be a function item (`count_primes`, not a closure or a
    /// function-pointer variable): its type is its identity.
    pub fn call<F, A, R>(&self, f: F, argument: A) -> Run<R>
    where
        F: CallFn<A, R>,
        A: CallData,
        R: CallData,
    {
        let handle = self.handle.clone();
        Run::on_first_poll(Box::new(move || handle.submit_call(f, argument)))
    }

    /// [`call`](Self::call), returning the job's handle at once.
    pub fn submit_call<F, A, R>(&self, f: F, argument: A) -> Result<JobHandle<R>, Error>
    where
        F: CallFn<A, R>,
        A: CallData,
        R: CallData,
    {
        self.handle.submit_call(f, argument)
    }

    /// Releases the lease. Jobs still queued or running keep the pool until
    /// they end (draining). Same as dropping the lease.
    pub async fn release(self) {
        drop(self);
    }
}

impl<B: LocalBackend> ExecutorLease<B> {
    /// Submits `f` to the leased pool and returns its handle at once.
    ///
    /// Fails with [`Error::LeaseExpired`] once the lease has ended.
    pub fn submit<F, T>(&self, f: F) -> Result<JobHandle<T>, Error>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.handle.submit(f)
    }

    /// Runs `f` on the leased pool and waits for its result.
    ///
    /// Like any future, it does nothing until first polled: the job is
    /// submitted then. Dropping the future cancels the job if it has not
    /// started.
    pub fn run<F, T>(&self, f: F) -> Run<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        Run::lazy(self.handle.clone(), f)
    }
}

impl<B: ExecutorBackend> Drop for ExecutorLease<B> {
    fn drop(&mut self) {
        self.handle.inner.release(self.handle.key);
    }
}

/// The submit-only view of a leased pool, from [`ExecutorLease::executor`].
///
/// Cheap to clone and `Send + Sync`. It has no way to shut the pool down,
/// and it does not keep the lease alive: once the lease ends, submissions
/// fail with [`Error::LeaseExpired`].
pub struct LeasedExecutor<B: ExecutorBackend> {
    handle: Arc<LeaseHandle<B>>,
}

impl<B: ExecutorBackend> Clone for LeasedExecutor<B> {
    fn clone(&self) -> Self {
        LeasedExecutor {
            handle: self.handle.clone(),
        }
    }
}

impl<B: ExecutorBackend> fmt::Debug for LeasedExecutor<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeasedExecutor")
            .field("lease", &self.handle.id)
            .finish()
    }
}

impl<B: ExecutorBackend> LeasedExecutor<B> {
    /// The id of the lease this executor submits through.
    pub fn lease_id(&self) -> &LeaseId {
        &self.handle.id
    }

    /// Why the lease no longer accepts work, or `None` while it does.
    pub fn ended(&self) -> Option<LeaseEnd> {
        self.handle.end.get()
    }

    /// Submits a closure on any backend (a grinder puller; only used when
    /// the batch holds closure items, which need a local backend).
    pub(crate) fn submit_any<F>(&self, f: F) -> Result<JobHandle<()>, Error>
    where
        F: FnOnce() + Send + 'static,
    {
        self.handle.submit(f)
    }

    /// Runs `f(argument)` on the leased pool; see [`ExecutorLease::call`].
    pub fn call<F, A, R>(&self, f: F, argument: A) -> Run<R>
    where
        F: CallFn<A, R>,
        A: CallData,
        R: CallData,
    {
        let handle = self.handle.clone();
        Run::on_first_poll(Box::new(move || handle.submit_call(f, argument)))
    }

    /// [`call`](Self::call), returning the job's handle at once.
    pub fn submit_call<F, A, R>(&self, f: F, argument: A) -> Result<JobHandle<R>, Error>
    where
        F: CallFn<A, R>,
        A: CallData,
        R: CallData,
    {
        self.handle.submit_call(f, argument)
    }
}

impl<B: LocalBackend> LeasedExecutor<B> {
    /// Submits `f` to the leased pool; see [`ExecutorLease::submit`].
    pub fn submit<F, T>(&self, f: F) -> Result<JobHandle<T>, Error>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.handle.submit(f)
    }

    /// Runs `f` and waits for it; see [`ExecutorLease::run`].
    pub fn run<F, T>(&self, f: F) -> Run<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        Run::lazy(self.handle.clone(), f)
    }
}

/// The future returned by `run`: the job's result. The job is submitted
/// when the future is first polled; dropping the future before the job
/// starts cancels it.
#[must_use = "futures do nothing unless polled; dropping a Run cancels its job"]
pub struct Run<T> {
    state: RunState<T>,
}

pub(crate) type Submit<T> = Box<dyn FnOnce() -> Result<JobHandle<T>, Error> + Send>;

/// Where a `Run` hands the task it built, when first polled: a lease or a
/// grinder. (Building the task up front spares the boxed `Submit` closure:
/// one allocation per job.)
pub(crate) trait SubmitTask: Send + Sync {
    /// Queues or runs `task`. On an error the task has been dropped
    /// (cancelled) and the error is the caller's outcome.
    fn submit_task(&self, task: Task) -> Result<(), Error>;
}

impl<B: ExecutorBackend> SubmitTask for LeaseHandle<B> {
    fn submit_task(&self, task: Task) -> Result<(), Error> {
        self.submit_built(task)
    }
}

enum RunState<T> {
    NotPolled(Submit<T>),
    /// Built, not yet handed to `to`.
    Built {
        task: Task,
        handle: JobHandle<T>,
        to: Arc<dyn SubmitTask>,
    },
    Submitted(JobHandle<T>),
    Done(Option<Error>),
}

impl<T> fmt::Debug for Run<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.state {
            RunState::NotPolled(_) | RunState::Built { .. } => f.write_str("Run(not polled)"),
            RunState::Submitted(handle) => f.debug_tuple("Run").field(handle).finish(),
            RunState::Done(error) => f.debug_tuple("Run").field(error).finish(),
        }
    }
}

impl<T: Send + 'static> Run<T> {
    fn lazy<B, F>(handle: Arc<LeaseHandle<B>>, f: F) -> Self
    where
        B: ExecutorBackend,
        F: FnOnce() -> T + Send + 'static,
    {
        Self::built(f, handle)
    }

    /// A future that hands a task for `f` to `to` when first polled and
    /// then awaits it.
    pub(crate) fn built<F>(f: F, to: Arc<dyn SubmitTask>) -> Self
    where
        F: FnOnce() -> T + Send + 'static,
    {
        let (task, handle) = Task::with_link(f, None, None);
        Run {
            state: RunState::Built { task, handle, to },
        }
    }

    /// A future that calls `submit` when first polled and then awaits the
    /// job it returns.
    pub(crate) fn on_first_poll(submit: Submit<T>) -> Self {
        Run {
            state: RunState::NotPolled(submit),
        }
    }
}

impl<T> Future for Run<T> {
    type Output = Result<T, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let RunState::NotPolled(_) | RunState::Built { .. } = self.state {
            self.state = match std::mem::replace(&mut self.state, RunState::Done(None)) {
                RunState::NotPolled(submit) => match submit() {
                    Ok(handle) => RunState::Submitted(handle),
                    Err(error) => RunState::Done(Some(error)),
                },
                RunState::Built { task, handle, to } => match to.submit_task(task) {
                    Ok(()) => RunState::Submitted(handle),
                    Err(error) => RunState::Done(Some(error)),
                },
                _ => unreachable!("checked above"),
            };
        }
        match &mut self.state {
            RunState::Submitted(handle) => Pin::new(handle).poll(cx),
            RunState::Done(error) => Poll::Ready(Err(error.take().unwrap_or(Error::ResultTaken))),
            RunState::NotPolled(_) | RunState::Built { .. } => unreachable!("submitted above"),
        }
    }
}

impl<T> Drop for Run<T> {
    fn drop(&mut self) {
        if let RunState::Submitted(handle) = &self.state {
            handle.cancel();
        }
    }
}
