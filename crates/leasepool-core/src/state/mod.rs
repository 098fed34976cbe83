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
//! `README.md` beside this file explains the wait queue, the wake slot and
//! the hand-off of a freed pool to the oldest waiter.
//!
//! Invariants that hold after every transition (checked by `check_invariants`
//! in tests): `available + leased == total`, `total + creating <= max_pools`,
//! a pool sits in exactly one place, and no waiter is queued while a pool is
//! idle.

mod effects;
mod seqmap;
mod waiters;

#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

pub(crate) use effects::{Effects, Finalised, Note};
use seqmap::SeqMap;
pub(crate) use waiters::Resolution;
use waiters::{WaitQueue, Waiter};

use crate::stats::{LeaseStats, ManagerCounters};
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
    pub(crate) fn new(manager_id: u64, limits: Limits) -> Self {
        LeaseState {
            manager_id,
            limits,
            phase: Lifecycle::Stopped,
            desired: limits.min_pools,
            idle: VecDeque::new(),
            leases: SeqMap::default(),
            waiters: WaitQueue::new(),
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

    // ----- lifecycle ---------------------------------------------------

    /// Moves `Stopped` to `Starting`. Returns the phase found.
    pub(crate) fn begin_start(&mut self) -> Lifecycle {
        let found = self.phase;
        if found == Lifecycle::Stopped {
            self.phase = Lifecycle::Starting;
        }
        found
    }

    /// Installs the pools created by `start`, then retires those reported
    /// broken while they were being created. If the manager was stopped
    /// meanwhile, the pools come back for shutdown.
    pub(crate) fn finish_start(
        &mut self,
        pools: Vec<PoolSlot<P>>,
        now: Instant,
        fx: &mut Effects<P, W>,
    ) -> Result<(), Vec<PoolSlot<P>>> {
        if self.phase != Lifecycle::Starting {
            return Err(pools);
        }
        self.counters.pools_created += pools.len() as u64;
        let broken: Vec<(u64, String)> = pools
            .iter()
            .filter_map(|slot| {
                let reason = self.in_creation.remove(&slot.seq).flatten()?;
                Some((slot.seq, reason))
            })
            .collect();
        self.phase = Lifecycle::Running;
        self.idle.extend(pools);
        for (seq, reason) in broken {
            if self.pool_broken(seq, &reason, fx) {
                self.record_break(now);
            }
        }
        Ok(())
    }

    /// Start failed: back to `Stopped` (if nobody else changed the phase).
    pub(crate) fn abort_start(&mut self) {
        if self.phase == Lifecycle::Starting {
            self.phase = Lifecycle::Stopped;
            self.in_creation.clear();
        }
    }

    /// Hands out sequence numbers for pools created outside the normal
    /// checker planning (start-up).
    pub(crate) fn reserve_pool_seqs(&mut self, n: usize) -> Vec<u64> {
        let first = self.next_pool;
        self.next_pool += n as u64;
        let seqs: Vec<u64> = (first..self.next_pool).collect();
        self.in_creation.extend(seqs.iter().map(|seq| (*seq, None)));
        seqs
    }

    /// True while pool `seq` is being created in this run.
    #[cfg(test)]
    pub(crate) fn is_being_created(&self, seq: u64) -> bool {
        self.in_creation.contains_key(&seq)
    }

    /// Stops everything: every pool is shut down, every lease ends, every
    /// waiter fails with `ShuttingDown`.
    /// Returns how many leases it ended.
    pub(crate) fn stop(&mut self, fx: &mut Effects<P, W>) -> usize {
        let ended = self.leases.len();
        self.phase = Lifecycle::Stopped;
        self.checker_wake_at = None;
        self.shutdown_deadline = None;
        // Creations still in flight belong to this run: they are shut down
        // when they arrive and no longer count against max_pools.
        self.creating = 0;
        self.in_creation.clear();
        fx.shutdown.append(&mut self.deferred);
        for slot in self.idle.drain(..) {
            fx.shutdown.push(slot.pool);
        }
        for (_, record) in self.leases.drain() {
            record.end.set(LeaseEnd::Stopped);
            fx.shutdown.push(record.pool.pool);
        }
        for waiter in self.waiters.drain() {
            fx.wake.push(
                self.waiters
                    .resolve(waiter, Resolution::Failed(Error::ShuttingDown)),
            );
        }
        self.waiters.fail_parked_grants(&Error::ShuttingDown);
        ended
    }

    /// Starts a graceful shutdown: no new leases (waiters fail with
    /// `ShuttingDown`), idle pools shut down, held leases keep working until
    /// they end or `deadline`. Returns the number of leases held, or `None`
    /// if the manager is not running.
    pub(crate) fn begin_shutdown(
        &mut self,
        deadline: Instant,
        fx: &mut Effects<P, W>,
    ) -> Option<usize> {
        if self.phase != Lifecycle::Running {
            return None;
        }
        self.phase = Lifecycle::ShuttingDown;
        self.shutdown_deadline = Some(deadline);
        for slot in self.idle.drain(..) {
            fx.shutdown.push(slot.pool);
        }
        for waiter in self.waiters.drain() {
            fx.wake.push(
                self.waiters
                    .resolve(waiter, Resolution::Failed(Error::ShuttingDown)),
            );
        }
        fx.wake_checker = true;
        Some(self.leases.len())
    }

    /// During a graceful shutdown: true once every lease has ended or the
    /// deadline has passed.
    pub(crate) fn shutdown_due(&self, now: Instant) -> bool {
        self.phase == Lifecycle::ShuttingDown
            && (self.leases.is_empty() || self.shutdown_deadline.is_some_and(|at| now >= at))
    }

    // ----- acquire and waiters ------------------------------------------

    /// Tries to lease a pool at once; otherwise queues the caller (creating
    /// its wake with `wake`) or fails.
    pub(crate) fn acquire(
        &mut self,
        request: AcquireRequest,
        now: Instant,
        wake: impl FnOnce() -> W,
        fx: &mut Effects<P, W>,
    ) -> Result<AcquireStep, Error> {
        match self.phase {
            Lifecycle::Running => {}
            Lifecycle::ShuttingDown => return Err(Error::ShuttingDown),
            Lifecycle::Stopped | Lifecycle::Starting => return Err(Error::NotStarted),
        }
        self.revoke_expired(now, fx);
        if let Some(slot) = self.idle.pop_front() {
            // Invariant: an idle pool means nobody is queued, so taking it
            // first is first-come, first-served.
            debug_assert!(self.waiters.is_empty());
            return Ok(AcquireStep::Granted(self.grant(
                slot,
                request.terms,
                now,
                fx,
            )));
        }
        let room = self.room_for_newcomer();
        if !request.wait && !room {
            self.counters.unavailable += 1;
            return Err(Error::Unavailable {
                max_pools: self.limits.max_pools,
            });
        }
        if let Some((at, timeout)) = request.deadline {
            if at <= now && !room {
                self.counters.timed_out += 1;
                return Err(Error::Timeout(timeout));
            }
        }
        let id = self
            .waiters
            .push(now, request.terms, request.deadline, wake());
        if self.creations_needed() > 0 || self.before_checker(request.deadline.map(|(at, _)| at)) {
            fx.wake_checker = true;
        }
        Ok(AcquireStep::Queued(id))
    }

    /// True if a pool could still be created for a caller arriving now:
    /// every pool that exists or may be created (`max_pools - total`, pools
    /// in creation included) beyond those the queued waiters will take.
    fn room_for_newcomer(&self) -> bool {
        self.limits.max_pools.saturating_sub(self.total()) > self.waiters.len()
    }

    /// The outcome parked for waiter `id`, if it has one.
    pub(crate) fn take_resolution(&mut self, id: u64) -> Option<Resolution> {
        self.waiters.take_resolution(id)
    }

    /// The waiter's future was dropped. If it was already granted a lease,
    /// that lease is released so the pool goes to the next waiter.
    pub(crate) fn cancel_waiter(&mut self, id: u64, now: Instant, fx: &mut Effects<P, W>) {
        if self.waiters.remove_queued(id) {
            return;
        }
        if let Some(Resolution::Granted(grant)) = self.waiters.take_resolution(id) {
            self.release(grant.key, now, fx);
        }
    }

    /// Leases `slot` under `terms`.
    fn grant(
        &mut self,
        slot: PoolSlot<P>,
        terms: LeaseTerms,
        now: Instant,
        fx: &mut Effects<P, W>,
    ) -> Grant {
        let key = self.next_lease;
        self.next_lease += 1;
        self.counters.acquired += 1;
        let id = LeaseId::new(self.manager_id, key);
        let soft = deadline_after(now, terms.duration);
        let hard = deadline_after(soft, terms.grace);
        let end = Arc::new(EndCell::default());
        fx.note(|| Note::Leased {
            id,
            owner: terms.owner.clone(),
            pool: slot.seq,
            duration: terms.duration,
            grace: terms.grace,
        });
        if self.before_checker(Some(soft)) {
            fx.wake_checker = true;
        }
        self.leases.insert(
            key,
            LeaseRecord {
                id,
                owner: terms.owner.clone(),
                grace: terms.grace,
                soft,
                hard,
                pool: slot,
                pending: 0,
                draining: false,
                soft_warned: false,
                end: end.clone(),
            },
        );
        Grant {
            key,
            id,
            owner: terms.owner,
            leased_at: now,
            duration: terms.duration,
            grace: terms.grace,
            soft,
            hard,
            end,
        }
    }

    /// Gives a healthy, free pool to the oldest waiter, or keeps it idle if
    /// that does not push the total above the desired count, or shuts it
    /// down. `total` must not count `slot` yet.
    fn offer(&mut self, slot: PoolSlot<P>, now: Instant, fx: &mut Effects<P, W>) -> Finalised {
        if let Some(waiter) = self.waiters.pop_oldest() {
            let waited = now.saturating_duration_since(waiter.since);
            let counters = &mut self.counters;
            counters.acquired_after_wait += 1;
            counters.wait_time_total = counters.wait_time_total.saturating_add(waited);
            counters.wait_time_max = counters.wait_time_max.max(waited);
            let Waiter { terms, .. } = &waiter;
            let grant = self.grant(slot, terms.clone(), now, fx);
            fx.wake
                .push(self.waiters.resolve(waiter, Resolution::Granted(grant)));
            Finalised::HandedOff
        } else if self.total() < self.desired {
            self.idle.push_back(slot);
            Finalised::Idle
        } else {
            fx.shutdown.push(slot.pool);
            Finalised::ShutDown
        }
    }

    // ----- release, draining, finalise ----------------------------------

    /// Releases a lease. Idempotent; unknown keys are ignored.
    pub(crate) fn release(&mut self, key: u64, now: Instant, fx: &mut Effects<P, W>) {
        let Some(record) = self.leases.get_mut(&key) else {
            return;
        };
        if record.draining {
            return;
        }
        record.end.set(LeaseEnd::Released);
        self.counters.leases_released += 1;
        if record.pending > 0 {
            record.draining = true;
            fx.note(|| Note::Draining {
                id: record.id,
                pending: record.pending,
            });
            return;
        }
        if let Some(record) = self.leases.remove(&key) {
            self.finalise(record, now, fx);
        }
    }

    /// The lease is over and its pool has no jobs: decide where it goes.
    fn finalise(&mut self, record: LeaseRecord<P>, now: Instant, fx: &mut Effects<P, W>) {
        let healthy = self.phase == Lifecycle::Running && now < record.hard;
        let pool = record.pool.seq;
        let outcome = if healthy {
            self.offer(record.pool, now, fx)
        } else {
            fx.shutdown.push(record.pool.pool);
            Finalised::ShutDown
        };
        fx.note(|| Note::Finalised {
            id: record.id,
            pool,
            outcome,
        });
        self.request_capacity(fx);
    }

    /// Restarts lease `key` for `duration` from `now` (grace unchanged):
    /// new soft and hard expiries, and a fresh soft-expiry warning. Fails
    /// (changing nothing) if the lease is released, draining, past hard
    /// expiry, revoked, broken, or the manager is not running; a lease found
    /// past hard expiry is revoked here, so a renewal racing the checker has
    /// exactly one outcome.
    pub(crate) fn renew(
        &mut self,
        key: u64,
        duration: Duration,
        now: Instant,
        fx: &mut Effects<P, W>,
    ) -> Option<(Instant, Instant)> {
        let record = self.leases.get_mut(&key)?;
        if record.draining
            || self.phase != Lifecycle::Running && self.phase != Lifecycle::ShuttingDown
        {
            return None;
        }
        if now >= record.hard {
            self.revoke(key, fx);
            return None;
        }
        record.soft = deadline_after(now, duration);
        record.hard = deadline_after(record.soft, record.grace);
        record.soft_warned = false;
        self.counters.leases_renewed += 1;
        fx.note(|| Note::Renewed {
            id: record.id,
            duration,
        });
        // The checker may be sleeping until the old expiry: let it
        // recompute its deadline.
        fx.wake_checker = true;
        Some((record.soft, record.hard))
    }

    /// A job is about to be submitted through lease `key`: count it and hand
    /// back the pool. `None` if the lease cannot take work (its end cell says
    /// why). A lease found past its hard expiry is revoked here.
    pub(crate) fn begin_job(
        &mut self,
        key: u64,
        now: Instant,
        fx: &mut Effects<P, W>,
    ) -> Option<P> {
        let record = self.leases.get_mut(&key)?;
        if record.draining {
            return None;
        }
        if now >= record.hard {
            self.revoke(key, fx);
            return None;
        }
        record.pending += 1;
        self.jobs_in_flight += 1;
        Some(record.pool.pool.clone())
    }

    /// The sequence number of lease `key`'s pool, while the lease is held.
    pub(crate) fn pool_of_lease(&self, key: u64) -> Option<u64> {
        self.leases.get(&key).map(|record| record.pool.seq)
    }

    /// Counts how a job submitted through a lease ended.
    pub(crate) fn count_job_end(&mut self, end: crate::job::JobEnd) {
        use crate::job::JobEnd;
        let counters = &mut self.counters;
        match end {
            JobEnd::Completed => counters.jobs_completed += 1,
            JobEnd::Panicked => counters.jobs_panicked += 1,
            JobEnd::Cancelled => counters.jobs_cancelled += 1,
            JobEnd::Failed => counters.jobs_failed += 1,
        }
    }

    /// A job submitted through lease `key` finished (or was cancelled).
    pub(crate) fn job_finished(&mut self, key: u64, now: Instant, fx: &mut Effects<P, W>) {
        self.jobs_in_flight = self.jobs_in_flight.saturating_sub(1);
        let Some(record) = self.leases.get_mut(&key) else {
            return;
        };
        record.pending = record.pending.saturating_sub(1);
        if record.draining && record.pending == 0 {
            if let Some(record) = self.leases.remove(&key) {
                self.finalise(record, now, fx);
            }
        }
    }

    // ----- expiry, broken pools -----------------------------------------

    /// Revokes one lease: its pool is shut down, never recycled.
    fn revoke(&mut self, key: u64, fx: &mut Effects<P, W>) {
        let Some(record) = self.leases.remove(&key) else {
            return;
        };
        record.end.set(LeaseEnd::Expired);
        self.counters.leases_revoked += 1;
        fx.note(|| Note::Revoked {
            id: record.id,
            owner: record.owner.clone(),
            pool: record.pool.seq,
        });
        fx.revoked.push(record.pool.pool.clone());
        fx.shutdown.push(record.pool.pool);
        self.request_capacity(fx);
    }

    /// The deadline of a graceful shutdown has come: every lease still held
    /// is revoked exactly as at hard expiry (its pool is revoked, then shut
    /// down). Returns how many were revoked.
    pub(crate) fn revoke_all(&mut self, fx: &mut Effects<P, W>) -> usize {
        let mut keys: Vec<u64> = self.leases.keys().copied().collect();
        keys.sort_unstable();
        for key in &keys {
            self.revoke(*key, fx);
        }
        keys.len()
    }

    /// Revokes every lease at or past its hard expiry.
    pub(crate) fn revoke_expired(&mut self, now: Instant, fx: &mut Effects<P, W>) {
        if !self.leases.values().any(|r| now >= r.hard) {
            return;
        }
        let mut expired: Vec<(LeaseId, u64)> = self
            .leases
            .iter()
            .filter(|(_, r)| now >= r.hard)
            .map(|(key, r)| (r.id, *key))
            .collect();
        expired.sort_unstable();
        for (_, key) in expired {
            self.revoke(key, fx);
        }
    }

    /// Pool `seq` can no longer run work: retire it wherever it is. Returns
    /// false if the pool is not (or no longer) here, e.g. still being
    /// created.
    pub(crate) fn pool_broken(&mut self, seq: u64, reason: &str, fx: &mut Effects<P, W>) -> bool {
        if let Some(index) = self.idle.iter().position(|slot| slot.seq == seq) {
            if let Some(slot) = self.idle.remove(index) {
                fx.shutdown.push(slot.pool);
            }
            fx.note(|| Note::Retired {
                pool: seq,
                lease: None,
                reason: reason.to_owned(),
            });
        } else if let Some(key) = self
            .leases
            .iter()
            .find(|(_, r)| r.pool.seq == seq)
            .map(|(key, _)| *key)
        {
            if let Some(record) = self.leases.remove(&key) {
                record.end.set(LeaseEnd::Broken);
                fx.note(|| Note::Retired {
                    pool: seq,
                    lease: Some(record.id),
                    reason: reason.to_owned(),
                });
                fx.shutdown.push(record.pool.pool);
            }
        } else {
            return false;
        }
        self.counters.pools_broken += 1;
        self.request_capacity(fx);
        true
    }

    /// A backend reported pool `seq` broken, from any thread. The pool is
    /// retired wherever it is, and kept for the checker to shut down; a
    /// pool still being created remembers the reason and is discarded when
    /// its creation returns.
    pub(crate) fn report_broken(
        &mut self,
        seq: u64,
        reason: &str,
        now: Instant,
        fx: &mut Effects<P, W>,
    ) {
        let before = fx.shutdown.len();
        if self.pool_broken(seq, reason, fx) {
            self.record_break(now);
        } else if let Some(early) = self.in_creation.get_mut(&seq) {
            early.get_or_insert_with(|| reason.to_owned());
        }
        self.deferred.extend(fx.shutdown.drain(before..));
        fx.wake_checker = true;
    }

    // ----- sizing and the checker ---------------------------------------

    pub(crate) fn set_desired(&mut self, desired: usize) {
        self.desired = desired.clamp(self.limits.min_pools, self.limits.max_pools);
    }

    /// How many pools the checker should create now: up to the desired
    /// count, plus one for each waiter that no creation in flight will
    /// serve, within `max_pools`.
    pub(crate) fn creations_needed(&self) -> usize {
        if self.phase != Lifecycle::Running {
            return 0;
        }
        let have = self.total() + self.creating;
        let room = self.limits.max_pools.saturating_sub(have);
        let for_desired = self.desired.saturating_sub(have);
        let for_waiters = self
            .waiters
            .len()
            .saturating_sub(self.creating + for_desired);
        room.min(for_desired + for_waiters)
    }

    /// Wakes the checker if capacity must be created.
    fn request_capacity(&mut self, fx: &mut Effects<P, W>) {
        if self.creations_needed() > 0 {
            fx.wake_checker = true;
        }
    }

    /// Records that a pool broke at `now`, for the replacement back-off.
    pub(crate) fn record_break(&mut self, now: Instant) {
        self.backoff.record(now);
    }

    /// If pools broke repeatedly, the moment creation may resume.
    pub(crate) fn creation_held_until(&self, now: Instant) -> Option<Instant> {
        self.backoff.held_until(now)
    }

    /// Reserves the creations the checker is about to perform and returns
    /// their pool sequence numbers.
    pub(crate) fn plan_creations(&mut self) -> Vec<u64> {
        let n = self.creations_needed();
        self.creating += n;
        self.reserve_pool_seqs(n)
    }

    /// A planned creation succeeded. A pool reported broken while it was
    /// being created is never offered: it is shut down, and the checker
    /// creates a replacement, subject to the back-off.
    pub(crate) fn pool_created(&mut self, slot: PoolSlot<P>, now: Instant, fx: &mut Effects<P, W>) {
        if let Some(Some(reason)) = self.in_creation.get(&slot.seq) {
            let reason = reason.clone();
            self.creation_discarded(slot.seq, &reason, fx);
            self.record_break(now);
            fx.shutdown.push(slot.pool);
            return;
        }
        fx.note(|| Note::Created { pool: slot.seq });
        if self.in_creation.remove(&slot.seq).is_none() {
            // Planned by a run that was stopped.
            fx.shutdown.push(slot.pool);
            return;
        }
        self.creating = self.creating.saturating_sub(1);
        if self.phase != Lifecycle::Running {
            fx.shutdown.push(slot.pool);
            return;
        }
        self.counters.pools_created += 1;
        self.offer(slot, now, fx);
    }

    /// A planned creation produced a pool that broke before it was placed
    /// (the caller shuts it down). Nobody is failed: the checker creates a
    /// replacement, subject to the back-off.
    pub(crate) fn creation_discarded(&mut self, seq: u64, reason: &str, fx: &mut Effects<P, W>) {
        if self.in_creation.remove(&seq).is_none() {
            return;
        }
        self.creating = self.creating.saturating_sub(1);
        self.counters.pools_broken += 1;
        fx.note(|| Note::Retired {
            pool: seq,
            lease: None,
            reason: reason.to_owned(),
        });
        self.request_capacity(fx);
    }

    /// A planned creation failed: the oldest waiter that no other creation
    /// in flight will serve gets the error.
    pub(crate) fn pool_creation_failed(&mut self, seq: u64, error: Error, fx: &mut Effects<P, W>) {
        if self.in_creation.remove(&seq).is_none() {
            return; // planned by a run that was stopped
        }
        self.creating = self.creating.saturating_sub(1);
        if self.waiters.len() > self.creating {
            if let Some(waiter) = self.waiters.pop_oldest() {
                fx.wake.push(
                    self.waiters
                        .resolve(waiter, Resolution::Failed(error.clone())),
                );
            }
        }
        fx.note(|| Note::CreateFailed { error });
        // Other waiters may still need a pool: try again (the manager paces
        // retries with the back-off).
        self.request_capacity(fx);
    }

    /// One checker pass: revoke expired leases, time out waiters, warn about
    /// soft expiry, and shut down idle pools above the desired count
    /// (newest first). Returns when the checker must run next, at the
    /// latest after `interval`.
    pub(crate) fn tick(
        &mut self,
        now: Instant,
        interval: Duration,
        fx: &mut Effects<P, W>,
    ) -> Instant {
        if matches!(self.phase, Lifecycle::Running | Lifecycle::ShuttingDown) {
            fx.shutdown.append(&mut self.deferred);
            self.revoke_expired(now, fx);
            let spared = self.spared_waiters();
            for waiter in self.waiters.take_timed_out(now, spared) {
                let (_, timeout) = waiter.deadline.unwrap_or((now, Duration::ZERO));
                self.counters.timed_out += 1;
                fx.note(|| Note::WaiterTimedOut { waited: timeout });
                fx.wake.push(
                    self.waiters
                        .resolve(waiter, Resolution::Failed(Error::Timeout(timeout))),
                );
            }
            for record in self.leases.values_mut() {
                if !record.soft_warned && now >= record.soft {
                    record.soft_warned = true;
                    fx.note(|| Note::SoftExpired {
                        id: record.id,
                        owner: record.owner.clone(),
                    });
                }
            }
            while self.phase == Lifecycle::Running && self.total() > self.desired {
                let Some(slot) = self.idle.pop_back() else {
                    break;
                };
                fx.note(|| Note::Shrunk { pool: slot.seq });
                fx.shutdown.push(slot.pool);
            }
        }
        let next = self.next_deadline(now, interval);
        self.checker_wake_at = Some(next);
        next
    }

    /// How many of the oldest waiters a timeout must not fail yet: those a
    /// pool already being created will serve (the oldest waiters get new
    /// pools first). The checker plans its creations before it ticks, so a
    /// waiter that can be served by a new pool is covered in the same pass;
    /// while the back-off holds creation back, nothing is in flight and
    /// timeouts apply.
    fn spared_waiters(&self) -> usize {
        self.limits
            .max_pools
            .saturating_sub(self.total())
            .min(self.creating)
    }

    /// The earliest moment something time-based happens, capped at
    /// `now + interval`.
    fn next_deadline(&self, now: Instant, interval: Duration) -> Instant {
        let mut next = deadline_after(now, interval);
        for record in self.leases.values() {
            next = next.min(record.hard);
            if !record.soft_warned {
                next = next.min(record.soft);
            }
        }
        // Only deadlines still ahead: a spared waiter's passed deadline is
        // looked at again when its creation ends or the back-off does, and
        // a passed shutdown deadline is the waiting `shutdown()`'s business.
        if let Some(at) = self.waiters.earliest_deadline(self.spared_waiters()) {
            next = next.min(at);
        }
        if let Some(at) = self.backoff.held_until(now) {
            next = next.min(at);
        }
        if let Some(at) = self.shutdown_deadline.filter(|at| *at > now) {
            next = next.min(at);
        }
        next.max(now)
    }

    /// True if `at` comes before the checker's next scheduled pass.
    fn before_checker(&self, at: Option<Instant>) -> bool {
        match (at, self.checker_wake_at) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(at), Some(scheduled)) => at < scheduled,
        }
    }

    /// Checks every invariant; used by the tests after each transition.
    #[cfg(test)]
    pub(crate) fn check_invariants(&self, pool_id: impl Fn(&P) -> u64) {
        let total = self.total();
        assert_eq!(self.available() + self.leased(), total);
        assert!(
            total + self.creating <= self.limits.max_pools,
            "above max_pools"
        );
        assert!(
            self.idle.is_empty() || self.waiters.is_empty(),
            "waiter queued while a pool is idle"
        );
        let mut seen = std::collections::HashSet::new();
        for slot in &self.idle {
            assert!(seen.insert(pool_id(&slot.pool)), "pool in two places");
        }
        for record in self.leases.values() {
            assert!(
                seen.insert(pool_id(&record.pool.pool)),
                "pool in two places"
            );
            assert!(record.soft <= record.hard);
        }
        match self.phase {
            Lifecycle::Running => {}
            Lifecycle::ShuttingDown => {
                assert!(self.idle.is_empty(), "idle pools kept while shutting down");
                assert_eq!(self.waiters.len(), 0);
            }
            Lifecycle::Stopped | Lifecycle::Starting => {
                assert_eq!(total, 0, "pools held while not running");
                assert_eq!(self.waiters.len(), 0);
            }
        }
    }
}
