//! The `tracing` and `metrics` features, through the public API: jobs run
//! in their submitter's span on every path, records carry structured
//! fields, a busy manager writes a constant number of info records, and
//! metrics agree with `stats()`.
//!
//! One global `tracing` subscriber and one global metrics recorder serve
//! every test of this binary; each test uses its own `name_prefix` and
//! reads only what is labelled with it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use futures_lite::future::block_on;
use leasepool::{
    Error, LeasedExecutorManager, ManagerBuilder, RayonBackend, ThreadBackend, WorkGrinder,
};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use tracing::field::{Field, Visit};
use tracing::span::Id;
use tracing::{Span, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

const PATIENCE: Duration = Duration::from_secs(30);

/// One `leasepool` tracing event as the capture layer saw it.
#[derive(Debug, Clone)]
struct Record {
    level: tracing::Level,
    fields: BTreeMap<String, String>,
}

impl Record {
    fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }
}

static RECORDS: Mutex<Vec<Record>> = Mutex::new(Vec::new());

struct Capture;

#[derive(Default)]
struct Fields(BTreeMap<String, String>);

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

impl<S: Subscriber> Layer<S> for Capture {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        if event.metadata().target() != "leasepool" {
            return;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        RECORDS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Record {
                level: *event.metadata().level(),
                fields: fields.0,
            });
    }
}

/// Installs the subscriber and the recorder once, before any manager.
fn setup() -> &'static Snapshotter {
    static SNAPSHOTTER: OnceLock<Snapshotter> = OnceLock::new();
    SNAPSHOTTER.get_or_init(|| {
        let subscriber = tracing_subscriber::registry().with(Capture);
        tracing::subscriber::set_global_default(subscriber).expect("one global subscriber");
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        recorder.install().expect("one global recorder");
        snapshotter
    })
}

/// The records of manager `prefix`.
fn records_of(prefix: &str) -> Vec<Record> {
    RECORDS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .filter(|r| r.field("manager") == Some(prefix))
        .cloned()
        .collect()
}

fn thread_manager(prefix: &str) -> LeasedExecutorManager<ThreadBackend> {
    setup();
    started(
        LeasedExecutorManager::builder(ThreadBackend::new())
            .max_pools(2)
            .workers_per_pool(2)
            .name_prefix(prefix),
    )
}

fn started<B: leasepool::ExecutorBackend>(builder: ManagerBuilder<B>) -> LeasedExecutorManager<B> {
    let manager = builder.build().expect("valid config");
    manager.start_blocking().expect("starts");
    manager
}

fn current() -> Option<Id> {
    Span::current().id()
}

fn double(x: u64) -> u64 {
    x * 2
}

#[test]
fn every_job_runs_in_the_span_current_at_submit_thread_backend() {
    let m = thread_manager("obs-span-thread");
    let span = tracing::info_span!("request", id = 1);
    let want = span.id();
    assert!(want.is_some(), "the subscriber gives spans ids");
    let lease = m.acquire().timeout(PATIENCE).blocking().unwrap();
    span.in_scope(|| {
        let submitted = lease.submit(current).unwrap();
        assert_eq!(submitted.wait().unwrap(), want, "submit");
        let ran = block_on(lease.run(current)).unwrap();
        assert_eq!(ran, want, "run");
        let called = block_on(lease.call(double, 21)).unwrap();
        assert_eq!(called, 42);
        let executor = lease.executor();
        assert_eq!(
            executor.submit(current).unwrap().wait().unwrap(),
            want,
            "executor"
        );
        assert_eq!(block_on(m.run(current)).unwrap(), want, "manager.run");
    });
    // Outside any span, a job sees none.
    assert_eq!(lease.submit(current).unwrap().wait().unwrap(), None);
    drop(lease);
    m.stop_blocking();
}

#[test]
fn grinder_items_run_in_their_own_submitters_span() {
    let m = thread_manager("obs-span-grinder");
    let grinder = WorkGrinder::builder(m.clone())
        .batch_size_threshold(4)
        .max_wait(Duration::from_millis(2))
        .build()
        .unwrap();
    grinder.start_blocking().unwrap();
    // Items of one batch come from different spans: each sees its own.
    let spans: Vec<Span> = (0..4).map(|i| tracing::info_span!("item", i)).collect();
    let handles: Vec<_> = spans
        .iter()
        .map(|span| span.in_scope(|| grinder.enqueue(current).unwrap()))
        .collect();
    for (span, mut handle) in spans.iter().zip(handles) {
        assert_eq!(handle.wait_timeout(PATIENCE).unwrap().unwrap(), span.id());
    }
    let span = tracing::info_span!("submit");
    let seen = span.in_scope(|| block_on(grinder.submit(current))).unwrap();
    assert_eq!(seen, span.id());
    grinder.stop_blocking(leasepool::StopMode::Drain);
    m.stop_blocking();
}

