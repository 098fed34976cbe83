//! Hundreds of tasks contending for a few pools, each picking its moves
//! from a small deterministic PRNG (xorshift, seeded per task): acquire and
//! run, short timeouts, fail-fast, acquires abandoned mid-flight, detached
//! job handles, panicking jobs, early releases and dropped leases.
//!
//! Checked: every awaited job yields its own value (or the panic it raised);
//! every snapshot taken concurrently has `available + leased == total <=
//! max_pools`; at the end nothing is leased or waiting, every pool can be
//! leased again, and stop leaves no thread.

use std::future::IntoFuture;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use leasepool::{Error, ExecutorLease, LeasedExecutorManager};

use crate::common::*;

const MAX_POOLS: usize = 4;

/// xorshift64*: tiny, deterministic, good enough to pick moves.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, one_in: u64) -> bool {
        self.below(one_in) == 0
    }
}

/// The job every task submits: a little CPU work whose result depends only
/// on `input`, so the caller can check it got its own result back.
fn work(input: u64) -> u64 {
    if input % 8 == 0 {
        // Some jobs hold their pool a little longer: more contention.
        std::thread::sleep(Duration::from_micros(300));
    }
    let mut rng = Rng::new(input);
    (0..200).fold(input, |acc, _| acc ^ rng.next())
}

#[derive(Default, Debug)]
struct Tally {
    leases: AtomicUsize,
    jobs_ok: AtomicUsize,
    panics: AtomicUsize,
    timeouts: AtomicUsize,
    unavailable: AtomicUsize,
    abandoned: AtomicUsize,
    detached: AtomicUsize,
    early_releases: AtomicUsize,
}

impl Tally {
    fn add(counter: &AtomicUsize) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn get(counter: &AtomicUsize) -> usize {
        counter.load(Ordering::Relaxed)
    }
}

/// Samples `stats()` from its own thread until told to stop; returns the
/// number of samples. Every sample must be consistent.
fn sampler(m: LeasedExecutorManager, stop: Arc<AtomicBool>) -> JoinHandle<usize> {
    std::thread::spawn(move || {
        let mut samples = 0;
        while !stop.load(Ordering::Relaxed) {
            let s = m.stats();
            assert_eq!(s.available + s.leased, s.total, "sample {samples}: {s:?}");
            assert!(s.total <= MAX_POOLS, "sample {samples}: {s:?}");
            assert_eq!(s.leases.len(), s.leased, "sample {samples}: {s:?}");
            samples += 1;
            // A cadence, not a wait: leave CPU to the tasks.
            std::thread::sleep(Duration::from_micros(200));
        }
        samples
    })
}

fn stress_manager(prefix: &str) -> LeasedExecutorManager {
    builder(prefix)
        .max_pools(MAX_POOLS)
        .workers_per_pool(2)
        .build()
        .unwrap()
}

/// The end state every stress test checks.
fn check_quiescent_then_stop(prefix: &str, m: &LeasedExecutorManager, tally: &Tally) {
    // Detached jobs may still be draining their leases for a moment.
    eventually("every lease is finalised", || m.leased_count() == 0);
    let s = m.stats();
    assert_eq!(s.leased, 0, "{s:?}");
    assert_eq!(s.waiting, 0, "{s:?}");
    assert!(s.leases.is_empty(), "{s:?}");
    assert_eq!(s.available, s.total, "{s:?}");
    assert!(s.total <= MAX_POOLS, "{s:?}");

    // No pool was stranded: all of them can be leased again at once.
    let fresh: Vec<_> = (0..MAX_POOLS)
        .map(|i| {
            m.acquire()
                .owner(format!("fresh{i}"))
                .timeout(PATIENCE)
                .blocking()
                .unwrap_or_else(|e| panic!("pool {i} is stranded: {e}; {:?}", m.stats()))
        })
        .collect();
    for (i, lease) in fresh.iter().enumerate() {
        let input = 1_000_000 + i as u64;
        assert_eq!(
            lease.submit(move || work(input)).unwrap().wait(),
            Ok(work(input))
        );
    }
    assert!(matches!(
        m.acquire().wait(false).blocking(),
        Err(Error::Unavailable {
            max_pools: MAX_POOLS,
            owner_limit: None,
        })
    ));
    drop(fresh);

    assert!(Tally::get(&tally.jobs_ok) > 0, "{tally:?}");
    assert!(Tally::get(&tally.leases) > 0, "{tally:?}");
    m.stop_blocking();
    eventually("no thread left", || threads_named(prefix).is_empty());
}

