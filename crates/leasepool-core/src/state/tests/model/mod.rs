//! The property test: random operation sequences run against the state
//! machine and against a small reference model kept alongside; every step
//! compares the two and checks the invariants (pool accounting, service
//! order across priority lanes and owners, owner limits, waking, no
//! stranded waiter).
//!
//! The model's wait queue is a plain map scanned in full: the waiter a
//! freed pool goes to is the smallest `(effective lane, id)` among the
//! waiters whose owner is under its limit, where an aged waiter's
//! effective lane is 0.

use super::*;

mod ops;
mod run;

/// Restart while creations of the previous run are still in flight (they
/// report back into the new run, which must shut them down untouched).
/// Set to false to let them report back before every restart instead.
const RESTART_WITH_STALE_CREATIONS: bool = true;

#[derive(Debug, Clone)]
enum Op {
    Advance(u64),
    Acquire {
        wait: bool,
        timeout: Option<u64>,
        duration: u64,
        grace: u64,
        /// An index into `OWNERS`, or no owner.
        owner: Option<usize>,
        lane: usize,
    },
    Release(Index),
    BeginJob(Index),
    JobFinished(Index),
    CancelWaiter(Index),
    TakeResolution(Index),
    /// One checker pass: optionally a new desired count, then plan and tick.
    CheckerPass(Option<usize>),
    /// A creation (of this run or a stopped one) reports back: created,
    /// failed, or broke before it was placed.
    Created(Index),
    CreateFailed(Index),
    CreationDiscarded(Index),
    PoolBroken(u64),
    /// Renews a lease the user holds (a live one unless `dead`); `at_hard`
    /// first moves the clock to its hard expiry (if that is still ahead).
    Renew {
        lease: Index,
        duration: u64,
        at_hard: bool,
        dead: bool,
    },
    /// `shutdown(deadline)`: begins a graceful shutdown.
    BeginShutdown(u64),
    /// The waiting `shutdown()` stops the manager once it is due.
    FinishShutdown,
    Stop,
    Restart(usize),
    /// Stop and start again at once (creations of the stopped run are
    /// usually still in flight).
    StopRestart(usize),
    /// Stopped (or aborted) between `begin_start` and `finish_start`.
    FailedStart {
        desired: usize,
        abort: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u64..=60).prop_map(Op::Advance),
        6 => (
            prop::bool::weighted(0.75),
            prop::option::of(prop_oneof![0u64..=5, 0u64..=100]),
            1u64..=150,
            0u64..=40,
            prop::option::of(0..OWNERS.len()),
            0..LANES,
        )
            .prop_map(|(wait, timeout, duration, grace, owner, lane)| Op::Acquire {
                wait,
                timeout,
                duration,
                grace,
                owner,
                lane,
            }),
        4 => any::<Index>().prop_map(Op::Release),
        3 => any::<Index>().prop_map(Op::BeginJob),
        3 => any::<Index>().prop_map(Op::JobFinished),
        1 => any::<Index>().prop_map(Op::CancelWaiter),
        3 => any::<Index>().prop_map(Op::TakeResolution),
        3 => prop::option::of(0usize..=6).prop_map(Op::CheckerPass),
        3 => any::<Index>().prop_map(Op::Created),
        2 => any::<Index>().prop_map(Op::CreateFailed),
        2 => any::<Index>().prop_map(Op::CreationDiscarded),
        1 => (1u64..=12).prop_map(Op::PoolBroken),
        3 => (
            any::<Index>(),
            1u64..=150,
            prop::bool::weighted(0.3),
            prop::bool::weighted(0.2),
        )
            .prop_map(|(lease, duration, at_hard, dead)| Op::Renew {
                lease,
                duration,
                at_hard,
                dead,
            }),
        1 => (0u64..=200).prop_map(Op::BeginShutdown),
        1 => Just(Op::FinishShutdown),
        1 => Just(Op::Stop),
        1 => (0usize..=6).prop_map(Op::Restart),
        1 => (0usize..=6).prop_map(Op::StopRestart),
        1 => (0usize..=6, any::<bool>())
            .prop_map(|(desired, abort)| Op::FailedStart { desired, abort }),
    ]
}

/// The owners acquires may name.
const OWNERS: [&str; 3] = ["a", "b", "c"];

