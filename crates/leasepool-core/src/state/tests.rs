//! Unit tests of the lease/pool state machine.
//!
//! The first half drives [`LeaseState`] through one behaviour at a time. The
//! second half is a property test: random operation sequences run against
//! the state machine and against a small reference model of SPEC sections
//! 4-8 kept alongside, and every step compares the two and checks the
//! invariants (pool accounting, FIFO service, waking, no stranded waiter).
//!
//! Pools are `u64` handles equal to their sequence number; a waiter's signal
//! is its waiter id. Time is `base + x ms` from one `Instant::now()`.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::sample::Index;

use super::*;

const MANAGER: u64 = 7;
const LEASE_MS: u64 = 100;
const GRACE_MS: u64 = 10;
const INTERVAL: Duration = Duration::from_millis(1000);

type State = LeaseState<u64, u64>;
type Fx = Effects<u64, u64>;

fn ms(x: u64) -> Duration {
    Duration::from_millis(x)
}

fn terms(duration: u64, grace: u64) -> LeaseTerms {
    LeaseTerms {
        owner: None,
        duration: ms(duration),
        grace: ms(grace),
    }
}

fn lease_id(key: u64) -> LeaseId {
    LeaseId::new(MANAGER, key)
}

/// The `Finalised` notes of `fx` as `(lease key, pool, outcome)`.
fn finalised(fx: &Fx) -> Vec<(u64, u64, Finalised)> {
    fx.notes
        .iter()
        .filter_map(|note| match note {
            Note::Finalised { id, pool, outcome } => Some((id.seq(), *pool, *outcome)),
            _ => None,
        })
        .collect()
}

/// How many notes of `fx` match `pred`.
fn count_notes(fx: &Fx, pred: impl Fn(&Note) -> bool) -> usize {
    fx.notes.iter().filter(|note| pred(note)).count()
}

/// A state machine under test plus the clock and signal bookkeeping.
struct H {
    s: State,
    base: Instant,
    next_signal: u64,
}

impl H {
    /// A running state with `pools` idle pools (seqs `1..=pools`); the
    /// desired count is `pools` clamped into `min..=max`.
    fn started(min: usize, max: usize, pools: usize) -> H {
        let mut s = State::new(
            MANAGER,
            Limits {
                max_pools: max,
                min_pools: min,
            },
        );
        assert_eq!(s.begin_start(), Phase::Stopped);
        s.set_desired(pools);
        let slots = s
            .reserve_pool_seqs(pools)
            .into_iter()
            .map(|seq| PoolSlot { seq, pool: seq })
            .collect();
        s.finish_start(slots, Instant::now(), &mut Effects::default())
            .expect("start installs the pools");
        let h = H {
            s,
            base: Instant::now(),
            next_signal: 0,
        };
        h.check();
        h
    }

    fn at(&self, x: u64) -> Instant {
        self.base + ms(x)
    }

    fn check(&self) {
        self.s.check_invariants(|p| *p);
    }

    fn idle(&self) -> Vec<u64> {
        self.s.idle.iter().map(|slot| slot.seq).collect()
    }

    fn pool_of(&self, key: u64) -> u64 {
        self.s.leases[&key].pool.seq
    }

    fn request(&self, t: u64, wait: bool, timeout: Option<u64>) -> AcquireRequest {
        let now = self.at(t);
        AcquireRequest {
            terms: terms(LEASE_MS, GRACE_MS),
            wait,
            deadline: timeout.map(|x| (now + ms(x), ms(x))),
        }
    }

    /// Runs `acquire`; a queued waiter's signal is its (expected) id.
    fn acquire_request(
        &mut self,
        t: u64,
        request: AcquireRequest,
    ) -> (Result<AcquireStep, Error>, Fx) {
        let mut fx = Fx::default();
        let signal = self.next_signal;
        let result = self.s.acquire(request, self.at(t), || signal, &mut fx);
        if let Ok(AcquireStep::Queued(id)) = &result {
            assert_eq!(*id, signal, "waiter ids are handed out in order");
            self.next_signal += 1;
        }
        self.check();
        (result, fx)
    }

    fn acquire(
        &mut self,
        t: u64,
        wait: bool,
        timeout: Option<u64>,
    ) -> (Result<AcquireStep, Error>, Fx) {
        let request = self.request(t, wait, timeout);
        self.acquire_request(t, request)
    }

    /// Acquires and expects a lease at once.
    fn lease(&mut self, t: u64) -> Grant {
        match self.acquire(t, true, None).0 {
            Ok(AcquireStep::Granted(grant)) => grant,
            other => panic!("expected a grant, got {other:?}"),
        }
    }

    /// A lease that will not expire during a test (1000 s).
    fn lease_with_long_terms(&mut self, t: u64) -> Grant {
        let request = AcquireRequest {
            terms: terms(1_000_000, 0),
            wait: true,
            deadline: None,
        };
        match self.acquire_request(t, request).0 {
            Ok(AcquireStep::Granted(grant)) => grant,
            other => panic!("expected a grant, got {other:?}"),
        }
    }

    /// Acquires (waiting, no timeout) and expects to be queued.
    fn queue(&mut self, t: u64) -> u64 {
        self.queue_with(t, true, None)
    }

    fn queue_with(&mut self, t: u64, wait: bool, timeout: Option<u64>) -> u64 {
        match self.acquire(t, wait, timeout).0 {
            Ok(AcquireStep::Queued(id)) => id,
            other => panic!("expected to be queued, got {other:?}"),
        }
    }

    fn release(&mut self, key: u64, t: u64) -> Fx {
        let mut fx = Fx::default();
        self.s.release(key, self.at(t), &mut fx);
        self.check();
        fx
    }

    fn begin_job(&mut self, key: u64, t: u64) -> (Option<u64>, Fx) {
        let mut fx = Fx::default();
        let pool = self.s.begin_job(key, self.at(t), &mut fx);
        self.check();
        (pool, fx)
    }

    fn job_finished(&mut self, key: u64, t: u64) -> Fx {
        let mut fx = Fx::default();
        self.s.job_finished(key, self.at(t), &mut fx);
        self.check();
        fx
    }

    fn tick(&mut self, t: u64) -> (Instant, Fx) {
        let mut fx = Fx::default();
        let next = self.s.tick(self.at(t), INTERVAL, &mut fx);
        self.check();
        (next, fx)
    }

    fn cancel(&mut self, id: u64, t: u64) -> Fx {
        let mut fx = Fx::default();
        self.s.cancel_waiter(id, self.at(t), &mut fx);
        self.check();
        fx
    }

    fn granted(&mut self, id: u64) -> Grant {
        match self.s.take_resolution(id) {
            Some(Resolution::Granted(grant)) => grant,
            other => panic!("waiter {id}: expected a grant, got {other:?}"),
        }
    }

    fn failed(&mut self, id: u64) -> Error {
        match self.s.take_resolution(id) {
            Some(Resolution::Failed(error)) => error,
            other => panic!("waiter {id}: expected a failure, got {other:?}"),
        }
    }

    /// Plans the creations the checker would perform now.
    fn plan(&mut self) -> Vec<u64> {
        let seqs = self.s.plan_creations();
        self.check();
        seqs
    }

    fn created(&mut self, seq: u64, t: u64) -> Fx {
        let mut fx = Fx::default();
        self.s
            .pool_created(PoolSlot { seq, pool: seq }, self.at(t), &mut fx);
        self.check();
        fx
    }

    fn creation_failed(&mut self, seq: u64, error: Error) -> Fx {
        let mut fx = Fx::default();
        self.s.pool_creation_failed(seq, error, &mut fx);
        self.check();
        fx
    }

    fn discarded(&mut self, seq: u64) -> Fx {
        let mut fx = Fx::default();
        self.s
            .creation_discarded(seq, "initializer failed", &mut fx);
        self.check();
        fx
    }

    fn renew(&mut self, key: u64, duration: u64, t: u64) -> (Option<(Instant, Instant)>, Fx) {
        let mut fx = Fx::default();
        let renewed = self.s.renew(key, ms(duration), self.at(t), &mut fx);
        self.check();
        (renewed, fx)
    }

    /// Begins a graceful shutdown with its deadline at `deadline` ms.
    fn begin_shutdown(&mut self, deadline: u64) -> (Option<usize>, Fx) {
        let mut fx = Fx::default();
        let held = self.s.begin_shutdown(self.at(deadline), &mut fx);
        self.check();
        (held, fx)
    }

    fn shutdown_due(&self, t: u64) -> bool {
        self.s.shutdown_due(self.at(t))
    }

    /// Plans and performs every creation needed now.
    fn create_all(&mut self, t: u64) -> (Vec<u64>, Fx) {
        let seqs = self.plan();
        let mut all = Fx::default();
        for &seq in &seqs {
            let fx = self.created(seq, t);
            all.shutdown.extend(fx.shutdown);
            all.wake.extend(fx.wake);
            all.notes.extend(fx.notes);
            all.wake_checker |= fx.wake_checker;
        }
        (seqs, all)
    }

    /// One checker pass as the manager runs it: plans the creations needed
    /// now (none while the back-off holds them back), then ticks. Returns
    /// the planned seqs, when the next pass is due, and the tick's effects.
    fn pass(&mut self, t: u64) -> (Vec<u64>, Instant, Fx) {
        let seqs = if self.s.creation_held_until(self.at(t)).is_some() {
            Vec::new()
        } else {
            self.plan()
        };
        let (next, fx) = self.tick(t);
        (seqs, next, fx)
    }

    fn broken(&mut self, seq: u64) -> Fx {
        let mut fx = Fx::default();
        self.s.pool_broken(seq, "worker died", &mut fx);
        self.check();
        fx
    }

    fn stop(&mut self) -> Fx {
        self.stop_counting().1
    }

    /// Stops and returns how many leases the stop ended.
    fn stop_counting(&mut self) -> (usize, Fx) {
        let mut fx = Fx::default();
        let ended = self.s.stop(&mut fx);
        self.check();
        (ended, fx)
    }

    /// Starts a stopped state again with `pools` new idle pools.
    fn restart(&mut self, pools: usize) -> Vec<u64> {
        assert_eq!(self.s.begin_start(), Phase::Stopped);
        let seqs = self.s.reserve_pool_seqs(pools);
        let slots = seqs
            .iter()
            .map(|&seq| PoolSlot { seq, pool: seq })
            .collect();
        self.s
            .finish_start(slots, Instant::now(), &mut Effects::default())
            .expect("restart");
        self.check();
        seqs
    }
}

// ----- acquire ------------------------------------------------------------

#[test]
fn acquire_takes_idle_pools_in_fifo_order() {
    let mut h = H::started(3, 3, 3);
    assert_eq!(h.idle(), vec![1, 2, 3]);
    let a = h.lease(0);
    let b = h.lease(0);
    let c = h.lease(0);
    assert_eq!(
        [h.pool_of(a.key), h.pool_of(b.key), h.pool_of(c.key)],
        [1, 2, 3]
    );
    assert_eq!(h.s.available(), 0);
    assert_eq!(h.s.leased(), 3);

    // Returned pools queue up behind each other: the oldest idle one goes first.
    h.release(b.key, 1);
    h.release(a.key, 2);
    assert_eq!(h.idle(), vec![2, 1]);
    let d = h.lease(3);
    assert_eq!(h.pool_of(d.key), 2);
    let e = h.lease(3);
    assert_eq!(h.pool_of(e.key), 1);
}

#[test]
fn acquire_grant_carries_terms_deadlines_and_a_fresh_id() {
    let mut h = H::started(2, 2, 2);
    let now = h.at(5);
    let owner: Arc<str> = Arc::from("report-builder");
    let request = AcquireRequest {
        terms: LeaseTerms {
            owner: Some(owner.clone()),
            duration: ms(100),
            grace: ms(10),
        },
        wait: true,
        deadline: None,
    };
    let (result, fx) = h.acquire_request(5, request);
    let Ok(AcquireStep::Granted(grant)) = result else {
        panic!("expected a grant, got {result:?}");
    };
    assert_eq!(grant.id, lease_id(grant.key));
    assert_eq!(grant.owner.as_deref(), Some("report-builder"));
    assert_eq!(grant.leased_at, now);
    assert_eq!(grant.duration, ms(100));
    assert_eq!(grant.grace, ms(10));
    assert_eq!(grant.soft, now + ms(100));
    assert_eq!(grant.hard, now + ms(110));
    assert_eq!(grant.end.get(), None);
    assert_eq!(
        fx.notes,
        vec![Note::Leased {
            id: grant.id,
            owner: Some(owner),
            pool: 1,
            duration: ms(100),
            grace: ms(10),
        }]
    );
    // No checker pass is scheduled yet: the new expiry must wake it.
    assert!(fx.wake_checker);

    let stats = h.s.lease_stats(h.at(30));
    assert_eq!(stats.len(), 1);
    assert_eq!(stats[0].id, grant.id);
    assert_eq!(stats[0].until_soft_expiry, ms(75));
    assert_eq!(stats[0].until_hard_expiry, ms(85));
    assert!(!stats[0].draining);

    // Lease keys are never reused.
    let other = h.lease(6);
    assert!(other.key > grant.key);
    assert_ne!(other.id, grant.id);
}

#[test]
fn acquire_wakes_checker_only_for_an_expiry_before_its_next_pass() {
    let mut h = H::started(2, 2, 2);
    let (next, _) = h.tick(0);
    assert_eq!(next, h.at(1000));
    // Soft expiry at 100, before the pass at 1000: wake the checker.
    let request = AcquireRequest {
        terms: terms(100, 0),
        wait: true,
        deadline: None,
    };
    let (result, fx) = h.acquire_request(0, request);
    assert!(matches!(result, Ok(AcquireStep::Granted(_))));
    assert!(fx.wake_checker);
    // Soft expiry at 5000, after the pass at 1000: nothing to do.
    let request = AcquireRequest {
        terms: terms(5000, 0),
        wait: true,
        deadline: None,
    };
    let (result, fx) = h.acquire_request(0, request);
    assert!(matches!(result, Ok(AcquireStep::Granted(_))));
    assert!(!fx.wake_checker);
}

#[test]
fn acquire_before_start_is_not_started() {
    let mut s = State::new(
        MANAGER,
        Limits {
            max_pools: 2,
            min_pools: 1,
        },
    );
    let mut fx = Fx::default();
    let now = Instant::now();
    let request = AcquireRequest {
        terms: terms(LEASE_MS, GRACE_MS),
        wait: true,
        deadline: None,
    };
    let result = s.acquire(request, now, || 0, &mut fx);
    assert_eq!(result.unwrap_err(), Error::NotStarted);
    assert!(fx.is_empty());
    assert_eq!(s.waiting(), 0);
    s.check_invariants(|p| *p);
}

