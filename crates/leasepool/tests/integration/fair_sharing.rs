//! Fair sharing through the public API: priority lanes and their aging,
//! per-owner lease limits, the stats that show them, and the cancellation
//! matrix across lanes.

use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use leasepool::{Error, LeasedExecutorManager, OwnerLimit, Priority, ThreadBackend};

use crate::common::*;

type Manager = LeasedExecutorManager<ThreadBackend>;

fn one_pool(prefix: &str) -> leasepool::ManagerBuilder<ThreadBackend> {
    builder(prefix).max_pools(1).min_pools(1)
}

/// Who was served, in order.
#[derive(Clone, Default)]
struct Served(Arc<Mutex<Vec<String>>>);

impl Served {
    fn push(&self, name: &str) {
        self.0.lock().unwrap().push(name.to_owned());
    }

    fn order(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

/// Queues one waiter on a thread and waits until the manager counts it, so
/// that arrival order is the order of the calls. When served it records its
/// name and releases at once.
fn queue(
    m: &Manager,
    served: &Served,
    name: &str,
    priority: Priority,
    owner: Option<&str>,
) -> JoinHandle<()> {
    let before = m.stats().waiting;
    let (m2, served, name2, owner) = (
        m.clone(),
        served.clone(),
        name.to_owned(),
        owner.map(str::to_owned),
    );
    let handle = std::thread::spawn(move || {
        let mut acquire = m2.acquire().priority(priority).timeout(PATIENCE);
        if let Some(owner) = owner {
            acquire = acquire.owner(owner);
        }
        let lease = acquire.blocking().expect("served");
        served.push(&name2);
        drop(lease);
    });
    eventually(&format!("{name} queued"), || m.stats().waiting > before);
    handle
}

#[test]
fn a_freed_pool_goes_to_the_oldest_waiter_of_the_highest_lane() {
    let m = one_pool("fs-lanes").build().unwrap();
    m.start_blocking().unwrap();
    let held = m.acquire().timeout(PATIENCE).blocking().unwrap();
    let served = Served::default();
    let waiters = [
        ("low-1", Priority::Low),
        ("normal-1", Priority::Normal),
        ("high-1", Priority::High),
        ("low-2", Priority::Low),
        ("high-2", Priority::High),
        ("normal-2", Priority::Normal),
    ]
    .map(|(name, p)| queue(&m, &served, name, p, None));
    let lanes = m.stats().lanes;
    let waiting: Vec<(Priority, usize)> = lanes.iter().map(|l| (l.priority, l.waiting)).collect();
    assert_eq!(
        waiting,
        [
            (Priority::High, 2),
            (Priority::Normal, 2),
            (Priority::Low, 2)
        ]
    );
    drop(held);
    for waiter in waiters {
        waiter.join().unwrap();
    }
    assert_eq!(
        served.order(),
        ["high-1", "high-2", "normal-1", "normal-2", "low-1", "low-2"]
    );
    assert_eq!(m.stats().counters.served_by_aging, 0);
    m.stop_blocking();
}

#[test]
fn a_waiter_that_aged_is_served_as_if_in_the_highest_lane() {
    let aging = Duration::from_millis(200);
    let m = one_pool("fs-aging").priority_aging(aging).build().unwrap();
    m.start_blocking().unwrap();
    let held = m.acquire().timeout(PATIENCE).blocking().unwrap();
    let served = Served::default();
    let queued_at = Instant::now();
    let low = queue(&m, &served, "low", Priority::Low, None);
    // Wait until the low waiter has aged (a bound, not a hope: we poll the
    // clock until the aging bound has surely passed for it).
    eventually("the low waiter aged", || queued_at.elapsed() > aging * 2);
    let high = queue(&m, &served, "high", Priority::High, None);
    drop(held);
    low.join().unwrap();
    high.join().unwrap();
    assert_eq!(served.order(), ["low", "high"]);
    assert_eq!(m.stats().counters.served_by_aging, 1);
    m.stop_blocking();
}

#[test]
fn without_aging_a_higher_lane_always_goes_first() {
    let m = one_pool("fs-noaging").build().unwrap();
    m.start_blocking().unwrap();
    let held = m.acquire().timeout(PATIENCE).blocking().unwrap();
    let served = Served::default();
    let low = queue(&m, &served, "low", Priority::Low, None);
    std::thread::sleep(Duration::from_millis(50)); // age that must not matter
    let high = queue(&m, &served, "high", Priority::High, None);
    drop(held);
    low.join().unwrap();
    high.join().unwrap();
    assert_eq!(served.order(), ["high", "low"]);
    m.stop_blocking();
}

#[test]
fn an_owner_at_its_limit_waits_without_blocking_the_waiters_behind_it() {
    let m = builder("fs-limit")
        .max_pools(3)
        .min_pools(3)
        .max_leases_per_owner(1)
        .build()
        .unwrap();
    m.start_blocking().unwrap();
    let a1 = m.acquire().owner("tenant-a").blocking().unwrap();
    // Fail fast: refused, and the message names the owner limit.
    let refused = m.acquire().owner("tenant-a").wait(false).blocking();
    let Err(error) = refused else {
        panic!("a second lease for tenant-a: {refused:?}")
    };
    assert_eq!(
        error,
        Error::Unavailable {
            max_pools: 3,
            owner_limit: Some(OwnerLimit {
                owner: "tenant-a".to_owned(),
                limit: 1,
            }),
        }
    );
    let message = error.to_string();
    assert!(
        message.contains("tenant-a") && message.contains("limit"),
        "{message}"
    );
    assert!(error.is_retryable());
    // Waiting: queued, while pools are idle for everyone else.
    let served = Served::default();
    let a2 = queue(&m, &served, "tenant-a", Priority::High, Some("tenant-a"));
    let b = m.acquire().owner("tenant-b").wait(false).blocking();
    assert!(b.is_ok(), "tenant-b is not held back by tenant-a: {b:?}");
    let anonymous = m.acquire().wait(false).blocking();
    assert!(anonymous.is_ok(), "{anonymous:?}");
    let stats = m.stats();
    let owners: Vec<(String, usize, usize, Option<usize>)> = stats
        .owners
        .iter()
        .map(|o| (o.owner.clone(), o.leases, o.waiting, o.limit))
        .collect();
    assert_eq!(
        owners,
        [
            ("tenant-a".to_owned(), 1, 1, Some(1)),
            ("tenant-b".to_owned(), 1, 0, Some(1)),
        ]
    );
    assert_eq!((stats.available, stats.leased, stats.waiting), (0, 3, 1));
    // tenant-a's lease ends: its waiter is served.
    drop(a1);
    a2.join().unwrap();
    assert_eq!(served.order(), ["tenant-a"]);
    drop((b, anonymous));
    m.stop_blocking();
}

#[test]
fn an_owner_that_gets_room_back_is_served_in_its_lane() {
    let m = one_pool("fs-passover")
        .owner_limit("batch", 1)
        .build()
        .unwrap();
    m.start_blocking().unwrap();
    // batch holds the only pool, and its second acquire is held back by
    // its limit as much as by capacity.
    let held = m.acquire().owner("batch").blocking().unwrap();
    let served = Served::default();
    let batch = queue(&m, &served, "batch", Priority::High, Some("batch"));
    let first = queue(&m, &served, "web-1", Priority::Normal, Some("web"));
    let second = queue(&m, &served, "web-2", Priority::Normal, Some("web"));
    let third = queue(&m, &served, "web-3", Priority::Low, None);
    // batch's lease ends: its waiter may be served again and, being High,
    // goes first; the others follow by lane, then arrival.
    drop(held);
    for waiter in [batch, first, second, third] {
        waiter.join().unwrap();
    }
    assert_eq!(served.order(), ["batch", "web-1", "web-2", "web-3"]);
    m.stop_blocking();
}

#[test]
fn the_waiter_behind_a_held_back_owner_gets_the_pool() {
    // Two pools: tenant-a holds one (its limit), another owner holds the
    // other. tenant-a's waiter is first in line, but when the other lease
    // ends its pool goes to the next waiter instead.
    let m = builder("fs-behind")
        .max_pools(2)
        .min_pools(2)
        .owner_limit("tenant-a", 1)
        .build()
        .unwrap();
    m.start_blocking().unwrap();
    let a = m.acquire().owner("tenant-a").blocking().unwrap();
    let other = m.acquire().owner("other").blocking().unwrap();
    let served = Served::default();
    let a_waiter = queue(&m, &served, "tenant-a", Priority::High, Some("tenant-a"));
    let next = queue(&m, &served, "tenant-c", Priority::Low, Some("tenant-c"));
    drop(other);
    next.join().unwrap();
    assert_eq!(served.order(), ["tenant-c"]);
    assert_eq!(m.stats().counters.passed_over_by_owner_limit, 1);
    drop(a);
    a_waiter.join().unwrap();
    assert_eq!(served.order(), ["tenant-c", "tenant-a"]);
    m.stop_blocking();
}

#[test]
fn owner_limits_hold_under_contention() {
    let m = builder("fs-contention")
        .max_pools(6)
        .min_pools(6)
        .max_leases_per_owner(2)
        .owner_limit("vip", 3)
        .build()
        .unwrap();
    m.start_blocking().unwrap();
    let owners = ["a", "b", "vip", "c"];
    let peak: Arc<Mutex<std::collections::HashMap<String, usize>>> = Arc::default();
    let violations = Arc::new(Mutex::new(Vec::new()));
    let threads: Vec<_> = (0..16)
        .map(|i| {
            let (m, peak, violations) = (m.clone(), peak.clone(), violations.clone());
            let owner = owners[i % owners.len()].to_owned();
            std::thread::spawn(move || {
                for round in 0..40 {
                    let lease = m
                        .acquire()
                        .owner(owner.clone())
                        .priority(Priority::ALL[(i + round) % 3])
                        .timeout(PATIENCE)
                        .blocking()
                        .expect("served");
                    let stats = m.stats();
                    for o in &stats.owners {
                        let limit = if o.owner == "vip" { 3 } else { 2 };
                        if o.leases > limit {
                            violations.lock().unwrap().push(format!("{o:?}"));
                        }
                        let mut peak = peak.lock().unwrap();
                        let p = peak.entry(o.owner.clone()).or_default();
                        *p = (*p).max(o.leases);
                    }
                    assert_eq!(stats.available + stats.leased, stats.total);
                    drop(lease);
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    assert!(violations.lock().unwrap().is_empty(), "{violations:?}");
    let peak = peak.lock().unwrap();
    assert!(peak.values().all(|p| *p >= 1), "{peak:?}");
    let stats = m.stats();
    assert_eq!((stats.leased, stats.waiting), (0, 0));
    assert!(stats.owners.is_empty(), "{:?}", stats.owners);
    m.stop_blocking();
}

#[test]
fn a_lease_without_an_owner_counts_against_no_limit() {
    let m = builder("fs-anon")
        .max_pools(3)
        .min_pools(3)
        .max_leases_per_owner(1)
        .build()
        .unwrap();
    m.start_blocking().unwrap();
    let leases: Vec<_> = (0..3)
        .map(|_| m.acquire().wait(false).blocking().unwrap())
        .collect();
    assert_eq!(m.stats().leased, 3);
    assert!(m.stats().owners.is_empty());
    drop(leases);
    m.stop_blocking();
}

/// The cancellation matrix: a waiter in any lane, dropped at any point
/// (queued, or just granted and not yet picked up), strands no pool and
/// loses no wake-up: everyone else is served.
#[test]
fn dropping_a_waiter_in_any_lane_strands_no_pool() {
    for (dropped_lane, granted) in Priority::ALL
        .into_iter()
        .flat_map(|p| [(p, false), (p, true)])
    {
        let m = builder(&format!("fs-cancel-{dropped_lane}-{granted}"))
            .max_pools(1)
            .min_pools(1)
            .owner_limit("limited", 1)
            .build()
            .unwrap();
        m.start_blocking().unwrap();
        let held = m.acquire().timeout(PATIENCE).blocking().unwrap();
        let mut victim = Box::pin(std::future::IntoFuture::into_future(
            m.acquire().priority(dropped_lane).owner("limited"),
        ));
        assert!(poll_once(victim.as_mut()).is_none(), "the victim waits");
        let served = Served::default();
        let others: Vec<_> = Priority::ALL
            .iter()
            .map(|p| queue(&m, &served, &p.to_string(), *p, Some("other")))
            .collect();
        if granted {
            // The pool goes to the victim (if it is first in line) and the
            // victim is dropped before it looks: the pool moves on.
            drop(held);
            eventually("the pool is handed on", || m.stats().leased == 1);
            drop(victim);
        } else {
            drop(victim);
            drop(held);
        }
        for other in others {
            other.join().unwrap();
        }
        let mut order = served.order();
        order.sort();
        assert_eq!(order, ["high", "low", "normal"], "{dropped_lane} {granted}");
        let stats = m.stats();
        assert_eq!(
            (stats.available, stats.leased, stats.waiting),
            (1, 0, 0),
            "{dropped_lane} {granted}: {stats:?}"
        );
        m.stop_blocking();
    }
}

/// Polls `future` once with a no-op waker.
fn poll_once<F: std::future::Future>(future: std::pin::Pin<&mut F>) -> Option<F::Output> {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match future.poll(&mut cx) {
        std::task::Poll::Ready(output) => Some(output),
        std::task::Poll::Pending => None,
    }
}

#[test]
fn fairness_options_are_validated() {
    let cases: [(&str, leasepool::ManagerBuilder<ThreadBackend>); 4] = [
        (
            "priority_aging",
            one_pool("fs-v1").priority_aging(Duration::ZERO),
        ),
        (
            "max_leases_per_owner",
            one_pool("fs-v2").max_leases_per_owner(0),
        ),
        ("owner_limit", one_pool("fs-v3").owner_limit("a", 0)),
        ("owner_limit", one_pool("fs-v4").owner_limit("", 1)),
    ];
    for (field, builder) in cases {
        match builder.build() {
            Err(Error::InvalidConfig { field: got, .. }) => assert_eq!(got, field),
            other => panic!("{field}: {other:?}"),
        }
    }
    let m = one_pool("fs-v5")
        .priority_aging(Duration::from_secs(1))
        .max_leases_per_owner(2)
        .owner_limit("vip", 4)
        .build()
        .unwrap();
    let config = m.config();
    assert_eq!(config.priority_aging(), Some(Duration::from_secs(1)));
    assert_eq!(config.max_leases_per_owner(), Some(2));
    assert_eq!(config.owner_limit("vip"), Some(4));
    assert_eq!(config.owner_limit("anyone"), Some(2));
}

#[test]
fn priority_works_from_async_code_too() {
    let m = one_pool("fs-async").build().unwrap();
    block_on(m.start()).unwrap();
    let held = block_on(async { m.acquire().await }).unwrap();
    let (tx, rx) = mpsc::channel();
    let threads: Vec<_> = [Priority::Low, Priority::High]
        .into_iter()
        .map(|p| {
            let (waiter, tx) = (m.clone(), tx.clone());
            let before = m.stats().waiting;
            let t = std::thread::spawn(move || {
                block_on(async {
                    let lease = waiter
                        .acquire()
                        .priority(p)
                        .timeout(PATIENCE)
                        .await
                        .unwrap();
                    tx.send(p).unwrap();
                    lease.release().await;
                })
            });
            eventually("queued", || m.stats().waiting > before);
            t
        })
        .collect();
    drop(held);
    let order: Vec<Priority> = (0..2).map(|_| rx.recv().unwrap()).collect();
    assert_eq!(order, [Priority::High, Priority::Low]);
    for t in threads {
        t.join().unwrap();
    }
    m.stop_blocking();
}
