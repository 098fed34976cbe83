//! Start, stop and restart, and creations that cross them.

use super::*;

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
    assert!(fx.events.is_empty());
    assert_eq!(h.s.phase(), Lifecycle::Stopped);
    assert_eq!((h.s.available(), h.s.leased(), h.s.waiting()), (0, 0, 0));

    assert_eq!(a.end.get(), Some(LeaseEnd::Stopped));
    assert_eq!(
        b.end.get(),
        Some(LeaseEnd::Released),
        "the first end reason wins"
    );
    assert_eq!(
        h.failed(w1),
        Error::ShuttingDown,
        "a parked grant becomes a failure"
    );
    assert_eq!(h.failed(w2), Error::ShuttingDown);
    assert_eq!(h.failed(w3), Error::ShuttingDown);

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
    assert_eq!(fx.events, vec![Event::Created { pool: 2 }]);
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
        Fairness::default(),
    );
    assert_eq!(s.phase(), Lifecycle::Stopped);
    assert_eq!(s.begin_start(), Lifecycle::Stopped);
    assert_eq!(
        s.begin_start(),
        Lifecycle::Starting,
        "a second start waits for the first"
    );
    s.abort_start();
    assert_eq!(s.phase(), Lifecycle::Stopped);

    // Stopped while starting: the new pools come back for shutdown.
    assert_eq!(s.begin_start(), Lifecycle::Stopped);
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
    assert_eq!(s.phase(), Lifecycle::Stopped);
    s.check_invariants(|p| *p);

    // A real start; starting again while running does nothing.
    assert_eq!(s.begin_start(), Lifecycle::Stopped);
    let seqs = s.reserve_pool_seqs(1);
    assert_eq!(seqs, vec![3], "pool seqs are never reused");
    s.finish_start(
        vec![PoolSlot { seq: 3, pool: 3 }],
        Instant::now(),
        &mut Effects::default(),
    )
    .expect("start");
    assert_eq!(s.begin_start(), Lifecycle::Running);
    assert_eq!(s.phase(), Lifecycle::Running);
    s.abort_start();
    assert_eq!(s.phase(), Lifecycle::Running, "abort only undoes Starting");
    assert_eq!(s.available(), 1);
    s.check_invariants(|p| *p);
}

#[test]
fn restart_after_stop_serves_again_with_fresh_ids() {
    let mut h = H::started(1, 1, 1);
    let a = h.lease(0);
    let w = h.queue(1);
    h.stop();
    assert_eq!(h.failed(w), Error::ShuttingDown);

    assert_eq!(h.s.begin_start(), Lifecycle::Stopped);
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
        Fairness::default(),
    );
    assert!(!s.is_being_created(1));
    assert_eq!(s.begin_start(), Lifecycle::Stopped);
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
        Fairness::default(),
    );
    assert_eq!(s.begin_start(), Lifecycle::Stopped);
    assert_eq!(s.reserve_pool_seqs(2), vec![1, 2]);
    s.abort_start();
    assert_eq!(s.phase(), Lifecycle::Stopped);
    assert!(!s.is_being_created(1) && !s.is_being_created(2));
    // A later start gets fresh seqs.
    assert_eq!(s.begin_start(), Lifecycle::Stopped);
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
    assert_eq!(fx.events, vec![Event::Created { pool: 2 }]);
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
    assert_eq!(h.s.begin_start(), Lifecycle::Stopped);
    assert_eq!(h.s.reserve_pool_seqs(1), vec![3]);
    let fx = h.created(2, 2);
    assert_eq!(fx.shutdown, vec![2]);
    assert_eq!(h.s.phase(), Lifecycle::Starting);
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
