//! `cargo bench -p ringgate-bench [-- OPTIONS]`: the forward load driver (`src/lib.rs`), which
//! needs a current `cargo build --release` of ringgate.
//!
//! `cargo test --benches` and `--all-targets` run bench targets too, without the `--bench`
//! flag `cargo bench` adds: the driver's checks are this crate's tests, so such a run only says
//! how to start the benchmark instead of loading the machine for seconds. The roles the driver
//! starts (this executable again, as `--role NAME`) always run.

fn main() {
    let mut args = std::env::args().skip(1);
    let role = args.next().is_some_and(|first| first == "--role");
    if role || std::env::args().any(|arg| arg == "--bench") {
        ringgate_bench::main();
    } else {
        eprintln!(
            "forward: not run without --bench; the benchmark is `cargo bench -p ringgate-bench`, its checks `cargo test -p ringgate-bench`"
        );
    }
}
