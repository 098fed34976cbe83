//! Fair sharing: priority lanes and per-owner limits on one small manager.
//!
//! ```sh
//! cargo run --example fair_sharing
//! ```
//!
//! Two pools serve three tenants. `batch-co` may hold one lease at a time
//! (its owner limit); everyone else two (`max_leases_per_owner`).
//! Interactive requests ask for `Priority::High`, reports for `Low`. While
//! both pools are busy, eight requests queue up; the example prints who was
//! served in which order, and why.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use leasepool::{Error, LeasedExecutorManager, Priority, ThreadBackend};

fn main() -> Result<(), Error> {
    let manager = LeasedExecutorManager::builder(ThreadBackend::new())
        .max_pools(2)
        .min_pools(2)
        .workers_per_pool(1)
        .max_leases_per_owner(2)
        .owner_limit("batch-co", 1)
        // A waiter that has waited a second is served as if it were High:
        // a report is never starved by a stream of interactive requests.
        .priority_aging(Duration::from_secs(1))
        .build()?;
    manager.start_blocking()?;

    // Both pools busy: one with batch-co's nightly job (its one lease),
    // one with an interactive request of acme.
    let nightly = manager.acquire().owner("batch-co").blocking()?;
    let busy = manager.acquire().owner("acme").blocking()?;

    // batch-co asking for a second lease without waiting is refused at
    // once, with the limit in the message.
    if let Err(error) = manager.acquire().owner("batch-co").wait(false).blocking() {
        println!("refused: {error}\n");
    }

    let requests = [
        ("batch-co", Priority::Low, "export #2"),
        ("acme", Priority::Low, "monthly report"),
        ("globex", Priority::Normal, "thumbnail"),
        ("acme", Priority::High, "checkout"),
        ("batch-co", Priority::High, "re-index"),
        ("globex", Priority::High, "search"),
        ("globex", Priority::Normal, "resize"),
        ("acme", Priority::Normal, "invoice"),
    ];
    let served = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();
    let mut waiting = Vec::new();
    for (arrival, (owner, priority, what)) in requests.into_iter().enumerate() {
        let (manager2, served) = (manager.clone(), served.clone());
        waiting.push(std::thread::spawn(move || -> Result<(), Error> {
            let lease = manager2
                .acquire()
                .owner(owner)
                .priority(priority)
                .timeout(Duration::from_secs(30))
                .blocking()?;
            served
                .lock()
                .unwrap()
                .push((arrival + 1, owner, priority, what));
            // A few milliseconds of work on the leased pool.
            lease
                .submit(|| std::thread::sleep(Duration::from_millis(5)))?
                .wait()?;
            Ok(())
        }));
        // Queue them one after the other, so arrival order is the order
        // above.
        while manager.stats().waiting <= arrival {
            std::thread::yield_now();
        }
    }

    let stats = manager.stats();
    println!("queued while both pools are busy:");
    for lane in &stats.lanes {
        println!("  {:>6}: {} waiting", lane.priority, lane.waiting);
    }
    for owner in &stats.owners {
        println!(
            "  {:>9}: {} held, {} waiting, limit {:?}",
            owner.owner, owner.leases, owner.waiting, owner.limit
        );
    }

    // Free the pools. batch-co's waiters stay held back until its nightly
    // job ends, and the waiters behind them are served as if they were not
    // there.
    drop(busy);
    std::thread::sleep(Duration::from_millis(50));
    drop(nightly);
    for request in waiting {
        request.join().expect("request thread")?;
    }

    println!("\nserved, in order (arrival, owner, lane, request):");
    for (arrival, owner, priority, what) in served.lock().unwrap().iter() {
        println!("  #{arrival} {owner:>9} {priority:>6}  {what}");
    }
    let counters = manager.stats().counters;
    println!(
        "\n{} grants passed over a waiter held back by its owner's limit; \
         {} went to a waiter promoted by aging; all done in {:?}",
        counters.passed_over_by_owner_limit,
        counters.served_by_aging,
        started.elapsed()
    );
    manager.stop_blocking();
    Ok(())
}
