//! One run of the property test: applying random operations, then
//! draining everything and checking that every pool was shut down.

use super::*;

impl Sim {
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
                owner,
                lane,
            } => self.acquire(*wait, *timeout, *duration, *grace, *owner, *lane),
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
        if matches!(self.phase, Lifecycle::Running | Lifecycle::ShuttingDown) {
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
            if self.phase == Lifecycle::ShuttingDown {
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
        fair in prop::option::of(fairness()),
    ) {
        let mut sim = Sim::new(min, min + extra, fair.unwrap_or_default());
        for op in &ops {
            sim.step(op);
        }
        sim.finish();
    }
}
