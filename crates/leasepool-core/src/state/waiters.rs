//! The queue of acquirers waiting for a pool: priority lanes, owner limits.
//!
//! A waiter is queued under the state lock in the same critical section that
//! found no pool it could take, so a pool returned in between cannot be
//! missed. A waiter leaves the queue exactly once: it is granted a lease,
//! failed (time out, stop, creation error), or cancelled because its future
//! was dropped. Its outcome is parked in `resolved` until the waiter picks
//! it up.
//!
//! # Who is served next
//!
//! Each waiter sits in the lane of its [`Priority`](crate::Priority). A
//! waiter is *servable* unless its owner is at its lease limit. A freed pool
//! goes to the oldest servable waiter of the highest lane, where a waiter
//! that has waited at least the aging bound counts as being in the highest
//! lane. Waiter ids only grow with time, so "oldest" is "smallest id".
//!
//! # How it stays cheap
//!
//! - `lanes[l]` orders every waiter of lane `l` by id.
//! - `ready[l]` orders the servable candidates of lane `l`: every waiter
//!   whose owner has no limit, and, for each owner under its limit, its
//!   oldest waiter in that lane (the group's *head*). A group at its limit
//!   has no entry at all, so it is passed over without being scanned; when
//!   one of its leases ends, its heads come back.
//! - Without any owner limit configured, `ready` is `lanes` itself.
//!
//! Choosing looks at the first entry of each lane (three of them), so
//! queueing, cancelling and serving are O(log n) whatever the owners and
//! lanes. A second ordered set, keyed by deadline, finds the waiters that
//! time out without scanning the queue.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::seqmap::{SeqMap, SeqSet};
use super::{Grant, LeaseTerms};
use crate::Error;

/// The number of priority lanes; lane 0 is the highest.
pub(crate) const LANES: usize = 3;

/// Who may hold how many leases, and when waiting turns into priority.
#[derive(Debug, Clone, Default)]
pub(crate) struct Fairness {
    /// A waiter that has waited this long is served as if in lane 0.
    pub(crate) aging: Option<Duration>,
    /// The limit of every owner without a limit of its own.
    pub(crate) default_limit: Option<usize>,
    /// Limits of particular owners.
    pub(crate) owner_limits: HashMap<Arc<str>, usize>,
}

impl Fairness {
    /// The lease limit of `owner` (a lease without an owner has none).
    pub(crate) fn limit_of(&self, owner: Option<&Arc<str>>) -> Option<usize> {
        let owner = owner?;
        self.owner_limits.get(owner).copied().or(self.default_limit)
    }

    #[inline]
    fn has_limits(&self) -> bool {
        self.default_limit.is_some() || !self.owner_limits.is_empty()
    }
}

/// One queued acquirer.
#[derive(Debug)]
pub(crate) struct Waiter<W> {
    pub(crate) id: u64,
    pub(crate) terms: LeaseTerms,
    /// The lane it waits in (0 is the highest): the lane it asked for
    /// (`terms.lane`), or 0 for a fail-fast caller.
    pub(crate) lane: usize,
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

/// What changed the choice of the waiter served (for the counters).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Passed {
    /// Aging served this waiter ahead of a waiter of a higher lane.
    pub(crate) by_aging: bool,
    /// An older or higher-lane waiter was passed over because its owner
    /// was at its limit.
    pub(crate) by_owner_limit: bool,
}

/// The leases and queued waiters of one owner that has a limit.
#[derive(Debug)]
struct Group {
    limit: usize,
    held: usize,
    queued: [BTreeSet<u64>; LANES],
    queued_total: usize,
}

impl Group {
    fn new(limit: usize) -> Self {
        Group {
            limit,
            held: 0,
            queued: Default::default(),
            queued_total: 0,
        }
    }

    fn has_room(&self) -> bool {
        self.held < self.limit
    }

    /// How many of its waiters could take a pool now.
    fn servable(&self) -> usize {
        self.queued_total.min(self.limit.saturating_sub(self.held))
    }

    fn is_empty(&self) -> bool {
        self.held == 0 && self.queued_total == 0
    }
}

#[derive(Debug)]
pub(crate) struct WaitQueue<W> {
    fair: Fairness,
    /// Every queued waiter, by id (an ordered map: it never rehashes, which
    /// matters with 100k waiters of a hundred bytes each).
    waiters: BTreeMap<u64, Waiter<W>>,
    /// Every queued waiter's id, per lane, oldest first.
    lanes: [BTreeSet<u64>; LANES],
    /// The servable candidates per lane (see the module docs); unused (the
    /// lanes serve) while no owner limit is configured.
    ready: [BTreeSet<u64>; LANES],
    /// Owners that have a limit and hold leases or have waiters.
    groups: HashMap<Arc<str>, Group>,
    /// How many queued waiters could take a pool now.
    servable: usize,
    /// `(deadline, id)` of every queued waiter that has a deadline.
    deadlines: BTreeSet<(Instant, u64)>,
    resolved: SeqMap<Resolution>,
    next_id: u64,
}

