//! The lease/pool state machine.
//!
//! Everything the manager knows about pools, leases and waiters lives in one
//! [`LeaseState`], guarded by one lock in the manager. Every transition is an
//! ordinary method that takes the current time as an argument and describes
//! its side effects in [`Effects`], so the whole machine runs in unit tests
//! without threads, clocks or backends.
//!
//! # Where a pool can be
//!
//! ```text
//!               create (checker)            acquire / hand-off
//!  (nothing) ─────────────────────▶ idle ───────────────────────▶ leased
//!      ▲                             ▲  ◀──── finalise (kept) ───── │ │
//!      │                             │                              │ │ release with
//!      │         shrink (newest)     │     finalise: hand-off ─────▶│ │ jobs pending
//!      └──────── shut down ◀─────────┘     to the oldest waiter     │ ▼
//!                   ▲                                               │ draining
//!                   └── revoke (hard expiry) / broken / stop ◀──────┘ │
//!                   └── finalise (expired, stopping, above desired) ◀─┘
//! ```
//!
//! | event            | from              | to                                         |
//! |------------------|-------------------|--------------------------------------------|
//! | `acquire`        | idle (oldest)     | leased, or the caller joins the wait queue |
//! | `release`        | leased            | draining if jobs pend, else finalised      |
//! | `job_finished`   | draining, last job| finalised                                  |
//! | finalise         | leased            | oldest waiter, idle, or shut down          |
//! | `revoke_expired` | leased / draining | shut down                                  |
//! | `pool_broken`    | idle / leased     | shut down                                  |
//! | `tick` (shrink)  | idle (newest)     | shut down                                  |
//! | `pool_created`   | being created     | oldest waiter, idle, or shut down          |
//! | `renew`          | leased            | leased, expiries moved (or revoked if late)|
//! | `begin_shutdown` | idle              | shut down; waiters fail; leases keep going |
//! | `stop`           | everywhere        | shut down; waiters fail                    |
//!
//! This file holds the types; the transitions sit by area in
//! `lifecycle.rs`, `acquire.rs`, `release.rs`, `expiry.rs` and `sizing.rs`.
//! `README.md` beside them explains the wait queue, the wake slot and the
//! hand-off of a freed pool to the oldest waiter.
//!
//! Invariants that hold after every transition (checked by `check_invariants`
//! in tests): `available + leased == total`, `total + creating <= max_pools`,
//! a pool sits in exactly one place, and no waiter is queued while a pool is
//! idle.

mod acquire;
mod effects;
mod expiries;
mod expiry;
mod lifecycle;
mod release;
mod seqmap;
mod sizing;
mod waiters;

#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

pub(crate) use crate::observe::{Event, PoolFate};
pub(crate) use effects::Effects;
use expiries::Expiries;
use seqmap::SeqMap;
pub(crate) use waiters::{Fairness, LANES, Resolution};
use waiters::{WaitQueue, Waiter};

use crate::stats::{LaneStats, LeaseStats, ManagerCounters, OwnerStats};
use crate::{Error, LeaseEnd, LeaseId};

/// `now + d`, saturating instead of overflowing. Configuration validation
/// rejects durations that overflow, so saturation only guards the theoretical
/// edge where a duration valid at build time overflows later.
pub(crate) fn deadline_after(now: Instant, d: Duration) -> Instant {
    now.checked_add(d).unwrap_or_else(|| {
        // Find the largest representable step by halving.
        let mut step = d;
        let mut at = now;
        while !step.is_zero() {
            if let Some(next) = at.checked_add(step) {
                at = next;
            } else {
                step /= 2;
            }
        }
        at
    })
}

/// The manager's lifecycle phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lifecycle {
    Stopped,
    Starting,
    Running,
    /// Graceful shutdown: no new leases, held leases work until released
    /// or the deadline.
    ShuttingDown,
}

/// Pool-count limits from the configuration.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) max_pools: usize,
    pub(crate) min_pools: usize,
}

/// What an acquirer asks for.
#[derive(Debug, Clone)]
pub(crate) struct LeaseTerms {
    pub(crate) owner: Option<Arc<str>>,
    pub(crate) duration: Duration,
    pub(crate) grace: Duration,
    /// Its priority lane (0 is the highest).
    pub(crate) lane: usize,
}

/// The lease end reason, shared between the record and the handles so a
/// handle can say why its lease stopped working after the record is gone.
#[derive(Debug, Default)]
pub(crate) struct EndCell(AtomicU8);

impl EndCell {
    /// Records the reason; the first reason wins.
    pub(crate) fn set(&self, end: LeaseEnd) {
        let code = match end {
            LeaseEnd::Released => 1,
            LeaseEnd::Expired => 2,
            LeaseEnd::Broken => 3,
            LeaseEnd::Stopped => 4,
        };
        let _ = self
            .0
            .compare_exchange(0, code, Ordering::AcqRel, Ordering::Acquire);
    }