#[test]
fn acquire_when_empty_queues_a_waiter_and_asks_for_a_pool() {
    let mut h = H::started(1, 2, 1);
    let _a = h.lease(0);
    let (result, fx) = h.acquire(1, true, None);
    let Ok(AcquireStep::Queued(w)) = result else {
        panic!("expected to be queued, got {result:?}");
    };
    assert!(fx.wake_checker, "a pool can be created: wake the checker");
    assert!(fx.wake.is_empty());
    assert_eq!(h.s.waiting(), 1);
    assert_eq!(h.s.creations_needed(), 1);
    assert!(h.s.take_resolution(w).is_none(), "nothing resolved yet");

    let (seqs, fx) = h.create_all(2);
    assert_eq!(seqs, vec![2]);
    assert_eq!(fx.wake, vec![w]);
    assert_eq!(h.s.waiting(), 0);
    let grant = h.granted(w);
    assert_eq!(h.pool_of(grant.key), 2);
    assert_eq!(grant.leased_at, h.at(2));
    assert!(
        h.s.take_resolution(w).is_none(),
        "a resolution is taken once"
    );
}

#[test]
fn acquire_when_full_queues_without_asking_for_a_pool() {
    let mut h = H::started(1, 1, 1);
    let _a = h.lease(0);
    let (next, _) = h.tick(0);
    assert_eq!(next, h.at(LEASE_MS)); // the lease's soft expiry

    let (result, fx) = h.acquire(1, true, None);
    assert!(matches!(result, Ok(AcquireStep::Queued(_))));
    assert!(
        !fx.wake_checker,
        "no room and no deadline: nothing for the checker"
    );
    assert_eq!(h.s.creations_needed(), 0);

    // A deadline before the checker's next pass must wake it (it times waiters out).
    let (result, fx) = h.acquire(1, true, Some(50));
    assert!(matches!(result, Ok(AcquireStep::Queued(_))));
    assert!(fx.wake_checker);
    // A deadline after it does not.
    let (result, fx) = h.acquire(1, true, Some(500));
    assert!(matches!(result, Ok(AcquireStep::Queued(_))));
    assert!(!fx.wake_checker);
    assert_eq!(h.s.waiting(), 3);
}

#[test]
fn wait_false_is_unavailable_only_when_nothing_is_idle_and_no_room() {
    let mut h = H::started(1, 2, 1);
    // A pool is idle: granted.
    let (result, _) = h.acquire(0, false, None);
    assert!(matches!(result, Ok(AcquireStep::Granted(_))));

    // Nothing idle, but a pool can be created: not refused.
    let (result, fx) = h.acquire(1, false, None);
    let Ok(AcquireStep::Queued(w)) = result else {
        panic!("expected to wait for a creation, got {result:?}");
    };
    assert!(fx.wake_checker);
    let (_, fx) = h.create_all(2);
    assert_eq!(fx.wake, vec![w]);
    let _ = h.granted(w);

    // Nothing idle and no room: unavailable at once, naming max_pools.
    let (result, fx) = h.acquire(3, false, None);
    assert_eq!(result.unwrap_err(), Error::Unavailable { max_pools: 2 });
    assert!(fx.wake.is_empty());
    assert_eq!(h.s.waiting(), 0);
    // A timeout does not turn wait=false into waiting.
    let (result, _) = h.acquire(3, false, Some(1000));
    assert_eq!(result.unwrap_err(), Error::Unavailable { max_pools: 2 });
    assert_eq!(h.s.waiting(), 0);
}

#[test]
fn acquire_with_deadline_already_passed_times_out() {
    let mut h = H::started(1, 1, 1);
    let _a = h.lease(0);
    // A zero timeout: the deadline is now.
    let (result, fx) = h.acquire(10, true, Some(0));
    assert_eq!(result.unwrap_err(), Error::Timeout(ms(0)));
    assert!(fx.wake.is_empty());
    // A deadline in the past carries the timeout that was asked for.
    let request = AcquireRequest {
        terms: terms(LEASE_MS, GRACE_MS),
        wait: true,
        deadline: Some((h.at(5), ms(5))),
    };
    let (result, _) = h.acquire_request(10, request);
    assert_eq!(result.unwrap_err(), Error::Timeout(ms(5)));
    assert_eq!(h.s.waiting(), 0);
}

#[test]
fn acquire_revokes_hard_expired_leases_first() {
    let mut h = H::started(1, 1, 1);
    let a = h.lease(0);
    // At 200 the lease (hard expiry 110) is revoked; no pool is left, but
    // the revoked one frees room, so the caller waits for a new pool.
    let (result, fx) = h.acquire(200, false, None);
    let Ok(AcquireStep::Queued(w)) = result else {
        panic!("expected to wait for a creation, got {result:?}");
    };
    assert_eq!(fx.shutdown, vec![1]);
    assert_eq!(
        count_notes(
            &fx,
            |n| matches!(n, Note::Revoked { id, pool: 1, .. } if *id == a.id)
        ),
        1
    );
    assert_eq!(a.end.get(), Some(LeaseEnd::Expired));
    assert!(fx.wake_checker);
    let (seqs, fx) = h.create_all(201);
    assert_eq!(seqs, vec![2]);
    assert_eq!(fx.wake, vec![w]);
    let g = h.granted(w);
    assert_eq!(h.pool_of(g.key), 2);
}

// ----- waiters ------------------------------------------------------------

#[test]
fn released_pool_goes_straight_to_the_oldest_waiter() {
    let mut h = H::started(1, 1, 1);
    let a = h.lease(0);
    let w1 = h.queue(1);
    let w2 = h.queue(2);
    let w3 = h.queue(3);

    let fx = h.release(a.key, 10);
    assert_eq!(fx.wake, vec![w1]);
    assert!(fx.shutdown.is_empty());
    assert_eq!(
        h.s.available(),
        0,
        "the pool never goes idle while someone waits"
    );
    assert_eq!(finalised(&fx), vec![(a.key, 1, Finalised::HandedOff)]);
    assert_eq!(a.end.get(), Some(LeaseEnd::Released));
    let g1 = h.granted(w1);
    assert_eq!(h.pool_of(g1.key), 1);
    assert_eq!(g1.leased_at, h.at(10));
    assert!(h.s.take_resolution(w2).is_none());

    let fx = h.release(g1.key, 11);
    assert_eq!(fx.wake, vec![w2]);
    let g2 = h.granted(w2);
    let fx = h.release(g2.key, 12);
    assert_eq!(fx.wake, vec![w3]);
    let g3 = h.granted(w3);
    assert_eq!(h.s.waiting(), 0);

    // Nobody waits any more: the pool goes idle.
    let fx = h.release(g3.key, 13);
    assert!(fx.wake.is_empty());
    assert_eq!(finalised(&fx), vec![(g3.key, 1, Finalised::Idle)]);
    assert_eq!(h.idle(), vec![1]);
}

#[test]
fn created_pool_goes_to_the_oldest_waiter() {
    let mut h = H::started(1, 3, 1);
    let _a = h.lease(0);
    let w1 = h.queue(1);
    let w2 = h.queue(2);
    let seqs = h.plan();
    assert_eq!(seqs, vec![2, 3]);
    // Creations may finish in any order; the oldest waiter is served first.
    let fx = h.created(3, 5);
    assert_eq!(fx.wake, vec![w1]);
    assert_eq!(fx.notes.first(), Some(&Note::Created { pool: 3 }));
    let fx = h.created(2, 6);
    assert_eq!(fx.wake, vec![w2]);
    let g1 = h.granted(w1);
    let g2 = h.granted(w2);
    assert_eq!((h.pool_of(g1.key), h.pool_of(g2.key)), (3, 2));
}

#[test]
fn cancel_of_a_queued_waiter_removes_it_from_the_queue() {
    let mut h = H::started(1, 1, 1);
    let a = h.lease(0);
    let w1 = h.queue(1);
    let w2 = h.queue(2);
    let fx = h.cancel(w1, 3);
    assert!(fx.is_empty());
    assert_eq!(h.s.waiting(), 1);
    assert!(h.s.take_resolution(w1).is_none());

    let fx = h.release(a.key, 4);
    assert_eq!(fx.wake, vec![w2]);
    let _ = h.granted(w2);
    assert!(h.s.take_resolution(w1).is_none());
    // Cancelling again (or an unknown id) does nothing.
    assert!(h.cancel(w1, 5).is_empty());
    assert!(h.cancel(999, 5).is_empty());
}

#[test]
fn cancel_of_a_granted_waiter_passes_its_pool_to_the_next_waiter() {
    let mut h = H::started(1, 1, 1);
    let a = h.lease(0);
    let w1 = h.queue(1);
    let w2 = h.queue(2);
    let fx = h.release(a.key, 3);
    assert_eq!(fx.wake, vec![w1]);
    let parked_key = h.s.leases.keys().copied().next().expect("w1's lease");

    // w1's future is dropped before it picked up its grant.
    let fx = h.cancel(w1, 4);
    assert_eq!(fx.wake, vec![w2], "the pool goes on to the next waiter");
    assert_eq!(finalised(&fx), vec![(parked_key, 1, Finalised::HandedOff)]);
    assert!(h.s.take_resolution(w1).is_none());
    let g2 = h.granted(w2);
    assert_eq!(h.pool_of(g2.key), 1);
    assert_eq!(h.s.leased(), 1);
    assert!(!h.s.leases.contains_key(&parked_key));
}

#[test]
fn cancel_of_a_granted_waiter_with_nobody_waiting_returns_the_pool() {
    let mut h = H::started(1, 1, 1);
    let a = h.lease(0);
    let w1 = h.queue(1);
    h.release(a.key, 2);
    let fx = h.cancel(w1, 3);
    assert!(fx.wake.is_empty());
    assert_eq!(h.idle(), vec![1], "no pool stranded");
    assert_eq!(h.s.leased(), 0);
}

#[test]
fn cancel_of_a_failed_waiter_discards_the_failure() {
    let mut h = H::started(1, 1, 1);
    let _a = h.lease(0);
    let w = h.queue_with(1, true, Some(10));
    let (_, fx) = h.tick(20);
    assert_eq!(fx.wake, vec![w]);
    let fx = h.cancel(w, 21);
    assert!(fx.is_empty());
    assert!(h.s.take_resolution(w).is_none());
}

// ----- release, draining, finalise ----------------------------------------

#[test]
fn release_is_idempotent_and_unknown_keys_are_ignored() {
    let mut h = H::started(1, 1, 1);
    let a = h.lease(0);
    let fx = h.release(a.key, 1);
    assert_eq!(finalised(&fx), vec![(a.key, 1, Finalised::Idle)]);
    assert_eq!(h.idle(), vec![1]);

    let fx = h.release(a.key, 2);
    assert!(fx.is_empty());
    assert_eq!(h.idle(), vec![1]);
    let fx = h.release(12345, 2);
    assert!(fx.is_empty());
    assert_eq!((h.s.available(), h.s.leased()), (1, 0));
    assert_eq!(a.end.get(), Some(LeaseEnd::Released));
}

#[test]
fn release_with_pending_jobs_drains_until_the_last_job_finishes() {
    let mut h = H::started(1, 1, 1);
    let a = h.lease(0);
    assert_eq!(h.begin_job(a.key, 1).0, Some(1));
    assert_eq!(h.begin_job(a.key, 1).0, Some(1));

    let fx = h.release(a.key, 2);
    assert_eq!(
        fx.notes,
        vec![Note::Draining {
            id: a.id,
            pending: 2
        }]
    );
    assert!(fx.shutdown.is_empty());
    assert_eq!(
        h.s.leased(),
        1,
        "the pool stays with the lease while draining"
    );
    assert_eq!(a.end.get(), Some(LeaseEnd::Released));
    let stats = h.s.lease_stats(h.at(2));
    assert!(stats[0].draining);
    assert_eq!(stats[0].pending_jobs, 2);

    // No new work while draining; releasing again is a no-op.
    let (pool, fx) = h.begin_job(a.key, 3);
    assert_eq!(pool, None);
    assert!(fx.is_empty());
    assert!(h.release(a.key, 3).is_empty());

    // A waiter arriving now must wait for the drain.
    let w = h.queue(3);
    let fx = h.job_finished(a.key, 4);
    assert!(fx.is_empty());
    assert_eq!(h.s.leased(), 1);

    let fx = h.job_finished(a.key, 5);
    assert_eq!(finalised(&fx), vec![(a.key, 1, Finalised::HandedOff)]);
    assert_eq!(fx.wake, vec![w]);
    let g = h.granted(w);
    assert_eq!(h.pool_of(g.key), 1);
}

#[test]
fn job_finished_without_release_keeps_the_lease() {
    let mut h = H::started(1, 1, 1);
    let a = h.lease(0);
    h.begin_job(a.key, 1);
    let fx = h.job_finished(a.key, 2);
    assert!(fx.is_empty());
    assert_eq!(h.s.leases[&a.key].pending, 0);
    // Extra or unknown completions are harmless.
    assert!(h.job_finished(a.key, 3).is_empty());
    assert!(h.job_finished(999, 3).is_empty());
    assert_eq!(h.s.leases[&a.key].pending, 0);
    let fx = h.release(a.key, 4);
    assert_eq!(finalised(&fx), vec![(a.key, 1, Finalised::Idle)]);
}

#[test]
fn finalise_keeps_the_pool_idle_only_within_the_desired_count() {
    let mut h = H::started(1, 3, 3);
    assert_eq!(h.s.desired(), 3);
    let a = h.lease(0);
    let b = h.lease(0);
    assert_eq!(h.idle(), vec![3]);

    // Shrink the target: a returning pool that would push the total above
    // it is shut down.
    h.s.set_desired(1);
    let fx = h.release(a.key, 1);
    assert_eq!(finalised(&fx), vec![(a.key, 1, Finalised::ShutDown)]);
    assert_eq!(fx.shutdown, vec![1]);
    assert_eq!(h.s.total(), 2);

    // With room under the target it is kept.
    h.s.set_desired(2);
    let fx = h.release(b.key, 2);
    assert_eq!(finalised(&fx), vec![(b.key, 2, Finalised::Idle)]);
    assert!(fx.shutdown.is_empty());
    assert_eq!(h.idle(), vec![3, 2]);
}

#[test]
fn finalise_after_hard_expiry_shuts_the_pool_down() {
    // Released after the hard expiry (before anything revoked it).
    let mut h = H::started(1, 1, 1);
    let a = h.lease(0);
    let fx = h.release(a.key, LEASE_MS + GRACE_MS);
    assert_eq!(finalised(&fx), vec![(a.key, 1, Finalised::ShutDown)]);
    assert_eq!(fx.shutdown, vec![1]);
    assert!(fx.wake_checker, "replacement capacity is requested");
    assert_eq!(h.s.total(), 0);
    assert_eq!(h.s.creations_needed(), 1);

    // The last job of a draining lease finishes after the hard expiry.
    let mut h = H::started(1, 1, 1);
    let a = h.lease(0);
    h.begin_job(a.key, 10);
    h.release(a.key, 20);
    let w = h.queue(30);
    let fx = h.job_finished(a.key, 500);
    assert_eq!(finalised(&fx), vec![(a.key, 1, Finalised::ShutDown)]);
    assert_eq!(fx.shutdown, vec![1]);
    assert!(fx.wake.is_empty(), "an expired pool is never handed on");
    assert!(fx.wake_checker);
    let (seqs, fx) = h.create_all(501);
    assert_eq!(seqs, vec![2]);
    assert_eq!(fx.wake, vec![w]);
}

