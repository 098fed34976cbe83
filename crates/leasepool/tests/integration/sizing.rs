//! docs/guide.md, "Adaptive sizing": the desired count, growth and shrinking by the checker,
//! leased pools left alone, a panicking size provider.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use leasepool::{LeasedExecutorManager, ManagerBuilder, ThreadBackend};

use crate::common::*;

/// A size signal the test controls, counting how often it is read.
#[derive(Clone, Default)]
struct Units {
    value: Arc<AtomicUsize>,
    reads: Arc<AtomicUsize>,
    panic: Arc<AtomicBool>,
}

impl Units {
    fn new(value: usize) -> Self {
        let units = Units::default();
        units.set(value);
        units
    }

    fn set(&self, value: usize) {
        self.value.store(value, Ordering::SeqCst);
    }

    fn provider(&self) -> impl Fn() -> usize + Send + Sync + 'static {
        let units = self.clone();
        move || {
            units.reads.fetch_add(1, Ordering::SeqCst);
            if units.panic.load(Ordering::SeqCst) {
                panic!("size provider failed on purpose");
            }
            units.value.load(Ordering::SeqCst)
        }
    }

    /// Asks for a reading and waits until the provider was read twice: by
    /// then the first reading after the call has been applied (the desired
    /// count set, idle pools above it shut down, on the sizer thread before
    /// its next reading).
    fn full_pass(&self, m: &LeasedExecutorManager<ThreadBackend>) {
        for _ in 0..2 {
            let seen = self.reads.load(Ordering::SeqCst);
            m.notify_scale_changed();
            eventually("a checker pass", || {
                self.reads.load(Ordering::SeqCst) > seen
            });
        }
    }
}

fn sized(prefix: &str, units: &Units, min: usize, max: usize) -> ManagerBuilder<ThreadBackend> {
    builder(prefix)
        .min_pools(min)
        .max_pools(max)
        .units_per_pool(10)
        .check_interval(Duration::from_secs(3600))
        .size_provider(units.provider())
}

fn workers(prefix: &str) -> Vec<String> {
    let mut names: Vec<String> = threads_named(prefix)
        .into_iter()
        .filter(|n| !n.contains("-check") && !n.contains("-sizer") && !n.contains("-create"))
        .collect();
    names.sort();
    names
}

#[test]
fn desired_count_follows_the_formula() {
    let units = Units::new(0);
    let m = sized("sz01", &units, 2, 5).build().unwrap();
    // desired = min(max, max(min, ceil(units / units_per_pool)))
    for (value, desired) in [
        (0, 2),
        (1, 2),
        (10, 2),
        (19, 2),
        (20, 2),
        (21, 3),
        (30, 3),
        (31, 4),
        (40, 4),
        (41, 5),
        (50, 5),
        (51, 5),
        (1_000_000, 5),
        (usize::MAX, 5),
    ] {
        units.set(value);
        assert_eq!(m.desired_executor_count(), desired, "{value} units");
    }
}

#[test]
fn units_per_pool_divides_with_ceiling() {
    let units = Units::new(0);
    let m = builder("sz02")
        .max_pools(100)
        .min_pools(1)
        .units_per_pool(7)
        .size_provider(units.provider())
        .build()
        .unwrap();
    for (value, desired) in [(0, 1), (7, 1), (8, 2), (14, 2), (15, 3), (700, 100)] {
        units.set(value);
        assert_eq!(m.desired_executor_count(), desired, "{value} units");
    }
}

#[test]
fn no_size_provider_means_min_pools() {
    let m = builder("sz03").max_pools(5).min_pools(3).build().unwrap();
    assert_eq!(m.desired_executor_count(), 3);
    m.start_blocking().unwrap();
    assert_eq!(m.total_count(), 3);
    assert_eq!(m.stats().desired, 3);
    m.stop_blocking();
}

#[test]
fn notify_scale_changed_makes_the_checker_create_pools_up_to_desired() {
    let units = Units::new(0);
    let m = sized("sz04", &units, 1, 4).build().unwrap();
    m.start_blocking().unwrap();
    assert_eq!(m.total_count(), 1);
    units.set(35);
    m.notify_scale_changed();
    eventually("grown to four pools", || m.available_count() == 4);
    assert_eq!(m.total_count(), 4);
    assert_eq!(m.stats().desired, 4);
    eventually("four workers", || workers("sz04").len() == 4);
    // Above max_pools the count stays at max_pools.
    units.set(1000);
    units.full_pass(&m);
    assert_eq!(m.total_count(), 4);
    m.stop_blocking();
}

#[test]
fn the_checker_applies_size_changes_every_check_interval() {
    let units = Units::new(0);
    let m = sized("sz05", &units, 1, 3)
        .check_interval(Duration::from_millis(50))
        .build()
        .unwrap();
    m.start_blocking().unwrap();
    assert_eq!(m.total_count(), 1);
    units.set(25);
    // No notify: the periodic pass picks the change up.
    eventually("grown to three pools", || m.total_count() == 3);
    units.set(0);
    eventually("shrunk to one pool", || m.total_count() == 1);
    m.stop_blocking();
}

