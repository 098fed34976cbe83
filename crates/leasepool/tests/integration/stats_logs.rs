//! docs/guide.md, "Diagnostics": the stats snapshot, the counters, and the `log` records.
//!
//! This file installs the test binary's one global logger (see
//! [`log_mark`]); other files use [`log_mark`] and [`logs_since`] too.
//! Tests run in parallel in one process, so every check filters the
//! captured records by something unique to its test: a lease id, the
//! checker thread's name (`{prefix}-checker`), or the test's own thread.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use leasepool::{LeaseId, LeasedExecutorManager, ThreadBackend};
use log::{Level, LevelFilter, Log, Metadata, Record};

use crate::common::*;

/// One captured log record.
#[derive(Debug, Clone)]
pub(crate) struct Captured {
    pub(crate) level: Level,
    pub(crate) target: String,
    pub(crate) message: String,
    /// The name of the thread that emitted it.
    pub(crate) thread: Option<String>,
}

struct Capture;

static RECORDS: Mutex<Vec<Captured>> = Mutex::new(Vec::new());
static INSTALLED: OnceLock<()> = OnceLock::new();

impl Log for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &Record<'_>) {
        let ours = record.target().starts_with("leasepool")
            || record
                .module_path()
                .is_some_and(|m| m.starts_with("leasepool"));
        if !ours {
            return;
        }
        let captured = Captured {
            level: record.level(),
            target: record.target().to_owned(),
            message: record.args().to_string(),
            thread: std::thread::current().name().map(str::to_owned),
        };
        RECORDS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(captured);
    }

    fn flush(&self) {}
}

/// Installs the capturing logger (once per process) and returns a mark:
/// pass it to [`logs_since`] to see only records emitted after this call.
pub(crate) fn log_mark() -> usize {
    INSTALLED.get_or_init(|| {
        static LOGGER: Capture = Capture;
        log::set_logger(&LOGGER).expect("another global logger was installed in this test binary");
        log::set_max_level(LevelFilter::Trace);
    });
    RECORDS.lock().unwrap_or_else(PoisonError::into_inner).len()
}

/// Every leasepool record captured since `mark`.
pub(crate) fn logs_since(mark: usize) -> Vec<Captured> {
    RECORDS.lock().unwrap_or_else(PoisonError::into_inner)[mark..].to_vec()
}

/// True if `message` names lease `id` (and not merely a longer id that
/// starts with the same digits).
pub(crate) fn mentions(message: &str, id: &LeaseId) -> bool {
    let id = id.to_string();
    message.match_indices(&id).any(|(at, _)| {
        !message[at + id.len()..]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
    })
}

/// Records since `mark` that mention lease `id`.
pub(crate) fn about(mark: usize, id: &LeaseId) -> Vec<Captured> {
    logs_since(mark)
        .into_iter()
        .filter(|r| mentions(&r.message, id))
        .collect()
}

/// Records since `mark` emitted by the thread called `thread`.
fn from_thread(mark: usize, thread: &str) -> Vec<Captured> {
    logs_since(mark)
        .into_iter()
        .filter(|r| r.thread.as_deref() == Some(thread))
        .collect()
}

fn current_thread() -> String {
    std::thread::current()
        .name()
        .expect("test threads are named")
        .to_owned()
}

fn all_target_leasepool(records: &[Captured]) {
    for r in records {
        assert_eq!(r.target, "leasepool", "{r:?}");
    }
}

// ----- stats -------------------------------------------------------------

#[test]
fn stats_report_backend_limits_and_counts() {
    block_on(async {
        let m = builder("st01")
            .max_pools(3)
            .min_pools(2)
            .workers_per_pool(2)
            .build()
            .unwrap();
        assert_eq!(m.backend_name(), "thread");
        let stopped = m.stats();
        assert_eq!(stopped.backend, "thread");
        assert_eq!(
            (stopped.available, stopped.leased, stopped.total),
            (0, 0, 0)
        );
        m.start().await.unwrap();
        let s = m.stats();
        assert_eq!(s.backend, "thread");
        assert_eq!(s.desired, 2);
        assert_eq!(s.max_pools, 3);
        assert_eq!(s.min_pools, 2);
        assert_eq!(s.available, 2);
        assert_eq!(s.leased, 0);
        assert_eq!(s.total, 2);
        assert_eq!(s.workers_per_pool, 2);
        assert!(s.leases.is_empty());
        let a = m.acquire().await.unwrap();
        let b = m.acquire().await.unwrap();
        let c = m.acquire().await.unwrap();
        let s = m.stats();
        assert_eq!((s.available, s.leased, s.total), (0, 3, 3));
        assert_eq!(s.leases.len(), 3);
        drop(b);
        let s = m.stats();
        assert_eq!(s.available + s.leased, s.total);
        assert_eq!(s.leased, 2);
        drop((a, c));
        m.stop().await;
        let s = m.stats();
        assert_eq!((s.available, s.leased, s.total), (0, 0, 0));
        assert_eq!(s.max_pools, 3, "limits are reported while stopped too");
    });
}

