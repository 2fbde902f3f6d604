//! Per-second metric batches and the exact merge of their stats.
//!
//! Percentiles are only ever computed from merged HdrHistograms: averaging per-agent
//! percentiles (what the AWS solution does) gives numbers no request ever saw.

use std::collections::BTreeMap;

use hdrhistogram::serialization::{Serializer, V2Serializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::hist::{self, HistError, MAX_LATENCY_US};
pub use crate::hist::{index_of, value_at_index};

/// Status recorded for a request that got no response (connect error, timeout, reset…).
pub const NO_RESPONSE: u16 = 0;

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("latency histogram of label `{label}` is corrupt: {reason}")]
    BadHistogram { label: String, reason: HistError },
    #[error("cannot merge latency histograms: {0}")]
    Merge(String),
}

/// Latency histogram in microseconds, 3 significant digits, growing to the largest value seen.
pub fn new_histogram() -> Histogram<u64> {
    // 3 significant digits is always a valid precision, so this cannot fail.
    Histogram::<u64>::new(3).unwrap_or_else(|_| unreachable!("sigfig 3 is valid"))
}

/// Everything known about one label over some time, in memory.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelStats {
    pub requests: u64,
    /// Requests that failed: no response, or a status the step's status check does not accept
    /// (without a status check: >= 400). Other failed checks are counted in `checks_failed`.
    pub errors: u64,
    /// Status code → count; [`NO_RESPONSE`] for requests without a response.
    pub status: BTreeMap<u16, u64>,
    /// Why requests without a response failed (`timeout`, `connect`, `tls`, `io`…).
    pub error_kinds: BTreeMap<String, u64>,
    pub latency: Histogram<u64>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub checks_passed: u64,
    pub checks_failed: u64,
}

impl Default for LabelStats {
    fn default() -> Self {
        LabelStats {
            requests: 0,
            errors: 0,
            status: BTreeMap::new(),
            error_kinds: BTreeMap::new(),
            latency: new_histogram(),
            bytes_in: 0,
            bytes_out: 0,
            checks_passed: 0,
            checks_failed: 0,
        }
    }
}

impl LabelStats {
    /// Adds `other` into `self`. Exact: counts add, histograms add bucket by bucket. Counters
    /// saturate rather than wrap; the aggregator refuses batches that would overflow its run
    /// totals (`MetricBatch::check`, `Counters::checked_add`), so they never get that far.
    pub fn merge(&mut self, other: &LabelStats) -> Result<(), MetricsError> {
        self.latency
            .add(&other.latency)
            .map_err(|e| MetricsError::Merge(format!("{e:?}")))?;
        add(&mut self.requests, other.requests);
        add(&mut self.errors, other.errors);
        for (k, v) in &other.status {
            add(self.status.entry(*k).or_default(), *v);
        }
        for (k, v) in &other.error_kinds {
            add(self.error_kinds.entry(k.clone()).or_default(), *v);
        }
        add(&mut self.bytes_in, other.bytes_in);
        add(&mut self.bytes_out, other.bytes_out);
        add(&mut self.checks_passed, other.checks_passed);
        add(&mut self.checks_failed, other.checks_failed);
        Ok(())
    }

    pub fn to_wire(&self, label: &str) -> LabelBatch {
        let mut hist = Vec::with_capacity(256);
        // Serializing into a Vec cannot fail for a well-formed histogram.
        if V2Serializer::new()
            .serialize(&self.latency, &mut hist)
            .is_err()
        {
            hist.clear();
        }
        LabelBatch {
            label: label.to_string(),
            requests: self.requests,
            errors: self.errors,
            status: self.status.iter().map(|(k, v)| (*k, *v)).collect(),
            error_kinds: self
                .error_kinds
                .iter()
                .map(|(k, v)| (k.clone(), *v))
                .collect(),
            latency_hist: hist,
            bytes_in: self.bytes_in,
            bytes_out: self.bytes_out,
            checks_passed: self.checks_passed,
            checks_failed: self.checks_failed,
        }
    }
}

