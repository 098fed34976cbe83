//! Gauges, counters and histograms through the `metrics` facade.
//!
//! Every metric is labelled `manager` = the manager's `name_prefix`.
//!
//! | name | kind | what |
//! |---|---|---|
//! | `leasepool_pools` | gauge | pools owned (`available + leased`) |
//! | `leasepool_pools_available` | gauge | idle pools |
//! | `leasepool_pools_leased` | gauge | leased pools |
//! | `leasepool_pools_desired` | gauge | the adaptive target |
//! | `leasepool_pools_max` | gauge | `max_pools` |
//! | `leasepool_waiters` | gauge | acquires queued |
//! | `leasepool_acquired_total` | counter | leases granted |
//! | `leasepool_acquired_after_wait_total` | counter | of those, after queueing |
//! | `leasepool_acquire_timed_out_total` | counter | acquires that timed out |
//! | `leasepool_acquire_unavailable_total` | counter | fail-fast acquires refused |
//! | `leasepool_leases_released_total` | counter | leases released |
//! | `leasepool_leases_revoked_total` | counter | leases revoked |
//! | `leasepool_leases_renewed_total` | counter | renewals |
//! | `leasepool_pools_created_total` | counter | pools created |
//! | `leasepool_pools_broken_total` | counter | pools retired as broken |
//! | `leasepool_jobs_completed_total` | counter | jobs that returned |
//! | `leasepool_jobs_panicked_total` | counter | jobs that panicked |
//! | `leasepool_jobs_cancelled_total` | counter | jobs cancelled before running |
//! | `leasepool_jobs_failed_total` | counter | jobs that failed otherwise |
//! | `leasepool_acquire_wait_seconds` | histogram | time from acquire to grant |
//! | `leasepool_job_run_seconds` | histogram | time each job ran |
//!
//! Gauges and counters are set from the manager's state after each change,
//! read under the lock that made the change, so they agree with
//! `ManagerStats` (a snapshot that arrives after a newer one is ignored).

use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Instant;

use leasepool_core::observe::{Event, JobContext, Level, Observer, Snapshot};
use metrics::{Counter, Gauge, Histogram, Unit};

/// Publishes a manager's state through the `metrics` facade (see the
/// [module docs](self) for the names).
///
/// Metric handles are taken from the recorder installed when the observer
/// is made, and again each time the manager starts; install the
/// exporter's recorder before starting the manager.
#[derive(Debug)]
pub struct MetricsObserver {
    manager: Arc<str>,
    handles: RwLock<Arc<Handles>>,
    /// The `seq` of the newest snapshot published: an older one that
    /// arrives late (from another thread) is ignored.
    published: Mutex<u64>,
}

#[derive(Debug)]
struct Handles {
    pools: Gauge,
    available: Gauge,
    leased: Gauge,
    desired: Gauge,
    max_pools: Gauge,
    waiters: Gauge,
    acquired: Counter,
    acquired_after_wait: Counter,
    timed_out: Counter,
    unavailable: Counter,
    released: Counter,
    revoked: Counter,
    renewed: Counter,
    pools_created: Counter,
    pools_broken: Counter,
    jobs_completed: Counter,
    jobs_panicked: Counter,
    jobs_cancelled: Counter,
    jobs_failed: Counter,
    acquire_wait: Histogram,
    job_run: Histogram,
}

impl Handles {
    fn register(manager: &Arc<str>) -> Self {
        describe();
        let label = manager.to_string();
        macro_rules! gauge {
            ($name:literal) => {
                metrics::gauge!($name, "manager" => label.clone())
            };
        }
        macro_rules! counter {
            ($name:literal) => {
                metrics::counter!($name, "manager" => label.clone())
            };
        }
        Handles {
            pools: gauge!("leasepool_pools"),
            available: gauge!("leasepool_pools_available"),
            leased: gauge!("leasepool_pools_leased"),
            desired: gauge!("leasepool_pools_desired"),
            max_pools: gauge!("leasepool_pools_max"),
            waiters: gauge!("leasepool_waiters"),
            acquired: counter!("leasepool_acquired_total"),
            acquired_after_wait: counter!("leasepool_acquired_after_wait_total"),
            timed_out: counter!("leasepool_acquire_timed_out_total"),
            unavailable: counter!("leasepool_acquire_unavailable_total"),
            released: counter!("leasepool_leases_released_total"),
            revoked: counter!("leasepool_leases_revoked_total"),
            renewed: counter!("leasepool_leases_renewed_total"),
            pools_created: counter!("leasepool_pools_created_total"),
            pools_broken: counter!("leasepool_pools_broken_total"),
            jobs_completed: counter!("leasepool_jobs_completed_total"),
            jobs_panicked: counter!("leasepool_jobs_panicked_total"),
            jobs_cancelled: counter!("leasepool_jobs_cancelled_total"),
            jobs_failed: counter!("leasepool_jobs_failed_total"),
            acquire_wait: metrics::histogram!("leasepool_acquire_wait_seconds", "manager" => label.clone()),
            job_run: metrics::histogram!("leasepool_job_run_seconds", "manager" => label.clone()),
        }
    }
}