// ----- async tasks on tokio -------------------------------------------

/// Runs `n` jobs through `lease` and checks each result.
async fn run_jobs(lease: &ExecutorLease, base: u64, n: u64, tally: &Tally) {
    for j in 0..n {
        let input = base + j;
        assert_eq!(lease.run(move || work(input)).await, Ok(work(input)));
        Tally::add(&tally.jobs_ok);
    }
}

async fn async_task(m: LeasedExecutorManager, id: u64, tally: Arc<Tally>) {
    let mut rng = Rng::new(id + 1);
    for round in 0..1 + rng.below(5) {
        let base = (id << 20) | (round << 10);
        match rng.below(7) {
            // Acquire (waiting as long as it takes) and run.
            0 => {
                let lease = m.acquire().owner(format!("t{id}")).await.unwrap();
                Tally::add(&tally.leases);
                run_jobs(&lease, base, 1 + rng.below(4), &tally).await;
                if rng.chance(2) {
                    lease.release().await;
                }
            }
            // A short timeout.
            1 => {
                let timeout = Duration::from_millis(rng.below(4));
                match m.acquire().timeout(timeout).await {
                    Ok(lease) => {
                        Tally::add(&tally.leases);
                        run_jobs(&lease, base, 1, &tally).await;
                    }
                    Err(Error::Timeout(d)) => {
                        assert_eq!(d, timeout);
                        Tally::add(&tally.timeouts);
                    }
                    Err(e) => panic!("task {id}: {e}"),
                }
            }
            // Fail fast.
            2 => match m.acquire().wait(false).await {
                Ok(lease) => {
                    Tally::add(&tally.leases);
                    run_jobs(&lease, base, 1, &tally).await;
                }
                Err(Error::Unavailable { max_pools, .. }) => {
                    assert_eq!(max_pools, MAX_POOLS);
                    Tally::add(&tally.unavailable);
                }
                Err(e) => panic!("task {id}: {e}"),
            },
            // Abandon the acquire: after one poll, or after 0-2 ms.
            3 => {
                let outcome = if rng.chance(2) {
                    let mut future = m.acquire().owner(format!("t{id}")).into_future();
                    futures_lite::future::poll_once(&mut future).await
                } else {
                    let wait = Duration::from_millis(rng.below(3));
                    tokio::time::timeout(wait, m.acquire().into_future())
                        .await
                        .ok()
                };
                match outcome {
                    Some(Ok(lease)) => {
                        Tally::add(&tally.leases);
                        run_jobs(&lease, base, 1, &tally).await;
                    }
                    Some(Err(e)) => panic!("task {id}: {e}"),
                    None => Tally::add(&tally.abandoned),
                }
            }
            // Submit several jobs, detach some handles, await the rest.
            4 => {
                let lease = m.acquire().await.unwrap();
                Tally::add(&tally.leases);
                let mut kept = Vec::new();
                for j in 0..2 + rng.below(4) {
                    let input = base + j;
                    let handle = lease.submit(move || work(input)).unwrap();
                    if rng.chance(3) {
                        drop(handle);
                        Tally::add(&tally.detached);
                    } else {
                        kept.push((input, handle));
                    }
                }
                for (input, handle) in kept {
                    assert_eq!(handle.await, Ok(work(input)));
                    Tally::add(&tally.jobs_ok);
                }
            }
            // A panicking job among good ones (not too many: each panic
            // prints a message, maybe a backtrace).
            5 => {
                let lease = m.acquire().await.unwrap();
                Tally::add(&tally.leases);
                if rng.chance(4) {
                    let tag = base;
                    let outcome = lease
                        .run(move || -> u64 { panic!("stress panic {tag}") })
                        .await;
                    assert_eq!(outcome, Err(Error::Panicked(format!("stress panic {tag}"))));
                    Tally::add(&tally.panics);
                }
                run_jobs(&lease, base + 1, 1, &tally).await;
            }
            // Release (or drop) the lease with jobs still pending: they drain
            // and still deliver their own results.
            _ => {
                let lease = m.acquire().await.unwrap();
                Tally::add(&tally.leases);
                let handles: Vec<_> = (0..1 + rng.below(3))
                    .map(|j| {
                        let input = base + j;
                        (input, lease.submit(move || work(input)).unwrap())
                    })
                    .collect();
                if rng.chance(2) {
                    lease.release().await;
                } else {
                    drop(lease);
                }
                Tally::add(&tally.early_releases);
                for (input, handle) in handles {
                    assert_eq!(handle.await, Ok(work(input)));
                    Tally::add(&tally.jobs_ok);
                }
            }
        }
    }
}

