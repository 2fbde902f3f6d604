//! Fuzz (issue 10, finding 1): 12,000 mutated real batches through what the bus and the
//! aggregator do with a message — `wire::decode`, then `Fold::add` (which runs
//! `MetricBatch::check`) — into one long-lived fold, as a run under attack would see them.
//!
//! The batches are made as the agent's recorder makes them (several labels, latencies spread
//! from 0.25 ms to seconds, timeouts, errors, clipped names), then mutated: bit flips, byte
//! overwrites, truncation and insertion on the encoded bytes; overwrites of the decoded fields
//! (second, counters, label names, status lists, histogram bytes, declared payload length,
//! buckets anywhere up to index 60,000, repeated labels).
//!
//! Holds: nothing panics; a rejected batch changes nothing; what was accepted adds up exactly
//! (status counts and histogram counts equal requests for every label, run totals equal the
//! sum of what was accepted); the series covers only the run's window; and the test process's
//! resident memory grows by less than [`RSS_LIMIT_KIB`] (256 MiB) while the cases run. Growth,
//! not the total: other tests of this binary run beside it in the same process.

use std::cell::RefCell;

use messages::bounds::clip_label;
use messages::hist::clamp_latency;
use messages::metrics::{LabelStats, MetricBatch, NO_RESPONSE};
use messages::wire::{self, Body, Envelope, WIRE_VERSION};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

use super::tests::T;
use super::*;

/// Cases fed to the one fold.
const CASES: u32 = 12_000;
/// The test process's resident set may not grow past this while the cases run.
const RSS_LIMIT_KIB: u64 = 256 * 1024;
/// The fold's clock moves one second every this many cases.
const CASES_PER_SECOND: u32 = 40;

/// VmRSS of this process in KiB (0 where /proc is missing).
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// A label as the recorder folds samples (`agent/src/recorder.rs`).
fn recorded(seed: u64, n: u64) -> LabelStats {
    let mut s = LabelStats::default();
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for _ in 0..n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let (status, us, kind) = match x % 200 {
            0 => (NO_RESPONSE, 30_000_000, Some("timeout")),
            1 => (NO_RESPONSE, 1_500, Some("connect")),
            2..=5 => (500, 200_000 + x % 100_000, None),
            6..=15 => (404, 900 + x % 500, None),
            // Mostly fast, with a long tail: 0.25 ms to ~4 s.
            _ => (200, (1u64 << (8 + (x >> 8) % 14)) + (x >> 32) % 4096, None),
        };
        s.requests += 1;
        if status >= 400 || status == NO_RESPONSE {
            s.errors += 1;
        }
        *s.status.entry(status).or_default() += 1;
        if let Some(k) = kind {
            *s.error_kinds.entry(k.into()).or_default() += 1;
        }
        s.latency.record(clamp_latency(us)).unwrap_or_default();
        s.bytes_in += 600 + x % 400;
        s.bytes_out += 150;
        s.checks_passed += x % 3;
        s.checks_failed += u64::from(x % 50 == 0);
    }
    s
}

/// Eight batches of one to six labels, as agents send them.
fn corpus() -> Vec<MetricBatch> {
    let names = [
        "GET /".to_string(),
        "POST /api/orders".into(),
        "GET /api/items/{{id}}".into(),
        "login".into(),
        format!("https://shop.example/search?q={}", "x".repeat(1500)),
        "GET /static/app.js".into(),
    ];
    (0..8u64)
        .map(|b| MetricBatch {
            agent: 0,
            second: T,
            labels: (0..=b % 6)
                .map(|l| {
                    let name = &names[l as usize];
                    recorded(b * 10 + l, 50 + (b * 97 + l * 31) % 750).to_wire(clip_label(name))
                })
                .collect(),
            vus: 10 + b,
            iterations: 100 * (b + 1),
            dropped_iterations: b % 2,
        })
        .collect()
}

