//! The wire protocol between the parent and a worker process.
//!
//! Each message is one frame: a 4-byte little-endian length, then that many
//! bytes of postcard-encoded [`ToWorker`] (parent → worker, on the worker's
//! stdin) or [`FromWorker`] (worker → parent, on the worker's stdout).

use std::io::{self, Read, Write};

use leasepool_core::Error;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Bumped whenever a message changes shape (2: the handshake lists each
/// function's argument and result types).
pub(crate) const PROTOCOL_VERSION: u32 = 2;

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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum ToWorker {
    /// Run `function` on the encoded `argument`; answer with `Done { id }`.
    Call {
        id: u64,
        function: String,
        #[serde(with = "bytes")]
        argument: Vec<u8>,
    },
    /// Exit after the current call.
    Shutdown,
}

/// Worker → parent.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum FromWorker {
    /// The first frame a worker sends.
    Hello(Hello),
    /// The outcome of call `id`: the encoded result, or why there is none.
    Done {
        id: u64,
        #[serde(with = "bytes::outcome")]
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

/// The handshake. It is the first variant of [`FromWorker`] and `protocol`
/// is its first field, so that a worker of another version is still
/// recognised as one (see [`parse_hello`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Hello {
    pub(crate) protocol: u32,
    pub(crate) token: String,
    /// The worker's registry, sorted by function name.
    pub(crate) functions: Vec<Signature>,
    /// The initializer's error, or the registry's mistakes.
    pub(crate) init_error: Option<String>,
}

/// One registered function as the handshake compares it: its name and the
/// type names (`std::any::type_name`) of its argument and result.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub(crate) struct Signature {
    pub(crate) function: String,
    pub(crate) argument: String,
    pub(crate) result: String,
}

/// Why a handshake failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HandshakeError {
    /// The process does not speak the protocol at all.
    NotAWorker(String),
    /// A leasepool worker that cannot serve this parent.
    Refused(String),
}

/// Decodes a worker's first frame as its handshake. A worker of another
/// protocol version is recognised by the version alone, even if the rest
/// of its handshake has another shape.
pub(crate) fn parse_hello(payload: &[u8]) -> Result<Hello, HandshakeError> {
    match postcard::from_bytes::<FromWorker>(payload) {
        Ok(FromWorker::Hello(hello)) => Ok(hello),
        Ok(_) => Err(HandshakeError::NotAWorker(
            "its first frame was not a handshake".to_owned(),
        )),
        Err(e) => match postcard::take_from_bytes::<(u32, u32)>(payload) {
            // Variant 0 is `Hello`, whose first field is the version.
            Ok(((0, protocol), _)) if protocol != PROTOCOL_VERSION => {
                Err(version_mismatch(protocol))
            }
            _ => Err(HandshakeError::NotAWorker(format!(
                "its first frame is not a handshake: {e}"
            ))),
        },
    }
}

fn version_mismatch(protocol: u32) -> HandshakeError {
    HandshakeError::Refused(format!(
        "speaks protocol version {protocol}, this process speaks {PROTOCOL_VERSION}: \
         build workers and parent with the same leasepool"
    ))
}

/// How many registry differences a refusal lists.
const MAX_DIFFERENCES: usize = 5;

/// Checks a worker's handshake against this pool: the version, the pool's
/// `token`, the worker's start-up, and (if the parent has a registry) that
/// both registries hold the same functions with the same argument and
/// result types. The messages name what differs, without the worker's pid.
pub(crate) fn check_hello(
    hello: &Hello,
    token: &str,
    expected: Option<&[Signature]>,
) -> Result<(), HandshakeError> {
    if hello.protocol != PROTOCOL_VERSION {
        return Err(version_mismatch(hello.protocol));
    }
    if hello.token != token {
        return Err(HandshakeError::NotAWorker(
            "it answered with a handshake token of another pool".to_owned(),
        ));
    }
    if let Some(error) = &hello.init_error {
        return Err(HandshakeError::Refused(error.clone()));
    }
    let Some(expected) = expected else {
        return Ok(());
    };
    let differences = registry_differences(expected, &hello.functions);
    if differences.is_empty() {
        return Ok(());
    }
    let more = differences.len().saturating_sub(MAX_DIFFERENCES);
    let mut listed = differences
        .into_iter()
        .take(MAX_DIFFERENCES)
        .collect::<Vec<_>>()
        .join("; ");
    if more > 0 {
        listed.push_str(&format!("; and {more} more"));
    }
    Err(HandshakeError::Refused(format!(
        "was built from a different registry ({listed}): register the same functions, \
         with the same argument and result types, in the parent and its workers"
    )))
}

