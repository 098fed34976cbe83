//! `Task`: one job as a backend sees it.

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use std::any::{Any, type_name};

use crate::Error;
use crate::call::{CallData, CallFn, RemoteCall};
use crate::contain::drop_user_value;
use crate::error::take_panic_message;
use crate::job::{JobHandle, JobShared, LeaseLink};
use crate::job_scope;
use crate::observe::{JobContext, run_in};

/// One job, handed to [`BackendPool::execute`](crate::BackendPool::execute).
///
/// A task ends exactly once: [`run`](Self::run) it, [`fail`](Self::fail) it,
/// or drop it (its caller then sees [`Error::Cancelled`]). Each of these
/// consumes the task, so it cannot end twice.
pub struct Task {
    inner: Box<dyn Runnable>,
}

impl fmt::Debug for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Task").finish_non_exhaustive()
    }
}

impl Task {
    /// A task for `f` that counts against no lease, with the handle that
    /// receives its result. Useful for testing a backend on its own; jobs
    /// submitted through leases are created by the lease.
    ///
    /// ```
    /// use leasepool_core::Task;
    ///
    /// let (task, handle) = Task::new(|| 6 * 7);
    /// std::thread::spawn(move || task.run());
    /// assert_eq!(handle.wait().unwrap(), 42);
    /// ```
    pub fn new<F, T>(f: F) -> (Task, JobHandle<T>)
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        Self::with_link(f, None, None)
    }

    /// A task counted by `lease` (if any), run inside `context` (if any).
    pub(crate) fn with_link<F, T>(
        f: F,
        lease: Option<LeaseLink>,
        context: Option<Box<dyn JobContext>>,
    ) -> (Task, JobHandle<T>)
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let shared = JobShared::new(lease);
        let task = Task {
            inner: Box::new(ClosureTask {
                f: Some(f),
                shared: shared.clone(),
                grinder: 0,
                context,
            }),
        };
        (task, JobHandle::new(shared))
    }

    /// Runs the job on the current thread, catching a panic (the caller gets
    /// [`Error::Panicked`] and the current thread carries on). Does nothing
    /// if the job was cancelled while queued.
    ///
    /// While the closure runs, the thread is marked as inside a job of the
    /// task's manager (and grinder), for code that must not wait for its
    /// own job (see `job_scope`).
    ///
    /// Never unwinds, whatever the job does: a panic payload, a result or
    /// a closure whose `Drop` panics is dropped under `catch_unwind` too,
    /// so a backend may call this on its own worker threads unguarded.
    pub fn run(self) {
        self.inner.run();
    }

    /// Ends the job without running it; its caller gets `error` (typically
    /// [`Error::Broken`]). Never unwinds (see [`run`](Self::run)); nor
    /// does dropping a task.
    pub fn fail(self, error: Error) {
        self.inner.fail(error);
    }

    /// True if the job's handle cancelled it: running it would do nothing.
    pub fn is_cancelled(&self) -> bool {
        self.inner.is_cancelled()
    }

    /// Makes `link` (a lease) count this job from now on.
    pub(crate) fn relink(&self, link: LeaseLink) {
        self.inner.relink(link);
    }

    /// Makes this task an item of grinder `grinder`: while it runs, the
    /// thread is marked as inside one of that grinder's items.
    pub(crate) fn mark_grinder_item(&mut self, grinder: u64) {
        self.inner.mark_grinder_item(grinder);
    }

    /// True for a `call` job (it can leave the process).
    pub(crate) fn is_call(&self) -> bool {
        self.inner.is_call()
    }

    /// For backends that run jobs out of process: the job as a function
    /// name and a serialisable argument, if it was submitted with `call`.
    /// A closure job (from `submit` or `run`) comes back as `Err(self)`;
    /// such a backend fails it with [`Error::UnsupportedBackend`].
    pub fn into_remote(self) -> Result<RemoteCall, Task> {
        self.inner.into_remote().map_err(|inner| Task { inner })
    }

    /// A `call` task for `f(argument)` that counts against no lease, with
    /// its handle: for testing a backend on its own.
    pub fn call<F, A, R>(f: F, argument: A) -> (Task, JobHandle<R>)
    where
        F: CallFn<A, R>,
        A: CallData,
        R: CallData,
    {
        Self::with_call(f, argument, None, None)
    }

    /// A `call` task counted by `lease` (if any), run (or, out of process,
    /// dispatched and delivered) inside `context` (if any).
    pub(crate) fn with_call<F, A, R>(
        f: F,
        argument: A,
        lease: Option<LeaseLink>,
        context: Option<Box<dyn JobContext>>,
    ) -> (Task, JobHandle<R>)
    where
        F: CallFn<A, R>,
        A: CallData,
        R: CallData,
    {
        let shared = JobShared::new(lease);
        let task = Task {
            inner: Box::new(CallTask {
                call: Some((f, argument)),
                shared: shared.clone(),
                grinder: 0,
                context,
            }),
        };
        (task, JobHandle::new(shared))
    }
}

