//! The first-come, first-served queue of acquirers waiting for a pool.
//!
//! A waiter is queued under the state lock in the same critical section that
//! found no idle pool, so a pool returned in between cannot be missed. A
//! waiter leaves the queue exactly once: it is granted a lease, failed (time
//! out, stop, creation error), or cancelled because its future was dropped.
//! Its outcome is parked in `resolved` until the waiter picks it up.
//!
//! Waiter ids only grow, so the queue is an ordered map from id to waiter:
//! the oldest waiter is the first entry, and a waiter whose future is
//! dropped leaves in O(log n) wherever it stands. A second ordered set,
//! keyed by deadline, finds the waiters that time out without scanning the
//! queue.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::seqmap::{SeqMap, SeqSet};
use super::{Grant, LeaseTerms};
use crate::Error;

/// One queued acquirer.
#[derive(Debug)]
pub(crate) struct Waiter<W> {
    pub(crate) id: u64,
    pub(crate) terms: LeaseTerms,
    /// When the waiter joined the queue.
    pub(crate) since: Instant,
    /// When the waiter gives up, and the timeout it asked for.
    pub(crate) deadline: Option<(Instant, Duration)>,
    /// How to wake the waiter (a wake slot in the manager, its id in tests).
    pub(crate) wake: W,
}

/// What a waiter finds when it is woken.
#[derive(Debug)]
pub(crate) enum Resolution {
    Granted(Grant),
    Failed(Error),
}

#[derive(Debug)]
pub(crate) struct WaitQueue<W> {
    /// Queued waiters by id: iteration order is arrival order.
    queue: BTreeMap<u64, Waiter<W>>,
    /// `(deadline, id)` of every queued waiter that has a deadline.
    deadlines: BTreeSet<(Instant, u64)>,
    resolved: SeqMap<Resolution>,
    next_id: u64,
}

impl<W> WaitQueue<W> {
    pub(crate) fn new() -> Self {
        WaitQueue {
            queue: BTreeMap::new(),
            deadlines: BTreeSet::new(),
            resolved: SeqMap::default(),
            next_id: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.queue.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    pub(crate) fn push(
        &mut self,
        since: Instant,
        terms: LeaseTerms,
        deadline: Option<(Instant, Duration)>,
        wake: W,
    ) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        if let Some((at, _)) = deadline {
            self.deadlines.insert((at, id));
        }
        self.queue.insert(
            id,
            Waiter {
                id,
                since,
                terms,
                deadline,
                wake,
            },
        );
        id
    }

    /// Forgets the deadline entry of a waiter that left the queue.
    fn left(&mut self, waiter: &Waiter<W>) {
        if let Some((at, _)) = waiter.deadline {
            self.deadlines.remove(&(at, waiter.id));
        }
    }

    /// The oldest waiter, removed from the queue.
    pub(crate) fn pop_oldest(&mut self) -> Option<Waiter<W>> {
        let (_, waiter) = self.queue.pop_first()?;
        self.left(&waiter);
        Some(waiter)
    }

    /// Records the outcome for a waiter that has left the queue and returns
    /// its wake handle so the caller can wake it.
    pub(crate) fn resolve(&mut self, waiter: Waiter<W>, resolution: Resolution) -> W {
        self.resolved.insert(waiter.id, resolution);
        waiter.wake
    }

    /// Removes a still-queued waiter. Returns false if it already left.
    pub(crate) fn remove_queued(&mut self, id: u64) -> bool {
        match self.queue.remove(&id) {
            Some(waiter) => {
                self.left(&waiter);
                true
            }
            None => false,
        }
    }

    pub(crate) fn take_resolution(&mut self, id: u64) -> Option<Resolution> {
        self.resolved.remove(&id)
    }

    /// The ids of the `skip` oldest waiters (`skip` is the number of pool
    /// creations in flight: small).
    fn oldest_ids(&self, skip: usize) -> SeqSet {
        self.queue.keys().take(skip).copied().collect()
    }

    /// Removes every waiter, except the `skip` oldest, whose deadline is at
    /// or before `now`, oldest first.
    pub(crate) fn take_timed_out(&mut self, now: Instant, skip: usize) -> Vec<Waiter<W>> {
        let spared = self.oldest_ids(skip);
        let due: Vec<u64> = self
            .deadlines
            .iter()
            .take_while(|(at, _)| *at <= now)
            .map(|(_, id)| *id)
            .filter(|id| !spared.contains(id))
            .collect();
        let mut timed_out: Vec<Waiter<W>> = due
            .into_iter()
            .filter_map(|id| self.queue.remove(&id))
            .collect();
        for waiter in &timed_out {
            if let Some((at, _)) = waiter.deadline {
                self.deadlines.remove(&(at, waiter.id));
            }
        }
        timed_out.sort_unstable_by_key(|w| w.id);
        timed_out
    }

    /// Every queued waiter, oldest first, leaving the queue empty.
    pub(crate) fn drain(&mut self) -> Vec<Waiter<W>> {
        self.deadlines.clear();
        std::mem::take(&mut self.queue).into_values().collect()
    }

    /// Turns every parked grant into a failure (used by stop: the granted
    /// leases are gone).
    pub(crate) fn fail_parked_grants(&mut self, error: &Error) {
        for resolution in self.resolved.values_mut() {
            if matches!(resolution, Resolution::Granted(_)) {
                *resolution = Resolution::Failed(error.clone());
            }
        }
    }

    /// The earliest deadline among the waiters after the `skip` oldest.
    pub(crate) fn earliest_deadline(&self, skip: usize) -> Option<Instant> {
        let spared = self.oldest_ids(skip);
        self.deadlines
            .iter()
            .find(|(_, id)| !spared.contains(id))
            .map(|(at, _)| *at)
    }
}