#[test]
fn count_accessors_agree_with_stats() {
    block_on(async {
        let m = builder("st02").max_pools(3).min_pools(1).build().unwrap();
        m.start().await.unwrap();
        let check = |m: &LeasedExecutorManager<ThreadBackend>| {
            let s = m.stats();
            assert_eq!(m.available_count(), s.available);
            assert_eq!(m.leased_count(), s.leased);
            assert_eq!(m.total_count(), s.total);
            assert_eq!(s.available + s.leased, s.total);
        };
        check(&m);
        let mut held = Vec::new();
        for n in 1..=3 {
            held.push(m.acquire().await.unwrap());
            check(&m);
            assert_eq!(m.leased_count(), n);
        }
        while let Some(lease) = held.pop() {
            drop(lease);
            check(&m);
        }
        assert_eq!(m.leased_count(), 0);
        m.stop().await;
        check(&m);
    });
}

#[test]
fn stats_describe_each_lease() {
    block_on(async {
        let m = builder("st03")
            .max_pools(2)
            .default_lease(Duration::from_secs(60))
            .lease_grace(Duration::from_secs(5))
            .build()
            .unwrap();
        m.start().await.unwrap();
        let first = m.acquire().owner("first").await.unwrap();
        let second = m.acquire().lease(Duration::from_secs(30)).await.unwrap();
        let (started_tx, started_rx) = mpsc::channel();
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let running = first
            .submit(move || {
                started_tx.send(()).unwrap();
                go_rx.recv().unwrap();
            })
            .unwrap();
        let queued = first.submit(|| ()).unwrap();
        started_rx.recv_timeout(PATIENCE).unwrap();

        let s = m.stats();
        assert_eq!(s.leases.len(), 2);
        assert_eq!(s.leases[0].id, *first.id(), "leases are listed in order");
        assert_eq!(s.leases[1].id, *second.id());
        let a = &s.leases[0];
        assert_eq!(a.owner.as_deref(), Some("first"));
        assert!(!a.draining);
        assert_eq!(a.pending_jobs, 2);
        assert!(a.until_soft_expiry <= Duration::from_secs(60));
        assert!(a.until_soft_expiry > Duration::from_secs(50));
        assert_eq!(
            a.until_hard_expiry - a.until_soft_expiry,
            Duration::from_secs(5)
        );
        let b = &s.leases[1];
        assert_eq!(b.owner, None);
        assert_eq!(b.pending_jobs, 0);
        assert!(b.until_soft_expiry <= Duration::from_secs(30));
        assert!(b.until_soft_expiry > Duration::from_secs(20));

        let first_id = *first.id();
        drop(first);
        let s = m.stats();
        let a = s.leases.iter().find(|l| l.id == first_id).unwrap();
        assert!(a.draining);
        assert_eq!(a.pending_jobs, 2);
        go_tx.send(()).unwrap();
        running.await.unwrap();
        queued.await.unwrap();
        eventually("drained lease leaves stats", || {
            m.stats().leases.iter().all(|l| l.id != first_id)
        });
        drop(second);
        assert!(m.stats().leases.is_empty());
        m.stop().await;
    });
}

#[test]
fn desired_count_is_reported_by_stats_and_the_accessor() {
    let units = Arc::new(AtomicUsize::new(25));
    let u = units.clone();
    let m = builder("st04")
        .max_pools(4)
        .units_per_pool(10)
        .size_provider(move || u.load(Ordering::SeqCst))
        .build()
        .unwrap();
    assert_eq!(m.desired_executor_count(), 3);
    m.start_blocking().unwrap();
    assert_eq!(m.stats().desired, 3);
    units.store(40, Ordering::SeqCst);
    assert_eq!(m.desired_executor_count(), 4);
    m.notify_scale_changed();
    eventually("stats follow the provider", || m.stats().desired == 4);
    m.stop_blocking();
}

// ----- logs --------------------------------------------------------------

