//! Containing panics of user code (`Serialize`, `Deserialize` and `Drop`
//! impls) that runs on threads the pool relies on: reader threads, the
//! dispatch path, the grinder's threads calling `execute`, and the worker's
//! serve loop. A panic there becomes an outcome for its call and never
//! unwinds through a library thread.

use std::panic::{AssertUnwindSafe, catch_unwind};

use leasepool_core::{drop_panic_payload, panic_message};
use serde::de::{Deserializer, Visitor};

/// Runs `f`, turning a panic into its message. The payload is dropped
/// safely: a payload whose own `Drop` panics does not unwind either.
pub(crate) fn catch<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|payload| {
        let message = panic_message(&*payload);
        drop_panic_payload(payload);
        message
    })
}

/// Runs `f`, logging a panic (with `context`) instead of unwinding.
pub(crate) fn contain(context: impl FnOnce() -> String, f: impl FnOnce()) {
    if let Err(message) = catch(f) {
        log::error!(target: leasepool_core::LOG_TARGET, "{}: a user impl panicked: {message}", context());
    }
}

/// A deserializer that turns a panic of the visitor it drives (the
/// `Deserialize` impl being decoded, and everything nested in it) into a
/// deserialisation error, so a hostile `Deserialize` impl fails its own
/// call with `Error::Serialization` instead of unwinding.
///
/// A panic in the body of the outermost `Deserialize::deserialize`, before
/// it hands a visitor to this deserializer or after it returns, does not
/// pass through here; the caller of `RemoteCall::deliver` contains it.
pub(crate) struct Guarded<D> {
    pub(crate) inner: D,
    /// What is being decoded, for the message: `the result of a::f`.
    pub(crate) what: &'static str,
    pub(crate) function: &'static str,
}

/// The error of a [`Guarded`] deserializer: the inner one's, or the panic,
/// as text (postcard's own errors drop custom messages).
#[derive(Debug)]
pub(crate) struct GuardError(String);

impl std::fmt::Display for GuardError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for GuardError {}

impl serde::de::Error for GuardError {
    fn custom<T: std::fmt::Display>(message: T) -> Self {
        GuardError(message.to_string())
    }
}

impl<D> Guarded<D> {
    fn guard<'de, T>(self, f: impl FnOnce(D) -> Result<T, D::Error>) -> Result<T, GuardError>
    where
        D: Deserializer<'de>,
    {
        let (what, function) = (self.what, self.function);
        match catch(move || f(self.inner)) {
            Ok(result) => result.map_err(|e| GuardError(e.to_string())),
            Err(message) => Err(GuardError(format!(
                "its Deserialize impl panicked while decoding {what} {function}: {message}"
            ))),
        }
    }
}

macro_rules! guarded_methods {
    ($($method:ident),* $(,)?) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, GuardError> {
                self.guard(move |inner| inner.$method(visitor))
            }
        )*
    };
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Guarded<D> {
    type Error = GuardError;

    guarded_methods!(
        deserialize_any,
        deserialize_bool,
        deserialize_i8,
        deserialize_i16,
        deserialize_i32,
        deserialize_i64,
        deserialize_i128,
        deserialize_u8,
        deserialize_u16,
        deserialize_u32,
        deserialize_u64,
        deserialize_u128,
        deserialize_f32,
        deserialize_f64,
        deserialize_char,
        deserialize_str,
        deserialize_string,
        deserialize_bytes,
        deserialize_byte_buf,
        deserialize_option,
        deserialize_unit,
        deserialize_seq,
        deserialize_map,
        deserialize_identifier,
        deserialize_ignored_any,
    );

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, GuardError> {
        self.guard(move |inner| inner.deserialize_unit_struct(name, visitor))
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, GuardError> {
        self.guard(move |inner| inner.deserialize_newtype_struct(name, visitor))
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, GuardError> {
        self.guard(move |inner| inner.deserialize_tuple(len, visitor))
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, GuardError> {
        self.guard(move |inner| inner.deserialize_tuple_struct(name, len, visitor))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, GuardError> {
        self.guard(move |inner| inner.deserialize_struct(name, fields, visitor))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, GuardError> {
        self.guard(move |inner| inner.deserialize_enum(name, variants, visitor))
    }

    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    /// Panics inside the visitor, as a hostile nested type would.
    #[derive(Debug)]
    struct Hostile;

    impl<'de> Deserialize<'de> for Hostile {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl Visitor<'_> for V {
                type Value = Hostile;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("anything")
                }
                fn visit_u8<E>(self, _: u8) -> Result<Hostile, E> {
                    panic!("hostile visitor")
                }
            }
            d.deserialize_u8(V)
        }
    }

    #[derive(Debug, Deserialize)]
    struct Outer {
        _a: u8,
        _b: Hostile,
    }

    #[test]
    fn a_panicking_visitor_becomes_an_error() {
        let bytes = [1u8, 2];
        let mut de = postcard::Deserializer::from_bytes(&bytes);
        let guarded = |inner| Guarded {
            inner,
            what: "the result of",
            function: "a::f",
        };
        let error = Outer::deserialize(guarded(&mut de)).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("the result of a::f: hostile visitor"),
            "{error}"
        );
        let mut de = postcard::Deserializer::from_bytes(&bytes);
        let (a, b) = <(u8, u8)>::deserialize(guarded(&mut de)).unwrap();
        assert_eq!((a, b), (1, 2));
    }

    #[test]
    fn catch_and_contain_stop_unwinding() {
        assert_eq!(catch(|| 5), Ok(5));
        assert_eq!(catch(|| -> u8 { panic!("no") }), Err("no".to_owned()));
        contain(|| "test".to_owned(), || panic!("contained"));
    }
}
