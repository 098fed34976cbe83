//! Events as `tracing` events; jobs in their submitter's span.

use std::sync::Arc;

use leasepool_core::observe::{Event, JobContext, Level, LogObserver, Observer};
use tracing::Span;
use tracing::level_filters::LevelFilter;

/// Records each event as a `tracing` event (target `leasepool`) with
/// structured fields, and runs each job inside the span that was current
/// when it was submitted.
///
/// Until a `tracing` subscriber is installed (globally or on the thread),
/// events go through `log` as [`LogObserver`] writes them, so a program
/// that only installs a logger loses nothing.
///
/// Fields: `manager` (the `name_prefix`), `event` ([`Event::name`]), and
/// where the event has them `lease`, `owner`, `pool`, `wait_s` (seconds
/// waited in the queue); the message is the event's `Display`.
#[derive(Debug, Clone)]
pub struct TracingObserver {
    manager: Arc<str>,
}

impl TracingObserver {
    /// An observer for the manager named `manager` (its `name_prefix`).
    pub fn new(manager: &str) -> Self {
        TracingObserver {
            manager: Arc::from(manager),
        }
    }
}

/// The structured fields an event has.
#[derive(Default)]
struct Fields<'a> {
    lease: Option<leasepool_core::LeaseId>,
    owner: Option<&'a str>,
    pool: Option<u64>,
    wait_s: Option<f64>,
}

fn fields(event: &Event) -> Fields<'_> {
    match event {
        Event::Leased {
            id,
            owner,
            pool,
            waited,
            ..
        } => Fields {
            lease: Some(*id),
            owner: owner.as_deref(),
            pool: Some(*pool),
            wait_s: Some(waited.as_secs_f64()),
        },
        Event::SoftExpired { id, owner } => Fields {
            lease: Some(*id),
            owner: owner.as_deref(),
            ..Fields::default()
        },
        Event::Revoked { id, owner, pool } => Fields {
            lease: Some(*id),
            owner: owner.as_deref(),
            pool: Some(*pool),
            ..Fields::default()
        },
        Event::Draining { id, .. } | Event::Renewed { id, .. } => Fields {
            lease: Some(*id),
            ..Fields::default()
        },
        Event::Finalised { id, pool, .. } => Fields {
            lease: Some(*id),
            pool: Some(*pool),
            ..Fields::default()
        },
        Event::Retired { pool, lease, .. } => Fields {
            lease: *lease,
            pool: Some(*pool),
            ..Fields::default()
        },
        Event::Shrunk { pool } | Event::Created { pool } => Fields {
            pool: Some(*pool),
            ..Fields::default()
        },
        Event::WaiterTimedOut { waited } => Fields {
            wait_s: Some(waited.as_secs_f64()),
            ..Fields::default()
        },
        _ => Fields::default(),
    }
}

/// `tracing::event!` needs its level at compile time: one arm per level.
macro_rules! at_level {
    ($level:expr, $($event:tt)*) => {
        match $level {
            Level::Error => tracing::error!($($event)*),
            Level::Warn => tracing::warn!($($event)*),
            Level::Info => tracing::info!($($event)*),
            Level::Debug => tracing::debug!($($event)*),
            Level::Trace => tracing::trace!($($event)*),
        }
    };
}

impl Observer for TracingObserver {
    fn max_level(&self) -> Option<Level> {
        if !tracing::dispatcher::has_been_set() {
            return LogObserver.max_level();
        }
        let current = LevelFilter::current();
        [
            (LevelFilter::TRACE, Level::Trace),
            (LevelFilter::DEBUG, Level::Debug),
            (LevelFilter::INFO, Level::Info),
            (LevelFilter::WARN, Level::Warn),
            (LevelFilter::ERROR, Level::Error),
        ]
        .into_iter()
        .find(|(filter, _)| current >= *filter)
        .map(|(_, level)| level)
    }

    fn event(&self, event: &Event) {
        if !tracing::dispatcher::has_been_set() {
            return LogObserver.event(event);
        }
        let Fields {
            lease,
            owner,
            pool,
            wait_s,
        } = fields(event);
        at_level!(
            event.level(),
            target: "leasepool",
            manager = %self.manager,
            event = event.name(),
            lease = lease.map(tracing::field::display),
            owner,
            pool,
            wait_s,
            "{event}"
        );
    }

    fn capture(&self) -> Option<Box<dyn JobContext>> {
        let span = Span::current();
        if span.is_none() {
            return None;
        }
        Some(Box::new(InSpan(span)))
    }
}

/// The submitter's span, entered around the job.
struct InSpan(Span);

impl JobContext for InSpan {
    fn scope(&self, job: &mut dyn FnMut()) {
        self.0.in_scope(job);
    }
}
