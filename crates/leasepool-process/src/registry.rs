//! `Registry`: the functions a worker process can run, by name.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use leasepool_core::{CallData, CallFn, function_name};

use crate::guard::catch;
use crate::protocol::{Signature, WorkerError};

/// Runs one registered function on an encoded argument and encodes its
/// result.
pub(crate) type Handler = Arc<dyn Fn(&[u8]) -> Result<Vec<u8>, WorkerError> + Send + Sync>;

/// The per-worker initializer, erased.
pub(crate) type Initializer = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// The functions worker processes can run, keyed by name.
///
/// A process lease's `call(f, arg)` sends `f`'s name
/// ([`leasepool_core::function_name`], the type name of the function item,
/// such as `my_app::count_primes`) and the encoded argument to a worker; the
/// worker looks the name up here. The parent and its workers must build the
/// same registry: the handshake compares each function's name and the type
/// names (`std::any::type_name`) of its argument and result, so a worker
/// built separately whose function takes or returns another type is
/// refused (with `Error::Broken` saying which function differs and how)
/// instead of decoding wrong values. That is automatic when both run the
/// same `main` calling [`init`](crate::init).
///
/// Only plain function items can be registered: a closure or a
/// function-pointer variable has no name that is stable across processes.
/// Registering one does not panic: the registry records the mistake and
/// [`init`](crate::init) (in the parent, through `ManagerBuilder::build`;
/// in a worker, through the handshake) reports it.
///
/// ```
/// use leasepool_process::Registry;
///
/// fn square(x: u64) -> u64 {
///     x * x
/// }
///
/// fn greet((name, times): (String, usize)) -> String {
///     format!("hello {name} ").repeat(times)
/// }
///
/// let registry = Registry::new().register(square).register(greet);
/// assert_eq!(registry.len(), 2);
/// assert!(registry.errors().is_empty());
///
/// let bad = Registry::new().register(|x: u8| x);
/// assert!(bad.errors()[0].contains("closure"));
/// ```
#[derive(Clone, Default)]
pub struct Registry {
    functions: BTreeMap<&'static str, Entry>,
    initializer: Option<Initializer>,
    errors: Vec<String>,
}

/// One registered function: how to run it, and its types for the handshake.
#[derive(Clone)]
struct Entry {
    handler: Handler,
    argument: &'static str,
    result: &'static str,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("functions", &self.functions.keys().collect::<Vec<_>>())
            .field("initializer", &self.initializer.is_some())
            .field("errors", &self.errors)
            .finish()
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the function item `f`, callable as `lease.call(f, arg)`.
    ///
    /// `f` must be a function item (`count_primes`), not a closure or a
    /// `fn` pointer: those are recorded as errors (see [`errors`](Self::errors)).
    /// Registering the same function twice is harmless.
    pub fn register<F, A, R>(mut self, f: F) -> Self
    where
        F: CallFn<A, R>,
        A: CallData,
        R: CallData,
    {
        let name = function_name(f);
        if let Some(problem) = unusable_name(name) {
            self.errors
                .push(format!("cannot register {name}: {problem}"));
            return self;
        }
        let handler: Handler = Arc::new(move |bytes: &[u8]| run_encoded(f, name, bytes));
        let entry = Entry {
            handler,
            argument: std::any::type_name::<A>(),
            result: std::any::type_name::<R>(),
        };
        self.functions.insert(name, entry);
        self
    }

    /// Runs `init` once in each worker process before it serves calls (open
    /// a connection, load a model, ...). An `Err` or a panic fails the
    /// worker's handshake, which breaks its pool: leases on it fail with
    /// `Error::Broken` carrying the message.
    ///
    /// ```
    /// use leasepool_process::Registry;
    ///
    /// fn warm_up(_: ()) -> Result<(), String> {
    ///     std::env::var("HOME").map(drop).map_err(|e| format!("no HOME: {e}"))
    /// }
    ///
    /// let registry = Registry::new().initializer(warm_up);
    /// # let _ = registry;
    /// ```
    pub fn initializer(mut self, init: fn(()) -> Result<(), String>) -> Self {
        self.initializer = Some(Arc::new(move || {
            catch(|| init(())).unwrap_or_else(|message| Err(format!("panicked: {message}")))
        }));
        self
    }

    /// How many functions are registered.
    pub fn len(&self) -> usize {
        self.functions.len()
    }

    /// True if no function is registered.
    pub fn is_empty(&self) -> bool {
        self.functions.is_empty()
    }

    /// True if a function is registered under `name`.
    ///
    /// ```
    /// use leasepool_process::Registry;
    ///
    /// fn double(x: i32) -> i32 {
    ///     2 * x
    /// }
    ///
    /// let registry = Registry::new().register(double);
    /// assert!(registry.contains(leasepool_core::function_name(double)));
    /// ```
    pub fn contains(&self, name: &str) -> bool {
        self.functions.contains_key(name)
    }

    /// The mistakes made while building the registry (closures or function
    /// pointers registered); empty if it is usable.
    pub fn errors(&self) -> &[String] {
        &self.errors
    }