/// One overwrite of a decoded field.
#[derive(Debug, Clone)]
enum Field {
    Second(u64),
    LabelCounter(Index, u8, u64),
    BatchCounter(u8, u64),
    LabelName(Index, String),
    /// This many status entries, made from a seed (generating them one by one as proptest
    /// values costs more than the rest of the case), the first with this count.
    Status(Index, usize, u64, u64),
    /// The histogram's declared payload length.
    HistLength(Index, u32),
    /// The histogram replaced by one bucket (counters made to agree with it).
    HistBucket(Index, u32, u64),
    HistBytes(Index, Vec<u8>),
    HistTruncate(Index, Index),
    /// The labels repeated to this many.
    Repeat(usize),
}

/// One change to the encoded bytes.
#[derive(Debug, Clone)]
enum Bytes {
    Flip(Index, u8),
    Set(Index, u8),
    Truncate(Index),
    Insert(Index, Vec<u8>),
}

fn value() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0),
        Just(1),
        Just(u64::MAX),
        Just(u64::MAX / 2 + 1),
        Just(1 << 63),
        0u64..100_000,
        any::<u64>(),
    ]
}

fn field() -> impl Strategy<Value = Field> {
    let name = prop_oneof![
        prop::collection::vec(any::<char>(), 0..16).prop_map(String::from_iter),
        (1000usize..1100).prop_map(|n| "n".repeat(n)),
    ];
    prop_oneof![
        prop_oneof![Just(0), Just(u64::MAX), T - 40..T + 400, any::<u64>()].prop_map(Field::Second),
        (any::<Index>(), 0u8..6, value()).prop_map(|(i, c, v)| Field::LabelCounter(i, c, v)),
        (0u8..3, value()).prop_map(|(c, v)| Field::BatchCounter(c, v)),
        (any::<Index>(), name).prop_map(|(i, n)| Field::LabelName(i, n)),
        (any::<Index>(), 0usize..1100, any::<u64>(), value())
            .prop_map(|(i, n, seed, v)| Field::Status(i, n, seed, v)),
        (any::<Index>(), any::<u32>()).prop_map(|(i, n)| Field::HistLength(i, n)),
        (any::<Index>(), 0u32..60_000, prop_oneof![1u64..5, value()])
            .prop_map(|(i, b, n)| Field::HistBucket(i, b, n)),
        (any::<Index>(), prop::collection::vec(any::<u8>(), 0..80))
            .prop_map(|(i, b)| Field::HistBytes(i, b)),
        (any::<Index>(), any::<Index>()).prop_map(|(i, j)| Field::HistTruncate(i, j)),
        (1usize..64).prop_map(Field::Repeat),
    ]
}

fn bytes() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        (any::<Index>(), 0u8..8).prop_map(|(i, b)| Bytes::Flip(i, b)),
        (any::<Index>(), any::<u8>()).prop_map(|(i, v)| Bytes::Set(i, v)),
        any::<Index>().prop_map(Bytes::Truncate),
        (any::<Index>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(i, v)| Bytes::Insert(i, v)),
    ]
}

/// V2 bytes in herd's layout holding `count` at bucket `index`.
fn one_bucket(index: u32, count: u64) -> Vec<u8> {
    let mut payload = Vec::new();
    for c in [-i64::from(index), count.min(i64::MAX as u64) as i64] {
        let mut zz = ((c << 1) ^ (c >> 63)) as u64;
        for i in 0..9 {
            if i == 8 || zz < 0x80 {
                payload.push(zz as u8);
                break;
            }
            payload.push((zz as u8 & 0x7f) | 0x80);
            zz >>= 7;
        }
    }
    let mut b = Vec::new();
    for w in [0x1c84_9313u32, payload.len() as u32, 0, 3] {
        b.extend_from_slice(&w.to_be_bytes());
    }
    for w in [1u64, 2, 1.0f64.to_bits()] {
        b.extend_from_slice(&w.to_be_bytes());
    }
    b.extend_from_slice(&payload);
    b
}

