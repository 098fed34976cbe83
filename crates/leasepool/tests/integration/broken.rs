//! docs/guide.md, "Broken pools": broken pools (a failing or panicking worker initializer) are
//! retired and replaced; their jobs fail with `Broken` and never hang; a
//! panicking job is not a broken pool.
//!
//! The initializers here pick their victim by worker thread name
//! (`{prefix}-{pool}_{worker}`) and wait on a gate, so the pool breaks at a
//! moment the test chooses.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_lite::future::poll_once;
use leasepool::{Error, LeaseEnd, LeasedExecutorManager, ThreadBackend};

use crate::common::*;

/// How the victim's initializer ends.
#[derive(Clone, Copy)]
enum Failure {
    Err,
    Panic,
}

/// A backend whose workers named in `victims` wait for one token on the
/// returned gate, then fail. Every other worker initializes fine.
fn gated_backend(
    victims: &[&str],
    failure: Failure,
    message: &'static str,
) -> (ThreadBackend, mpsc::Sender<()>) {
    let (tx, rx) = mpsc::channel::<()>();
    let rx = Mutex::new(rx);
    let victims: Vec<String> = victims.iter().map(|v| (*v).to_owned()).collect();
    let backend = ThreadBackend::new().initializer(move || {
        let name = std::thread::current().name().unwrap_or_default().to_owned();
        if !victims.contains(&name) {
            return Ok(());
        }
        // A dropped sender (failed test) breaks the pool at once.
        let _ = rx.lock().unwrap().recv();
        match failure {
            Failure::Err => Err(message),
            Failure::Panic => panic!("{message}"),
        }
    });
    (backend, tx)
}

fn manager(backend: ThreadBackend, prefix: &str, max: usize, min: usize) -> LeasedExecutorManager {
    LeasedExecutorManager::builder(backend)
        .max_pools(max)
        .min_pools(min)
        .workers_per_pool(1)
        .name_prefix(prefix)
        .build()
        .unwrap()
}

fn worker_name() -> String {
    std::thread::current().name().unwrap().to_owned()
}

fn breaks_the_leased_pool(prefix: &str, failure: Failure, message: &'static str) {
    let victim = format!("{prefix}-1_0");
    let (backend, gate) = gated_backend(&[&victim], failure, message);
    let m = manager(backend, prefix, 1, 1);
    m.start_blocking().unwrap();
    let lease = m.acquire().blocking().unwrap();
    let exec = lease.executor();
    // Queued behind the initializer.
    let jobs: Vec<_> = (0..3).map(|i| lease.submit(move || i).unwrap()).collect();
    gate.send(()).unwrap();
    for job in jobs {
        match job.wait() {
            Err(Error::Broken(reason)) => assert!(reason.contains(message), "{reason}"),
            other => panic!("expected Broken, got {other:?}"),
        }
    }
    eventually("lease retired", || lease.ended() == Some(LeaseEnd::Broken));
    assert!(matches!(
        lease.submit(|| 0),
        Err(Error::LeaseExpired {
            reason: LeaseEnd::Broken,
            ..
        })
    ));
    assert!(matches!(
        exec.submit(|| 0),
        Err(Error::LeaseExpired {
            reason: LeaseEnd::Broken,
            ..
        })
    ));
    assert_eq!(m.leased_count(), 0, "a retired lease holds no pool");
    eventually("broken pool's worker exits", || {
        !threads_named(prefix).contains(&victim)
    });
    eventually("replacement pool", || m.available_count() == 1);
    let next = m.acquire().wait(false).blocking().unwrap();
    let name = next.submit(worker_name).unwrap().wait().unwrap();
    assert_ne!(name, victim, "the broken pool was handed out again");
    drop(next);
    // Releasing the retired lease changes nothing.
    drop(lease);
    assert_eq!((m.available_count(), m.total_count()), (1, 1));
    m.stop_blocking();
    eventually("threads gone", || threads_named(prefix).is_empty());
}

#[test]
fn an_initializer_error_breaks_the_leased_pool_and_it_is_replaced() {
    breaks_the_leased_pool("bk01", Failure::Err, "bk01: no database");
}

#[test]
fn a_panicking_initializer_breaks_the_leased_pool_and_it_is_replaced() {
    breaks_the_leased_pool("bk02", Failure::Panic, "bk02: init exploded");
}

#[test]
fn a_job_awaited_on_a_breaking_pool_fails_instead_of_hanging() {
    block_on(async {
        let (backend, gate) = gated_backend(&["bk03-1_0"], Failure::Err, "bk03 boom");
        let m = manager(backend, "bk03", 1, 1);
        m.start().await.unwrap();
        let lease = m.acquire().await.unwrap();
        let mut run = Box::pin(lease.run(|| 1));
        // Submitted (queued behind the initializer) before the pool breaks.
        assert!(poll_once(run.as_mut()).await.is_none());
        gate.send(()).unwrap();
        assert!(matches!(run.await, Err(Error::Broken(_))));
        drop(lease);
        m.stop().await;
    });
}