    pub(crate) fn get(&self) -> Option<LeaseEnd> {
        match self.0.load(Ordering::Acquire) {
            1 => Some(LeaseEnd::Released),
            2 => Some(LeaseEnd::Expired),
            3 => Some(LeaseEnd::Broken),
            4 => Some(LeaseEnd::Stopped),
            _ => None,
        }
    }
}

/// A pool and its sequence number (used in thread names and logs).
#[derive(Debug)]
pub(crate) struct PoolSlot<P> {
    pub(crate) seq: u64,
    pub(crate) pool: P,
}

/// The bookkeeping for one lease.
#[derive(Debug)]
pub(crate) struct LeaseRecord<P> {
    pub(crate) id: LeaseId,
    pub(crate) owner: Option<Arc<str>>,
    pub(crate) grace: Duration,
    pub(crate) soft: Instant,
    pub(crate) hard: Instant,
    pub(crate) pool: PoolSlot<P>,
    pub(crate) pending: usize,
    pub(crate) draining: bool,
    pub(crate) soft_warned: bool,
    pub(crate) end: Arc<EndCell>,
    /// The lane it was acquired in.
    pub(crate) lane: usize,
}

impl<P> LeaseRecord<P> {
    /// The lease's next expiry: soft until warned, then hard.
    pub(crate) fn next_expiry(&self) -> Instant {
        if self.soft_warned {
            self.hard
        } else {
            self.soft
        }
    }
}

/// What a successful acquire hands to the caller to build its lease handle.
#[derive(Debug, Clone)]
pub(crate) struct Grant {
    pub(crate) key: u64,
    pub(crate) id: LeaseId,
    pub(crate) owner: Option<Arc<str>>,
    pub(crate) leased_at: Instant,
    pub(crate) duration: Duration,
    pub(crate) grace: Duration,
    pub(crate) soft: Instant,
    pub(crate) hard: Instant,
    pub(crate) end: Arc<EndCell>,
}

/// The result of an acquire attempt that did not fail.
#[derive(Debug)]
pub(crate) enum AcquireStep {
    Granted(Grant),
    /// Queued as waiter `id`; its resolution is parked when it is woken.
    Queued(u64),
}

/// What an acquirer brings: its terms and how long it will wait.
#[derive(Debug)]
pub(crate) struct AcquireRequest {
    pub(crate) terms: LeaseTerms,
    pub(crate) wait: bool,
    /// The timeout and the deadline it gives.
    pub(crate) deadline: Option<(Instant, Duration)>,
}

/// The whole lease/pool state. `P` is a pool handle, `W` a waiter wake.
#[derive(Debug)]
pub(crate) struct LeaseState<P, W> {
    manager_id: u64,
    limits: Limits,
    phase: Lifecycle,
    desired: usize,
    idle: VecDeque<PoolSlot<P>>,
    leases: SeqMap<LeaseRecord<P>>,
    waiters: WaitQueue<W>,
    /// Planned creations in flight (counted against `max_pools`).
    creating: usize,
    /// Pools being created in this run (planned, or reserved by start), by
    /// sequence number, with the reason if the pool was reported broken
    /// before its creation returned (a worker initializer can fail first).
    /// A pool that arrives with a number not in here belongs to a run that
    /// was stopped: it is shut down.
    in_creation: SeqMap<Option<String>>,
    /// Pools reported broken, waiting for the checker to shut them down
    /// (never on the reporting thread, which may be one of the pool's own).
    deferred: Vec<P>,
    next_lease: u64,
    next_pool: u64,
    /// When the checker will next run on its own (`None`: not scheduled).
    checker_wake_at: Option<Instant>,
    /// Holds replacement creation back after pools keep breaking.
    backoff: BreakBackoff,
    /// The deadline of a graceful shutdown in progress.
    shutdown_deadline: Option<Instant>,
    /// Jobs submitted through any lease of any run that have not ended
    /// (queued or running), for shutdown reports.
    jobs_in_flight: usize,
    /// Counters that only go up, updated by the transitions they count.
    counters: ManagerCounters,
    /// Leases held, per lane they were acquired in.
    lane_leases: [usize; LANES],
    /// Each lease's next expiry: its soft expiry until it has been warned
    /// of it, then its hard expiry (`expiries.rs`).
    expiries: Expiries,
}