fn apply_field(b: &mut MetricBatch, f: &Field) {
    let n = b.labels.len();
    match f {
        Field::Second(s) => b.second = *s,
        Field::BatchCounter(c, v) => match c {
            0 => b.vus = *v,
            1 => b.iterations = *v,
            _ => b.dropped_iterations = *v,
        },
        Field::Repeat(to) => {
            b.labels = b.labels.iter().cycle().take(*to).cloned().collect();
        }
        Field::LabelCounter(i, c, v) if n > 0 => {
            let l = &mut b.labels[i.index(n)];
            *[
                &mut l.requests,
                &mut l.errors,
                &mut l.bytes_in,
                &mut l.bytes_out,
                &mut l.checks_passed,
                &mut l.checks_failed,
            ][usize::from(*c)] = *v;
        }
        Field::LabelName(i, name) if n > 0 => b.labels[i.index(n)].label = name.clone(),
        Field::Status(i, len, seed, v) if n > 0 => {
            let mut x = seed | 1;
            let mut status: Vec<(u16, u64)> = (0..*len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    ((x >> 48) as u16, x % 1000)
                })
                .collect();
            if let Some(first) = status.first_mut() {
                first.1 = *v;
            }
            b.labels[i.index(n)].status = status;
        }
        Field::HistLength(i, len) if n > 0 => {
            let h = &mut b.labels[i.index(n)].latency_hist;
            if h.len() >= 8 {
                h[4..8].copy_from_slice(&len.to_be_bytes());
            }
        }
        Field::HistBucket(i, index, count) if n > 0 => {
            let l = &mut b.labels[i.index(n)];
            l.latency_hist = one_bucket(*index, *count);
            (l.requests, l.errors, l.status, l.error_kinds) =
                (*count, 0, vec![(200, *count)], vec![]);
        }
        Field::HistBytes(i, bytes) if n > 0 => b.labels[i.index(n)].latency_hist = bytes.clone(),
        Field::HistTruncate(i, at) if n > 0 => {
            let h = &mut b.labels[i.index(n)].latency_hist;
            if !h.is_empty() {
                let keep = at.index(h.len());
                h.truncate(keep);
            }
        }
        _ => {}
    }
}

fn apply_bytes(bytes: &mut Vec<u8>, m: &Bytes) {
    if bytes.is_empty() {
        return;
    }
    let n = bytes.len();
    match m {
        Bytes::Flip(i, bit) => bytes[i.index(n)] ^= 1 << bit,
        Bytes::Set(i, v) => bytes[i.index(n)] = *v,
        Bytes::Truncate(i) => bytes.truncate(i.index(n)),
        Bytes::Insert(i, v) => {
            let at = i.index(n);
            bytes.splice(at..at, v.iter().copied());
        }
    }
}

/// What must not change when a batch is rejected (cheap enough to take every case).
fn fingerprint(f: &Fold) -> impl PartialEq + std::fmt::Debug {
    (
        (
            f.seen.len(),
            f.sums,
            f.iterations,
            f.dropped,
            f.late_batches,
        ),
        (
            f.open.len(),
            f.totals.len(),
            f.by_region.len(),
            f.rows.len(),
        ),
        f.batches.values().sum::<u64>(),
    )
}

#[derive(Default, Debug)]
struct Tally {
    accepted: u32,
    rejected: u32,
    duplicates: u32,
    undecodable: u32,
    peak_rss_kib: u64,
}

struct State {
    fold: Fold,
    now: u64,
    case: u32,
    tally: Tally,
}

