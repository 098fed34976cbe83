//! Property tests of the frame decoder and the handshake parsing: no input
//! makes them panic, what is encoded decodes to the same value, and a
//! length over the limit is refused without allocating for it.

use proptest::prelude::*;

use super::*;

fn signature() -> impl Strategy<Value = Signature> {
    (
        "[a-z:_]{1,12}",
        "[a-z0-9:<>(), ]{0,12}",
        "[a-z0-9:<>(), ]{0,12}",
    )
        .prop_map(|(function, argument, result)| Signature {
            function,
            argument,
            result,
        })
}

fn hello() -> impl Strategy<Value = Hello> {
    (
        any::<u32>(),
        ".{0,16}",
        proptest::collection::vec(signature(), 0..6),
        proptest::option::of(".{0,16}"),
    )
        .prop_map(|(protocol, token, functions, init_error)| Hello {
            protocol,
            token,
            functions,
            init_error,
        })
}

fn to_worker() -> impl Strategy<Value = ToWorker> {
    prop_oneof![
        (
            any::<u64>(),
            ".{0,16}",
            proptest::collection::vec(any::<u8>(), 0..64)
        )
            .prop_map(|(id, function, argument)| ToWorker::Call {
                id,
                function,
                argument,
            }),
        Just(ToWorker::Shutdown),
    ]
}

proptest! {
    /// Arbitrary bytes are a frame, an error or the end, never a panic,
    /// and never an allocation of more than the limit.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let mut input = &bytes[..];
        for _ in 0..bytes.len() + 1 {
            match read_frame::<FromWorker>(&mut input) {
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        let mut input = &bytes[..];
        let _ = read_frame::<ToWorker>(&mut input);
        let _ = parse_hello(&bytes);
    }

    /// A length prefix over the limit is refused, whatever follows.
    #[test]
    fn oversized_lengths_are_refused(
        len in (MAX_FRAME as u32 + 1)..=u32::MAX,
        tail in proptest::collection::vec(any::<u8>(), 0..32),
    ) {
        let mut bytes = len.to_le_bytes().to_vec();
        bytes.extend(tail);
        let error = read_raw_frame(&mut &bytes[..]).unwrap_err();
        prop_assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        prop_assert!(error.to_string().contains("maximum"), "{}", error);
    }

    /// Frames round-trip, one after another in one stream.
    #[test]
    fn frames_round_trip(messages in proptest::collection::vec(to_worker(), 0..8)) {
        let mut stream = Vec::new();
        for message in &messages {
            write_frame(&mut stream, message).unwrap();
        }
        let mut input = &stream[..];
        for message in &messages {
            let got = read_frame::<ToWorker>(&mut input).unwrap().unwrap();
            prop_assert_eq!(&got, message);
        }
        prop_assert!(read_frame::<ToWorker>(&mut input).unwrap().is_none());
    }

    /// A truncated frame is an error, never a panic or a wrong value.
    #[test]
    fn truncated_frames_are_errors(message in to_worker(), cut in any::<prop::sample::Index>()) {
        let frame = encode_frame(&message).unwrap();
        let cut = 1 + cut.index(frame.len() - 1);
        if cut < frame.len() {
            prop_assert!(read_frame::<ToWorker>(&mut &frame[..cut]).is_err());
        }
    }

    /// Handshakes round-trip through a frame; a worker's own registry is
    /// accepted, and any change to one function's types is refused with a
    /// message naming that function.
    #[test]
    fn handshakes_parse_and_check(
        mut hello in hello(),
        changed in any::<prop::sample::Index>(),
    ) {
        let frame = encode_frame(&FromWorker::Hello(hello.clone())).unwrap();
        let payload = read_raw_frame(&mut &frame[..]).unwrap().unwrap();
        prop_assert_eq!(parse_hello(&payload), Ok(hello.clone()));
        if hello.protocol != PROTOCOL_VERSION {
            let checked = check_hello(&hello, &hello.token, None);
            prop_assert!(
                matches!(&checked, Err(HandshakeError::Refused(m)) if m.contains("protocol version")),
                "{:?}",
                checked
            );
            hello.protocol = PROTOCOL_VERSION;
        }
        hello.init_error = None;
        hello.functions.sort();
        hello.functions.dedup_by(|a, b| a.function == b.function);
        let ours = hello.functions.clone();
        prop_assert_eq!(check_hello(&hello, &hello.token, Some(&ours)), Ok(()));
        if !ours.is_empty() {
            let i = changed.index(ours.len());
            hello.functions[i].argument.push_str("Changed");
            let name = hello.functions[i].function.clone();
            match check_hello(&hello, &hello.token, Some(&ours)) {
                Err(HandshakeError::Refused(message)) => {
                    prop_assert!(message.contains(&name), "{}", message);
                    prop_assert!(message.contains("Changed"), "{}", message);
                }
                other => prop_assert!(false, "not refused: {:?}", other),
            }
        }
    }
}
