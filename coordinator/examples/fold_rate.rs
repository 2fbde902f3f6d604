//! Aggregator throughput and batch size, for BENCHMARKS.md (not a test):
//!
//!     cargo run --release -p herd-coordinator --example fold_rate
//!
//! Builds per-second batches (10 labels, N requests per label with latencies spread log-uniformly
//! from 0.25 ms to ~2 s — nearly every request in its own histogram bucket, the worst case),
//! measures their wire size, then decodes and folds them on one thread the way the aggregator
//! does (envelope decode → every bound checked and the sparse histogram decoded
//! (`MetricBatch::check`) → exact merge → per-second state, with late-window finalization). Runs N = 100 (1,000 requests per agent-second) and N = 1000.
//! Then the same, as `herd serve`'s aggregator does it: each batch also appended to the run's
//! batch journal (`run::durable::BatchJournal`, in a temp folder on this disk), synced once per
//! simulated second.

use std::time::Instant;

use coordinator::run::durable::{BatchJournal, StoredBatch};
use coordinator::run::fold::Fold;
use messages::metrics::{LabelStats, MetricBatch};
use messages::wire::{self, Body, Envelope, WIRE_VERSION};

fn label_stats(seed: u64, n: u64) -> LabelStats {
    let mut s = LabelStats::default();
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    for _ in 0..n {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        // Log-uniform-ish between ~200 µs and ~2 s.
        let exp = 8 + (x >> 60) as u32 % 13;
        let us = (1u64 << exp) + (x >> 20) % (1u64 << exp);
        s.requests += 1;
        s.latency.record(us).unwrap_or_default();
        *s.status
            .entry(if x % 100 == 0 { 500 } else { 200 })
            .or_default() += 1;
        s.bytes_in += 700;
        s.bytes_out += 120;
    }
    s
}

fn main() {
    for n in [100, 1000] {
        bench(n);
    }
}

fn bench(n: u64) {
    let labels: Vec<LabelStats> = (0..10).map(|i| label_stats(i, n)).collect();
    let agents = 50u32;
    let seconds = 400u64;
    let mut payloads = Vec::new();
    for sec in 0..seconds {
        for a in 0..agents {
            let batch = MetricBatch {
                agent: a,
                second: 1_800_000_000 + sec,
                labels: labels
                    .iter()
                    .enumerate()
                    .map(|(i, s)| s.to_wire(&format!("GET /api/resource/{i}")))
                    .collect(),
                vus: 10,
                iterations: 10 * n,
                dropped_iterations: 0,
            };
            let env = Envelope {
                version: WIRE_VERSION,
                run_id: "bench".into(),
                sender: format!("agent-{a}"),
                seq: sec + 1,
                sent_at_ms: 0,
                body: Body::Metrics(batch),
            };
            payloads.push((a, sec + 1, wire::encode(&env).expect("encode")));
        }
    }
    let size = payloads[0].2.len();
    println!("{n} requests per label: batch wire size {size} bytes for 10 labels = {:.0} bytes per label", size as f64 / 10.0);
    let mut fold = Fold::new(10, Vec::new(), 1_800_000_000);
    let start = Instant::now();
    let mut last_sec = 0;
    for (agent, seq, bytes) in &payloads {
        let env = wire::decode(bytes).expect("decode");
        if let Body::Metrics(b) = env.body {
            if b.second != last_sec {
                last_sec = b.second;
                fold.tick(b.second);
            }
            fold.add(*agent, *seq, &b, b.second + 1).expect("fold");
        }
    }
    fold.finish();
    let took = start.elapsed().as_secs_f64();
    let batches = payloads.len() as f64;
    println!(
        "folded {} batches ({} agents × {} s, 10 labels each) in {:.2} s on one thread: {:.0} batches/s, {:.0} label-merges/s",
        payloads.len(), agents, seconds, took, batches / took, batches * 10.0 / took
    );

    let total = fold.total().expect("total");
    assert_eq!(
        total.requests,
        payloads.len() as u64 * 10 * n,
        "every request counted"
    );
    println!(
        "check: {} requests folded, p99 {:.1} ms",
        total.requests,
        total.latency.value_at_quantile(0.99) as f64 / 1000.0
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut journal, _) = BatchJournal::open(&dir.path().join("batches.log")).expect("journal");
    let mut journaled = Fold::new(10, Vec::new(), 1_800_000_000);
    let start = Instant::now();
    let mut last_sec = 0;
    for (agent, seq, bytes) in &payloads {
        let env = wire::decode(bytes).expect("decode");
        if let Body::Metrics(b) = env.body {
            if b.second != last_sec {
                last_sec = b.second;
                journaled.tick(b.second);
                journal.sync().expect("sync");
            }
            journaled.add(*agent, *seq, &b, b.second + 1).expect("fold");
            journal
                .record(&StoredBatch {
                    now_s: b.second + 1,
                    agent: *agent,
                    seq: *seq,
                    batch: b,
                })
                .expect("journal");
        }
    }
    journal.sync().expect("sync");
    journaled.finish();
    let took = start.elapsed().as_secs_f64();
    println!(
        "folded and journaled the same batches (synced once per second of the run) in {:.2} s: {:.0} batches/s",
        took,
        batches / took
    );
}
