//! WorkGrinder: batching small submissions into leased pools.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use leasepool::{Error, LeasedExecutorManager, StopMode, WorkGrinder};

use crate::common::*;

fn started_manager(prefix: &str, max_pools: usize, workers: usize) -> LeasedExecutorManager {
    let m = builder(prefix)
        .max_pools(max_pools)
        .workers_per_pool(workers)
        .build()
        .unwrap();
    m.start_blocking().unwrap();
    m
}

fn grinder(m: &LeasedExecutorManager, threshold: usize, max_wait: Duration) -> WorkGrinder {
    let g = WorkGrinder::builder(m.clone())
        .batch_size_threshold(threshold)
        .max_wait(max_wait)
        .owner_prefix("g")
        .build()
        .unwrap();
    g.start_blocking().unwrap();
    g
}

#[test]
fn a_batch_starts_when_the_threshold_is_reached() {
    let m = started_manager("gr-thr", 1, 2);
    // max_wait is an hour: only the threshold can start the batch.
    let g = grinder(&m, 3, Duration::from_secs(3600));
    let a = g.enqueue(|| 1).unwrap();
    let b = g.enqueue(|| 2).unwrap();
    assert_eq!(g.stats().pending, 2);
    let c = g.enqueue(|| 3).unwrap();
    assert_eq!((a.wait(), b.wait(), c.wait()), (Ok(1), Ok(2), Ok(3)));
    assert_eq!(g.stats().pending, 0);
    g.stop_blocking(StopMode::Drain);
    m.stop_blocking();
}

#[test]
fn a_batch_starts_when_the_oldest_item_waited_max_wait() {
    let m = started_manager("gr-wait", 1, 1);
    let g = grinder(&m, 1000, Duration::from_millis(100));
    let queued_at = Instant::now();
    let one = g.enqueue(|| "alone").unwrap();
    let stats = g.stats();
    assert_eq!(stats.pending, 1);
    assert!(stats.oldest_wait.is_some());
    assert_eq!(one.wait(), Ok("alone"));
    assert!(queued_at.elapsed() >= Duration::from_millis(100));
    g.stop_blocking(StopMode::Drain);
    m.stop_blocking();
}

#[test]
fn one_lease_per_batch_owned_by_the_prefix() {
    let m = started_manager("gr-own", 1, 1);
    let g = grinder(&m, 2, Duration::from_secs(3600));
    let (go, gate) = mpsc::channel::<()>();
    let blocked = g.enqueue(move || gate.recv().unwrap()).unwrap();
    let other = g.enqueue(|| 5).unwrap();
    eventually("the batch lease", || m.leased_count() == 1);
    let owner = m.stats().leases[0].owner.clone().unwrap();
    assert!(owner.starts_with("g-batch-"), "{owner}");
    go.send(()).unwrap();
    assert_eq!(blocked.wait(), Ok(()));
    assert_eq!(other.wait(), Ok(5));
    eventually("the lease to be released", || m.leased_count() == 0);
    g.stop_blocking(StopMode::Drain);
    m.stop_blocking();
}

#[test]
fn each_item_gets_its_own_outcome_and_a_panic_affects_no_other() {
    let m = started_manager("gr-own-res", 2, 2);
    let g = grinder(&m, 8, Duration::from_millis(20));
    let handles: Vec<_> = (0..8u32)
        .map(|i| {
            g.enqueue(move || {
                if i == 3 {
                    panic!("item {i} failed");
                }
                i * 10
            })
            .unwrap()
        })
        .collect();
    for (i, handle) in handles.into_iter().enumerate() {
        let i = i as u32;
        if i == 3 {
            assert_eq!(
                handle.wait(),
                Err(Error::Panicked("item 3 failed".to_owned()))
            );
        } else {
            assert_eq!(handle.wait(), Ok(i * 10));
        }
    }
    g.stop_blocking(StopMode::Drain);
    m.stop_blocking();
}