#[test]
fn rayon_jobs_see_the_submitters_span() {
    setup();
    let m = started(
        LeasedExecutorManager::builder(RayonBackend::new())
            .max_pools(1)
            .workers_per_pool(2)
            .name_prefix("obs-span-rayon"),
    );
    let span = tracing::info_span!("rayon request");
    let lease = m.acquire().timeout(PATIENCE).blocking().unwrap();
    let seen = span.in_scope(|| lease.submit(current).unwrap().wait().unwrap());
    assert_eq!(seen, span.id());
    drop(lease);
    m.stop_blocking();
}

#[test]
fn records_carry_structured_fields() {
    let prefix = "obs-fields";
    let m = thread_manager(prefix);
    let lease = m
        .acquire()
        .owner("tenant-7")
        .timeout(PATIENCE)
        .blocking()
        .unwrap();
    let id = lease.id().to_string();
    drop(lease);
    m.stop_blocking();
    let records = records_of(prefix);
    let leased = records
        .iter()
        .find(|r| r.field("event") == Some("leased"))
        .unwrap_or_else(|| panic!("no leased record in {records:?}"));
    assert_eq!(leased.level, tracing::Level::DEBUG);
    assert_eq!(leased.field("owner"), Some("tenant-7"), "{leased:?}");
    assert_eq!(leased.field("lease"), Some(id.as_str()), "{leased:?}");
    assert_eq!(leased.field("pool"), Some("1"), "{leased:?}");
    let waited: f64 = leased.field("wait_s").expect("wait_s").parse().unwrap();
    assert!(waited >= 0.0, "{leased:?}");
    for event in ["started", "stopped"] {
        assert!(
            records
                .iter()
                .any(|r| r.field("event") == Some(event) && r.level == tracing::Level::INFO),
            "no {event} at info in {records:?}"
        );
    }
}

#[test]
fn a_thousand_leases_add_no_info_record() {
    let prefix = "obs-quiet";
    let m = thread_manager(prefix);
    let info = || {
        records_of(prefix)
            .iter()
            .filter(|r| r.level <= tracing::Level::INFO)
            .count()
    };
    let before = info();
    for _ in 0..1_000 {
        let lease = m.acquire().timeout(PATIENCE).blocking().unwrap();
        lease.submit(|| ()).unwrap().wait().unwrap();
    }
    assert_eq!(info(), before, "{:?}", records_of(prefix));
    m.stop_blocking();
}

/// The metrics of manager `prefix`: name to value.
fn metrics_of(prefix: &str) -> BTreeMap<String, DebugValue> {
    setup()
        .snapshot()
        .into_vec()
        .into_iter()
        .filter(|(key, ..)| {
            key.key()
                .labels()
                .any(|l| l.key() == "manager" && l.value() == prefix)
        })
        .map(|(key, _, _, value)| (key.key().name().to_owned(), value))
        .collect()
}

fn counter(metrics: &BTreeMap<String, DebugValue>, name: &str) -> u64 {
    match metrics.get(name) {
        Some(DebugValue::Counter(n)) => *n,
        other => panic!("{name}: {other:?} in {metrics:?}"),
    }
}

fn gauge(metrics: &BTreeMap<String, DebugValue>, name: &str) -> f64 {
    match metrics.get(name) {
        Some(DebugValue::Gauge(v)) => v.into_inner(),
        other => panic!("{name}: {other:?} in {metrics:?}"),
    }
}

fn samples(metrics: &BTreeMap<String, DebugValue>, name: &str) -> usize {
    match metrics.get(name) {
        Some(DebugValue::Histogram(v)) => v.len(),
        other => panic!("{name}: {other:?} in {metrics:?}"),
    }
}

