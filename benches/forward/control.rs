//! The line protocol between the driver and its role processes, both sides of it.
//!
//! A role reads commands from stdin, one per line, and answers on stdout with one line that
//! starts with a keyword: `ready k=v ...` once it is serving, `snap k=v ...` for counters,
//! `report {json}` for its final per-flow figures. Diagnostics go to stderr. When stdin closes,
//! because the driver finished or died, the role exits at once; a watchdog bounds its lifetime
//! even if the driver hangs. So no role can outlive the run that started it.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::time::Duration;

/// Prints one protocol line, `keyword k=v k=v`, and flushes it so the driver sees it now.
pub fn announce(keyword: &str, fields: &[(&str, String)]) {
    let mut line = keyword.to_string();
    for (key, value) in fields {
        line.push_str(&format!(" {key}={value}"));
    }
    write_line(&line);
}

/// Prints one raw protocol line and flushes it.
pub fn write_line(line: &str) {
    let mut out = std::io::stdout().lock();
    // A driver that stopped reading is gone; the stdin watcher ends this process shortly.
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Runs `handle` on a background thread for every command line on stdin, and ends the process
/// when stdin closes or after `max_lifetime`, whichever comes first.
pub fn serve_commands(max_lifetime: Duration, mut handle: impl FnMut(&str) + Send + 'static) {
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            match line {
                Ok(line) => handle(line.trim()),
                Err(_) => break,
            }
        }
        std::process::exit(0);
    });
    std::thread::spawn(move || {
        std::thread::sleep(max_lifetime);
        eprintln!("role: lifetime of {max_lifetime:?} exceeded, exiting");
        std::process::exit(3);
    });
}

/// Splits the `k=v` fields of a protocol line (after its keyword).
pub fn fields(line: &str) -> HashMap<&str, &str> {
    line.split_whitespace()
        .skip(1)
        .filter_map(|field| field.split_once('='))
        .collect()
}

/// One numeric field of a protocol line, named in the error if it is missing or malformed.
pub fn field_u64(fields: &HashMap<&str, &str>, key: &str) -> Result<u64, String> {
    fields
        .get(key)
        .ok_or_else(|| format!("protocol line lacks `{key}`"))?
        .parse()
        .map_err(|e| format!("protocol field `{key}`: {e}"))
}

/// Self-checks of the pure logic above. Bench targets built with `harness = false` never run
/// `#[test]` functions, so the driver runs these under `cargo test --benches` instead.
pub mod checks {
    use super::*;

    pub fn fields_of_a_line() {
        let line = "snap received=12 bytes=768";
        let fields = fields(line);
        assert_eq!(field_u64(&fields, "received"), Ok(12));
        assert!(field_u64(&fields, "lost").is_err());
    }

    pub const ALL: &[(&str, fn())] = &[("control::fields_of_a_line", fields_of_a_line)];
}
