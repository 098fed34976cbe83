//! The rayon backend's round trip against its floor, with the thread
//! backend and its floor beside it, interleaved in the same run.
//!
//! Each contender runs `|| 1` and awaits the result, one at a time:
//!
//! - `lease.run(|| 1).await` on a held lease of a one-worker `RayonBackend`
//!   pool;
//! - the rayon floor: `rayon::ThreadPool::spawn` on a one-thread pool of
//!   its own, answering over a `oneshot` channel;
//! - `lease.run(|| 1).await` on a one-worker `ThreadBackend` pool;
//! - the thread floor: one dedicated `std::thread` receiving boxed closures
//!   over `std::sync::mpsc`, answering over a `oneshot` channel.
//!
//! Driven from a task on a tokio multi-thread runtime (2 workers), and
//! again under `futures_lite::future::block_on`. Round trips cross threads,
//! so they mostly measure wake-ups, whose cost changes every few seconds on
//! a small shared machine: the contenders run interleaved, in short blocks
//! cycling through them, and the table gives the medians of the blocks.
//!
//! `cargo bench -p leasepool --features rayon --bench rayon_round_trip`
//! (`LEASEPOOL_BENCH_QUICK=1` for a short smoke run;
//! `LEASEPOOL_BENCH_ONLY=0 LEASEPOOL_BENCH_ITEMS=10000` runs contender 0
//! alone under `block_on`, for `valgrind --tool=callgrind`).

use std::future::Future;
use std::hint::black_box;
use std::pin::Pin;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use leasepool::{LeasedExecutorManager, RayonBackend, ThreadBackend};

type Job = Box<dyn FnOnce() + Send>;

/// One way of running `|| 1` and awaiting it, `iters` times.
type RoundTrips = Box<dyn Fn(u64) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

