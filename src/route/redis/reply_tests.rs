//! The reply reader and its guard, fed streams split every way.

use super::*;

const STREAM: &[u8] = b"+OK\r\n$5\r\nhello\r\n*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$4\r\n1234\r\n:7\r\n$-1\r\n-ERR bad\r\n*0\r\n*-1\r\n";

fn decode_in(parts: &[&[u8]]) -> Vec<Value> {
    let mut reader = ReplyReader::default();
    let mut out = Vec::new();
    for part in parts {
        reader.feed(part, &mut out).unwrap();
    }
    out
}

#[test]
fn a_reply_split_anywhere_decodes_as_if_whole() {
    let whole = decode_in(&[STREAM]);
    assert_eq!(whole.len(), 8);
    assert_eq!(whole[0], Value::Okay);
    assert_eq!(whole[1], Value::BulkString(b"hello".to_vec()));
    assert_eq!(whole[3], Value::Int(7));
    assert_eq!(whole[4], Value::Nil);
    assert!(matches!(whole[5], Value::ServerError(_)));
    for split in 0..=STREAM.len() {
        let (a, b) = STREAM.split_at(split);
        assert_eq!(decode_in(&[a, b]), whole, "split at {split}");
    }
}

#[test]
fn byte_at_a_time_decodes_too() {
    let bytes: Vec<&[u8]> = STREAM.chunks(1).collect();
    assert_eq!(decode_in(&bytes), decode_in(&[STREAM]));
}

#[test]
fn an_incomplete_reply_yields_nothing_yet() {
    let mut reader = ReplyReader::default();
    let mut out = Vec::new();
    reader.feed(b"$5\r\nhel", &mut out).unwrap();
    assert!(out.is_empty());
    reader.feed(b"lo\r\n", &mut out).unwrap();
    assert_eq!(out, [Value::BulkString(b"hello".to_vec())]);
}

#[test]
fn garbage_is_a_protocol_error() {
    let mut reader = ReplyReader::default();
    assert!(matches!(
        reader.feed(b"?what\r\n", &mut Vec::new()),
        Err(ReadError::Protocol(_))
    ));
}

#[test]
fn a_huge_value_is_refused_from_its_length_prefix_alone() {
    let mut reader = ReplyReader::default();
    let mut out = Vec::new();
    // The first 16 bytes of a 100 MB reply are enough to refuse it.
    let err = reader.feed(b"$104857600\r\naaaa", &mut out).unwrap_err();
    assert!(matches!(err, ReadError::Oversize(_)), "{err:?}");
    let at_cap = format!(
        "${ELEMENT_BYTES_MAX}\r\n{}\r\n",
        "a".repeat(ELEMENT_BYTES_MAX)
    );
    assert_eq!(
        decode_in(&[at_cap.as_bytes()]).len(),
        1,
        "the cap itself is fine"
    );
}

#[test]
fn long_lines_wide_and_deep_arrays_are_refused() {
    let line = format!("+{}\r\n", "a".repeat(ELEMENT_BYTES_MAX + 2));
    let wide = format!("*{}\r\n", ARRAY_LEN_MAX + 1);
    let deep = "*1\r\n".repeat(DEPTH_MAX + 1);
    for bad in [line.as_str(), wide.as_str(), deep.as_str()] {
        let mut guard = Guard::default();
        assert!(
            matches!(
                guard.scan(bad.as_bytes(), &mut Vec::new()),
                Err(ReadError::Oversize(_))
            ),
            "{}",
            &bad[..bad.len().min(20)]
        );
    }
    let mut guard = Guard::default();
    assert!(
        guard
            .scan(b"$99999999999999999999999999\r\n", &mut Vec::new())
            .is_err()
    );
    assert!(Guard::default().scan(b"$-5\r\n", &mut Vec::new()).is_err());
}

#[test]
fn the_guard_tracks_nested_arrays_to_their_end() {
    let mut guard = Guard::default();
    let mut out = Vec::new();
    let stream = b"*2\r\n*2\r\n:1\r\n:2\r\n$1\r\nx\r\n";
    guard.scan(stream, &mut out).unwrap();
    assert_eq!(out, stream, "what it accepts passes unchanged");
    assert_eq!((guard.state, guard.open.len()), (State::Type, 0));
}

#[test]
fn a_skipping_reader_drops_an_oversize_string_and_reads_on() {
    let big = "x".repeat(ELEMENT_BYTES_MAX + 1);
    let stream = format!(
        "*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n${}\r\n{big}\r\n*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\n42\r\n",
        big.len()
    );
    let message = |payload: Value| {
        Value::Array(vec![
            Value::BulkString(b"message".to_vec()),
            Value::BulkString(b"ch".to_vec()),
            payload,
        ])
    };
    let want = [
        message(Value::Nil),
        message(Value::BulkString(b"42".to_vec())),
    ];
    for split in 0..=stream.len() {
        let (a, b) = stream.as_bytes().split_at(split);
        let mut reader = ReplyReader::skipping();
        let mut out = Vec::new();
        reader.feed(a, &mut out).unwrap();
        reader.feed(b, &mut out).unwrap();
        assert_eq!(out, want, "split at {split}");
    }
    // A reader that does not skip refuses the same stream.
    let mut strict = ReplyReader::default();
    assert!(matches!(
        strict.feed(stream.as_bytes(), &mut Vec::new()),
        Err(ReadError::Oversize(_))
    ));
}
