//! `Task`: one job as a backend sees it.

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use std::any::type_name;

use crate::Error;
use crate::call::{CallData, CallFn, RemoteCall};
use crate::error::panic_message;
use crate::job::{JobHandle, JobShared, LeaseLink};

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
        Self::with_link(f, None)
    }

    pub(crate) fn with_link<F, T>(f: F, lease: Option<LeaseLink>) -> (Task, JobHandle<T>)
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let shared = JobShared::new(lease);
        let task = Task {
            inner: Box::new(ClosureTask {
                f: Some(f),
                shared: shared.clone(),
            }),
        };
        (task, JobHandle::new(shared))
    }

    /// Runs the job on the current thread, catching a panic (the caller gets
    /// [`Error::Panicked`] and the current thread carries on). Does nothing
    /// if the job was cancelled while queued.
    pub fn run(self) {
        self.inner.run();
    }

    /// Ends the job without running it; its caller gets `error` (typically
    /// [`Error::Broken`]).
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
        Self::with_call(f, argument, None)
    }

    pub(crate) fn with_call<F, A, R>(
        f: F,
        argument: A,
        lease: Option<LeaseLink>,
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
    fn is_call(&self) -> bool;
}

struct ClosureTask<F, T> {
    f: Option<F>,
    shared: Arc<JobShared<T>>,
}

impl<F, T> Runnable for ClosureTask<F, T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    fn run(mut self: Box<Self>) {
        let Some(f) = self.f.take() else { return };
        if !self.shared.start() {
            return;
        }
        let result = catch_unwind(AssertUnwindSafe(f))
            .map_err(|payload| Error::Panicked(panic_message(payload.as_ref())));
        self.shared.finish(result);
    }

    fn fail(mut self: Box<Self>, error: Error) {
        self.f = None;
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

    fn is_call(&self) -> bool {
        false
    }
}

impl<F, T> Drop for ClosureTask<F, T> {
    fn drop(&mut self) {
        if self.f.take().is_some() {
            self.shared.end_unstarted(Error::Cancelled);
        }
    }
}

/// A `call` job: runs `f(argument)` here, or travels as a [`RemoteCall`].
struct CallTask<F, A, R> {
    call: Option<(F, A)>,
    shared: Arc<JobShared<R>>,
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
            return;
        }
        let result = catch_unwind(AssertUnwindSafe(move || f(argument)))
            .map_err(|payload| Error::Panicked(panic_message(payload.as_ref())));
        self.shared.finish(result);
    }

    fn fail(mut self: Box<Self>, error: Error) {
        self.call = None;
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
        ))
    }

    fn relink(&self, link: LeaseLink) {
        self.shared.relink(link);
    }

    fn is_call(&self) -> bool {
        true
    }
}

impl<F, A, R> Drop for CallTask<F, A, R> {
    fn drop(&mut self) {
        if self.call.take().is_some() {
            self.shared.end_unstarted(Error::Cancelled);
        }
    }
}