fn dedicated_thread() -> mpsc::Sender<Job> {
    let (jobs, queue) = mpsc::channel::<Job>();
    std::thread::Builder::new()
        .name("bench-dedicated".to_owned())
        .spawn(move || {
            while let Ok(job) = queue.recv() {
                job();
            }
        })
        .expect("spawn the dedicated thread");
    jobs
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

fn main() {
    let quick = std::env::var_os("LEASEPOOL_BENCH_QUICK").is_some();
    let (cycles, block) = if quick { (5, 500) } else { (40, 1_000) };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");

    let rayon_manager = LeasedExecutorManager::builder(RayonBackend::new())
        .max_pools(1)
        .min_pools(1)
        .workers_per_pool(1)
        .name_prefix("bench-rayon")
        .build()
        .expect("valid config");
    rayon_manager.start_blocking().expect("start");
    let rayon_lease = Arc::new(
        rayon_manager
            .acquire()
            .lease(Duration::from_secs(3600))
            .blocking()
            .expect("lease"),
    );
    let rayon_floor = Arc::new(
        rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .thread_name(|_| "bench-rayon-floor".to_owned())
            .build()
            .expect("rayon pool"),
    );

    let thread_manager = LeasedExecutorManager::builder(ThreadBackend::new())
        .max_pools(1)
        .min_pools(1)
        .workers_per_pool(1)
        .name_prefix("bench-thread")
        .build()
        .expect("valid config");
    thread_manager.start_blocking().expect("start");
    let thread_lease = Arc::new(
        thread_manager
            .acquire()
            .lease(Duration::from_secs(3600))
            .blocking()
            .expect("lease"),
    );
    let thread_floor = dedicated_thread();

    let contenders: Vec<(&str, RoundTrips)> = vec![
        ("rayon backend: lease.run", {
            let lease = rayon_lease.clone();
            Box::new(move |iters| {
                let lease = lease.clone();
                Box::pin(async move {
                    for _ in 0..iters {
                        black_box(lease.run(|| black_box(1)).await.expect("run"));
                    }
                })
            })
        }),
        ("rayon floor: ThreadPool::spawn + oneshot", {
            let pool = rayon_floor.clone();
            Box::new(move |iters| {
                let pool = pool.clone();
                Box::pin(async move {
                    for _ in 0..iters {
                        let (tx, rx) = oneshot::channel();
                        pool.spawn(move || {
                            let _ = tx.send(black_box(1));
                        });
                        black_box(rx.await.expect("rayon floor answered"));
                    }
                })
            })
        }),
        ("thread backend: lease.run", {
            let lease = thread_lease.clone();
            Box::new(move |iters| {
                let lease = lease.clone();
                Box::pin(async move {
                    for _ in 0..iters {
                        black_box(lease.run(|| black_box(1)).await.expect("run"));
                    }
                })
            })
        }),
        ("thread floor: dedicated thread + oneshot", {
            let jobs = std::sync::Mutex::new(thread_floor);
            Box::new(move |iters| {
                let jobs = jobs.lock().expect("sender").clone();
                Box::pin(async move {
                    for _ in 0..iters {
                        let (tx, rx) = oneshot::channel();
                        jobs.send(Box::new(move || {
                            let _ = tx.send(black_box(1));
                        }))
                        .expect("dedicated thread alive");
                        black_box(rx.await.expect("dedicated thread answered"));
                    }
                })
            })
        }),
    ];

    // For instruction counts: one contender (its index above) under
    // `block_on`, `LEASEPOOL_BENCH_ITEMS` round trips, no table.
    if let Ok(only) = std::env::var("LEASEPOOL_BENCH_ONLY") {
        let c: usize = only
            .parse()
            .expect("LEASEPOOL_BENCH_ONLY: a contender index");
        let n = std::env::var("LEASEPOOL_BENCH_ITEMS")
            .ok()
            .map_or(10_000, |v| {
                v.parse().expect("LEASEPOOL_BENCH_ITEMS: a number")
            });
        drive(&rt, 1, contenders[c].1(n));
        return;
    }
    let drivers = ["tokio multi-thread", "block_on"];
    // ns per round trip: [driver][contender][cycle]
    let mut samples = vec![vec![Vec::new(); contenders.len()]; drivers.len()];
    for (d, per_driver) in samples.iter_mut().enumerate() {
        // Warm-up: one block each.
        for (_, run) in &contenders {
            drive(&rt, d, run(block as u64 / 4));
        }
        for _ in 0..cycles {
            for (c, (_, run)) in contenders.iter().enumerate() {
                // Let the previous contender's threads go to sleep first: an
                // idle rayon thread keeps yielding for a while, and on two
                // cores that taxes whoever runs next.
                std::thread::sleep(Duration::from_millis(2));
                let started = Instant::now();
                drive(&rt, d, run(block as u64));
                per_driver[c].push(started.elapsed().as_nanos() as f64 / block as f64);
            }
        }
    }

    println!();
    println!(
        "round trip of `|| 1`, interleaved: {cycles} cycles x {block} round trips per contender; \
         medians"
    );
    println!("| driver | contender | ns per round trip | ratio to its floor |");
    println!("|---|---|---:|---:|");
    let mut rayon_ratios = Vec::new();
    for (d, driver) in drivers.iter().enumerate() {
        let m: Vec<f64> = samples[d].iter_mut().map(|s| median(s)).collect();
        for (c, (name, _)) in contenders.iter().enumerate() {
            let floor = m[c | 1];
            println!("| {driver} | {name} | {:.0} | {:.2}x |", m[c], m[c] / floor);
        }
        rayon_ratios.push(m[0] / m[1]);
    }
    let worst = rayon_ratios.iter().copied().fold(0.0, f64::max);
    println!(
        "target: rayon backend <= 1.0x its floor: {:.2}x (worst driver) {}",
        worst,
        if worst <= 1.0 { "met" } else { "MISSED" }
    );

    drop(contenders);
    drop(rayon_lease);
    drop(thread_lease);
    rayon_manager.stop_blocking();
    thread_manager.stop_blocking();
}

/// Runs `work` to completion: as a task on the runtime's worker threads
/// (driver 0) or under `block_on` on this thread (driver 1).
fn drive(
    rt: &tokio::runtime::Runtime,
    driver: usize,
    work: Pin<Box<dyn Future<Output = ()> + Send>>,
) {
    if driver == 0 {
        rt.block_on(rt.spawn(work)).expect("bench task");
    } else {
        futures_lite::future::block_on(work);
    }
}
