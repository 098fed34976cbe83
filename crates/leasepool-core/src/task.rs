//! `Task`: one job as a backend sees it.

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex, PoisonError};

use std::any::{Any, type_name};

use crate::Error;
use crate::call::{CallData, CallFn, RemoteCall};
use crate::contain::drop_user_value;
use crate::error::take_panic_message;
use crate::job::{Completion, JobHandle, JobShared, LeaseLink};
use crate::job_scope;
use crate::observe::{JobContext, run_in};

/// One job, handed to [`BackendPool::execute`](crate::BackendPool::execute).
///
/// A task ends exactly once: [`run`](Self::run) it, [`fail`](Self::fail) it,
/// or drop it (its caller then sees [`Error::Cancelled`]). Each of these
/// consumes the task, so it cannot end twice.
pub struct Task {
    inner: Inner,
}

/// A task's job: a closure job shares one allocation with its handle; a
/// `call` job is boxed on its own (its result cell travels apart from it
/// when it leaves the process).
enum Inner {
    Closure(Arc<dyn ClosureRun>),
    Call(Box<dyn Runnable>),
    /// Ran, failed or handed over: nothing left to end.
    Gone,
}

impl Drop for Task {
    fn drop(&mut self) {
        // A closure job dropped unrun is cancelled (a boxed one does this
        // in its own `Drop`).
        if let Inner::Closure(job) = &self.inner {
            job.abandon();
        }
    }
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
        let job = Arc::new(ClosureJob {
            shared: JobShared::unshared(lease),
            work: StdMutex::new(Some(Work { f, context })),
            grinder: AtomicU64::new(0),
        });
        let task = Task {
            inner: Inner::Closure(job.clone()),
        };
        (task, JobHandle::new(job))
    }

    fn take(&mut self) -> Inner {
        std::mem::replace(&mut self.inner, Inner::Gone)
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
    pub fn run(mut self) {
        match self.take() {
            Inner::Closure(job) => job.run(),
            Inner::Call(job) => job.run(),
            Inner::Gone => {}
        }
    }

    /// Ends the job without running it; its caller gets `error` (typically
    /// [`Error::Broken`]). Never unwinds (see [`run`](Self::run)); nor
    /// does dropping a task.
    pub fn fail(mut self, error: Error) {
        match self.take() {
            Inner::Closure(job) => job.fail(error),
            Inner::Call(job) => job.fail(error),
            Inner::Gone => {}
        }
    }

    /// True if the job's handle cancelled it: running it would do nothing.
    pub fn is_cancelled(&self) -> bool {
        match &self.inner {
            Inner::Closure(job) => !job.shared_state().is_queued(),
            Inner::Call(job) => job.is_cancelled(),
            Inner::Gone => true,
        }
    }

    /// Makes `link` (a lease) count this job from now on.
    pub(crate) fn relink(&self, link: LeaseLink) {
        match &self.inner {
            Inner::Closure(job) => job.shared_state().relink(link),
            Inner::Call(job) => job.relink(link),
            Inner::Gone => {}
        }
    }

    /// Sets the submitter's context of a closure task built without one
    /// (a `Run` builds its task before it knows where it will be queued).
    pub(crate) fn set_context(&self, context: Option<Box<dyn JobContext>>) {
        if let (Some(context), Inner::Closure(job)) = (context, &self.inner) {
            job.set_context(context);
        }
    }

    /// Makes this task an item of grinder `grinder`: while it runs, the
    /// thread is marked as inside one of that grinder's items.
    pub(crate) fn mark_grinder_item(&mut self, grinder: u64) {
        match &mut self.inner {
            Inner::Closure(job) => job.mark_grinder_item(grinder),
            Inner::Call(job) => job.mark_grinder_item(grinder),
            Inner::Gone => {}
        }
    }

    /// True for a `call` job (it can leave the process).
    pub(crate) fn is_call(&self) -> bool {
        matches!(self.inner, Inner::Call(_))
    }

    /// For backends that run jobs out of process: the job as a function
    /// name and a serialisable argument, if it was submitted with `call`.
    /// A closure job (from `submit` or `run`) comes back as `Err(self)`;
    /// such a backend fails it with [`Error::UnsupportedBackend`].
    pub fn into_remote(mut self) -> Result<RemoteCall, Task> {
        match self.take() {
            Inner::Call(job) => job.into_remote().map_err(|job| Task {
                inner: Inner::Call(job),
            }),
            inner => Err(Task { inner }),
        }
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
            inner: Inner::Call(Box::new(CallTask {
                call: Some((f, argument)),
                shared: shared.clone(),
                grinder: 0,
                context,
            })),
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
}

/// A closure job's side of a task, in the same allocation as its result
/// cell (one allocation per job, shared with the `JobHandle`).
trait ClosureRun: Send + Sync {
    fn shared_state(&self) -> &dyn SharedState;
    fn run(&self);
    fn fail(&self, error: Error);
    /// Dropped unrun: its caller gets `Error::Cancelled`.
    fn abandon(&self);
    fn mark_grinder_item(&self, grinder: u64);
    fn set_context(&self, context: Box<dyn JobContext>);
}

/// What `Task` reads of a closure job's shared state without knowing its
/// result type.
trait SharedState {
    fn is_queued(&self) -> bool;
    fn relink(&self, link: LeaseLink);
}

impl<T> SharedState for JobShared<T> {
    fn is_queued(&self) -> bool {
        JobShared::is_queued(self)
    }

    fn relink(&self, link: LeaseLink) {
        JobShared::relink(self, link);
    }
}

/// What a closure job runs: taken exactly once, by whichever of run, fail
/// or drop ends the task (the lock is never contended: only the task's
/// owner takes it).
struct Work<F> {
    f: F,
    /// The submitter's context, entered around the job.
    context: Option<Box<dyn JobContext>>,
}

struct ClosureJob<F, T> {
    shared: JobShared<T>,
    work: StdMutex<Option<Work<F>>>,
    /// The grinder this task is an item of (0: none). Relaxed: it is set
    /// before the task is queued, which synchronises.
    grinder: AtomicU64,
}

impl<F, T> ClosureJob<F, T> {
    fn take_work(&self) -> Option<Work<F>> {
        self.work
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

impl<F, T> Completion<T> for ClosureJob<F, T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    fn shared(&self) -> &JobShared<T> {
        &self.shared
    }
}

impl<F, T> ClosureRun for ClosureJob<F, T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    fn shared_state(&self) -> &dyn SharedState {
        &self.shared
    }

    fn run(&self) {
        let Some(Work { f, context }) = self.take_work() else {
            return;
        };
        if !self.shared.start() {
            // Cancelled while queued: its outcome is out already.
            drop_user_value(f);
            drop_user_value(context);
            return;
        }
        let grinder = self.grinder.load(Ordering::Relaxed);
        let result = run_in(context.as_deref(), || {
            let _scope = job_scope::enter(self.shared.manager(), grinder);
            catch_unwind(AssertUnwindSafe(f))
        });
        drop_user_value(context);
        // The handle may be gone: then the result is dropped with this
        // allocation, safely (`JobShared`'s `Drop`).
        self.shared.finish(result.map_err(panicked));
    }

    fn fail(&self, error: Error) {
        if let Some(work) = self.take_work() {
            drop_user_value(work.f);
            drop_user_value(work.context);
        }
        self.shared.end_unstarted(error);
    }

    fn abandon(&self) {
        if let Some(work) = self.take_work() {
            // The closure first, so a caller who sees `Cancelled` knows
            // its captured state is gone.
            drop_user_value(work.f);
            self.shared.end_unstarted(Error::Cancelled);
            drop_user_value(work.context);
        }
    }

    fn mark_grinder_item(&self, grinder: u64) {
        self.grinder.store(grinder, Ordering::Relaxed);
    }

    fn set_context(&self, context: Box<dyn JobContext>) {
        let unused = {
            let mut work = self.work.lock().unwrap_or_else(PoisonError::into_inner);
            match work.as_mut() {
                Some(work) => work.context.replace(context),
                None => Some(context),
            }
        };
        // A context is user code: dropped outside the lock, safely.
        drop_user_value(unused);
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
            cancelled_only: false,
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
            cancelled_only: false,
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
