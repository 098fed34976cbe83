//! Validation helpers for configuration values, shared by the manager's
//! builder and by backends' `check_config` (custom backends included), so
//! every bad value gets the same kind of [`Error::InvalidConfig`] message.
//!
//! ```
//! use std::time::Duration;
//! use leasepool_core::{Error, validate};
//!
//! assert_eq!(validate::positive("workers", 4), Ok(4));
//! assert!(matches!(
//!     validate::positive("workers", 0),
//!     Err(Error::InvalidConfig { field: "workers", .. })
//! ));
//! assert!(validate::duration("timeout", Duration::MAX, false).is_err());
//! ```

use std::time::{Duration, Instant};

use crate::Error;

/// Rejects zero: `field` "must be greater than 0".
pub fn positive(field: &'static str, value: usize) -> Result<usize, Error> {
    if value == 0 {
        return Err(Error::invalid(field, "must be greater than 0"));
    }
    Ok(value)
}

/// Rejects a duration that overflows `Instant` when added to now, and zero
/// unless `allow_zero`.
pub fn duration(field: &'static str, value: Duration, allow_zero: bool) -> Result<Duration, Error> {
    if !allow_zero && value.is_zero() {
        return Err(Error::invalid(field, "must be greater than 0"));
    }
    if Instant::now().checked_add(value).is_none() {
        return Err(Error::invalid(
            field,
            format!("{value:?} is too large: it overflows the monotonic clock"),
        ));
    }
    Ok(value)
}
