//! The aggregator's state, without a runtime: batches in, exact totals and a per-second series
//! out. De-duplicates by (agent, seq) so QoS 1 redelivery never counts twice.
//!
//! Every batch passes [`MetricBatch::check`] first (`messages/src/bounds.rs`: lengths, bucket
//! range, counts, and its `second` within the run's window: from the start minus the late
//! window to [`FUTURE_MARGIN_S`] past now), and its counters must not take the run's totals
//! past u64. A batch that fails is rejected whole and counted per agent; one that passes is
//! applied by steps that cannot fail, so no batch is ever half-applied, and finalizing a
//! second cannot fail either.
//!
//! A second stays "open" (histograms kept) until the wall clock is `late_window` seconds past
//! it, so late batches still land in their own second's percentiles; then the second is
//! finalized into a [`Row`] and its histograms are dropped. A batch later still is counted in
//! the totals (never lost) and in `late_batches`.

use std::collections::{BTreeMap, HashMap, HashSet};

use messages::bounds::{BatchError, Counters};
use messages::metrics::{total_of, DenseLabel, LabelStats, MetricBatch, MetricsError};
use serde::Serialize;

/// How far past the coordinator's clock a batch's second may be. Agents send a second 250 ms
/// after it ends, so only a clock running ahead puts one in the future; a few seconds of skew
/// are tolerated, more means the agent's seconds cannot be trusted.
pub const FUTURE_MARGIN_S: u64 = 5;

/// One label's numbers for one second (or the whole run).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RowStats {
    pub requests: u64,
    pub errors: u64,
    pub rps: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub status: BTreeMap<u16, u64>,
}

impl RowStats {
    pub fn of(s: &LabelStats, seconds: f64) -> RowStats {
        let h = &s.latency;
        let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        RowStats {
            requests: s.requests,
            errors: s.errors,
            rps: if seconds > 0.0 {
                s.requests as f64 / seconds
            } else {
                0.0
            },
            p50_ms: ms(0.5),
            p90_ms: ms(0.9),
            p95_ms: ms(0.95),
            p99_ms: ms(0.99),
            max_ms: h.max() as f64 / 1000.0,
            status: s.status.clone(),
        }
    }
}

/// The fleet's numbers for one wall-clock second.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    /// Unix second.
    pub second: u64,
    pub total: RowStats,
    pub labels: BTreeMap<String, RowStats>,
    /// Per region, only when the run's agents are in more than one (else it is `total`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub regions: BTreeMap<String, RowStats>,
    pub vus: u64,
    pub iterations: u64,
    pub dropped_iterations: u64,
    /// Agents that reported this second.
    pub agents: usize,
}

#[derive(Debug, Clone, Default, PartialEq)]
struct Open {
    /// Counts by histogram bucket: adding a batch is an array add per bucket.
    labels: BTreeMap<String, DenseLabel>,
    /// The same by region (all labels together), kept only for multi-region runs.
    regions: BTreeMap<String, DenseLabel>,
    vus: HashMap<u32, u64>,
    iterations: u64,
    dropped: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    New,
    Duplicate,
    /// Counted in the totals, but its second was already finalized.
    Late,
}

/// A batch refused whole: nothing of it was applied.
#[derive(Debug, thiserror::Error)]
#[error("batch {seq} from agent {agent} rejected: {reason}")]
pub struct Rejected {
    pub agent: u32,
    pub seq: u64,
    pub reason: BatchError,
    /// The first batch of this agent to be rejected: the one to log and report.
    pub first: bool,
}

/// Rejected batches, by agent; a redelivered one counts once.
#[derive(Debug, Clone, Default, PartialEq)]
struct Rejections {
    seqs: HashSet<(u32, u64)>,
    per_agent: HashMap<u32, u64>,
}

/// Distinct labels one run keeps apart. Each holds a histogram for the whole run (~16 KiB), and
/// their names come from the agents (a k6 script naming requests by URL makes a new one per
/// URL): past this, new names are counted together under [`OTHER_LABELS`], so the counts stay
/// exact and a run's memory stays bounded.
pub const MAX_LABELS_PER_RUN: usize = 1_000;
/// Where labels past [`MAX_LABELS_PER_RUN`] are counted.
pub const OTHER_LABELS: &str = "(other labels)";