#[test]
fn mutated_real_batches_never_panic_never_half_apply_and_stay_within_memory() {
    let rss_at_start = rss_kib();
    let corpus = corpus();
    let case = (
        0..corpus.len(),
        0u32..4,
        prop::collection::vec(field(), 0..=2),
        prop::collection::vec(bytes(), 0..=2),
    );
    let state = RefCell::new(State {
        fold: Fold::new(
            10,
            vec!["eu".into(), "eu".into(), "us".into(), "us".into()],
            T,
        ),
        now: T + 1,
        case: 0,
        tally: Tally::default(),
    });
    let config = Config {
        cases: CASES,
        failure_persistence: None,
        max_shrink_iters: 64,
        ..Config::default()
    };
    let rng = TestRng::deterministic_rng(RngAlgorithm::ChaCha);
    let mut runner = TestRunner::new_with_rng(config, rng);
    let result = runner.run(&case, |(idx, agent, fields, byte_muts)| {
        let mut st = state.borrow_mut();
        st.case += 1;
        if st.case % CASES_PER_SECOND == 0 {
            st.now += 1;
            let now = st.now;
            st.fold.tick(now);
        }
        if st.case % 200 == 0 {
            st.tally.peak_rss_kib = st
                .tally
                .peak_rss_kib
                .max(rss_kib().saturating_sub(rss_at_start));
            prop_assert!(
                st.tally.peak_rss_kib < RSS_LIMIT_KIB,
                "RSS {} KiB",
                st.tally.peak_rss_kib
            );
        }
        let mut b = corpus[idx].clone();
        b.agent = agent;
        b.second = st.now - 1 - idx as u64 % 3;
        for f in &fields {
            apply_field(&mut b, f);
        }
        let env = Envelope {
            version: WIRE_VERSION,
            run_id: "fuzz".into(),
            sender: format!("agent-{agent}"),
            seq: u64::from(st.case),
            sent_at_ms: st.now * 1000,
            body: Body::Metrics(b),
        };
        let Ok(mut bytes) = wire::encode(&env) else {
            return Ok(());
        };
        for m in &byte_muts {
            apply_bytes(&mut bytes, m);
        }
        let (seq, b) = match wire::decode(&bytes) {
            Ok(Envelope {
                seq,
                body: Body::Metrics(b),
                ..
            }) => (seq, b),
            _ => {
                st.tally.undecodable += 1;
                return Ok(());
            }
        };
        let now = st.now;
        let whole = (st.case % 50 == 0).then(|| st.fold.clone());
        let before = fingerprint(&st.fold);
        match st.fold.add(agent, seq, &b, now) {
            Ok(Added::Duplicate) => st.tally.duplicates += 1,
            Ok(_) => st.tally.accepted += 1,
            Err(e) => {
                st.tally.rejected += 1;
                prop_assert!(!e.to_string().is_empty());
                prop_assert_eq!(fingerprint(&st.fold), before);
                if let Some(mut whole) = whole {
                    whole.rejections = st.fold.rejections.clone();
                    prop_assert!(whole == st.fold, "a rejected batch changed the fold");
                }
            }
        }
        Ok(())
    });
    let mut st = state.into_inner();
    if let Err(e) = result {
        panic!("{e}");
    }
    st.fold.finish();
    st.tally.peak_rss_kib = st
        .tally
        .peak_rss_kib
        .max(rss_kib().saturating_sub(rss_at_start));
    eprintln!("fuzz: {:?}", st.tally);
    let f = &st.fold;
    assert!(st.tally.peak_rss_kib < RSS_LIMIT_KIB);
    assert!(st.tally.accepted > CASES / 10, "{:?}", st.tally);
    assert!(st.tally.rejected > CASES / 10, "{:?}", st.tally);
    // What was accepted adds up exactly, label by label and in total.
    let total = f.total().expect("total");
    assert_eq!(total.requests, f.sums.requests);
    assert_eq!(total.bytes_in, f.sums.bytes_in);
    assert_eq!(f.iterations, f.sums.iterations);
    for (label, s) in &f.totals {
        assert_eq!(s.status.values().sum::<u64>(), s.requests, "{label}");
        assert_eq!(s.latency.len(), s.requests, "{label}");
        assert!(s.errors <= s.requests, "{label}");
    }
    let regions: u64 = f.by_region.values().map(|s| s.requests).sum();
    assert_eq!(regions, f.sums.requests);
    // The series stays within the run's window.
    let span = st.now + FUTURE_MARGIN_S - f.first_second + 1;
    assert!(f.rows.len() as u64 <= span, "{} rows", f.rows.len());
}
