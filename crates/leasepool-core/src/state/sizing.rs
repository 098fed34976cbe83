//! The desired size, pool creation, and the checker's tick.

use super::*;

impl<P: Clone, W> LeaseState<P, W> {
    pub(crate) fn set_desired(&mut self, desired: usize) {
        self.desired = desired.clamp(self.limits.min_pools, self.limits.max_pools);
    }

    /// A new reading of the size provider: the desired count changes, idle
    /// pools above it are shut down at once (newest first), and the checker
    /// is asked to create what is missing.
    pub(crate) fn apply_desired(&mut self, desired: usize, fx: &mut Effects<P, W>) {
        self.set_desired(desired);
        self.shrink_idle(fx);
        fx.wake_checker = true;
    }

    /// Shuts down idle pools above the desired count, newest first. Leased
    /// pools are never taken: they go when released.
    pub(super) fn shrink_idle(&mut self, fx: &mut Effects<P, W>) {
        while self.phase == Lifecycle::Running && self.total() > self.desired {
            let Some(slot) = self.idle.pop_back() else {
                break;
            };
            fx.note(|| Event::Shrunk { pool: slot.seq });
            fx.shutdown.push(slot.pool);
        }
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
            .servable()
            .saturating_sub(self.creating + for_desired);
        room.min(for_desired + for_waiters)
    }

    /// Wakes the checker if capacity must be created, or if a waiter past
    /// its deadline is no longer among those the creations in flight will
    /// serve (the line for new pools changed: an owner got room back, a
    /// pool went to an aged waiter) and must be timed out.
    pub(super) fn request_capacity(&mut self, fx: &mut Effects<P, W>) {
        if self.creations_needed() > 0 || self.unspared_due() {
            fx.wake_checker = true;
        }
    }

    /// True if a waiter the creations in flight will not serve (all of
    /// them, once none is in flight) has a deadline before the checker's
    /// next pass: it was spared when the pass was planned.
    pub(super) fn unspared_due(&self) -> bool {
        self.waiters.len() > 0
            && self.before_checker(self.waiters.earliest_deadline(self.spared_waiters()))
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
        fx.note(|| Event::Created { pool: slot.seq });
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
        if self.unspared_due() {
            fx.wake_checker = true;
        }
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
        fx.note(|| Event::Retired {
            pool: seq,
            lease: None,
            reason: reason.to_owned(),
        });
        self.request_capacity(fx);
    }

    /// A planned creation failed: the waiter first in line for the pools
    /// being created gets the error (unless each of them still has one).
    pub(crate) fn pool_creation_failed(&mut self, seq: u64, error: Error, fx: &mut Effects<P, W>) {
        if self.in_creation.remove(&seq).is_none() {
            return; // planned by a run that was stopped
        }
        self.creating = self.creating.saturating_sub(1);
        if self.waiters.servable() > self.creating {
            if let Some(waiter) = self.waiters.pop_first_in_line() {
                fx.wake.push(
                    self.waiters
                        .resolve(waiter, Resolution::Failed(error.clone())),
                );
            }
        }
        fx.note(|| Event::CreateFailed { error });
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
                fx.note(|| Event::WaiterTimedOut { waited: timeout });
                fx.wake.push(
                    self.waiters
                        .resolve(waiter, Resolution::Failed(Error::Timeout(timeout))),
                );
            }
            // Hard expiries due were revoked above: what is due now is
            // soft expiry.
            for (at, key) in self.take_due_expiries(now) {
                // (A rebuilt index may hold an entry twice.)
                if let Some(record) = self.leases.get_mut(&key).filter(|r| r.next_expiry() == at) {
                    debug_assert!(!record.soft_warned);
                    record.soft_warned = true;
                    fx.note(|| Event::SoftExpired {
                        id: record.id,
                        owner: record.owner.clone(),
                    });
                    let hard = record.hard;
                    self.index_expiry(hard, key);
                }
            }
            self.shrink_idle(fx);
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
    pub(super) fn spared_waiters(&self) -> usize {
        self.limits
            .max_pools
            .saturating_sub(self.total())
            .min(self.creating)
    }

    /// The earliest moment something time-based happens, capped at
    /// `now + interval`.
    pub(super) fn next_deadline(&mut self, now: Instant, interval: Duration) -> Instant {
        let mut next = deadline_after(now, interval);
        if let Some(at) = self.earliest_expiry() {
            next = next.min(at);
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
    pub(super) fn before_checker(&self, at: Option<Instant>) -> bool {
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
            self.idle.is_empty() || self.waiters.servable() == 0,
            "a waiter that could take it is queued while a pool is idle"
        );
        self.waiters.check_invariants();
        let mut held: std::collections::HashMap<&str, usize> = Default::default();
        for record in self.leases.values() {
            if let Some(owner) = &record.owner {
                *held.entry(owner).or_default() += 1;
            }
        }
        for (owner, n) in &held {
            let limit = self.waiters.fairness().limit_of(Some(&Arc::from(*owner)));
            assert!(
                limit.is_none_or(|limit| *n <= limit),
                "{owner} holds {n} leases, above its limit"
            );
        }
        for (owner, n, _) in self.waiters.owner_holds() {
            assert_eq!(
                held.get(&**owner).copied().unwrap_or(0),
                n,
                "{owner}'s count"
            );
        }
        let mut lanes = [0; LANES];
        for (key, record) in &self.leases {
            lanes[record.lane] += 1;
            assert!(
                self.expiries.contains((record.next_expiry(), *key)),
                "lease {key}'s next expiry is indexed"
            );
        }
        assert_eq!(lanes, self.lane_leases, "leases per lane");
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
