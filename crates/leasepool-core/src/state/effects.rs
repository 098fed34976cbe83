//! What a transition asks the manager to do once the state lock is released.
//!
//! Transitions never call into a backend, a waker or a logger while the lock
//! is held: they describe those actions here and the manager performs them
//! afterwards. That keeps the lock a leaf (no user code, no backend code runs
//! under it) and keeps the state machine testable without threads.

use std::sync::Arc;
use std::time::Duration;

use crate::{Error, LeaseId};

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
    /// Log records to emit.
    pub(crate) notes: Vec<Note>,
    /// A graceful shutdown may proceed (set by the manager).
    pub(crate) shutdown_ready: bool,
    /// False when no logger would print the notes: they are not built.
    record_notes: bool,
}

impl<P, W> Default for Effects<P, W> {
    fn default() -> Self {
        Effects {
            shutdown: Vec::new(),
            revoked: Vec::new(),
            wake: Vec::new(),
            wake_checker: false,
            notes: Vec::new(),
            shutdown_ready: false,
            record_notes: true,
        }
    }
}

impl<P, W> Effects<P, W> {
    /// Effects that build log notes only if `record_notes` (the manager
    /// passes whether any logger is listening).
    pub(crate) fn with_notes(record_notes: bool) -> Self {
        Effects {
            record_notes,
            ..Effects::default()
        }
    }

    /// Records a log note, building it only if someone will read it.
    pub(crate) fn note(&mut self, note: impl FnOnce() -> Note) {
        if self.record_notes {
            self.notes.push(note());
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.shutdown.is_empty()
            && self.wake.is_empty()
            && !self.wake_checker
            && self.notes.is_empty()
            && !self.shutdown_ready
    }
}

/// A log-worthy event (docs/guide.md, "Diagnostics"), emitted by the manager through `log`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Note {
    Leased {
        id: LeaseId,
        owner: Option<Arc<str>>,
        pool: u64,
        duration: Duration,
        grace: Duration,
    },
    Draining {
        id: LeaseId,
        pending: usize,
    },
    Finalised {
        id: LeaseId,
        pool: u64,
        outcome: Finalised,
    },
    Renewed {
        id: LeaseId,
        duration: Duration,
    },
    SoftExpired {
        id: LeaseId,
        owner: Option<Arc<str>>,
    },
    Revoked {
        id: LeaseId,
        owner: Option<Arc<str>>,
        pool: u64,
    },
    Retired {
        pool: u64,
        lease: Option<LeaseId>,
        reason: String,
    },
    Shrunk {
        pool: u64,
    },
    Created {
        pool: u64,
    },
    CreateFailed {
        error: Error,
    },
    WaiterTimedOut {
        waited: Duration,
    },
}

/// Where a finalised lease's pool went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Finalised {
    /// Straight to the oldest waiter.
    HandedOff,
    /// Back to the idle set.
    Idle,
    /// Shut down (expired, stopping, or above the desired count).
    ShutDown,
}
