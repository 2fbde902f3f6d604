//! Each attack of issue 10 (finding 1) against [`MetricBatch::check`], and the batches the
//! recorder really makes, which must pass.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use proptest::prelude::*;

use super::*;
use crate::hist::{clamp_latency, index_of, value_at_index};
use crate::metrics::{new_histogram, DenseLabel, LabelStats, DENSE_SLOTS_PER_BUCKET, NO_RESPONSE};

/// The test binary's allocator: the system's, noting the largest single allocation each thread
/// asks for, so a test can show that decoding a lying header allocates nothing it asks for.
struct Largest;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    let _ = LARGEST.try_with(|m| m.set(m.get().max(size)));
}

// SAFETY: every call is forwarded unchanged to the system allocator.
unsafe impl GlobalAlloc for Largest {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        note(l.size());
        unsafe { System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        note(l.size());
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        note(new);
        unsafe { System.realloc(p, l, new) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static ALLOCATOR: Largest = Largest;

/// The largest single allocation `f` made on this thread.
fn largest_allocation<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LARGEST.with(|m| m.set(0));
    let out = f();
    (out, LARGEST.with(Cell::get))
}

const T: u64 = 1_800_000_000;

fn window() -> std::ops::RangeInclusive<u64> {
    T - 10..=T + 5
}

/// A label as the recorder folds samples: one status and one latency per request, an error
/// kind for requests without a response, bytes and checks. Latencies log-spread from 0.2 ms
/// to ~30 s, plus a few past [`MAX_LATENCY_US`] (clamped, as the recorder does).
fn recorded(seed: u64, n: u64) -> LabelStats {
    let mut s = LabelStats::default();
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for i in 0..n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let us = if i % 97 == 0 {
            u64::MAX
        } else {
            (1u64 << (8 + x % 17)) + (x >> 40) % 1000
        };
        let status = [200u16, 200, 200, 201, 404, 500, NO_RESPONSE][(x % 7) as usize];
        s.requests += 1;
        if status >= 400 || status == NO_RESPONSE {
            s.errors += 1;
        }
        *s.status.entry(status).or_default() += 1;
        if status == NO_RESPONSE {
            *s.error_kinds.entry("timeout".into()).or_default() += 1;
        }
        s.latency.record(clamp_latency(us)).expect("in range");
        s.bytes_in += 700 + x % 100;
        s.bytes_out += 120;
        s.checks_passed += x % 3;
        s.checks_failed += x % 2;
    }
    s
}

fn real_batch() -> MetricBatch {
    MetricBatch {
        agent: 0,
        second: T,
        labels: vec![
            recorded(1, 500).to_wire("GET /"),
            recorded(2, 50).to_wire("POST /api/items/{{id}}"),
            recorded(3, 1).to_wire("https://example.com/search?q=x"),
        ],
        vus: 20,
        iterations: 400,
        dropped_iterations: 3,
    }
}

/// V2 bytes in herd's layout: `counts` as written (negative = a run of empty buckets).
fn v2(counts: &[i64]) -> Vec<u8> {
    let mut payload = Vec::new();
    for c in counts {
        let mut zz = ((c << 1) ^ (c >> 63)) as u64;
        for i in 0..9 {
            if i == 8 {
                payload.push(zz as u8);
                break;
            }
            if zz < 0x80 {
                payload.push(zz as u8);
                break;
            }
            payload.push((zz as u8 & 0x7f) | 0x80);
            zz >>= 7;
        }
    }
    let mut b = Vec::new();
    b.extend_from_slice(&0x1c84_9313u32.to_be_bytes());
    b.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    b.extend_from_slice(&0u32.to_be_bytes());
    b.extend_from_slice(&3u32.to_be_bytes());
    b.extend_from_slice(&1u64.to_be_bytes());
    b.extend_from_slice(&2u64.to_be_bytes());
    b.extend_from_slice(&1.0f64.to_bits().to_be_bytes());
    b.extend_from_slice(&payload);
    b
}

/// A label whose counters agree with a histogram of `count` requests.
fn label_with(hist: Vec<u8>, count: u64) -> LabelBatch {
    LabelBatch {
        label: "GET /".into(),
        requests: count,
        errors: 0,
        status: vec![(200, count)],
        error_kinds: vec![],
        latency_hist: hist,
        bytes_in: 0,
        bytes_out: 0,
        checks_passed: 0,
        checks_failed: 0,
    }
}

fn label_error(lb: &LabelBatch) -> LabelError {
    match check_label(lb) {
        Err(e) => e,
        Ok(_) => panic!("label `{}` passed", lb.label),
    }
}

#[test]
fn a_batch_as_the_recorder_makes_it_passes() {
    let b = real_batch();
    let c = b.check(window()).expect("a real batch passes");
    assert_eq!(c.labels.len(), 3);
    assert_eq!(c.sums.requests, 551);
    assert_eq!(c.sums.iterations, 400);
    let stats = b.labels[0].to_stats().expect("readable");
    assert_eq!(stats, recorded(1, 500), "the strict reader loses nothing");
}

#[test]
fn an_over_declared_payload_is_refused_without_allocating() {
    // ~50 bytes that declare a 4 GiB payload: hdrhistogram's deserializer would resize its
    // buffer to that length.
    let mut hist = v2(&[1, 1]);
    hist[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
    let lb = label_with(hist, 2);
    let (err, largest) = largest_allocation(|| check_label(&lb).err());
    assert!(
        matches!(
            err,
            Some(LabelError::Histogram(HistError::PayloadLength {
                declared: u32::MAX,
                present: 2
            }))
        ),
        "{err:?}"
    );
    assert!(largest < 4096, "largest allocation {largest} bytes");
    // One byte fewer than declared, or one more: refused too.
    let mut short = v2(&[1, 1]);
    short.pop();
    assert!(matches!(
        label_error(&label_with(short, 2)),
        LabelError::Histogram(HistError::PayloadLength { .. })
    ));
    let mut long = v2(&[1, 1]);
    long.push(0);
    assert!(matches!(
        label_error(&label_with(long, 2)),
        LabelError::Histogram(HistError::PayloadLength { .. })
    ));
}

#[test]
fn a_bucket_near_index_55000_is_refused() {
    let lb = label_with(v2(&[-55_000, 1]), 1);
    assert!(matches!(
        label_error(&lb),
        LabelError::Histogram(HistError::IndexTooHigh { index: 55_000 })
    ));
    let top = label_with(v2(&[-(i64::from(MAX_BUCKET_INDEX) + 1), 1]), 1);
    assert!(matches!(
        label_error(&top),
        LabelError::Histogram(HistError::IndexTooHigh { .. })
    ));
    let last = label_with(v2(&[-i64::from(MAX_BUCKET_INDEX), 1]), 1);
    assert!(check_label(&last).is_ok(), "the highest index is accepted");
}

#[test]
fn values_near_and_past_2_pow_63_are_refused() {
    for v in [u64::MAX / 2, 1 << 63, MAX_LATENCY_US + 1] {
        let lb = label_with(v2(&[-i64::from(index_of(v)), 1]), 1);
        assert!(
            matches!(
                label_error(&lb),
                LabelError::Histogram(HistError::IndexTooHigh { .. })
            ),
            "{v}"
        );
    }
}

#[test]
fn the_highest_latency_herd_records_is_accepted() {
    let mut s = LabelStats {
        requests: 2,
        status: [(200, 2)].into(),
        ..LabelStats::default()
    };
    s.latency.record(MAX_LATENCY_US).expect("in range");
    s.latency.record(1).expect("in range");
    let c = check_label(&s.to_wire("slow")).expect("the clamp's value passes");
    assert_eq!(c.count(), 2);
}

#[test]
fn histograms_in_another_layout_or_truncated_are_refused() {
    use hdrhistogram::serialization::{Serializer, V2DeflateSerializer, V2Serializer};
    let mut two_digits = hdrhistogram::Histogram::<u64>::new(2).expect("valid");
    two_digits.record(1000).expect("in range");
    let mut bytes = Vec::new();
    V2Serializer::new()
        .serialize(&two_digits, &mut bytes)
        .expect("serializes");
    assert!(matches!(
        label_error(&label_with(bytes, 1)),
        LabelError::Histogram(HistError::Layout { digits: 2, .. })
    ));
    let mut h = new_histogram();
    h.record(1000).expect("in range");
    let mut deflated = Vec::new();
    V2DeflateSerializer::new()
        .serialize(&h, &mut deflated)
        .expect("serializes");
    // Compressed: its cookie differs (and it may be shorter than a plain header).
    let e = label_error(&label_with(deflated, 1));
    assert!(
        matches!(
            e,
            LabelError::Histogram(HistError::NotV2 { .. } | HistError::TooShort { .. })
        ),
        "{e:?}"
    );
    assert!(matches!(
        label_error(&label_with(vec![0x1c; 39], 0)),
        LabelError::Histogram(HistError::TooShort { len: 39 })
    ));
    // A number cut off: a continuation byte ends the payload.
    let mut cut = v2(&[1]);
    cut.push(0x80);
    cut[4..8].copy_from_slice(&2u32.to_be_bytes());
    assert!(matches!(
        label_error(&label_with(cut, 1)),
        LabelError::Histogram(HistError::Truncated { .. })
    ));
}

#[test]
fn counts_that_overflow_are_refused() {
    let mut lb = label_with(Vec::new(), 0);
    lb.status = vec![(200, u64::MAX), (500, 1)];
    assert!(matches!(
        label_error(&lb),
        LabelError::Overflow {
            what: "status counts"
        }
    ));
    let big = i64::MAX;
    let lb = label_with(v2(&[big, big, big]), 0);
    assert!(matches!(
        label_error(&lb),
        LabelError::Histogram(HistError::CountOverflow)
    ));
    let mut b = real_batch();
    b.labels[0].bytes_in = u64::MAX / 2 + 1;
    b.labels[1].bytes_in = u64::MAX / 2 + 1;
    assert!(matches!(
        b.check(window()),
        Err(BatchError::Overflow {
            counter: "bytes_in"
        })
    ));
    let run = Counters {
        iterations: u64::MAX,
        ..Counters::default()
    };
    let one = Counters {
        iterations: 1,
        ..Counters::default()
    };
    assert_eq!(run.checked_add(&one), Err("iterations"));
}

#[test]
fn counts_that_disagree_are_refused() {
    let ok = recorded(7, 40).to_wire("GET /");
    let mut more_errors = ok.clone();
    more_errors.errors = ok.requests + 1;
    assert!(matches!(
        label_error(&more_errors),
        LabelError::MoreErrorsThanRequests { .. }
    ));
    let mut status = ok.clone();
    status.status[0].1 += 1;
    assert!(matches!(
        label_error(&status),
        LabelError::StatusCountMismatch { .. }
    ));
    let mut kinds = ok.clone();
    kinds.error_kinds = vec![("timeout".into(), ok.requests + 1)];
    assert!(matches!(
        label_error(&kinds),
        LabelError::MoreErrorKindsThanRequests { .. }
    ));
    let mut hist = ok.clone();
    hist.latency_hist = recorded(7, 41).to_wire("GET /").latency_hist;
    assert!(matches!(
        label_error(&hist),
        LabelError::HistogramCountMismatch {
            count: 41,
            requests: 40
        }
    ));
}

#[test]
fn too_many_labels_are_refused_before_any_is_read() {
    let one = label_with(Vec::new(), 0);
    let b = MetricBatch {
        agent: 0,
        second: T,
        labels: vec![one; MAX_LABELS_PER_BATCH + 1],
        vus: 1,
        iterations: 0,
        dropped_iterations: 0,
    };
    assert!(matches!(
        b.check(window()),
        Err(BatchError::TooManyLabels { count: 65_537 })
    ));
}

#[test]
fn names_and_lists_past_their_limits_are_refused() {
    let mut long = label_with(Vec::new(), 0);
    long.label = "x".repeat(MAX_LABEL_BYTES + 1);
    assert!(matches!(
        label_error(&long),
        LabelError::NameTooLong { bytes: 1025 }
    ));
    let mut b = real_batch();
    b.labels[1].label = "é".repeat(600);
    let msg = b.check(window()).expect_err("too long").to_string();
    assert!(msg.starts_with("label #1 `éééé"), "{msg}");
    assert!(
        msg.len() < 400,
        "the message shows the name shortened: {msg}"
    );
    let mut statuses = label_with(Vec::new(), 0);
    statuses.status = (0..=MAX_STATUS_CODES_PER_LABEL as u16)
        .map(|c| (c, 0))
        .collect();
    assert!(matches!(
        label_error(&statuses),
        LabelError::TooManyStatusCodes { count: 1025 }
    ));
    let mut kinds = label_with(Vec::new(), 0);
    kinds.error_kinds = (0..33).map(|i| (format!("k{i}"), 0)).collect();
    assert!(matches!(
        label_error(&kinds),
        LabelError::TooManyErrorKinds { count: 33 }
    ));
    kinds.error_kinds = vec![("k".repeat(65), 0)];
    assert!(matches!(
        label_error(&kinds),
        LabelError::ErrorKindTooLong { bytes: 65 }
    ));
}

#[test]
fn the_agent_clips_labels_at_a_character_boundary() {
    let long = "é".repeat(600);
    let clipped = clip_label(&long);
    assert_eq!(clipped.len(), MAX_LABEL_BYTES);
    assert!(long.starts_with(clipped));
    let odd = format!("x{long}");
    assert_eq!(clip_label(&odd).len(), MAX_LABEL_BYTES - 1);
    assert_eq!(clip_label("GET /"), "GET /");
}

#[test]
fn a_second_outside_the_window_or_too_many_vus_is_refused() {
    for second in [0, T - 11, T + 6, u64::MAX] {
        let b = MetricBatch {
            second,
            ..real_batch()
        };
        assert!(matches!(
            b.check(window()),
            Err(BatchError::SecondOutOfWindow { .. })
        ));
    }
    for second in [T - 10, T + 5] {
        let b = MetricBatch {
            second,
            ..real_batch()
        };
        assert!(b.check(window()).is_ok());
    }
    let b = MetricBatch {
        vus: MAX_VUS + 1,
        ..real_batch()
    };
    assert!(matches!(
        b.check(window()),
        Err(BatchError::TooManyVus { .. })
    ));
}

#[test]
fn a_far_bucket_costs_a_dense_label_a_few_bytes() {
    let lb = label_with(v2(&[-i64::from(MAX_BUCKET_INDEX), 1]), 1);
    let l = check_label(&lb).expect("valid");
    let mut d = DenseLabel::default();
    d.add(&l);
    assert!(
        d.footprint() <= DENSE_SLOTS_PER_BUCKET * 8 + 16,
        "{}",
        d.footprint()
    );
    let s = d.to_stats();
    assert_eq!(s.latency.len(), 1);
    assert_eq!(index_of(s.latency.max()), MAX_BUCKET_INDEX);
}

fn bucket_sets() -> impl Strategy<Value = Vec<Vec<(u32, u64)>>> {
    let set = prop::collection::btree_map(0..=MAX_BUCKET_INDEX, 1u64..1000, 0..60);
    prop::collection::vec(set.prop_map(|m| m.into_iter().collect()), 1..8)
}

/// A label whose histogram holds exactly `buckets`.
fn label_of(buckets: &[(u32, u64)]) -> LabelBatch {
    let mut s = LabelStats::default();
    for (i, n) in buckets {
        let v = value_at_index(*i).expect("in range");
        s.latency.record_n(v, *n).expect("in range");
        s.requests += n;
    }
    s.status.insert(200, s.requests);
    s.to_wire("x")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Whatever buckets arrive, a dense label holds them exactly, in memory bounded by the
    /// buckets it received.
    #[test]
    fn dense_labels_are_exact_and_bounded_by_what_they_received(sets in bucket_sets()) {
        let mut dense = DenseLabel::default();
        let mut merged = LabelStats::default();
        let mut received = 0;
        for set in &sets {
            let l = check_label(&label_of(set)).expect("valid");
            received += l.buckets();
            dense.add(&l);
            l.merge_into(&mut merged);
        }
        prop_assert_eq!(dense.to_stats(), merged);
        prop_assert!(dense.footprint() <= received * (DENSE_SLOTS_PER_BUCKET * 8 + 16));
    }
}
