//! Running one batch: lease a pool, run every item on it, release.

use std::collections::VecDeque;
use std::future::{Future, IntoFuture};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;

use super::GrinderInner;
use super::StopMode;
use super::queue::Phase;
use crate::{Error, ExecutorLease, LocalBackend, Task};

/// Tells a batch that is waiting for a lease to give up.
#[derive(Debug, Clone)]
pub(super) struct CancelToken {
    cancelled: Arc<AtomicBool>,
    thread: Thread,
}

impl CancelToken {
    pub(super) fn cancel(&self) {
        self.cancelled.store(true, Ordering::Release);
        self.thread.unpark();
    }
}

/// Wakes a parked thread.
struct ThreadWaker(Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// Runs batch `number` on a thread of its own. The dispatcher has already
/// counted it in `running_batches`.
pub(super) fn spawn<B: LocalBackend>(inner: Arc<GrinderInner<B>>, number: u64, tasks: Vec<Task>) {
    let name = format!("{}-batch-{number}", inner.owner_prefix);
    // If the thread cannot start, the closure (and the tasks in it) comes
    // back in the error only as a drop: fail them through a shared slot.
    let slot = Arc::new(Mutex::new(Some(tasks)));
    let thread_slot = slot.clone();
    let thread_inner = inner.clone();
    let spawned = std::thread::Builder::new().name(name).spawn(move || {
        let tasks = thread_slot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .unwrap_or_default();
        run(&thread_inner, number, tasks);
        finished(&thread_inner);
    });
    if let Err(e) = spawned {
        let tasks = slot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .unwrap_or_default();
        let error = Error::Broken(format!("cannot spawn a grinder batch thread: {e}"));
        for task in tasks {
            task.fail(error.clone());
        }
        finished(&inner);
    }
}

fn finished<B: LocalBackend>(inner: &GrinderInner<B>) {
    inner.queue().running_batches -= 1;
    inner.kick();
}

fn run<B: LocalBackend>(inner: &GrinderInner<B>, number: u64, tasks: Vec<Task>) {
    let live: Vec<Task> = tasks
        .into_iter()
        .filter(|task| !task.is_cancelled())
        .collect();
    if live.is_empty() {
        return;
    }
    let owner = format!("{}-batch-{number}", inner.owner_prefix);
    let size = live.len();
    log::debug!(target: "leasepool", "grinder batch {number}: {size} items, leasing as {owner}");
    let lease = match acquire(inner, &owner) {
        Ok(lease) => lease,
        Err(error) => {
            log::info!(target: "leasepool", "grinder batch {number} got no lease: {error}");
            for task in live {
                task.fail(error.clone());
            }
            return;
        }
    };
    run_on(&lease, live);
    log::debug!(target: "leasepool", "grinder batch {number} finished");
}

/// Acquires the batch's lease, giving up if `stop(Cancel)` says so.
fn acquire<B: LocalBackend>(
    inner: &GrinderInner<B>,
    owner: &str,
) -> Result<ExecutorLease<B>, Error> {
    let token = CancelToken {
        cancelled: Arc::new(AtomicBool::new(false)),
        thread: std::thread::current(),
    };
    {
        let mut queue = inner.queue();
        if queue.phase == Phase::Stopping(StopMode::Cancel) {
            return Err(Error::Cancelled);
        }
        queue.waiting.push(token.clone());
    }
    let request = inner
        .manager
        .acquire()
        .owner(owner)
        .lease(inner.lease)
        .into_future();
    let mut request = pin!(request);
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let result = loop {
        if token.cancelled.load(Ordering::Acquire) {
            break Err(Error::Cancelled); // dropping the request leaves the queue
        }
        if let Poll::Ready(result) = request.as_mut().poll(&mut cx) {
            break result;
        }
        std::thread::park();
    };
    inner
        .queue()
        .waiting
        .retain(|waiting| !Arc::ptr_eq(&waiting.cancelled, &token.cancelled));
    result
}

/// Runs `tasks` on the leased pool: one puller job per worker, each taking
/// the oldest remaining task until none is left, so a batch costs one
/// submission per worker rather than one per item. Each task delivers its
/// own result (a panic is caught per task); tasks that never ran get the
/// error that stopped them.
fn run_on<B: LocalBackend>(lease: &ExecutorLease<B>, tasks: Vec<Task>) {
    let workers = lease.workers().min(tasks.len()).max(1);
    let queue: Arc<Mutex<VecDeque<Task>>> = Arc::new(Mutex::new(tasks.into()));
    let mut handles = Vec::with_capacity(workers);
    let mut stopped_by: Option<Error> = None;
    for _ in 0..workers {
        let queue = queue.clone();
        let executor = lease.executor();
        let puller = move || {
            // Stop taking work once the lease ends (revoked at hard expiry,
            // pool broken): what is left gets the lease's error below.
            while executor.ended().is_none() {
                let next = queue
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .pop_front();
                match next {
                    Some(task) => task.run(),
                    None => break,
                }
            }
        };
        match lease.submit(puller) {
            Ok(handle) => handles.push(handle),
            Err(error) => {
                stopped_by = Some(error);
                break;
            }
        }
    }
    for handle in handles {
        if let Err(error) = handle.wait() {
            stopped_by.get_or_insert(error);
        }
    }
    let leftover: Vec<Task> = queue
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .drain(..)
        .collect();
    let error = stopped_by
        .or_else(|| {
            lease.ended().map(|reason| Error::LeaseExpired {
                id: *lease.id(),
                reason,
            })
        })
        .unwrap_or(Error::Cancelled);
    for task in leftover {
        task.fail(error.clone());
    }
}
