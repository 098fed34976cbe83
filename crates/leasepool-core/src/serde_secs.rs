//! Durations as JSON numbers of seconds in the serialised stats (feature
//! `serde`), instead of serde's default `{secs, nanos}` objects, so that a
//! dashboard or a person reading `/stats` sees `"until_hard_expiry": 12.5`.

use std::time::Duration;

use serde::Serializer;

/// A duration as a number of seconds.
pub(crate) fn duration<S: Serializer>(d: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(d.as_secs_f64())
}

/// An optional duration as a number of seconds, or `null`.
pub(crate) fn option_duration<S: Serializer>(
    d: &Option<Duration>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => serializer.serialize_some(&d.as_secs_f64()),
        None => serializer.serialize_none(),
    }
}