#[test]
fn begin_job_after_hard_expiry_revokes_the_lease() {
    let mut h = H::started(1, 1, 1);
    let a = h.lease(0);
    // One tick before the hard expiry the lease still works (soft expiry
    // is informational).
    let (pool, fx) = h.begin_job(a.key, LEASE_MS + GRACE_MS - 1);
    assert_eq!(pool, Some(1));
    assert!(fx.is_empty());

    let (pool, fx) = h.begin_job(a.key, LEASE_MS + GRACE_MS);
    assert_eq!(pool, None);
    assert_eq!(a.end.get(), Some(LeaseEnd::Expired));
    assert_eq!(fx.shutdown, vec![1]);
    assert_eq!(
        fx.notes,
        vec![Note::Revoked {
            id: a.id,
            owner: None,
            pool: 1
        }]
    );
    assert!(fx.wake_checker, "replacement capacity is requested");
    assert_eq!(h.s.leased(), 0);
    assert_eq!(h.s.creations_needed(), 1);

    // The job that was running finishes later: nothing happens.
    assert!(h.job_finished(a.key, 200).is_empty());
    assert!(h.release(a.key, 200).is_empty());
    assert_eq!(h.begin_job(a.key, 200).0, None);
}

// ----- tick -----------------------------------------------------------------

#[test]
fn tick_revokes_hard_expired_leases() {
    let mut h = H::started(2, 2, 2);
    let a = h.lease(0);
    let b = h.lease(50);
    h.begin_job(a.key, 1);
    let (_, fx) = h.tick(LEASE_MS + GRACE_MS);
    assert_eq!(fx.shutdown, vec![1]);
    assert_eq!(
        count_notes(
            &fx,
            |n| matches!(n, Note::Revoked { id, pool: 1, .. } if *id == a.id)
        ),
        1
    );
    assert_eq!(a.end.get(), Some(LeaseEnd::Expired));
    assert_eq!(b.end.get(), None);
    assert!(fx.wake_checker);
    assert_eq!(h.s.leased(), 1);
    assert!(h.s.leases.contains_key(&b.key));
    assert_eq!(h.s.creations_needed(), 1);
}

#[test]
fn tick_revokes_a_draining_lease_past_its_hard_expiry() {
    let mut h = H::started(1, 1, 1);
    let a = h.lease(0);
    h.begin_job(a.key, 1);
    h.release(a.key, 2);
    let (_, fx) = h.tick(LEASE_MS + GRACE_MS);
    assert_eq!(fx.shutdown, vec![1]);
    assert_eq!(h.s.leased(), 0);
    // The first end reason wins: it was released before it was revoked.
    assert_eq!(a.end.get(), Some(LeaseEnd::Released));
    assert!(h.job_finished(a.key, 300).is_empty());
}

#[test]
fn tick_times_out_waiters_with_their_requested_timeout() {
    let mut h = H::started(1, 1, 1);
    let a = h.lease_with_long_terms(0);
    let w1 = h.queue_with(10, true, Some(30)); // deadline 40
    let w2 = h.queue(15); // no deadline
    let w3 = h.queue_with(20, true, Some(5)); // deadline 25

    let (_, fx) = h.tick(24);
    assert!(fx.wake.is_empty());
    let (_, fx) = h.tick(30);
    assert_eq!(fx.wake, vec![w3]);
    assert_eq!(fx.notes, vec![Note::WaiterTimedOut { waited: ms(5) }]);
    assert_eq!(h.failed(w3), Error::Timeout(ms(5)));
    assert_eq!(h.s.waiting(), 2);

    let (_, fx) = h.tick(40);
    assert_eq!(fx.wake, vec![w1]);
    assert_eq!(h.failed(w1), Error::Timeout(ms(30)));

    // The waiter without a deadline is still served.
    let fx = h.release(a.key, 50);
    assert_eq!(fx.wake, vec![w2]);
    let _ = h.granted(w2);
}

#[test]
fn tick_warns_about_soft_expiry_once() {
    let mut h = H::started(1, 1, 1);
    let request = AcquireRequest {
        terms: LeaseTerms {
            owner: Some(Arc::from("slow")),
            duration: ms(100),
            grace: ms(50),
        },
        wait: true,
        deadline: None,
    };
    let Ok(AcquireStep::Granted(a)) = h.acquire_request(0, request).0 else {
        panic!("expected a grant");
    };
    let soft = |n: &Note| matches!(n, Note::SoftExpired { .. });

    let (next, fx) = h.tick(99);
    assert_eq!(count_notes(&fx, soft), 0);
    assert_eq!(next, h.at(100), "next pass at the soft expiry");

    let (next, fx) = h.tick(100);
    assert_eq!(
        fx.notes,
        vec![Note::SoftExpired {
            id: a.id,
            owner: Some(Arc::from("slow"))
        }]
    );
    assert_eq!(next, h.at(150), "then at the hard expiry");
    assert!(h.s.leases[&a.key].soft_warned);

    let (_, fx) = h.tick(120);
    assert_eq!(count_notes(&fx, soft), 0, "warned only once");
    let (_, fx) = h.tick(149);
    assert_eq!(count_notes(&fx, soft), 0);
    // The lease still works between soft and hard expiry.
    assert_eq!(h.begin_job(a.key, 149).0, Some(1));
}

#[test]
fn tick_shrinks_idle_pools_above_desired_newest_first() {
    let mut h = H::started(1, 4, 4);
    let a = h.lease(0);
    assert_eq!(h.idle(), vec![2, 3, 4]);
    h.s.set_desired(2);
    let (_, fx) = h.tick(1);
    assert_eq!(fx.shutdown, vec![4, 3]);
    assert_eq!(
        fx.notes,
        vec![Note::Shrunk { pool: 4 }, Note::Shrunk { pool: 3 }]
    );
    assert_eq!(h.idle(), vec![2]);
    assert!(
        h.s.leases.contains_key(&a.key),
        "leased pools are never revoked by a shrink"
    );

    // Leased pools count towards the total but are not touched.
    h.s.set_desired(1);
    let (_, fx) = h.tick(2);
    assert_eq!(fx.shutdown, vec![2]);
    assert_eq!(h.s.total(), 1);
    let (_, fx) = h.tick(3);
    assert!(fx.shutdown.is_empty());
    assert_eq!(a.end.get(), None);
}

#[test]
fn tick_shrinks_the_most_recently_returned_idle_pool_first() {
    // "Newest" means the back of the idle queue (as in the Python
    // reference), which is the pool returned last, not the highest seq.
    let mut h = H::started(1, 3, 3);
    let a = h.lease(0);
    h.release(a.key, 1);
    assert_eq!(h.idle(), vec![2, 3, 1]);
    h.s.set_desired(2);
    let (_, fx) = h.tick(2);
    assert_eq!(fx.shutdown, vec![1]);
    assert_eq!(h.idle(), vec![2, 3]);
}

#[test]
fn tick_returns_the_earliest_deadline() {
    let mut h = H::started(1, 1, 1);
    // Nothing scheduled: the interval.
    let (next, _) = h.tick(0);
    assert_eq!(next, h.at(1000));

    let request = AcquireRequest {
        terms: terms(100, 50),
        wait: true,
        deadline: None,
    };
    let Ok(AcquireStep::Granted(a)) = h.acquire_request(0, request).0 else {
        panic!("expected a grant");
    };
    let _w_late = h.queue_with(0, true, Some(120)); // deadline 120
    let _w = h.queue_with(0, true, Some(80)); // deadline 80
    let _w_forever = h.queue(0);

    let (next, _) = h.tick(10);
    assert_eq!(next, h.at(80), "the earliest waiter deadline");
    let (next, _) = h.tick(80);
    assert_eq!(next, h.at(100), "the soft expiry");
    let (next, _) = h.tick(100);
    assert_eq!(next, h.at(120), "the later waiter deadline");
    let (next, _) = h.tick(120);
    assert_eq!(
        next,
        h.at(150),
        "the hard expiry, once soft expiry was warned"
    );
    let (next, fx) = h.tick(150);
    assert_eq!(a.end.get(), Some(LeaseEnd::Expired));
    assert_eq!(fx.shutdown, vec![1]);
    assert_eq!(next, h.at(1150), "nothing left but the interval");

    // A short interval caps everything.
    let mut fx = Fx::default();
    let next = h.s.tick(h.at(200), ms(5), &mut fx);
    assert_eq!(next, h.at(205));
}

// ----- broken pools -----------------------------------------------------------

#[test]
fn pool_broken_on_an_idle_pool_retires_it() {
    let mut h = H::started(2, 2, 2);
    let fx = h.broken(1);
    assert_eq!(fx.shutdown, vec![1]);
    assert_eq!(
        fx.notes,
        vec![Note::Retired {
            pool: 1,
            lease: None,
            reason: "worker died".to_owned()
        }]
    );
    assert!(fx.wake_checker, "replacement capacity is requested");
    assert_eq!(h.idle(), vec![2]);
    assert_eq!(h.plan(), vec![3]);

    // Unknown or already retired pools: nothing happens.
    assert!(h.broken(1).is_empty());
    assert!(h.broken(99).is_empty());
}

#[test]
fn pool_broken_on_a_leased_pool_ends_the_lease_as_broken() {
    let mut h = H::started(1, 1, 1);
    let a = h.lease(0);
    h.begin_job(a.key, 1);
    let w = h.queue(2);
    let fx = h.broken(1);
    assert_eq!(fx.shutdown, vec![1]);
    assert_eq!(
        fx.notes,
        vec![Note::Retired {
            pool: 1,
            lease: Some(a.id),
            reason: "worker died".to_owned()
        }]
    );
    assert_eq!(a.end.get(), Some(LeaseEnd::Broken));
    assert!(fx.wake.is_empty(), "a broken pool is never handed on");
    assert!(fx.wake_checker);
    assert_eq!(h.s.leased(), 0);

    // Later submissions fail; the running job's completion is ignored.
    assert_eq!(h.begin_job(a.key, 3).0, None);
    assert!(h.job_finished(a.key, 3).is_empty());
    assert!(h.release(a.key, 3).is_empty());

    // The replacement goes to the waiter.
    let (seqs, fx) = h.create_all(4);
    assert_eq!(seqs, vec![2]);
    assert_eq!(fx.wake, vec![w]);
}

#[test]
fn pool_broken_says_whether_the_pool_was_here() {
    let mut h = H::started(1, 2, 1);
    let _a = h.lease(0);
    let _w = h.queue(1);
    assert_eq!(h.plan(), vec![2]);
    let mut fx = Fx::default();
    // Still being created: not here (the manager remembers the report).
    assert!(!h.s.pool_broken(2, "early", &mut fx));
    assert!(fx.is_empty());
    assert!(h.s.pool_broken(1, "late", &mut fx));
    h.check();
}

#[test]
fn repeated_breaks_hold_creation_back_with_a_growing_delay() {
    let mut h = H::started(1, 3, 1);
    assert_eq!(h.s.creation_held_until(h.at(0)), None);
    h.s.record_break(h.at(0));
    assert_eq!(h.s.creation_held_until(h.at(0)), Some(h.at(5)));
    assert_eq!(h.s.creation_held_until(h.at(5)), None, "held until, not at");

    // Breaks in a streak double the delay.
    h.s.record_break(h.at(5));
    assert_eq!(h.s.creation_held_until(h.at(5)), Some(h.at(15)));
    h.s.record_break(h.at(6));
    assert_eq!(h.s.creation_held_until(h.at(6)), Some(h.at(26)));
    // The checker wakes when the hold ends.
    let (next, _) = h.tick(7);
    assert_eq!(next, h.at(26));

    // The delay is capped at 2 s.
    for t in 10..40 {
        h.s.record_break(h.at(t));
    }
    assert_eq!(h.s.creation_held_until(h.at(39)), Some(h.at(2039)));

    // After a quiet 10 s the streak starts over.
    h.s.record_break(h.at(39 + 10_000));
    assert_eq!(
        h.s.creation_held_until(h.at(39 + 10_000)),
        Some(h.at(39 + 10_005))
    );
    h.check();
}

#[test]
fn discarded_creation_frees_its_slot_and_asks_for_a_replacement() {
    let mut h = H::started(1, 2, 1);
    let _a = h.lease(0);
    let w = h.queue(1);
    assert_eq!(h.plan(), vec![2]);
    let mut fx = Fx::default();
    h.s.creation_discarded(2, "initializer failed", &mut fx);
    h.check();
    assert_eq!(h.s.creating, 0);
    assert_eq!(
        fx.notes,
        vec![Note::Retired {
            pool: 2,
            lease: None,
            reason: "initializer failed".to_owned()
        }]
    );
    assert!(
        fx.shutdown.is_empty(),
        "the caller shuts the discarded pool down"
    );
    assert!(fx.wake.is_empty(), "the waiter is not failed");
    assert!(fx.wake_checker, "a replacement is requested");
    let (seqs, fx) = h.create_all(2);
    assert_eq!(seqs, vec![3]);
    assert_eq!(fx.wake, vec![w]);
}

// ----- creation ---------------------------------------------------------------

#[test]
fn pool_creation_failure_fails_the_oldest_uncovered_waiter() {
    let mut h = H::started(1, 3, 1);
    let _a = h.lease(0);
    let w1 = h.queue(1);
    let w2 = h.queue(2);
    let seqs = h.plan();
    assert_eq!(seqs.len(), 2);

    let error = Error::Broken("cannot spawn".into());
    let fx = h.creation_failed(seqs[0], error.clone());
    assert_eq!(fx.wake, vec![w1]);
    assert_eq!(
        fx.notes,
        vec![Note::CreateFailed {
            error: error.clone()
        }]
    );
    assert!(!h.s.is_being_created(seqs[0]));
    assert!(
        !fx.wake_checker,
        "the creation left in flight serves the remaining waiter"
    );
    assert_eq!(h.failed(w1), error);
    assert_eq!(h.s.waiting(), 1);

    let fx = h.created(seqs[1], 3);
    assert_eq!(fx.wake, vec![w2]);
    let _ = h.granted(w2);
}

#[test]
fn pool_creation_failure_spares_waiters_covered_by_other_creations() {
    let mut h = H::started(1, 3, 1);
    let _a = h.lease(0);
    h.s.set_desired(3);
    let w = h.queue(1);
    // Two creations for the desired count; they also cover the waiter.
    let seqs = h.plan();
    assert_eq!(seqs, vec![2, 3]);

    let fx = h.creation_failed(seqs[0], Error::Broken("cannot spawn".into()));
    assert!(
        fx.wake.is_empty(),
        "the other creation will serve the waiter"
    );
    assert!(
        fx.wake_checker,
        "the desired count still needs the failed pool"
    );
    assert_eq!(h.s.waiting(), 1);
    let fx = h.created(seqs[1], 2);
    assert_eq!(fx.wake, vec![w]);

    // With nobody waiting a failure fails nobody; the checker retries
    // the desired count.
    let mut h = H::started(1, 2, 1);
    h.s.set_desired(2);
    assert_eq!(h.plan(), vec![2]);
    let fx = h.creation_failed(2, Error::Broken("cannot spawn".into()));
    assert!(fx.wake.is_empty());
    assert_eq!(fx.notes.len(), 1);
    assert!(fx.wake_checker);
    assert_eq!(h.s.creating, 0);
    assert_eq!(h.plan(), vec![3]);
}

