//! The driver as a program, `target/release/ringgate-bench [OPTIONS]`: what tests/plumbing.rs
//! runs. `cargo bench -p ringgate-bench` runs the same driver as the bench target `forward`.

fn main() {
    ringgate_bench::main()
}