/// One label's stats for one second, as it travels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelBatch {
    pub label: String,
    pub requests: u64,
    pub errors: u64,
    pub status: Vec<(u16, u64)>,
    pub error_kinds: Vec<(String, u64)>,
    /// HdrHistogram V2 serialization of latency in µs. As bytes, not a sequence of u8:
    /// bincode then copies it in one go instead of visiting every byte.
    #[serde(with = "serde_bytes")]
    pub latency_hist: Vec<u8>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub checks_passed: u64,
    pub checks_failed: u64,
}

impl LabelBatch {
    /// Everything but the histogram bytes.
    fn clone_counters(&self) -> LabelBatch {
        LabelBatch {
            label: String::new(),
            requests: self.requests,
            errors: self.errors,
            status: self.status.clone(),
            error_kinds: self.error_kinds.clone(),
            latency_hist: Vec::new(),
            bytes_in: self.bytes_in,
            bytes_out: self.bytes_out,
            checks_passed: self.checks_passed,
            checks_failed: self.checks_failed,
        }
    }

    /// The label as in-memory stats. The histogram bytes are read by [`hist::buckets`], never by
    /// hdrhistogram's deserializer (which trusts the lengths in the header).
    pub fn to_stats(&self) -> Result<LabelStats, MetricsError> {
        let b = hist::buckets(&self.latency_hist).map_err(|reason| MetricsError::BadHistogram {
            label: self.label.clone(),
            reason,
        })?;
        let mut latency = new_histogram();
        for (i, n) in b.buckets {
            record_bucket(&mut latency, i, n);
        }
        Ok(LabelStats {
            requests: self.requests,
            errors: self.errors,
            status: self.status.iter().copied().collect(),
            error_kinds: self.error_kinds.iter().cloned().collect(),
            latency,
            bytes_in: self.bytes_in,
            bytes_out: self.bytes_out,
            checks_passed: self.checks_passed,
            checks_failed: self.checks_failed,
        })
    }
}

/// A label batch decoded without building a histogram: its counters and the non-zero
/// (value, count) buckets of its latency histogram.
///
/// The aggregator folds tens of thousands of batches a second. Deserializing each label's
/// histogram allocates and zeroes a dense counts array (tens of KB) and adding it walks that
/// array again; the V2 payload is already a sparse run-length list, so walking it once and
/// recording each bucket's representative value into the target (same layout: lowest 1,
/// 3 significant digits) gives the identical histogram for a fraction of the work.
///
/// Only [`SparseLabel::decode`] makes one, so its buckets are always within herd's range
/// (index ≤ [`hist::MAX_BUCKET_INDEX`]) and merging it cannot fail.
#[derive(Debug, Clone, PartialEq)]
pub struct SparseLabel {
    pub label: String,
    /// The batch's counters as they came (no histogram: building an empty one costs a
    /// zeroed allocation per label).
    counters: LabelBatch,
    /// (bucket index, count), non-zero only, indexes increasing.
    buckets: Vec<(u32, u64)>,
    /// The sum of the bucket counts.
    count: u64,
}

impl SparseLabel {
    /// Reads the histogram strictly ([`hist::buckets`]: the payload present, herd's layout,
    /// indexes within range); nothing is merged anywhere yet. The counters are not checked here:
    /// `MetricBatch::check` (`bounds.rs`) does that, and calls this.
    pub fn decode(lb: &LabelBatch) -> Result<SparseLabel, MetricsError> {
        let b = hist::buckets(&lb.latency_hist).map_err(|reason| MetricsError::BadHistogram {
            label: lb.label.clone(),
            reason,
        })?;
        Ok(SparseLabel {
            label: lb.label.clone(),
            counters: lb.clone_counters(),
            buckets: b.buckets,
            count: b.count,
        })
    }

    /// How many requests its histogram holds.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// How many non-zero buckets its histogram has.
    pub fn buckets(&self) -> usize {
        self.buckets.len()
    }

