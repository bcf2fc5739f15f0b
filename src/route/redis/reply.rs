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
//!
//! A subscriber connection cannot refuse what others publish, so for it the guard skips a bulk
//! string over the cap instead ([`ReplyReader::skipping`]): its bytes are read and dropped, and
//! the parser sees a null in its place (a published message is never null), so one oversize
//! message is counted and skipped while the connection and the messages after it live on.

use std::fmt;
use std::io::{self, Read};

use redis::Value;

/// The most bytes of one bulk string or status/error line: a backend value is an `ip:port`
/// or a host name and port, a disconnect message a port or an address.
pub const ELEMENT_BYTES_MAX: usize = 1024;
/// The most elements in one array (a pub/sub message has 3; `ROLE` lists a master's replicas).
pub const ARRAY_LEN_MAX: i64 = 64;
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
    /// The bytes the guard let through, reused across feeds.
    passed: Vec<u8>,
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
    /// A reader that replaces a bulk string over [`ELEMENT_BYTES_MAX`] with a null instead of
    /// refusing the stream (for a subscriber: messages are what others published).
    pub fn skipping() -> ReplyReader {
        ReplyReader {
            guard: Guard {
                skip_oversize: true,
                ..Guard::default()
            },
            ..ReplyReader::default()
        }
    }

    /// Decodes every reply `bytes` completes into `out`. An `Err` means the stream cannot be
    /// trusted any more and the connection must be dropped.
    pub fn feed(&mut self, bytes: &[u8], out: &mut Vec<Value>) -> Result<(), ReadError> {
        self.passed.clear();
        self.guard.scan(bytes, &mut self.passed)?;
        let mut chunk = Chunk {
            bytes: &self.passed,
        };
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
    /// As `Bulk`, for a string over the cap being dropped.
    Skip(usize),
}

/// A RESP2 scanner that reads only structure: type bytes, lengths, line ends. It passes on
/// what it accepts: the same bytes, length prefixes written again, a skipped string as a null.
#[derive(Default)]
pub struct Guard {
    state: State,
    /// Elements still to come in each open array, outermost first.
    open: Vec<i64>,
    /// Drop a bulk string over the cap (passed on as a null) instead of refusing the stream.
    skip_oversize: bool,
}

impl Guard {
    /// Scans `bytes`, appending what the parser may see to `out`.
    pub fn scan(&mut self, mut bytes: &[u8], out: &mut Vec<u8>) -> Result<(), ReadError> {
        while let Some((&byte, rest)) = bytes.split_first() {
            match self.state {
                State::Bulk(left) | State::Skip(left) => {
                    let take = left.min(bytes.len());
                    if let State::Bulk(_) = self.state {
                        out.extend_from_slice(&bytes[..take]);
                        self.state = State::Bulk(left - take);
                    } else {
                        self.state = State::Skip(left - take);
                    }
                    bytes = &bytes[take..];
                    if left == take {
                        self.element_done();
                    }
                    continue;
                }
                State::Type => {
                    if matches!(byte, b'+' | b'-' | b':') {
                        out.push(byte);
                    }
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
                State::Line(_) if byte == b'\n' => {
                    out.push(byte);
                    self.element_done();
                }
                // The line and its `\r` are in; anything but `\n` makes it too long.
                State::Line(n) if n > ELEMENT_BYTES_MAX => {
                    return Err(ReadError::Oversize(format!(
                        "a status line over {ELEMENT_BYTES_MAX} bytes"
                    )));
                }
                State::Line(n) => {
                    out.push(byte);
                    self.state = State::Line(n + 1);
                }
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
                    self.header(kind, value, out)?;
                }
            }
            bytes = rest;
        }
        Ok(())
    }

    fn header(&mut self, kind: u8, value: i64, out: &mut Vec<u8>) -> Result<(), ReadError> {
        if value >= -1 && !(kind == b'$' && value > ELEMENT_BYTES_MAX as i64) {
            out.push(kind);
            out.extend_from_slice(value.to_string().as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        match (kind, value) {
            // Null bulk string or array, or an empty array: a whole element.
            (_, -1) | (b'*', 0) => self.element_done(),
            (_, ..=-2) => return Err(ReadError::Protocol("a negative length".into())),
            (b'$', n) if n > ELEMENT_BYTES_MAX as i64 && self.skip_oversize => {
                out.extend_from_slice(b"$-1\r\n");
                self.state = State::Skip(n as usize + 2);
            }
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
#[path = "reply_tests.rs"]
mod tests;