#[test]
fn metrics_follow_a_scripted_sequence_and_agree_with_stats() {
    let prefix = "obs-metrics";
    setup();
    let m = started(
        LeasedExecutorManager::builder(ThreadBackend::new())
            .max_pools(1)
            .workers_per_pool(1)
            .lease_grace(Duration::from_millis(20))
            .check_interval(Duration::from_millis(10))
            .name_prefix(prefix),
    );
    // Two leases released, each running one job (one panics).
    for fail in [false, true] {
        let lease = m.acquire().timeout(PATIENCE).blocking().unwrap();
        let outcome = lease.submit(move || assert!(!fail, "boom")).unwrap().wait();
        assert_eq!(outcome.is_err(), fail);
    }
    // The only pool is held: fail-fast is refused, a short wait times out.
    let held = m.acquire().timeout(PATIENCE).blocking().unwrap();
    let refused = m.acquire().wait(false).blocking();
    assert!(
        matches!(refused, Err(Error::Unavailable { .. })),
        "{refused:?}"
    );
    let timed_out = m.acquire().timeout(Duration::from_millis(20)).blocking();
    assert!(
        matches!(timed_out, Err(Error::Timeout { .. })),
        "{timed_out:?}"
    );
    drop(held);
    // A lease revoked at hard expiry.
    let revoked = m
        .acquire()
        .lease(Duration::from_millis(20))
        .timeout(PATIENCE)
        .blocking()
        .unwrap();
    let deadline = Instant::now() + PATIENCE;
    while revoked.ended().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(revoked.ended().is_some(), "the lease was never revoked");
    drop(revoked);
    // The replacement pool is created by the checker: wait for it.
    let deadline = Instant::now() + PATIENCE;
    while m.stats().total < 1 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    // Each change publishes its snapshot after the lock is released: wait
    // until the last one is out, then everything must agree.
    let deadline = Instant::now() + PATIENCE;
    let (stats, metrics) = loop {
        let stats = m.stats();
        let metrics = metrics_of(prefix);
        let caught_up = metrics
            .get("leasepool_pools_created_total")
            .is_some_and(|v| *v == DebugValue::Counter(stats.counters.pools_created))
            && metrics.get("leasepool_pools").is_some_and(
                |v| matches!(v, DebugValue::Gauge(g) if g.into_inner() == stats.total as f64),
            );
        if caught_up || Instant::now() >= deadline {
            break (stats, metrics);
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let c = &stats.counters;
    assert_eq!(counter(&metrics, "leasepool_acquired_total"), c.acquired);
    assert_eq!(c.acquired, 4);
    assert_eq!(counter(&metrics, "leasepool_acquire_unavailable_total"), 1);
    assert_eq!(counter(&metrics, "leasepool_acquire_timed_out_total"), 1);
    assert_eq!(counter(&metrics, "leasepool_leases_revoked_total"), 1);
    assert_eq!(
        counter(&metrics, "leasepool_leases_released_total"),
        c.leases_released
    );
    assert_eq!(counter(&metrics, "leasepool_jobs_completed_total"), 1);
    assert_eq!(counter(&metrics, "leasepool_jobs_panicked_total"), 1);
    assert_eq!(
        counter(&metrics, "leasepool_pools_created_total"),
        c.pools_created
    );
    assert_eq!(gauge(&metrics, "leasepool_pools_max"), 1.0);
    assert_eq!(gauge(&metrics, "leasepool_pools"), stats.total as f64);
    assert_eq!(gauge(&metrics, "leasepool_pools_leased"), 0.0);
    assert_eq!(gauge(&metrics, "leasepool_waiters"), 0.0);
    assert_eq!(samples(&metrics, "leasepool_acquire_wait_seconds"), 4);
    assert_eq!(samples(&metrics, "leasepool_job_run_seconds"), 2);
    m.stop_blocking();
}

#[test]
fn an_observer_set_on_the_builder_replaces_the_backends() {
    struct Counting(Arc<Mutex<Vec<&'static str>>>);
    impl leasepool::observe::Observer for Counting {
        fn max_level(&self) -> Option<leasepool::observe::Level> {
            Some(leasepool::observe::Level::Debug)
        }
        fn event(&self, event: &leasepool::observe::Event) {
            self.0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(event.name());
        }
    }
    setup();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let prefix = "obs-custom";
    let m = started(
        LeasedExecutorManager::builder(ThreadBackend::new())
            .max_pools(1)
            .name_prefix(prefix)
            .observer(Arc::new(Counting(seen.clone()))),
    );
    drop(m.acquire().timeout(PATIENCE).blocking().unwrap());
    m.stop_blocking();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        ["created", "started", "leased", "finalised", "stopped"],
        "{seen:?}"
    );
    assert!(
        records_of(prefix).is_empty(),
        "the tracing observer was replaced"
    );
    assert!(metrics_of(prefix).is_empty(), "and so was the metrics one");
}