#[derive(Debug, Clone, PartialEq)]
pub struct Fold {
    late_window: u64,
    /// Label names accepted so far, at most [`MAX_LABELS_PER_RUN`].
    labels: HashSet<String>,
    /// The earliest second a batch may carry: the run's start (before it is known, the time
    /// the run was accepted) minus the late window.
    first_second: u64,
    seen: HashSet<(u32, u64)>,
    batches: HashMap<u32, u64>,
    rejections: Rejections,
    /// Every accepted batch's counters added up. Each counter the fold keeps is a part of one
    /// of these, so refusing a batch that would overflow them keeps every merge exact.
    sums: Counters,
    /// Each agent's region, by index.
    regions: Vec<String>,
    /// Per-region histograms are only kept when there is more than one region.
    multi_region: bool,
    pub totals: BTreeMap<String, LabelStats>,
    pub by_region: BTreeMap<String, LabelStats>,
    pub iterations: u64,
    pub dropped: u64,
    pub late_batches: u64,
    open: BTreeMap<u64, Open>,
    finalized_upto: Option<u64>,
    pub rows: Vec<Row>,
}

impl Fold {
    /// A fold for a run accepted at unix second `accepted_at_s` (the window's lower end until
    /// [`Fold::started`] gives the start).
    pub fn new(late_window_s: u64, regions: Vec<String>, accepted_at_s: u64) -> Fold {
        Fold {
            late_window: late_window_s,
            labels: HashSet::new(),
            first_second: accepted_at_s.saturating_sub(late_window_s),
            seen: HashSet::new(),
            batches: HashMap::new(),
            rejections: Rejections::default(),
            sums: Counters::default(),
            multi_region: regions.iter().collect::<HashSet<_>>().len() > 1,
            regions,
            totals: BTreeMap::new(),
            by_region: BTreeMap::new(),
            iterations: 0,
            dropped: 0,
            late_batches: 0,
            open: BTreeMap::new(),
            finalized_upto: None,
            rows: Vec::new(),
        }
    }

    /// The load starts at `at_ms` (unix ms): no batch may carry a second before that minus
    /// the late window.
    pub fn started(&mut self, at_ms: u64) {
        let first = (at_ms / 1000).saturating_sub(self.late_window);
        self.first_second = self.first_second.max(first);
    }

    /// Distinct batches received from `agent`.
    pub fn batches_from(&self, agent: u32) -> u64 {
        self.batches.get(&agent).copied().unwrap_or(0)
    }

    /// Distinct batches of `agent` that were rejected.
    pub fn rejected_from(&self, agent: u32) -> u64 {
        self.rejections.per_agent.get(&agent).copied().unwrap_or(0)
    }

