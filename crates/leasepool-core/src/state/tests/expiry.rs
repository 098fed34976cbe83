//! The checker's tick: hard and soft expiry, waiter time-outs, shrinking, the next deadline.

use super::*;

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
            |n| matches!(n, Event::Revoked { id, pool: 1, .. } if *id == a.id)
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
    assert_eq!(fx.events, vec![Event::WaiterTimedOut { waited: ms(5) }]);
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
            lane: 1,
        },
        wait: true,
        deadline: None,
    };
    let Ok(AcquireStep::Granted(a)) = h.acquire_request(0, request).0 else {
        panic!("expected a grant");
    };
    let soft = |n: &Event| matches!(n, Event::SoftExpired { .. });

    let (next, fx) = h.tick(99);
    assert_eq!(count_notes(&fx, soft), 0);
    assert_eq!(next, h.at(100), "next pass at the soft expiry");

    let (next, fx) = h.tick(100);
    assert_eq!(
        fx.events,
        vec![Event::SoftExpired {
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
        fx.events,
        vec![Event::Shrunk { pool: 4 }, Event::Shrunk { pool: 3 }]
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
