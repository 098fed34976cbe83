//! `call`: a plain function with a serialisable argument and result.
//!
//! A closure cannot cross a process boundary, but a function item with a
//! serde-serialisable argument and result can: the process backend sends
//! the function's name and the encoded argument to a worker process, which
//! looks the function up in its registry. `call` works on every backend, so
//! code can switch backends: in-process backends simply run `f(arg)`.
//!
//! A function is identified by its type name (`std::any::type_name::<F>()`,
//! e.g. `my_app::count_primes`): every function item has a unique type, so
//! the name is stable across processes built from the same source, and no
//! function address is ever sent.

use std::any::type_name;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Error;
use crate::contain::drop_user_value;
use crate::error::take_panic_message;
use crate::job::JobShared;
use crate::observe::{JobContext, run_in};

/// What `call` accepts as a function: a plain function item taking one
/// argument (several arguments go in a tuple).
pub trait CallFn<A, R>: Fn(A) -> R + Copy + Send + Sync + 'static {}

impl<F, A, R> CallFn<A, R> for F where F: Fn(A) -> R + Copy + Send + Sync + 'static {}

/// What `call` accepts as an argument or result: serialisable both ways.
pub trait CallData: Serialize + DeserializeOwned + Send + 'static {}

impl<T> CallData for T where T: Serialize + DeserializeOwned + Send + 'static {}

/// The name a function is registered and called under.
pub fn function_name<F, A, R>(_f: F) -> &'static str
where
    F: CallFn<A, R>,
{
    type_name::<F>()
}

/// A `call` job in the form a process backend sends it: the function's
/// name, the argument to encode, and where the encoded result goes.
///
/// Ends exactly once: [`deliver`](Self::deliver) a result,
/// [`fail`](Self::fail) it, or drop it (its caller gets
/// [`Error::Cancelled`]).
pub struct RemoteCall {
    function: &'static str,
    /// Always `Some` until dropped: the argument is user data whose `Drop`
    /// may panic, so `Drop` takes it out and drops it under a guard.
    argument: Option<Box<dyn erased_serde::Serialize + Send>>,
    reply: Box<dyn Reply>,
    /// The submitter's context, entered around delivery (and around
    /// whatever the backend runs in [`in_context`](Self::in_context)).
    context: Option<Box<dyn JobContext>>,
}

impl Drop for RemoteCall {
    fn drop(&mut self) {
        drop_user_value(self.argument.take());
        drop_user_value(self.context.take());
    }
}

impl fmt::Debug for RemoteCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteCall")
            .field("function", &self.function)
            .finish_non_exhaustive()
    }
}

impl RemoteCall {
    pub(crate) fn new<A, R>(
        function: &'static str,
        argument: A,
        shared: Arc<JobShared<R>>,
        context: Option<Box<dyn JobContext>>,
    ) -> Self
    where
        A: CallData,
        R: CallData,
    {
        RemoteCall {
            function,
            argument: Some(Box::new(argument)),
            reply: Box::new(TypedReply {
                shared,
                ended: false,
            }),
            context,
        }
    }

    /// Runs `f` inside the context captured when the call was submitted
    /// (with the `tracing` feature, the submitter's span), so that the
    /// parent-side work of a call (encoding, dispatch) is recorded there.
    /// [`deliver`](Self::deliver) and [`fail`](Self::fail) enter it
    /// themselves. Without a context, just runs `f`.
    pub fn in_context<T>(&self, f: impl FnOnce() -> T) -> T {
        run_in(self.context.as_deref(), f)
    }

    /// The function's registered name.
    pub fn function(&self) -> &'static str {
        self.function
    }

    /// The argument, to serialise with the backend's format
    /// (`erased_serde::serialize(call.argument(), serializer)`).
    pub fn argument(&self) -> &(dyn erased_serde::Serialize + Send) {
        match &self.argument {
            Some(argument) => &**argument,
            None => unreachable!("the argument is taken only by Drop"),
        }
    }

    /// Marks the job as running. False if its caller cancelled it while it
    /// was queued: drop it instead of sending it.
    pub fn start(&self) -> bool {
        self.reply.start()
    }

    /// True if the caller cancelled the job before it started.
    pub fn is_cancelled(&self) -> bool {
        self.reply.is_cancelled()
    }

    /// Decodes the result from `deserializer` and hands it to the caller
    /// (a decoding failure becomes [`Error::Serialization`], and so does a
    /// `Deserialize` implementation that panics: the calling thread, a
    /// backend's, carries on).
    pub fn deliver(mut self, deserializer: &mut dyn erased_serde::Deserializer<'_>) {
        let context = self.context.take();
        run_in(context.as_deref(), || self.reply.deliver(deserializer));
        drop_user_value(context);
    }

    /// Ends the job with `error` (for example [`Error::Panicked`] from the
    /// worker, or [`Error::Broken`] when the worker died).
    pub fn fail(mut self, error: Error) {
        let context = self.context.take();
        run_in(context.as_deref(), || self.reply.fail(error));
        drop_user_value(context);
    }
}

/// The typed end of a remote call, behind a trait object so `RemoteCall`
/// carries no type parameters.
trait Reply: Send {
    fn start(&self) -> bool;
    fn is_cancelled(&self) -> bool;
    fn deliver(&mut self, deserializer: &mut dyn erased_serde::Deserializer<'_>);
    fn fail(&mut self, error: Error);
}

struct TypedReply<R> {
    shared: Arc<JobShared<R>>,
    ended: bool,
}

impl<R: CallData> Reply for TypedReply<R> {
    fn start(&self) -> bool {
        self.shared.start()
    }

    fn is_cancelled(&self) -> bool {
        !self.shared.is_queued() && !self.shared.is_running()
    }

    fn deliver(&mut self, deserializer: &mut dyn erased_serde::Deserializer<'_>) {
        self.ended = true;
        let decoded = catch_unwind(AssertUnwindSafe(|| {
            erased_serde::deserialize::<R>(deserializer)
        }));
        let result = match decoded {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(Error::Serialization(format!(
                "cannot decode the result as {}: {e}",
                type_name::<R>()
            ))),
            Err(payload) => Err(Error::Serialization(format!(
                "decoding the result as {} panicked: {}",
                type_name::<R>(),
                take_panic_message(payload)
            ))),
        };
        // Delivering without `start` is allowed: start now (a cancelled
        // job stays cancelled, and its decoded result is dropped here,
        // under a guard).
        if self.shared.is_queued() && !self.shared.start() {
            drop_user_value(result);
            return;
        }
        self.shared.finish(result);
    }

    fn fail(&mut self, error: Error) {
        self.ended = true;
        if !self.shared.end_unstarted(error.clone()) && self.shared.is_running() {
            self.shared.finish(Err(error));
        }
    }
}

impl<R> Drop for TypedReply<R> {
    fn drop(&mut self) {
        if !self.ended && !self.shared.end_unstarted(Error::Cancelled) && self.shared.is_running() {
            self.shared.finish(Err(Error::Cancelled));
        }
    }
}
