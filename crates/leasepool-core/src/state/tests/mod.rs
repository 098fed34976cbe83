//! Unit tests of the lease/pool state machine.
//!
//! Each file drives [`LeaseState`] through one area, one behaviour per
//! test; `model.rs` is the property test, which runs random operation
//! sequences against the state machine and a small reference model of the
//! rules in `docs/guide.md` and `docs/design.md`.
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
        lane: 1,
    }
}

fn lease_id(key: u64) -> LeaseId {
    LeaseId::new(MANAGER, key)
}

/// The `PoolFate` notes of `fx` as `(lease key, pool, outcome)`.
fn finalised(fx: &Fx) -> Vec<(u64, u64, PoolFate)> {
    fx.events
        .iter()
        .filter_map(|note| match note {
            Event::Finalised { id, pool, outcome } => Some((id.seq(), *pool, *outcome)),
            _ => None,
        })
        .collect()
}

/// How many notes of `fx` match `pred`.
fn count_notes(fx: &Fx, pred: impl Fn(&Event) -> bool) -> usize {
    fx.events.iter().filter(|note| pred(note)).count()
}

/// A state machine under test plus the clock and signal bookkeeping.
struct H {
    s: State,
    base: Instant,
    next_signal: u64,
    /// The latest time any step was given (ms after `base`), for steps
    /// that take no time of their own.
    last: std::cell::Cell<u64>,
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
            Fairness::default(),
        );
        assert_eq!(s.begin_start(), Lifecycle::Stopped);
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
            last: std::cell::Cell::new(0),
        };
        h.check();
        h
    }

    fn at(&self, x: u64) -> Instant {
        self.last.set(self.last.get().max(x));
        self.base + ms(x)
    }

    /// The latest time a step was given.
    fn now(&self) -> Instant {
        self.base + ms(self.last.get())
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
            all.events.extend(fx.events);
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
        self.s.pool_broken(seq, "worker died", self.now(), &mut fx);
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
        assert_eq!(self.s.begin_start(), Lifecycle::Stopped);
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

mod acquire;
mod broken;
mod expiry;
mod lifecycle;
mod model;
mod release;
mod renewal;
mod shutdown;
mod timeouts;
