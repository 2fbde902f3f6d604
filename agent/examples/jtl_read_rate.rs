//! How many JTL lines one core turns into samples per second, for BENCHMARKS.md (not a test):
//!
//!     cargo run --release -p herd-agent --example jtl_read_rate
//!
//! Replays the recorded fixture (real JMeter 2.13 CSV output) until 2 million lines.

use agent::runners::jmeter::{events, Columns};

fn main() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/jmeter/basic.jtl");
    let text = std::fs::read_to_string(&path).expect("fixture");
    let mut lines = text.lines();
    let cols = Columns::from_header(lines.next().expect("header")).expect("columns");
    let samples: Vec<&str> = lines.collect();
    let target = 2_000_000;
    let start = std::time::Instant::now();
    let (mut n, mut requests) = (0usize, 0usize);
    while n < target {
        for l in &samples {
            requests += events(&cols, l)
                .expect("valid line")
                .iter()
                .filter(|e| matches!(e, agent::runners::Event::Request { .. }))
                .count();
            n += 1;
        }
    }
    let s = start.elapsed().as_secs_f64();
    println!(
        "JTL: {n} lines in {s:.2} s on one thread = {:.0} lines/s ({:.0} request samples/s)",
        n as f64 / s,
        requests as f64 / s
    );
}
