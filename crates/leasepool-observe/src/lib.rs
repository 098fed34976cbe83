//! Observers for [leasepool](https://docs.rs/leasepool): what a manager
//! does, recorded through `tracing` and the `metrics` facade.
//!
//! leasepool's core depends on neither crate. Each manager reports to one
//! [`Observer`]; this crate provides the ones its features turn on, and
//! leasepool's own backends (thread, rayon, process) pick them up through
//! [`observer_for`], so turning a feature on is all it takes:
//!
//! - `tracing`: every event is a `tracing` event under target
//!   `leasepool`, with structured fields (`manager`, `event`, `lease`,
//!   `owner`, `pool`, `wait_s`), at the event's level. Every job submitted
//!   through `submit`, `run`, `call` or a grinder runs inside the span that
//!   was current when it was submitted, so `tracing::Span::current()`
//!   inside the job is the caller's span. For the process backend, the
//!   parent-side work of a call (encoding, delivering the result) runs in
//!   that span.
//! - `metrics`: gauges, counters and histograms named `leasepool_*`,
//!   labelled `manager = name_prefix`, through the `metrics` facade, so
//!   any exporter works (see [`metric`] for the names). Install the
//!   exporter's recorder before starting the manager.
//!
//! Without `tracing`, events go through `log` as before
//! ([`LogObserver`](leasepool_core::observe::LogObserver)). A custom backend can return [`observer_for`] from
//! `ExecutorBackend::observer`, and any manager can be given an observer
//! with `ManagerBuilder::observer`.

#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

use std::sync::Arc;

use leasepool_core::ManagerConfig;
#[cfg(not(feature = "tracing"))]
use leasepool_core::observe::LogObserver;
use leasepool_core::observe::{Event, JobContext, Level, Observer, Snapshot};

#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metric;
#[cfg(feature = "tracing")]
mod span;

#[cfg(feature = "metrics")]
pub use metric::MetricsObserver;
#[cfg(feature = "tracing")]
#[cfg_attr(docsrs, doc(cfg(feature = "tracing")))]
pub use span::TracingObserver;

/// The observer this crate's enabled features make for a manager with
/// `config`: `None` when neither `tracing` nor `metrics` is on (the
/// manager then logs through `log`).
pub fn observer_for(config: &ManagerConfig) -> Option<Arc<dyn Observer>> {
    let _ = config;
    #[cfg(any(feature = "tracing", feature = "metrics"))]
    {
        Some(Arc::new(Observers::new(config)))
    }
    #[cfg(not(any(feature = "tracing", feature = "metrics")))]
    {
        None
    }
}

/// Records (through `tracing`, else `log`) and, with `metrics`, metrics.
struct Observers {
    #[cfg(feature = "tracing")]
    records: TracingObserver,
    #[cfg(not(feature = "tracing"))]
    records: LogObserver,
    #[cfg(feature = "metrics")]
    metrics: MetricsObserver,
}

impl Observers {
    #[cfg_attr(not(any(feature = "tracing", feature = "metrics")), allow(dead_code))]
    fn new(config: &ManagerConfig) -> Self {
        let _ = config;
        Observers {
            #[cfg(feature = "tracing")]
            records: TracingObserver::new(config.name_prefix()),
            #[cfg(not(feature = "tracing"))]
            records: LogObserver,
            #[cfg(feature = "metrics")]
            metrics: MetricsObserver::new(config.name_prefix()),
        }
    }
}

impl Observer for Observers {
    fn max_level(&self) -> Option<Level> {
        let records = self.records.max_level();
        #[cfg(feature = "metrics")]
        let records = records.max(self.metrics.max_level());
        records
    }

    fn event(&self, event: &Event) {
        if self
            .records
            .max_level()
            .is_some_and(|max| event.level() <= max)
        {
            self.records.event(event);
        }
        #[cfg(feature = "metrics")]
        self.metrics.event(event);
    }

    fn wants_snapshots(&self) -> bool {
        #[cfg(feature = "metrics")]
        return true;
        #[cfg(not(feature = "metrics"))]
        false
    }

    fn snapshot(&self, snapshot: &Snapshot) {
        let _ = snapshot;
        #[cfg(feature = "metrics")]
        self.metrics.snapshot(snapshot);
    }

    fn capture(&self) -> Option<Box<dyn JobContext>> {
        let records = self.records.capture();
        #[cfg(feature = "metrics")]
        let records = both(records, self.metrics.capture());
        records
    }
}

/// One context inside the other (the first outermost), or whichever
/// exists.
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
fn both(
    outer: Option<Box<dyn JobContext>>,
    inner: Option<Box<dyn JobContext>>,
) -> Option<Box<dyn JobContext>> {
    match (outer, inner) {
        (Some(outer), Some(inner)) => Some(Box::new(Nested(outer, inner))),
        (outer, None) => outer,
        (None, inner) => inner,
    }
}

struct Nested(Box<dyn JobContext>, Box<dyn JobContext>);

impl JobContext for Nested {
    fn scope(&self, job: &mut dyn FnMut()) {
        self.0.scope(&mut || self.1.scope(job));
    }
}
