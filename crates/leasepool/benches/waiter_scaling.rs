//! How the queues scale: cost per operation with 1k, 10k and 100k waiters
//! queued on a full manager (queueing, cancelling oldest-first and
//! newest-first, handing a pool down the queue), and with 10k, 100k and 1M
//! items pending in a grinder (submitting, cancelling newest-first,
//! dispatching them all as one batch). Each
//! cost should stay flat (within 1.5x of the smallest size); the last
//! column says how far it is.
//!
//! `cargo bench -p leasepool --bench waiter_scaling`
//! (`LEASEPOOL_BENCH_QUICK=1` for a short smoke run).

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use std::time::Duration;

use leasepool::{AcquireFuture, LeasedExecutorManager, StopMode, ThreadBackend, WorkGrinder};

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

/// A grinder that never starts a batch while the items are counted: the
/// cost of queueing an item, of cancelling one newest-first, and of
/// dispatching (a `stop(Drain)` takes all `n` as one batch and runs them
/// on the one worker; per item, until the last handle has its result).
fn measure_grinder(n: usize) -> [f64; 3] {
    let m = manager();
    let grinder = WorkGrinder::builder(m.clone())
        .batch_size_threshold(usize::MAX)
        .max_wait(Duration::from_secs(3600))
        .build()
        .expect("valid config");
    grinder.start_blocking().expect("start");
    let mut handles = Vec::with_capacity(n);
    let submit = per_op(n, || {
        for i in 0..n {
            handles.push(grinder.enqueue(move || i).expect("enqueue"));
        }
    });
    let cancel = per_op(n, || {
        while let Some(handle) = handles.pop() {
            assert!(handle.cancel());
        }
    });
    assert_eq!(grinder.stats().pending, 0);
    for i in 0..n {
        handles.push(grinder.enqueue(move || i).expect("enqueue"));
    }
    let dispatch = per_op(n, || {
        grinder.stop_blocking(StopMode::Drain);
        for (i, handle) in handles.drain(..).enumerate() {
            assert_eq!(handle.wait(), Ok(i));
        }
    });
    m.stop_blocking();
    [submit, cancel, dispatch]
}

fn table<const N: usize>(unit: &str, sizes: &[usize], names: [&str; N], results: &[[f64; N]]) {
    let header: Vec<String> = sizes.iter().map(|n| format!("{n} {unit}")).collect();
    println!("| operation | {} | worst / smallest |", header.join(" | "));
    println!("|---|{}---|", "---|".repeat(sizes.len()));
    for (i, name) in names.iter().enumerate() {
        let base = results[0][i];
        let worst = results.iter().map(|r| r[i]).fold(0.0, f64::max);
        let cells: Vec<String> = results.iter().map(|r| format!("{:.0} ns", r[i])).collect();
        println!("| {name} | {} | {:.2}x |", cells.join(" | "), worst / base);
    }
    println!();
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
    table("waiters", sizes, names, &results);

    let items: &[usize] = if quick {
        &[10_000, 100_000]
    } else {
        &[10_000, 100_000, 1_000_000]
    };
    // Once at the largest size first, unmeasured: the heap then already
    // holds the memory the largest run needs, so no size pays the kernel
    // for fresh pages (at 1M items that alone tripled the cost of
    // queueing).
    if let Some(&largest) = items.last() {
        measure_grinder(largest);
    }
    // Each size 5 times (the 10k runs last about a millisecond, easily
    // hit by a neighbour on a shared machine); the median of each cost.
    let results: Vec<[f64; 3]> = items
        .iter()
        .map(|&n| {
            let runs: Vec<[f64; 3]> = (0..5).map(|_| measure_grinder(n)).collect();
            std::array::from_fn(|i| {
                let mut costs: Vec<f64> = runs.iter().map(|r| r[i]).collect();
                costs.sort_by(f64::total_cmp);
                costs[costs.len() / 2]
            })
        })
        .collect();
    table(
        "pending items",
        items,
        [
            "grinder enqueue",
            "grinder cancel newest-first",
            "grinder dispatch (one batch, run, results)",
        ],
        &results,
    );
}