#[test]
fn start_and_pool_creation_are_logged() {
    let mark = log_mark();
    let m = builder("st05").max_pools(3).min_pools(2).build().unwrap();
    m.start_blocking().unwrap();
    let checker = "st05-checker";
    eventually("start logged", || {
        from_thread(mark, checker)
            .iter()
            .any(|r| r.level == Level::Info && r.message.contains("start"))
    });
    let created = |mark| {
        from_thread(mark, checker)
            .iter()
            .filter(|r| r.level == Level::Debug && r.message.contains("created"))
            .count()
    };
    assert_eq!(created(mark), 2, "{:?}", from_thread(mark, checker));
    // A pool created on demand is logged too, by the thread that created
    // it (pool 3).
    let later = log_mark();
    let a = m.acquire().blocking().unwrap();
    let b = m.acquire().blocking().unwrap();
    let c = m.acquire().blocking().unwrap();
    eventually("on-demand creation logged", || {
        from_thread(later, "st05-create-3")
            .iter()
            .filter(|r| r.level == Level::Debug && r.message.contains("created"))
            .count()
            == 1
    });
    all_target_leasepool(&from_thread(later, "st05-create-3"));
    all_target_leasepool(&from_thread(mark, checker));
    drop((a, b, c));
    m.stop_blocking();
}

#[test]
fn stop_is_logged_once() {
    let m = builder("st06").max_pools(1).build().unwrap();
    m.start_blocking().unwrap();
    let me = current_thread();
    let mark = log_mark();
    m.stop_blocking();
    let stopped = |mark| {
        from_thread(mark, &me)
            .into_iter()
            .filter(|r| r.level == Level::Info && r.message.contains("stop"))
            .collect::<Vec<_>>()
    };
    let records = stopped(mark);
    assert_eq!(records.len(), 1, "{records:?}");
    all_target_leasepool(&records);
    let again = log_mark();
    m.stop_blocking();
    assert!(stopped(again).is_empty(), "a no-op stop logged");
}

#[test]
fn each_lease_and_its_release_are_logged() {
    let mark = log_mark();
    let m = builder("st07").max_pools(1).build().unwrap();
    m.start_blocking().unwrap();
    let lease = m.acquire().owner("log-owner-st07").blocking().unwrap();
    let id = *lease.id();
    let leased = about(mark, &id);
    assert_eq!(leased.len(), 1, "{leased:?}");
    assert_eq!(leased[0].level, Level::Debug);
    assert!(leased[0].message.contains("log-owner-st07"), "{leased:?}");
    drop(lease);
    let released = about(mark, &id);
    assert_eq!(released.len(), 2, "{released:?}");
    assert_eq!(released[1].level, Level::Debug);
    all_target_leasepool(&released);
    m.stop_blocking();
}

#[test]
fn a_thousand_leases_add_no_line_at_info() {
    let m = builder("st07q").max_pools(2).build().unwrap();
    m.start_blocking().unwrap();
    let me = current_thread();
    let mark = log_mark();
    for i in 0..1000 {
        let lease = m.acquire().owner(format!("quiet-{i}")).blocking().unwrap();
        lease.submit(|| ()).unwrap().wait().unwrap();
        drop(lease);
    }
    let at_info: Vec<_> = from_thread(mark, &me)
        .into_iter()
        .filter(|r| r.level <= Level::Info)
        .collect();
    assert!(at_info.is_empty(), "{at_info:?}");
    // They are all there at debug.
    let at_debug = from_thread(mark, &me)
        .into_iter()
        .filter(|r| r.level == Level::Debug && r.message.contains("quiet-"))
        .count();
    assert_eq!(at_debug, 1000);
    m.stop_blocking();
}

#[test]
fn draining_and_its_end_are_logged() {
    let mark = log_mark();
    let m = builder("st08").max_pools(1).build().unwrap();
    m.start_blocking().unwrap();
    let lease = m.acquire().blocking().unwrap();
    let id = *lease.id();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let job = lease.submit(move || go_rx.recv().unwrap()).unwrap();
    let after_lease = about(mark, &id).len();
    drop(lease);
    let after_release = about(mark, &id).len();
    assert!(
        after_release > after_lease,
        "a release into draining is logged: {:?}",
        about(mark, &id)
    );
    go_tx.send(()).unwrap();
    job.wait().unwrap();
    eventually("finalisation logged", || {
        about(mark, &id).len() > after_release
    });
    all_target_leasepool(&about(mark, &id));
    m.stop_blocking();
}

#[test]
fn revocation_is_logged_as_a_warning() {
    let mark = log_mark();
    let m = builder("st09")
        .max_pools(1)
        .lease_grace(Duration::ZERO)
        .check_interval(Duration::from_secs(3600))
        .build()
        .unwrap();
    m.start_blocking().unwrap();
    let lease = m
        .acquire()
        .owner("revokee")
        .lease(Duration::from_millis(80))
        .blocking()
        .unwrap();
    let id = *lease.id();
    eventually("revocation warning", || {
        about(mark, &id).iter().any(|r| r.level == Level::Warn)
    });
    let warnings: Vec<_> = about(mark, &id)
        .into_iter()
        .filter(|r| r.level == Level::Warn)
        .collect();
    assert!(
        warnings.iter().any(|r| r.message.contains("revok")),
        "{warnings:?}"
    );
    all_target_leasepool(&warnings);
    drop(lease);
    m.stop_blocking();
}