#[test]
fn pool_created_beyond_the_desired_count_is_shut_down() {
    let mut h = H::started(1, 3, 1);
    let _a = h.lease(0);
    let w = h.queue(1);
    assert_eq!(h.plan(), vec![2]);
    // The waiter leaves before the pool arrives, and the pool is not needed.
    h.cancel(w, 2);
    let fx = h.created(2, 3);
    assert_eq!(fx.shutdown, vec![2]);
    assert_eq!(h.s.total(), 1);
}

// ----- stop and restart -----------------------------------------------------

#[test]
fn stop_shuts_everything_down_and_fails_every_waiter() {
    let mut h = H::started(1, 3, 3);
    let a = h.lease(0);
    let b = h.lease(0);
    let c = h.lease(0);
    h.begin_job(b.key, 1);
    h.release(b.key, 2); // b drains
    let w1 = h.queue(3);
    let w2 = h.queue_with(3, true, Some(100));
    let w3 = h.queue(3);
    // c's pool goes to w1, who has not picked up the grant yet.
    let fx = h.release(c.key, 4);
    assert_eq!(fx.wake, vec![w1]);

    let (ended, fx) = h.stop_counting();
    assert_eq!(ended, 3, "a, draining b and w1's parked lease");
    let mut shutdown = fx.shutdown.clone();
    shutdown.sort_unstable();
    assert_eq!(
        shutdown,
        vec![1, 2, 3],
        "every pool is shut down exactly once"
    );
    assert_eq!(
        fx.wake,
        vec![w2, w3],
        "every queued waiter is woken, oldest first"
    );
    assert!(fx.notes.is_empty());
    assert_eq!(h.s.phase(), Phase::Stopped);
    assert_eq!((h.s.available(), h.s.leased(), h.s.waiting()), (0, 0, 0));

    assert_eq!(a.end.get(), Some(LeaseEnd::Stopped));
    assert_eq!(
        b.end.get(),
        Some(LeaseEnd::Released),
        "the first end reason wins"
    );
    assert_eq!(
        h.failed(w1),
        Error::NotStarted,
        "a parked grant becomes a failure"
    );
    assert_eq!(h.failed(w2), Error::NotStarted);
    assert_eq!(h.failed(w3), Error::NotStarted);

    // Dead leases: no work, release and completion are no-ops.
    assert_eq!(h.begin_job(a.key, 5).0, None);
    assert!(h.release(a.key, 5).is_empty());
    assert!(h.job_finished(b.key, 5).is_empty());
    let (result, fx) = h.acquire(5, true, None);
    assert_eq!(result.unwrap_err(), Error::NotStarted);
    assert!(fx.is_empty());
    // A second stop does nothing.
    let (ended, fx) = h.stop_counting();
    assert_eq!(ended, 0);
    assert!(fx.is_empty());
}

#[test]
fn stop_shuts_idle_pools_down() {
    let mut h = H::started(3, 3, 3);
    let a = h.lease(0);
    let fx = h.stop();
    let mut shutdown = fx.shutdown.clone();
    shutdown.sort_unstable();
    assert_eq!(shutdown, vec![1, 2, 3]);
    assert!(fx.wake.is_empty());
    assert_eq!(a.end.get(), Some(LeaseEnd::Stopped));
    assert_eq!(h.s.total(), 0);
}

#[test]
fn pool_created_after_stop_is_shut_down() {
    let mut h = H::started(1, 2, 1);
    let _a = h.lease(0);
    let _w = h.queue(1);
    let seqs = h.plan();
    assert_eq!(seqs, vec![2]);
    h.stop();
    let fx = h.created(2, 2);
    assert_eq!(fx.shutdown, vec![2]);
    assert!(fx.wake.is_empty());
    assert_eq!(fx.notes, vec![Note::Created { pool: 2 }]);
    assert_eq!(h.s.creating, 0);
    assert_eq!(h.s.total(), 0);
    // A failure (or a discard) of a creation planned before the stop is
    // ignored: that run is over.
    let mut h = H::started(1, 3, 1);
    let _a = h.lease(0);
    let _w1 = h.queue(1);
    let _w2 = h.queue(1);
    assert_eq!(h.plan(), vec![2, 3]);
    h.stop();
    assert_eq!(h.s.creating, 0);
    let fx = h.creation_failed(2, Error::Broken("x".into()));
    assert!(fx.is_empty());
    let fx = h.discarded(3);
    assert!(fx.is_empty());
    assert_eq!(h.s.creating, 0);
}

#[test]
fn start_lifecycle_begin_finish_abort() {
    let mut s = State::new(
        MANAGER,
        Limits {
            max_pools: 3,
            min_pools: 1,
        },
    );
    assert_eq!(s.phase(), Phase::Stopped);
    assert_eq!(s.begin_start(), Phase::Stopped);
    assert_eq!(
        s.begin_start(),
        Phase::Starting,
        "a second start waits for the first"
    );
    s.abort_start();
    assert_eq!(s.phase(), Phase::Stopped);

    // Stopped while starting: the new pools come back for shutdown.
    assert_eq!(s.begin_start(), Phase::Stopped);
    let seqs = s.reserve_pool_seqs(2);
    assert_eq!(seqs, vec![1, 2]);
    let mut fx = Fx::default();
    s.stop(&mut fx);
    assert!(fx.is_empty());
    let slots: Vec<_> = seqs
        .iter()
        .map(|&seq| PoolSlot { seq, pool: seq })
        .collect();
    let back = s
        .finish_start(slots, Instant::now(), &mut Effects::default())
        .expect_err("stopped meanwhile");
    assert_eq!(back.len(), 2);
    assert_eq!(s.phase(), Phase::Stopped);
    s.check_invariants(|p| *p);

    // A real start; starting again while running does nothing.
    assert_eq!(s.begin_start(), Phase::Stopped);
    let seqs = s.reserve_pool_seqs(1);
    assert_eq!(seqs, vec![3], "pool seqs are never reused");
    s.finish_start(
        vec![PoolSlot { seq: 3, pool: 3 }],
        Instant::now(),
        &mut Effects::default(),
    )
    .expect("start");
    assert_eq!(s.begin_start(), Phase::Running);
    assert_eq!(s.phase(), Phase::Running);
    s.abort_start();
    assert_eq!(s.phase(), Phase::Running, "abort only undoes Starting");
    assert_eq!(s.available(), 1);
    s.check_invariants(|p| *p);
}

#[test]
fn restart_after_stop_serves_again_with_fresh_ids() {
    let mut h = H::started(1, 1, 1);
    let a = h.lease(0);
    let w = h.queue(1);
    h.stop();
    assert_eq!(h.failed(w), Error::NotStarted);

    assert_eq!(h.s.begin_start(), Phase::Stopped);
    let seqs = h.s.reserve_pool_seqs(1);
    assert_eq!(seqs, vec![2]);
    h.s.finish_start(
        vec![PoolSlot { seq: 2, pool: 2 }],
        Instant::now(),
        &mut Effects::default(),
    )
    .expect("restart");
    h.check();
    let b = h.lease(2);
    assert!(b.key > a.key);
    assert_eq!(h.pool_of(b.key), 2);
    // The old lease stays dead.
    assert_eq!(h.begin_job(a.key, 3).0, None);
    assert!(h.release(a.key, 3).is_empty());
    let w2 = h.queue(3);
    assert!(w2 > w, "waiter ids are never reused");
}

#[test]
fn set_desired_clamps_into_min_max() {
    let mut h = H::started(2, 5, 2);
    h.s.set_desired(0);
    assert_eq!(h.s.desired(), 2);
    h.s.set_desired(9);
    assert_eq!(h.s.desired(), 5);
    h.s.set_desired(3);
    assert_eq!(h.s.desired(), 3);
    assert_eq!(h.s.creations_needed(), 1);
    h.check();
}

// ----- creations across stop and restart -------------------------------------

#[test]
fn is_being_created_tracks_start_reserved_and_planned_pools() {
    let mut s = State::new(
        MANAGER,
        Limits {
            max_pools: 5,
            min_pools: 1,
        },
    );
    assert!(!s.is_being_created(1));
    assert_eq!(s.begin_start(), Phase::Stopped);
    assert_eq!(s.reserve_pool_seqs(2), vec![1, 2]);
    assert!(s.is_being_created(1) && s.is_being_created(2));
    assert_eq!(s.creating, 0, "start-up creations are not planned ones");
    s.finish_start(
        vec![PoolSlot { seq: 1, pool: 1 }, PoolSlot { seq: 2, pool: 2 }],
        Instant::now(),
        &mut Effects::default(),
    )
    .expect("start");
    assert!(!s.is_being_created(1) && !s.is_being_created(2));
    s.check_invariants(|p| *p);

    s.set_desired(5);
    assert_eq!(s.plan_creations(), vec![3, 4, 5]);
    assert!((3..=5).all(|seq| s.is_being_created(seq)));
    assert_eq!(s.creating, 3);
    let mut fx = Fx::default();
    let now = Instant::now();
    s.pool_created(PoolSlot { seq: 3, pool: 3 }, now, &mut fx);
    s.pool_creation_failed(4, Error::Broken("cannot spawn".into()), &mut fx);
    s.creation_discarded(5, "initializer failed", &mut fx);
    assert!((3..=5).all(|seq| !s.is_being_created(seq)));
    assert_eq!(s.creating, 0);
    assert!(
        !s.is_being_created(99),
        "unknown seqs are not being created"
    );
    s.check_invariants(|p| *p);
}

#[test]
fn stop_forgets_creations_in_flight() {
    let mut h = H::started(1, 2, 1);
    let _a = h.lease(0);
    let _w = h.queue(1);
    assert_eq!(h.plan(), vec![2]);
    assert!(h.s.is_being_created(2));
    let (ended, _) = h.stop_counting();
    assert_eq!(ended, 1);
    assert_eq!(h.s.creating, 0, "no longer counted against max_pools");
    assert!(!h.s.is_being_created(2));
}

#[test]
fn abort_start_forgets_the_pools_start_was_creating() {
    let mut s = State::new(
        MANAGER,
        Limits {
            max_pools: 3,
            min_pools: 2,
        },
    );
    assert_eq!(s.begin_start(), Phase::Stopped);
    assert_eq!(s.reserve_pool_seqs(2), vec![1, 2]);
    s.abort_start();
    assert_eq!(s.phase(), Phase::Stopped);
    assert!(!s.is_being_created(1) && !s.is_being_created(2));
    // A later start gets fresh seqs.
    assert_eq!(s.begin_start(), Phase::Stopped);
    assert_eq!(s.reserve_pool_seqs(2), vec![3, 4]);
    assert!(!s.is_being_created(1) && s.is_being_created(3));
    s.check_invariants(|p| *p);
}

/// Regression: a checker pass creating a pool while `stop()` and `start()`
/// run used to hand the old run's pool to the new run (above `max_pools`),
/// and its creation kept counting against the new run's `max_pools`.
#[test]
fn creation_in_flight_across_stop_and_restart_is_shut_down_on_arrival() {
    let mut h = H::started(1, 1, 1);
    let _a = h.lease(0);
    h.broken(1); // the lease's pool dies: a replacement is planned
    assert_eq!(h.plan(), vec![2]);
    h.stop();
    // Restart before the old run's creation reports back.
    assert_eq!(h.restart(1), vec![3]);
    assert_eq!(
        h.s.creating, 0,
        "the old creation holds no room in the new run"
    );
    let b = h.lease(1);
    assert_eq!(h.pool_of(b.key), 3);
    let w = h.queue(2);

    // The old run's pool arrives: shut down, not offered to the new waiter.
    let fx = h.created(2, 3);
    assert_eq!(fx.shutdown, vec![2]);
    assert!(fx.wake.is_empty());
    assert_eq!(fx.notes, vec![Note::Created { pool: 2 }]);
    assert!(!fx.wake_checker);
    assert_eq!(h.s.total(), 1, "max_pools is 1");
    assert_eq!(h.s.waiting(), 1);
    assert!(h.s.take_resolution(w).is_none());

    // The new run's waiter is served by the new run's pool.
    let fx = h.release(b.key, 4);
    assert_eq!(fx.wake, vec![w]);
    let g = h.granted(w);
    assert_eq!(h.pool_of(g.key), 3);
}

#[test]
fn stale_creation_results_leave_the_new_runs_creations_alone() {
    let mut h = H::started(1, 3, 1);
    let _a = h.lease(0);
    let _w1 = h.queue(1);
    let _w2 = h.queue(1);
    assert_eq!(h.plan(), vec![2, 3]);
    h.stop();
    assert_eq!(h.restart(1), vec![4]);
    let _b = h.lease(2);
    let w = h.queue(3);
    let w2 = h.queue(3);
    assert_eq!(h.plan(), vec![5, 6]);
    assert_eq!(h.s.creating, 2);

    // The old run's creations fail, break or arrive: nothing changes for
    // the new run.
    assert!(
        h.creation_failed(2, Error::Broken("late".into()))
            .is_empty()
    );
    let fx = h.created(3, 4);
    assert_eq!(fx.shutdown, vec![3]);
    assert!(fx.wake.is_empty());
    assert_eq!(h.s.creating, 2);
    assert_eq!(h.s.waiting(), 2);
    assert!(h.s.is_being_created(5) && h.s.is_being_created(6));

    let fx = h.created(6, 5);
    assert_eq!(fx.wake, vec![w]);
    let fx = h.discarded(5);
    assert!(fx.wake.is_empty(), "w2 is not failed");
    assert!(fx.wake_checker, "w2 needs a replacement");
    assert_eq!(h.s.creating, 0);
    assert_eq!(h.plan(), vec![7]);
    assert_eq!(h.created(7, 6).wake, vec![w2]);
}

#[test]
fn stale_pool_arriving_while_the_next_run_starts_is_shut_down() {
    let mut h = H::started(1, 2, 1);
    let _a = h.lease(0);
    let _w = h.queue(1);
    assert_eq!(h.plan(), vec![2]);
    h.stop();
    assert_eq!(h.s.begin_start(), Phase::Stopped);
    assert_eq!(h.s.reserve_pool_seqs(1), vec![3]);
    let fx = h.created(2, 2);
    assert_eq!(fx.shutdown, vec![2]);
    assert_eq!(h.s.phase(), Phase::Starting);
    assert!(
        h.s.is_being_created(3),
        "the new start's pool is still awaited"
    );
    h.s.finish_start(
        vec![PoolSlot { seq: 3, pool: 3 }],
        Instant::now(),
        &mut Effects::default(),
    )
    .expect("start");
    h.check();
    assert_eq!(h.idle(), vec![3]);
}

// ----- wait = false and zero timeouts -----------------------------------------

