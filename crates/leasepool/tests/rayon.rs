//! The rayon backend: parallel work inside a job stays on the leased pool.

use std::collections::BTreeSet;
use std::sync::Mutex;

use leasepool::{Error, LeasedExecutorManager, RayonBackend};
use rayon::prelude::*;

fn manager(prefix: &str, workers: usize) -> LeasedExecutorManager<RayonBackend> {
    let manager = LeasedExecutorManager::builder(RayonBackend::new())
        .max_pools(2)
        .workers_per_pool(workers)
        .name_prefix(prefix)
        .build()
        .expect("valid config");
    manager.start_blocking().expect("start");
    manager
}

#[test]
fn par_iter_inside_a_job_runs_on_the_leased_pool() {
    let m = manager("rpar", 3);
    let lease = m.acquire().blocking().expect("acquire");
    let (sum, threads, in_pool) = lease
        .submit(|| {
            let threads = Mutex::new(BTreeSet::new());
            let sum: u64 = (0..100_000u64)
                .into_par_iter()
                .map(|x| {
                    let name = std::thread::current().name().unwrap_or("?").to_owned();
                    threads.lock().unwrap().insert(name);
                    x
                })
                .sum();
            let (a, b) = rayon::join(rayon::current_thread_index, rayon::current_thread_index);
            (
                sum,
                threads.into_inner().unwrap(),
                a.is_some() && b.is_some(),
            )
        })
        .expect("submit")
        .wait()
        .expect("job");
    assert_eq!(sum, (0..100_000u64).sum());
    assert!(in_pool, "rayon::join inside a job runs on the pool");
    assert!(!threads.is_empty());
    for name in &threads {
        assert!(
            name.starts_with("rpar-"),
            "{name} is not a thread of the leased pool"
        );
    }
    assert_eq!(
        rayon::current_thread_index(),
        None,
        "the test thread is not a rayon worker"
    );
    drop(lease);
    m.stop_blocking();
}

#[test]
fn two_leases_use_two_different_pools() {
    let m = manager("rtwo", 1);
    let a = m.acquire().blocking().expect("a");
    let b = m.acquire().blocking().expect("b");
    let name = |lease: &leasepool::ExecutorLease<RayonBackend>| {
        lease
            .submit(|| {
                (0..8)
                    .into_par_iter()
                    .map(|_| std::thread::current().name().unwrap().to_owned())
                    .collect::<BTreeSet<_>>()
            })
            .unwrap()
            .wait()
            .unwrap()
    };
    let (na, nb) = (name(&a), name(&b));
    assert!(na.is_disjoint(&nb), "{na:?} and {nb:?} share threads");
    drop((a, b));
    m.stop_blocking();
}

#[test]
fn a_panicking_job_does_not_kill_the_pool() {
    let m = manager("rpanic", 2);
    let lease = m.acquire().blocking().expect("acquire");
    let result = lease
        .submit(|| {
            (0..100)
                .into_par_iter()
                .map(|x| if x == 42 { panic!("bad item") } else { x })
                .sum::<i32>()
        })
        .expect("submit")
        .wait();
    assert_eq!(result, Err(Error::Panicked("bad item".to_owned())));
    assert_eq!(lease.submit(|| 3).expect("submit").wait(), Ok(3));
    drop(lease);
    m.stop_blocking();
}
