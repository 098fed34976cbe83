//! Running code the library does not control on a thread it relies on.
//!
//! Backends and callbacks are user code: they may panic, and a panic payload
//! may itself panic when dropped. [`contain`] turns a panic into `Err` with
//! the payload's message and drops the payload so that a second panic never
//! escapes (`error::take_panic_message`). Used for every call the manager,
//! the checker and the sizer make into a backend or a callback; jobs' own
//! values go through `error::drop_user_value`.

use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::error::take_panic_message;

/// Runs `f`; a panic comes back as `Err(message)`.
pub(crate) fn contain<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(take_panic_message)
}

/// Runs `f` for its side effects, logging a panic with `what` (the call
/// that panicked) instead of letting it unwind.
pub(crate) fn contain_logged(what: &str, f: impl FnOnce()) {
    if let Err(message) = contain(f) {
        log::error!(target: crate::LOG_TARGET, "{what} panicked: {message}");
    }
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