/// Regression (SPEC 5.4): `wait = false` used to queue the caller behind
/// waiters that already claimed the room, so it waited for a release.
#[test]
fn wait_false_acquire_never_waits_for_a_release() {
    let mut h = H::started(1, 2, 1);
    let _a = h.lease(0); // pool 1 leased; room for one more pool
    let w1 = h.queue(1); // the creation that room allows is w1's
    let (result, fx) = h.acquire(2, false, None);
    assert_eq!(result.unwrap_err(), Error::Unavailable { max_pools: 2 });
    assert!(fx.is_empty());
    assert_eq!(h.s.waiting(), 1);
    let (_, fx) = h.create_all(3);
    assert_eq!(fx.wake, vec![w1]);
}

#[test]
fn wait_false_counts_pools_being_created_as_capacity() {
    // A creation for the desired count is in flight and nobody waits for
    // it: a wait=false caller waits for that pool.
    let mut h = H::started(1, 2, 1);
    let _a = h.lease(0);
    h.s.set_desired(2);
    assert_eq!(h.plan(), vec![2]);
    let w = h.queue_with(1, false, None);
    // That pool is claimed now: the next caller is refused.
    let (result, _) = h.acquire(1, false, None);
    assert_eq!(result.unwrap_err(), Error::Unavailable { max_pools: 2 });
    let fx = h.created(2, 2);
    assert_eq!(fx.wake, vec![w]);
    let g = h.granted(w);
    assert_eq!(h.pool_of(g.key), 2);
}

#[test]
fn zero_timeout_fails_at_once_when_waiters_claim_every_pool_that_can_be_created() {
    let mut h = H::started(1, 2, 1);
    let _a = h.lease(0);
    let _w1 = h.queue(1);
    let (result, fx) = h.acquire(2, true, Some(0));
    assert_eq!(result.unwrap_err(), Error::Timeout(ms(0)));
    assert!(fx.is_empty());
    assert_eq!(h.s.waiting(), 1);
}

/// Regression: a caller whose deadline had passed was queued because a pool
/// could be created, but the checker timed it out (`tick`) before it
/// created that pool.
#[test]
fn zero_timeout_with_room_is_served_by_the_pool_created_for_it() {
    let mut h = H::started(1, 2, 1);
    let _a = h.lease(0);
    let (result, fx) = h.acquire(10, true, Some(0));
    let Ok(AcquireStep::Queued(w)) = result else {
        panic!("a pool can be created: expected to be queued, got {result:?}");
    };
    assert!(fx.wake_checker);
    // One checker pass, as the manager runs it: plan, then tick; the pool
    // planned for the waiter spares it.
    let (seqs, _, ticked) = h.pass(10);
    assert_eq!(seqs, vec![2]);
    assert!(ticked.wake.is_empty(), "the waiter is not timed out");
    assert!(ticked.notes.is_empty());
    assert_eq!(h.s.waiting(), 1);
    let created = h.created(2, 10);
    assert_eq!(created.wake, vec![w]);
    let g = h.granted(w);
    assert_eq!(h.pool_of(g.key), 2);
}

#[test]
fn tick_times_out_only_waiters_no_creation_in_flight_will_serve() {
    /// One leased pool, room for two more, and four waiters: three with
    /// deadline 10, one with deadline 30.
    fn setup() -> (H, [u64; 4]) {
        let mut h = H::started(1, 3, 1);
        let _a = h.lease_with_long_terms(0);
        let w1 = h.queue_with(0, true, Some(10));
        let w2 = h.queue_with(0, true, Some(10));
        let w3 = h.queue_with(0, true, Some(10));
        let w4 = h.queue_with(0, true, Some(30));
        (h, [w1, w2, w3, w4])
    }

    // A checker pass plans the two pools the room allows; the two oldest
    // waiters will get them and are spared.
    let (mut h, [w1, w2, w3, w4]) = setup();
    let (seqs, next, fx) = h.pass(20);
    assert_eq!(seqs, vec![2, 3]);
    assert_eq!(fx.wake, vec![w3]);
    assert_eq!(fx.notes, vec![Note::WaiterTimedOut { waited: ms(10) }]);
    assert_eq!(h.failed(w3), Error::Timeout(ms(10)));
    assert_eq!(h.s.waiting(), 3);
    assert_eq!(
        next,
        h.at(30),
        "w4's deadline; the spared waiters' passed ones are not looked at"
    );

    // The creations serve w1 and w2 although their deadlines passed.
    assert_eq!(h.created(2, 25).wake, vec![w1]);
    assert_eq!(h.created(3, 25).wake, vec![w2]);
    // No room is left: w4 times out at its deadline.
    let (seqs, _, fx) = h.pass(30);
    assert!(seqs.is_empty());
    assert_eq!(fx.wake, vec![w4]);
    assert_eq!(h.failed(w4), Error::Timeout(ms(30)));

    // A tick with no creation in flight spares nobody, room or not.
    let (mut h, [w1, w2, w3, w4]) = setup();
    let (_, fx) = h.tick(20);
    assert_eq!(fx.wake, vec![w1, w2, w3]);
    for w in [w1, w2, w3] {
        assert_eq!(h.failed(w), Error::Timeout(ms(10)));
    }
    assert_eq!(h.s.waiting(), 1);
    assert!(h.s.take_resolution(w4).is_none());

    // One creation in flight spares only the oldest waiter.
    let (mut h, [w1, w2, w3, _w4]) = setup();
    assert_eq!(h.plan(), vec![2, 3]);
    h.discarded(3);
    let (_, fx) = h.tick(20);
    assert_eq!(fx.wake, vec![w2, w3]);
    assert_eq!(h.s.waiting(), 2);
    assert_eq!(h.created(2, 25).wake, vec![w1]);
}

#[test]
fn room_a_revoked_lease_frees_spares_no_waiter_until_a_creation_is_planned() {
    let mut h = H::started(1, 1, 1);
    let a = h.lease(0); // hard expiry 110
    let w1 = h.queue_with(0, true, Some(50));
    let w2 = h.queue_with(0, true, Some(300));
    // A pass at 200: nothing can be planned while the lease holds the only
    // pool; the tick then revokes it, but no creation is in flight for w1,
    // whose deadline has passed, so it times out.
    let (seqs, next, fx) = h.pass(200);
    assert!(seqs.is_empty());
    assert_eq!(fx.shutdown, vec![1]);
    assert_eq!(a.end.get(), Some(LeaseEnd::Expired));
    assert_eq!(fx.wake, vec![w1]);
    assert_eq!(h.failed(w1), Error::Timeout(ms(50)));
    assert!(fx.wake_checker, "the freed room needs a pass to plan it");
    assert_eq!(next, h.at(300), "w2's deadline");
    assert_eq!(h.s.waiting(), 1);
    // The next pass plans the pool that serves w2.
    let (seqs, next, fx) = h.pass(200);
    assert_eq!(seqs, vec![2]);
    assert!(fx.wake.is_empty());
    assert_eq!(next, h.at(1200), "w2 is spared: only the interval is left");
    assert_eq!(h.created(2, 201).wake, vec![w2]);
    let _ = h.granted(w2);
}

#[test]
fn pool_creation_failure_asks_the_checker_to_retry_for_the_remaining_waiters() {
    let mut h = H::started(1, 3, 1);
    let _a = h.lease(0);
    let w1 = h.queue(1);
    let w2 = h.queue(1);
    let w3 = h.queue(1);
    // Room for two pools.
    assert_eq!(h.plan(), vec![2, 3]);
    let error = Error::Broken("cannot spawn".into());
    let fx = h.creation_failed(2, error.clone());
    assert_eq!(fx.wake, vec![w1]);
    assert_eq!(h.failed(w1), error);
    assert!(
        fx.wake_checker,
        "w2 and w3 need a pool the remaining creation does not cover"
    );
    assert_eq!(h.plan(), vec![4]);
    assert_eq!(h.created(3, 2).wake, vec![w2]);
    assert_eq!(h.created(4, 3).wake, vec![w3]);
}

// ----- graceful shutdown ----------------------------------------------------

#[test]
fn begin_shutdown_shuts_idle_pools_down_and_reports_held_leases() {
    let mut h = H::started(1, 4, 3);
    let a = h.lease(0);
    let b = h.lease(0);
    h.begin_job(b.key, 1);
    h.release(b.key, 2); // b drains
    let (held, fx) = h.begin_shutdown(500);
    assert_eq!(held, Some(2), "a draining lease is still held");
    assert_eq!(fx.shutdown, vec![3]);
    assert!(fx.wake.is_empty());
    assert!(fx.notes.is_empty());
    assert!(fx.wake_checker, "the checker learns the deadline");
    assert_eq!(h.s.phase(), Phase::ShuttingDown);
    assert_eq!((h.s.available(), h.s.leased()), (0, 2));
    // Held leases keep working.
    assert_eq!(a.end.get(), None);
    assert_eq!(h.begin_job(a.key, 3).0, Some(1));
    assert_eq!(h.s.leases[&a.key].pending, 1);
}

#[test]
fn begin_shutdown_fails_every_queued_waiter_with_not_started() {
    let mut h = H::started(1, 2, 1);
    let a = h.lease(0);
    let w1 = h.queue(1);
    let w2 = h.queue_with(1, true, Some(100));
    assert_eq!(h.plan(), vec![2]); // for w1
    let (held, fx) = h.begin_shutdown(1000);
    assert_eq!(held, Some(1));
    assert_eq!(fx.wake, vec![w1, w2], "oldest first");
    assert_eq!(h.failed(w1), Error::NotStarted);
    assert_eq!(h.failed(w2), Error::NotStarted);
    assert_eq!(h.s.waiting(), 0);

    // The creation in flight arrives: nobody to serve, shut down.
    let fx = h.created(2, 2);
    assert_eq!(fx.shutdown, vec![2]);
    assert!(fx.wake.is_empty());
    assert_eq!(h.s.creating, 0);
    assert_eq!(a.end.get(), None);
}

#[test]
fn begin_shutdown_keeps_a_grant_already_handed_to_a_waiter() {
    let mut h = H::started(1, 1, 1);
    let a = h.lease(0);
    let w = h.queue(1);
    h.release(a.key, 2); // w is granted pool 1 but has not picked it up
    let (held, fx) = h.begin_shutdown(1000);
    assert_eq!(held, Some(1));
    assert!(fx.wake.is_empty());
    assert!(fx.shutdown.is_empty());
    let g = h.granted(w);
    assert_eq!(h.begin_job(g.key, 3).0, Some(1));
}

#[test]
fn begin_shutdown_only_starts_from_running() {
    let mut s = State::new(
        MANAGER,
        Limits {
            max_pools: 2,
            min_pools: 1,
        },
    );
    let now = Instant::now();
    let mut fx = Fx::default();
    assert_eq!(s.begin_shutdown(now, &mut fx), None);
    assert_eq!(s.phase(), Phase::Stopped);
    assert_eq!(s.begin_start(), Phase::Stopped);
    assert_eq!(s.begin_shutdown(now, &mut fx), None);
    assert_eq!(s.phase(), Phase::Starting);
    assert!(fx.is_empty());
    assert!(!s.shutdown_due(now));

    // A second call while shutting down changes nothing: the first
    // deadline stands.
    let mut h = H::started(1, 1, 1);
    let _a = h.lease(0);
    assert_eq!(h.begin_shutdown(100).0, Some(1));
    let (held, fx) = h.begin_shutdown(50);
    assert_eq!(held, None);
    assert!(fx.is_empty());
    assert!(!h.shutdown_due(50));
    assert!(h.shutdown_due(100));
    // Starting while shutting down does nothing either.
    assert_eq!(h.s.begin_start(), Phase::ShuttingDown);
    assert_eq!(h.s.phase(), Phase::ShuttingDown);
}

#[test]
fn shutdown_due_once_every_lease_ended_or_at_the_deadline() {
    let mut h = H::started(2, 2, 2);
    assert!(!h.shutdown_due(0), "not while running");
    let a = h.lease_with_long_terms(0);
    let b = h.lease_with_long_terms(0);
    assert_eq!(h.begin_shutdown(500).0, Some(2));
    assert!(!h.shutdown_due(0));
    assert!(!h.shutdown_due(499));
    assert!(h.shutdown_due(500), "at the deadline");
    assert!(h.shutdown_due(600));

    h.release(a.key, 1);
    assert!(!h.shutdown_due(1));
    h.begin_job(b.key, 2);
    h.release(b.key, 3);
    assert!(!h.shutdown_due(3), "a draining lease is still held");
    let fx = h.job_finished(b.key, 4);
    assert_eq!(finalised(&fx), vec![(b.key, 2, Finalised::ShutDown)]);
    assert!(h.shutdown_due(4));

    // With nothing held it is due at once.
    let mut h = H::started(1, 1, 1);
    assert_eq!(h.begin_shutdown(500).0, Some(0));
    assert!(h.shutdown_due(0));
    // Never after stop.
    h.stop();
    assert!(!h.shutdown_due(1000));
}

#[test]
fn shutting_down_acquire_fails_not_started_without_side_effects() {
    let mut h = H::started(1, 2, 1);
    let _a = h.lease(0); // hard expiry 110
    h.begin_shutdown(1000);
    for (wait, timeout) in [
        (true, None),
        (false, None),
        (true, Some(0)),
        (true, Some(50)),
    ] {
        let (result, fx) = h.acquire(200, wait, timeout);
        assert_eq!(result.unwrap_err(), Error::NotStarted);
        assert!(fx.is_empty());
    }
    assert_eq!(h.s.waiting(), 0);
}

#[test]
fn shutting_down_finalise_shuts_pools_down_never_idle_or_handed_on() {
    let mut h = H::started(1, 3, 3);
    let a = h.lease(0);
    let b = h.lease(0);
    let c = h.lease(0);
    let w = h.queue(1);
    h.release(c.key, 2); // w is granted pool 3, not picked up
    h.begin_job(b.key, 3);
    h.release(b.key, 4); // b drains
    assert_eq!(h.begin_shutdown(1000).0, Some(3));

    let fx = h.release(a.key, 5);
    assert_eq!(finalised(&fx), vec![(a.key, 1, Finalised::ShutDown)]);
    assert_eq!(fx.shutdown, vec![1]);
    assert!(!fx.wake_checker, "no replacement while shutting down");
    assert_eq!(a.end.get(), Some(LeaseEnd::Released));
    assert_eq!(h.s.available(), 0);

    let fx = h.job_finished(b.key, 6);
    assert_eq!(finalised(&fx), vec![(b.key, 2, Finalised::ShutDown)]);
    assert_eq!(fx.shutdown, vec![2]);

    // w's future is dropped: its lease ends and the pool is shut down.
    let parked = h.s.leases.keys().copied().next().expect("w's lease");
    let fx = h.cancel(w, 7);
    assert_eq!(finalised(&fx), vec![(parked, 3, Finalised::ShutDown)]);
    assert_eq!(fx.shutdown, vec![3]);
    assert_eq!(h.s.total(), 0);
    assert!(h.shutdown_due(7));
}

