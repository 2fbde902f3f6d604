//! How many lines of each tool's output one core turns into events per second, for
//! BENCHMARKS.md (not a test):
//!
//!     cargo run --release -p herd-agent --example reader_rates
//!
//! Replays each recorded fixture of real tool output until 2 million lines were read.

use agent::runners::{jmeter, k6, locust, Event};

fn fixture(path: &str) -> String {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(path);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Feeds `lines` to `read` until 2M lines; prints lines/s and request samples/s.
fn measure(name: &str, lines: &[&str], mut read: impl FnMut(&str) -> Vec<Event>) {
    let target = 2_000_000;
    let start = std::time::Instant::now();
    let (mut n, mut events, mut requests) = (0usize, 0usize, 0usize);
    while n < target {
        for l in lines {
            let got = read(l);
            events += got.len();
            requests += got
                .iter()
                .filter(|e| matches!(e, Event::Request { .. }))
                .count();
            n += 1;
        }
    }
    let s = start.elapsed().as_secs_f64();
    println!(
        "{name}: {n} lines in {s:.2} s on one thread = {:.0} lines/s, {:.0} events/s, {:.0} request samples/s",
        n as f64 / s,
        events as f64 / s,
        requests as f64 / s
    );
}

fn main() {
    let text = fixture("k6/basic.ndjson");
    let lines: Vec<&str> = text.lines().collect();
    measure("k6 JSON", &lines, |l| k6::events(l).expect("valid k6 line"));

    let text = fixture("locust/requests.jsonl");
    let lines: Vec<&str> = text.lines().collect();
    measure("Locust listener", &lines, |l| {
        locust::events(l).expect("valid listener line")
    });

    let text = fixture("jmeter/basic.jtl");
    let mut it = text.lines();
    let cols = jmeter::Columns::from_header(it.next().expect("header")).expect("columns");
    let lines: Vec<&str> = it.collect();
    measure("JMeter JTL", &lines, |l| {
        jmeter::events(&cols, l).expect("valid JTL line")
    });
}
