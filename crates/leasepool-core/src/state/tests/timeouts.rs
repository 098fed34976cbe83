//! `wait(false)`, zero time-outs, and the waiters a creation in flight spares.

use super::*;

// ----- wait = false and zero timeouts -----------------------------------------

/// Regression (docs/guide.md, "Acquiring a lease"): `wait = false` used to queue the caller behind
/// waiters that already claimed the room, so it waited for a release.
#[test]
fn wait_false_acquire_never_waits_for_a_release() {
    let mut h = H::started(1, 2, 1);
    let _a = h.lease(0); // pool 1 leased; room for one more pool
    let w1 = h.queue(1); // the creation that room allows is w1's
    let (result, fx) = h.acquire(2, false, None);
    assert_eq!(
        result.unwrap_err(),
        Error::Unavailable {
            max_pools: 2,
            owner_limit: None,
        }
    );
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
    assert_eq!(
        result.unwrap_err(),
        Error::Unavailable {
            max_pools: 2,
            owner_limit: None,
        }
    );
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
    assert!(ticked.events.is_empty());
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
    assert_eq!(fx.events, vec![Event::WaiterTimedOut { waited: ms(10) }]);
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

// ----- spared waiters and the next pass ------------------------------------

/// docs/guide.md, "Acquiring a lease": "with a timeout → wait at most that long, then *timeout*".
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