/// A fairness configuration: aging, a default limit, and a limit of `a`'s
/// own.
fn fairness() -> impl Strategy<Value = Fairness> {
    (
        prop::option::of(1u64..=80),
        prop::option::of(1usize..=3),
        prop::option::of(1usize..=2),
    )
        .prop_map(|(aging, default_limit, a_limit)| Fairness {
            aging: aging.map(ms),
            default_limit,
            owner_limits: a_limit
                .map(|n| (Arc::from(OWNERS[0]), n))
                .into_iter()
                .collect(),
        })
}

/// What the model knows about a waiter.
#[derive(Debug, Clone, PartialEq)]
enum Parked {
    Queued,
    /// Granted lease `key`, not picked up yet.
    Granted(u64),
    Failed(Error),
    /// Picked up or cancelled.
    Gone,
}

#[derive(Debug)]
struct MWaiter {
    status: Parked,
    wait: bool,
    duration: u64,
    grace: u64,
    deadline: Option<(Instant, Duration)>,
    /// When it was queued.
    since: Instant,
    owner: Option<Arc<str>>,
    /// The lane it waits in: 0 for a fail-fast caller.
    lane: usize,
    /// The lane it asked for.
    asked: usize,
}

#[derive(Debug)]
struct MLease {
    pool: u64,
    grace: u64,
    soft: Instant,
    hard: Instant,
    pending: usize,
    draining: bool,
    soft_warned: bool,
    owner: Option<Arc<str>>,
    lane: usize,
}

/// The effects the model expects from one transition.
#[derive(Debug, Default)]
struct Expect {
    shutdown: Vec<u64>,
    wake: Vec<u64>,
    events: Vec<Event>,
    /// Whether the checker must be woken, where the model says.
    wake_checker: Option<bool>,
}

/// The state machine and a reference model of it, stepped together.
struct Sim {
    s: State,
    base: Instant,
    now_ms: u64,
    limits: Limits,
    // The model.
    phase: Lifecycle,
    shutdown_deadline: Option<Instant>,
    desired: usize,
    idle: VecDeque<u64>,
    leases: BTreeMap<u64, MLease>,
    waiters: BTreeMap<u64, MWaiter>,
    next_waiter: u64,
    next_lease: u64,
    next_pool: u64,
    /// Creations planned by this run and not reported yet.
    in_flight: Vec<u64>,
    /// Creations planned by a run that was stopped, not reported yet.
    stale: Vec<u64>,
    /// The expected end reason of every lease that ended (first wins).
    ends: HashMap<u64, LeaseEnd>,
    /// Every grant the user got hold of, by lease key.
    grants: BTreeMap<u64, Grant>,
    /// Lease key of every job begun and not finished yet.
    jobs: Vec<u64>,
    // Pool accounting, from the effects the state machine returned.
    created: BTreeSet<u64>,
    shut: BTreeSet<u64>,
    // The checker, as the manager runs it.
    checker_pending: bool,
    checker_next: Option<Instant>,
    /// When the last pass ran.
    checker_last: Option<Instant>,
    // The replacement back-off, as the manager drives it.
    backoff_streak: u32,
    backoff_last: Option<Instant>,
    backoff_until: Option<Instant>,
    // Fairness.
    fair: Fairness,
    /// Grants that aging, or an owner limit, gave to another waiter than
    /// lanes and arrival alone would have.
    by_aging: u64,
    by_owner_limit: u64,
}

impl Sim {
    fn new(min: usize, max: usize, fair: Fairness) -> Sim {
        let limits = Limits {
            max_pools: max,
            min_pools: min,
        };
        let mut sim = Sim {
            s: State::new(MANAGER, limits, fair.clone()),
            base: Instant::now(),
            now_ms: 0,
            limits,
            phase: Lifecycle::Stopped,
            shutdown_deadline: None,
            desired: min,
            idle: VecDeque::new(),
            leases: BTreeMap::new(),
            waiters: BTreeMap::new(),
            next_waiter: 0,
            next_lease: 1,
            next_pool: 1,
            in_flight: Vec::new(),
            stale: Vec::new(),
            ends: HashMap::new(),
            grants: BTreeMap::new(),
            jobs: Vec::new(),
            created: BTreeSet::new(),
            shut: BTreeSet::new(),
            checker_pending: false,
            checker_next: None,
            checker_last: None,
            backoff_streak: 0,
            backoff_last: None,
            backoff_until: None,
            fair,
            by_aging: 0,
            by_owner_limit: 0,
        };
        sim.verify();
        sim.restart(min);
        sim
    }