#[test]
fn tokio_tasks_contend_for_four_pools() {
    const TASKS: u64 = 500;
    let prefix = "st-tok";
    let started = Instant::now();
    let m = stress_manager(prefix);
    m.start_blocking().unwrap();
    let tally = Arc::new(Tally::default());
    let stop_sampling = Arc::new(AtomicBool::new(false));
    let sampling = sampler(m.clone(), stop_sampling.clone());

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let tasks: Vec<_> = (0..TASKS)
            .map(|id| tokio::spawn(async_task(m.clone(), id, tally.clone())))
            .collect();
        let all = async {
            for task in tasks {
                task.await.expect("a stress task failed");
            }
        };
        if tokio::time::timeout(PATIENCE * 3, all).await.is_err() {
            panic!("stress tasks hung: {:?}; {tally:?}", m.stats());
        }
    });
    drop(rt);

    stop_sampling.store(true, Ordering::Relaxed);
    let samples = sampling.join().expect("an inconsistent stats sample");
    assert!(samples > 0);
    assert!(Tally::get(&tally.panics) > 0, "{tally:?}");
    check_quiescent_then_stop(prefix, &m, &tally);
    eprintln!(
        "stress (tokio): {TASKS} tasks, {samples} samples, {:?}: {tally:?}",
        started.elapsed()
    );
}

// ----- plain threads, blocking API --------------------------------------

