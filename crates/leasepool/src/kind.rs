//! `BackendKind`: a backend named in configuration.

use std::fmt;
use std::str::FromStr;

use crate::Error;

/// The built-in backends, for choosing one from configuration at run time
/// (see [`AnyBackend::from_kind`](crate::AnyBackend::from_kind)).
///
/// Parsing is case-insensitive. An unknown name is
/// [`Error::InvalidConfig`] listing the supported names; a known backend
/// whose cargo feature is off is [`Error::UnsupportedBackend`] naming the
/// feature to enable.
///
/// ```
/// use leasepool::{BackendKind, Error};
///
/// let kind: BackendKind = "Thread".parse()?;
/// assert_eq!(kind, BackendKind::Thread);
/// assert_eq!(kind.to_string(), "thread");
/// assert!(matches!("fibers".parse::<BackendKind>(), Err(Error::InvalidConfig { .. })));
/// # Ok::<(), Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BackendKind {
    /// [`ThreadBackend`](crate::ThreadBackend), feature `thread`.
    Thread,
    /// `RayonBackend`, feature `rayon`.
    Rayon,
    /// The process backend, feature `process`.
    Process,
}

impl BackendKind {
    /// Every kind, in the order they are listed in messages.
    pub const ALL: [BackendKind; 3] = [
        BackendKind::Thread,
        BackendKind::Rayon,
        BackendKind::Process,
    ];

    /// The lower-case name ("thread", "rayon", "process").
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Thread => "thread",
            BackendKind::Rayon => "rayon",
            BackendKind::Process => "process",
        }
    }

    /// The cargo feature of the `leasepool` crate that compiles it in.
    pub fn feature(self) -> &'static str {
        self.name()
    }

    /// True if this build of leasepool includes the backend.
    pub fn is_compiled_in(self) -> bool {
        match self {
            BackendKind::Thread => cfg!(feature = "thread"),
            BackendKind::Rayon => cfg!(feature = "rayon"),
            BackendKind::Process => cfg!(feature = "process"),
        }
    }

    /// `Ok(self)` if compiled in, else [`Error::UnsupportedBackend`] naming
    /// the feature to enable.
    pub fn require(self) -> Result<Self, Error> {
        if self.is_compiled_in() {
            Ok(self)
        } else {
            Err(Error::UnsupportedBackend(format!(
                "the {} backend is not compiled in: enable the `{}` feature of the leasepool crate",
                self.name(),
                self.feature()
            )))
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for BackendKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let name = s.trim();
        let kind = BackendKind::ALL
            .into_iter()
            .find(|kind| kind.name().eq_ignore_ascii_case(name))
            .ok_or_else(|| Error::InvalidConfig {
                field: "backend",
                reason: format!("unknown backend {s:?}: expected one of thread, rayon, process"),
            })?;
        kind.require()
    }
}