    fn now(&self) -> Instant {
        self.base + ms(self.now_ms)
    }

    fn total(&self) -> usize {
        self.idle.len() + self.leases.len()
    }

    fn queued(&self) -> Vec<u64> {
        self.waiters
            .iter()
            .filter(|(_, w)| w.status == Parked::Queued)
            .map(|(id, _)| *id)
            .collect()
    }

    /// Leases `owner` holds.
    fn m_held(&self, owner: Option<&Arc<str>>) -> usize {
        owner.map_or(0, |owner| {
            self.leases
                .values()
                .filter(|l| l.owner.as_ref() == Some(owner))
                .count()
        })
    }

    /// True if `owner` may take one more lease now.
    fn m_has_room(&self, owner: Option<&Arc<str>>) -> bool {
        self.fair
            .limit_of(owner)
            .is_none_or(|limit| self.m_held(owner) < limit)
    }

    /// The queued waiters of `owner`.
    fn m_queued_of(&self, owner: &Arc<str>) -> Vec<u64> {
        self.queued()
            .into_iter()
            .filter(|id| self.waiters[id].owner.as_ref() == Some(owner))
            .collect()
    }

    /// How many queued waiters could take a pool now.
    fn m_servable(&self) -> usize {
        let queued = self.queued();
        let unlimited = queued
            .iter()
            .filter(|id| {
                self.fair
                    .limit_of(self.waiters[id].owner.as_ref())
                    .is_none()
            })
            .count();
        let limited: usize = OWNERS
            .iter()
            .map(|owner| Arc::from(*owner))
            .filter_map(|owner: Arc<str>| {
                let limit = self.fair.limit_of(Some(&owner))?;
                let room = limit.saturating_sub(self.m_held(Some(&owner)));
                Some(self.m_queued_of(&owner).len().min(room))
            })
            .sum();
        unlimited + limited
    }

    fn m_aged(&self, id: u64) -> bool {
        self.fair
            .aging
            .is_some_and(|aging| self.waiters[&id].since + aging <= self.now())
    }

    /// The candidates a freed pool may go to: every servable waiter whose
    /// owner has no limit, and the oldest waiter per lane of each owner
    /// under its limit; with `limits` false, every queued waiter.
    fn m_candidates(&self, limits: bool) -> Vec<u64> {
        let queued = self.queued();
        queued
            .iter()
            .copied()
            .filter(|id| {
                let w = &self.waiters[id];
                if !limits || self.fair.limit_of(w.owner.as_ref()).is_none() {
                    return true;
                }
                self.m_has_room(w.owner.as_ref())
                    && queued.iter().find(|other| {
                        let o = &self.waiters[*other];
                        o.owner == w.owner && o.lane == w.lane
                    }) == Some(id)
            })
            .collect()
    }

    /// `ids` in the order the rule serves them: by effective lane (0 once
    /// aged), then arrival.
    fn m_line(&self, ids: Vec<u64>, aging: bool) -> Vec<u64> {
        let mut line: Vec<(usize, u64)> = ids
            .into_iter()
            .map(|id| {
                let lane = if aging && self.m_aged(id) {
                    0
                } else {
                    self.waiters[&id].lane
                };
                (lane, id)
            })
            .collect();
        line.sort_unstable();
        line.into_iter().map(|(_, id)| id).collect()
    }

    /// Every servable waiter in the order they will be served as things
    /// stand: an owner with a limit contributes its first waiters up to
    /// its room.
    fn m_servable_line(&self, aging: bool) -> Vec<u64> {
        let mut servable = Vec::new();
        for id in self.m_line(self.queued(), aging) {
            let owner = self.waiters[&id].owner.clone();
            let fits = match self.fair.limit_of(owner.as_ref()) {
                None => true,
                Some(limit) => {
                    let ahead = servable
                        .iter()
                        .filter(|other| self.waiters[*other].owner == owner)
                        .count();
                    self.m_held(owner.as_ref()) + ahead < limit
                }
            };
            if fits {
                servable.push(id);
            }
        }
        servable
    }

    /// The waiter a freed pool goes to now.
    fn m_next(&self) -> Option<u64> {
        self.m_line(self.m_candidates(true), true).first().copied()
    }

    /// The `spared` first in line for the pools being created: the
    /// servable waiters by lane and arrival (aging left out).
    fn m_spared_ids(&self) -> Vec<u64> {
        let mut line = self.m_servable_line(false);
        line.truncate(self.m_spared());
        line
    }