#[test]
fn cancelling_a_pending_item_removes_it_at_once() {
    let m = started_manager("gr-cancel", 1, 1);
    let g = grinder(&m, 100, Duration::from_secs(3600));
    let ran = Arc::new(AtomicUsize::new(0));
    let r = ran.clone();
    let handle = g.enqueue(move || r.fetch_add(1, Ordering::SeqCst)).unwrap();
    let keep = g.enqueue(|| "kept").unwrap();
    assert_eq!(g.stats().pending, 2);
    assert!(handle.cancel());
    assert_eq!(
        g.stats().pending,
        1,
        "a cancelled item leaves the queue at once"
    );
    // Dropping a polled submit future cancels its item too.
    let mut submit = g.submit(|| "dropped");
    assert!(futures_lite::future::block_on(futures_lite::future::poll_once(&mut submit)).is_none());
    assert_eq!(g.stats().pending, 2);
    drop(submit);
    assert_eq!(g.stats().pending, 1);
    g.stop_blocking(StopMode::Drain);
    assert_eq!(keep.wait(), Ok("kept"));
    assert_eq!(handle.wait(), Err(Error::Cancelled));
    assert_eq!(ran.load(Ordering::SeqCst), 0);
    m.stop_blocking();
}

#[test]
fn stop_drain_runs_everything_queued() {
    let m = started_manager("gr-drain", 1, 2);
    let g = grinder(&m, 1000, Duration::from_secs(3600));
    let handles: Vec<_> = (0..50).map(|i| g.enqueue(move || i).unwrap()).collect();
    g.stop_blocking(StopMode::Drain);
    let stats = g.stats();
    assert!(!stats.started && !stats.stopping);
    assert_eq!(stats.pending, 0);
    for (i, handle) in handles.into_iter().enumerate() {
        assert_eq!(handle.wait(), Ok(i));
    }
    m.stop_blocking();
}

#[test]
fn stop_cancel_cancels_queued_items_and_a_batch_waiting_for_a_lease() {
    let m = started_manager("gr-stopc", 1, 1);
    let g = grinder(&m, 1, Duration::from_secs(3600));
    // Every pool is leased elsewhere: the batch waits for a lease.
    let elsewhere = m.acquire().blocking().unwrap();
    let waiting = g.enqueue(|| "never").unwrap();
    eventually("the batch to wait for a lease", || m.stats().waiting == 1);
    let queued = {
        // A second item stays pending while the first batch waits.
        g.enqueue(|| "never either").unwrap()
    };
    let started = Instant::now();
    g.stop_blocking(StopMode::Cancel);
    assert!(started.elapsed() < PATIENCE);
    assert_eq!(waiting.wait(), Err(Error::Cancelled));
    assert_eq!(queued.wait(), Err(Error::Cancelled));
    assert_eq!(
        m.stats().waiting,
        0,
        "the cancelled batch left the wait queue"
    );
    drop(elsewhere);
    m.stop_blocking();
}

#[test]
fn submitting_to_a_stopping_or_stopped_grinder_fails() {
    let m = started_manager("gr-closed", 1, 1);
    let g = WorkGrinder::builder(m.clone())
        .max_wait(Duration::from_millis(20))
        .build()
        .unwrap();
    assert!(matches!(g.enqueue(|| 1), Err(Error::NotStarted)));
    g.start_blocking().unwrap();
    g.start_blocking().unwrap(); // a second start does nothing
    assert!(g.stats().started);
    g.stop_blocking(StopMode::Drain);
    assert!(matches!(g.enqueue(|| 1), Err(Error::NotStarted)));
    assert!(matches!(g.submit_blocking(|| 1), Err(Error::NotStarted)));
    assert_eq!(block_on(g.submit(|| 1)), Err(Error::NotStarted));
    // A stopped grinder starts again.
    g.start_blocking().unwrap();
    assert_eq!(block_on(g.submit(|| 7)), Ok(7));
    g.stop_blocking(StopMode::Drain);
    m.stop_blocking();
}

#[test]
fn configuration_is_validated() {
    let m = started_manager("gr-cfg", 1, 1);
    let field = |r: Result<WorkGrinder, Error>| match r {
        Err(Error::InvalidConfig { field, .. }) => field,
        other => panic!("expected InvalidConfig, got {other:?}"),
    };
    assert_eq!(
        field(
            WorkGrinder::builder(m.clone())
                .batch_size_threshold(0)
                .build()
        ),
        "batch_size_threshold"
    );
    assert_eq!(
        field(
            WorkGrinder::builder(m.clone())
                .max_wait(Duration::ZERO)
                .build()
        ),
        "max_wait"
    );
    assert_eq!(
        field(
            WorkGrinder::builder(m.clone())
                .max_wait(Duration::MAX)
                .build()
        ),
        "max_wait"
    );
    assert_eq!(
        field(
            WorkGrinder::builder(m.clone())
                .lease(Duration::ZERO)
                .build()
        ),
        "lease"
    );
    assert_eq!(
        field(WorkGrinder::builder(m.clone()).lease(Duration::MAX).build()),
        "lease"
    );
    assert_eq!(
        field(WorkGrinder::builder(m.clone()).owner_prefix("").build()),
        "owner_prefix"
    );
    let stats = WorkGrinder::builder(m.clone()).build().unwrap().stats();
    assert_eq!(stats.batch_size_threshold, 20);
    assert_eq!(stats.max_wait, Duration::from_secs(10));
    assert_eq!(stats.lease, Duration::from_secs(60));
    assert!(!stats.started);
    m.stop_blocking();
}