#[test]
fn one_failed_worker_breaks_the_whole_pool() {
    let (backend, gate) = gated_backend(&["bk04-1_1"], Failure::Err, "bk04 worker 1 failed");
    let m = LeasedExecutorManager::builder(backend)
        .max_pools(1)
        .workers_per_pool(2)
        .name_prefix("bk04")
        .build()
        .unwrap();
    m.start_blocking().unwrap();
    let lease = m.acquire().blocking().unwrap();
    // Worker 0 is healthy and serves this job.
    assert_eq!(lease.submit(|| 1).unwrap().wait(), Ok(1));
    gate.send(()).unwrap();
    eventually("lease retired", || lease.ended() == Some(LeaseEnd::Broken));
    assert!(lease.submit(|| 2).is_err());
    eventually("replacement pool", || m.available_count() == 1);
    let next = m.acquire().blocking().unwrap();
    let name = next.submit(worker_name).unwrap().wait().unwrap();
    assert!(!name.starts_with("bk04-1_"), "{name}");
    drop((lease, next));
    m.stop_blocking();
}

#[test]
fn a_pool_broken_while_idle_is_retired_and_never_handed_out() {
    let (backend, gate) = gated_backend(&["bk05-2_0"], Failure::Err, "bk05 idle failure");
    let m = manager(backend, "bk05", 2, 2);
    m.start_blocking().unwrap();
    assert_eq!(m.available_count(), 2);
    gate.send(()).unwrap();
    eventually("replacement pool started", || {
        threads_named("bk05").iter().any(|n| n == "bk05-3_0")
    });
    eventually("broken idle pool exits", || {
        !threads_named("bk05").iter().any(|n| n == "bk05-2_0")
    });
    eventually("back to two idle pools", || m.available_count() == 2);
    let a = m.acquire().blocking().unwrap();
    let b = m.acquire().blocking().unwrap();
    let mut names = vec![
        a.submit(worker_name).unwrap().wait().unwrap(),
        b.submit(worker_name).unwrap().wait().unwrap(),
    ];
    names.sort();
    assert_eq!(names, vec!["bk05-1_0", "bk05-3_0"]);
    drop((a, b));
    m.stop_blocking();
}

#[test]
fn a_broken_pool_is_never_handed_out_again() {
    let (backend, gate) = gated_backend(&["bk06-1_0"], Failure::Err, "bk06");
    let m = manager(backend, "bk06", 1, 1);
    m.start_blocking().unwrap();
    let lease = m.acquire().blocking().unwrap();
    gate.send(()).unwrap();
    eventually("lease retired", || lease.ended() == Some(LeaseEnd::Broken));
    drop(lease);
    for _ in 0..5 {
        let lease = m.acquire().timeout(PATIENCE).blocking().unwrap();
        let name = lease.submit(worker_name).unwrap().wait().unwrap();
        assert_eq!(name, "bk06-2_0", "only the replacement serves");
        drop(lease);
    }
    m.stop_blocking();
}

#[test]
fn a_waiter_is_served_by_the_replacement_of_a_broken_pool() {
    let (backend, gate) = gated_backend(&["bk07-1_0"], Failure::Err, "bk07");
    let m = manager(backend, "bk07", 1, 1);
    m.start_blocking().unwrap();
    let lease = m.acquire().blocking().unwrap();
    let m2 = m.clone();
    let waiter = std::thread::spawn(move || {
        let next = m2.acquire().timeout(PATIENCE).blocking()?;
        next.submit(worker_name)?.wait()
    });
    eventually("waiter queued", || m.stats().waiting == 1);
    gate.send(()).unwrap();
    // The lease is retired without being released: the waiter still gets
    // a pool.
    assert_eq!(waiter.join().unwrap(), Ok("bk07-2_0".to_owned()));
    assert_eq!(lease.ended(), Some(LeaseEnd::Broken));
    drop(lease);
    m.stop_blocking();
}