    /// A waiter the creations in flight will not serve has a deadline
    /// before the next checker pass.
    fn m_unspared_due(&self) -> bool {
        let spared = self.m_spared_ids();
        let earliest = self
            .queued()
            .into_iter()
            .filter(|id| !spared.contains(id))
            .filter_map(|id| self.waiters[&id].deadline.map(|(at, _)| at))
            .min();
        match (earliest, self.checker_next) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(at), Some(next)) => at < next,
        }
    }

    fn set_end(&mut self, key: u64, end: LeaseEnd) {
        self.ends.entry(key).or_insert(end);
    }

    /// A pool broke now: the manager records it for the back-off (5 ms,
    /// doubling for each break within 10 s of the previous one, at most 2 s).
    fn record_break(&mut self) {
        let now = self.now();
        self.s.record_break(now);
        let recent = self
            .backoff_last
            .is_some_and(|last| now.duration_since(last) < Duration::from_secs(10));
        self.backoff_streak = if recent { self.backoff_streak + 1 } else { 1 };
        self.backoff_last = Some(now);
        let delay = ms(5)
            .saturating_mul(1 << (self.backoff_streak - 1).min(16))
            .min(Duration::from_secs(2));
        self.backoff_until = Some(now + delay);
    }

    /// Until when the back-off holds creations back, if it does now.
    fn held_until(&self) -> Option<Instant> {
        let now = self.now();
        self.backoff_until.filter(|at| *at > now)
    }

    /// How many pools the checker should create now: up to the desired
    /// count, plus one per waiter no creation in flight covers, within
    /// `max_pools`; nothing unless running.
    fn m_creations_needed(&self) -> usize {
        if self.phase != Lifecycle::Running {
            return 0;
        }
        let have = self.total() + self.in_flight.len();
        let room = self.limits.max_pools.saturating_sub(have);
        let for_desired = self.desired.saturating_sub(have);
        let for_waiters = self.m_servable().saturating_sub(self.in_flight.len());
        room.min(for_desired.max(for_waiters))
    }

    /// Whether a graceful shutdown may proceed at `at`.
    fn m_shutdown_due(&self, at: Instant) -> bool {
        self.phase == Lifecycle::ShuttingDown
            && (self.leases.is_empty() || self.shutdown_deadline.is_some_and(|d| at >= d))
    }

    // ----- the model's transitions -----

    #[allow(clippy::too_many_arguments)]
    fn m_grant(
        &mut self,
        pool: u64,
        duration: u64,
        grace: u64,
        owner: Option<Arc<str>>,
        lane: usize,
        waited: Duration,
        exp: &mut Expect,
    ) -> u64 {
        assert!(
            !self.shut.contains(&pool),
            "pool {pool} handed out after shutdown"
        );
        assert_eq!(
            self.phase,
            Lifecycle::Running,
            "lease granted while not running"
        );
        let key = self.next_lease;
        self.next_lease += 1;
        let soft = deadline_after(self.now(), ms(duration));
        let hard = deadline_after(soft, ms(grace));
        assert!(
            self.m_has_room(owner.as_ref()),
            "{owner:?} granted above its limit"
        );
        exp.events.push(Event::Leased {
            id: lease_id(key),
            owner: owner.clone(),
            pool,
            duration: ms(duration),
            grace: ms(grace),
            waited,
        });
        self.leases.insert(
            key,
            MLease {
                pool,
                grace,
                soft,
                hard,
                pending: 0,
                draining: false,
                soft_warned: false,
                owner,
                lane,
            },
        );
        key
    }

    fn m_offer(&mut self, pool: u64, exp: &mut Expect) -> PoolFate {
        if let Some(id) = self.m_next() {
            let by_lane_alone = self.m_line(self.m_candidates(true), false).first().copied();
            let without_limits = self.m_line(self.m_candidates(false), true).first().copied();
            self.by_aging += u64::from(self.fair.aging.is_some() && by_lane_alone != Some(id));
            let limits = self.fair.default_limit.is_some() || !self.fair.owner_limits.is_empty();
            self.by_owner_limit += u64::from(limits && without_limits != Some(id));
            let (duration, grace, since, owner, lane) = {
                let w = &self.waiters[&id];
                (w.duration, w.grace, w.since, w.owner.clone(), w.asked)
            };
            let waited = self.now().saturating_duration_since(since);
            let key = self.m_grant(pool, duration, grace, owner, lane, waited, exp);
            self.waiters.get_mut(&id).expect("waiter").status = Parked::Granted(key);
            exp.wake.push(id);
            PoolFate::HandedOff
        } else if self.total() < self.desired {
            self.idle.push_back(pool);
            PoolFate::Idle
        } else {
            exp.shutdown.push(pool);
            PoolFate::ShutDown
        }
    }

    /// Removes lease `key`; waiters its owner's limit held back take idle
    /// pools at once.
    fn m_take_lease(&mut self, key: u64, exp: &mut Expect) -> MLease {
        let lease = self.leases.remove(&key).expect("lease to take");
        let unblocked = lease.owner.as_ref().is_some_and(|owner| {
            self.fair.limit_of(Some(owner)).is_some_and(|limit| {
                self.m_held(Some(owner)) + 1 == limit && !self.m_queued_of(owner).is_empty()
            })
        });
        if unblocked {
            while self.phase == Lifecycle::Running && self.m_servable() > 0 {
                let Some(pool) = self.idle.pop_front() else {
                    break;
                };
                let outcome = self.m_offer(pool, exp);
                assert_eq!(outcome, PoolFate::HandedOff);
            }
        }
        lease
    }

    fn m_finalise(&mut self, key: u64, exp: &mut Expect) {
        let lease = self.m_take_lease(key, exp);
        let healthy = self.phase == Lifecycle::Running && self.now() < lease.hard;
        let outcome = if healthy {
            self.m_offer(lease.pool, exp)
        } else {
            exp.shutdown.push(lease.pool);
            PoolFate::ShutDown
        };
        exp.events.push(Event::Finalised {
            id: lease_id(key),
            pool: lease.pool,
            outcome,
        });
    }

    fn m_revoke(&mut self, key: u64, exp: &mut Expect) {
        let lease = self.m_take_lease(key, exp);
        self.set_end(key, LeaseEnd::Expired);
        exp.events.push(Event::Revoked {
            id: lease_id(key),
            owner: lease.owner.clone(),
            pool: lease.pool,
        });
        exp.shutdown.push(lease.pool);
    }

    fn m_revoke_expired(&mut self, exp: &mut Expect) {
        let now = self.now();
        let expired: Vec<u64> = self
            .leases
            .iter()
            .filter(|(_, l)| now >= l.hard)
            .map(|(key, _)| *key)
            .collect();
        for key in expired {
            self.m_revoke(key, exp);
        }
    }

    fn m_release(&mut self, key: u64, exp: &mut Expect) {
        let Some(lease) = self.leases.get_mut(&key) else {
            return;
        };
        if lease.draining {
            return;
        }
        if lease.pending > 0 {
            lease.draining = true;
            exp.events.push(Event::Draining {
                id: lease_id(key),
                pending: lease.pending,
            });
            self.set_end(key, LeaseEnd::Released);
            return;
        }
        self.set_end(key, LeaseEnd::Released);
        self.m_finalise(key, exp);
    }

    // ----- comparing -----

    /// Compares what the state machine did with what the model expected.
    fn compare(&mut self, what: &str, fx: Fx, exp: Expect) {
        let mut got = fx.shutdown.clone();
        got.sort_unstable();
        let mut want = exp.shutdown;
        want.sort_unstable();
        assert_eq!(got, want, "{what}: pools shut down");
        assert_eq!(fx.wake, exp.wake, "{what}: waiters woken");
        let canon = |notes: &[Event]| {
            let mut v: Vec<String> = notes.iter().map(|n| format!("{n:?}")).collect();
            v.sort();
            v
        };
        assert_eq!(canon(&fx.events), canon(&exp.events), "{what}: notes");
        if let Some(wake_checker) = exp.wake_checker {
            assert_eq!(fx.wake_checker, wake_checker, "{what}: checker woken");
        }
        assert!(
            !fx.shutdown_ready,
            "{what}: only the manager sets shutdown_ready"
        );
        for pool in &fx.shutdown {
            assert!(
                self.created.contains(pool),
                "{what}: shut down pool {pool} that was never created"
            );
            assert!(
                self.shut.insert(*pool),
                "{what}: pool {pool} shut down twice"
            );
        }
        if fx.wake_checker {
            self.checker_pending = true;
        }
        self.verify();
    }

    /// Checks the state machine against the model and every invariant.
    fn verify(&self) {
        let s = &self.s;
        s.check_invariants(|p| *p);
        assert_eq!(s.phase(), self.phase, "phase");
        assert_eq!(s.available() + s.leased(), s.total());
        assert!(s.total() <= self.limits.max_pools, "above max_pools");
        assert_eq!(s.desired(), self.desired, "desired");
        assert_eq!(s.creating, self.in_flight.len(), "creations in flight");
        assert_eq!(
            s.creations_needed(),
            self.m_creations_needed(),
            "creations needed"
        );
        for seq in &self.in_flight {
            assert!(s.is_being_created(*seq), "pool {seq} is being created");
        }
        for seq in &self.stale {
            assert!(
                !s.is_being_created(*seq),
                "pool {seq} of a stopped run counts as being created"
            );
        }

        // Graceful shutdown: due once nothing is held or at the deadline.
        let now = self.now();
        assert_eq!(
            s.shutdown_due(now),
            self.m_shutdown_due(now),
            "shutdown_due"
        );
        if let Some(deadline) = self.shutdown_deadline {
            assert!(s.shutdown_due(deadline), "shutdown_due at the deadline");
            if let Some(before) = deadline.checked_sub(Duration::from_nanos(1)) {
                assert_eq!(
                    s.shutdown_due(before),
                    self.m_shutdown_due(before),
                    "shutdown_due before the deadline"
                );
            }
        }

        let idle: Vec<u64> = s
            .idle
            .iter()
            .map(|slot| {
                assert_eq!(slot.pool, slot.seq);
                slot.seq
            })
            .collect();
        assert_eq!(
            idle,
            self.idle.iter().copied().collect::<Vec<_>>(),
            "idle pools"
        );

        let keys: BTreeSet<u64> = s.leases.keys().copied().collect();
        assert_eq!(keys, self.leases.keys().copied().collect(), "live leases");
        for (key, m) in &self.leases {
            let r = &s.leases[key];
            assert_eq!(r.id, lease_id(*key));
            assert_eq!(r.pool.seq, m.pool, "lease {key}: pool");
            assert_eq!(r.pool.pool, m.pool);
            assert_eq!(r.grace, ms(m.grace), "lease {key}: grace");
            assert_eq!(r.pending, m.pending, "lease {key}: pending jobs");
            assert_eq!(
                m.pending,
                self.jobs.iter().filter(|k| *k == key).count(),
                "lease {key}: jobs outstanding"
            );
            assert_eq!(r.draining, m.draining, "lease {key}: draining");
            assert_eq!((r.soft, r.hard), (m.soft, m.hard), "lease {key}: expiry");
            assert_eq!(r.soft_warned, m.soft_warned, "lease {key}: soft warning");
            assert!(!self.ends.contains_key(key) || m.draining);
        }

        let queued = self.queued();
        assert_eq!(s.waiting(), queued.len(), "queued waiters");
        let earliest = queued
            .iter()
            .filter_map(|id| self.waiters[id].deadline.map(|(at, _)| at))
            .min();
        assert_eq!(s.waiters.earliest_deadline(0), earliest);
        let spared = self.m_spared();
        let spared_ids = self.m_spared_ids();
        let unspared: Vec<u64> = queued
            .iter()
            .copied()
            .filter(|id| !spared_ids.contains(id))
            .collect();
        let earliest_unspared = unspared
            .iter()
            .filter_map(|id| self.waiters[id].deadline.map(|(at, _)| at))
            .min();
        assert_eq!(s.waiters.earliest_deadline(spared), earliest_unspared);
        assert_eq!(s.waiters.servable(), self.m_servable(), "servable waiters");
        assert_eq!(
            (
                s.counters.served_by_aging,
                s.counters.passed_over_by_owner_limit
            ),
            (self.by_aging, self.by_owner_limit),
            "grants changed by aging and by owner limits"
        );
        for owner in OWNERS {
            let owner: Arc<str> = Arc::from(owner);
            if let Some(limit) = self.fair.limit_of(Some(&owner)) {
                assert!(
                    self.m_held(Some(&owner)) <= limit,
                    "{owner} above its limit"
                );
            }
        }
        for (lane, stats) in s.lane_stats().iter().enumerate() {
            let waiting = queued
                .iter()
                .filter(|id| self.waiters[id].asked == lane)
                .count();
            let leases = self.leases.values().filter(|l| l.lane == lane).count();
            assert_eq!(
                (stats.waiting, stats.leases),
                (waiting, leases),
                "lane {lane}"
            );
        }
        for stats in s.owner_stats() {
            let owner: Arc<str> = Arc::from(stats.owner.as_str());
            assert_eq!(stats.leases, self.m_held(Some(&owner)), "{owner}'s leases");
            assert_eq!(
                stats.waiting,
                self.m_queued_of(&owner).len(),
                "{owner}'s waiters"
            );
        }

        // Every pool ever created is live in exactly one place or shut down.
        let mut live: Vec<u64> = self.idle.iter().copied().collect();
        live.extend(self.leases.values().map(|l| l.pool));
        let live_set: BTreeSet<u64> = live.iter().copied().collect();
        assert_eq!(live_set.len(), live.len(), "pool in two places");
        for pool in &live {
            assert!(
                self.created.contains(pool),
                "live pool {pool} was never created"
            );
            assert!(
                !self.shut.contains(pool),
                "pool {pool} is live after its shutdown"
            );
        }
        assert_eq!(
            live.len() + self.shut.len(),
            self.created.len(),
            "a pool was lost: created {:?}, live {live:?}, shut {:?}",
            self.created,
            self.shut
        );

        // A lease's handle says why it ended, and nothing while it is live.
        for (key, grant) in &self.grants {
            assert_eq!(
                grant.end.get(),
                self.ends.get(key).copied(),
                "lease {key}: end cell"
            );
        }

        if self.phase == Lifecycle::Running {
            assert!(
                !(s.available() > 0 && self.m_servable() > 0),
                "a waiter that could take it is queued while a pool is idle"
            );
            assert_eq!(s.creation_held_until(now), self.held_until(), "back-off");
            // docs/guide.md, "Acquiring a lease": a wait=false caller never waits for a release. It
            // is only ever queued among the waiters the pools that exist or
            // may be created will serve.
            let room = self.limits.max_pools.saturating_sub(self.total());
            // docs/guide.md, "Acquiring a lease": a wait=false caller never
            // waits for a release. It is only ever queued among the
            // servable waiters the pools that exist or may be created will
            // serve, in the highest lane, so nobody arriving later passes it.
            let line = self.m_servable_line(true);
            for id in &queued {
                if !self.waiters[id].wait {
                    let at = line.iter().position(|x| x == id);
                    assert!(
                        at.is_some_and(|at| at < room),
                        "wait=false waiter {id} (at {at:?} of {line:?}) waits for a release (room {room})"
                    );
                }
            }
            // A waiter that needs a pool created is not left without a
            // checker pass on the way: one was requested, or is due now, or
            // is scheduled for the end of a back-off.
            if s.waiting() > 0 && s.creations_needed() > 0 {
                let pass_due = self.checker_next.is_some_and(|next| {
                    next <= now || self.held_until().is_some_and(|until| next <= until)
                });
                assert!(
                    self.checker_pending || pass_due,
                    "waiters need a pool created but the checker was not woken"
                );
            }
        }
        if matches!(self.phase, Lifecycle::Running | Lifecycle::ShuttingDown)
            && !self.checker_pending
        {
            // Every deadline is covered by a scheduled or requested pass,
            // except those of the waiters the creations in flight will
            // serve (their outcome wakes the checker) and a shutdown
            // deadline that had passed at the last pass (the waiting
            // `shutdown()` stops the manager).
            let next = self.checker_next.expect("a pass was scheduled");
            let last = self.checker_last.expect("a pass ran");
            assert!(next > last, "the checker would spin");
            for id in &unspared {
                if let Some((at, _)) = self.waiters[id].deadline {
                    assert!(
                        next <= at,
                        "waiter {id}: deadline before the next checker pass (next {:?}, at {:?}, spared {:?}, in flight {:?}, servable {}, queued {:?})",
                        next - self.base,
                        at - self.base,
                        self.m_spared_ids(),
                        self.in_flight,
                        self.m_servable(),
                        queued
                    );
                }
            }
            for (key, m) in &self.leases {
                let at = if m.soft_warned { m.hard } else { m.soft };
                assert!(
                    next <= at,
                    "lease {key}: expiry before the next checker pass"
                );
            }
            if let Some(at) = self.shutdown_deadline.filter(|at| *at > last) {
                assert!(next <= at, "shutdown deadline before the next checker pass");
            }
        }
    }
}