/// What differs between the parent's registry and a worker's, in words.
fn registry_differences(parent: &[Signature], worker: &[Signature]) -> Vec<String> {
    use std::collections::BTreeMap;
    let by_name = |list: &[Signature]| -> BTreeMap<String, Signature> {
        list.iter()
            .map(|s| (s.function.clone(), s.clone()))
            .collect()
    };
    let (parent, worker) = (by_name(parent), by_name(worker));
    let mut differences = Vec::new();
    for (name, ours) in &parent {
        match worker.get(name) {
            None => differences.push(format!("{name} is not registered in the worker")),
            Some(theirs) if theirs != ours => differences.push(format!(
                "{name} takes {} and returns {} here, but takes {} and returns {} \
                 in the worker",
                ours.argument, ours.result, theirs.argument, theirs.result
            )),
            Some(_) => {}
        }
    }
    for name in worker.keys().filter(|name| !parent.contains_key(*name)) {
        differences.push(format!("{name} is registered only in the worker"));
    }
    differences
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

/// Encoded arguments and results as serde byte strings: on the wire the
/// same as a sequence of `u8` (a length, then the bytes), but written and
/// read in one piece instead of byte by byte.
mod bytes {
    use serde::de::{Deserializer, SeqAccess, Visitor};
    use serde::{Deserialize, Serialize, Serializer};

    use super::WorkerError;

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(bytes)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        ByteBuf::deserialize(d).map(|b| b.0)
    }

    struct BytesRef<'a>(&'a [u8]);

    impl Serialize for BytesRef<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(self.0)
        }
    }

    struct ByteBuf(Vec<u8>);

    impl<'de> Deserialize<'de> for ByteBuf {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_byte_buf(ByteBufVisitor)
        }
    }

    struct ByteBufVisitor;

    impl<'de> Visitor<'de> for ByteBufVisitor {
        type Value = ByteBuf;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("bytes")
        }

        fn visit_bytes<E>(self, bytes: &[u8]) -> Result<ByteBuf, E> {
            Ok(ByteBuf(bytes.to_vec()))
        }

        fn visit_byte_buf<E>(self, bytes: Vec<u8>) -> Result<ByteBuf, E> {
            Ok(ByteBuf(bytes))
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ByteBuf, A::Error> {
            let mut bytes = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
            while let Some(byte) = seq.next_element()? {
                bytes.push(byte);
            }
            Ok(ByteBuf(bytes))
        }
    }

    /// A call's outcome, with its encoded result as a byte string.
    pub(super) mod outcome {
        use super::*;

        pub(crate) fn serialize<S: Serializer>(
            outcome: &Result<Vec<u8>, WorkerError>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            outcome.as_ref().map(|b| BytesRef(b)).serialize(s)
        }

        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Result<Vec<u8>, WorkerError>, D::Error> {
            Ok(Result::<ByteBuf, WorkerError>::deserialize(d)?.map(|b| b.0))
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

/// Reads one frame and decodes it. `Ok(None)` at a clean end of stream
/// (between frames).
pub(crate) fn read_frame<T: DeserializeOwned>(input: &mut impl Read) -> io::Result<Option<T>> {
    let Some(payload) = read_raw_frame(input)? else {
        return Ok(None);
    };
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

/// Reads one frame's payload. `Ok(None)` at a clean end of stream (between
/// frames). A length over [`MAX_FRAME`] is an error, and nothing is
/// allocated for it.
pub(crate) fn read_raw_frame(input: &mut impl Read) -> io::Result<Option<Vec<u8>>> {
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
    Ok(Some(payload))
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

    fn signature(function: &str, argument: &str, result: &str) -> Signature {
        Signature {
            function: function.to_owned(),
            argument: argument.to_owned(),
            result: result.to_owned(),
        }
    }

    fn hello(functions: Vec<Signature>) -> Hello {
        Hello {
            protocol: PROTOCOL_VERSION,
            token: "t".to_owned(),
            functions,
            init_error: None,
        }
    }

    #[test]
    fn handshakes_compare_names_and_types() {
        let ours = vec![
            signature("app::f", "u32", "u64"),
            signature("app::g", "()", "()"),
        ];
        assert_eq!(check_hello(&hello(ours.clone()), "t", Some(&ours)), Ok(()));
        // No parent registry (a custom worker command): anything goes.
        assert_eq!(check_hello(&hello(vec![]), "t", None), Ok(()));

        let theirs = vec![
            signature("app::f", "alloc::string::String", "u64"),
            signature("app::h", "()", "()"),
        ];
        let Err(HandshakeError::Refused(message)) = check_hello(&hello(theirs), "t", Some(&ours))
        else {
            panic!("a changed argument type must be refused");
        };
        assert!(
            message.contains(
                "app::f takes u32 and returns u64 here, but takes alloc::string::String \
                 and returns u64 in the worker"
            ),
            "{message}"
        );
        assert!(
            message.contains("app::g is not registered in the worker"),
            "{message}"
        );
        assert!(
            message.contains("app::h is registered only in the worker"),
            "{message}"
        );

        let mut other = hello(ours.clone());
        other.token = "u".to_owned();
        assert!(matches!(
            check_hello(&other, "t", Some(&ours)),
            Err(HandshakeError::NotAWorker(_))
        ));
        let mut failed = hello(ours.clone());
        failed.init_error = Some("init failed: no database".to_owned());
        assert_eq!(
            check_hello(&failed, "t", Some(&ours)),
            Err(HandshakeError::Refused(
                "init failed: no database".to_owned()
            ))
        );
    }

    #[test]
    fn a_worker_of_another_version_is_recognised() {
        /// The handshake of protocol version 1.
        #[derive(Serialize)]
        enum OldFromWorker {
            Hello {
                protocol: u32,
                token: String,
                fingerprint: u64,
                init_error: Option<String>,
            },
        }
        let old = postcard::to_stdvec(&OldFromWorker::Hello {
            protocol: 1,
            token: "t".to_owned(),
            fingerprint: u64::MAX,
            init_error: None,
        })
        .unwrap();
        let Err(HandshakeError::Refused(message)) = parse_hello(&old) else {
            panic!("a version 1 handshake must be refused by version");
        };
        assert!(message.contains("protocol version 1"), "{message}");
        let current = postcard::to_stdvec(&FromWorker::Hello(hello(vec![]))).unwrap();
        assert_eq!(parse_hello(&current), Ok(hello(vec![])));
        let log = postcard::to_stdvec(&FromWorker::Done {
            id: 1,
            outcome: Ok(vec![]),
        })
        .unwrap();
        assert!(matches!(
            parse_hello(&log),
            Err(HandshakeError::NotAWorker(_))
        ));
    }

    #[test]
    fn byte_strings_encode_like_byte_sequences() {
        // Same wire format as a plain `Vec<u8>` field.
        #[derive(Serialize)]
        enum Plain {
            #[allow(dead_code)]
            Call {
                id: u64,
                function: String,
                argument: Vec<u8>,
            },
        }
        let bytes: Vec<u8> = (0..=255).collect();
        let ours = postcard::to_stdvec(&ToWorker::Call {
            id: 3,
            function: "f".into(),
            argument: bytes.clone(),
        })
        .unwrap();
        let plain = postcard::to_stdvec(&Plain::Call {
            id: 3,
            function: "f".into(),
            argument: bytes.clone(),
        })
        .unwrap();
        assert_eq!(ours, plain);
        let done = FromWorker::Done {
            id: 1,
            outcome: Ok(bytes.clone()),
        };
        let decoded: FromWorker =
            postcard::from_bytes(&postcard::to_stdvec(&done).unwrap()).unwrap();
        assert!(matches!(decoded, FromWorker::Done { id: 1, outcome: Ok(b) } if b == bytes));
        let failed = FromWorker::Done {
            id: 2,
            outcome: Err(WorkerError::Panicked("p".into())),
        };
        let decoded: FromWorker =
            postcard::from_bytes(&postcard::to_stdvec(&failed).unwrap()).unwrap();
        assert!(matches!(
            decoded,
            FromWorker::Done { id: 2, outcome: Err(WorkerError::Panicked(m)) } if m == "p"
        ));
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

#[cfg(test)]
#[path = "protocol_proptest.rs"]
mod proptests;