    /// A fingerprint of the registered functions: FNV-1a over the sorted
    /// names and the type names (`std::any::type_name`) of each one's
    /// argument and result. Two registries with the same fingerprint hold
    /// the same functions with the same types. (The handshake compares the
    /// lists themselves, so its refusal can say what differs.)
    pub fn fingerprint(&self) -> u64 {
        let mut hash = Fnv1a::new();
        for (name, entry) in &self.functions {
            for part in [*name, entry.argument, entry.result] {
                hash.write(part.as_bytes());
                hash.write(&[0]);
            }
        }
        hash.finish()
    }

    /// The registered functions with their types, sorted by name, as the
    /// handshake compares them.
    pub(crate) fn signatures(&self) -> Vec<Signature> {
        self.functions
            .iter()
            .map(|(name, entry)| Signature {
                function: (*name).to_owned(),
                argument: entry.argument.to_owned(),
                result: entry.result.to_owned(),
            })
            .collect()
    }

    pub(crate) fn handler(&self, name: &str) -> Option<&Handler> {
        self.functions.get(name).map(|entry| &entry.handler)
    }

    pub(crate) fn take_initializer(&mut self) -> Option<Initializer> {
        self.initializer.take()
    }
}

/// Why `name` cannot identify a function across processes, if it cannot.
fn unusable_name(name: &str) -> Option<&'static str> {
    if name.contains("{{closure}}") {
        Some("a closure has no name that is stable across processes; register a plain function")
    } else if name.starts_with("fn(") || name.starts_with("unsafe ") || name.starts_with("extern ")
    {
        Some(
            "a function pointer has no name of its own; register the function item itself \
             (`register(count_primes)`, not a `fn(..)` variable)",
        )
    } else {
        None
    }
}

/// Decodes the argument, runs `f` catching a panic, encodes the result.
/// A panic in the argument's `Deserialize`, the result's `Serialize` or
/// either's `Drop` fails the call with `Serialization` or `Panicked`; the
/// worker serves on.
fn run_encoded<F, A, R>(f: F, name: &str, bytes: &[u8]) -> Result<Vec<u8>, WorkerError>
where
    F: CallFn<A, R>,
    A: CallData,
    R: CallData,
{
    let argument: A = match catch(|| postcard::from_bytes(bytes)) {
        Ok(Ok(argument)) => argument,
        Ok(Err(e)) => {
            return Err(WorkerError::Serialization(format!(
                "cannot decode the argument of {name} as {}: {e}",
                std::any::type_name::<A>()
            )));
        }
        Err(panic) => {
            return Err(WorkerError::Serialization(format!(
                "the Deserialize impl of {} panicked while decoding the argument of {name}: {panic}",
                std::any::type_name::<A>()
            )));
        }
    };
    // The argument is dropped inside `f`, so a panicking `Drop` counts as
    // the function's panic.
    let result = catch(move || f(argument)).map_err(WorkerError::Panicked)?;
    let encoded = catch(|| postcard::to_stdvec(&result)).map_err(|panic| {
        WorkerError::Serialization(format!(
            "the Serialize impl of {} panicked while encoding the result of {name}: {panic}",
            std::any::type_name::<R>()
        ))
    });
    catch(move || drop(result)).map_err(|panic| {
        WorkerError::Panicked(format!(
            "the Drop impl of the result of {name} ({}) panicked: {panic}",
            std::any::type_name::<R>()
        ))
    })?;
    encoded?.map_err(|e| {
        WorkerError::Serialization(format!(
            "cannot encode the result of {name} ({}): {e}",
            std::any::type_name::<R>()
        ))
    })
}

/// 64-bit FNV-1a: small, dependency-free, stable across builds.
#[derive(Debug)]
pub(crate) struct Fnv1a(u64);

impl Fnv1a {
    pub(crate) fn new() -> Self {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }

    pub(crate) fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 ^= u64::from(byte);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    pub(crate) fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add((a, b): (u32, u32)) -> u32 {
        a + b
    }

    fn boom(_: ()) -> u8 {
        panic!("boom")
    }

    #[test]
    fn runs_registered_functions_on_encoded_arguments() {
        let registry = Registry::new().register(add).register(boom);
        let handler = registry.handler(function_name(add)).unwrap();
        let out = handler(&postcard::to_stdvec(&(2u32, 40u32)).unwrap()).unwrap();
        assert_eq!(postcard::from_bytes::<u32>(&out).unwrap(), 42);
        let handler = registry.handler(function_name(boom)).unwrap();
        assert_eq!(
            handler(&postcard::to_stdvec(&()).unwrap()),
            Err(WorkerError::Panicked("boom".to_owned()))
        );
        let handler = registry.handler(function_name(add)).unwrap();
        assert!(matches!(handler(&[]), Err(WorkerError::Serialization(_))));
    }

    #[test]
    fn rejects_closures_and_function_pointers() {
        let pointer: fn(u32) -> u32 = |x| x;
        let registry = Registry::new().register(|x: u32| x).register(pointer);
        assert_eq!(registry.len(), 0);
        assert_eq!(registry.errors().len(), 2, "{:?}", registry.errors());
        assert!(registry.errors()[0].contains("closure"));
        assert!(registry.errors()[1].contains("function pointer"));
    }

    #[test]
    fn fingerprints_depend_on_the_functions_not_their_order() {
        let a = Registry::new().register(add).register(boom);
        let b = Registry::new().register(boom).register(add);
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_ne!(a.fingerprint(), Registry::new().register(add).fingerprint());
    }
}