#[test]
fn an_initializer_failing_right_away_is_recovered_from() {
    // The first worker ever started fails its initializer at once, while
    // the manager is still creating pools (several workers per pool make
    // that window wide). Whenever the break is noticed, the broken pool
    // must be retired, never keep being handed out, and be replaced.
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let backend = ThreadBackend::new().initializer(move || {
        if c.fetch_add(1, Ordering::SeqCst) == 0 {
            Err("bk08 first worker failed")
        } else {
            Ok(())
        }
    });
    let m = LeasedExecutorManager::builder(backend)
        .max_pools(1)
        .workers_per_pool(8)
        .name_prefix("bk08")
        .build()
        .unwrap();
    m.start_blocking().unwrap();
    let mut broken_results = 0;
    let mut ok = false;
    for _ in 0..50 {
        // Once the break is reported, pool 1 must never serve again. Before
        // that, a healthy worker of pool 1 may have run a job in the moment
        // between the failing initializer and its report.
        let reported = m.stats().counters.pools_broken > 0;
        let lease = m.acquire().timeout(PATIENCE).blocking().unwrap();
        match lease.submit(worker_name) {
            Ok(handle) => match handle.wait() {
                Ok(name) if name.starts_with("bk08-1_") => {
                    assert!(
                        !reported,
                        "broken pool served {name} after its break was reported"
                    );
                    eventually("the break of pool 1 reported", || {
                        m.stats().counters.pools_broken > 0
                    });
                }
                Ok(_) => ok = true,
                Err(Error::Broken(_)) => {
                    broken_results += 1;
                    // A job that failed Broken means its lease is retired.
                    eventually("lease of a broken pool retired", || {
                        lease.ended() == Some(LeaseEnd::Broken)
                    });
                }
                Err(other) => panic!("unexpected {other:?}"),
            },
            Err(Error::LeaseExpired {
                reason: LeaseEnd::Broken,
                ..
            }) => broken_results += 1,
            Err(other) => panic!("unexpected {other:?}"),
        }
        drop(lease);
        if ok {
            break;
        }
    }
    assert!(ok, "no healthy pool after {broken_results} broken results");
    assert!(
        broken_results <= 1,
        "the broken pool served {broken_results} leases"
    );
    m.stop_blocking();
}

#[test]
fn a_panicking_job_is_not_a_broken_pool() {
    let m = builder("bk09").max_pools(1).build().unwrap();
    m.start_blocking().unwrap();
    let lease = m.acquire().blocking().unwrap();
    let before = lease.submit(worker_name).unwrap().wait().unwrap();
    for i in 0..3 {
        let result = lease
            .submit(move || -> u32 { panic!("bk09 job panic {i}") })
            .unwrap()
            .wait();
        assert_eq!(result, Err(Error::Panicked(format!("bk09 job panic {i}"))));
    }
    assert_eq!(lease.ended(), None, "a job panic retired the lease");
    let after = lease.submit(worker_name).unwrap().wait().unwrap();
    assert_eq!(before, after, "the worker was replaced after a job panic");
    drop(lease);
    // The same pool goes back to the idle set and serves the next lease.
    assert_eq!(m.available_count(), 1);
    let next = m.acquire().wait(false).blocking().unwrap();
    assert_eq!(next.submit(worker_name).unwrap().wait().unwrap(), before);
    assert!(
        !threads_named("bk09")
            .iter()
            .any(|n| n.starts_with("bk09-2_")),
        "a second pool was created"
    );
    drop(next);
    m.stop_blocking();
}

#[test]
fn stop_with_a_broken_pool_pending_retirement_does_not_hang() {
    let (backend, gate) = gated_backend(&["bk10-1_0"], Failure::Err, "bk10");
    let m = LeasedExecutorManager::builder(backend)
        .max_pools(1)
        .workers_per_pool(1)
        .name_prefix("bk10")
        .check_interval(Duration::from_secs(3600))
        .build()
        .unwrap();
    m.start_blocking().unwrap();
    let lease = m.acquire().blocking().unwrap();
    let job = lease.submit(|| 1).unwrap();
    gate.send(()).unwrap();
    assert!(matches!(job.wait(), Err(Error::Broken(_))));
    m.stop_blocking();
    eventually("threads gone", || threads_named("bk10").is_empty());
    drop(lease);
}

#[test]
fn a_pool_that_breaks_while_start_is_still_creating_pools_is_retired() {
    // Pool 1's first worker fails at once, while start() is still creating
    // pools 2..=8. The break must not be lost: pool 1 is retired (its
    // workers exit), replaced, and never serves a lease.
    let backend = ThreadBackend::new().initializer(|| {
        if std::thread::current().name() == Some("bk11-1_0") {
            Err("bk11 pool 1 failed during start")
        } else {
            Ok(())
        }
    });
    let m = LeasedExecutorManager::builder(backend)
        .max_pools(8)
        .min_pools(8)
        .workers_per_pool(4)
        .name_prefix("bk11")
        .build()
        .unwrap();
    m.start_blocking().unwrap();
    eventually("pool 1 retired: its workers exit", || {
        !threads_named("bk11")
            .iter()
            .any(|n| n.starts_with("bk11-1_"))
    });
    eventually("replaced: eight idle pools", || m.available_count() == 8);
    let leases: Vec<_> = (0..8).map(|_| m.acquire().blocking().unwrap()).collect();
    for lease in &leases {
        let result = lease.submit(worker_name).unwrap().wait();
        assert!(
            matches!(&result, Ok(name) if !name.starts_with("bk11-1_")),
            "{result:?}"
        );
    }
    drop(leases);
    m.stop_blocking();
}
