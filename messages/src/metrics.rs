//! Per-second metric batches and the exact merge of their stats.
//!
//! Percentiles are only ever computed from merged HdrHistograms: averaging per-agent
//! percentiles (what the AWS solution does) gives numbers no request ever saw.

use std::collections::BTreeMap;

use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Status recorded for a request that got no response (connect error, timeout, reset…).
pub const NO_RESPONSE: u16 = 0;

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("latency histogram of label `{label}` is corrupt: {reason}")]
    BadHistogram { label: String, reason: String },
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
    /// Adds `other` into `self`. Exact: counts add, histograms add bucket by bucket.
    pub fn merge(&mut self, other: &LabelStats) -> Result<(), MetricsError> {
        self.requests += other.requests;
        self.errors += other.errors;
        for (k, v) in &other.status {
            *self.status.entry(*k).or_default() += v;
        }
        for (k, v) in &other.error_kinds {
            *self.error_kinds.entry(k.clone()).or_default() += v;
        }
        self.latency
            .add(&other.latency)
            .map_err(|e| MetricsError::Merge(format!("{e:?}")))?;
        self.bytes_in += other.bytes_in;
        self.bytes_out += other.bytes_out;
        self.checks_passed += other.checks_passed;
        self.checks_failed += other.checks_failed;
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

    pub fn to_stats(&self) -> Result<LabelStats, MetricsError> {
        let latency = if self.latency_hist.is_empty() {
            new_histogram()
        } else {
            let mut h: Histogram<u64> = Deserializer::new()
                .deserialize(&mut &self.latency_hist[..])
                .map_err(|e| MetricsError::BadHistogram {
                    label: self.label.clone(),
                    reason: format!("{e:?}"),
                })?;
            h.auto(true);
            h
        };
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
pub struct SparseLabel {
    pub label: String,
    /// The batch's counters as they came (no histogram: building an empty one costs a
    /// zeroed allocation per label).
    counters: LabelBatch,
    /// (bucket index, count), non-zero only.
    buckets: Vec<(u32, u64)>,
}

// Layout of Histogram::new(3): 2048 sub-buckets, half = 1024 (magnitude 10), unit 1.
const HALF_MAG: u32 = 10;
const HALF: u64 = 1 << HALF_MAG;
const SUB_MASK: u64 = 2 * HALF - 1;

/// The value a bucket index stands for in herd's histogram layout (`None` past u64).
pub fn value_at_index(index: u32) -> Option<u64> {
    let index = u64::from(index);
    let bucket = (index >> HALF_MAG) as i64 - 1;
    let mut sub = (index & (HALF - 1)) + HALF;
    let shift = if bucket < 0 {
        sub -= HALF;
        0
    } else {
        bucket as u32
    };
    if shift >= 53 {
        return None;
    }
    Some(sub << shift)
}

/// The bucket index of `value` in herd's histogram layout (the inverse of [`value_at_index`]
/// up to the bucket's resolution).
pub fn index_of(value: u64) -> u32 {
    let pow2ceiling = 64 - (value | SUB_MASK).leading_zeros();
    let bucket = pow2ceiling - (HALF_MAG + 1);
    let sub = value >> bucket;
    (((u64::from(bucket) + 1) << HALF_MAG) + sub - HALF) as u32
}

/// hdrhistogram's V2 cookie: base 0x1c849303 with the word size (0x10) in bits 4-7.
const V2_COOKIE_BASE: u32 = 0x1c84_9303;

fn be_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn be_u64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// LEB128 with hdrhistogram's 9-byte variant (the 9th byte carries 8 bits).
fn varint(b: &[u8], at: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for i in 0..9 {
        let byte = *b.get(*at)?;
        *at += 1;
        if i == 8 {
            return Some(v | (u64::from(byte) << 56));
        }
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some(v);
        }
    }
    Some(v)
}

/// The non-zero buckets of a V2 histogram as (index, count), or `None` when the bytes are not
/// a plain V2 histogram with lowest value 1 and 3 significant digits (herd's own layout).
fn v2_buckets(b: &[u8]) -> Option<Vec<(u32, u64)>> {
    if be_u32(b, 0)? & !0xf0 != V2_COOKIE_BASE {
        return None;
    }
    let len = be_u32(b, 4)? as usize;
    let (offset, digits, low) = (be_u32(b, 8)?, be_u32(b, 12)?, be_u64(b, 16)?);
    let ratio = f64::from_bits(be_u64(b, 32)?);
    if offset != 0 || digits != 3 || low != 1 || ratio != 1.0 {
        return None;
    }
    let payload = b.get(40..40usize.checked_add(len)?)?;
    let mut out = Vec::with_capacity(payload.len() / 2);
    let (mut at, mut index) = (0usize, 0u64);
    while at < payload.len() {
        let zz = varint(payload, &mut at)?;
        let n = ((zz >> 1) as i64) ^ -((zz & 1) as i64);
        if n < 0 {
            index = index.checked_add(n.unsigned_abs())?;
            continue;
        }
        if n > 0 {
            let i = u32::try_from(index).ok()?;
            // Reject indexes past u64 now, so merging later cannot fail on them.
            value_at_index(i)?;
            out.push((i, n as u64));
        }
        index += 1;
    }
    Some(out)
}

impl SparseLabel {
    /// Decodes and validates; nothing is merged anywhere yet.
    pub fn decode(lb: &LabelBatch) -> Result<SparseLabel, MetricsError> {
        let buckets = if lb.latency_hist.is_empty() {
            Vec::new()
        } else {
            match v2_buckets(&lb.latency_hist) {
                Some(b) => b,
                // Another layout: take the slow, general path.
                None => {
                    let h = lb.to_stats()?.latency;
                    h.iter_recorded()
                        .map(|v| (index_of(v.value_iterated_to()), v.count_at_value()))
                        .collect()
                }
            }
        };
        let counters = LabelBatch {
            latency_hist: Vec::new(),
            ..lb.clone_counters()
        };
        Ok(SparseLabel {
            label: lb.label.clone(),
            counters,
            buckets,
        })
    }

    /// Adds this label into `into`, exactly as `into.merge(&lb.to_stats()?)` would.
    pub fn merge_into(&self, into: &mut LabelStats) -> Result<(), MetricsError> {
        for (i, n) in &self.buckets {
            let v = value_at_index(*i)
                .ok_or_else(|| MetricsError::Merge(format!("bucket {i} out of range")))?;
            into.latency
                .record_n(v, *n)
                .map_err(|e| MetricsError::Merge(format!("{e:?}")))?;
        }
        self.add_counters(into);
        Ok(())
    }

    fn add_counters(&self, into: &mut LabelStats) {
        let c = &self.counters;
        into.requests += c.requests;
        into.errors += c.errors;
        for (k, v) in &c.status {
            *into.status.entry(*k).or_default() += v;
        }
        for (k, v) in &c.error_kinds {
            match into.error_kinds.get_mut(k) {
                Some(n) => *n += v,
                None => {
                    into.error_kinds.insert(k.clone(), *v);
                }
            }
        }
        into.bytes_in += c.bytes_in;
        into.bytes_out += c.bytes_out;
        into.checks_passed += c.checks_passed;
        into.checks_failed += c.checks_failed;
    }
}

/// A label's stats being accumulated from many agents: latency as plain counts by bucket
/// index, so adding a batch is one array add per bucket; turned into [`LabelStats`] once,
/// when the second is read or finalized.
#[derive(Default)]
pub struct DenseLabel {
    counters: LabelStats,
    counts: Vec<u64>,
}

impl DenseLabel {
    pub fn add(&mut self, l: &SparseLabel) {
        l.add_counters(&mut self.counters);
        // Buckets come in index order: grow once to the last one.
        if let Some((last, _)) = l.buckets.last() {
            let need = *last as usize + 1;
            if need > self.counts.len() {
                self.counts.resize(need, 0);
            }
        }
        for (i, n) in &l.buckets {
            if let Some(c) = self.counts.get_mut(*i as usize) {
                *c += n;
            }
        }
    }

    pub fn to_stats(&self) -> Result<LabelStats, MetricsError> {
        let mut s = self.counters.clone();
        for (i, n) in self.counts.iter().enumerate().filter(|(_, n)| **n > 0) {
            let v = value_at_index(i as u32)
                .ok_or_else(|| MetricsError::Merge(format!("bucket {i} out of range")))?;
            s.latency
                .record_n(v, *n)
                .map_err(|e| MetricsError::Merge(format!("{e:?}")))?;
        }
        Ok(s)
    }
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
        self.labels.iter().map(|l| l.requests).sum()
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
            SparseLabel::decode(&sb.to_wire("x")).unwrap().merge_into(&mut fast).unwrap();
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
            prop_assert_eq!(dense.to_stats().unwrap(), slow);
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
        let b = v2_buckets(&w.latency_hist).expect("plain V2 layout");
        assert_eq!(b.iter().map(|(_, n)| n).sum::<u64>(), 5);
    }
}
