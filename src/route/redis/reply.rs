//! Redis replies decoded from bytes as they arrive, with `redis::Parser` kept across reads,
//! behind a size guard.
//!
//! The parser reads from a `std::io::Read`; [`ReplyReader::feed`] hands it the bytes a receive
//! completed with, behind a reader that says `WouldBlock` once they are used up. The parser
//! keeps a value it has only partly seen and resumes it on the next feed, so a reply split
//! across TCP segments (or several replies in one) decodes the same as one whole.
//!
//! The parser would buffer a reply of any size until it is whole: a hostile or mistaken value
//! of 100 MB would be read, held and parsed again for every lookup. So every byte first passes
//! a small RESP2 scanner ([`Guard`]) that reads only the length prefixes and line lengths and
//! refuses an element over [`ELEMENT_BYTES_MAX`], an array over [`ARRAY_LEN_MAX`] elements or
//! nested deeper than [`DEPTH_MAX`], before the parser sees it. ringgate's replies are a
//! backend address, a disconnect message, `+OK` and a subscribe confirmation: all tiny.

use std::fmt;
use std::io::{self, Read};

use redis::Value;

/// The most bytes of one bulk string or status/error line: a backend value is an `ip:port`
/// or a host name and port, a disconnect message a port or an address.
pub const ELEMENT_BYTES_MAX: usize = 1024;
/// The most elements in one array (a pub/sub message has 3).
pub const ARRAY_LEN_MAX: i64 = 16;
/// How deep arrays may nest.
pub const DEPTH_MAX: usize = 4;
/// A length prefix has at most this many bytes (`-1`, or up to 19 digits).
const HEADER_BYTES_MAX: usize = 24;

/// Why the byte stream cannot be trusted any more; the connection must be dropped.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadError {
    /// A reply larger than the caps allow, refused before it was read whole.
    Oversize(String),
    /// Not RESP.
    Protocol(String),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Oversize(why) => write!(f, "reply too large: {why}"),
            ReadError::Protocol(why) => f.write_str(why),
        }
    }
}

#[derive(Default)]
pub struct ReplyReader {
    guard: Guard,
    parser: redis::Parser,
}

/// The bytes of one receive, then `WouldBlock`.
struct Chunk<'a> {
    bytes: &'a [u8],
}

impl Read for Chunk<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.bytes.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = out.len().min(self.bytes.len());
        out[..n].copy_from_slice(&self.bytes[..n]);
        self.bytes = &self.bytes[n..];
        Ok(n)
    }
}

impl ReplyReader {
    /// Decodes every reply `bytes` completes into `out`. An `Err` means the stream cannot be
    /// trusted any more and the connection must be dropped.
    pub fn feed(&mut self, bytes: &[u8], out: &mut Vec<Value>) -> Result<(), ReadError> {
        self.guard.scan(bytes)?;
        let mut chunk = Chunk { bytes };
        loop {
            match self.parser.parse_value(&mut chunk) {
                Ok(value) => out.push(value),
                // The bytes ran out mid-value (or between values): wait for more.
                Err(e) if e.is_io_error() => return Ok(()),
                Err(e) => return Err(ReadError::Protocol(e.to_string())),
            }
        }
    }
}

/// Where the scanner is in the stream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum State {
    /// Expecting an element's type byte.
    #[default]
    Type,
    /// Inside a `+`, `-` or `:` line, this many bytes in.
    Line(usize),
    /// Inside a `$` or `*` length prefix: the kind, the value so far, its bytes, its sign.
    Header {
        kind: u8,
        value: i64,
        bytes: usize,
        negative: bool,
    },
    /// A length prefix's `\r` was seen; its `\n` must follow.
    HeaderEnd { kind: u8, value: i64 },
    /// This many bytes of a bulk string and its `\r\n` are still to come.
    Bulk(usize),
}

/// A RESP2 scanner that reads only structure: type bytes, lengths, line ends.
#[derive(Default)]
pub struct Guard {
    state: State,
    /// Elements still to come in each open array, outermost first.
    open: Vec<i64>,
}

