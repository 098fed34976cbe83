//! docs/guide.md, "Acquiring a lease" (the lease and release) and the job API: ids, terms, submit,
//! `JobHandle`, `run`, release, the executor proxy, panics.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use futures_lite::future::poll_once;
use leasepool::{Error, LeaseEnd, LeaseId, LeasedExecutor};

use crate::common::*;

/// A job that tells `started` when it begins and then waits for `go`.
fn gated(started: mpsc::Sender<()>, go: mpsc::Receiver<()>) -> impl FnOnce() -> u32 + Send {
    move || {
        started.send(()).unwrap();
        go.recv().unwrap();
        42
    }
}

fn assert_id_traits<T: Clone + Eq + std::hash::Hash + std::fmt::Display + Send + Sync>(_: &T) {}

#[test]
fn lease_ids_are_unique_and_displayable() {
    block_on(async {
        let a = builder("ls01").max_pools(2).build().unwrap();
        let b = builder("ls02").max_pools(2).build().unwrap();
        a.start().await.unwrap();
        b.start().await.unwrap();
        let mut ids: HashSet<LeaseId> = HashSet::new();
        let mut shown: HashSet<String> = HashSet::new();
        for _ in 0..10 {
            for m in [&a, &b] {
                let lease = m.acquire().await.unwrap();
                let id = *lease.id();
                assert_id_traits(&id);
                let text = id.to_string();
                assert!(!text.is_empty());
                assert!(ids.insert(id), "duplicate id {text}");
                assert!(shown.insert(text.clone()), "duplicate display {text}");
                assert_eq!(m.stats().leases[0].id, id);
                lease.release().await;
            }
        }
        assert_eq!(ids.len(), 20);
        a.stop().await;
        b.stop().await;
    });
}

#[test]
fn lease_terms_are_consistent() {
    block_on(async {
        let m = builder("ls03")
            .max_pools(1)
            .default_lease(Duration::from_secs(30))
            .lease_grace(Duration::from_secs(5))
            .build()
            .unwrap();
        m.start().await.unwrap();
        let before = Instant::now();
        let lease = m.acquire().owner("terms").await.unwrap();
        let after = Instant::now();
        assert_eq!(lease.owner(), Some("terms"));
        assert_eq!(lease.lease_duration(), Duration::from_secs(30));
        assert_eq!(lease.grace(), Duration::from_secs(5));
        assert!(before <= lease.leased_at() && lease.leased_at() <= after);
        assert_eq!(
            lease.soft_expires_at(),
            lease.leased_at() + lease.lease_duration()
        );
        assert_eq!(
            lease.hard_expires_at(),
            lease.soft_expires_at() + lease.grace()
        );
        assert_eq!(lease.ended(), None);
        drop(lease);
        m.stop().await;
    });
}

#[test]
fn jobs_run_on_the_leased_pools_named_workers() {
    block_on(async {
        let m = builder("ls04").max_pools(1).build().unwrap();
        m.start().await.unwrap();
        let lease = m.acquire().await.unwrap();
        let name = lease
            .run(|| std::thread::current().name().map(str::to_owned))
            .await
            .unwrap()
            .unwrap();
        assert!(name.starts_with("ls04-"), "{name}");
        assert!(name.contains('_'), "{name}");
        drop(lease);
        m.stop().await;
    });
}

#[test]
fn submit_returns_a_handle_that_can_be_awaited() {
    block_on(async {
        let m = builder("ls05")
            .max_pools(1)
            .workers_per_pool(2)
            .build()
            .unwrap();
        m.start().await.unwrap();
        let lease = m.acquire().await.unwrap();
        let h1 = lease.submit(|| "one".to_owned()).unwrap();
        let h2 = lease.submit(|| 2u8).unwrap();
        assert_eq!(h2.await.unwrap(), 2);
        assert_eq!(h1.await.unwrap(), "one");
        drop(lease);
        m.stop().await;
    });
}

#[test]
fn job_handle_wait_blocks_until_the_result() {
    let m = builder("ls06").max_pools(1).build().unwrap();
    m.start_blocking().unwrap();
    let lease = m.acquire().blocking().unwrap();
    let handle = lease
        .submit(|| {
            std::thread::sleep(Duration::from_millis(30));
            vec![1, 2, 3]
        })
        .unwrap();
    assert_eq!(handle.wait().unwrap(), vec![1, 2, 3]);
    drop(lease);
    m.stop_blocking();
}

