//! What a transition asks the manager to do once the state lock is released.
//!
//! Transitions never call into a backend, a waker or a logger while the lock
//! is held: they describe those actions here and the manager performs them
//! afterwards. That keeps the lock a leaf (no user code, no backend code runs
//! under it) and keeps the state machine testable without threads.

use crate::observe::{Event, Level, Snapshot};

/// Side effects collected while the state lock is held.
#[derive(Debug)]
pub(crate) struct Effects<P, W> {
    /// Pools to shut down (never recycled).
    pub(crate) shutdown: Vec<P>,
    /// Of `shutdown`, the pools revoked at hard expiry (a backend may stop
    /// their running work harder, e.g. kill worker processes).
    pub(crate) revoked: Vec<P>,
    /// Waiters to wake: each has a resolution parked for it.
    pub(crate) wake: Vec<W>,
    /// The checker must run a pass soon (new deadline, capacity to create).
    pub(crate) wake_checker: bool,
    /// Events for the observer.
    pub(crate) events: Vec<Event>,
    /// A graceful shutdown may proceed (set by the manager).
    pub(crate) shutdown_ready: bool,
    /// The state after the transition, for an observer that wants it (set
    /// by the manager).
    pub(crate) snapshot: Option<Box<Snapshot>>,
    /// The least severe event level the observer wants (`None`: no
    /// events are built).
    max_level: Option<Level>,
}

impl<P, W> Default for Effects<P, W> {
    fn default() -> Self {
        Effects {
            shutdown: Vec::new(),
            revoked: Vec::new(),
            wake: Vec::new(),
            wake_checker: false,
            events: Vec::new(),
            shutdown_ready: false,
            snapshot: None,
            max_level: Some(Level::Trace),
        }
    }
}

impl<P, W> Effects<P, W> {
    /// Effects that keep only events at or above `max_level` (the
    /// observer's).
    pub(crate) fn observed(max_level: Option<Level>) -> Self {
        Effects {
            max_level,
            ..Effects::default()
        }
    }

    /// Records an event if the observer wants its level; nothing is built
    /// when it wants no events at all.
    pub(crate) fn note(&mut self, event: impl FnOnce() -> Event) {
        if let Some(max) = self.max_level {
            let event = event();
            if event.level() <= max {
                self.events.push(event);
            }
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.shutdown.is_empty()
            && self.wake.is_empty()
            && !self.wake_checker
            && self.events.is_empty()
            && !self.shutdown_ready
            && self.snapshot.is_none()
    }
}
