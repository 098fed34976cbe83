//! Lease renewal.

use super::*;

// ----- renewal ----------------------------------------------------------------

#[test]
fn renew_restarts_the_lease_from_now_and_keeps_its_grace() {
    let mut h = H::started(1, 1, 1);
    let a = h.lease(0); // soft 100, hard 110
    let (renewed, fx) = h.renew(a.key, 300, 40);
    assert_eq!(renewed, Some((h.at(340), h.at(350))));
    assert_eq!(
        fx.events,
        vec![Event::Renewed {
            id: a.id,
            duration: ms(300)
        }]
    );
    assert!(
        fx.wake_checker,
        "the checker may sleep until the old expiry"
    );
    assert!(fx.shutdown.is_empty() && fx.wake.is_empty());
    let stats = h.s.lease_stats(h.at(40));
    assert_eq!(stats[0].until_soft_expiry, ms(300));
    assert_eq!(stats[0].until_hard_expiry, ms(310));

    // The old expiries pass without effect.
    let (next, fx) = h.tick(200);
    assert!(fx.is_empty());
    assert_eq!(next, h.at(340), "the new soft expiry");
    assert_eq!(a.end.get(), None);
    assert_eq!(h.begin_job(a.key, 349).0, Some(1));

    // A shorter renewal moves the expiries earlier.
    let (renewed, _) = h.renew(a.key, 20, 349);
    assert_eq!(renewed, Some((h.at(369), h.at(379))));
    let (_, fx) = h.tick(379);
    assert_eq!(fx.shutdown, vec![1]);
    assert_eq!(a.end.get(), Some(LeaseEnd::Expired));
}

#[test]
fn renew_resets_the_soft_expiry_warning() {
    let mut h = H::started(1, 1, 1);
    let a = h.lease(0); // soft 100, hard 110
    let soft = |n: &Event| matches!(n, Event::SoftExpired { .. });
    let (_, fx) = h.tick(100);
    assert_eq!(count_notes(&fx, soft), 1);
    assert!(h.s.leases[&a.key].soft_warned);

    h.renew(a.key, 100, 105); // soft 205, hard 215
    assert!(!h.s.leases[&a.key].soft_warned);
    let (next, fx) = h.tick(150);
    assert_eq!(count_notes(&fx, soft), 0);
    assert_eq!(next, h.at(205), "the checker wakes for the new soft expiry");
    let (_, fx) = h.tick(205);
    assert_eq!(count_notes(&fx, soft), 1, "warned again");
}

#[test]
fn renew_at_or_after_hard_expiry_revokes_the_lease() {
    let mut h = H::started(1, 1, 1);
    let a = h.lease(0); // hard 110
    let w = h.queue(1);
    // One ms before the hard expiry the renewal wins.
    let (renewed, _) = h.renew(a.key, LEASE_MS, 109);
    assert_eq!(renewed, Some((h.at(209), h.at(219))));
    // Exactly at the (new) hard expiry the revocation wins.
    let (renewed, fx) = h.renew(a.key, LEASE_MS, 219);
    assert_eq!(renewed, None);
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
    assert!(fx.wake.is_empty(), "an expired pool is never handed on");
    assert!(fx.wake_checker, "a replacement for the waiter");
    assert_eq!(h.s.leased(), 0);
    // Renewing again changes nothing.
    let (renewed, fx) = h.renew(a.key, LEASE_MS, 220);
    assert_eq!(renewed, None);
    assert!(fx.is_empty());
    let (_, fx) = h.create_all(221);
    assert_eq!(fx.wake, vec![w]);

    // Well after the hard expiry, before any checker pass.
    let mut h = H::started(1, 1, 1);
    let a = h.lease(0);
    let (renewed, fx) = h.renew(a.key, LEASE_MS, 500);
    assert_eq!(renewed, None);
    assert_eq!(fx.shutdown, vec![1]);
    assert_eq!(a.end.get(), Some(LeaseEnd::Expired));
}

#[test]
fn renew_fails_without_change_for_released_broken_draining_unknown_or_stopped_leases() {
    let mut h = H::started(4, 4, 4);
    let a = h.lease(0);
    let b = h.lease(0);
    let c = h.lease(0);
    h.release(a.key, 1);
    let (renewed, fx) = h.renew(a.key, 100, 2);
    assert_eq!(renewed, None, "released");
    assert!(fx.is_empty());

    h.broken(2);
    let (renewed, fx) = h.renew(b.key, 100, 2);
    assert_eq!(renewed, None, "broken");
    assert!(fx.is_empty());

    let (renewed, fx) = h.renew(999, 100, 2);
    assert_eq!(renewed, None, "unknown");
    assert!(fx.is_empty());

    h.begin_job(c.key, 2);
    h.release(c.key, 3);
    let (renewed, fx) = h.renew(c.key, 100, 4);
    assert_eq!(renewed, None, "draining");
    assert!(fx.is_empty());
    let r = &h.s.leases[&c.key];
    assert_eq!((r.soft, r.hard), (h.at(100), h.at(110)), "unchanged");
    // Past its hard expiry a draining lease is left to the checker.
    let (renewed, fx) = h.renew(c.key, 100, 200);
    assert_eq!(renewed, None);
    assert!(fx.is_empty());
    assert!(h.s.leases.contains_key(&c.key));
    let (_, fx) = h.tick(200);
    assert_eq!(fx.shutdown, vec![3]);

    let mut h = H::started(1, 1, 1);
    let d = h.lease(0);
    h.stop();
    let (renewed, fx) = h.renew(d.key, 100, 1);
    assert_eq!(renewed, None, "stopped");
    assert!(fx.is_empty());
}

#[test]
fn renew_works_during_a_graceful_shutdown() {
    let mut h = H::started(1, 1, 1);
    let a = h.lease(0);
    assert_eq!(h.begin_shutdown(1000).0, Some(1));
    let (renewed, fx) = h.renew(a.key, 500, 50);
    assert_eq!(renewed, Some((h.at(550), h.at(560))));
    assert!(fx.wake_checker);
    // The lease outlives its first hard expiry; the deadline still holds.
    let (next, fx) = h.tick(200);
    assert!(fx.is_empty());
    assert_eq!(next, h.at(550));
    assert!(!h.shutdown_due(999));
    assert!(h.shutdown_due(1000));
    // At its hard expiry it is revoked like any other.
    let (renewed, fx) = h.renew(a.key, 500, 560);
    assert_eq!(renewed, None);
    assert_eq!(fx.shutdown, vec![1]);
    assert!(h.shutdown_due(560));
}