#[test]
fn wait_timeout_returns_none_then_the_result() {
    let m = builder("ls07").max_pools(1).build().unwrap();
    m.start_blocking().unwrap();
    let lease = m.acquire().blocking().unwrap();
    let (started_tx, started_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel();
    let mut handle = lease.submit(gated(started_tx, go_rx)).unwrap();
    started_rx.recv_timeout(PATIENCE).unwrap();
    let t0 = Instant::now();
    assert!(handle.wait_timeout(Duration::from_millis(30)).is_none());
    assert!(t0.elapsed() >= Duration::from_millis(30), "returned early");
    assert!(!handle.is_finished());
    go_tx.send(()).unwrap();
    assert_eq!(handle.wait_timeout(PATIENCE), Some(Ok(42)));
    drop(lease);
    m.stop_blocking();
}

#[test]
fn is_finished_turns_true_when_the_job_ends() {
    let m = builder("ls08").max_pools(1).build().unwrap();
    m.start_blocking().unwrap();
    let lease = m.acquire().blocking().unwrap();
    let (started_tx, started_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel();
    let handle = lease.submit(gated(started_tx, go_rx)).unwrap();
    started_rx.recv_timeout(PATIENCE).unwrap();
    assert!(!handle.is_finished());
    go_tx.send(()).unwrap();
    eventually("job finished", || handle.is_finished());
    assert_eq!(handle.wait(), Ok(42));
    drop(lease);
    m.stop_blocking();
}

#[test]
fn cancel_succeeds_for_a_queued_job_which_then_never_runs() {
    let m = builder("ls09").max_pools(1).build().unwrap();
    m.start_blocking().unwrap();
    let lease = m.acquire().blocking().unwrap();
    let (started_tx, started_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel();
    let blocker = lease.submit(gated(started_tx, go_rx)).unwrap();
    started_rx.recv_timeout(PATIENCE).unwrap();
    let ran = Arc::new(AtomicBool::new(false));
    let ran2 = ran.clone();
    let queued = lease
        .submit(move || ran2.store(true, Ordering::SeqCst))
        .unwrap();
    assert!(queued.cancel(), "a queued job can be cancelled");
    assert!(!queued.cancel(), "cancelling twice reports false");
    assert!(queued.is_finished());
    assert_eq!(block_on(queued), Err(Error::Cancelled));
    assert_eq!(
        m.stats().leases[0].pending_jobs,
        1,
        "cancelled job not pending"
    );
    go_tx.send(()).unwrap();
    assert_eq!(blocker.wait(), Ok(42));
    // The single worker has passed the cancelled job once this one ran.
    assert_eq!(lease.submit(|| 7).unwrap().wait(), Ok(7));
    assert!(!ran.load(Ordering::SeqCst), "a cancelled job ran");
    drop(lease);
    m.stop_blocking();
}

#[test]
fn cancel_fails_for_a_running_job_which_finishes() {
    let m = builder("ls10").max_pools(1).build().unwrap();
    m.start_blocking().unwrap();
    let lease = m.acquire().blocking().unwrap();
    let (started_tx, started_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel();
    let running = lease.submit(gated(started_tx, go_rx)).unwrap();
    started_rx.recv_timeout(PATIENCE).unwrap();
    assert!(!running.cancel(), "a running job cannot be cancelled");
    go_tx.send(()).unwrap();
    assert_eq!(running.wait(), Ok(42));
    let finished = lease.submit(|| 1).unwrap();
    eventually("finished", || finished.is_finished());
    assert!(!finished.cancel(), "a finished job cannot be cancelled");
    assert_eq!(finished.wait(), Ok(1));
    drop(lease);
    m.stop_blocking();
}

#[test]
fn dropping_a_job_handle_detaches_the_job() {
    let m = builder("ls11").max_pools(1).build().unwrap();
    m.start_blocking().unwrap();
    let lease = m.acquire().blocking().unwrap();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (done_tx, done_rx) = mpsc::channel();
    let handle = lease
        .submit(move || {
            go_rx.recv().unwrap();
            done_tx.send("ran").unwrap();
        })
        .unwrap();
    drop(handle);
    go_tx.send(()).unwrap();
    assert_eq!(done_rx.recv_timeout(PATIENCE), Ok("ran"));
    eventually("job no longer pending", || {
        m.stats().leases[0].pending_jobs == 0
    });
    drop(lease);
    m.stop_blocking();
}

#[test]
fn run_returns_the_jobs_value() {
    block_on(async {
        let m = builder("ls12").max_pools(1).build().unwrap();
        m.start().await.unwrap();
        let lease = m.acquire().await.unwrap();
        let input = String::from("hello leasepool");
        assert_eq!(
            lease.run(move || input.to_uppercase()).await.unwrap(),
            "HELLO LEASEPOOL"
        );
        drop(lease);
        m.stop().await;
    });
}

#[test]
fn dropping_a_run_future_cancels_a_job_that_has_not_started() {
    let m = builder("ls13").max_pools(1).build().unwrap();
    m.start_blocking().unwrap();
    let lease = m.acquire().blocking().unwrap();
    let (started_tx, started_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel();
    let blocker = lease.submit(gated(started_tx, go_rx)).unwrap();
    started_rx.recv_timeout(PATIENCE).unwrap();
    let ran = Arc::new(AtomicBool::new(false));
    let ran2 = ran.clone();
    let mut run = Box::pin(lease.run(move || ran2.store(true, Ordering::SeqCst)));
    // Polled once, the job is surely submitted (and queued).
    assert!(block_on(poll_once(run.as_mut())).is_none());
    assert_eq!(m.stats().leases[0].pending_jobs, 2);
    drop(run);
    assert_eq!(
        m.stats().leases[0].pending_jobs,
        1,
        "dropping the run future ends the queued job"
    );
    go_tx.send(()).unwrap();
    assert_eq!(blocker.wait(), Ok(42));
    assert_eq!(lease.submit(|| ()).unwrap().wait(), Ok(()));
    assert!(!ran.load(Ordering::SeqCst), "the dropped run's job ran");
    drop(lease);
    m.stop_blocking();
}

#[test]
fn dropping_a_run_future_of_a_running_job_lets_it_finish() {
    let m = builder("ls14").max_pools(1).build().unwrap();
    m.start_blocking().unwrap();
    let lease = m.acquire().blocking().unwrap();
    let (started_tx, started_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (done_tx, done_rx) = mpsc::channel();
    let mut run = Box::pin(lease.run(move || {
        started_tx.send(()).unwrap();
        go_rx.recv().unwrap();
        done_tx.send(()).unwrap();
    }));
    assert!(block_on(poll_once(run.as_mut())).is_none());
    started_rx.recv_timeout(PATIENCE).unwrap();
    drop(run);
    go_tx.send(()).unwrap();
    assert!(
        done_rx.recv_timeout(PATIENCE).is_ok(),
        "running job finishes"
    );
    drop(lease);
    m.stop_blocking();
}

#[test]
fn release_is_idempotent() {
    block_on(async {
        let m = builder("ls15").max_pools(1).build().unwrap();
        m.start().await.unwrap();
        let lease = m.acquire().await.unwrap();
        let id = *lease.id();
        m.release(&id).await;
        assert_eq!(lease.ended(), Some(LeaseEnd::Released));
        assert_eq!((m.available_count(), m.leased_count()), (1, 0));
        m.release(&id).await;
        m.release_now(&id);
        assert_eq!((m.available_count(), m.leased_count()), (1, 0));
        // The pool went back; a new lease takes it; the old id does not
        // touch the new lease.
        let next = m.acquire().await.unwrap();
        m.release(&id).await;
        lease.release().await;
        assert_eq!(next.ended(), None);
        assert_eq!((m.available_count(), m.leased_count()), (0, 1));
        assert_eq!(next.run(|| 3).await.unwrap(), 3);
        drop(next);
        m.stop().await;
    });
}

#[test]
fn dropping_a_lease_releases_it() {
    let m = builder("ls16").max_pools(1).build().unwrap();
    m.start_blocking().unwrap();
    let lease = m.acquire().blocking().unwrap();
    let exec = lease.executor();
    assert_eq!(m.leased_count(), 1);
    drop(lease);
    assert_eq!(m.leased_count(), 0);
    assert_eq!(m.available_count(), 1);
    assert!(matches!(
        exec.submit(|| 1),
        Err(Error::LeaseExpired {
            reason: LeaseEnd::Released,
            ..
        })
    ));
    assert!(m.acquire().wait(false).blocking().is_ok());
    m.stop_blocking();
}

#[test]
fn release_through_the_manager_ends_the_lease() {
    block_on(async {
        let m = builder("ls17").max_pools(1).build().unwrap();
        m.start().await.unwrap();
        let lease = m.acquire().await.unwrap();
        m.release(lease.id()).await;
        match lease.submit(|| 1) {
            Err(Error::LeaseExpired { id, reason }) => {
                assert_eq!(id, *lease.id());
                assert_eq!(reason, LeaseEnd::Released);
            }
            other => panic!("expected LeaseExpired, got {other:?}"),
        }
        assert_eq!(m.available_count(), 1);
        drop(lease);
        m.stop().await;
    });
}

#[test]
fn releasing_an_unknown_id_is_a_no_op() {
    block_on(async {
        let a = builder("ls18").max_pools(1).build().unwrap();
        let b = builder("ls19").max_pools(1).build().unwrap();
        a.start().await.unwrap();
        b.start().await.unwrap();
        let la = a.acquire().await.unwrap();
        let lb = b.acquire().await.unwrap();
        // An id of another manager means nothing here.
        a.release(lb.id()).await;
        b.release(la.id()).await;
        assert_eq!(la.ended(), None);
        assert_eq!(lb.ended(), None);
        assert_eq!((a.leased_count(), b.leased_count()), (1, 1));
        assert_eq!(la.run(|| 1).await.unwrap(), 1);
        assert_eq!(lb.run(|| 2).await.unwrap(), 2);
        drop((la, lb));
        a.stop().await;
        b.stop().await;
    });
}

#[test]
fn executor_proxy_is_clone_send_sync_and_submits() {
    fn assert_clone_send_sync<T: Clone + Send + Sync + 'static>(_: &T) {}
    let m = builder("ls20")
        .max_pools(1)
        .workers_per_pool(2)
        .build()
        .unwrap();
    m.start_blocking().unwrap();
    let lease = m.acquire().blocking().unwrap();
    let exec: LeasedExecutor = lease.executor();
    assert_clone_send_sync(&exec);
    assert_eq!(exec.lease_id(), lease.id());
    let threads: Vec<_> = (0..4u32)
        .map(|i| {
            let exec = exec.clone();
            std::thread::spawn(move || exec.submit(move || i + 100).unwrap().wait().unwrap())
        })
        .collect();
    let mut results: Vec<u32> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    results.sort_unstable();
    assert_eq!(results, vec![100, 101, 102, 103]);
    assert_eq!(block_on(exec.run(|| 5)).unwrap(), 5);
    let id = *lease.id();
    drop(lease);
    for proxy in [&exec, &exec.clone()] {
        match proxy.submit(|| 1) {
            Err(Error::LeaseExpired { id: got, reason }) => {
                assert_eq!(got, id);
                assert_eq!(reason, LeaseEnd::Released);
            }
            other => panic!("expected LeaseExpired, got {other:?}"),
        }
    }
    assert!(matches!(
        block_on(exec.run(|| 1)),
        Err(Error::LeaseExpired {
            reason: LeaseEnd::Released,
            ..
        })
    ));
    m.stop_blocking();
}

#[test]
fn executor_proxy_does_not_keep_the_lease_alive() {
    let m = builder("ls21").max_pools(1).build().unwrap();
    m.start_blocking().unwrap();
    let lease = m.acquire().blocking().unwrap();
    let exec = lease.executor();
    drop(lease);
    assert_eq!(m.leased_count(), 0, "a live proxy kept the lease");
    let next = m.acquire().wait(false).blocking().unwrap();
    assert!(exec.submit(|| ()).is_err());
    assert_eq!(next.submit(|| 2).unwrap().wait(), Ok(2));
    drop(next);
    m.stop_blocking();
}

#[test]
fn a_panicking_job_fails_with_its_message_and_the_worker_keeps_serving() {
    block_on(async {
        let m = builder("ls22").max_pools(1).build().unwrap();
        m.start().await.unwrap();
        let lease = m.acquire().await.unwrap();
        let thread = || std::thread::current().name().unwrap().to_owned();
        let before = lease.run(thread).await.unwrap();
        let result = lease.run(|| -> u32 { panic!("kaboom {}", 7) }).await;
        assert_eq!(result, Err(Error::Panicked("kaboom 7".to_owned())));
        let static_msg = lease.run(|| -> u32 { panic!("static boom") }).await;
        assert_eq!(static_msg, Err(Error::Panicked("static boom".to_owned())));
        let after = lease.run(thread).await.unwrap();
        assert_eq!(before, after, "the same worker thread keeps serving");
        assert_eq!(lease.ended(), None, "a job panic does not end the lease");
        assert_eq!(m.total_count(), 1);
        // Through a JobHandle too.
        let handle = lease
            .submit(|| -> u8 { std::panic::panic_any(17u8) })
            .unwrap();
        assert!(matches!(handle.wait(), Err(Error::Panicked(msg)) if !msg.is_empty()));
        assert_eq!(lease.run(|| 4).await.unwrap(), 4);
        drop(lease);
        m.stop().await;
    });
}
