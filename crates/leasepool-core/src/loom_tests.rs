//! loom models of the hand-written wake-up paths: every interleaving of a
//! job's result cell and of an acquirer's wake slot, with threads and with
//! wakers, ends with the waiter woken and the outcome counted once.
//!
//! `RUSTFLAGS="--cfg leasepool_loom" cargo test -p leasepool-core --lib --release loom`

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};

use loom::sync::atomic::AtomicBool;

use crate::Error;
use crate::job::{JobEnd, JobHandle, JobShared, JobSink, LeaseLink};
use crate::wait::WakeSlot;

/// Counts `job_finished` calls.
#[derive(Default)]
struct Counter {
    finished: AtomicUsize,
    cancelled: AtomicUsize,
}

impl JobSink for Counter {
    fn job_finished(&self, _lease_key: u64, end: JobEnd) {
        self.finished.fetch_add(1, Ordering::SeqCst);
        if end == JobEnd::Cancelled {
            self.cancelled.fetch_add(1, Ordering::SeqCst);
        }
    }
}

fn counted_job() -> (Arc<Counter>, Arc<JobShared<u32>>) {
    let counter = Arc::new(Counter::default());
    let sink: Weak<dyn JobSink> = Arc::downgrade(&(counter.clone() as Arc<dyn JobSink>));
    let shared = JobShared::new(Some(LeaseLink {
        sink,
        key: 1,
        manager: 0,
        cancelled_only: false,
    }));
    (counter, shared)
}

#[test]
fn loom_a_parked_waiter_gets_the_result() {
    loom::model(|| {
        let (counter, shared) = counted_job();
        let handle = JobHandle::new(shared.clone());
        let worker = loom::thread::spawn(move || {
            assert!(shared.start());
            shared.finish(Ok(7));
        });
        assert_eq!(handle.wait(), Ok(7));
        worker.join().unwrap();
        assert_eq!(counter.finished.load(Ordering::SeqCst), 1);
    });
}

#[test]
fn loom_an_awaiting_task_gets_the_result() {
    loom::model(|| {
        let (counter, shared) = counted_job();
        let handle = JobHandle::new(shared.clone());
        let worker = loom::thread::spawn(move || {
            assert!(shared.start());
            shared.finish(Ok(7));
        });
        assert_eq!(loom::future::block_on(handle), Ok(7));
        worker.join().unwrap();
        assert_eq!(counter.finished.load(Ordering::SeqCst), 1);
    });
}

#[test]
fn loom_cancel_and_start_have_one_winner() {
    loom::model(|| {
        let (counter, shared) = counted_job();
        let handle = JobHandle::new(shared.clone());
        let worker = loom::thread::spawn(move || {
            if shared.start() {
                shared.finish(Ok(7));
                true
            } else {
                false
            }
        });
        let cancelled = handle.cancel();
        let ran = worker.join().unwrap();
        assert!(cancelled != ran, "exactly one of cancel and start wins");
        let expected = if cancelled {
            Err(Error::Cancelled)
        } else {
            Ok(7)
        };
        assert_eq!(handle.wait(), expected);
        assert_eq!(counter.finished.load(Ordering::SeqCst), 1);
        assert_eq!(
            counter.cancelled.load(Ordering::SeqCst),
            usize::from(cancelled)
        );
    });
}

#[test]
fn loom_a_dropped_unstarted_job_is_cancelled_once() {
    loom::model(|| {
        let (counter, shared) = counted_job();
        let handle = JobHandle::new(shared.clone());
        // The pool drops the job (shutdown) while the caller cancels it.
        let pool = loom::thread::spawn(move || shared.end_unstarted(Error::Cancelled));
        let by_caller = handle.cancel();
        let by_pool = pool.join().unwrap();
        assert!(by_caller != by_pool, "one of them ends the job");
        assert_eq!(handle.wait(), Err(Error::Cancelled));
        assert_eq!(counter.finished.load(Ordering::SeqCst), 1);
    });
}

/// The acquire loop as a future (blocking acquires are `block_on` of it):
/// look for the outcome, register the waker, stay pending unless a
/// notification came in between.
#[test]
fn loom_a_wake_slot_never_loses_a_notification() {
    struct Acquire {
        slot: Arc<WakeSlot>,
        outcome: Arc<AtomicBool>,
    }
    impl Future for Acquire {
        type Output = ();
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            loop {
                if self.outcome.load(Ordering::SeqCst) {
                    return Poll::Ready(());
                }
                if !self.slot.register_waker(cx.waker()) {
                    return Poll::Pending;
                }
            }
        }
    }
    loom::model(|| {
        let slot = Arc::new(WakeSlot::default());
        let outcome = Arc::new(AtomicBool::new(false));
        let notifier = {
            let (slot, outcome) = (slot.clone(), outcome.clone());
            loom::thread::spawn(move || {
                outcome.store(true, Ordering::SeqCst);
                slot.notify();
            })
        };
        loom::future::block_on(Acquire { slot, outcome });
        notifier.join().unwrap();
    });
}
