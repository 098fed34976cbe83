//! Acquire, the wait queue, and cancelled waiters.

use super::*;

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
            lane: 1,
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
        fx.events,
        vec![Event::Leased {
            id: grant.id,
            owner: Some(owner),
            pool: 1,
            duration: ms(100),
            grace: ms(10),
            waited: Duration::ZERO,
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
        Fairness::default(),
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
    assert_eq!(
        result.unwrap_err(),
        Error::Unavailable {
            max_pools: 2,
            owner_limit: None,
        }
    );
    assert!(fx.wake.is_empty());
    assert_eq!(h.s.waiting(), 0);
    // A timeout does not turn wait=false into waiting.
    let (result, _) = h.acquire(3, false, Some(1000));
    assert_eq!(
        result.unwrap_err(),
        Error::Unavailable {
            max_pools: 2,
            owner_limit: None,
        }
    );
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
            |n| matches!(n, Event::Revoked { id, pool: 1, .. } if *id == a.id)
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
    assert_eq!(finalised(&fx), vec![(a.key, 1, PoolFate::HandedOff)]);
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
    assert_eq!(finalised(&fx), vec![(g3.key, 1, PoolFate::Idle)]);
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
    assert_eq!(fx.events.first(), Some(&Event::Created { pool: 3 }));
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
    assert_eq!(finalised(&fx), vec![(parked_key, 1, PoolFate::HandedOff)]);
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
