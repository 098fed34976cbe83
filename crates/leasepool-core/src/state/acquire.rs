//! Acquire, the wait queue and the hand-off of a pool to a waiter.

use super::*;
use crate::error::OwnerLimit;

impl<P: Clone, W> LeaseState<P, W> {
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
        let owner = request.terms.owner.clone();
        // An owner at its limit may queue, but takes no pool until one of
        // its leases ends.
        let held_back = !self.waiters.has_room_for(owner.as_ref());
        if !held_back {
            if let Some(slot) = self.idle.pop_front() {
                // Invariant: an idle pool means nobody who could take it
                // is queued, so taking it is first-come, first-served.
                debug_assert_eq!(self.waiters.servable(), 0);
                return Ok(AcquireStep::Granted(self.grant(
                    slot,
                    request.terms,
                    Duration::ZERO,
                    now,
                    fx,
                )));
            }
        }
        let room = !held_back && self.room_for_newcomer();
        if !request.wait {
            // A fail-fast caller never waits for a release: its owner must
            // have room beyond its queued waiters, and a pool must be free
            // or creatable beyond those the queued waiters claim.
            let owner_limit = self.waiters.claimed_up_to_limit(owner.as_ref());
            if owner_limit.is_some() || !room {
                self.counters.unavailable += 1;
                return Err(Error::Unavailable {
                    max_pools: self.limits.max_pools,
                    owner_limit: owner_limit.map(|limit| OwnerLimit {
                        owner: owner.as_deref().unwrap_or_default().to_owned(),
                        limit,
                    }),
                });
            }
        }
        if let Some((at, timeout)) = request.deadline {
            if at <= now && !room {
                self.counters.timed_out += 1;
                return Err(Error::Timeout(timeout));
            }
        }
        // A fail-fast caller is queued only for a pool that exists or is
        // being created for it: it waits in the highest lane, so that no
        // later waiter of a higher lane takes that pool from it.
        let lane = if request.wait { request.terms.lane } else { 0 };
        let id = self
            .waiters
            .push(now, request.terms, lane, request.deadline, wake());
        if self.creations_needed() > 0
            || self.before_checker(request.deadline.map(|(at, _)| at))
            // A newcomer of a higher lane may take a spared waiter's place.
            || self.creating > 0 && self.unspared_due()
        {
            fx.wake_checker = true;
        }
        Ok(AcquireStep::Queued(id))
    }

    /// True if a pool could still be created for a caller arriving now:
    /// every pool that exists or may be created (`max_pools - total`, pools
    /// in creation included) beyond those the queued waiters will take.
    pub(super) fn room_for_newcomer(&self) -> bool {
        self.limits.max_pools.saturating_sub(self.total()) > self.waiters.servable()
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

    /// Leases `slot` under `terms` to a caller that `waited` in the queue.
    pub(super) fn grant(
        &mut self,
        slot: PoolSlot<P>,
        terms: LeaseTerms,
        waited: Duration,
        now: Instant,
        fx: &mut Effects<P, W>,
    ) -> Grant {
        let key = self.next_lease;
        self.next_lease += 1;
        self.counters.acquired += 1;
        self.waiters.lease_granted(terms.owner.as_ref());
        self.lane_leases[terms.lane] += 1;
        let id = LeaseId::new(self.manager_id, key);
        let soft = deadline_after(now, terms.duration);
        let hard = deadline_after(soft, terms.grace);
        let end = Arc::new(EndCell::default());
        fx.note(|| Event::Leased {
            id,
            owner: terms.owner.clone(),
            pool: slot.seq,
            duration: terms.duration,
            grace: terms.grace,
            waited,
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
                lane: terms.lane,
            },
        );
        self.index_expiry(soft, key);
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

    /// Removes lease `key`'s record: it no longer counts against its owner
    /// or its lane. Waiters its owner's limit held back may now take an
    /// idle pool, and get one at once.
    #[inline]
    pub(super) fn take_lease(
        &mut self,
        key: u64,
        now: Instant,
        fx: &mut Effects<P, W>,
    ) -> Option<LeaseRecord<P>> {
        let record = self.leases.remove(&key)?;
        // Its expiry entry goes stale.
        self.lane_leases[record.lane] -= 1;
        if self.waiters.lease_ended(record.owner.as_ref()) {
            self.serve_idle(now, fx);
            self.request_capacity(fx);
        }
        Some(record)
    }

    /// Hands idle pools to servable waiters while there are both (after an
    /// owner's limit stopped holding its waiters back).
    pub(super) fn serve_idle(&mut self, now: Instant, fx: &mut Effects<P, W>) {
        while self.phase == Lifecycle::Running && self.waiters.servable() > 0 {
            let Some(slot) = self.idle.pop_front() else {
                return;
            };
            let outcome = self.offer(slot, now, fx);
            debug_assert_eq!(outcome, PoolFate::HandedOff);
        }
    }

    /// Gives a healthy, free pool to the oldest waiter, or keeps it idle if
    /// that does not push the total above the desired count, or shuts it
    /// down. `total` must not count `slot` yet.
    pub(super) fn offer(
        &mut self,
        slot: PoolSlot<P>,
        now: Instant,
        fx: &mut Effects<P, W>,
    ) -> PoolFate {
        if let Some((waiter, passed)) = self.waiters.pop_next(now) {
            let waited = now.saturating_duration_since(waiter.since);
            let counters = &mut self.counters;
            counters.acquired_after_wait += 1;
            counters.wait_time_total = counters.wait_time_total.saturating_add(waited);
            counters.wait_time_max = counters.wait_time_max.max(waited);
            counters.served_by_aging += u64::from(passed.by_aging);
            counters.passed_over_by_owner_limit += u64::from(passed.by_owner_limit);
            let Waiter { terms, .. } = &waiter;
            let grant = self.grant(slot, terms.clone(), waited, now, fx);
            fx.wake
                .push(self.waiters.resolve(waiter, Resolution::Granted(grant)));
            PoolFate::HandedOff
        } else if self.total() < self.desired {
            self.idle.push_back(slot);
            PoolFate::Idle
        } else {
            fx.shutdown.push(slot.pool);
            PoolFate::ShutDown
        }
    }
}