impl Guard {
    pub fn scan(&mut self, mut bytes: &[u8]) -> Result<(), ReadError> {
        while let Some((&byte, rest)) = bytes.split_first() {
            match self.state {
                State::Bulk(left) => {
                    let take = left.min(bytes.len());
                    bytes = &bytes[take..];
                    self.state = State::Bulk(left - take);
                    if left == take {
                        self.element_done();
                    }
                    continue;
                }
                State::Type => {
                    self.state = match byte {
                        b'+' | b'-' | b':' => State::Line(0),
                        b'$' | b'*' => State::Header {
                            kind: byte,
                            value: 0,
                            bytes: 0,
                            negative: false,
                        },
                        other => {
                            return Err(ReadError::Protocol(format!(
                                "unexpected RESP type byte 0x{other:02x}"
                            )));
                        }
                    }
                }
                State::Line(_) if byte == b'\n' => self.element_done(),
                // The line and its `\r` are in; anything but `\n` makes it too long.
                State::Line(n) if n > ELEMENT_BYTES_MAX => {
                    return Err(ReadError::Oversize(format!(
                        "a status line over {ELEMENT_BYTES_MAX} bytes"
                    )));
                }
                State::Line(n) => self.state = State::Line(n + 1),
                State::Header {
                    kind,
                    value,
                    bytes: n,
                    negative,
                } => {
                    if n >= HEADER_BYTES_MAX {
                        return Err(ReadError::Protocol("a length prefix too long".into()));
                    }
                    self.state = match byte {
                        b'-' if n == 0 => State::Header {
                            kind,
                            value,
                            bytes: 1,
                            negative: true,
                        },
                        b'0'..=b'9' => State::Header {
                            kind,
                            value: value
                                .saturating_mul(10)
                                .saturating_add(i64::from(byte - b'0')),
                            bytes: n + 1,
                            negative,
                        },
                        b'\r' => State::HeaderEnd {
                            kind,
                            value: if negative { -value } else { value },
                        },
                        _ => return Err(ReadError::Protocol("a malformed length prefix".into())),
                    }
                }
                State::HeaderEnd { kind, value } => {
                    if byte != b'\n' {
                        return Err(ReadError::Protocol("a length prefix without \\n".into()));
                    }
                    self.header(kind, value)?;
                }
            }
            bytes = rest;
        }
        Ok(())
    }

    fn header(&mut self, kind: u8, value: i64) -> Result<(), ReadError> {
        match (kind, value) {
            // Null bulk string or array, or an empty array: a whole element.
            (_, -1) | (b'*', 0) => self.element_done(),
            (_, ..=-2) => return Err(ReadError::Protocol("a negative length".into())),
            (b'$', n) if n > ELEMENT_BYTES_MAX as i64 => {
                return Err(ReadError::Oversize(format!(
                    "a {n}-byte string (at most {ELEMENT_BYTES_MAX})"
                )));
            }
            (b'$', n) => self.state = State::Bulk(n as usize + 2),
            (_, n) if n > ARRAY_LEN_MAX => {
                return Err(ReadError::Oversize(format!(
                    "an array of {n} elements (at most {ARRAY_LEN_MAX})"
                )));
            }
            (_, _) if self.open.len() >= DEPTH_MAX => {
                return Err(ReadError::Oversize(format!(
                    "arrays nested deeper than {DEPTH_MAX}"
                )));
            }
            (_, n) => {
                self.open.push(n);
                self.state = State::Type;
            }
        }
        Ok(())
    }

    /// An element ended: it counts toward the array around it, which may end too.
    fn element_done(&mut self) {
        self.state = State::Type;
        while let Some(left) = self.open.last_mut() {
            *left -= 1;
            if *left > 0 {
                return;
            }
            self.open.pop();
        }
    }
}

#[cfg(test)]
mod tests {
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
                matches!(guard.scan(bad.as_bytes()), Err(ReadError::Oversize(_))),
                "{}",
                &bad[..bad.len().min(20)]
            );
        }
        let mut guard = Guard::default();
        assert!(guard.scan(b"$99999999999999999999999999\r\n").is_err());
        assert!(Guard::default().scan(b"$-5\r\n").is_err());
    }

    #[test]
    fn the_guard_tracks_nested_arrays_to_their_end() {
        let mut guard = Guard::default();
        guard.scan(b"*2\r\n*2\r\n:1\r\n:2\r\n$1\r\nx\r\n").unwrap();
        assert_eq!((guard.state, guard.open.len()), (State::Type, 0));
    }
}
