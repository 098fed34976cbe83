//! Lifecycle transitions: start, stop, graceful shutdown.

use super::*;

impl<P: Clone, W> LeaseState<P, W> {
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
            if self.pool_broken(seq, &reason, now, fx) {
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
        self.lane_leases = [0; LANES];
        self.expiries.clear();
        self.waiters.forget_leases();
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
}