    /// Adds a batch at unix second `now_s`, or rejects it whole.
    pub fn add(
        &mut self,
        agent: u32,
        seq: u64,
        b: &MetricBatch,
        now_s: u64,
    ) -> Result<Added, Rejected> {
        if self.seen.contains(&(agent, seq)) {
            return Ok(Added::Duplicate);
        }
        let window = self.first_second..=now_s.saturating_add(FUTURE_MARGIN_S);
        let checked = b.check(window).and_then(|c| {
            let sums = self
                .sums
                .checked_add(&c.sums)
                .map_err(|counter| BatchError::RunTotalOverflow { counter })?;
            Ok((c, sums))
        });
        let (mut c, sums) = match checked {
            Ok(ok) => ok,
            Err(reason) => return Err(self.reject(agent, seq, reason)),
        };
        for l in &mut c.labels {
            if !self.labels.contains(&l.label) {
                if self.labels.len() < MAX_LABELS_PER_RUN {
                    self.labels.insert(l.label.clone());
                } else {
                    l.label = OTHER_LABELS.to_string();
                }
            }
        }
        // From here on nothing can fail: the batch is applied whole. No `+=` below can
        // overflow: each adds a part of what `sums` just took in.
        self.seen.insert((agent, seq));
        self.sums = sums;
        *self.batches.entry(agent).or_default() += 1;
        self.iterations += c.iterations;
        self.dropped += c.dropped_iterations;
        let region = self.multi_region.then(|| {
            self.regions
                .get(agent as usize)
                .cloned()
                .unwrap_or_else(|| "local".into())
        });
        if let Some(region) = &region {
            let r = self.by_region.entry(region.clone()).or_default();
            for l in &c.labels {
                l.merge_into(r);
            }
        }
        if self.finalized_upto.is_some_and(|f| c.second <= f) {
            // Its second is final: count it in the totals only.
            for l in &c.labels {
                l.merge_into(self.totals.entry(l.label.clone()).or_default());
            }
            self.late_batches += 1;
            return Ok(Added::Late);
        }
        // Totals are merged from whole seconds when they are finalized: one merge per label
        // and second instead of one per agent.
        let o = self.open.entry(c.second).or_default();
        for l in &c.labels {
            match o.labels.get_mut(&l.label) {
                Some(d) => d.add(l),
                None => {
                    let mut d = DenseLabel::default();
                    d.add(l);
                    o.labels.insert(l.label.clone(), d);
                }
            }
        }
        if let Some(region) = region {
            let d = o.regions.entry(region).or_default();
            for l in &c.labels {
                d.add(l);
            }
        }
        o.vus.insert(agent, c.vus);
        o.iterations += c.iterations;
        o.dropped += c.dropped_iterations;
        Ok(Added::New)
    }

    fn reject(&mut self, agent: u32, seq: u64, reason: BatchError) -> Rejected {
        let r = &mut self.rejections;
        let mut first = false;
        if r.seqs.insert((agent, seq)) {
            let n = r.per_agent.entry(agent).or_default();
            *n += 1;
            first = *n == 1;
        }
        Rejected {
            agent,
            seq,
            reason,
            first,
        }
    }

    /// Rejected batches by agent (only agents with any).
    pub fn rejected(&self) -> &HashMap<u32, u64> {
        &self.rejections.per_agent
    }

    /// Everything folded so far — the final seconds' totals and the open seconds' — per
    /// label, for judging while the run goes (`abort_on_fail`). A merge per label and open
    /// second: called once a second, and only for runs that watch such thresholds.
    pub fn so_far(&self) -> BTreeMap<String, LabelStats> {
        let mut out = self.totals.clone();
        for o in self.open.values() {
            for (k, d) in &o.labels {
                merge_into(&mut out, k, &d.to_stats());
            }
        }
        out
    }

    /// The current view of second `s` (for the live feed), if any batch reported it.
    pub fn peek(&self, s: u64) -> Option<Row> {
        let o = self.open.get(&s)?;
        let labels = o
            .labels
            .iter()
            .map(|(k, d)| (k.clone(), d.to_stats()))
            .collect();
        Some(row(s, o, &labels))
    }

    /// Finalizes seconds that have been open for longer than the late window, as of `now_s`
    /// (unix seconds); returns the finalized rows.
    pub fn tick(&mut self, now_s: u64) -> Vec<Row> {
        let limit = now_s.saturating_sub(self.late_window);
        let due: Vec<u64> = self
            .open
            .keys()
            .copied()
            .take_while(|s| *s < limit)
            .collect();
        self.finalize(due)
    }

