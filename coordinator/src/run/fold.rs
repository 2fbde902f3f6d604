//! The aggregator's state, without a runtime: batches in, exact totals and a per-second series
//! out. De-duplicates by (agent, seq) so QoS 1 redelivery never counts twice.
//!
//! A second stays "open" (histograms kept) until the wall clock is `late_window` seconds past
//! it, so late batches still land in their own second's percentiles; then the second is
//! finalized into a [`Row`] and its histograms are dropped. A batch later still is counted in
//! the totals (never lost) and in `late_batches`.

use std::collections::{BTreeMap, HashMap, HashSet};

use messages::metrics::{total_of, DenseLabel, LabelStats, MetricBatch, MetricsError, SparseLabel};
use serde::Serialize;

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
    pub vus: u64,
    pub iterations: u64,
    pub dropped_iterations: u64,
    /// Agents that reported this second.
    pub agents: usize,
}

#[derive(Default)]
struct Open {
    /// Counts by histogram bucket: adding a batch is an array add per bucket.
    labels: BTreeMap<String, DenseLabel>,
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

pub struct Fold {
    late_window: u64,
    seen: HashSet<(u32, u64)>,
    batches: HashMap<u32, u64>,
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
    pub fn new(late_window_s: u64, regions: Vec<String>) -> Fold {
        Fold {
            late_window: late_window_s,
            seen: HashSet::new(),
            batches: HashMap::new(),
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

    /// Distinct batches received from `agent`.
    pub fn batches_from(&self, agent: u32) -> u64 {
        self.batches.get(&agent).copied().unwrap_or(0)
    }

    pub fn add(&mut self, agent: u32, seq: u64, b: &MetricBatch) -> Result<Added, MetricsError> {
        // Decode every label before touching state, so a corrupt batch changes nothing.
        let labels = b
            .labels
            .iter()
            .map(SparseLabel::decode)
            .collect::<Result<Vec<_>, _>>()?;
        if !self.seen.insert((agent, seq)) {
            return Ok(Added::Duplicate);
        }
        *self.batches.entry(agent).or_default() += 1;
        self.iterations += b.iterations;
        self.dropped += b.dropped_iterations;
        if self.multi_region {
            let region = self
                .regions
                .get(agent as usize)
                .cloned()
                .unwrap_or_else(|| "local".into());
            let r = self.by_region.entry(region).or_default();
            for l in &labels {
                l.merge_into(r);
            }
        }
        if self.finalized_upto.is_some_and(|f| b.second <= f) {
            // Its second is final: count it in the totals only.
            for l in &labels {
                l.merge_into(self.totals.entry(l.label.clone()).or_default());
            }
            self.late_batches += 1;
            return Ok(Added::Late);
        }
        // Totals are merged from whole seconds when they are finalized: one merge per label
        // and second instead of one per agent.
        let o = self.open.entry(b.second).or_default();
        for l in &labels {
            match o.labels.get_mut(&l.label) {
                Some(d) => d.add(l),
                None => {
                    let mut d = DenseLabel::default();
                    d.add(l);
                    o.labels.insert(l.label.clone(), d);
                }
            }
        }
        *o.vus.entry(agent).or_default() = b.vus;
        o.iterations += b.iterations;
        o.dropped += b.dropped_iterations;
        Ok(Added::New)
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
    pub fn tick(&mut self, now_s: u64) -> Result<Vec<Row>, MetricsError> {
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
    pub fn finish(&mut self) -> Result<Vec<Row>, MetricsError> {
        let due: Vec<u64> = self.open.keys().copied().collect();
        let out = self.finalize(due)?;
        if !self.multi_region {
            let region = self
                .regions
                .first()
                .cloned()
                .unwrap_or_else(|| "local".into());
            self.by_region = BTreeMap::from([(region, self.total()?)]);
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
        Ok(out)
    }

    fn finalize(&mut self, due: Vec<u64>) -> Result<Vec<Row>, MetricsError> {
        let mut out = Vec::new();
        for s in due {
            if let Some(o) = self.open.remove(&s) {
                let mut labels = BTreeMap::new();
                for (label, d) in &o.labels {
                    let st = d.to_stats();
                    merge_into(&mut self.totals, label, &st)?;
                    labels.insert(label.clone(), st);
                }
                let r = row(s, &o, &labels);
                self.rows.push(r.clone());
                out.push(r);
                self.finalized_upto = Some(self.finalized_upto.map_or(s, |f| f.max(s)));
            }
        }
        Ok(out)
    }

    /// Totals over all labels. Complete once [`Fold::finish`] ran (open seconds join the
    /// totals when they are finalized).
    pub fn total(&self) -> Result<LabelStats, MetricsError> {
        total_of(self.totals.values())
    }
}

fn merge_into(
    map: &mut BTreeMap<String, LabelStats>,
    key: &str,
    s: &LabelStats,
) -> Result<(), MetricsError> {
    match map.get_mut(key) {
        Some(e) => e.merge(s),
        None => {
            map.insert(key.to_string(), s.clone());
            Ok(())
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
        vus: o.vus.values().sum(),
        iterations: o.iterations,
        dropped_iterations: o.dropped,
        agents: o.vus.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(agent: u32, second: u64, lat: &[u64]) -> MetricBatch {
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
    fn duplicate_batch_is_counted_once() {
        let mut f = Fold::new(5, Vec::new());
        let b = batch(0, 100, &[1000, 2000]);
        assert_eq!(f.add(0, 1, &b).unwrap(), Added::New);
        assert_eq!(f.add(0, 1, &b).unwrap(), Added::Duplicate);
        f.finish().unwrap();
        assert_eq!(f.total().unwrap().requests, 2);
        assert_eq!(f.batches_from(0), 1);
    }

    #[test]
    fn merged_percentiles_are_those_of_the_union() {
        let mut f = Fold::new(5, Vec::new());
        // Agent 0 fast, agent 1 slow: averaging their p99s would give ~50 ms.
        let fast: Vec<u64> = (0..990).map(|i| 1000 + i).collect();
        let slow: Vec<u64> = (0..10).map(|i| 100_000 + i).collect();
        f.add(0, 1, &batch(0, 100, &fast)).unwrap();
        f.add(1, 1, &batch(1, 100, &slow)).unwrap();
        let mut union = messages::metrics::new_histogram();
        for v in fast.iter().chain(&slow) {
            union.record(*v).unwrap();
        }
        f.finish().unwrap();
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
        let mut f = Fold::new(2, Vec::new());
        f.add(0, 1, &batch(0, 100, &[1000])).unwrap();
        f.add(0, 2, &batch(0, 103, &[1000])).unwrap();
        let rows = f.tick(106).unwrap();
        assert_eq!(
            rows.iter().map(|r| r.second).collect::<Vec<_>>(),
            vec![100, 103]
        );
        assert_eq!(f.add(0, 3, &batch(0, 100, &[5000])).unwrap(), Added::Late);
        assert_eq!(f.total().unwrap().requests, 3);
        assert_eq!(f.late_batches, 1);
        f.finish().unwrap();
        assert_eq!(f.total().unwrap().requests, 3);
        assert_eq!(
            f.rows.iter().map(|r| r.second).collect::<Vec<_>>(),
            vec![100, 101, 102, 103]
        );
    }

    #[test]
    fn corrupt_batches_change_nothing() {
        let mut f = Fold::new(2, Vec::new());
        let mut b = batch(0, 100, &[1000]);
        b.labels[0].latency_hist = vec![1, 2, 3];
        assert!(f.add(0, 1, &b).is_err());
        assert_eq!(f.batches_from(0), 0);
        assert!(f.totals.is_empty());
    }
}
