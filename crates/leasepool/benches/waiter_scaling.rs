//! How the wait queue scales: cost per operation with 1k, 10k and 100k
//! waiters queued on a full manager, for queueing, cancelling oldest-first,
//! cancelling newest-first and handing a pool down the queue. Each cost
//! should stay flat (within 1.5x of the smallest size); the last column
//! says how far it is.
//!
//! `cargo bench -p leasepool --bench waiter_scaling`
//! (`LEASEPOOL_BENCH_QUICK=1` for a short smoke run).

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use leasepool::{AcquireFuture, LeasedExecutorManager, ThreadBackend};

type Waiter = Pin<Box<AcquireFuture<ThreadBackend>>>;

fn manager() -> LeasedExecutorManager {
    let m = LeasedExecutorManager::builder(ThreadBackend::new())
        .max_pools(1)
        .min_pools(1)
        .workers_per_pool(1)
        .name_prefix("bench-wait")
        .build()
        .expect("valid config");
    m.start_blocking().expect("start");
    m
}

/// Polls once: the waiter joins the queue (the only pool is leased).
fn queue(m: &LeasedExecutorManager, n: usize) -> Vec<Waiter> {
    let mut cx = Context::from_waker(Waker::noop());
    (0..n)
        .map(|_| {
            let mut waiter = Box::pin(m.acquire().into_future());
            assert!(waiter.as_mut().poll(&mut cx).is_pending());
            waiter
        })
        .collect()
}

/// Nanoseconds per operation of `f` over `n` operations.
fn per_op(n: usize, f: impl FnOnce()) -> f64 {
    let started = Instant::now();
    f();
    started.elapsed().as_nanos() as f64 / n as f64
}

fn measure(n: usize) -> [f64; 4] {
    let m = manager();
    let holder = m.acquire().blocking().expect("the only pool");

    let mut waiters = Vec::new();
    let enqueue = per_op(n, || waiters = queue(&m, n));
    let oldest_first = per_op(n, || drop(std::mem::take(&mut waiters)));

    let mut waiters = queue(&m, n);
    let newest_first = per_op(n, || {
        while let Some(waiter) = waiters.pop() {
            drop(waiter);
        }
    });

    // Hand-off: each release gives the pool to the oldest waiter, which
    // takes its lease and releases it in turn.
    let waiters = queue(&m, n);
    let mut cx = Context::from_waker(Waker::noop());
    let hand_off = per_op(n, || {
        drop(holder);
        for mut waiter in waiters {
            match waiter.as_mut().poll(&mut cx) {
                Poll::Ready(Ok(lease)) => drop(lease),
                other => panic!("the oldest waiter was not served: {other:?}"),
            }
        }
    });
    m.stop_blocking();
    [enqueue, oldest_first, newest_first, hand_off]
}

fn main() {
    let quick = std::env::var_os("LEASEPOOL_BENCH_QUICK").is_some();
    let sizes: &[usize] = if quick {
        &[1_000, 10_000]
    } else {
        &[1_000, 10_000, 100_000]
    };
    let names = [
        "queue",
        "cancel oldest-first",
        "cancel newest-first",
        "hand-off",
    ];
    let results: Vec<[f64; 4]> = sizes.iter().map(|&n| measure(n)).collect();
    println!(
        "| operation | {} | worst / smallest |",
        sizes
            .iter()
            .map(|n| format!("{n} waiters"))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    println!("|---|{}---|", "---|".repeat(sizes.len()));
    for (i, name) in names.iter().enumerate() {
        let base = results[0][i];
        let worst = results.iter().map(|r| r[i]).fold(0.0, f64::max);
        let cells: Vec<String> = results.iter().map(|r| format!("{:.0} ns", r[i])).collect();
        println!("| {name} | {} | {:.2}x |", cells.join(" | "), worst / base);
    }
}