    /// Finalizes everything (end of run), filling seconds nobody reported with empty rows.
    /// The holes are bounded by the run's window: every second was checked against it.
    pub fn finish(&mut self) -> Vec<Row> {
        let due: Vec<u64> = self.open.keys().copied().collect();
        let out = self.finalize(due);
        if !self.multi_region {
            let region = self
                .regions
                .first()
                .cloned()
                .unwrap_or_else(|| "local".into());
            let total = self.total().unwrap_or_else(|e| {
                tracing::error!(error = %e, "summing labels failed");
                LabelStats::default()
            });
            self.by_region = BTreeMap::from([(region, total)]);
        }
        self.rows.sort_by_key(|r| r.second);
        // Fill holes so the series covers the whole run.
        let mut filled = Vec::new();
        let mut prev: Option<u64> = None;
        for r in std::mem::take(&mut self.rows) {
            if let Some(p) = prev {
                for s in p + 1..r.second {
                    filled.push(row(s, &Open::default(), &BTreeMap::new()));
                }
            }
            prev = Some(r.second);
            filled.push(r);
        }
        self.rows = filled;
        out
    }

    /// Cannot fail: a label-second's stats are built from buckets `check` admitted (values up
    /// to `MAX_LATENCY_US`), which the totals' auto-resizing histograms always take.
    fn finalize(&mut self, due: Vec<u64>) -> Vec<Row> {
        let mut out = Vec::new();
        for s in due {
            if let Some(o) = self.open.remove(&s) {
                let mut labels = BTreeMap::new();
                for (label, d) in &o.labels {
                    let st = d.to_stats();
                    merge_into(&mut self.totals, label, &st);
                    labels.insert(label.clone(), st);
                }
                let r = row(s, &o, &labels);
                self.rows.push(r.clone());
                out.push(r);
                self.finalized_upto = Some(self.finalized_upto.map_or(s, |f| f.max(s)));
            }
        }
        out
    }

    /// Totals over all labels. Complete once [`Fold::finish`] ran (open seconds join the
    /// totals when they are finalized).
    pub fn total(&self) -> Result<LabelStats, MetricsError> {
        total_of(self.totals.values())
    }
}

fn merge_into(map: &mut BTreeMap<String, LabelStats>, key: &str, s: &LabelStats) {
    match map.get_mut(key) {
        Some(e) => {
            if let Err(e) = e.merge(s) {
                // Unreachable for checked batches (see `Fold::finalize`); said loudly if not.
                tracing::error!(label = key, error = %e, "merging a second into the totals failed");
            }
        }
        None => {
            map.insert(key.to_string(), s.clone());
        }
    }
}

