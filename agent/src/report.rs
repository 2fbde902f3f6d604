//! Folding metric batches into totals and printing them: the standalone agent's view, and the
//! reference the tests compare the target's own counts against.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use messages::metrics::{total_of, LabelStats, MetricBatch, MetricsError};
use messages::summary::Stats;
use messages::threshold::{Threshold, ThresholdResult};
use serde_json::{json, Value};

#[derive(Default)]
pub struct Totals {
    pub labels: BTreeMap<String, LabelStats>,
    pub iterations: u64,
    pub dropped: u64,
}

impl Totals {
    pub fn add(&mut self, b: &MetricBatch) -> Result<(), MetricsError> {
        b.fold_into(&mut self.labels)?;
        self.iterations += b.iterations;
        self.dropped += b.dropped_iterations;
        Ok(())
    }

    pub fn total(&self) -> Result<LabelStats, MetricsError> {
        total_of(self.labels.values())
    }

    pub fn judge(
        &self,
        thresholds: &[Threshold],
        seconds: f64,
    ) -> Result<Vec<ThresholdResult>, MetricsError> {
        let total = self.total()?;
        let empty = LabelStats::default();
        Ok(thresholds
            .iter()
            .map(|t| {
                let stats = match &t.label {
                    Some(l) => self.labels.get(l).unwrap_or(&empty),
                    None => &total,
                };
                t.judge(stats, seconds, self.dropped, None)
            })
            .collect())
    }

    pub fn summary_json(
        &self,
        seconds: f64,
        verdicts: &[ThresholdResult],
    ) -> Result<Value, MetricsError> {
        let total = self.total()?;
        let labels: serde_json::Map<String, Value> = self
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), stats_json(v, seconds)))
            .collect();
        let mut all = stats_json(&total, seconds);
        if let Value::Object(m) = &mut all {
            m.insert("iterations".into(), json!(self.iterations));
            m.insert("dropped_iterations".into(), json!(self.dropped));
            m.insert("duration_s".into(), json!(seconds));
            m.insert("labels".into(), Value::Object(labels));
            m.insert(
                "thresholds".into(),
                Value::Array(
                    verdicts
                        .iter()
                        .map(|v| json!({"expr": v.expr, "label": v.label, "observed": v.observed, "observed_display": v.observed_display, "passed": v.passed}))
                        .collect(),
                ),
            );
        }
        Ok(all)
    }
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// One label's numbers as JSON: the same document `summary.json` uses.
pub fn stats_json(s: &LabelStats, seconds: f64) -> Value {
    serde_json::to_value(Stats::of(s, seconds)).unwrap_or(Value::Null)
}

fn fmt_ms(us: u64) -> String {
    let v = ms(us);
    if v >= 1000.0 {
        format!("{:.2}s", v / 1000.0)
    } else if v >= 10.0 {
        format!("{v:.0}ms")
    } else {
        format!("{v:.2}ms")
    }
}

/// One line for one second of one agent's (or the fleet's) batch.
pub fn second_line(elapsed_s: u64, b: &MetricBatch) -> String {
    let mut labels = BTreeMap::new();
    let stats = b
        .fold_into(&mut labels)
        .and_then(|_| total_of(labels.values()));
    match stats {
        Ok(t) => {
            let err = if t.requests > 0 {
                100.0 * t.errors as f64 / t.requests as f64
            } else {
                0.0
            };
            format!(
                "{elapsed_s:>5}s  vus {:>5}  rps {:>8}  p50 {:>8}  p95 {:>8}  p99 {:>8}  errors {err:>5.2}%{}",
                b.vus,
                t.requests,
                fmt_ms(t.latency.value_at_quantile(0.5)),
                fmt_ms(t.latency.value_at_quantile(0.95)),
                fmt_ms(t.latency.value_at_quantile(0.99)),
                if b.dropped_iterations > 0 { format!("  dropped {}", b.dropped_iterations) } else { String::new() }
            )
        }
        Err(e) => format!("{elapsed_s:>5}s  (bad batch: {e})"),
    }
}