#[test]
fn shrinking_shuts_down_idle_pools_above_desired_newest_first() {
    let units = Units::new(40);
    let m = sized("sz06", &units, 1, 4).build().unwrap();
    m.start_blocking().unwrap();
    assert_eq!(m.available_count(), 4);
    eventually("four workers", || workers("sz06").len() == 4);
    units.set(10);
    m.notify_scale_changed();
    eventually("shrunk to one pool", || m.total_count() == 1);
    assert_eq!(m.stats().desired, 1);
    eventually("the newest pools' workers exit", || {
        workers("sz06") == vec!["sz06-1_0".to_owned()]
    });
    let lease = m.acquire().wait(false).blocking().unwrap();
    let name = lease
        .submit(|| std::thread::current().name().unwrap().to_owned())
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(name, "sz06-1_0", "the oldest pool survives");
    drop(lease);
    m.stop_blocking();
}

#[test]
fn shrinking_never_revokes_leased_pools_they_go_on_release() {
    let units = Units::new(30);
    let m = sized("sz07", &units, 1, 3).build().unwrap();
    m.start_blocking().unwrap();
    let mut leases: Vec<_> = (0..3).map(|_| m.acquire().blocking().unwrap()).collect();
    assert_eq!(m.leased_count(), 3);
    units.set(0);
    units.full_pass(&m);
    assert_eq!(m.stats().desired, 1);
    assert_eq!(m.leased_count(), 3, "a leased pool was taken away");
    assert_eq!(m.total_count(), 3);
    for lease in &leases {
        assert_eq!(lease.ended(), None);
        assert_eq!(lease.submit(|| 1).unwrap().wait(), Ok(1));
    }
    // On release, pools above the target are shut down...
    drop(leases.remove(0));
    assert_eq!((m.total_count(), m.available_count()), (2, 0));
    drop(leases.remove(0));
    assert_eq!((m.total_count(), m.available_count()), (1, 0));
    // ...and the last one is kept: it is within the target.
    drop(leases.remove(0));
    assert_eq!((m.total_count(), m.available_count()), (1, 1));
    eventually("shut-down pools' workers exit", || {
        workers("sz07").len() == 1
    });
    m.stop_blocking();
}

#[test]
fn pools_created_on_demand_above_desired_are_shut_down_on_release() {
    let m = builder("sz08").max_pools(3).min_pools(1).build().unwrap();
    m.start_blocking().unwrap();
    let leases: Vec<_> = (0..3).map(|_| m.acquire().blocking().unwrap()).collect();
    assert_eq!(m.total_count(), 3);
    assert_eq!(m.stats().desired, 1);
    drop(leases);
    assert_eq!(m.total_count(), 1, "back to the desired count");
    assert_eq!(m.available_count(), 1);
    eventually("extra workers exit", || workers("sz08").len() == 1);
    m.stop_blocking();
}

#[test]
fn shrinking_also_applies_to_pools_released_later() {
    // A pool released after the checker shrank the target is shut down at
    // release, and the idle count never exceeds the target.
    let units = Units::new(20);
    let m = sized("sz09", &units, 1, 2).build().unwrap();
    m.start_blocking().unwrap();
    let lease = m.acquire().blocking().unwrap();
    units.set(0);
    units.full_pass(&m);
    // The idle pool above the target went; the leased one stayed.
    assert_eq!((m.available_count(), m.leased_count()), (0, 1));
    drop(lease);
    assert_eq!((m.available_count(), m.total_count()), (1, 1));
    m.stop_blocking();
}

#[test]
fn a_panicking_size_provider_counts_as_zero() {
    let units = Units::new(40);
    let m = sized("sz10", &units, 2, 4).build().unwrap();
    m.start_blocking().unwrap();
    assert_eq!(m.total_count(), 4);
    units.panic.store(true, Ordering::SeqCst);
    assert_eq!(m.desired_executor_count(), 2, "a panic counts as 0 units");
    units.full_pass(&m);
    assert_eq!(m.stats().desired, 2);
    eventually("shrunk to min_pools", || m.total_count() == 2);
    assert!(m.is_started(), "the checker survived the panic");
    // The checker keeps working once the provider recovers.
    units.panic.store(false, Ordering::SeqCst);
    m.notify_scale_changed();
    eventually("grown back", || m.total_count() == 4);
    let lease = m.acquire().blocking().unwrap();
    assert_eq!(lease.submit(|| 1).unwrap().wait(), Ok(1));
    drop(lease);
    m.stop_blocking();
}

#[test]
fn a_size_provider_panicking_at_start_still_starts_min_pools() {
    let units = Units::new(40);
    units.panic.store(true, Ordering::SeqCst);
    let m = sized("sz11", &units, 2, 4).build().unwrap();
    m.start_blocking().unwrap();
    assert_eq!(m.total_count(), 2);
    m.stop_blocking();
}

#[test]
fn a_waiter_beyond_desired_gets_a_new_pool_below_max_pools() {
    let units = Units::new(0);
    let m = sized("sz12", &units, 1, 2).build().unwrap();
    m.start_blocking().unwrap();
    let held = m.acquire().blocking().unwrap();
    let m2 = m.clone();
    let waiter = std::thread::spawn(move || m2.acquire().timeout(PATIENCE).blocking());
    let second = waiter.join().unwrap().unwrap();
    assert_eq!((m.total_count(), m.leased_count()), (2, 2));
    drop(second);
    assert_eq!(m.total_count(), 1, "the extra pool goes on release");
    drop(held);
    m.stop_blocking();
}
