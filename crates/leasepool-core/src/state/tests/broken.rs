//! Broken pools, the replacement back-off, and pool creation.

use super::*;

// ----- broken pools -----------------------------------------------------------

#[test]
fn pool_broken_on_an_idle_pool_retires_it() {
    let mut h = H::started(2, 2, 2);
    let fx = h.broken(1);
    assert_eq!(fx.shutdown, vec![1]);
    assert_eq!(
        fx.events,
        vec![Event::Retired {
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
        fx.events,
        vec![Event::Retired {
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
    assert!(!h.s.pool_broken(2, "early", h.now(), &mut fx));
    assert!(fx.is_empty());
    assert!(h.s.pool_broken(1, "late", h.now(), &mut fx));
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
        fx.events,
        vec![Event::Retired {
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
        fx.events,
        vec![Event::CreateFailed {
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
    assert_eq!(fx.events.len(), 1);
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
