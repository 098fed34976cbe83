//! Running code the library does not control on a thread it relies on.
//!
//! Backends, callbacks and the values of jobs are user code: they may
//! panic, and a panic payload may itself panic when dropped. [`contain`]
//! turns a panic into `Err` with the payload's message and drops the
//! payload so that a second panic never escapes
//! (`error::take_panic_message`); [`contain_logged`] logs it instead;
//! [`drop_user_value`] drops a job's closure, argument or result that way.
//! Used wherever the manager, the checker, the sizer, a worker or the
//! grinder runs code the library does not control.

use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::error::take_panic_message;

/// Runs `f`; a panic comes back as `Err(message)`.
pub(crate) fn contain<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(take_panic_message)
}

/// Runs `f` for its side effects, logging a panic at `level` with `what`
/// (the call that panicked) instead of letting it unwind.
pub(crate) fn contain_logged(level: log::Level, what: &str, f: impl FnOnce()) {
    if let Err(message) = contain(f) {
        log::log!(target: crate::LOG_TARGET, level, "{what} panicked (ignored): {message}");
    }
}

/// Drops a user value (a job's closure, argument or result) on a library
/// thread: a `Drop` that panics is logged, never unwinds. Free when
/// nothing panics.
pub(crate) fn drop_user_value<T>(value: T) {
    contain_logged(log::Level::Warn, "dropping a job's value", move || {
        drop(value)
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Bomb;

    impl Drop for Bomb {
        fn drop(&mut self) {
            panic!("payload drop");
        }
    }

    #[test]
    fn a_panic_becomes_its_message() {
        assert_eq!(contain(|| 7), Ok(7));
        assert_eq!(contain(|| -> u8 { panic!("boom") }), Err("boom".to_owned()));
    }

    #[test]
    fn a_payload_that_panics_on_drop_does_not_escape() {
        let result = contain(|| -> u8 { std::panic::panic_any(Bomb) });
        assert!(result.is_err());
    }
}