    /// Adds this label into `into`, exactly as `into.merge(&lb.to_stats()?)` would.
    pub fn merge_into(&self, into: &mut LabelStats) {
        for (i, n) in &self.buckets {
            record_bucket(&mut into.latency, *i, *n);
        }
        let c = &self.counters;
        add(&mut into.requests, c.requests);
        add(&mut into.errors, c.errors);
        for (k, v) in &c.status {
            add(into.status.entry(*k).or_default(), *v);
        }
        for (k, v) in &c.error_kinds {
            match into.error_kinds.get_mut(k) {
                Some(n) => add(n, *v),
                None => {
                    into.error_kinds.insert(k.clone(), *v);
                }
            }
        }
        add(&mut into.bytes_in, c.bytes_in);
        add(&mut into.bytes_out, c.bytes_out);
        add(&mut into.checks_passed, c.checks_passed);
        add(&mut into.checks_failed, c.checks_failed);
    }
}

/// `*to += n`, saturating: counters never wrap (the aggregator refuses batches that would
/// overflow its totals before they get here).
fn add(to: &mut u64, n: u64) {
    *to = to.saturating_add(n);
}

/// Records `n` requests at bucket `i`'s value. Cannot fail for the indexes [`hist::buckets`]
/// admits: their values are at most [`MAX_LATENCY_US`], which an auto-resizing histogram
/// always grows to; the saturating path only guards that invariant.
fn record_bucket(h: &mut Histogram<u64>, i: u32, n: u64) {
    let v = value_at_index(i).map_or(MAX_LATENCY_US, |v| v.min(MAX_LATENCY_US));
    if h.record_n(v, n).is_err() {
        h.saturating_record_n(v, n);
    }
}

/// A label's counters without a histogram (an empty `Histogram::new(3)` is a zeroed 16 KiB).
#[derive(Debug, Clone, Default, PartialEq)]
struct Tally {
    requests: u64,
    errors: u64,
    status: BTreeMap<u16, u64>,
    error_kinds: BTreeMap<String, u64>,
    bytes_in: u64,
    bytes_out: u64,
    checks_passed: u64,
    checks_failed: u64,
}

impl Tally {
    fn add(&mut self, c: &LabelBatch) {
        add(&mut self.requests, c.requests);
        add(&mut self.errors, c.errors);
        for (k, v) in &c.status {
            add(self.status.entry(*k).or_default(), *v);
        }
        for (k, v) in &c.error_kinds {
            match self.error_kinds.get_mut(k) {
                Some(n) => add(n, *v),
                None => {
                    self.error_kinds.insert(k.clone(), *v);
                }
            }
        }
        add(&mut self.bytes_in, c.bytes_in);
        add(&mut self.bytes_out, c.bytes_out);
        add(&mut self.checks_passed, c.checks_passed);
        add(&mut self.checks_failed, c.checks_failed);
    }
}

/// How many dense counts (8 bytes each) a label-second may hold per bucket it has received.
///
/// A real label-second fills its dense range well: 1,000 requests spread from 0.25 ms to 2 s
/// put ~700 buckets below index ~12,300, and the fleet's batches for that second add more. A
/// forged label with one bucket near the top index would otherwise cost a 220 KB array for
/// 60 bytes on the wire. With this bound it costs a few slots and one sparse entry, and
/// buckets spaced out on purpose (2 bytes each on the wire) cost at most 64 bytes of array
/// each: 32 times their size, less than decoding them costs for a moment anyway.
pub const DENSE_SLOTS_PER_BUCKET: usize = 8;

/// A label's stats being accumulated from many agents: latency as plain counts by bucket
/// index, so adding a batch is one array add per bucket; turned into [`LabelStats`] once,
/// when the second is read or finalized.
///
/// Memory is bounded by what it received: the dense array covers indexes up to
/// [`DENSE_SLOTS_PER_BUCKET`] × the buckets received so far; buckets above it wait in a sorted
/// list and move into the array once it has grown over them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DenseLabel {
    tally: Tally,
    counts: Vec<u64>,
    /// (index, count) for indexes at or above `counts.len()`, increasing.
    far: Vec<(u32, u64)>,
    received: usize,
}

