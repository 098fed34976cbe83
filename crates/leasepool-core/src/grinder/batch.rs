//! Running one batch without a thread of its own.
//!
//! The dispatcher acquires the batch's lease by polling an ordinary
//! `AcquireFuture` (its waker kicks the dispatcher), then submits one
//! *puller* job per worker. Pullers take the oldest remaining item until
//! none is left or the lease ends. Each puller carries a guard; when the
//! last guard drops (its job ran, failed or was dropped), the batch ends on
//! that thread: items that never ran get the error that stopped them, the
//! lease is released, and the dispatcher is kicked.
//!
//! A running batch is registered with the grinder (as a [`CancelBatch`])
//! until it finishes, so `stop(Cancel)` can cancel it from any thread: the
//! items no puller has taken yet are cancelled at once and the lease is
//! released (it drains); pullers then stop, and items already running end
//! on their own.

use std::collections::VecDeque;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::{Context, Poll};

use super::GrinderInner;
use crate::observe::Event;
use crate::{AcquireFuture, Error, ExecutorBackend, ExecutorLease, Task};

/// A batch whose lease has not been granted yet.
pub(super) struct Waiting<B: ExecutorBackend> {
    number: u64,
    tasks: Vec<Task>,
    acquire: Pin<Box<AcquireFuture<B>>>,
}

impl<B: ExecutorBackend> Waiting<B> {
    pub(super) fn new(inner: &GrinderInner<B>, number: u64, tasks: Vec<Task>) -> Self {
        let owner = format!("{}-batch-{number}", inner.owner_prefix);
        inner.observe(|| Event::GrinderBatch {
            number,
            items: tasks.len(),
        });
        let acquire = inner
            .manager
            .acquire()
            .owner(owner)
            .lease(inner.lease)
            .into_future();
        Waiting {
            number,
            tasks,
            acquire: Box::pin(acquire),
        }
    }

    /// Polls for the lease. `Some(())` once the batch has been launched or
    /// failed: the dispatcher forgets it.
    pub(super) fn poll(
        &mut self,
        inner: &Arc<GrinderInner<B>>,
        cx: &mut Context<'_>,
    ) -> Option<()> {
        let Poll::Ready(result) = self.acquire.as_mut().poll(cx) else {
            return None;
        };
        let tasks = std::mem::take(&mut self.tasks);
        match result {
            Ok(lease) => launch(inner, self.number, lease, tasks),
            Err(error) => {
                inner.observe(|| Event::GrinderBatchUnleased {
                    number: self.number,
                    error: error.clone(),
                });
                fail_all(tasks, &error);
                inner.batch_finished(self.number);
            }
        }
        Some(())
    }

    /// `stop(Cancel)` while still waiting: the lease request is dropped
    /// (it leaves the manager's queue) and the items are cancelled.
    pub(super) fn cancel(self, inner: &GrinderInner<B>) {
        drop(self.acquire);
        fail_all(self.tasks, &Error::Cancelled);
        inner.batch_finished(self.number);
    }
}

fn fail_all(tasks: Vec<Task>, error: &Error) {
    for task in tasks {
        task.fail(error.clone());
    }
}

/// A batch on its lease: shared by its pullers.
struct Running<B: ExecutorBackend> {
    inner: Arc<GrinderInner<B>>,
    number: u64,
    queue: Mutex<VecDeque<Task>>,
    lease: Mutex<Option<ExecutorLease<B>>>,
    pullers_left: AtomicUsize,
}

impl<B: ExecutorBackend> Running<B> {
    fn next(&self) -> Option<Task> {
        self.queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop_front()
    }

    /// The last puller is done: fail what never ran, release the lease.
    fn finish(&self) {
        let lease = self
            .lease
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let leftover: Vec<Task> = self
            .queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
            .collect();
        if !leftover.is_empty() {
            let error = lease
                .as_ref()
                .and_then(|lease| {
                    lease.ended().map(|reason| Error::LeaseExpired {
                        id: *lease.id(),
                        reason,
                    })
                })
                .unwrap_or(Error::Cancelled);
            fail_all(leftover, &error);
        }
        drop(lease);
        self.inner.observe(|| Event::GrinderBatchFinished {
            number: self.number,
        });
        self.inner.batch_finished(self.number);
    }
}

/// A running batch as the grinder's queue holds it (without its backend
/// type), for `stop(Cancel)`.
pub(super) trait CancelBatch: Send + Sync {
    /// Cancels every item no puller has taken yet (their callers get
    /// [`Error::Cancelled`] before this returns) and releases the lease,
    /// which drains: items already running end on their own, and pullers
    /// take nothing more. Idempotent.
    fn cancel(&self);
}

impl<B: ExecutorBackend> CancelBatch for Running<B> {
    fn cancel(&self) {
        let unstarted: Vec<Task> = self
            .queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
            .collect();
        let lease = self
            .lease
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if lease.is_some() {
            self.inner.observe(|| Event::GrinderBatchCancelled {
                number: self.number,
                unstarted: unstarted.len(),
            });
        }
        // No lock held: failing a task tells its caller.
        fail_all(unstarted, &Error::Cancelled);
        drop(lease);
    }
}

/// Held by each puller job; the last one to drop ends the batch, whether
/// its job ran, failed, or was dropped unrun.
struct PullerGuard<B: ExecutorBackend>(Arc<Running<B>>);

impl<B: ExecutorBackend> Drop for PullerGuard<B> {
    fn drop(&mut self) {
        if self.0.pullers_left.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.finish();
        }
    }
}

fn launch<B: ExecutorBackend>(
    inner: &Arc<GrinderInner<B>>,
    number: u64,
    lease: ExecutorLease<B>,
    tasks: Vec<Task>,
) {
    // `call` items go to the pool one by one, counted against the lease (a
    // process pool sends each to a worker). Closure items (only possible on
    // in-process backends) are taken by puller jobs.
    let closures = if tasks.iter().any(Task::is_call) {
        let (calls, closures): (Vec<Task>, Vec<Task>) = tasks.into_iter().partition(Task::is_call);
        for task in calls {
            lease.execute_task(task);
        }
        closures
    } else {
        tasks
    };
    let pullers = if closures.is_empty() {
        0
    } else {
        lease.workers().min(closures.len()).max(1)
    };
    let executor = lease.executor();
    let batch = Arc::new(Running {
        inner: inner.clone(),
        number,
        queue: Mutex::new(closures.into()),
        lease: Mutex::new(Some(lease)),
        pullers_left: AtomicUsize::new(pullers),
    });
    if pullers == 0 {
        // Releasing now lets the lease drain: its pool returns once the
        // calls end.
        batch.finish();
        return;
    }
    let weak: Weak<Running<B>> = Arc::downgrade(&batch);
    if !inner.register_running(number, weak) {
        // stop(Cancel) came while the lease was being granted. The pullers
        // below are then refused by the released lease.
        batch.cancel();
    }
    for _ in 0..pullers {
        let guard = PullerGuard(batch.clone());
        let executor_in_job = executor.clone();
        let puller = move || {
            let guard = guard;
            // Stop taking items once the lease ends (revoked at hard expiry,
            // pool broken): the rest get the lease's error in `finish`.
            while executor_in_job.ended().is_none() {
                match guard.0.next() {
                    Some(task) => task.run(),
                    None => break,
                }
            }
        };
        // A rejected submission drops the puller, and with it its guard.
        // No lock is held here: a backend may run the puller inline.
        if let Ok(handle) = executor.submit_any(puller) {
            drop(handle); // detached: the guard reports the end
        }
    }
}
