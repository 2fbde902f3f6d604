//! Threshold expressions such as `p95 < 500ms` or `error_rate < 1%`, and how they are judged.

use serde::{Deserialize, Serialize};

use crate::metrics::LabelStats;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Threshold {
    /// The expression as the user wrote it (shown in reports and JUnit).
    pub expr: String,
    /// Judge only this label (a step name); `None`: all requests.
    pub label: Option<String>,
    pub metric: Metric,
    pub op: Op,
    /// In the metric's unit: milliseconds for latencies, a fraction for rates.
    pub value: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Metric {
    /// Latency percentile, e.g. 95.0 or 99.9.
    Percentile(f64),
    Min,
    Max,
    Mean,
    /// Failed requests / requests.
    ErrorRate,
    Errors,
    Requests,
    /// Requests per second over the load phase.
    Rps,
    DroppedIterations,
    /// Passed checks / all checks.
    CheckPassRate,
    ChecksFailed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
}

impl Op {
    pub fn holds(self, observed: f64, limit: f64) -> bool {
        match self {
            Op::Lt => observed < limit,
            Op::Le => observed <= limit,
            Op::Gt => observed > limit,
            Op::Ge => observed >= limit,
            Op::Eq => (observed - limit).abs() < f64::EPSILON,
        }
    }
    pub fn symbol(self) -> &'static str {
        match self {
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Eq => "==",
        }
    }
}

impl Metric {
    pub fn is_latency(self) -> bool {
        matches!(
            self,
            Metric::Percentile(_) | Metric::Min | Metric::Max | Metric::Mean
        )
    }
    pub fn is_rate(self) -> bool {
        matches!(self, Metric::ErrorRate | Metric::CheckPassRate)
    }
}

const METRICS_HELP: &str =
    "p50, p90, p95, p99, p99.9 (any pNN), min, max, mean, error_rate, errors, \
requests, rps, dropped_iterations, check_pass_rate, checks_failed";

fn parse_metric(s: &str) -> Result<Metric, String> {
    let m = match s {
        "min" => Metric::Min,
        "max" => Metric::Max,
        "mean" | "avg" => Metric::Mean,
        "error_rate" => Metric::ErrorRate,
        "errors" => Metric::Errors,
        "requests" => Metric::Requests,
        "rps" => Metric::Rps,
        "dropped_iterations" => Metric::DroppedIterations,
        "check_pass_rate" => Metric::CheckPassRate,
        "checks_failed" => Metric::ChecksFailed,
        _ => {
            let num = s
                .strip_prefix("p(")
                .and_then(|r| r.strip_suffix(')'))
                .or_else(|| s.strip_prefix('p'));
            match num.and_then(|n| n.parse::<f64>().ok()) {
                Some(p) if p > 0.0 && p <= 100.0 => Metric::Percentile(p),
                Some(_) => return Err(format!("percentile `{s}` must be between 0 and 100")),
                None => return Err(format!("unknown metric `{s}` (known: {METRICS_HELP})")),
            }
        }
    };
    Ok(m)
}

fn parse_value(metric: Metric, s: &str) -> Result<f64, String> {
    if metric.is_latency() {
        if let Ok(n) = s.parse::<f64>() {
            return Ok(n); // milliseconds
        }
        return humantime::parse_duration(s)
            .map(|d| d.as_secs_f64() * 1000.0)
            .map_err(|_| format!("`{s}` is not a duration (e.g. 500ms, 1.5s is written 1500ms)"));
    }
    if metric.is_rate() {
        if let Some(p) = s.strip_suffix('%') {
            return p
                .trim()
                .parse::<f64>()
                .map(|v| v / 100.0)
                .map_err(|_| format!("`{s}` is not a percentage"));
        }
        return s
            .parse::<f64>()
            .map_err(|_| format!("`{s}` is not a rate (write 1% or 0.01)"));
    }
    s.parse::<f64>()
        .map_err(|_| format!("`{s}` is not a number"))
}

/// Parses `metric op value`.
pub fn parse_expr(expr: &str) -> Result<(Metric, Op, f64), String> {
    let ops = [
        ("<=", Op::Le),
        (">=", Op::Ge),
        ("==", Op::Eq),
        ("<", Op::Lt),
        (">", Op::Gt),
    ];
    for (sym, op) in ops {
        if let Some(i) = expr.find(sym) {
            let metric = parse_metric(expr[..i].trim())?;
            let value = parse_value(metric, expr[i + sym.len()..].trim())?;
            return Ok((metric, op, value));
        }
    }
    Err(format!(
        "`{expr}` is not a threshold: write `metric op value`, e.g. `p95 < 500ms` or `error_rate < 1%`"
    ))
}

/// What a threshold saw, for reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub expr: String,
    pub label: Option<String>,
    pub observed: f64,
    pub passed: bool,
}

/// The observed value of a metric over a set of stats. `seconds` is the load phase's length and
/// `dropped` the fleet's dropped iterations (not per label).
pub fn observe(metric: Metric, stats: &LabelStats, seconds: f64, dropped: u64) -> f64 {
    let h = &stats.latency;
    let ms = |us: u64| us as f64 / 1000.0;
    match metric {
        Metric::Percentile(p) => ms(h.value_at_quantile(p / 100.0)),
        Metric::Min => ms(if h.is_empty() { 0 } else { h.min() }),
        Metric::Max => ms(h.max()),
        Metric::Mean => h.mean() / 1000.0,
        Metric::ErrorRate => {
            if stats.requests == 0 {
                0.0
            } else {
                stats.errors as f64 / stats.requests as f64
            }
        }
        Metric::Errors => stats.errors as f64,
        Metric::Requests => stats.requests as f64,
        Metric::Rps => {
            if seconds > 0.0 {
                stats.requests as f64 / seconds
            } else {
                0.0
            }
        }
        Metric::DroppedIterations => dropped as f64,
        Metric::CheckPassRate => {
            let all = stats.checks_passed + stats.checks_failed;
            if all == 0 {
                1.0
            } else {
                stats.checks_passed as f64 / all as f64
            }
        }
        Metric::ChecksFailed => stats.checks_failed as f64,
    }
}

impl Threshold {
    pub fn judge(&self, stats: &LabelStats, seconds: f64, dropped: u64) -> Verdict {
        let observed = observe(self.metric, stats, seconds, dropped);
        Verdict {
            expr: self.expr.clone(),
            label: self.label.clone(),
            observed,
            passed: self.op.holds(observed, self.value),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_forms() {
        assert_eq!(
            parse_expr("p95 < 500ms").unwrap(),
            (Metric::Percentile(95.0), Op::Lt, 500.0)
        );
        assert_eq!(
            parse_expr("p(99.9)<=2s").unwrap(),
            (Metric::Percentile(99.9), Op::Le, 2000.0)
        );
        assert_eq!(
            parse_expr("error_rate < 1%").unwrap(),
            (Metric::ErrorRate, Op::Lt, 0.01)
        );
        assert_eq!(
            parse_expr("rps >= 100").unwrap(),
            (Metric::Rps, Op::Ge, 100.0)
        );
    }

    #[test]
    fn rejects_nonsense_with_a_reason() {
        assert!(parse_expr("p95 500ms")
            .unwrap_err()
            .contains("metric op value"));
        assert!(parse_expr("latency < 5")
            .unwrap_err()
            .contains("unknown metric"));
        assert!(parse_expr("p95 < 5x")
            .unwrap_err()
            .contains("not a duration"));
        assert!(parse_expr("p101 < 5ms")
            .unwrap_err()
            .contains("between 0 and 100"));
    }
}