/// Descriptions and units, for exporters that show them.
fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_gauge!("leasepool_pools", "Pools owned (available + leased).");
    describe_gauge!("leasepool_pools_available", "Idle pools, ready to lease.");
    describe_gauge!(
        "leasepool_pools_leased",
        "Leased pools, draining ones included."
    );
    describe_gauge!("leasepool_pools_desired", "The adaptive target pool count.");
    describe_gauge!("leasepool_pools_max", "The configured max_pools.");
    describe_gauge!("leasepool_waiters", "Acquires queued for a pool.");
    describe_counter!("leasepool_acquired_total", "Leases granted.");
    describe_counter!(
        "leasepool_acquired_after_wait_total",
        "Leases granted to a caller that queued."
    );
    describe_counter!(
        "leasepool_acquire_timed_out_total",
        "Acquires that timed out."
    );
    describe_counter!(
        "leasepool_acquire_unavailable_total",
        "Fail-fast acquires refused: no pool free."
    );
    describe_counter!(
        "leasepool_leases_released_total",
        "Leases released by their holders."
    );
    describe_counter!(
        "leasepool_leases_revoked_total",
        "Leases revoked at hard expiry or at a shutdown's deadline."
    );
    describe_counter!("leasepool_leases_renewed_total", "Lease renewals.");
    describe_counter!("leasepool_pools_created_total", "Pools created.");
    describe_counter!("leasepool_pools_broken_total", "Pools retired as broken.");
    describe_counter!(
        "leasepool_jobs_completed_total",
        "Jobs that returned a value."
    );
    describe_counter!("leasepool_jobs_panicked_total", "Jobs that panicked.");
    describe_counter!(
        "leasepool_jobs_cancelled_total",
        "Jobs that ended without running."
    );
    describe_counter!("leasepool_jobs_failed_total", "Jobs that failed otherwise.");
    describe_histogram!(
        "leasepool_acquire_wait_seconds",
        Unit::Seconds,
        "Time from acquire to grant."
    );
    describe_histogram!(
        "leasepool_job_run_seconds",
        Unit::Seconds,
        "Time each job ran."
    );
}

impl MetricsObserver {
    /// An observer for the manager named `manager` (its `name_prefix`).
    pub fn new(manager: &str) -> Self {
        let manager: Arc<str> = Arc::from(manager);
        let handles = RwLock::new(Arc::new(Handles::register(&manager)));
        MetricsObserver {
            manager,
            handles,
            published: Mutex::new(0),
        }
    }

    fn handles(&self) -> Arc<Handles> {
        self.handles
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Observer for MetricsObserver {
    /// `Debug`: grants carry the wait time.
    fn max_level(&self) -> Option<Level> {
        Some(Level::Debug)
    }

    fn event(&self, event: &Event) {
        match event {
            Event::Leased { waited, .. } => {
                self.handles().acquire_wait.record(waited.as_secs_f64());
            }
            Event::Started { .. } => {
                // A recorder installed since the handles were taken.
                let fresh = Arc::new(Handles::register(&self.manager));
                *self.handles.write().unwrap_or_else(PoisonError::into_inner) = fresh;
            }
            _ => {}
        }
    }

    fn wants_snapshots(&self) -> bool {
        true
    }

    fn snapshot(&self, snapshot: &Snapshot) {
        // Held while publishing, so the newest snapshot is the last one
        // written whatever order the threads arrive in.
        let mut published = self
            .published
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if snapshot.seq <= *published {
            return;
        }
        *published = snapshot.seq;
        let h = self.handles();
        h.pools.set(snapshot.total as f64);
        h.available.set(snapshot.available as f64);
        h.leased.set(snapshot.leased as f64);
        h.desired.set(snapshot.desired as f64);
        h.max_pools.set(snapshot.max_pools as f64);
        h.waiters.set(snapshot.waiting as f64);
        let c = &snapshot.counters;
        h.acquired.absolute(c.acquired);
        h.acquired_after_wait.absolute(c.acquired_after_wait);
        h.timed_out.absolute(c.timed_out);
        h.unavailable.absolute(c.unavailable);
        h.released.absolute(c.leases_released);
        h.revoked.absolute(c.leases_revoked);
        h.renewed.absolute(c.leases_renewed);
        h.pools_created.absolute(c.pools_created);
        h.pools_broken.absolute(c.pools_broken);
        h.jobs_completed.absolute(c.jobs_completed);
        h.jobs_panicked.absolute(c.jobs_panicked);
        h.jobs_cancelled.absolute(c.jobs_cancelled);
        h.jobs_failed.absolute(c.jobs_failed);
    }

    fn capture(&self) -> Option<Box<dyn JobContext>> {
        Some(Box::new(Timed(self.handles().job_run.clone())))
    }
}

/// Times the job into `leasepool_job_run_seconds`.
struct Timed(Histogram);

impl JobContext for Timed {
    fn scope(&self, job: &mut dyn FnMut()) {
        let started = Instant::now();
        job();
        self.0.record(started.elapsed().as_secs_f64());
    }
}
