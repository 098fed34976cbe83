//! Acquire, the wait queue and the hand-off of a pool to a waiter.

use super::*;

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
        if let Some(slot) = self.idle.pop_front() {
            // Invariant: an idle pool means nobody is queued, so taking it
            // first is first-come, first-served.
            debug_assert!(self.waiters.is_empty());
            return Ok(AcquireStep::Granted(self.grant(
                slot,
                request.terms,
                Duration::ZERO,
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
    pub(super) fn room_for_newcomer(&self) -> bool {
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
    pub(super) fn offer(
        &mut self,
        slot: PoolSlot<P>,
        now: Instant,
        fx: &mut Effects<P, W>,
    ) -> PoolFate {
        if let Some(waiter) = self.waiters.pop_oldest() {
            let waited = now.saturating_duration_since(waiter.since);
            let counters = &mut self.counters;
            counters.acquired_after_wait += 1;
            counters.wait_time_total = counters.wait_time_total.saturating_add(waited);
            counters.wait_time_max = counters.wait_time_max.max(waited);
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