#[test]
fn many_threads_submit_blocking_and_every_result_is_their_own() {
    let m = started_manager("gr-threads", 2, 2);
    let g = grinder(&m, 16, Duration::from_millis(5));
    let workers: Vec<_> = (0..8u64)
        .map(|t| {
            let g = g.clone();
            std::thread::spawn(move || {
                for i in 0..50u64 {
                    assert_eq!(g.submit_blocking(move || t * 1000 + i), Ok(t * 1000 + i));
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
    g.stop_blocking(StopMode::Drain);
    // The last batch's lease finishes draining as its puller job returns.
    eventually("batch leases released", || m.stats().leased == 0);
    m.stop_blocking();
}

#[test]
fn submit_works_under_tokio_and_smol() {
    for runtime in ["tokio", "smol"] {
        let prefix = format!("gr-{runtime}");
        let m = started_manager(&prefix, 2, 2);
        let g = grinder(&m, 10, Duration::from_millis(10));
        let scenario = {
            let g = g.clone();
            async move {
                let futures: Vec<_> = (0..40u32).map(|i| g.submit(move || i + 1)).collect();
                let mut total = 0;
                for future in futures {
                    total += future.await.unwrap();
                }
                assert_eq!(total, (1..=40).sum::<u32>());
                g.stop(StopMode::Drain).await;
            }
        };
        match runtime {
            "tokio" => tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .build()
                .unwrap()
                .block_on(scenario),
            _ => smol::block_on(scenario),
        }
        m.stop_blocking();
        eventually("threads to exit", || threads_named(&prefix).is_empty());
    }
}

#[test]
fn a_lease_revoked_mid_batch_gives_the_rest_an_error_and_the_run_items_their_results() {
    let m = builder("gr-revoke")
        .max_pools(1)
        .workers_per_pool(1)
        .lease_grace(Duration::ZERO)
        .build()
        .unwrap();
    m.start_blocking().unwrap();
    let g = WorkGrinder::builder(m.clone())
        .batch_size_threshold(3)
        .max_wait(Duration::from_secs(3600))
        .lease(Duration::from_millis(150))
        .build()
        .unwrap();
    g.start_blocking().unwrap();
    let first = g.enqueue(|| "first").unwrap();
    let slow = g
        .enqueue(|| {
            std::thread::sleep(Duration::from_millis(600));
            "slow"
        })
        .unwrap();
    let last = g.enqueue(|| "last").unwrap();
    assert_eq!(first.wait(), Ok("first"));
    assert_eq!(slow.wait(), Ok("slow"));
    // The lease was revoked while "slow" ran: "last" never ran, and says
    // why.
    assert!(matches!(
        last.wait(),
        Err(Error::LeaseExpired {
            reason: leasepool::LeaseEnd::Expired,
            ..
        })
    ),);
    g.stop_blocking(StopMode::Drain);
    m.stop_blocking();
}

fn square(x: u64) -> u64 {
    x * x
}

#[test]
fn the_call_form_goes_through_the_grinder_too() {
    let m = started_manager("gr-call", 1, 2);
    let g = grinder(&m, 4, Duration::from_millis(10));
    let handles: Vec<_> = (0..4u64)
        .map(|x| g.enqueue_call(square, x).unwrap())
        .collect();
    for (x, handle) in handles.into_iter().enumerate() {
        assert_eq!(handle.wait(), Ok((x * x) as u64));
    }
    assert_eq!(block_on(g.submit_call(square, 12)), Ok(144));
    g.stop_blocking(StopMode::Drain);
    m.stop_blocking();
}
