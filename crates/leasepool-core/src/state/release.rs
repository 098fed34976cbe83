//! Release, draining, finalising a lease, renewal and job counts.

use super::*;

impl<P: Clone, W> LeaseState<P, W> {
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
            fx.note(|| Event::Draining {
                id: record.id,
                pending: record.pending,
            });
            return;
        }
        if let Some(record) = self.take_lease(key, now, fx) {
            self.finalise(record, now, fx);
        }
    }

    /// The lease is over and its pool has no jobs: decide where it goes.
    pub(super) fn finalise(
        &mut self,
        record: LeaseRecord<P>,
        now: Instant,
        fx: &mut Effects<P, W>,
    ) {
        let healthy = self.phase == Lifecycle::Running && now < record.hard;
        let pool = record.pool.seq;
        let outcome = if healthy {
            self.offer(record.pool, now, fx)
        } else {
            fx.shutdown.push(record.pool.pool);
            PoolFate::ShutDown
        };
        fx.note(|| Event::Finalised {
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
            self.revoke(key, now, fx);
            return None;
        }
        record.soft = deadline_after(now, duration);
        record.hard = deadline_after(record.soft, record.grace);
        record.soft_warned = false;
        let (id, soft, hard) = (record.id, record.soft, record.hard);
        self.index_expiry(soft, key);
        self.counters.leases_renewed += 1;
        fx.note(|| Event::Renewed { id, duration });
        // The checker may be sleeping until the old expiry: let it
        // recompute its deadline.
        fx.wake_checker = true;
        Some((soft, hard))
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
            self.revoke(key, now, fx);
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
            if let Some(record) = self.take_lease(key, now, fx) {
                self.finalise(record, now, fx);
            }
        }
    }
}
