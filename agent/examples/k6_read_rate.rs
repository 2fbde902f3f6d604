//! How many k6 JSON lines one core parses per second, for BENCHMARKS.md (not a test):
//!
//!     cargo run --release -p herd-agent --example k6_read_rate
//!
//! Replays the recorded fixture (real k6 v1.1.0 output) until 2 million lines were parsed.

use agent::runners::k6::parse_line;

fn main() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/k6/basic.ndjson");
    let text = std::fs::read_to_string(&path).expect("fixture");
    let lines: Vec<&str> = text.lines().collect();
    let target = 2_000_000;
    let start = std::time::Instant::now();
    let (mut n, mut events) = (0usize, 0usize);
    while n < target {
        for l in &lines {
            if parse_line(l).expect("valid line").is_some() {
                events += 1;
            }
            n += 1;
        }
    }
    let s = start.elapsed().as_secs_f64();
    println!(
        "k6 JSON: {n} lines in {s:.2} s on one thread = {:.0} lines/s ({:.0} events/s kept)",
        n as f64 / s,
        events as f64 / s
    );
}