fn thread_worker(m: LeasedExecutorManager, id: u64, rounds: u64, tally: Arc<Tally>) {
    let mut rng = Rng::new(0xB10C + id);
    for round in 0..rounds {
        let base = (id << 20) | (round << 10);
        match rng.below(6) {
            0 => {
                let lease = m.acquire().owner(format!("th{id}")).blocking().unwrap();
                Tally::add(&tally.leases);
                for j in 0..1 + rng.below(3) {
                    let input = base + j;
                    assert_eq!(
                        lease.submit(move || work(input)).unwrap().wait(),
                        Ok(work(input))
                    );
                    Tally::add(&tally.jobs_ok);
                }
            }
            1 => {
                let timeout = Duration::from_millis(rng.below(3));
                match m.acquire().timeout(timeout).blocking() {
                    Ok(lease) => {
                        Tally::add(&tally.leases);
                        let mut handle = lease.submit(move || work(base)).unwrap();
                        assert_eq!(handle.wait_timeout(PATIENCE), Some(Ok(work(base))));
                        Tally::add(&tally.jobs_ok);
                    }
                    Err(Error::Timeout(_)) => Tally::add(&tally.timeouts),
                    Err(e) => panic!("thread {id}: {e}"),
                }
            }
            2 => {
                // Abandon an acquire after one poll, from a plain thread.
                let mut future = m.acquire().into_future();
                match block_on(futures_lite::future::poll_once(&mut future)) {
                    Some(Ok(lease)) => {
                        Tally::add(&tally.leases);
                        assert_eq!(
                            lease.submit(move || work(base)).unwrap().wait(),
                            Ok(work(base))
                        );
                        Tally::add(&tally.jobs_ok);
                    }
                    Some(Err(e)) => panic!("thread {id}: {e}"),
                    None => Tally::add(&tally.abandoned),
                }
            }
            3 => {
                let lease = m.acquire().blocking().unwrap();
                Tally::add(&tally.leases);
                let input = base;
                if rng.chance(4) {
                    let panicked = lease
                        .submit(move || -> u64 { panic!("thread panic {input}") })
                        .unwrap()
                        .wait();
                    assert_eq!(
                        panicked,
                        Err(Error::Panicked(format!("thread panic {input}")))
                    );
                    Tally::add(&tally.panics);
                }
                let detached = lease.submit(move || work(input + 1)).unwrap();
                drop(detached);
                Tally::add(&tally.detached);
            }
            4 => {
                let lease = m.acquire().blocking().unwrap();
                Tally::add(&tally.leases);
                let handles: Vec<_> = (0..1 + rng.below(3))
                    .map(|j| {
                        let input = base + j;
                        (input, lease.submit(move || work(input)).unwrap())
                    })
                    .collect();
                if rng.chance(2) {
                    m.release_now(lease.id());
                }
                drop(lease);
                Tally::add(&tally.early_releases);
                for (input, handle) in handles {
                    assert_eq!(handle.wait(), Ok(work(input)));
                    Tally::add(&tally.jobs_ok);
                }
            }
            _ => match m.acquire().wait(false).blocking() {
                Ok(lease) => {
                    Tally::add(&tally.leases);
                    assert_eq!(
                        lease.submit(move || work(base)).unwrap().wait(),
                        Ok(work(base))
                    );
                    Tally::add(&tally.jobs_ok);
                }
                Err(Error::Unavailable { .. }) => Tally::add(&tally.unavailable),
                Err(e) => panic!("thread {id}: {e}"),
            },
        }
    }
}

#[test]
fn plain_threads_contend_for_four_pools() {
    const THREADS: u64 = 16;
    const ROUNDS: u64 = 30;
    let prefix = "st-thr";
    let started = Instant::now();
    let m = stress_manager(prefix);
    m.start_blocking().unwrap();
    let tally = Arc::new(Tally::default());
    let stop_sampling = Arc::new(AtomicBool::new(false));
    let sampling = sampler(m.clone(), stop_sampling.clone());

    let threads: Vec<_> = (0..THREADS)
        .map(|id| {
            let (m, tally) = (m.clone(), tally.clone());
            std::thread::spawn(move || thread_worker(m, id, ROUNDS, tally))
        })
        .collect();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let joiner = std::thread::spawn(move || {
        let failures = threads
            .into_iter()
            .map(JoinHandle::join)
            .filter(Result::is_err)
            .count();
        done_tx.send(failures).unwrap();
    });
    match done_rx.recv_timeout(PATIENCE * 3) {
        Ok(failures) => assert_eq!(failures, 0, "a stress thread failed"),
        Err(_) => panic!("stress threads hung: {:?}; {tally:?}", m.stats()),
    }
    joiner.join().unwrap();

    stop_sampling.store(true, Ordering::Relaxed);
    let samples = sampling.join().expect("an inconsistent stats sample");
    assert!(samples > 0);
    check_quiescent_then_stop(prefix, &m, &tally);
    eprintln!(
        "stress (threads): {} ops, {samples} samples, {:?}: {tally:?}",
        THREADS * ROUNDS,
        started.elapsed()
    );
}
