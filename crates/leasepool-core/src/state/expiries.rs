//! The leases' next expiries, in time order, without scanning the leases.
//!
//! A binary heap of `(expiry, lease key)`, smallest first. Entries are not
//! removed when a lease ends or is renewed (that would cost a search);
//! they go *stale* instead: an entry is live only while its lease exists
//! and its next expiry (`LeaseRecord::next_expiry`) is still the entry's
//! time. Stale entries are dropped when they reach the top, and the heap is
//! rebuilt from the live leases when stale entries outnumber them, so it
//! holds at most about twice as many entries as there are leases.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

#[derive(Debug, Default)]
pub(crate) struct Expiries {
    heap: BinaryHeap<Reverse<(Instant, u64)>>,
}

impl Expiries {
    /// Lease `key` next expires at `at` (its earlier entries go stale).
    pub(crate) fn push(&mut self, at: Instant, key: u64) {
        self.heap.push(Reverse((at, key)));
    }

    /// The earliest entry, live or stale.
    pub(crate) fn peek(&self) -> Option<(Instant, u64)> {
        self.heap.peek().map(|Reverse(entry)| *entry)
    }

    /// Removes the earliest entry.
    pub(crate) fn pop(&mut self) -> Option<(Instant, u64)> {
        self.heap.pop().map(|Reverse(entry)| entry)
    }

    /// Drops stale entries from the top, so that `peek` is live.
    pub(crate) fn drop_stale(&mut self, live: impl Fn(Instant, u64) -> bool) {
        while let Some((at, key)) = self.peek() {
            if live(at, key) {
                return;
            }
            self.heap.pop();
        }
    }

    /// Rebuilds the heap from `live` entries once stale ones outnumber
    /// them (amortised O(1) per lease).
    pub(crate) fn compact(&mut self, leases: usize, live: impl Iterator<Item = (Instant, u64)>) {
        if self.heap.len() > 2 * leases + 32 {
            self.heap = live.map(Reverse).collect();
        }
    }

    pub(crate) fn clear(&mut self) {
        self.heap.clear();
    }

    /// Every entry (tests).
    #[cfg(test)]
    pub(crate) fn contains(&self, entry: (Instant, u64)) -> bool {
        self.heap.iter().any(|Reverse(e)| *e == entry)
    }
}

impl<P: Clone, W> super::LeaseState<P, W> {
    /// True if `(at, key)` is lease `key`'s next expiry (a live entry).
    fn expiry_is_live(
        leases: &super::SeqMap<super::LeaseRecord<P>>,
        at: Instant,
        key: u64,
    ) -> bool {
        leases.get(&key).is_some_and(|r| r.next_expiry() == at)
    }

    /// Records lease `key`'s new next expiry, and keeps the index small.
    pub(super) fn index_expiry(&mut self, at: Instant, key: u64) {
        self.expiries.push(at, key);
        let leases = &self.leases;
        self.expiries.compact(
            leases.len(),
            leases.iter().map(|(key, r)| (r.next_expiry(), *key)),
        );
    }

    /// Removes and returns the live entries due at `now`, earliest first
    /// (stale ones are dropped on the way).
    pub(super) fn take_due_expiries(&mut self, now: Instant) -> Vec<(Instant, u64)> {
        let mut due = Vec::new();
        while let Some((at, key)) = self.expiries.peek() {
            if at > now {
                break;
            }
            self.expiries.pop();
            if Self::expiry_is_live(&self.leases, at, key) {
                due.push((at, key));
            }
        }
        due
    }

    /// The earliest live expiry.
    pub(super) fn earliest_expiry(&mut self) -> Option<Instant> {
        let leases = &self.leases;
        self.expiries
            .drop_stale(|at, key| Self::expiry_is_live(leases, at, key));
        self.expiries.peek().map(|(at, _)| at)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn stale_entries_are_dropped_and_the_heap_stays_small() {
        let base = Instant::now();
        let at = |ms: u64| base + Duration::from_millis(ms);
        let mut expiries = Expiries::default();
        // One live lease renewed again and again: its key's latest time.
        let mut latest = at(0);
        for n in 1..=500u64 {
            latest = at(n);
            expiries.push(latest, 7);
            expiries.compact(1, std::iter::once((latest, 7)));
            assert!(
                expiries.heap.len() <= 2 + 32 + 1,
                "{} entries",
                expiries.heap.len()
            );
        }
        expiries.drop_stale(|t, key| key == 7 && t == latest);
        assert_eq!(expiries.peek(), Some((latest, 7)));
    }
}
