//! Release, draining and where a finalised pool goes.

use super::*;

// ----- release, draining, finalise ----------------------------------------

#[test]
fn release_is_idempotent_and_unknown_keys_are_ignored() {
    let mut h = H::started(1, 1, 1);
    let a = h.lease(0);
    let fx = h.release(a.key, 1);
    assert_eq!(finalised(&fx), vec![(a.key, 1, PoolFate::Idle)]);
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
        fx.events,
        vec![Event::Draining {
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
    assert_eq!(finalised(&fx), vec![(a.key, 1, PoolFate::HandedOff)]);
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
    assert_eq!(finalised(&fx), vec![(a.key, 1, PoolFate::Idle)]);
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
    assert_eq!(finalised(&fx), vec![(a.key, 1, PoolFate::ShutDown)]);
    assert_eq!(fx.shutdown, vec![1]);
    assert_eq!(h.s.total(), 2);

    // With room under the target it is kept.
    h.s.set_desired(2);
    let fx = h.release(b.key, 2);
    assert_eq!(finalised(&fx), vec![(b.key, 2, PoolFate::Idle)]);
    assert!(fx.shutdown.is_empty());
    assert_eq!(h.idle(), vec![3, 2]);
}

#[test]
fn finalise_after_hard_expiry_shuts_the_pool_down() {
    // Released after the hard expiry (before anything revoked it).
    let mut h = H::started(1, 1, 1);
    let a = h.lease(0);
    let fx = h.release(a.key, LEASE_MS + GRACE_MS);
    assert_eq!(finalised(&fx), vec![(a.key, 1, PoolFate::ShutDown)]);
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
    assert_eq!(finalised(&fx), vec![(a.key, 1, PoolFate::ShutDown)]);
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
        fx.events,
        vec![Event::Revoked {
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