/// Replacement back-off: a pool that breaks again and again (an initializer
/// that always fails) must not turn the checker into a busy loop of thread
/// or process creation. Each break within [`BreakBackoff::STREAK_WINDOW`]
/// of the previous one doubles the pause before the next creation, from
/// 5 ms up to 2 s.
#[derive(Debug, Default, Clone, Copy)]
struct BreakBackoff {
    streak: u32,
    last: Option<Instant>,
    not_before: Option<Instant>,
}

impl BreakBackoff {
    const FIRST: Duration = Duration::from_millis(5);
    const MAX: Duration = Duration::from_secs(2);
    const STREAK_WINDOW: Duration = Duration::from_secs(10);

    fn record(&mut self, now: Instant) {
        let recent = self
            .last
            .is_some_and(|last| now.saturating_duration_since(last) < Self::STREAK_WINDOW);
        self.streak = if recent {
            self.streak.saturating_add(1)
        } else {
            1
        };
        self.last = Some(now);
        let delay = Self::FIRST
            .saturating_mul(1u32 << (self.streak - 1).min(16))
            .min(Self::MAX);
        self.not_before = Some(deadline_after(now, delay));
    }

    fn held_until(&self, now: Instant) -> Option<Instant> {
        self.not_before.filter(|at| *at > now)
    }
}

impl<P: Clone, W> LeaseState<P, W> {
    pub(crate) fn new(manager_id: u64, limits: Limits, fairness: Fairness) -> Self {
        LeaseState {
            manager_id,
            limits,
            phase: Lifecycle::Stopped,
            desired: limits.min_pools,
            idle: VecDeque::new(),
            leases: SeqMap::default(),
            waiters: WaitQueue::new(fairness),
            creating: 0,
            in_creation: SeqMap::default(),
            deferred: Vec::new(),
            next_lease: 1,
            next_pool: 1,
            checker_wake_at: None,
            backoff: BreakBackoff::default(),
            shutdown_deadline: None,
            jobs_in_flight: 0,
            counters: ManagerCounters::default(),
            lane_leases: [0; LANES],
            expiries: Expiries::default(),
        }
    }

    // ----- observation -------------------------------------------------

    pub(crate) fn phase(&self) -> Lifecycle {
        self.phase
    }

    pub(crate) fn available(&self) -> usize {
        self.idle.len()
    }

    pub(crate) fn leased(&self) -> usize {
        self.leases.len()
    }

    pub(crate) fn total(&self) -> usize {
        self.idle.len() + self.leases.len()
    }

    pub(crate) fn desired(&self) -> usize {
        self.desired
    }

    pub(crate) fn waiting(&self) -> usize {
        self.waiters.len()
    }

    /// Jobs submitted through leases (of this run or an earlier one) that
    /// have not ended yet.
    pub(crate) fn jobs_in_flight(&self) -> usize {
        self.jobs_in_flight
    }

    pub(crate) fn counters(&self) -> &ManagerCounters {
        &self.counters
    }

    pub(crate) fn limits(&self) -> Limits {
        self.limits
    }

    /// Leases held and waiters queued per owner, by owner name.
    pub(crate) fn owner_stats(&self) -> Vec<OwnerStats> {
        let mut owners: std::collections::BTreeMap<&Arc<str>, (usize, usize)> =
            std::collections::BTreeMap::new();
        for owner in self.leases.values().filter_map(|r| r.owner.as_ref()) {
            owners.entry(owner).or_default().0 += 1;
        }
        for owner in self.waiters.iter().filter_map(|w| w.terms.owner.as_ref()) {
            owners.entry(owner).or_default().1 += 1;
        }
        owners
            .into_iter()
            .map(|(owner, (leases, waiting))| OwnerStats {
                owner: owner.to_string(),
                leases,
                waiting,
                limit: self.waiters.fairness().limit_of(Some(owner)),
            })
            .collect()
    }

    /// Leases held and waiters queued per lane, highest first.
    pub(crate) fn lane_stats(&self) -> Vec<LaneStats> {
        crate::Priority::ALL
            .iter()
            .map(|&priority| LaneStats {
                priority,
                leases: self.lane_leases[priority.lane()],
                waiting: self
                    .waiters
                    .iter()
                    .filter(|w| w.terms.lane == priority.lane())
                    .count(),
            })
            .collect()
    }

    pub(crate) fn lease_stats(&self, now: Instant) -> Vec<LeaseStats> {
        let mut stats: Vec<LeaseStats> = self
            .leases
            .values()
            .map(|r| LeaseStats {
                id: r.id,
                owner: r.owner.as_deref().map(str::to_owned),
                until_soft_expiry: r.soft.saturating_duration_since(now),
                until_hard_expiry: r.hard.saturating_duration_since(now),
                draining: r.draining,
                pending_jobs: r.pending,
            })
            .collect();
        stats.sort_by_key(|s| s.id);
        stats
    }
}
