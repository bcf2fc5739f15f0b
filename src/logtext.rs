//! Text from the network or from Redis, made safe for a log line.
//!
//! A value, an error message or a disconnect message is whatever a peer chose to send: a
//! newline in it would forge a second log line, an escape sequence would rewrite a terminal.
//! [`escaped`] shows printable ASCII as is and everything else escaped (`\n`, `\u{1b}`,
//! `\u{e9}`), cut at a length.

use std::fmt::Write;

/// At most `max` bytes of `bytes`, escaped, with the full length noted when cut.
pub fn escaped(bytes: &[u8], max: usize) -> String {
    let shown = &bytes[..bytes.len().min(max)];
    let mut out = String::with_capacity(shown.len() + 8);
    for chunk in shown.utf8_chunks() {
        for ch in chunk.valid().chars() {
            match ch {
                ' '..='~' if ch != '\\' => out.push(ch),
                _ => {
                    let _ = write!(out, "{}", ch.escape_default());
                }
            }
        }
        for byte in chunk.invalid() {
            let _ = write!(out, "\\x{byte:02x}");
        }
    }
    if bytes.len() > max {
        let _ = write!(out, "... ({} bytes)", bytes.len());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_cannot_forge_a_line() {
        let forged = escaped(b"40123\n2026-01-01T00:00:00Z ERROR fake\r\x1b[2J", 200);
        assert!(!forged.contains('\n') && !forged.contains('\r') && !forged.contains('\x1b'));
        assert_eq!(
            forged,
            "40123\\n2026-01-01T00:00:00Z ERROR fake\\r\\u{1b}[2J"
        );
    }

    #[test]
    fn invalid_utf8_and_long_values_are_shown_safely() {
        assert_eq!(escaped(b"a\xffb\\", 64), "a\\xffb\\\\");
        assert_eq!(escaped("é".as_bytes(), 64), "\\u{e9}");
        assert_eq!(escaped(&[b'x'; 100], 4), "xxxx... (100 bytes)");
    }
}
