//! Graceful shutdown.

use super::*;

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
    assert!(fx.events.is_empty());
    assert!(fx.wake_checker, "the checker learns the deadline");
    assert_eq!(h.s.phase(), Lifecycle::ShuttingDown);
    assert_eq!((h.s.available(), h.s.leased()), (0, 2));
    // Held leases keep working.
    assert_eq!(a.end.get(), None);
    assert_eq!(h.begin_job(a.key, 3).0, Some(1));
    assert_eq!(h.s.leases[&a.key].pending, 1);
}

#[test]
fn begin_shutdown_fails_every_queued_waiter_with_shutting_down() {
    let mut h = H::started(1, 2, 1);
    let a = h.lease(0);
    let w1 = h.queue(1);
    let w2 = h.queue_with(1, true, Some(100));
    assert_eq!(h.plan(), vec![2]); // for w1
    let (held, fx) = h.begin_shutdown(1000);
    assert_eq!(held, Some(1));
    assert_eq!(fx.wake, vec![w1, w2], "oldest first");
    assert_eq!(h.failed(w1), Error::ShuttingDown);
    assert_eq!(h.failed(w2), Error::ShuttingDown);
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
        Fairness::default(),
    );
    let now = Instant::now();
    let mut fx = Fx::default();
    assert_eq!(s.begin_shutdown(now, &mut fx), None);
    assert_eq!(s.phase(), Lifecycle::Stopped);
    assert_eq!(s.begin_start(), Lifecycle::Stopped);
    assert_eq!(s.begin_shutdown(now, &mut fx), None);
    assert_eq!(s.phase(), Lifecycle::Starting);
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
    assert_eq!(h.s.begin_start(), Lifecycle::ShuttingDown);
    assert_eq!(h.s.phase(), Lifecycle::ShuttingDown);
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
    assert_eq!(finalised(&fx), vec![(b.key, 2, PoolFate::ShutDown)]);
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
fn shutting_down_acquire_fails_shutting_down_without_side_effects() {
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
        assert_eq!(result.unwrap_err(), Error::ShuttingDown);
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
    assert_eq!(finalised(&fx), vec![(a.key, 1, PoolFate::ShutDown)]);
    assert_eq!(fx.shutdown, vec![1]);
    assert!(!fx.wake_checker, "no replacement while shutting down");
    assert_eq!(a.end.get(), Some(LeaseEnd::Released));
    assert_eq!(h.s.available(), 0);

    let fx = h.job_finished(b.key, 6);
    assert_eq!(finalised(&fx), vec![(b.key, 2, PoolFate::ShutDown)]);
    assert_eq!(fx.shutdown, vec![2]);

    // w's future is dropped: its lease ends and the pool is shut down.
    let parked = h.s.leases.keys().copied().next().expect("w's lease");
    let fx = h.cancel(w, 7);
    assert_eq!(finalised(&fx), vec![(parked, 3, PoolFate::ShutDown)]);
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
        fx.events,
        vec![Event::SoftExpired {
            id: a.id,
            owner: None
        }]
    );
    assert_eq!(next, h.at(150), "the hard expiry");
    let (next, fx) = h.tick(150);
    assert_eq!(fx.shutdown, vec![1]);
    assert_eq!(
        fx.events,
        vec![Event::Revoked {
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
    assert_eq!(fx.events, vec![Event::CreateFailed { error }]);
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
    assert_eq!(h.s.phase(), Lifecycle::Stopped);
    assert!(!h.shutdown_due(200));
    assert_eq!(h.stop_counting().0, 0, "a second stop ends nothing");

    // A new run forgets the old deadline.
    assert_eq!(h.restart(1), vec![3]);
    let (next, _) = h.tick(150);
    assert_eq!(next, h.at(1150));
    assert!(!h.shutdown_due(150));
}