#[test]
fn retiring_a_broken_pool_is_logged_as_a_warning() {
    let mark = log_mark();
    let (gate_tx, gate_rx) = mpsc::channel::<()>();
    let gate = Mutex::new(gate_rx);
    let backend = ThreadBackend::new().initializer(move || {
        if std::thread::current().name() == Some("st10-1_0") {
            gate.lock().unwrap().recv().unwrap();
            return Err("st10 leased pool failed");
        }
        Ok(())
    });
    let m = LeasedExecutorManager::builder(backend)
        .max_pools(1)
        .workers_per_pool(1)
        .name_prefix("st10")
        .build()
        .unwrap();
    m.start_blocking().unwrap();
    let lease = m.acquire().blocking().unwrap();
    let id = *lease.id();
    gate_tx.send(()).unwrap();
    eventually("retirement warning", || {
        about(mark, &id)
            .iter()
            .any(|r| r.level == Level::Warn && r.message.contains("st10 leased pool failed"))
    });
    all_target_leasepool(&about(mark, &id));
    drop(lease);
    m.stop_blocking();
}

#[test]
fn retiring_a_broken_idle_pool_is_logged_as_a_warning() {
    let mark = log_mark();
    let (gate_tx, gate_rx) = mpsc::channel::<()>();
    let gate = Mutex::new(gate_rx);
    let backend = ThreadBackend::new().initializer(move || {
        if std::thread::current().name() == Some("st11-2_0") {
            gate.lock().unwrap().recv().unwrap();
            return Err("st11 idle pool failed");
        }
        Ok(())
    });
    let m = LeasedExecutorManager::builder(backend)
        .max_pools(2)
        .min_pools(2)
        .workers_per_pool(1)
        .name_prefix("st11")
        .build()
        .unwrap();
    m.start_blocking().unwrap();
    gate_tx.send(()).unwrap();
    eventually("idle retirement warning", || {
        logs_since(mark)
            .iter()
            .any(|r| r.level == Level::Warn && r.message.contains("st11 idle pool failed"))
    });
    m.stop_blocking();
}

#[test]
fn a_panicking_size_provider_is_logged_at_debug() {
    let panicking = Arc::new(AtomicBool::new(true));
    let p = panicking.clone();
    let m = builder("st12")
        .max_pools(2)
        .size_provider(move || {
            if p.load(Ordering::SeqCst) {
                panic!("st12 provider exploded");
            }
            5
        })
        .build()
        .unwrap();
    let me = current_thread();
    let mark = log_mark();
    assert_eq!(m.desired_executor_count(), 1, "a panic counts as 0 units");
    let debug: Vec<_> = from_thread(mark, &me)
        .into_iter()
        .filter(|r| r.level == Level::Debug)
        .collect();
    assert_eq!(debug.len(), 1, "{debug:?}");
    all_target_leasepool(&debug);
    panicking.store(false, Ordering::SeqCst);
    assert_eq!(m.desired_executor_count(), 1);
}

/// With `serde`, every duration is a number of seconds, never a
/// `{secs, nanos}` object.
#[cfg(feature = "serde")]
#[test]
fn serialised_stats_give_durations_in_seconds() {
    let m = builder("st-json").max_pools(1).build().unwrap();
    m.start_blocking().unwrap();
    let lease = m
        .acquire()
        .owner("json")
        .lease(Duration::from_secs(30))
        .blocking()
        .unwrap();
    let json = serde_json::to_value(m.stats()).unwrap();
    let entry = &json["leases"][0];
    let soft = entry["until_soft_expiry"].as_f64().expect("a number");
    assert!(soft > 20.0 && soft <= 30.0, "{entry}");
    assert!(entry["until_hard_expiry"].is_number(), "{entry}");
    assert!(json["counters"]["wait_time_total"].is_number(), "{json}");
    assert!(!json.to_string().contains("nanos"), "{json}");
    drop(lease);
    let grinder = leasepool::WorkGrinder::builder(m.clone())
        .max_wait(Duration::from_millis(250))
        .build()
        .unwrap();
    let g = serde_json::to_value(grinder.stats()).unwrap();
    assert_eq!(g["max_wait"].as_f64(), Some(0.25), "{g}");
    assert!(g["oldest_wait"].is_null(), "{g}");
    let report = m.shutdown_blocking(Duration::from_millis(10));
    let report = serde_json::to_value(report).unwrap();
    assert!(report["elapsed"].is_number(), "{report}");
}