#[test]
fn shutting_down_tick_revokes_expired_leases_without_shrinking() {
    let mut h = H::started(1, 3, 3);
    let request = AcquireRequest {
        terms: terms(100, 50),
        wait: true,
        deadline: None,
    };
    let Ok(AcquireStep::Granted(a)) = h.acquire_request(0, request).0 else {
        panic!("expected a grant");
    };
    let b = h.lease_with_long_terms(0);
    // Two leased pools, above the desired count.
    h.s.set_desired(1);
    assert_eq!(h.begin_shutdown(400).0, Some(2));

    let (next, fx) = h.tick(10);
    assert!(fx.is_empty());
    assert_eq!(next, h.at(100), "the soft expiry");
    let (next, fx) = h.tick(100);
    assert_eq!(
        fx.notes,
        vec![Note::SoftExpired {
            id: a.id,
            owner: None
        }]
    );
    assert_eq!(next, h.at(150), "the hard expiry");
    let (next, fx) = h.tick(150);
    assert_eq!(fx.shutdown, vec![1]);
    assert_eq!(
        fx.notes,
        vec![Note::Revoked {
            id: a.id,
            owner: None,
            pool: 1
        }]
    );
    assert!(!fx.wake_checker, "no replacement while shutting down");
    assert_eq!(a.end.get(), Some(LeaseEnd::Expired));
    assert_eq!(next, h.at(400), "the shutdown deadline");
    assert_eq!(h.s.leased(), 1, "a leased pool is never shrunk");
    assert_eq!(b.end.get(), None);
    assert_eq!(h.s.creations_needed(), 0);
    assert!(h.plan().is_empty());
    assert!(!h.shutdown_due(399));
    assert!(h.shutdown_due(400));
}

#[test]
fn shutting_down_plans_no_creations_and_replaces_no_broken_pool() {
    let mut h = H::started(2, 3, 2);
    let a = h.lease(0);
    h.s.set_desired(3);
    assert_eq!(h.begin_shutdown(1000).0, Some(1));
    assert_eq!(h.s.creations_needed(), 0);
    assert!(h.plan().is_empty());
    let fx = h.broken(1);
    assert_eq!(fx.shutdown, vec![1]);
    assert_eq!(a.end.get(), Some(LeaseEnd::Broken));
    assert!(!fx.wake_checker);
    assert!(h.plan().is_empty());
    assert!(h.shutdown_due(1));
}

#[test]
fn shutting_down_creation_failure_only_logs() {
    let mut h = H::started(1, 2, 1);
    let _a = h.lease(0);
    h.s.set_desired(2);
    assert_eq!(h.plan(), vec![2]);
    h.begin_shutdown(1000);
    let error = Error::Broken("cannot spawn".into());
    let fx = h.creation_failed(2, error.clone());
    assert_eq!(fx.notes, vec![Note::CreateFailed { error }]);
    assert!(fx.wake.is_empty() && fx.shutdown.is_empty());
    assert!(!fx.wake_checker);
    assert_eq!(h.s.creating, 0);
}

#[test]
fn stop_during_shutdown_ends_the_held_leases_and_counts_them() {
    let mut h = H::started(1, 2, 2);
    let a = h.lease(0);
    let b = h.lease(0);
    assert_eq!(h.begin_shutdown(100).0, Some(2));
    let (ended, fx) = h.stop_counting();
    assert_eq!(ended, 2);
    let mut shutdown = fx.shutdown.clone();
    shutdown.sort_unstable();
    assert_eq!(shutdown, vec![1, 2]);
    assert_eq!(a.end.get(), Some(LeaseEnd::Stopped));
    assert_eq!(b.end.get(), Some(LeaseEnd::Stopped));
    assert_eq!(h.s.phase(), Phase::Stopped);
    assert!(!h.shutdown_due(200));
    assert_eq!(h.stop_counting().0, 0, "a second stop ends nothing");

    // A new run forgets the old deadline.
    assert_eq!(h.restart(1), vec![3]);
    let (next, _) = h.tick(150);
    assert_eq!(next, h.at(1150));
    assert!(!h.shutdown_due(150));
}

// ----- renewal ----------------------------------------------------------------

#[test]
fn renew_restarts_the_lease_from_now_and_keeps_its_grace() {
    let mut h = H::started(1, 1, 1);
    let a = h.lease(0); // soft 100, hard 110
    let (renewed, fx) = h.renew(a.key, 300, 40);
    assert_eq!(renewed, Some((h.at(340), h.at(350))));
    assert_eq!(
        fx.notes,
        vec![Note::Renewed {
            id: a.id,
            duration: ms(300)
        }]
    );
    assert!(
        fx.wake_checker,
        "the checker may sleep until the old expiry"
    );
    assert!(fx.shutdown.is_empty() && fx.wake.is_empty());
    let stats = h.s.lease_stats(h.at(40));
    assert_eq!(stats[0].until_soft_expiry, ms(300));
    assert_eq!(stats[0].until_hard_expiry, ms(310));

    // The old expiries pass without effect.
    let (next, fx) = h.tick(200);
    assert!(fx.is_empty());
    assert_eq!(next, h.at(340), "the new soft expiry");
    assert_eq!(a.end.get(), None);
    assert_eq!(h.begin_job(a.key, 349).0, Some(1));

    // A shorter renewal moves the expiries earlier.
    let (renewed, _) = h.renew(a.key, 20, 349);
    assert_eq!(renewed, Some((h.at(369), h.at(379))));
    let (_, fx) = h.tick(379);
    assert_eq!(fx.shutdown, vec![1]);
    assert_eq!(a.end.get(), Some(LeaseEnd::Expired));
}

#[test]
fn renew_resets_the_soft_expiry_warning() {
    let mut h = H::started(1, 1, 1);
    let a = h.lease(0); // soft 100, hard 110
    let soft = |n: &Note| matches!(n, Note::SoftExpired { .. });
    let (_, fx) = h.tick(100);
    assert_eq!(count_notes(&fx, soft), 1);
    assert!(h.s.leases[&a.key].soft_warned);

    h.renew(a.key, 100, 105); // soft 205, hard 215
    assert!(!h.s.leases[&a.key].soft_warned);
    let (next, fx) = h.tick(150);
    assert_eq!(count_notes(&fx, soft), 0);
    assert_eq!(next, h.at(205), "the checker wakes for the new soft expiry");
    let (_, fx) = h.tick(205);
    assert_eq!(count_notes(&fx, soft), 1, "warned again");
}

#[test]
fn renew_at_or_after_hard_expiry_revokes_the_lease() {
    let mut h = H::started(1, 1, 1);
    let a = h.lease(0); // hard 110
    let w = h.queue(1);
    // One ms before the hard expiry the renewal wins.
    let (renewed, _) = h.renew(a.key, LEASE_MS, 109);
    assert_eq!(renewed, Some((h.at(209), h.at(219))));
    // Exactly at the (new) hard expiry the revocation wins.
    let (renewed, fx) = h.renew(a.key, LEASE_MS, 219);
    assert_eq!(renewed, None);
    assert_eq!(a.end.get(), Some(LeaseEnd::Expired));
    assert_eq!(fx.shutdown, vec![1]);
    assert_eq!(
        fx.notes,
        vec![Note::Revoked {
            id: a.id,
            owner: None,
            pool: 1
        }]
    );
    assert!(fx.wake.is_empty(), "an expired pool is never handed on");
    assert!(fx.wake_checker, "a replacement for the waiter");
    assert_eq!(h.s.leased(), 0);
    // Renewing again changes nothing.
    let (renewed, fx) = h.renew(a.key, LEASE_MS, 220);
    assert_eq!(renewed, None);
    assert!(fx.is_empty());
    let (_, fx) = h.create_all(221);
    assert_eq!(fx.wake, vec![w]);

    // Well after the hard expiry, before any checker pass.
    let mut h = H::started(1, 1, 1);
    let a = h.lease(0);
    let (renewed, fx) = h.renew(a.key, LEASE_MS, 500);
    assert_eq!(renewed, None);
    assert_eq!(fx.shutdown, vec![1]);
    assert_eq!(a.end.get(), Some(LeaseEnd::Expired));
}

#[test]
fn renew_fails_without_change_for_released_broken_draining_unknown_or_stopped_leases() {
    let mut h = H::started(4, 4, 4);
    let a = h.lease(0);
    let b = h.lease(0);
    let c = h.lease(0);
    h.release(a.key, 1);
    let (renewed, fx) = h.renew(a.key, 100, 2);
    assert_eq!(renewed, None, "released");
    assert!(fx.is_empty());

    h.broken(2);
    let (renewed, fx) = h.renew(b.key, 100, 2);
    assert_eq!(renewed, None, "broken");
    assert!(fx.is_empty());

    let (renewed, fx) = h.renew(999, 100, 2);
    assert_eq!(renewed, None, "unknown");
    assert!(fx.is_empty());

    h.begin_job(c.key, 2);
    h.release(c.key, 3);
    let (renewed, fx) = h.renew(c.key, 100, 4);
    assert_eq!(renewed, None, "draining");
    assert!(fx.is_empty());
    let r = &h.s.leases[&c.key];
    assert_eq!((r.soft, r.hard), (h.at(100), h.at(110)), "unchanged");
    // Past its hard expiry a draining lease is left to the checker.
    let (renewed, fx) = h.renew(c.key, 100, 200);
    assert_eq!(renewed, None);
    assert!(fx.is_empty());
    assert!(h.s.leases.contains_key(&c.key));
    let (_, fx) = h.tick(200);
    assert_eq!(fx.shutdown, vec![3]);

    let mut h = H::started(1, 1, 1);
    let d = h.lease(0);
    h.stop();
    let (renewed, fx) = h.renew(d.key, 100, 1);
    assert_eq!(renewed, None, "stopped");
    assert!(fx.is_empty());
}

#[test]
fn renew_works_during_a_graceful_shutdown() {
    let mut h = H::started(1, 1, 1);
    let a = h.lease(0);
    assert_eq!(h.begin_shutdown(1000).0, Some(1));
    let (renewed, fx) = h.renew(a.key, 500, 50);
    assert_eq!(renewed, Some((h.at(550), h.at(560))));
    assert!(fx.wake_checker);
    // The lease outlives its first hard expiry; the deadline still holds.
    let (next, fx) = h.tick(200);
    assert!(fx.is_empty());
    assert_eq!(next, h.at(550));
    assert!(!h.shutdown_due(999));
    assert!(h.shutdown_due(1000));
    // At its hard expiry it is revoked like any other.
    let (renewed, fx) = h.renew(a.key, 500, 560);
    assert_eq!(renewed, None);
    assert_eq!(fx.shutdown, vec![1]);
    assert!(h.shutdown_due(560));
}

// ----- spared waiters and the next pass ------------------------------------

/// SPEC 5.4: "with a timeout → wait at most that long, then *timeout*".
/// `tick` spares a waiter past its deadline only while a creation in flight
/// will serve it. A creation that is discarded (the pool broke before it was
/// placed) fails nobody and asks for a replacement, but the break starts the
/// back-off: the pass it triggers plans nothing, so it times the waiter out
/// at its deadline even while creations keep breaking (an initializer that
/// always fails).
#[test]
fn spared_waiter_times_out_once_no_creation_is_in_flight_for_it() {
    let mut h = H::started(1, 2, 1);
    let _a = h.lease_with_long_terms(0);
    let w = h.queue_with(0, true, Some(10));
    // The checker, as the manager runs it, for up to 20 passes: every pool
    // breaks before it is placed, and the discard wakes the checker at once.
    let mut t = 0;
    for _ in 0..20 {
        let (seqs, next, _) = h.pass(t);
        let mut woken = false;
        for seq in seqs {
            woken |= h.discarded(seq).wake_checker;
            h.s.record_break(h.at(t));
        }
        if h.s.waiting() == 0 {
            break;
        }
        if !woken {
            assert!(next > h.at(t), "the checker would spin");
            t = next.duration_since(h.base).as_millis() as u64;
        }
    }
    let resolution = h.s.take_resolution(w);
    assert!(
        matches!(resolution, Some(Resolution::Failed(Error::Timeout(_)))),
        "a waiter with a 10 ms timeout is still {resolution:?} (queued: {}) after {t} ms",
        h.s.waiting()
    );
    assert_eq!(t, 10, "timed out at its deadline");
}

/// The checker sleeps until the instant `tick` returns, so that instant is
/// never in the past: a spared waiter's passed deadline is not part of it
/// (its creation's outcome wakes the checker), and while the back-off holds
/// creations back the next pass is at the latest when it ends.
#[test]
fn tick_never_schedules_the_next_pass_in_the_past_while_the_back_off_holds() {
    let mut h = H::started(1, 2, 1);
    let _a = h.lease_with_long_terms(0);
    let w = h.queue_with(0, true, Some(10));
    assert_eq!(h.plan(), vec![2]);
    for t in 0..5 {
        h.s.record_break(h.at(t)); // 80 ms back-off from 4
    }
    // Pool 2 is still being created: w is spared past its deadline.
    let (next, fx) = h.tick(20);
    assert_eq!(h.s.creation_held_until(h.at(20)), Some(h.at(84)));
    assert!(fx.wake.is_empty());
    assert_eq!(h.s.waiting(), 1);
    assert_eq!(next, h.at(84), "the end of the back-off, not w's deadline");

    // The creation is discarded; the pass it triggers plans nothing during
    // the back-off and times w out.
    assert!(h.discarded(2).wake_checker);
    let (seqs, next, fx) = h.pass(30);
    assert!(seqs.is_empty());
    assert_eq!(fx.wake, vec![w]);
    assert_eq!(h.failed(w), Error::Timeout(ms(10)));
    assert_eq!(next, h.at(84));
}

/// During a graceful shutdown `tick` schedules the next pass for the
/// shutdown deadline only while it is ahead; once it has passed it is the
/// waiting `shutdown()`'s business, and the checker does not spin.
#[test]
fn tick_after_the_shutdown_deadline_schedules_the_next_pass_after_now() {
    let mut h = H::started(1, 1, 1);
    let _a = h.lease_with_long_terms(0);
    assert_eq!(h.begin_shutdown(100).0, Some(1));
    let (next, _) = h.tick(50);
    assert_eq!(next, h.at(100), "the shutdown deadline");
    let (next, _) = h.tick(200);
    assert!(h.shutdown_due(200));
    assert!(
        next > h.at(200),
        "the checker would spin: next pass at {:?} before now",
        h.at(200).duration_since(next)
    );
    assert_eq!(next, h.at(1200), "the interval");
}

