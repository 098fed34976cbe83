//! The shared state of one job and the caller's handle to it.
//!
//! A job moves `Queued → Running → Finished`, or `Queued → Finished` when it
//! is cancelled, failed or dropped before it ran. Whoever moves it out of
//! `Queued` owns its ending: it tells the lease the job is over (so draining
//! can finish) exactly once, *before* publishing the result, so a caller who
//! has seen the result and then releases the lease never finds the job still
//! counted.
//!
//! The result lives in one mutex-protected cell beside the waker of the
//! task waiting for it. Publishing stores the result and takes the waker
//! under the lock, then wakes it *after* unlocking, so the woken side never
//! collides with the lock it needs. One allocation supports `.await`,
//! blocking `wait` and `wait_timeout` (which poll the same future with a
//! waker that unparks the waiting thread), `is_finished` and `cancel`, on
//! any runtime. `README.md` beside this file walks through the protocol.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::Error;
use crate::contain::{contain_logged, drop_user_value};
use crate::sync::thread::{self, Thread};
use crate::sync::{AtomicU8, Mutex, MutexGuard};
use std::task::Wake;

const QUEUED: u8 = 0;
const RUNNING: u8 = 1;
const FINISHED: u8 = 2;

/// How a job ended, for the lease count and the manager's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JobEnd {
    /// It ran and returned a value.
    Completed,
    /// It ran and panicked.
    Panicked,
    /// It ended without running (`Error::Cancelled`).
    Cancelled,
    /// Any other error (its pool broke, a call could not be decoded...).
    Failed,
}

impl JobEnd {
    fn of<T>(result: &Result<T, Error>) -> Self {
        match result {
            Ok(_) => JobEnd::Completed,
            Err(Error::Panicked(_)) => JobEnd::Panicked,
            Err(Error::Cancelled) => JobEnd::Cancelled,
            Err(_) => JobEnd::Failed,
        }
    }
}

/// Told when a job submitted through a lease has ended.
pub(crate) trait JobSink: Send + Sync {
    fn job_finished(&self, lease_key: u64, end: JobEnd);
}

/// Which lease a job counts against.
pub(crate) struct LeaseLink {
    pub(crate) sink: Weak<dyn JobSink>,
    pub(crate) key: u64,
    /// The number of the manager whose pool runs the job (as in
    /// `LeaseId::manager`), marked on the thread while the job runs (see
    /// `job_scope`); 0 while a grinder item is linked to its grinder.
    pub(crate) manager: u64,
    /// Tell the sink only of a job that ends cancelled (a grinder, which
    /// removes a cancelled item from its queue and has nothing to do for
    /// any other end): the other ends then skip reaching the sink.
    pub(crate) cancelled_only: bool,
}

enum Slot<T> {
    Empty,
    Ready(Result<T, Error>),
    Taken,
}

/// The result and whoever waits for it.
struct Cell<T> {
    slot: Slot<T>,
    waker: Option<Waker>,
}

pub(crate) struct JobShared<T> {
    state: AtomicU8,
    cell: Mutex<Cell<T>>,
    /// Who counts this job; moved from the grinder to a lease when a
    /// batch hands the job to its pool.
    lease: Mutex<Option<LeaseLink>>,
    /// `manager` of the current link, readable without the lock (every
    /// run reads it). Relaxed: a relink happens before the task is handed
    /// to its pool, which synchronises.
    manager: AtomicU64,
}

/// Where a [`JobHandle`] finds its job's [`JobShared`]: the `JobShared`
/// itself, or the one allocation that holds it beside the job's closure
/// (`task::ClosureJob`).
pub(crate) trait Completion<T>: Send + Sync {
    fn shared(&self) -> &JobShared<T>;
}

impl<T: Send> Completion<T> for JobShared<T> {
    fn shared(&self) -> &JobShared<T> {
        self
    }
}

impl<T> JobShared<T> {
    pub(crate) fn new(lease: Option<LeaseLink>) -> Arc<Self> {
        Arc::new(Self::unshared(lease))
    }

    /// A `JobShared` to be placed in another shared allocation.
    pub(crate) fn unshared(lease: Option<LeaseLink>) -> Self {
        let manager = lease.as_ref().map_or(0, |link| link.manager);
        JobShared {
            state: AtomicU8::new(QUEUED),
            cell: Mutex::new(Cell {
                slot: Slot::Empty,
                waker: None,
            }),
            lease: Mutex::new(lease),
            manager: AtomicU64::new(manager),
        }
    }

    fn cell(&self) -> MutexGuard<'_, Cell<T>> {
        self.cell.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn is_queued(&self) -> bool {
        self.state.load(Ordering::Acquire) == QUEUED
    }

    /// Makes `link` count this job instead of whoever counted it so far.
    pub(crate) fn relink(&self, link: LeaseLink) {
        self.manager.store(link.manager, Ordering::Relaxed);
        *self.lease.lock().unwrap_or_else(PoisonError::into_inner) = Some(link);
    }

    /// The manager whose pool runs this job (0: none).
    pub(crate) fn manager(&self) -> u64 {
        self.manager.load(Ordering::Relaxed)
    }

    pub(crate) fn is_running(&self) -> bool {
        self.state.load(Ordering::Acquire) == RUNNING
    }

