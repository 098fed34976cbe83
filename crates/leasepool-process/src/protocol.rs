//! The wire protocol between the parent and a worker process.
//!
//! Each message is one frame: a 4-byte little-endian length, then that many
//! bytes of postcard-encoded [`ToWorker`] (parent → worker, on the worker's
//! stdin) or [`FromWorker`] (worker → parent, on the worker's stdout).

use std::io::{self, Read, Write};

use leasepool_core::Error;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Bumped whenever a message changes shape.
pub(crate) const PROTOCOL_VERSION: u32 = 1;

/// The largest frame either side accepts (64 MiB). A bigger length prefix
/// means a broken peer (or stray output on the worker's stdout), never a
/// reason to allocate.
pub(crate) const MAX_FRAME: usize = 64 << 20;

/// Set in a worker's environment (value: the handshake token) to make
/// [`init`](crate::init) serve instead of returning.
pub(crate) const WORKER_ENV: &str = "LEASEPOOL_PROCESS_WORKER";

/// Set in a worker's environment when log forwarding is on; the value is
/// the level filter (`info`, `debug`, ...).
pub(crate) const LOG_LEVEL_ENV: &str = "LEASEPOOL_PROCESS_LOG_LEVEL";

/// Set in a worker's environment when the backend has a `memory_limit`;
/// the value is the limit in bytes, applied by the worker to itself.
pub(crate) const MEMORY_LIMIT_ENV: &str = "LEASEPOOL_PROCESS_MEMORY_LIMIT";

/// Parent → worker.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ToWorker {
    /// Run `function` on the encoded `argument`; answer with `Done { id }`.
    Call {
        id: u64,
        function: String,
        argument: Vec<u8>,
    },
    /// Exit after the current call.
    Shutdown,
}

/// Worker → parent.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum FromWorker {
    /// The first frame a worker sends. `protocol` comes first so that a
    /// different version is still recognised.
    Hello {
        protocol: u32,
        token: String,
        fingerprint: u64,
        /// The initializer's error, or the registry's mistakes.
        init_error: Option<String>,
    },
    /// The outcome of call `id`: the encoded result, or why there is none.
    Done {
        id: u64,
        outcome: Result<Vec<u8>, WorkerError>,
    },
    /// A `log` record emitted in the worker.
    Log {
        /// `log::Level as usize` (1 = error ... 5 = trace).
        level: u8,
        target: String,
        message: String,
        module_path: Option<String>,
        file: Option<String>,
        line: Option<u32>,
    },
}

/// Why a call produced no result, as the worker reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum WorkerError {
    /// The function panicked with this message; the worker lives on.
    Panicked(String),
    /// No function of this name is registered in the worker.
    UnknownFunction(String),
    /// The argument or result could not be (de)serialised.
    Serialization(String),
}

impl From<WorkerError> for Error {
    fn from(error: WorkerError) -> Self {
        match error {
            WorkerError::Panicked(message) => Error::Panicked(message),
            WorkerError::UnknownFunction(name) => Error::UnknownFunction(name),
            WorkerError::Serialization(message) => Error::Serialization(message),
        }
    }
}

/// Encodes `message` as one frame (length prefix included).
pub(crate) fn encode_frame<T: Serialize>(message: &T) -> io::Result<Vec<u8>> {
    let mut frame = vec![0; 4];
    frame = postcard::to_io(message, frame)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    let len = frame.len() - 4;
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "it encodes to {len} bytes, more than the frame limit of {} MiB \
                 ({MAX_FRAME} bytes); pass less data per call",
                MAX_FRAME >> 20
            ),
        ));
    }
    let prefix = u32::try_from(len).expect("MAX_FRAME fits in u32");
    frame[..4].copy_from_slice(&prefix.to_le_bytes());
    Ok(frame)
}

/// Writes `message` as one frame and flushes.
pub(crate) fn write_frame<T: Serialize>(out: &mut impl Write, message: &T) -> io::Result<()> {
    out.write_all(&encode_frame(message)?)?;
    out.flush()
}

/// Reads one frame. `Ok(None)` at a clean end of stream (between frames).
pub(crate) fn read_frame<T: DeserializeOwned>(input: &mut impl Read) -> io::Result<Option<T>> {
    let mut prefix = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match input.read(&mut prefix[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the stream ended inside a frame header",
                ));
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let len = u32::from_le_bytes(prefix) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "a frame announced {len} bytes, more than the maximum of {MAX_FRAME} \
                 (is something else writing to the worker's stdout, such as println!?)"
            ),
        ));
    }
    let mut payload = vec![0; len];
    input.read_exact(&mut payload)?;
    postcard::from_bytes(&payload).map(Some).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "an undecodable frame: {e} \
                 (is something else writing to the worker's stdout, such as println!?)"
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let mut buffer = Vec::new();
        write_frame(
            &mut buffer,
            &ToWorker::Call {
                id: 7,
                function: "a::b".into(),
                argument: vec![1, 2, 3],
            },
        )
        .unwrap();
        write_frame(&mut buffer, &ToWorker::Shutdown).unwrap();
        let mut input = &buffer[..];
        match read_frame::<ToWorker>(&mut input).unwrap() {
            Some(ToWorker::Call {
                id,
                function,
                argument,
            }) => {
                assert_eq!(
                    (id, function.as_str(), argument),
                    (7, "a::b", vec![1, 2, 3])
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            read_frame::<ToWorker>(&mut input).unwrap(),
            Some(ToWorker::Shutdown)
        ));
        assert!(read_frame::<ToWorker>(&mut input).unwrap().is_none());
    }

    #[test]
    fn oversized_and_truncated_frames_are_errors() {
        let mut input = &b"hello world\n"[..];
        let error = read_frame::<FromWorker>(&mut input).unwrap_err();
        assert!(error.to_string().contains("maximum"), "{error}");
        let mut input = &[5u8, 0, 0, 0, 1][..];
        assert!(read_frame::<FromWorker>(&mut input).is_err());
        let mut input = &[5u8, 0][..];
        assert!(read_frame::<FromWorker>(&mut input).is_err());
    }
}