/// The k6-like end-of-run table: one row per label, a total row, then thresholds.
pub fn summary_table(
    t: &Totals,
    seconds: f64,
    verdicts: &[ThresholdResult],
    error_samples: &std::collections::BTreeMap<String, String>,
    checks: &[messages::summary::CheckResult],
) -> Result<String, MetricsError> {
    let total = t.total()?;
    let mut out = String::new();
    let width = t
        .labels
        .keys()
        .map(|k| k.len())
        .max()
        .unwrap_or(5)
        .clamp(5, 48);
    let _ = writeln!(
        out,
        "{:<width$}  {:>9} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "label", "requests", "err%", "rps", "p50", "p90", "p95", "p99", "max"
    );
    let row = |out: &mut String, name: &str, s: &LabelStats| {
        let err = if s.requests > 0 {
            100.0 * s.errors as f64 / s.requests as f64
        } else {
            0.0
        };
        let h = &s.latency;
        let _ = writeln!(
            out,
            "{:<width$}  {:>9} {:>6.2}% {:>9.1} {:>9} {:>9} {:>9} {:>9} {:>9}",
            truncate(name, width),
            s.requests,
            err,
            if seconds > 0.0 {
                s.requests as f64 / seconds
            } else {
                0.0
            },
            fmt_ms(h.value_at_quantile(0.5)),
            fmt_ms(h.value_at_quantile(0.9)),
            fmt_ms(h.value_at_quantile(0.95)),
            fmt_ms(h.value_at_quantile(0.99)),
            fmt_ms(h.max()),
        );
    };
    for (k, s) in &t.labels {
        row(&mut out, k, s);
    }
    row(&mut out, "TOTAL", &total);
    let _ = writeln!(
        out,
        "iterations {}  dropped {}  duration {:.1}s  checks {}/{} passed  data in {} B out {} B",
        t.iterations,
        t.dropped,
        seconds,
        total.checks_passed,
        total.checks_passed + total.checks_failed,
        total.bytes_in,
        total.bytes_out
    );
    // Each check, as k6 lists them: which one failed, and how often.
    for c in checks {
        let all = c.passed.saturating_add(c.failed);
        let _ = writeln!(
            out,
            "  {} {}  {}/{} passed{}",
            if c.failed == 0 { "✓" } else { "✗" },
            c.title(),
            c.passed,
            all,
            if c.failed > 0 {
                format!(
                    " ({:.2}% failed)",
                    100.0 * c.failed as f64 / all.max(1) as f64
                )
            } else {
                String::new()
            }
        );
    }
    for w in messages::summary::check_warnings(&total, checks) {
        let _ = writeln!(out, "⚠ WARNING: {w}");
    }
    if !total.error_kinds.is_empty() {
        let kinds: Vec<String> = total
            .error_kinds
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        let _ = writeln!(out, "errors without a response: {}", kinds.join(", "));
        for l in messages::summary::error_sample_lines(error_samples) {
            let _ = writeln!(out, "{l}");
        }
    }
    for w in messages::summary::run_warnings(&total) {
        let _ = writeln!(out, "⚠ WARNING: {w}");
    }
    for v in verdicts {
        let _ = writeln!(
            out,
            "{} {}{}  (observed {}{}){}",
            if v.passed { "✓" } else { "✗" },
            v.expr,
            v.label
                .as_ref()
                .map(|l| format!(" [{l}]"))
                .unwrap_or_default(),
            v.observed_display,
            v.limit_display
                .as_ref()
                .map(|l| format!(", limit {l}"))
                .unwrap_or_default(),
            v.reason
                .as_ref()
                .map(|r| format!(" — {r}"))
                .unwrap_or_default()
        );
    }
    Ok(out)
}

fn truncate(s: &str, w: usize) -> String {
    if s.chars().count() <= w {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(w.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}
