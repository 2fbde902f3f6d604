//! A baseline run, as thresholds that refer to it (`p95 < baseline.p95 * 1.10`) read it: its
//! `summary.json` — the same document whatever made it (`herd run --baseline DIR`, or the
//! spec's baseline in `herd serve`'s history).

use messages::threshold::{BaselineValues, Metric};
use serde_json::Value;

#[derive(Debug, Clone)]
pub struct Baseline {
    run_id: String,
    summary: Value,
    /// Its `timeseries.json` rows, when its folder is at hand: the report overlays them.
    series: Vec<Value>,
}

/// The largest `timeseries.json` read for an overlay (a week of seconds with a few labels).
pub const MAX_SERIES_BYTES: u64 = 64 << 20;

/// A run folder's `timeseries.json` rows, for a baseline's overlay. A missing, oversized or
/// unreadable file gives none: the overlay is a view, the gate only needs the summary.
pub fn read_series(dir: &std::path::Path) -> Vec<Value> {
    let file = dir.join("timeseries.json");
    let read = std::fs::metadata(&file)
        .map_err(|e| e.to_string())
        .and_then(|m| {
            if m.len() > MAX_SERIES_BYTES {
                Err(format!("larger than {MAX_SERIES_BYTES} bytes"))
            } else {
                std::fs::read(&file).map_err(|e| e.to_string())
            }
        })
        .and_then(|b| serde_json::from_slice::<Vec<Value>>(&b).map_err(|e| e.to_string()));
    match read {
        Ok(rows) => rows,
        Err(e) => {
            tracing::debug!(file = %file.display(), error = %e, "no baseline series to overlay");
            Vec::new()
        }
    }
}

impl Baseline {
    /// From a `summary.json`'s text; refused when it is not one.
    pub fn from_summary(text: &str) -> Result<Baseline, String> {
        let summary: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        let run_id = summary
            .get("run")
            .and_then(Value::as_str)
            .ok_or("not a summary.json: no `run`")?
            .to_string();
        if summary.get("total").is_none_or(|t| !t.is_object()) {
            return Err("not a summary.json: no `total`".into());
        }
        Ok(Baseline {
            run_id,
            summary,
            series: Vec::new(),
        })
    }

    /// With its per-second rows (see [`read_series`]).
    pub fn with_series(mut self, series: Vec<Value>) -> Baseline {
        self.series = series;
        self
    }

    pub fn series(&self) -> &[Value] {
        &self.series
    }

    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// Its `summary.json`.
    pub fn summary(&self) -> &Value {
        &self.summary
    }
}

impl BaselineValues for Baseline {
    fn value(&self, label: Option<&str>, metric: Metric) -> Option<f64> {
        let s = match label {
            Some(l) => self.summary.get("labels")?.get(l)?,
            None => self.summary.get("total")?,
        };
        let n = |k: &str| s.get(k).and_then(Value::as_f64);
        let lat = |k: &str| {
            s.pointer(&format!("/latency_ms/{k}"))
                .and_then(Value::as_f64)
        };
        match metric {
            // The percentiles a summary holds.
            Metric::Percentile(p) => [
                (50.0, "p50"),
                (90.0, "p90"),
                (95.0, "p95"),
                (99.0, "p99"),
                (100.0, "max"),
            ]
            .iter()
            .find(|(q, _)| *q == p)
            .and_then(|(_, k)| lat(k)),
            Metric::Min => lat("min"),
            Metric::Max => lat("max"),
            Metric::Mean => lat("mean"),
            Metric::ErrorRate => {
                let r = n("requests")?;
                Some(if r > 0.0 { n("errors")? / r } else { 0.0 })
            }
            Metric::Errors => n("errors"),
            Metric::Requests => n("requests"),
            Metric::Rps => n("rps"),
            Metric::DroppedIterations => self
                .summary
                .pointer("/total/dropped_iterations")
                .and_then(Value::as_f64),
            Metric::CheckPassRate => {
                let (p, f) = (n("checks_passed")?, n("checks_failed")?);
                Some(if p + f > 0.0 { p / (p + f) } else { 1.0 })
            }
            Metric::ChecksFailed => n("checks_failed"),
        }
    }

    fn name(&self) -> &str {
        &self.run_id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_summary_gives_each_metric_per_label_and_in_all() {
        let b = Baseline::from_summary(
            r#"{"run": "base-1", "total": {"requests": 200, "errors": 2, "rps": 50.0,
                "dropped_iterations": 3, "checks_passed": 9, "checks_failed": 1,
                "latency_ms": {"p50": 1.0, "p90": 2.0, "p95": 3.0, "p99": 4.0, "max": 9.0, "min": 0.5, "mean": 1.5}},
                "labels": {"home": {"requests": 100, "errors": 0, "rps": 25.0, "latency_ms": {"p95": 2.5}}}}"#,
        )
        .unwrap();
        assert_eq!(b.run_id(), "base-1");
        assert_eq!(b.value(None, Metric::Percentile(95.0)), Some(3.0));
        assert_eq!(b.value(None, Metric::ErrorRate), Some(0.01));
        assert_eq!(b.value(None, Metric::CheckPassRate), Some(0.9));
        assert_eq!(b.value(None, Metric::DroppedIterations), Some(3.0));
        assert_eq!(b.value(Some("home"), Metric::Percentile(95.0)), Some(2.5));
        assert_eq!(b.value(Some("home"), Metric::Rps), Some(25.0));
        assert_eq!(b.value(Some("nope"), Metric::Rps), None);
        assert_eq!(
            b.value(None, Metric::Percentile(99.9)),
            None,
            "not in a summary"
        );
        assert!(Baseline::from_summary("[]").is_err());
        assert!(Baseline::from_summary("{\"run\": \"x\"}").is_err());
    }
}
