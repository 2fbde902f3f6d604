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
    /// HdrHistogram V2 serialization of latency in µs.
    pub latency_hist: Vec<u8>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub checks_passed: u64,
    pub checks_failed: u64,
}

impl LabelBatch {
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