impl<W> WaitQueue<W> {
    pub(crate) fn new(fair: Fairness) -> Self {
        WaitQueue {
            fair,
            waiters: BTreeMap::new(),
            lanes: Default::default(),
            ready: Default::default(),
            groups: HashMap::new(),
            servable: 0,
            deadlines: BTreeSet::new(),
            resolved: SeqMap::default(),
            next_id: 0,
        }
    }

    pub(crate) fn fairness(&self) -> &Fairness {
        &self.fair
    }

    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.waiters.len()
    }

    /// How many queued waiters could take a pool now (those whose owner is
    /// not at its limit, counting no more of an owner's than its room).
    #[inline]
    pub(crate) fn servable(&self) -> usize {
        self.servable
    }

    /// Every queued waiter, in no particular order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Waiter<W>> {
        self.waiters.values()
    }

    /// The servable candidates of lane `lane`.
    fn candidates(&self, lane: usize) -> &BTreeSet<u64> {
        if self.fair.has_limits() {
            &self.ready[lane]
        } else {
            &self.lanes[lane]
        }
    }

    /// True if a lease for `owner` would not exceed its limit.
    #[inline]
    pub(crate) fn has_room_for(&self, owner: Option<&Arc<str>>) -> bool {
        if !self.fair.has_limits() {
            return true;
        }
        match (owner, self.fair.limit_of(owner)) {
            (Some(owner), Some(limit)) => self
                .groups
                .get(owner)
                .map_or(limit > 0, |group| group.has_room()),
            _ => true,
        }
    }

    /// `owner`'s limit, if its leases and queued waiters already reach
    /// it (a newcomer that will not wait could not be served without a
    /// release).
    pub(crate) fn claimed_up_to_limit(&self, owner: Option<&Arc<str>>) -> Option<usize> {
        let limit = self.fair.limit_of(owner)?;
        let claimed = owner
            .and_then(|owner| self.groups.get(owner))
            .map_or(0, |group| group.held + group.queued_total);
        (claimed >= limit).then_some(limit)
    }

    /// Runs `change` on `owner`'s group (created on demand) and keeps the
    /// servable count and the group's heads in `ready` up to date.
    fn with_group(&mut self, owner: &Arc<str>, limit: usize, change: impl FnOnce(&mut Group)) {
        let group = self
            .groups
            .entry(owner.clone())
            .or_insert_with(|| Group::new(limit));
        let before = (group.servable(), group.has_room());
        let heads: [Option<u64>; LANES] =
            std::array::from_fn(|lane| group.queued[lane].first().copied());
        change(group);
        let after = (group.servable(), group.has_room());
        self.servable = self.servable + after.0 - before.0;
        for (lane, head) in heads.into_iter().enumerate() {
            let new_head = group.queued[lane].first().copied();
            let was = head.filter(|_| before.1);
            let is = new_head.filter(|_| after.1);
            if was != is {
                if let Some(id) = was {
                    self.ready[lane].remove(&id);
                }
                if let Some(id) = is {
                    self.ready[lane].insert(id);
                }
            }
        }
        if group.is_empty() {
            self.groups.remove(owner);
        }
    }

    pub(crate) fn push(
        &mut self,
        since: Instant,
        terms: LeaseTerms,
        lane: usize,
        deadline: Option<(Instant, Duration)>,
        wake: W,
    ) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        if let Some((at, _)) = deadline {
            self.deadlines.insert((at, id));
        }
        self.lanes[lane].insert(id);
        match (&terms.owner, self.fair.limit_of(terms.owner.as_ref())) {
            (Some(owner), Some(limit)) => {
                let owner = owner.clone();
                self.with_group(&owner, limit, |group| {
                    group.queued[lane].insert(id);
                    group.queued_total += 1;
                });
            }
            _ => {
                if self.fair.has_limits() {
                    self.ready[lane].insert(id);
                }
                self.servable += 1;
            }
        }
        self.waiters.insert(
            id,
            Waiter {
                id,
                terms,
                lane,
                since,
                deadline,
                wake,
            },
        );
        id
    }

    /// Removes a queued waiter from every index. None if it already left.
    fn remove(&mut self, id: u64) -> Option<Waiter<W>> {
        let waiter = self.waiters.remove(&id)?;
        if let Some((at, _)) = waiter.deadline {
            self.deadlines.remove(&(at, id));
        }
        let lane = waiter.lane;
        self.lanes[lane].remove(&id);
        match (
            &waiter.terms.owner,
            self.fair.limit_of(waiter.terms.owner.as_ref()),
        ) {
            (Some(owner), Some(limit)) => self.with_group(owner, limit, |group| {
                group.queued[lane].remove(&id);
                group.queued_total -= 1;
            }),
            _ => {
                if self.fair.has_limits() {
                    self.ready[lane].remove(&id);
                }
                self.servable -= 1;
            }
        }
        Some(waiter)
    }

    /// A lease was granted to `owner`: it counts against its limit.
    #[inline]
    pub(crate) fn lease_granted(&mut self, owner: Option<&Arc<str>>) {
        if !self.fair.has_limits() {
            return;
        }
        if let (Some(owner), Some(limit)) = (owner, self.fair.limit_of(owner)) {
            self.with_group(owner, limit, |group| group.held += 1);
        }
    }

    /// A lease of `owner` ended. True if waiters became servable (its
    /// owner was at its limit and has waiters).
    #[inline]
    pub(crate) fn lease_ended(&mut self, owner: Option<&Arc<str>>) -> bool {
        if !self.fair.has_limits() {
            return false;
        }
        let (Some(owner), Some(limit)) = (owner, self.fair.limit_of(owner)) else {
            return false;
        };
        let before = self.servable;
        self.with_group(owner, limit, |group| {
            group.held = group.held.saturating_sub(1)
        });
        self.servable > before
    }

    /// Every lease ended at once (stop): no owner holds any.
    pub(crate) fn forget_leases(&mut self) {
        let owners: Vec<(Arc<str>, usize)> = self
            .groups
            .iter()
            .map(|(owner, group)| (owner.clone(), group.limit))
            .collect();
        for (owner, limit) in owners {
            self.with_group(&owner, limit, |group| group.held = 0);
        }
    }

    /// True if waiter `id` has waited long enough to count as lane 0.
    fn aged(&self, id: u64, now: Instant) -> bool {
        let Some(aging) = self.fair.aging else {
            return false;
        };
        self.waiters.get(&id).is_some_and(|w| {
            w.since
                .checked_add(aging)
                .is_some_and(|served_high| served_high <= now)
        })
    }

    /// The waiter the rule picks among the first entries of each lane's
    /// set in `sets`: the oldest of lane 0 and of the aged waiters; else
    /// the oldest of the highest non-empty lane.
    fn choose(&self, sets: &[&BTreeSet<u64>; LANES], now: Instant) -> Option<u64> {
        let first: [Option<u64>; LANES] = std::array::from_fn(|lane| sets[lane].first().copied());
        let high = (0..LANES)
            .filter_map(|lane| first[lane].filter(|id| lane == 0 || self.aged(*id, now)))
            .min();
        high.or_else(|| first.iter().flatten().next().copied())
    }

    /// Removes and returns the waiter a freed pool goes to (see the module
    /// docs), with what changed the choice.
    #[inline]
    pub(crate) fn pop_next(&mut self, now: Instant) -> Option<(Waiter<W>, Passed)> {
        if self.waiters.is_empty() {
            return None;
        }
        let candidates: [&BTreeSet<u64>; LANES] = std::array::from_fn(|lane| self.candidates(lane));
        let chosen = self.choose(&candidates, now)?;
        let by_lane_alone = candidates.iter().find_map(|set| set.first().copied());
        let passed = Passed {
            by_aging: self.fair.aging.is_some() && by_lane_alone != Some(chosen),
            by_owner_limit: self.fair.has_limits() && {
                let everyone: [&BTreeSet<u64>; LANES] =
                    std::array::from_fn(|lane| &self.lanes[lane]);
                self.choose(&everyone, now) != Some(chosen)
            },
        };
        let waiter = self.remove(chosen)?;
        Some((waiter, passed))
    }

    /// Records the outcome for a waiter that has left the queue and returns
    /// its wake handle so the caller can wake it.
    pub(crate) fn resolve(&mut self, waiter: Waiter<W>, resolution: Resolution) -> W {
        self.resolved.insert(waiter.id, resolution);
        waiter.wake
    }

    /// Removes a still-queued waiter. Returns false if it already left.
    pub(crate) fn remove_queued(&mut self, id: u64) -> bool {
        self.remove(id).is_some()
    }

    pub(crate) fn take_resolution(&mut self, id: u64) -> Option<Resolution> {
        self.resolved.remove(&id)
    }

    /// The ids of the (at most) `count` waiters first in line for the
    /// pools being created (`count` is the number of creations in flight:
    /// small): the servable waiters by lane, then arrival, each owner with
    /// a limit taking no more than its room. Aging is left out, so the line
    /// does not change as time passes, and serving its first waiter leaves
    /// the rest of it as it was.
    fn next_in_line(&self, count: usize) -> Vec<u64> {
        let mut line = Vec::new();
        if count == 0 {
            return line;
        }
        let mut room: HashMap<&Arc<str>, usize> = HashMap::new();
        for lane in 0..LANES {
            // The lane's first candidates; an owner's head stands for up to
            // `count` of its waiters in the lane.
            let mut ids: Vec<u64> = Vec::new();
            for id in self.candidates(lane).iter().take(count) {
                let owner = self.waiters[id].terms.owner.as_ref();
                match owner.and_then(|owner| self.groups.get(owner).map(|g| (owner, g))) {
                    Some((_, group)) if self.fair.limit_of(owner).is_some() => {
                        ids.extend(group.queued[lane].iter().take(count));
                    }
                    _ => ids.push(*id),
                }
            }
            ids.sort_unstable();
            for id in ids {
                let owner = self.waiters[&id].terms.owner.as_ref();
                if let Some(group) = owner.and_then(|owner| self.groups.get(owner)) {
                    let left = room
                        .entry(owner.expect("grouped waiters have an owner"))
                        .or_insert(group.limit.saturating_sub(group.held));
                    if *left == 0 {
                        continue;
                    }
                    *left -= 1;
                }
                line.push(id);
                if line.len() == count {
                    return line;
                }
            }
        }
        line
    }

    /// Removes and returns the waiter first in line for the pools being
    /// created (see `next_in_line`): the one a failed creation was for.
    pub(crate) fn pop_first_in_line(&mut self) -> Option<Waiter<W>> {
        let id = *self.next_in_line(1).first()?;
        self.remove(id)
    }

    /// Removes every waiter, except the `spared` next in line, whose
    /// deadline is at or before `now`, oldest first.
    pub(crate) fn take_timed_out(&mut self, now: Instant, spared: usize) -> Vec<Waiter<W>> {
        let spared: SeqSet = self.next_in_line(spared).into_iter().collect();
        let due: Vec<u64> = self
            .deadlines
            .iter()
            .take_while(|(at, _)| *at <= now)
            .map(|(_, id)| *id)
            .filter(|id| !spared.contains(id))
            .collect();
        let mut timed_out: Vec<Waiter<W>> =
            due.into_iter().filter_map(|id| self.remove(id)).collect();
        timed_out.sort_unstable_by_key(|w| w.id);
        timed_out
    }

    /// The earliest deadline among the waiters after the `spared` next in
    /// line.
    #[inline]
    pub(crate) fn earliest_deadline(&self, spared: usize) -> Option<Instant> {
        if spared == 0 {
            return self.deadlines.first().map(|(at, _)| *at);
        }
        let spared: SeqSet = self.next_in_line(spared).into_iter().collect();
        self.deadlines
            .iter()
            .find(|(_, id)| !spared.contains(id))
            .map(|(at, _)| *at)
    }

    /// Every queued waiter, oldest first, leaving the queue empty (owners
    /// keep counting the leases they hold).
    pub(crate) fn drain(&mut self) -> Vec<Waiter<W>> {
        let ids: Vec<u64> = self.waiters.keys().copied().collect();
        ids.into_iter().filter_map(|id| self.remove(id)).collect()
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

    /// Leases each owner with a limit holds, and its limit (tests).
    #[cfg(test)]
    pub(crate) fn owner_holds(&self) -> impl Iterator<Item = (&Arc<str>, usize, usize)> {
        self.groups
            .iter()
            .map(|(owner, group)| (owner, group.held, group.limit))
    }

    /// Checks the queue's own invariants (tests).
    #[cfg(test)]
    pub(crate) fn check_invariants(&self) {
        let mut servable = 0;
        for waiter in self.waiters.values() {
            assert!(self.lanes[waiter.lane].contains(&waiter.id));
            if self.fair.limit_of(waiter.terms.owner.as_ref()).is_none() {
                servable += 1;
                if self.fair.has_limits() {
                    assert!(self.ready[waiter.lane].contains(&waiter.id));
                }
            }
        }
        assert_eq!(
            self.lanes.iter().map(BTreeSet::len).sum::<usize>(),
            self.waiters.len()
        );
        for (owner, group) in &self.groups {
            assert!(group.held <= group.limit, "{owner} above its limit");
            assert!(!group.is_empty());
            servable += group.servable();
            for lane in 0..LANES {
                for id in &group.queued[lane] {
                    let head = group.queued[lane].first() == Some(id);
                    assert_eq!(
                        self.ready[lane].contains(id),
                        head && group.has_room(),
                        "{owner}'s waiter {id} in ready"
                    );
                }
            }
        }
        assert_eq!(servable, self.servable, "servable count");
    }
}
