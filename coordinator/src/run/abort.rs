//! Thresholds with `abort_on_fail` (k6's `abortOnFail`), judged while the run goes: once a
//! second, by the aggregator, on everything folded so far — the same merged data the end
//! judges, so one agent's bad second cannot stop the fleet and the fleet's cannot hide in one
//! agent. The first failure stops the run (agents finish their graceful stop and send
//! everything, so the counts stay exact) and is named in that threshold's result.

use std::collections::BTreeMap;

use messages::metrics::LabelStats;
use messages::threshold::{Metric, Threshold};

/// A threshold that stopped the run.
#[derive(Debug, Clone, PartialEq)]
pub struct Crossed {
    /// Its index in the spec's thresholds.
    pub index: usize,
    /// Seconds after the start when it was judged failed.
    pub at_s: u64,
    /// What it saw then, in its unit.
    pub observed: String,
}

impl Crossed {
    /// Why the run stopped, for people (the terminal, the run's reason).
    pub fn reason(&self, t: &Threshold) -> String {
        format!(
            "threshold `{}` failed {}s into the run (observed {}); abort_on_fail stopped the run",
            t.expr, self.at_s, self.observed
        )
    }
}

/// The thresholds to watch, by their index in the spec.
#[derive(Debug, Default)]
pub struct AbortWatch {
    watched: Vec<(usize, Threshold)>,
    crossed: Option<Crossed>,
}

impl AbortWatch {
    pub fn new(thresholds: &[Threshold]) -> AbortWatch {
        AbortWatch {
            watched: thresholds
                .iter()
                .enumerate()
                .filter(|(_, t)| t.abort.is_some() && t.baseline.is_none())
                .map(|(i, t)| (i, t.clone()))
                .collect(),
            crossed: None,
        }
    }

    pub fn is_idle(&self) -> bool {
        self.watched.is_empty() || self.crossed.is_some()
    }

    pub fn crossed(&self) -> Option<&Crossed> {
        self.crossed.as_ref()
    }

    pub fn threshold(&self, index: usize) -> Option<&Threshold> {
        self.watched
            .iter()
            .find(|(i, _)| *i == index)
            .map(|(_, t)| t)
    }

    /// Judges what is due at `elapsed_ms` after the start; the first failure, once. A label
    /// (or the run) without a request yet is not judged: an empty histogram says nothing.
    /// `total` is asked for only when a threshold over all requests is due.
    pub fn judge(
        &mut self,
        elapsed_ms: u64,
        labels: &BTreeMap<String, LabelStats>,
        total: impl FnOnce() -> Option<LabelStats>,
        dropped: u64,
    ) -> Option<&Crossed> {
        if self.is_idle() {
            return None;
        }
        let due = |t: &Threshold| t.abort.is_some_and(|a| elapsed_ms >= a.delay_ms);
        let mut total = Some(total);
        let mut all: Option<Option<LabelStats>> = None;
        let seconds = elapsed_ms as f64 / 1000.0;
        for (index, t) in &self.watched {
            if !due(t) {
                continue;
            }
            let stats = match &t.label {
                Some(l) => labels.get(l),
                None => all
                    .get_or_insert_with(|| total.take().and_then(|f| f()))
                    .as_ref(),
            };
            let Some(stats) = stats else { continue };
            let counts_only = matches!(t.metric, Metric::DroppedIterations);
            if stats.requests == 0 && !counts_only {
                continue;
            }
            let r = t.judge(stats, seconds, dropped, None);
            if !r.passed {
                self.crossed = Some(Crossed {
                    index: *index,
                    at_s: elapsed_ms / 1000,
                    observed: r.observed_display,
                });
                return self.crossed.as_ref();
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use messages::threshold::{parse_expr, AbortOnFail};

    fn t(expr: &str, label: Option<&str>, delay_ms: Option<u64>) -> Threshold {
        let (metric, op, value) = parse_expr(expr).expect("expr");
        Threshold {
            expr: expr.into(),
            label: label.map(Into::into),
            metric,
            op,
            value,
            baseline: None,
            abort: delay_ms.map(|delay_ms| AbortOnFail { delay_ms }),
        }
    }

    fn stats(latency_ms: u64, n: u64, errors: u64) -> LabelStats {
        let mut s = LabelStats::default();
        for _ in 0..n {
            s.latency.record(latency_ms * 1000).expect("record");
        }
        s.requests = n;
        s.errors = errors;
        s
    }

    #[test]
    fn only_abort_thresholds_are_watched_after_their_delay_and_the_first_failure_sticks() {
        let ths = vec![
            t("p95 < 10ms", None, None),
            t("p95 < 10ms", Some("slow"), Some(3_000)),
            t("error_rate < 10%", None, Some(0)),
        ];
        let mut w = AbortWatch::new(&ths);
        let mut labels = BTreeMap::new();
        labels.insert("slow".to_string(), stats(50, 10, 0));
        let total = || Some(stats(50, 10, 0));
        // The slow label fails p95 but is not due before 3 s; the error rate holds.
        assert_eq!(w.judge(2_000, &labels, total, 0), None);
        let c = w.judge(3_500, &labels, total, 0).cloned().expect("crossed");
        assert_eq!((c.index, c.at_s, c.observed.as_str()), (1, 3, "50.02ms"));
        assert!(c.reason(&ths[1]).contains("failed 3s into the run"));
        // Once crossed, nothing more is judged.
        assert!(w.is_idle());
        assert_eq!(w.judge(9_000, &labels, || None, 0), None);
    }

    #[test]
    fn no_requests_yet_is_not_a_failure() {
        let ths = vec![t("rps > 100", None, Some(0))];
        let mut w = AbortWatch::new(&ths);
        let labels = BTreeMap::new();
        assert_eq!(w.judge(5_000, &labels, || Some(stats(1, 0, 0)), 0), None);
        assert!(w
            .judge(5_000, &labels, || Some(stats(1, 10, 0)), 0)
            .is_some());
    }
}