trait Runnable: Send {
    fn run(self: Box<Self>);
    fn fail(self: Box<Self>, error: Error);
    fn is_cancelled(&self) -> bool;
    fn into_remote(self: Box<Self>) -> Result<RemoteCall, Box<dyn Runnable>>;
    fn relink(&self, link: LeaseLink);
    fn mark_grinder_item(&mut self, grinder: u64);
    fn is_call(&self) -> bool;
}

struct ClosureTask<F, T> {
    f: Option<F>,
    shared: Arc<JobShared<T>>,
    /// The grinder this task is an item of (0: none).
    grinder: u64,
    /// The submitter's context, entered around the job.
    context: Option<Box<dyn JobContext>>,
}

impl<F, T> Runnable for ClosureTask<F, T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    fn run(mut self: Box<Self>) {
        let Some(f) = self.f.take() else { return };
        if !self.shared.start() {
            // Cancelled while queued: its outcome is out already.
            drop_user_value(f);
            return;
        }
        let context = self.context.take();
        let result = run_in(context.as_deref(), || {
            let _scope = job_scope::enter(self.shared.manager(), self.grinder);
            catch_unwind(AssertUnwindSafe(f))
        });
        drop_user_value(context);
        // Ours may be the last reference to the result (its handle was
        // dropped): `JobShared` drops it safely.
        self.shared.finish(result.map_err(panicked));
    }

    fn fail(mut self: Box<Self>, error: Error) {
        drop_user_value(self.f.take());
        self.shared.end_unstarted(error);
    }

    fn is_cancelled(&self) -> bool {
        !self.shared.is_queued()
    }

    fn into_remote(self: Box<Self>) -> Result<RemoteCall, Box<dyn Runnable>> {
        Err(self)
    }

    fn relink(&self, link: LeaseLink) {
        self.shared.relink(link);
    }

    fn mark_grinder_item(&mut self, grinder: u64) {
        self.grinder = grinder;
    }

    fn is_call(&self) -> bool {
        false
    }
}

impl<F, T> Drop for ClosureTask<F, T> {
    fn drop(&mut self) {
        if let Some(f) = self.f.take() {
            // The closure first, so a caller who sees `Cancelled` knows
            // its captured state is gone.
            drop_user_value(f);
            self.shared.end_unstarted(Error::Cancelled);
        }
        drop_user_value(self.context.take());
    }
}

/// The outcome of a job that panicked. The payload is dropped safely.
fn panicked(payload: Box<dyn Any + Send>) -> Error {
    Error::Panicked(take_panic_message(payload))
}

/// A `call` job: runs `f(argument)` here, or travels as a [`RemoteCall`].
struct CallTask<F, A, R> {
    call: Option<(F, A)>,
    shared: Arc<JobShared<R>>,
    /// The grinder this task is an item of (0: none).
    grinder: u64,
    /// The submitter's context, entered around the job (or, out of
    /// process, around its dispatch and delivery).
    context: Option<Box<dyn JobContext>>,
}

impl<F, A, R> Runnable for CallTask<F, A, R>
where
    F: CallFn<A, R>,
    A: CallData,
    R: CallData,
{
    fn run(mut self: Box<Self>) {
        let Some((f, argument)) = self.call.take() else {
            return;
        };
        if !self.shared.start() {
            drop_user_value(argument);
            return;
        }
        let context = self.context.take();
        let result = run_in(context.as_deref(), || {
            let _scope = job_scope::enter(self.shared.manager(), self.grinder);
            catch_unwind(AssertUnwindSafe(move || f(argument)))
        });
        drop_user_value(context);
        self.shared.finish(result.map_err(panicked));
    }

    fn fail(mut self: Box<Self>, error: Error) {
        drop_user_value(self.call.take());
        self.shared.end_unstarted(error);
    }

    fn is_cancelled(&self) -> bool {
        !self.shared.is_queued()
    }

    fn into_remote(mut self: Box<Self>) -> Result<RemoteCall, Box<dyn Runnable>> {
        let Some((_, argument)) = self.call.take() else {
            return Err(self);
        };
        Ok(RemoteCall::new(
            type_name::<F>(),
            argument,
            self.shared.clone(),
            self.context.take(),
        ))
    }

    fn relink(&self, link: LeaseLink) {
        self.shared.relink(link);
    }

    fn mark_grinder_item(&mut self, grinder: u64) {
        self.grinder = grinder;
    }

    fn is_call(&self) -> bool {
        true
    }
}