fn row(second: u64, o: &Open, labels: &BTreeMap<String, LabelStats>) -> Row {
    let total = total_of(labels.values()).unwrap_or_default();
    Row {
        second,
        total: RowStats::of(&total, 1.0),
        labels: labels
            .iter()
            .map(|(k, v)| (k.clone(), RowStats::of(v, 1.0)))
            .collect(),
        regions: o
            .regions
            .iter()
            .map(|(k, d)| (k.clone(), RowStats::of(&d.to_stats(), 1.0)))
            .collect(),
        vus: o.vus.values().fold(0u64, |a, v| a.saturating_add(*v)),
        iterations: o.iterations,
        dropped_iterations: o.dropped,
        agents: o.vus.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A unix second for the tests' runs.
    pub(super) const T: u64 = 1_800_000_000;

    pub(super) fn batch(agent: u32, second: u64, lat: &[u64]) -> MetricBatch {
        let mut s = LabelStats::default();
        for l in lat {
            s.requests += 1;
            s.latency.record(*l).unwrap();
            *s.status.entry(200).or_default() += 1;
        }
        MetricBatch {
            agent,
            second,
            labels: vec![s.to_wire("GET /")],
            vus: 2,
            iterations: lat.len() as u64,
            dropped_iterations: 0,
        }
    }

    #[test]
    fn each_second_is_split_by_region_only_when_there_are_several() {
        let regions = vec![
            "eu-west-1".to_string(),
            "us-east-1".to_string(),
            "us-east-1".into(),
        ];
        let mut f = Fold::new(5, regions, T);
        f.add(0, 1, &batch(0, T, &[1000, 2000]), T + 1).unwrap();
        f.add(1, 1, &batch(1, T, &[3000]), T + 1).unwrap();
        f.add(2, 1, &batch(2, T, &[4000, 5000, 6000]), T + 1)
            .unwrap();
        let live = f.peek(T).expect("the open second");
        assert_eq!(live.regions["eu-west-1"].requests, 2);
        assert_eq!(live.regions["us-east-1"].requests, 4);
        assert!((live.regions["us-east-1"].max_ms - 6.0).abs() < 0.01);
        let rows = f.tick(T + 10);
        assert_eq!(
            rows[0].regions, live.regions,
            "the final second as it was seen live"
        );
        assert_eq!(rows[0].total.requests, 6);

        let mut one = Fold::new(5, vec!["local".to_string(); 2], T);
        one.add(0, 1, &batch(0, T, &[1000]), T + 1).unwrap();
        one.add(1, 1, &batch(1, T, &[1000]), T + 1).unwrap();
        let row = one.peek(T).expect("the open second");
        assert!(row.regions.is_empty(), "one region: the totals are its");
        assert!(!serde_json::to_string(&row).unwrap().contains("regions"));
    }

    #[test]
    fn duplicate_batch_is_counted_once() {
        let mut f = Fold::new(5, Vec::new(), T);
        let b = batch(0, T, &[1000, 2000]);
        assert_eq!(f.add(0, 1, &b, T + 1).unwrap(), Added::New);
        assert_eq!(f.add(0, 1, &b, T + 1).unwrap(), Added::Duplicate);
        f.finish();
        assert_eq!(f.total().unwrap().requests, 2);
        assert_eq!(f.batches_from(0), 1);
    }

    #[test]
    fn merged_percentiles_are_those_of_the_union() {
        let mut f = Fold::new(5, Vec::new(), T);
        // Agent 0 fast, agent 1 slow: averaging their p99s would give ~50 ms.
        let fast: Vec<u64> = (0..990).map(|i| 1000 + i).collect();
        let slow: Vec<u64> = (0..10).map(|i| 100_000 + i).collect();
        f.add(0, 1, &batch(0, T, &fast), T + 1).unwrap();
        f.add(1, 1, &batch(1, T, &slow), T + 1).unwrap();
        let mut union = messages::metrics::new_histogram();
        for v in fast.iter().chain(&slow) {
            union.record(*v).unwrap();
        }
        f.finish();
        let t = f.total().unwrap();
        assert_eq!(
            t.latency.value_at_quantile(0.99),
            union.value_at_quantile(0.99)
        );
        assert_eq!(
            t.latency.value_at_quantile(0.995),
            union.value_at_quantile(0.995)
        );
    }

    #[test]
    fn late_batches_count_in_totals_and_series_has_no_holes() {
        let mut f = Fold::new(2, Vec::new(), T);
        f.add(0, 1, &batch(0, T, &[1000]), T + 1).unwrap();
        f.add(0, 2, &batch(0, T + 3, &[1000]), T + 4).unwrap();
        let rows = f.tick(T + 6);
        assert_eq!(
            rows.iter().map(|r| r.second).collect::<Vec<_>>(),
            vec![T, T + 3]
        );
        assert_eq!(
            f.add(0, 3, &batch(0, T, &[5000]), T + 6).unwrap(),
            Added::Late
        );
        assert_eq!(f.total().unwrap().requests, 3);
        assert_eq!(f.late_batches, 1);
        f.finish();
        assert_eq!(f.total().unwrap().requests, 3);
        assert_eq!(
            f.rows.iter().map(|r| r.second).collect::<Vec<_>>(),
            vec![T, T + 1, T + 2, T + 3]
        );
    }

    #[test]
    fn corrupt_batches_change_nothing() {
        let mut f = Fold::new(2, Vec::new(), T);
        let mut b = batch(0, T, &[1000]);
        b.labels[0].latency_hist = vec![1, 2, 3];
        assert!(f.add(0, 1, &b, T + 1).is_err());
        assert_eq!(f.batches_from(0), 0);
        assert_eq!(f.rejected_from(0), 1);
        assert!(f.totals.is_empty());
    }
}

#[cfg(test)]
#[path = "fold_bounds_tests.rs"]
mod bounds_tests;

#[cfg(test)]
#[path = "fold_fuzz_tests.rs"]
mod fuzz_tests;