impl DenseLabel {
    pub fn add(&mut self, l: &SparseLabel) {
        self.tally.add(&l.counters);
        self.received = self.received.saturating_add(l.buckets.len());
        // Buckets come in index order: grow once, towards the last one.
        if let Some((last, _)) = l.buckets.last() {
            let need = *last as usize + 1;
            let allowed = self.received.saturating_mul(DENSE_SLOTS_PER_BUCKET);
            let len = need.min(allowed);
            if len > self.counts.len() {
                self.grow(len);
            }
        }
        let dense = self.counts.len();
        let split = l.buckets.partition_point(|(i, _)| (*i as usize) < dense);
        for (i, n) in &l.buckets[..split] {
            if let Some(c) = self.counts.get_mut(*i as usize) {
                add(c, *n);
            }
        }
        if split < l.buckets.len() {
            self.far = merge_sorted(&self.far, &l.buckets[split..]);
        }
    }

    fn grow(&mut self, len: usize) {
        self.counts.reserve_exact(len - self.counts.len());
        self.counts.resize(len, 0);
        let moved = self.far.partition_point(|(i, _)| (*i as usize) < len);
        for (i, n) in self.far.drain(..moved) {
            if let Some(c) = self.counts.get_mut(i as usize) {
                add(c, n);
            }
        }
    }

    /// Bytes held for its buckets (the dense array and the sorted list).
    pub fn footprint(&self) -> usize {
        self.counts.capacity() * 8 + self.far.capacity() * std::mem::size_of::<(u32, u64)>()
    }

    /// The label-second as stats. Cannot fail: every bucket was admitted by [`hist::buckets`].
    pub fn to_stats(&self) -> LabelStats {
        let mut latency = new_histogram();
        let dense = self.counts.iter().enumerate().filter(|(_, n)| **n > 0);
        for (i, n) in dense
            .map(|(i, n)| (i as u32, *n))
            .chain(self.far.iter().copied())
        {
            record_bucket(&mut latency, i, n);
        }
        let t = &self.tally;
        LabelStats {
            requests: t.requests,
            errors: t.errors,
            status: t.status.clone(),
            error_kinds: t.error_kinds.clone(),
            latency,
            bytes_in: t.bytes_in,
            bytes_out: t.bytes_out,
            checks_passed: t.checks_passed,
            checks_failed: t.checks_failed,
        }
    }
}

/// Two increasing (index, count) lists as one, counts of the same index added.
fn merge_sorted(a: &[(u32, u64)], b: &[(u32, u64)]) -> Vec<(u32, u64)> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while let (Some(&p), Some(&q)) = (a.get(i), b.get(j)) {
        if p.0 < q.0 {
            out.push(p);
            i += 1;
        } else if q.0 < p.0 {
            out.push(q);
            j += 1;
        } else {
            out.push((p.0, p.1.saturating_add(q.1)));
            i += 1;
            j += 1;
        }
    }
    out.extend_from_slice(a.get(i..).unwrap_or_default());
    out.extend_from_slice(b.get(j..).unwrap_or_default());
    out
}

/// One agent, one wall-clock second.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetricBatch {
    pub agent: u32,
    /// Unix second the samples belong to (by their completion time). An agent may send more
    /// than one batch for a second (late samples); the aggregator merges them.
    pub second: u64,
    pub labels: Vec<LabelBatch>,
    /// Active VUs at the end of the second.
    pub vus: u64,
    pub iterations: u64,
    pub dropped_iterations: u64,
}

impl MetricBatch {
    /// Merges every label of this batch into `into` (label → stats).
    pub fn fold_into(&self, into: &mut BTreeMap<String, LabelStats>) -> Result<(), MetricsError> {
        for lb in &self.labels {
            let stats = lb.to_stats()?;
            match into.get_mut(&lb.label) {
                Some(existing) => existing.merge(&stats)?,
                None => {
                    into.insert(lb.label.clone(), stats);
                }
            }
        }
        Ok(())
    }

    pub fn requests(&self) -> u64 {
        self.labels
            .iter()
            .fold(0u64, |n, l| n.saturating_add(l.requests))
    }
}

