//! Grinder throughput: tiny jobs from many concurrent submitters, sent
//! through a `WorkGrinder`, directly through leases (acquire + run + release
//! per item), and as one tokio `spawn_blocking` per item, in the same run.
//!
//! `cargo bench -p leasepool --bench grinder_throughput`
//! (`LEASEPOOL_BENCH_QUICK=1` for a short smoke run).

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use leasepool::{LeasedExecutorManager, StopMode, ThreadBackend, WorkGrinder};

const SUBMITTERS: usize = 64;

fn tiny_job(x: u64) -> u64 {
    // About a hundred nanoseconds of work.
    (0..64).fold(x, |acc, i| {
        acc.wrapping_mul(6364136223846793005).wrapping_add(i)
    })
}

fn manager() -> LeasedExecutorManager {
    LeasedExecutorManager::builder(ThreadBackend::new())
        .max_pools(2)
        .min_pools(2)
        .workers_per_pool(2)
        .name_prefix("bench-grind")
        .build()
        .expect("valid config")
}

/// Runs `SUBMITTERS` tasks, each submitting `per_task` items one after the
/// other through `submit`, and returns items per second.
fn measure<F, Fut>(runtime: &tokio::runtime::Runtime, per_task: usize, submit: F) -> f64
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = u64> + Send + 'static,
{
    let submit = Arc::new(submit);
    runtime.block_on(async {
        let started = Instant::now();
        let tasks: Vec<_> = (0..SUBMITTERS)
            .map(|t| {
                let submit = submit.clone();
                tokio::spawn(async move {
                    let mut acc = 0u64;
                    for i in 0..per_task {
                        acc = acc.wrapping_add(submit((t * per_task + i) as u64).await);
                    }
                    acc
                })
            })
            .collect();
        for task in tasks {
            black_box(task.await.expect("submitter"));
        }
        (SUBMITTERS * per_task) as f64 / started.elapsed().as_secs_f64()
    })
}

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(|a, b| a.total_cmp(b));
    samples[samples.len() / 2]
}

fn main() {
    // `cargo bench` passes `--bench`; ignore arguments.
    let quick = std::env::var_os("LEASEPOOL_BENCH_QUICK").is_some();
    let (per_task, rounds) = if quick { (20, 3) } else { (200, 7) };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(4)
        .enable_all()
        .build()
        .expect("tokio runtime");

    let m = manager();
    runtime.block_on(m.start()).expect("start");
    let grinder = WorkGrinder::builder(m.clone())
        .batch_size_threshold(64)
        .max_wait(Duration::from_micros(200))
        .build()
        .expect("valid grinder");
    grinder.start_blocking().expect("start grinder");

    let mut grind = Vec::new();
    let mut leases = Vec::new();
    let mut blocking = Vec::new();
    for _ in 0..rounds {
        let g = grinder.clone();
        grind.push(measure(&runtime, per_task, move |x| {
            let g = g.clone();
            async move { g.submit(move || tiny_job(x)).await.expect("grinder item") }
        }));
        let lm = m.clone();
        leases.push(measure(&runtime, per_task, move |x| {
            let lm = lm.clone();
            async move {
                let lease = lm.acquire().await.expect("lease");
                lease.run(move || tiny_job(x)).await.expect("job")
            }
        }));
        blocking.push(measure(&runtime, per_task, |x| async move {
            tokio::task::spawn_blocking(move || tiny_job(x))
                .await
                .expect("spawn_blocking")
        }));
    }
    grinder.stop_blocking(StopMode::Drain);
    runtime.block_on(m.stop());

    let (g, l, b) = (median(grind), median(leases), median(blocking));
    println!();
    println!("grinder throughput: {SUBMITTERS} submitters, tiny jobs, median of {rounds} rounds");
    println!("| path | items/s | grinder / path |");
    println!("|---|---:|---:|");
    println!("| WorkGrinder (2 pools x 2 workers) | {g:.0} | 1.00 |");
    println!(
        "| lease per item (acquire + run + release) | {l:.0} | {:.2} |",
        g / l
    );
    println!(
        "| tokio spawn_blocking per item (4 threads) | {b:.0} | {:.2} |",
        g / b
    );
    println!(
        "target: grinder beats per-item spawn_blocking: {}",
        if g > b { "met" } else { "MISSED" }
    );
}
