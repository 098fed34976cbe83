//! Which jobs the current thread is running right now.
//!
//! [`Task::run`](crate::Task::run) marks the current thread around the
//! user's closure with the job's manager (from its [`LeaseLink`]) and, for a
//! grinder item, its grinder. Code called from inside a job can then tell
//! that waiting for "every job to end" would mean waiting for itself: a
//! manager's `stop` ([`running_job_of`]), a grinder's `stop`
//! ([`running_item_of`]).
//!
//! Jobs nest on one thread: a rayon worker blocked in `join` runs another
//! job of its pool meanwhile, a backend may run a job inline, and a grinder
//! puller (itself a job of the batch's lease) runs the batch's items. So
//! the marker is a small stack, one entry per job being run, innermost
//! last. Its storage is allocated the first time a thread runs a job and
//! reused after: entering and leaving a scope does not allocate.
//!
//! [`LeaseLink`]: crate::job::LeaseLink

use std::cell::RefCell;
use std::marker::PhantomData;

/// One job being run: its manager and grinder ids, 0 for none.
#[derive(Debug, Clone, Copy)]
struct Entry {
    manager: u64,
    grinder: u64,
}

thread_local! {
    static RUNNING: RefCell<Vec<Entry>> = const { RefCell::new(Vec::new()) };
}

/// Marks the current thread as running one job until dropped. Bound to
/// the thread that entered it (not `Send`).
#[derive(Debug)]
pub(crate) struct JobScope {
    entered: bool,
    _this_thread: PhantomData<*const ()>,
}

/// Marks the current thread as running a job of manager `manager` that is
/// an item of grinder `grinder` (either may be 0: none), until the returned
/// scope is dropped. Scopes must be dropped in reverse order of entering,
/// which holding them in locals guarantees.
pub(crate) fn enter(manager: u64, grinder: u64) -> JobScope {
    let entered = (manager != 0 || grinder != 0)
        && RUNNING
            .try_with(|stack| stack.borrow_mut().push(Entry { manager, grinder }))
            .is_ok();
    JobScope {
        entered,
        _this_thread: PhantomData,
    }
}

impl Drop for JobScope {
    fn drop(&mut self) {
        if self.entered {
            let _ = RUNNING.try_with(|stack| stack.borrow_mut().pop());
        }
    }
}

/// True if the current thread is inside a job of the manager numbered
/// `manager_id` (as in [`LeaseId`](crate::LeaseId)), however deeply
/// nested. A manager's `stop` called from such a job cannot wait for its
/// own pool's jobs to end.
pub(crate) fn running_job_of(manager_id: u64) -> bool {
    manager_id != 0 && any(|entry| entry.manager == manager_id)
}

/// True if the current thread is inside an item of the grinder numbered
/// `grinder_id`: its `stop` cannot wait for the batch running the caller.
pub(crate) fn running_item_of(grinder_id: u64) -> bool {
    grinder_id != 0 && any(|entry| entry.grinder == grinder_id)
}

fn any(matches: impl Fn(&Entry) -> bool) -> bool {
    RUNNING
        .try_with(|stack| stack.borrow().iter().any(matches))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outside_any_job_nothing_is_running() {
        assert!(!running_job_of(1));
        assert!(!running_item_of(1));
        assert!(!running_job_of(0));
    }

    #[test]
    fn scopes_nest_and_unwind_in_order() {
        let outer = enter(1, 0);
        assert!(running_job_of(1));
        assert!(!running_item_of(1), "managers and grinders are told apart");
        {
            let _inner = enter(2, 0);
            let _item = enter(0, 9);
            assert!(running_job_of(1) && running_job_of(2));
            assert!(running_item_of(9));
            assert!(!running_job_of(0), "0 is no manager");
        }
        assert!(running_job_of(1));
        assert!(!running_job_of(2));
        assert!(!running_item_of(9));
        // The same manager twice (a job run inline in another of its pool).
        {
            let _again = enter(1, 0);
            assert!(running_job_of(1));
        }
        assert!(running_job_of(1), "the outer job is still running");
        drop(outer);
        assert!(!running_job_of(1));
        assert_eq!(RUNNING.with(|stack| stack.borrow().len()), 0);
    }

    #[test]
    fn a_job_of_no_manager_leaves_no_entry() {
        let _scope = enter(0, 0);
        assert_eq!(RUNNING.with(|stack| stack.borrow().len()), 0);
    }

    #[test]
    fn the_marker_is_per_thread() {
        let _scope = enter(5, 6);
        let elsewhere = std::thread::spawn(|| (running_job_of(5), running_item_of(6)));
        assert_eq!(elsewhere.join().unwrap(), (false, false));
        assert!(running_job_of(5) && running_item_of(6));
    }
}
