//! docs/guide.md, "Acquiring a lease" (release with jobs pending): draining, rejection of new work,
//! hand-off only after the jobs end, no overlap of two leases on one pool.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use leasepool::{Error, LeaseEnd};

use crate::common::*;

/// A job that tells `started` when it begins and then waits for `go`.
fn gated(started: mpsc::Sender<()>, go: mpsc::Receiver<()>) -> impl FnOnce() -> u32 + Send {
    move || {
        started.send(()).unwrap();
        go.recv().unwrap();
        1
    }
}

#[test]
fn release_with_running_jobs_enters_draining() {
    let m = builder("dr01").max_pools(1).build().unwrap();
    m.start_blocking().unwrap();
    let lease = m.acquire().owner("drainer").blocking().unwrap();
    let id = *lease.id();
    let exec = lease.executor();
    let (started_tx, started_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel();
    let running = lease.submit(gated(started_tx, go_rx)).unwrap();
    let queued = lease.submit(|| 2).unwrap();
    started_rx.recv_timeout(PATIENCE).unwrap();
    drop(lease);

    let s = m.stats();
    assert_eq!((s.available, s.leased, s.total), (0, 1, 1));
    let entry = &s.leases[0];
    assert_eq!(entry.id, id);
    assert_eq!(entry.owner.as_deref(), Some("drainer"));
    assert!(entry.draining);
    assert_eq!(entry.pending_jobs, 2);

    // New work is rejected; the pool is not free.
    assert!(matches!(
        exec.submit(|| 3),
        Err(Error::LeaseExpired {
            reason: LeaseEnd::Released,
            ..
        })
    ));
    assert_eq!(
        m.acquire().wait(false).blocking().unwrap_err(),
        Error::Unavailable {
            max_pools: 1,
            owner_limit: None,
        }
    );

    go_tx.send(()).unwrap();
    assert_eq!(running.wait(), Ok(1));
    assert_eq!(queued.wait(), Ok(2));
    eventually("pool back after draining", || m.available_count() == 1);
    assert_eq!(m.leased_count(), 0);
    assert!(m.stats().leases.is_empty());
    m.stop_blocking();
}

#[test]
fn pending_jobs_count_down_while_draining() {
    let m = builder("dr02").max_pools(1).build().unwrap();
    m.start_blocking().unwrap();
    let lease = m.acquire().blocking().unwrap();
    let mut gates = Vec::new();
    let mut handles = Vec::new();
    for _ in 0..3 {
        let (go_tx, go_rx) = mpsc::channel::<()>();
        gates.push(go_tx);
        handles.push(lease.submit(move || go_rx.recv().unwrap()).unwrap());
    }
    drop(lease);
    let pending = || m.stats().leases.first().map(|l| l.pending_jobs);
    assert_eq!(pending(), Some(3));
    for (n, (gate, handle)) in gates.into_iter().zip(handles).enumerate() {
        gate.send(()).unwrap();
        handle.wait().unwrap();
        let left = 2 - n;
        if left > 0 {
            assert_eq!(pending(), Some(left), "counted down before the result");
            assert_eq!(m.available_count(), 0);
        }
    }
    assert_eq!(pending(), None, "finalised after the last job");
    assert_eq!(m.available_count(), 1);
    m.stop_blocking();
}

#[test]
fn release_without_pending_jobs_returns_the_pool_at_once() {
    block_on(async {
        let m = builder("dr03").max_pools(1).build().unwrap();
        m.start().await.unwrap();
        let lease = m.acquire().await.unwrap();
        assert_eq!(lease.run(|| 1).await.unwrap(), 1);
        let handle = lease.submit(|| 2).unwrap();
        assert_eq!(handle.await.unwrap(), 2);
        lease.release().await;
        assert_eq!(m.available_count(), 1, "no draining without pending jobs");
        assert!(m.stats().leases.is_empty());
        m.stop().await;
    });
}

#[test]
fn cancelling_the_queued_jobs_of_a_draining_lease_lets_it_finish() {
    let m = builder("dr04").max_pools(1).build().unwrap();
    m.start_blocking().unwrap();
    let lease = m.acquire().blocking().unwrap();
    let (started_tx, started_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel();
    let running = lease.submit(gated(started_tx, go_rx)).unwrap();
    let queued = lease.submit(|| 5).unwrap();
    started_rx.recv_timeout(PATIENCE).unwrap();
    drop(lease);
    assert_eq!(m.stats().leases[0].pending_jobs, 2);
    assert!(queued.cancel());
    assert_eq!(m.stats().leases[0].pending_jobs, 1);
    go_tx.send(()).unwrap();
    assert_eq!(running.wait(), Ok(1));
    assert_eq!(queued.wait(), Err(Error::Cancelled));
    eventually("pool back", || m.available_count() == 1);
    m.stop_blocking();
}

#[test]
fn a_draining_pool_goes_to_a_waiter_only_after_its_jobs_finish() {
    let m = builder("dr05").max_pools(1).build().unwrap();
    m.start_blocking().unwrap();
    let lease = m.acquire().blocking().unwrap();
    let (started_tx, started_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let job_end = Arc::new(Mutex::new(None::<Instant>));
    let je = job_end.clone();
    let job = lease
        .submit(move || {
            started_tx.send(()).unwrap();
            go_rx.recv().unwrap();
            *je.lock().unwrap() = Some(Instant::now());
        })
        .unwrap();
    started_rx.recv_timeout(PATIENCE).unwrap();
    drop(lease);

    let m2 = m.clone();
    let (got_tx, got_rx) = mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let next = m2.acquire().blocking().unwrap();
        got_tx.send(Instant::now()).unwrap();
        drop(next);
    });
    eventually("waiter queued", || m.stats().waiting == 1);
    assert!(
        got_rx.try_recv().is_err(),
        "the waiter got the pool while it was draining"
    );
    assert!(m.stats().leases[0].draining);
    go_tx.send(()).unwrap();
    job.wait().unwrap();
    let got = got_rx.recv_timeout(PATIENCE).expect("waiter served");
    let ended = job_end.lock().unwrap().expect("job ran");
    assert!(got >= ended, "the waiter was served before the job ended");
    waiter.join().unwrap();
    m.stop_blocking();
}

#[test]
fn work_of_two_leases_never_overlaps_on_one_pool() {
    // One pool of three workers, four leases taking turns, each releasing
    // while its jobs still run. A job that starts while another lease's job
    // is in flight is an overlap.
    let m = builder("dr06")
        .max_pools(1)
        .workers_per_pool(3)
        .build()
        .unwrap();
    m.start_blocking().unwrap();
    // (lease index of the jobs in flight, how many)
    let active = Arc::new(Mutex::new((usize::MAX, 0usize)));
    let overlap = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    for lease_no in 0..4usize {
        let m = m.clone();
        let active = active.clone();
        let overlap = overlap.clone();
        threads.push(std::thread::spawn(move || {
            let mut handles = Vec::new();
            for round in 0..2 {
                let lease = m.acquire().timeout(PATIENCE).blocking().unwrap();
                for _ in 0..4 {
                    let active = active.clone();
                    let overlap = overlap.clone();
                    let handle = lease
                        .submit(move || {
                            {
                                let mut a = active.lock().unwrap();
                                if a.1 > 0 && a.0 != lease_no * 10 + round {
                                    overlap.store(true, Ordering::SeqCst);
                                }
                                a.0 = lease_no * 10 + round;
                                a.1 += 1;
                            }
                            std::thread::sleep(Duration::from_millis(15));
                            active.lock().unwrap().1 -= 1;
                        })
                        .unwrap();
                    handles.push(handle);
                }
                // Release with all four jobs still queued or running.
                drop(lease);
            }
            for handle in handles {
                handle.wait().unwrap();
            }
        }));
    }
    for t in threads {
        t.join().unwrap();
    }
    assert!(
        !overlap.load(Ordering::SeqCst),
        "jobs of two leases ran on the pool at the same time"
    );
    assert_eq!(active.lock().unwrap().1, 0);
    eventually("pool back", || m.available_count() == 1);
    m.stop_blocking();
}

#[test]
fn a_draining_lease_that_reaches_hard_expiry_is_revoked() {
    let m = builder("dr07")
        .max_pools(1)
        .lease_grace(Duration::ZERO)
        .check_interval(Duration::from_secs(3600))
        .build()
        .unwrap();
    m.start_blocking().unwrap();
    let lease = m
        .acquire()
        .lease(Duration::from_millis(150))
        .blocking()
        .unwrap();
    let id = *lease.id();
    let (started_tx, started_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel();
    let running = lease.submit(gated(started_tx, go_rx)).unwrap();
    started_rx.recv_timeout(PATIENCE).unwrap();
    drop(lease);
    assert!(m.stats().leases[0].draining);
    eventually("draining lease revoked at hard expiry", || {
        m.stats().leases.iter().all(|l| l.id != id)
    });
    // Revoked, the pool is not recycled: a replacement serves the next
    // lease while the old job is still running.
    let next = m.acquire().timeout(PATIENCE).blocking().unwrap();
    let name = next
        .submit(|| std::thread::current().name().unwrap().to_owned())
        .unwrap()
        .wait()
        .unwrap();
    assert_ne!(name, "dr07-1_0");
    go_tx.send(()).unwrap();
    assert_eq!(running.wait(), Ok(1), "the running job still finishes");
    drop(next);
    m.stop_blocking();
}

#[test]
fn dropping_the_lease_from_inside_its_own_job_does_not_deadlock() {
    // The last job of a draining lease finalises it on the worker thread;
    // above the desired count, that shuts the pool down from its own
    // worker.
    let m = builder("dr08").max_pools(2).build().unwrap();
    m.start_blocking().unwrap();
    let keep = m.acquire().blocking().unwrap();
    let lease = m.acquire().blocking().unwrap();
    assert_eq!(m.total_count(), 2);
    let exec = lease.executor();
    let (tx, rx) = mpsc::channel();
    let handle = exec
        .submit(move || {
            drop(lease);
            tx.send(()).unwrap();
            "after drop"
        })
        .unwrap();
    rx.recv_timeout(PATIENCE)
        .expect("the job went on after dropping");
    assert_eq!(handle.wait(), Ok("after drop"));
    eventually("finalised", || m.leased_count() == 1);
    eventually("shut down: above the desired count", || {
        m.total_count() == 1
    });
    assert_eq!(keep.submit(|| 4).unwrap().wait(), Ok(4));
    drop(keep);
    m.stop_blocking();
}