/// The sum of all labels (for totals lines).
pub fn total_of<'a>(
    stats: impl IntoIterator<Item = &'a LabelStats>,
) -> Result<LabelStats, MetricsError> {
    let mut total = LabelStats::default();
    for s in stats {
        total.merge(s)?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn stats_from(samples: &[(u64, u16)]) -> LabelStats {
        let mut s = LabelStats::default();
        for (lat, status) in samples {
            s.requests += 1;
            if *status >= 400 {
                s.errors += 1;
            }
            *s.status.entry(*status).or_default() += 1;
            s.latency.record(*lat).unwrap();
            s.bytes_in += 10;
        }
        s
    }

    fn sample() -> impl Strategy<Value = Vec<(u64, u16)>> {
        prop::collection::vec(
            (
                1u64..10_000_000,
                prop::sample::select(vec![200u16, 404, 500, 0]),
            ),
            0..200,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn merge_is_exact_and_associative(a in sample(), b in sample(), c in sample()) {
            let (sa, sb, sc) = (stats_from(&a), stats_from(&b), stats_from(&c));
            let mut left = sa.clone();
            left.merge(&sb).unwrap();
            left.merge(&sc).unwrap();
            let mut bc = sb.clone();
            bc.merge(&sc).unwrap();
            let mut right = sa.clone();
            right.merge(&bc).unwrap();
            prop_assert_eq!(&left, &right);
            let all: Vec<_> = a.iter().chain(&b).chain(&c).copied().collect();
            let union = stats_from(&all);
            prop_assert_eq!(left.requests, all.len() as u64);
            prop_assert_eq!(&left, &union);
            prop_assert_eq!(left.latency.value_at_quantile(0.99), union.latency.value_at_quantile(0.99));
        }

        #[test]
        fn sparse_merge_equals_deserialize_and_add(a in sample(), b in sample()) {
            let (sa, sb) = (stats_from(&a), stats_from(&b));
            let mut slow = sa.clone();
            slow.merge(&sb.to_wire("x").to_stats().unwrap()).unwrap();
            let mut fast = sa.clone();
            SparseLabel::decode(&sb.to_wire("x")).unwrap().merge_into(&mut fast);
            prop_assert_eq!(fast, slow);
        }

        #[test]
        fn dense_accumulation_equals_merging(a in sample(), b in sample(), c in sample()) {
            let mut slow = stats_from(&a);
            let mut dense = DenseLabel::default();
            dense.add(&SparseLabel::decode(&slow.to_wire("x")).unwrap());
            for other in [&b, &c] {
                let st = stats_from(other);
                slow.merge(&st).unwrap();
                dense.add(&SparseLabel::decode(&st.to_wire("x")).unwrap());
            }
            prop_assert_eq!(dense.to_stats(), slow);
        }

        #[test]
        fn index_of_inverts_value_at_index(v in 1u64..u64::MAX / 4) {
            let h = new_histogram();
            prop_assert_eq!(value_at_index(index_of(v)), Some(h.lowest_equivalent(v)));
        }

        #[test]
        fn wire_round_trip_keeps_everything(a in sample()) {
            let s = stats_from(&a);
            let back = s.to_wire("GET /x").to_stats().unwrap();
            prop_assert_eq!(back, s);
        }
    }

    #[test]
    fn batch_fold_merges_same_label() {
        let s = stats_from(&[(100, 200), (2000, 500)]);
        let batch = MetricBatch {
            agent: 0,
            second: 1,
            labels: vec![s.to_wire("a"), s.to_wire("a"), s.to_wire("b")],
            vus: 1,
            iterations: 2,
            dropped_iterations: 0,
        };
        let mut into = BTreeMap::new();
        batch.fold_into(&mut into).unwrap();
        assert_eq!(into["a"].requests, 4);
        assert_eq!(into["b"].requests, 2);
        assert_eq!(batch.requests(), 6);
    }
}

#[cfg(test)]
mod sparse_tests {
    use super::*;

    #[test]
    fn herds_own_histograms_take_the_sparse_path() {
        let mut s = LabelStats::default();
        for v in [1u64, 999, 2048, 123_456, 9_999_999] {
            s.latency.record(v).unwrap();
        }
        let w = s.to_wire("x");
        let b = hist::buckets(&w.latency_hist).expect("plain V2 layout");
        assert_eq!(b.buckets.iter().map(|(_, n)| n).sum::<u64>(), 5);
        assert_eq!(b.count, 5);
    }
}
