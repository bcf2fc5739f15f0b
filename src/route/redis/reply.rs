//! Redis replies decoded from bytes as they arrive, with `redis::Parser` kept across reads.
//!
//! The parser reads from a `std::io::Read`; [`ReplyReader::feed`] hands it the bytes a receive
//! completed with, behind a reader that says `WouldBlock` once they are used up. The parser
//! keeps a value it has only partly seen and resumes it on the next feed, so a reply split
//! across TCP segments (or several replies in one) decodes the same as one whole.

use std::io::{self, Read};

use redis::{RedisError, Value};

#[derive(Default)]
pub struct ReplyReader {
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
    /// Decodes every reply `bytes` completes into `out`. An `Err` is a protocol error: the
    /// stream cannot be trusted any more and the connection must be dropped.
    pub fn feed(&mut self, bytes: &[u8], out: &mut Vec<Value>) -> Result<(), RedisError> {
        let mut chunk = Chunk { bytes };
        loop {
            match self.parser.parse_value(&mut chunk) {
                Ok(value) => out.push(value),
                // The bytes ran out mid-value (or between values): wait for more.
                Err(e) if e.is_io_error() => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &[u8] = b"+OK\r\n$5\r\nhello\r\n*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$4\r\n1234\r\n:7\r\n$-1\r\n-ERR bad\r\n";

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
        assert_eq!(whole.len(), 6);
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
        assert!(reader.feed(b"?what\r\n", &mut Vec::new()).is_err());
    }
}
