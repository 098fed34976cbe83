//! The shared state of one job and the caller's handle to it.
//!
//! A job moves `Queued → Running → Finished`, or `Queued → Finished` when it
//! is cancelled, failed or dropped before it ran. Whoever moves it out of
//! `Queued` owns its ending: it tells the lease the job is over (so draining
//! can finish) exactly once, *before* publishing the result, so a caller who
//! has seen the result and then releases the lease never finds the job still
//! counted.
//!
//! The result slot is a mutex-protected cell plus an `event_listener::Event`,
//! which gives one allocation that supports `.await`, blocking `wait`,
//! `wait_timeout`, `is_finished` and `cancel` on any runtime.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use event_listener::{Event, EventListener, Listener};

use crate::Error;

const QUEUED: u8 = 0;
const RUNNING: u8 = 1;
const FINISHED: u8 = 2;

/// Told when a job submitted through a lease has ended.
pub(crate) trait JobSink: Send + Sync {
    /// `cancelled`: the job ended without running (`Error::Cancelled`).
    fn job_finished(&self, lease_key: u64, cancelled: bool);
}

/// Which lease a job counts against.
pub(crate) struct LeaseLink {
    pub(crate) sink: Weak<dyn JobSink>,
    pub(crate) key: u64,
}

enum Slot<T> {
    Empty,
    Ready(Result<T, Error>),
    Taken,
}

pub(crate) struct JobShared<T> {
    state: AtomicU8,
    slot: Mutex<Slot<T>>,
    ready: Event,
    lease: Option<LeaseLink>,
}

impl<T> JobShared<T> {
    pub(crate) fn new(lease: Option<LeaseLink>) -> Arc<Self> {
        Arc::new(JobShared {
            state: AtomicU8::new(QUEUED),
            slot: Mutex::new(Slot::Empty),
            ready: Event::new(),
            lease,
        })
    }

    fn slot(&self) -> MutexGuard<'_, Slot<T>> {
        self.slot.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn is_queued(&self) -> bool {
        self.state.load(Ordering::Acquire) == QUEUED
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

    /// Settles the lease count, then makes the result visible.
    fn publish(&self, result: Result<T, Error>) {
        if let Some(link) = &self.lease {
            if let Some(sink) = link.sink.upgrade() {
                sink.job_finished(link.key, matches!(result, Err(Error::Cancelled)));
            }
        }
        *self.slot() = Slot::Ready(result);
        self.ready.notify(usize::MAX);
    }

    fn try_take(&self) -> Option<Result<T, Error>> {
        let mut slot = self.slot();
        match std::mem::replace(&mut *slot, Slot::Taken) {
            Slot::Ready(result) => Some(result),
            Slot::Taken => Some(Err(Error::ResultTaken)),
            Slot::Empty => {
                *slot = Slot::Empty;
                None
            }
        }
    }
}

/// The caller's side of a submitted job.
///
/// A `JobHandle` is a [`Future`] that resolves to the job's result, and it
/// can also be waited on from a plain thread ([`wait`](Self::wait),
/// [`wait_timeout`](Self::wait_timeout)). Dropping it detaches the job: the
/// job still runs and its result is discarded.
///
/// Outcomes: `Ok(value)`, [`Error::Panicked`] if the job panicked,
/// [`Error::Cancelled`] if it never started, [`Error::Broken`] if its pool
/// broke under it.
#[must_use = "a dropped JobHandle detaches the job; await it to get the result"]
pub struct JobHandle<T> {
    shared: Arc<JobShared<T>>,
    listener: Option<EventListener>,
}

impl<T> fmt::Debug for JobHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobHandle")
            .field("finished", &self.is_finished())
            .finish()
    }
}

impl<T> JobHandle<T> {
    pub(crate) fn new(shared: Arc<JobShared<T>>) -> Self {
        JobHandle {
            shared,
            listener: None,
        }
    }

    /// True once the result is available (or was already taken).
    pub fn is_finished(&self) -> bool {
        !matches!(*self.shared.slot(), Slot::Empty)
    }

    /// Cancels the job if it has not started. Returns true if it was
    /// cancelled (the handle then yields [`Error::Cancelled`]); false if it
    /// is already running or finished.
    pub fn cancel(&self) -> bool {
        self.shared.end_unstarted(Error::Cancelled)
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

    fn wait_until(&mut self, deadline: Option<Instant>) -> Option<Result<T, Error>> {
        loop {
            if let Some(result) = self.shared.try_take() {
                return Some(result);
            }
            let listener = self.shared.ready.listen();
            if let Some(result) = self.shared.try_take() {
                return Some(result);
            }
            match deadline {
                None => listener.wait(),
                Some(deadline) => {
                    listener.wait_deadline(deadline)?;
                }
            }
        }
    }
}

impl<T> Future for JobHandle<T> {
    type Output = Result<T, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            if let Some(result) = self.shared.try_take() {
                self.listener = None;
                return Poll::Ready(result);
            }
            match &mut self.listener {
                None => self.listener = Some(self.shared.ready.listen()),
                Some(listener) => {
                    ready!(Pin::new(listener).poll(cx));
                    self.listener = None;
                }
            }
        }
    }
}
