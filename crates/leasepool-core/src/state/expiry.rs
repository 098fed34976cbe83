//! Revocation at hard expiry (and at a shutdown deadline), and broken pools.

use super::*;

impl<P: Clone, W> LeaseState<P, W> {
    /// Revokes one lease: its pool is shut down, never recycled.
    pub(super) fn revoke(&mut self, key: u64, now: Instant, fx: &mut Effects<P, W>) {
        let Some(record) = self.take_lease(key, now, fx) else {
            return;
        };
        record.end.set(LeaseEnd::Expired);
        self.counters.leases_revoked += 1;
        fx.note(|| Event::Revoked {
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
    pub(crate) fn revoke_all(&mut self, now: Instant, fx: &mut Effects<P, W>) -> usize {
        let mut keys: Vec<u64> = self.leases.keys().copied().collect();
        keys.sort_unstable();
        for key in &keys {
            self.revoke(*key, now, fx);
        }
        keys.len()
    }

    /// Revokes every lease at or past its hard expiry, in lease order.
    pub(crate) fn revoke_expired(&mut self, now: Instant, fx: &mut Effects<P, W>) {
        if self.expiries.peek().is_none_or(|(at, _)| at > now) {
            return;
        }
        // Entries due are hard expiries, or soft ones the checker has not
        // warned of yet: those go back for the checker.
        let mut expired = Vec::new();
        for (at, key) in self.take_due_expiries(now) {
            if self.leases.get(&key).is_some_and(|r| r.hard <= now) {
                expired.push(key);
            } else {
                self.expiries.push(at, key);
            }
        }
        if expired.is_empty() {
            return;
        }
        expired.sort_unstable();
        expired.dedup();
        for key in expired {
            self.revoke(key, now, fx);
        }
    }

    /// Pool `seq` can no longer run work: retire it wherever it is. Returns
    /// false if the pool is not (or no longer) here, e.g. still being
    /// created.
    pub(crate) fn pool_broken(
        &mut self,
        seq: u64,
        reason: &str,
        now: Instant,
        fx: &mut Effects<P, W>,
    ) -> bool {
        if let Some(index) = self.idle.iter().position(|slot| slot.seq == seq) {
            if let Some(slot) = self.idle.remove(index) {
                fx.shutdown.push(slot.pool);
            }
            fx.note(|| Event::Retired {
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
            if let Some(record) = self.take_lease(key, now, fx) {
                record.end.set(LeaseEnd::Broken);
                fx.note(|| Event::Retired {
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
        if self.pool_broken(seq, reason, now, fx) {
            self.record_break(now);
        } else if let Some(early) = self.in_creation.get_mut(&seq) {
            early.get_or_insert_with(|| reason.to_owned());
        }
        self.deferred.extend(fx.shutdown.drain(before..));
        fx.wake_checker = true;
    }
}