    /// `Queued → Running`. False if the job already ended (cancelled).
    pub(crate) fn start(&self) -> bool {
        self.state
            .compare_exchange(QUEUED, RUNNING, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// `Queued → Finished` with `error`. False if the job already left
    /// `Queued`.
    pub(crate) fn end_unstarted(&self, error: Error) -> bool {
        if self
            .state
            .compare_exchange(QUEUED, FINISHED, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return false;
        }
        self.publish(Err(error));
        true
    }

    /// `Running → Finished` with the job's own outcome.
    pub(crate) fn finish(&self, result: Result<T, Error>) {
        self.state.store(FINISHED, Ordering::Release);
        self.publish(result);
    }

    /// Settles the lease count, then makes the result visible and wakes
    /// the waiter (outside the lock).
    fn publish(&self, result: Result<T, Error>) {
        let link = self
            .lease
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(link) = link {
            let end = JobEnd::of(&result);
            if !link.cancelled_only || end == JobEnd::Cancelled {
                if let Some(sink) = link.sink.upgrade() {
                    sink.job_finished(link.key, end);
                }
            }
        }
        let waker = {
            let mut cell = self.cell();
            cell.slot = Slot::Ready(result);
            cell.waker.take()
        };
        if let Some(waker) = waker {
            // A waker is its runtime's code, and may be the user's: the
            // ending thread (a worker) must survive it.
            contain_logged(log::Level::Warn, "waking a job's waiter", || waker.wake());
        }
    }

    /// Takes the result if it is there; otherwise registers `waiter` to be
    /// woken when it is.
    fn take_or_register(&self, waiter: impl FnOnce(&mut Cell<T>)) -> Option<Result<T, Error>> {
        let mut cell = self.cell();
        match std::mem::replace(&mut cell.slot, Slot::Taken) {
            Slot::Ready(result) => Some(result),
            Slot::Taken => Some(Err(Error::ResultTaken)),
            Slot::Empty => {
                cell.slot = Slot::Empty;
                waiter(&mut cell);
                None
            }
        }
    }
}

impl<T> Drop for JobShared<T> {
    fn drop(&mut self) {
        // Whoever lets go last drops a result nobody took: a worker or a
        // backend's reader thread when the handle went first. The result is
        // user code, and its `Drop` must not unwind into the library.
        let cell = self.cell.get_mut().unwrap_or_else(PoisonError::into_inner);
        if let Slot::Ready(result) = std::mem::replace(&mut cell.slot, Slot::Taken) {
            drop_user_value(result);
        }
    }
}

/// The caller's side of a submitted job.
///
/// A `JobHandle` is a [`Future`] that resolves to the job's result, and it
/// can also be waited on from a plain thread ([`wait`](Self::wait),
/// [`wait_timeout`](Self::wait_timeout)). Dropping it detaches the job: the
/// job still runs and its result is discarded (dropped by whichever side
/// lets go last; a panic in the result's `Drop` is caught and logged, it
/// never reaches the worker that ran the job).
///
/// Outcomes: `Ok(value)`, [`Error::Panicked`] if the job panicked,
/// [`Error::Cancelled`] if it never started, [`Error::Broken`] if its pool
/// broke under it.
#[must_use = "a dropped JobHandle detaches the job; await it to get the result"]
pub struct JobHandle<T> {
    job: Arc<dyn Completion<T>>,
}

impl<T> fmt::Debug for JobHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobHandle")
            .field("finished", &self.is_finished())
            .finish()
    }
}

impl<T> JobHandle<T> {
    pub(crate) fn new(job: Arc<dyn Completion<T>>) -> Self {
        JobHandle { job }
    }

    fn shared(&self) -> &JobShared<T> {
        self.job.shared()
    }

    /// True once the result is available (or was already taken).
    pub fn is_finished(&self) -> bool {
        !matches!(self.shared().cell().slot, Slot::Empty)
    }

    /// Cancels the job if it has not started. Returns true if it was
    /// cancelled (the handle then yields [`Error::Cancelled`]); false if it
    /// is already running or finished.
    pub fn cancel(&self) -> bool {
        self.shared().end_unstarted(Error::Cancelled)
    }

    /// Blocks the current thread until the job ends.
    ///
    /// Do not call this from async code: `.await` the handle instead.
    pub fn wait(mut self) -> Result<T, Error> {
        match self.wait_until(None) {
            Some(result) => result,
            None => unreachable!("an unbounded wait returns only with a result"),
        }
    }

    /// Blocks for at most `timeout`. `None` if the job has not ended by
    /// then; the handle can be waited on again.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<Result<T, Error>> {
        let deadline = Instant::now().checked_add(timeout);
        self.wait_until(deadline)
    }

    /// Polls the handle's own future with a waker that unparks this
    /// thread, parking between polls: the same wait as `.await`.
    fn wait_until(&mut self, deadline: Option<Instant>) -> Option<Result<T, Error>> {
        let waker = Waker::from(Arc::new(Unparker(thread::current())));
        let mut cx = Context::from_waker(&waker);
        loop {
            if let Poll::Ready(result) = Pin::new(&mut *self).poll(&mut cx) {
                return Some(result);
            }
            // A spurious or stale unpark just loops: the slot is the truth.
            match deadline {
                None => thread::park(),
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        self.shared().cell().waker = None;
                        return None;
                    }
                    thread::park_timeout(deadline - now);
                }
            }
        }
    }
}

/// Wakes a thread parked in [`JobHandle::wait`].
struct Unparker(Thread);

impl Wake for Unparker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

impl<T> Future for JobHandle<T> {
    type Output = Result<T, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let registered = self.shared().take_or_register(|cell| match &cell.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            _ => cell.waker = Some(cx.waker().clone()),
        });
        match registered {
            Some(result) => Poll::Ready(result),
            None => Poll::Pending,
        }
    }
}