// ----- property test --------------------------------------------------------

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
        )
            .prop_map(|(wait, timeout, duration, grace)| Op::Acquire {
                wait,
                timeout,
                duration,
                grace,
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
}

/// The effects the model expects from one transition.
#[derive(Debug, Default)]
struct Expect {
    shutdown: Vec<u64>,
    wake: Vec<u64>,
    notes: Vec<Note>,
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
    phase: Phase,
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
}

impl Sim {
    fn new(min: usize, max: usize) -> Sim {
        let limits = Limits {
            max_pools: max,
            min_pools: min,
        };
        let mut sim = Sim {
            s: State::new(MANAGER, limits),
            base: Instant::now(),
            now_ms: 0,
            limits,
            phase: Phase::Stopped,
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
        if self.phase != Phase::Running {
            return 0;
        }
        let have = self.total() + self.in_flight.len();
        let room = self.limits.max_pools.saturating_sub(have);
        let for_desired = self.desired.saturating_sub(have);
        let for_waiters = self.queued().len().saturating_sub(self.in_flight.len());
        room.min(for_desired.max(for_waiters))
    }

    /// Whether a graceful shutdown may proceed at `at`.
    fn m_shutdown_due(&self, at: Instant) -> bool {
        self.phase == Phase::ShuttingDown
            && (self.leases.is_empty() || self.shutdown_deadline.is_some_and(|d| at >= d))
    }

    // ----- the model's transitions -----

    fn m_grant(&mut self, pool: u64, duration: u64, grace: u64, exp: &mut Expect) -> u64 {
        assert!(
            !self.shut.contains(&pool),
            "pool {pool} handed out after shutdown"
        );
        assert_eq!(
            self.phase,
            Phase::Running,
            "lease granted while not running"
        );
        let key = self.next_lease;
        self.next_lease += 1;
        let soft = deadline_after(self.now(), ms(duration));
        let hard = deadline_after(soft, ms(grace));
        exp.notes.push(Note::Leased {
            id: lease_id(key),
            owner: None,
            pool,
            duration: ms(duration),
            grace: ms(grace),
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
            },
        );
        key
    }

    fn m_offer(&mut self, pool: u64, exp: &mut Expect) -> Finalised {
        if let Some(&id) = self.queued().first() {
            let (duration, grace) = {
                let w = &self.waiters[&id];
                (w.duration, w.grace)
            };
            let key = self.m_grant(pool, duration, grace, exp);
            self.waiters.get_mut(&id).expect("waiter").status = Parked::Granted(key);
            exp.wake.push(id);
            Finalised::HandedOff
        } else if self.total() < self.desired {
            self.idle.push_back(pool);
            Finalised::Idle
        } else {
            exp.shutdown.push(pool);
            Finalised::ShutDown
        }
    }

    fn m_finalise(&mut self, key: u64, exp: &mut Expect) {
        let lease = self.leases.remove(&key).expect("lease to finalise");
        let healthy = self.phase == Phase::Running && self.now() < lease.hard;
        let outcome = if healthy {
            self.m_offer(lease.pool, exp)
        } else {
            exp.shutdown.push(lease.pool);
            Finalised::ShutDown
        };
        exp.notes.push(Note::Finalised {
            id: lease_id(key),
            pool: lease.pool,
            outcome,
        });
    }

    fn m_revoke(&mut self, key: u64, exp: &mut Expect) {
        let lease = self.leases.remove(&key).expect("lease to revoke");
        self.set_end(key, LeaseEnd::Expired);
        exp.notes.push(Note::Revoked {
            id: lease_id(key),
            owner: None,
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
            exp.notes.push(Note::Draining {
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
        let canon = |notes: &[Note]| {
            let mut v: Vec<String> = notes.iter().map(|n| format!("{n:?}")).collect();
            v.sort();
            v
        };
        assert_eq!(canon(&fx.notes), canon(&exp.notes), "{what}: notes");
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
        let earliest_unspared = queued
            .iter()
            .skip(spared)
            .filter_map(|id| self.waiters[id].deadline.map(|(at, _)| at))
            .min();
        assert_eq!(s.waiters.earliest_deadline(spared), earliest_unspared);

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

        if self.phase == Phase::Running {
            assert!(
                !(s.available() > 0 && s.waiting() > 0),
                "a waiter is queued while a pool is idle"
            );
            assert_eq!(s.creation_held_until(now), self.held_until(), "back-off");
            // SPEC 5.4: a wait=false caller never waits for a release. It
            // is only ever queued among the waiters the pools that exist or
            // may be created will serve.
            let room = self.limits.max_pools.saturating_sub(self.total());
            for (at, id) in queued.iter().enumerate() {
                assert!(
                    self.waiters[id].wait || at < room,
                    "wait=false waiter {id} at {at} waits for a release (room {room})"
                );
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
        if matches!(self.phase, Phase::Running | Phase::ShuttingDown) && !self.checker_pending {
            // Every deadline is covered by a scheduled or requested pass,
            // except those of the waiters the creations in flight will
            // serve (their outcome wakes the checker) and a shutdown
            // deadline that had passed at the last pass (the waiting
            // `shutdown()` stops the manager).
            let next = self.checker_next.expect("a pass was scheduled");
            let last = self.checker_last.expect("a pass ran");
            assert!(next > last, "the checker would spin");
            for id in queued.iter().skip(spared) {
                if let Some((at, _)) = self.waiters[id].deadline {
                    assert!(
                        next <= at,
                        "waiter {id}: deadline before the next checker pass"
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

    // ----- steps -----

    fn acquire(&mut self, wait: bool, timeout: Option<u64>, duration: u64, grace: u64) {
        enum Want {
            Granted(u64),
            Queued(u64),
            Err(Error),
        }
        let now = self.now();
        let deadline = timeout.map(|t| (deadline_after(now, ms(t)), ms(t)));
        let signal = self.next_waiter;
        let mut exp = Expect::default();
        let want = if self.phase != Phase::Running {
            exp.wake_checker = Some(false);
            Want::Err(Error::NotStarted)
        } else {
            self.m_revoke_expired(&mut exp);
            if let Some(pool) = self.idle.pop_front() {
                Want::Granted(self.m_grant(pool, duration, grace, &mut exp))
            } else {
                // Pools that exist or may be created, beyond those the
                // queued waiters claim.
                let room = self.limits.max_pools.saturating_sub(self.total()) > self.queued().len();
                if !wait && !room {
                    Want::Err(Error::Unavailable {
                        max_pools: self.limits.max_pools,
                    })
                } else if let Some((_, t)) = deadline.filter(|(at, _)| *at <= now && !room) {
                    Want::Err(Error::Timeout(t))
                } else {
                    self.next_waiter += 1;
                    self.waiters.insert(
                        signal,
                        MWaiter {
                            status: Parked::Queued,
                            wait,
                            duration,
                            grace,
                            deadline,
                        },
                    );
                    Want::Queued(signal)
                }
            }
        };
        let request = AcquireRequest {
            terms: terms(duration, grace),
            wait,
            deadline,
        };
        let mut fx = Fx::default();
        let got = self.s.acquire(request, now, || signal, &mut fx);
        match (got, want) {
            (Ok(AcquireStep::Granted(grant)), Want::Granted(key)) => {
                assert_eq!(grant.key, key);
                assert_eq!(grant.id, lease_id(key));
                assert_eq!(grant.leased_at, now);
                assert_eq!((grant.duration, grant.grace), (ms(duration), ms(grace)));
                let m = &self.leases[&key];
                assert_eq!((grant.soft, grant.hard), (m.soft, m.hard));
                self.grants.insert(key, grant);
            }
            (Ok(AcquireStep::Queued(id)), Want::Queued(want)) => assert_eq!(id, want),
            (Err(error), Want::Err(want)) => assert_eq!(error, want),
            (got, _) => panic!("acquire: unexpected {got:?}"),
        }
        self.compare("acquire", fx, exp);
    }

    fn release(&mut self, key: u64) {
        let mut exp = Expect::default();
        self.m_release(key, &mut exp);
        let mut fx = Fx::default();
        self.s.release(key, self.now(), &mut fx);
        self.compare("release", fx, exp);
    }

    fn begin_job(&mut self, key: u64) {
        let now = self.now();
        let mut exp = Expect::default();
        let want = match self.leases.get_mut(&key) {
            Some(lease) if !lease.draining => {
                if now >= lease.hard {
                    self.m_revoke(key, &mut exp);
                    exp.wake_checker = Some(self.m_creations_needed() > 0);
                    None
                } else {
                    lease.pending += 1;
                    Some(lease.pool)
                }
            }
            _ => None,
        };
        let mut fx = Fx::default();
        let got = self.s.begin_job(key, now, &mut fx);
        assert_eq!(got, want, "begin_job({key})");
        if let Some(pool) = got {
            assert!(
                !self.shut.contains(&pool),
                "job submitted to shut-down pool {pool}"
            );
            self.jobs.push(key);
        }
        self.compare("begin_job", fx, exp);
    }

    fn job_finished(&mut self, at: usize) {
        let key = self.jobs.swap_remove(at);
        let mut exp = Expect::default();
        let mut finalise = false;
        if let Some(lease) = self.leases.get_mut(&key) {
            lease.pending -= 1;
            finalise = lease.draining && lease.pending == 0;
        }
        if finalise {
            self.m_finalise(key, &mut exp);
        }
        let mut fx = Fx::default();
        self.s.job_finished(key, self.now(), &mut fx);
        self.compare("job_finished", fx, exp);
    }

    fn renew(&mut self, key: u64, duration: u64, at_hard: bool) {
        if at_hard {
            if let Some(lease) = self.leases.get(&key) {
                let hard = lease.hard.duration_since(self.base).as_millis() as u64;
                self.now_ms = self.now_ms.max(hard);
                self.verify();
            }
        }
        let now = self.now();
        let mut exp = Expect::default();
        let live = matches!(self.phase, Phase::Running | Phase::ShuttingDown);
        let want = match self.leases.get_mut(&key) {
            Some(lease) if !lease.draining && live => {
                if now >= lease.hard {
                    self.m_revoke(key, &mut exp);
                    exp.wake_checker = Some(self.m_creations_needed() > 0);
                    None
                } else {
                    lease.soft = deadline_after(now, ms(duration));
                    lease.hard = deadline_after(lease.soft, ms(lease.grace));
                    lease.soft_warned = false;
                    exp.notes.push(Note::Renewed {
                        id: lease_id(key),
                        duration: ms(duration),
                    });
                    exp.wake_checker = Some(true);
                    Some((lease.soft, lease.hard))
                }
            }
            _ => {
                exp.wake_checker = Some(false);
                None
            }
        };
        let mut fx = Fx::default();
        let got = self.s.renew(key, ms(duration), now, &mut fx);
        assert_eq!(got, want, "renew({key})");
        self.compare("renew", fx, exp);
    }

    fn cancel_waiter(&mut self, id: u64) {
        let mut exp = Expect::default();
        let status = std::mem::replace(
            &mut self.waiters.get_mut(&id).expect("known waiter").status,
            Parked::Gone,
        );
        if let Parked::Granted(key) = status {
            self.m_release(key, &mut exp);
        }
        let mut fx = Fx::default();
        self.s.cancel_waiter(id, self.now(), &mut fx);
        self.compare("cancel_waiter", fx, exp);
    }

    fn take_resolution(&mut self, id: u64) {
        let waiter = self.waiters.get_mut(&id).expect("known waiter");
        let want = match &waiter.status {
            Parked::Queued | Parked::Gone => None,
            other => Some(other.clone()),
        };
        if want.is_some() {
            waiter.status = Parked::Gone;
        }
        let got = self.s.take_resolution(id);
        match (got, want) {
            (None, None) => {}
            (Some(Resolution::Granted(grant)), Some(Parked::Granted(key))) => {
                assert_eq!(grant.key, key);
                assert_eq!(grant.id, lease_id(key));
                assert_eq!(grant.hard, deadline_after(grant.soft, grant.grace));
                self.grants.insert(key, grant);
            }
            (Some(Resolution::Failed(error)), Some(Parked::Failed(want))) => {
                assert_eq!(error, want, "waiter {id}: failure");
            }
            (got, want) => panic!("take_resolution({id}): got {got:?}, want {want:?}"),
        }
        self.verify();
    }

    /// How many of the oldest queued waiters `tick` spares: those the
    /// creations in flight will serve.
    fn m_spared(&self) -> usize {
        self.limits
            .max_pools
            .saturating_sub(self.total())
            .min(self.in_flight.len())
    }

    /// One checker pass, as the manager runs it: plan the creations needed
    /// (none while the back-off holds), then tick.
    fn checker_pass(&mut self, desired: Option<usize>) {
        if !matches!(self.phase, Phase::Running | Phase::ShuttingDown) {
            // The manager's checker does not run while stopped.
            return;
        }
        if let Some(d) = desired {
            self.s.set_desired(d);
            self.desired = d.clamp(self.limits.min_pools, self.limits.max_pools);
        }
        let now = self.now();
        // The pass is running (the kicks it takes are consumed by it).
        self.checker_pending = true;

        let held = self.s.creation_held_until(now);
        assert_eq!(held, self.held_until());
        let n = if held.is_some() {
            0
        } else {
            self.m_creations_needed()
        };
        // Like the manager: no creations while the back-off holds.
        let seqs = if held.is_some() {
            Vec::new()
        } else {
            self.s.plan_creations()
        };
        let want: Vec<u64> = (self.next_pool..self.next_pool + n as u64).collect();
        assert_eq!(seqs, want, "plan_creations");
        self.next_pool += n as u64;
        self.in_flight.extend(seqs);
        if held.is_none() {
            assert_eq!(self.s.creations_needed(), 0);
        }
        self.verify();

        let mut exp = Expect::default();
        self.m_revoke_expired(&mut exp);
        // The oldest waiters the creations in flight will serve wait for
        // them; the others time out at their deadline.
        let spared = self.m_spared();
        for id in self.queued().into_iter().skip(spared) {
            let waiter = self.waiters.get_mut(&id).expect("waiter");
            if let Some((at, timeout)) = waiter.deadline {
                if at <= now {
                    waiter.status = Parked::Failed(Error::Timeout(timeout));
                    exp.notes.push(Note::WaiterTimedOut { waited: timeout });
                    exp.wake.push(id);
                }
            }
        }
        for (key, lease) in self.leases.iter_mut() {
            if !lease.soft_warned && now >= lease.soft {
                lease.soft_warned = true;
                exp.notes.push(Note::SoftExpired {
                    id: lease_id(*key),
                    owner: None,
                });
            }
        }
        while self.phase == Phase::Running && self.total() > self.desired {
            let Some(pool) = self.idle.pop_back() else {
                break;
            };
            exp.notes.push(Note::Shrunk { pool });
            exp.shutdown.push(pool);
        }
        let mut want_next = deadline_after(now, INTERVAL);
        for lease in self.leases.values() {
            want_next = want_next.min(lease.hard);
            if !lease.soft_warned {
                want_next = want_next.min(lease.soft);
            }
        }
        for id in self.queued().into_iter().skip(self.m_spared()) {
            if let Some((at, _)) = self.waiters[&id].deadline {
                want_next = want_next.min(at);
            }
        }
        if let Some(until) = self.held_until() {
            want_next = want_next.min(until);
        }
        if let Some(at) = self.shutdown_deadline.filter(|at| *at > now) {
            want_next = want_next.min(at);
        }
        let want_next = want_next.max(now);

        let mut fx = Fx::default();
        let next = self.s.tick(now, INTERVAL, &mut fx);
        assert_eq!(next, want_next, "tick: next deadline");
        assert!(next > now, "tick: the checker would spin");
        // The pass is over: it sleeps until `next` unless the tick woke the
        // checker (a revoked lease's room needs a pass to plan its pool).
        let woken = fx.wake_checker;
        self.checker_pending = false;
        self.checker_next = Some(next);
        self.checker_last = Some(now);
        if held.is_none() && !woken {
            assert_eq!(
                self.s.creations_needed(),
                0,
                "tick: creations left unplanned"
            );
        }
        self.compare("tick", fx, exp);
    }

    /// Picks the creation at `at` among this run's and stopped runs' ones:
    /// `(seq, planned by this run)`.
    fn take_creation(&mut self, at: usize) -> (u64, bool) {
        if at < self.in_flight.len() {
            (self.in_flight.remove(at), true)
        } else {
            (self.stale.remove(at - self.in_flight.len()), false)
        }
    }

    fn created(&mut self, at: usize) {
        let (seq, current) = self.take_creation(at);
        assert!(self.created.insert(seq), "pool {seq} created twice");
        let mut exp = Expect::default();
        exp.notes.push(Note::Created { pool: seq });
        if current && self.phase == Phase::Running {
            // (A grant may wake the checker for its expiry.)
            self.m_offer(seq, &mut exp);
        } else {
            // Not offered to anyone; a stopped run's pool leaves the
            // creation count alone.
            exp.shutdown.push(seq);
            exp.wake_checker = Some(false);
        }
        let mut fx = Fx::default();
        self.s
            .pool_created(PoolSlot { seq, pool: seq }, self.now(), &mut fx);
        self.compare("pool_created", fx, exp);
    }

    fn creation_failed(&mut self, at: usize) {
        let (seq, current) = self.take_creation(at);
        let error = Error::Broken(format!("cannot create pool {seq}"));
        let mut exp = Expect::default();
        if current {
            exp.notes.push(Note::CreateFailed {
                error: error.clone(),
            });
            let queued = self.queued();
            if queued.len() > self.in_flight.len() {
                let id = queued[0];
                self.waiters.get_mut(&id).expect("waiter").status = Parked::Failed(error.clone());
                exp.wake.push(id);
            }
            exp.wake_checker = Some(self.m_creations_needed() > 0);
        } else {
            // Planned by a stopped run: ignored.
            exp.wake_checker = Some(false);
        }
        let mut fx = Fx::default();
        self.s.pool_creation_failed(seq, error, &mut fx);
        // The manager records every failed creation for the back-off.
        self.record_break();
        self.compare("pool_creation_failed", fx, exp);
    }

    /// A created pool broke before it was placed: the manager discards it,
    /// shuts it down and records the break.
    fn creation_discarded(&mut self, at: usize) {
        let (seq, current) = self.take_creation(at);
        let reason = "initializer failed";
        let mut exp = Expect::default();
        if current {
            exp.notes.push(Note::Retired {
                pool: seq,
                lease: None,
                reason: reason.to_owned(),
            });
            exp.wake_checker = Some(self.m_creations_needed() > 0);
        } else {
            exp.wake_checker = Some(false);
        }
        let mut fx = Fx::default();
        self.s.creation_discarded(seq, reason, &mut fx);
        self.record_break();
        assert!(self.created.insert(seq) && self.shut.insert(seq));
        self.compare("creation_discarded", fx, exp);
    }

    fn pool_broken(&mut self, seq: u64) {
        let reason = "worker died";
        let mut exp = Expect::default();
        let here = self.idle.contains(&seq) || self.leases.values().any(|l| l.pool == seq);
        if let Some(at) = self.idle.iter().position(|p| *p == seq) {
            self.idle.remove(at);
            exp.shutdown.push(seq);
            exp.notes.push(Note::Retired {
                pool: seq,
                lease: None,
                reason: reason.to_owned(),
            });
        } else if let Some(key) = self
            .leases
            .iter()
            .find(|(_, l)| l.pool == seq)
            .map(|(key, _)| *key)
        {
            self.leases.remove(&key);
            self.set_end(key, LeaseEnd::Broken);
            exp.shutdown.push(seq);
            exp.notes.push(Note::Retired {
                pool: seq,
                lease: Some(lease_id(key)),
                reason: reason.to_owned(),
            });
        }
        exp.wake_checker = Some(here && self.m_creations_needed() > 0);
        let mut fx = Fx::default();
        assert_eq!(
            self.s.pool_broken(seq, reason, &mut fx),
            here,
            "pool_broken({seq})"
        );
        if here {
            self.record_break();
        }
        self.compare("pool_broken", fx, exp);
    }

    fn begin_shutdown(&mut self, after: u64) {
        let deadline = deadline_after(self.now(), ms(after));
        let mut exp = Expect::default();
        let want = if self.phase == Phase::Running {
            exp.shutdown.extend(self.idle.drain(..));
            exp.wake = self.queued();
            for id in &exp.wake {
                self.waiters.get_mut(id).expect("waiter").status =
                    Parked::Failed(Error::NotStarted);
            }
            exp.wake_checker = Some(true);
            self.phase = Phase::ShuttingDown;
            self.shutdown_deadline = Some(deadline);
            Some(self.leases.len())
        } else {
            exp.wake_checker = Some(false);
            None
        };
        let mut fx = Fx::default();
        let got = self.s.begin_shutdown(deadline, &mut fx);
        assert_eq!(got, want, "begin_shutdown");
        self.compare("begin_shutdown", fx, exp);
    }

    /// Like the manager's `shutdown()`: once due, stop.
    fn finish_shutdown(&mut self) {
        if self.s.shutdown_due(self.now()) {
            self.stop();
        }
    }

    fn stop(&mut self) {
        let mut exp = Expect::default();
        exp.shutdown.extend(self.idle.drain(..));
        let keys: Vec<u64> = self.leases.keys().copied().collect();
        let ended = keys.len();
        for key in keys {
            let lease = self.leases.remove(&key).expect("lease");
            self.set_end(key, LeaseEnd::Stopped);
            exp.shutdown.push(lease.pool);
        }
        // Queued waiters fail and are woken, oldest first; parked grants
        // turn into failures (those waiters were woken when granted).
        exp.wake = self.queued();
        for waiter in self.waiters.values_mut() {
            if matches!(waiter.status, Parked::Queued | Parked::Granted(_)) {
                waiter.status = Parked::Failed(Error::NotStarted);
            }
        }
        exp.wake_checker = Some(false);
        self.phase = Phase::Stopped;
        self.shutdown_deadline = None;
        // Creations in flight now belong to a stopped run.
        self.stale.append(&mut self.in_flight);
        self.checker_pending = false;
        self.checker_next = None;
        self.checker_last = None;
        let mut fx = Fx::default();
        assert_eq!(self.s.stop(&mut fx), ended, "stop: leases ended");
        self.compare("stop", fx, exp);
    }

    fn restart(&mut self, desired: usize) {
        if self.phase != Phase::Stopped {
            assert_eq!(self.s.begin_start(), self.phase);
            self.verify();
            return;
        }
        if !RESTART_WITH_STALE_CREATIONS {
            while !self.stale.is_empty() {
                self.created(self.in_flight.len());
            }
        }
        assert_eq!(self.s.begin_start(), Phase::Stopped);
        self.phase = Phase::Starting;
        self.verify();
        self.s.set_desired(desired);
        self.desired = desired.clamp(self.limits.min_pools, self.limits.max_pools);
        let seqs = self.s.reserve_pool_seqs(self.desired);
        let want: Vec<u64> = (self.next_pool..self.next_pool + self.desired as u64).collect();
        assert_eq!(seqs, want, "reserve_pool_seqs");
        assert!(seqs.iter().all(|seq| self.s.is_being_created(*seq)));
        self.next_pool += seqs.len() as u64;
        // A stopped run's creation may report back while this one starts.
        if !self.stale.is_empty() {
            self.created(self.in_flight.len());
        }
        let slots = seqs
            .iter()
            .map(|&seq| PoolSlot { seq, pool: seq })
            .collect();
        self.s
            .finish_start(slots, Instant::now(), &mut Effects::default())
            .expect("start");
        assert!(seqs.iter().all(|seq| !self.s.is_being_created(*seq)));
        self.created.extend(seqs.iter().copied());
        self.idle.extend(seqs);
        self.phase = Phase::Running;
        // The new checker runs a pass as soon as it has started.
        self.checker_pending = true;
        self.checker_next = None;
        self.checker_last = None;
        self.verify();
    }

    fn failed_start(&mut self, desired: usize, abort: bool) {
        if self.phase != Phase::Stopped {
            return;
        }
        assert_eq!(self.s.begin_start(), Phase::Stopped);
        self.phase = Phase::Starting;
        self.verify();
        self.s.set_desired(desired);
        self.desired = desired.clamp(self.limits.min_pools, self.limits.max_pools);
        let seqs = self.s.reserve_pool_seqs(self.desired);
        self.next_pool += seqs.len() as u64;
        assert!(seqs.iter().all(|seq| self.s.is_being_created(*seq)));
        if abort {
            // A creation failed: the manager shuts down what it created
            // (the state never saw those pools) and aborts.
            self.s.abort_start();
            self.phase = Phase::Stopped;
            assert!(seqs.iter().all(|seq| !self.s.is_being_created(*seq)));
            self.verify();
            return;
        }
        // Stopped while starting.
        self.phase = Phase::Stopped;
        let mut fx = Fx::default();
        assert_eq!(self.s.stop(&mut fx), 0);
        let exp = Expect {
            wake_checker: Some(false),
            ..Expect::default()
        };
        self.compare("stop while starting", fx, exp);
        assert!(seqs.iter().all(|seq| !self.s.is_being_created(*seq)));
        let slots = seqs
            .iter()
            .map(|&seq| PoolSlot { seq, pool: seq })
            .collect();
        let back = self
            .s
            .finish_start(slots, Instant::now(), &mut Effects::default())
            .expect_err("stopped while starting");
        // The manager shuts the returned pools down.
        for slot in back {
            assert!(self.created.insert(slot.seq));
            assert!(self.shut.insert(slot.seq));
        }
        self.verify();
    }

    /// The user's lease key at `i`, if the user holds any.
    fn grant_key(&self, i: &Index) -> Option<u64> {
        if self.grants.is_empty() {
            return None;
        }
        self.grants.keys().nth(i.index(self.grants.len())).copied()
    }

    fn step(&mut self, op: &Op) {
        let creations = self.in_flight.len() + self.stale.len();
        match op {
            Op::Advance(x) => {
                self.now_ms += x;
                self.verify();
            }
            Op::Acquire {
                wait,
                timeout,
                duration,
                grace,
            } => self.acquire(*wait, *timeout, *duration, *grace),
            Op::Release(i) => {
                if let Some(key) = self.grant_key(i) {
                    self.release(key);
                }
            }
            Op::BeginJob(i) => {
                if let Some(key) = self.grant_key(i) {
                    self.begin_job(key);
                }
            }
            Op::JobFinished(i) => {
                if !self.jobs.is_empty() {
                    self.job_finished(i.index(self.jobs.len()));
                }
            }
            Op::CancelWaiter(i) => {
                if !self.waiters.is_empty() {
                    let id = *self
                        .waiters
                        .keys()
                        .nth(i.index(self.waiters.len()))
                        .expect("id");
                    self.cancel_waiter(id);
                }
            }
            Op::TakeResolution(i) => {
                if !self.waiters.is_empty() {
                    let id = *self
                        .waiters
                        .keys()
                        .nth(i.index(self.waiters.len()))
                        .expect("id");
                    self.take_resolution(id);
                }
            }
            Op::CheckerPass(desired) => self.checker_pass(*desired),
            Op::Created(i) => {
                if creations > 0 {
                    self.created(i.index(creations));
                }
            }
            Op::CreateFailed(i) => {
                if creations > 0 {
                    self.creation_failed(i.index(creations));
                }
            }
            Op::CreationDiscarded(i) => {
                if creations > 0 {
                    self.creation_discarded(i.index(creations));
                }
            }
            Op::PoolBroken(seq) => self.pool_broken(*seq),
            Op::Renew {
                lease,
                duration,
                at_hard,
                dead,
            } => {
                let key = if *dead {
                    self.grant_key(lease)
                } else {
                    let live: Vec<u64> = self
                        .grants
                        .keys()
                        .copied()
                        .filter(|key| self.leases.contains_key(key))
                        .collect();
                    (!live.is_empty()).then(|| live[lease.index(live.len())])
                };
                if let Some(key) = key {
                    self.renew(key, *duration, *at_hard);
                }
            }
            Op::BeginShutdown(after) => self.begin_shutdown(*after),
            Op::FinishShutdown => self.finish_shutdown(),
            Op::Stop => self.stop(),
            Op::Restart(desired) => self.restart(*desired),
            Op::StopRestart(desired) => {
                self.stop();
                self.restart(*desired);
            }
            Op::FailedStart { desired, abort } => self.failed_start(*desired, *abort),
        }
    }

    /// Users give everything back and the checker keeps running: every
    /// waiter must end up served or failed (and a graceful shutdown becomes
    /// due). Then stop: every pool is shut down and nobody is left waiting.
    fn finish(&mut self) {
        if matches!(self.phase, Phase::Running | Phase::ShuttingDown) {
            let mut rounds = 0;
            loop {
                while !self.in_flight.is_empty() {
                    self.created(0);
                }
                let parked: Vec<u64> = self
                    .waiters
                    .iter()
                    .filter(|(_, w)| matches!(w.status, Parked::Granted(_) | Parked::Failed(_)))
                    .map(|(id, _)| *id)
                    .collect();
                for id in parked {
                    self.take_resolution(id);
                }
                while !self.jobs.is_empty() {
                    self.job_finished(0);
                }
                let keys: Vec<u64> = self.grants.keys().copied().collect();
                for key in keys {
                    self.release(key);
                }
                self.checker_pass(None);
                let settled = self.queued().is_empty()
                    && self.in_flight.is_empty()
                    && self
                        .waiters
                        .values()
                        .all(|w| matches!(w.status, Parked::Gone | Parked::Failed(_)));
                if settled {
                    break;
                }
                // Unless the pass woke the checker again (it runs at once),
                // time moves on to the checker's next pass (a back-off may
                // hold creations until then); that pass is always ahead.
                if !self.checker_pending {
                    let next = self.checker_next.expect("a pass was scheduled");
                    let at = next.duration_since(self.base).as_millis() as u64;
                    assert!(at > self.now_ms, "the checker would spin");
                    self.now_ms = at;
                }
                rounds += 1;
                assert!(
                    rounds < 1000,
                    "waiters never served: {} queued",
                    self.s.waiting()
                );
            }
            assert_eq!(self.s.waiting(), 0);
            assert_eq!(self.s.leased(), 0);
            if self.phase == Phase::ShuttingDown {
                assert!(
                    self.s.shutdown_due(self.now()),
                    "every lease ended: the shutdown is due"
                );
            }
        }
        self.stop();
        while !self.stale.is_empty() {
            self.created(0);
        }
        let ids: Vec<u64> = self.waiters.keys().copied().collect();
        for id in ids {
            self.take_resolution(id);
        }
        assert!(
            self.waiters.values().all(|w| w.status == Parked::Gone),
            "a waiter was left without a resolution"
        );
        assert_eq!(self.s.waiting(), 0);
        assert_eq!(self.s.total(), 0);
        assert_eq!(self.s.creating, 0);
        assert_eq!(
            self.created, self.shut,
            "every pool is shut down in the end"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_operation_sequences_match_the_model(
        min in 1usize..=3,
        extra in 0usize..=2,
        ops in prop::collection::vec(op(), 1..80),
    ) {
        let mut sim = Sim::new(min, min + extra);
        for op in &ops {
            sim.step(op);
        }
        sim.finish();
    }
}
