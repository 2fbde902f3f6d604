//! How many Locust listener lines one core turns into events per second, for BENCHMARKS.md
//! (not a test):
//!
//!     cargo run --release -p herd-agent --example locust_read_rate
//!
//! Replays the recorded fixture (real Locust 2.47 listener output) until 2 million lines.

use agent::runners::locust::events;

fn main() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/locust/requests.jsonl");
    let text = std::fs::read_to_string(&path).expect("fixture");
    let lines: Vec<&str> = text.lines().collect();
    let target = 2_000_000;
    let start = std::time::Instant::now();
    let (mut n, mut requests) = (0usize, 0usize);
    while n < target {
        for l in &lines {
            requests += events(l)
                .expect("valid line")
                .iter()
                .filter(|e| matches!(e, agent::runners::Event::Request { .. }))
                .count();
            n += 1;
        }
    }
    let s = start.elapsed().as_secs_f64();
    println!(
        "Locust listener: {n} lines in {s:.2} s on one thread = {:.0} lines/s ({:.0} request samples/s)",
        n as f64 / s,
        requests as f64 / s
    );
}
