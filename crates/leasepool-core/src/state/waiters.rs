//! The first-come, first-served queue of acquirers waiting for a pool.
//!
//! A waiter is queued under the state lock in the same critical section that
//! found no idle pool, so a pool returned in between cannot be missed. A
//! waiter leaves the queue exactly once: it is granted a lease, failed (time
//! out, stop, creation error), or cancelled because its future was dropped.
//! Its outcome is parked in `resolved` until the waiter picks it up.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::seqmap::SeqMap;
use super::{Grant, LeaseTerms};
use crate::Error;

/// One queued acquirer.
#[derive(Debug)]
pub(crate) struct Waiter<S> {
    pub(crate) id: u64,
    pub(crate) terms: LeaseTerms,
    /// When the waiter gives up, and the timeout it asked for.
    pub(crate) deadline: Option<(Instant, Duration)>,
    /// How to wake the waiter (an event in the manager, `()` in tests).
    pub(crate) signal: S,
}

/// What a waiter finds when it is woken.
#[derive(Debug)]
pub(crate) enum Resolution {
    Granted(Grant),
    Failed(Error),
}

#[derive(Debug)]
pub(crate) struct WaitQueue<S> {
    queue: VecDeque<Waiter<S>>,
    resolved: SeqMap<Resolution>,
    next_id: u64,
}

impl<S> WaitQueue<S> {
    pub(crate) fn new() -> Self {
        WaitQueue {
            queue: VecDeque::new(),
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
        terms: LeaseTerms,
        deadline: Option<(Instant, Duration)>,
        signal: S,
    ) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.queue.push_back(Waiter {
            id,
            terms,
            deadline,
            signal,
        });
        id
    }

    /// The oldest waiter, removed from the queue.
    pub(crate) fn pop_oldest(&mut self) -> Option<Waiter<S>> {
        self.queue.pop_front()
    }

    /// Records the outcome for a waiter that has left the queue and returns
    /// its signal so the caller can wake it.
    pub(crate) fn resolve(&mut self, waiter: Waiter<S>, resolution: Resolution) -> S {
        self.resolved.insert(waiter.id, resolution);
        waiter.signal
    }

    /// Removes a still-queued waiter. Returns false if it already left.
    pub(crate) fn remove_queued(&mut self, id: u64) -> bool {
        match self.queue.iter().position(|w| w.id == id) {
            Some(index) => {
                self.queue.remove(index);
                true
            }
            None => false,
        }
    }

    pub(crate) fn take_resolution(&mut self, id: u64) -> Option<Resolution> {
        self.resolved.remove(&id)
    }

    /// Removes every waiter, except the `skip` oldest, whose deadline is at
    /// or before `now`.
    pub(crate) fn take_timed_out(&mut self, now: Instant, skip: usize) -> Vec<Waiter<S>> {
        let expired = |w: &Waiter<S>| matches!(w.deadline, Some((at, _)) if at <= now);
        if !self.queue.iter().skip(skip).any(expired) {
            return Vec::new();
        }
        let mut kept = VecDeque::with_capacity(self.queue.len());
        let mut timed_out = Vec::new();
        for (index, waiter) in self.queue.drain(..).enumerate() {
            if index >= skip && expired(&waiter) {
                timed_out.push(waiter);
            } else {
                kept.push_back(waiter);
            }
        }
        self.queue = kept;
        timed_out
    }

    /// Every queued waiter, oldest first, leaving the queue empty.
    pub(crate) fn drain(&mut self) -> Vec<Waiter<S>> {
        self.queue.drain(..).collect()
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
        self.queue
            .iter()
            .skip(skip)
            .filter_map(|w| w.deadline.map(|(at, _)| at))
            .min()
    }
}