impl<F, A, R> Drop for CallTask<F, A, R> {
    fn drop(&mut self) {
        if let Some(call) = self.call.take() {
            drop_user_value(call);
            self.shared.end_unstarted(Error::Cancelled);
        }
        drop_user_value(self.context.take());
    }
}

#[cfg(test)]
mod tests {
    use std::panic::panic_any;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Panics when dropped (not while unwinding), counting its drops.
    struct Bomb(Arc<AtomicUsize>);

    impl Drop for Bomb {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
            if !std::thread::panicking() {
                panic!("a Drop that panics");
            }
        }
    }

    fn bomb() -> (Bomb, Arc<AtomicUsize>) {
        let drops = Arc::new(AtomicUsize::new(0));
        (Bomb(drops.clone()), drops)
    }

    struct NoSink;

    impl crate::job::JobSink for NoSink {
        fn job_finished(&self, _lease_key: u64, _end: crate::job::JobEnd) {}
    }

    fn of_manager<T: Send + 'static>(
        manager: u64,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> (Task, JobHandle<T>) {
        let sink: std::sync::Weak<dyn crate::job::JobSink> = std::sync::Weak::<NoSink>::new();
        let link = LeaseLink {
            sink,
            key: 1,
            manager,
        };
        Task::with_link(f, Some(link), None)
    }

    #[test]
    fn a_running_job_marks_its_manager_on_its_thread_nested_jobs_too() {
        use crate::job_scope::{running_item_of, running_job_of};
        let (inner, inner_handle) = of_manager(7, || (running_job_of(7), running_job_of(42)));
        let (mut outer, outer_handle) = of_manager(42, move || {
            let before = running_job_of(42);
            // A job run inline inside another.
            inner.run();
            (
                before,
                running_job_of(7),
                running_job_of(42),
                running_item_of(3),
            )
        });
        outer.mark_grinder_item(3);
        outer.run();
        assert_eq!(inner_handle.wait(), Ok((true, true)));
        assert_eq!(outer_handle.wait(), Ok((true, false, true, true)));
        assert!(!running_job_of(42) && !running_job_of(7) && !running_item_of(3));
    }

    #[test]
    fn a_relinked_job_marks_its_new_manager() {
        use crate::job_scope::running_job_of;
        let (task, handle) = of_manager(0, || running_job_of(11));
        let sink: std::sync::Weak<dyn crate::job::JobSink> = std::sync::Weak::<NoSink>::new();
        task.relink(LeaseLink {
            sink,
            key: 2,
            manager: 11,
        });
        task.run();
        assert_eq!(handle.wait(), Ok(true));
    }

    // Each test calls `run`, `fail` or drops the task on the test thread:
    // if any of them unwound, the test would fail with that panic.

    #[test]
    fn a_payload_whose_drop_panics_gives_panicked() {
        let (payload, drops) = bomb();
        let (task, handle) = Task::new(move || -> u8 { panic_any(payload) });
        task.run();
        assert_eq!(
            handle.wait(),
            Err(Error::Panicked("a panic with a non-string payload".into()))
        );
        assert_eq!(drops.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_detached_result_whose_drop_panics_is_dropped_by_run() {
        let (result, drops) = bomb();
        let (task, handle) = Task::new(move || result);
        drop(handle);
        task.run();
        assert_eq!(drops.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn an_unrun_closure_whose_state_panics_on_drop_is_cancelled() {
        // Dropped, failed, or cancelled by its handle and then run.
        for end in 0..3 {
            let (state, drops) = bomb();
            let (task, handle) = Task::new(move || {
                let _state = &state;
            });
            match end {
                0 => drop(task),
                1 => task.fail(Error::Broken("test".into())),
                _ => {
                    assert!(handle.cancel());
                    task.run();
                }
            }
            let expected = match end {
                1 => Error::Broken("test".into()),
                _ => Error::Cancelled,
            };
            assert_eq!(handle.wait(), Err(expected));
            assert_eq!(drops.load(Ordering::SeqCst), 1);
        }
    }
}
