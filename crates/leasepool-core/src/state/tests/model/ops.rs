//! The operations of the property test, each applied to the state machine
//! and to the model, with the effects the model expects.

use super::*;

impl Sim {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn acquire(
        &mut self,
        wait: bool,
        timeout: Option<u64>,
        duration: u64,
        grace: u64,
        owner: Option<usize>,
        lane: usize,
    ) {
        let owner: Option<Arc<str>> = owner.map(|i| Arc::from(OWNERS[i]));
        enum Want {
            Granted(u64),
            Queued(u64),
            Err(Error),
        }
        let now = self.now();
        let deadline = timeout.map(|t| (deadline_after(now, ms(t)), ms(t)));
        let signal = self.next_waiter;
        let mut exp = Expect::default();
        let want = if self.phase != Lifecycle::Running {
            exp.wake_checker = Some(false);
            Want::Err(if self.phase == Lifecycle::ShuttingDown {
                Error::ShuttingDown
            } else {
                Error::NotStarted
            })
        } else {
            self.m_revoke_expired(&mut exp);
            let held_back = !self.m_has_room(owner.as_ref());
            if let Some(pool) = self.idle.front().copied().filter(|_| !held_back) {
                self.idle.pop_front();
                Want::Granted(self.m_grant(
                    pool,
                    duration,
                    grace,
                    owner.clone(),
                    lane,
                    Duration::ZERO,
                    &mut exp,
                ))
            } else {
                // Pools that exist or may be created, beyond those the
                // servable queued waiters claim.
                let room = !held_back
                    && self.limits.max_pools.saturating_sub(self.total()) > self.m_servable();
                // The owner's leases and queued waiters reach its limit.
                let claimed = owner.as_ref().and_then(|o| {
                    let limit = self.fair.limit_of(Some(o))?;
                    (self.m_held(Some(o)) + self.m_queued_of(o).len() >= limit).then_some(limit)
                });
                if !wait && (claimed.is_some() || !room) {
                    Want::Err(Error::Unavailable {
                        max_pools: self.limits.max_pools,
                        owner_limit: claimed.map(|limit| crate::OwnerLimit {
                            owner: owner.as_deref().unwrap_or_default().to_owned(),
                            limit,
                        }),
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
                            since: self.now(),
                            owner: owner.clone(),
                            lane: if wait { lane } else { 0 },
                            asked: lane,
                        },
                    );
                    Want::Queued(signal)
                }
            }
        };
        let request = AcquireRequest {
            terms: LeaseTerms {
                owner: owner.clone(),
                lane,
                ..terms(duration, grace)
            },
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

    pub(super) fn release(&mut self, key: u64) {
        let mut exp = Expect::default();
        self.m_release(key, &mut exp);
        let mut fx = Fx::default();
        self.s.release(key, self.now(), &mut fx);
        self.compare("release", fx, exp);
    }

    pub(super) fn begin_job(&mut self, key: u64) {
        let now = self.now();
        let mut exp = Expect::default();
        let want = match self.leases.get_mut(&key) {
            Some(lease) if !lease.draining => {
                if now >= lease.hard {
                    self.m_revoke(key, &mut exp);
                    exp.wake_checker = Some(self.m_creations_needed() > 0 || self.m_unspared_due());
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

    pub(super) fn job_finished(&mut self, at: usize) {
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

    pub(super) fn renew(&mut self, key: u64, duration: u64, at_hard: bool) {
        if at_hard {
            if let Some(lease) = self.leases.get(&key) {
                let hard = lease.hard.duration_since(self.base).as_millis() as u64;
                self.now_ms = self.now_ms.max(hard);
                self.verify();
            }
        }
        let now = self.now();
        let mut exp = Expect::default();
        let live = matches!(self.phase, Lifecycle::Running | Lifecycle::ShuttingDown);
        let want = match self.leases.get_mut(&key) {
            Some(lease) if !lease.draining && live => {
                if now >= lease.hard {
                    self.m_revoke(key, &mut exp);
                    exp.wake_checker = Some(self.m_creations_needed() > 0 || self.m_unspared_due());
                    None
                } else {
                    lease.soft = deadline_after(now, ms(duration));
                    lease.hard = deadline_after(lease.soft, ms(lease.grace));
                    lease.soft_warned = false;
                    exp.events.push(Event::Renewed {
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

    pub(super) fn cancel_waiter(&mut self, id: u64) {
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

    pub(super) fn take_resolution(&mut self, id: u64) {
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
    pub(super) fn m_spared(&self) -> usize {
        self.limits
            .max_pools
            .saturating_sub(self.total())
            .min(self.in_flight.len())
    }

    /// One checker pass, as the manager runs it: plan the creations needed
    /// (none while the back-off holds), then tick.
    pub(super) fn checker_pass(&mut self, desired: Option<usize>) {
        if !matches!(self.phase, Lifecycle::Running | Lifecycle::ShuttingDown) {
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
        let spared = self.m_spared_ids();
        let due: Vec<u64> = self
            .queued()
            .into_iter()
            .filter(|id| !spared.contains(id))
            .collect();
        for id in due {
            let waiter = self.waiters.get_mut(&id).expect("waiter");
            if let Some((at, timeout)) = waiter.deadline {
                if at <= now {
                    waiter.status = Parked::Failed(Error::Timeout(timeout));
                    exp.events.push(Event::WaiterTimedOut { waited: timeout });
                    exp.wake.push(id);
                }
            }
        }
        for (key, lease) in self.leases.iter_mut() {
            if !lease.soft_warned && now >= lease.soft {
                lease.soft_warned = true;
                exp.events.push(Event::SoftExpired {
                    id: lease_id(*key),
                    owner: lease.owner.clone(),
                });
            }
        }
        while self.phase == Lifecycle::Running && self.total() > self.desired {
            let Some(pool) = self.idle.pop_back() else {
                break;
            };
            exp.events.push(Event::Shrunk { pool });
            exp.shutdown.push(pool);
        }
        let mut want_next = deadline_after(now, INTERVAL);
        for lease in self.leases.values() {
            want_next = want_next.min(lease.hard);
            if !lease.soft_warned {
                want_next = want_next.min(lease.soft);
            }
        }
        let spared = self.m_spared_ids();
        for id in self.queued().into_iter().filter(|id| !spared.contains(id)) {
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
    pub(super) fn take_creation(&mut self, at: usize) -> (u64, bool) {
        if at < self.in_flight.len() {
            (self.in_flight.remove(at), true)
        } else {
            (self.stale.remove(at - self.in_flight.len()), false)
        }
    }

    pub(super) fn created(&mut self, at: usize) {
        let (seq, current) = self.take_creation(at);
        assert!(self.created.insert(seq), "pool {seq} created twice");
        let mut exp = Expect::default();
        exp.events.push(Event::Created { pool: seq });
        if current && self.phase == Lifecycle::Running {
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

    pub(super) fn creation_failed(&mut self, at: usize) {
        let (seq, current) = self.take_creation(at);
        let error = Error::Broken(format!("cannot create pool {seq}"));
        let mut exp = Expect::default();
        if current {
            exp.events.push(Event::CreateFailed {
                error: error.clone(),
            });
            if self.m_servable() > self.in_flight.len() {
                let id = *self
                    .m_servable_line(false)
                    .first()
                    .expect("a servable waiter");
                self.waiters.get_mut(&id).expect("waiter").status = Parked::Failed(error.clone());
                exp.wake.push(id);
            }
            exp.wake_checker = Some(self.m_creations_needed() > 0 || self.m_unspared_due());
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
    pub(super) fn creation_discarded(&mut self, at: usize) {
        let (seq, current) = self.take_creation(at);
        let reason = "initializer failed";
        let mut exp = Expect::default();
        if current {
            exp.events.push(Event::Retired {
                pool: seq,
                lease: None,
                reason: reason.to_owned(),
            });
            exp.wake_checker = Some(self.m_creations_needed() > 0 || self.m_unspared_due());
        } else {
            exp.wake_checker = Some(false);
        }
        let mut fx = Fx::default();
        self.s.creation_discarded(seq, reason, &mut fx);
        self.record_break();
        assert!(self.created.insert(seq) && self.shut.insert(seq));
        self.compare("creation_discarded", fx, exp);
    }

    pub(super) fn pool_broken(&mut self, seq: u64) {
        let reason = "worker died";
        let mut exp = Expect::default();
        let here = self.idle.contains(&seq) || self.leases.values().any(|l| l.pool == seq);
        if let Some(at) = self.idle.iter().position(|p| *p == seq) {
            self.idle.remove(at);
            exp.shutdown.push(seq);
            exp.events.push(Event::Retired {
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
            self.m_take_lease(key, &mut exp);
            self.set_end(key, LeaseEnd::Broken);
            exp.shutdown.push(seq);
            exp.events.push(Event::Retired {
                pool: seq,
                lease: Some(lease_id(key)),
                reason: reason.to_owned(),
            });
        }
        exp.wake_checker = Some(here && (self.m_creations_needed() > 0 || self.m_unspared_due()));
        let mut fx = Fx::default();
        assert_eq!(
            self.s.pool_broken(seq, reason, self.now(), &mut fx),
            here,
            "pool_broken({seq})"
        );
        if here {
            self.record_break();
        }
        self.compare("pool_broken", fx, exp);
    }

    pub(super) fn begin_shutdown(&mut self, after: u64) {
        let deadline = deadline_after(self.now(), ms(after));
        let mut exp = Expect::default();
        let want = if self.phase == Lifecycle::Running {
            exp.shutdown.extend(self.idle.drain(..));
            exp.wake = self.queued();
            for id in &exp.wake {
                self.waiters.get_mut(id).expect("waiter").status =
                    Parked::Failed(Error::ShuttingDown);
            }
            exp.wake_checker = Some(true);
            self.phase = Lifecycle::ShuttingDown;
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
    pub(super) fn finish_shutdown(&mut self) {
        if self.s.shutdown_due(self.now()) {
            self.stop();
        }
    }

    pub(super) fn stop(&mut self) {
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
                waiter.status = Parked::Failed(Error::ShuttingDown);
            }
        }
        exp.wake_checker = Some(false);
        self.phase = Lifecycle::Stopped;
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

    pub(super) fn restart(&mut self, desired: usize) {
        if self.phase != Lifecycle::Stopped {
            assert_eq!(self.s.begin_start(), self.phase);
            self.verify();
            return;
        }
        if !RESTART_WITH_STALE_CREATIONS {
            while !self.stale.is_empty() {
                self.created(self.in_flight.len());
            }
        }
        assert_eq!(self.s.begin_start(), Lifecycle::Stopped);
        self.phase = Lifecycle::Starting;
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
        self.phase = Lifecycle::Running;
        // The new checker runs a pass as soon as it has started.
        self.checker_pending = true;
        self.checker_next = None;
        self.checker_last = None;
        self.verify();
    }

    pub(super) fn failed_start(&mut self, desired: usize, abort: bool) {
        if self.phase != Lifecycle::Stopped {
            return;
        }
        assert_eq!(self.s.begin_start(), Lifecycle::Stopped);
        self.phase = Lifecycle::Starting;
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
            self.phase = Lifecycle::Stopped;
            assert!(seqs.iter().all(|seq| !self.s.is_being_created(*seq)));
            self.verify();
            return;
        }
        // Stopped while starting.
        self.phase = Lifecycle::Stopped;
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
    pub(super) fn grant_key(&self, i: &Index) -> Option<u64> {
        if self.grants.is_empty() {
            return None;
        }
        self.grants.keys().nth(i.index(self.grants.len())).copied()
    }
}
