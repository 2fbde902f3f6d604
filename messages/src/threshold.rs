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
    /// In the metric's unit: milliseconds for latencies, a fraction for rates. Unused when
    /// `baseline` is set.
    pub value: f64,
    /// The limit is the baseline run's value of this metric times a factor
    /// (`p95 < baseline.p95 * 1.10`).
    pub baseline: Option<BaselineRef>,
    /// Judged every second while the run goes (on everything folded so far) as well as at
    /// the end; the first time it fails the run is stopped (k6's `abortOnFail`).
    #[serde(default)]
    pub abort: Option<AbortOnFail>,
}

/// Stop the run as soon as the threshold fails, judging it from `delay_ms` after the start
/// (k6's `delayAbortEval`: the first seconds' few samples do not stop a run).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AbortOnFail {
    pub delay_ms: u64,
}

/// `baseline.METRIC * FACTOR`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BaselineRef {
    pub metric: Metric,
    pub factor: f64,
}

/// The right side of a threshold: a value, or the baseline's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Limit {
    Value(f64),
    Baseline(BaselineRef),
}

/// A baseline run's numbers, as a threshold asks for them: `label` None for all requests.
pub trait BaselineValues {
    fn value(&self, label: Option<&str>, metric: Metric) -> Option<f64>;
    /// Names the baseline in reasons (its run id).
    fn name(&self) -> &str;
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

/// Why a threshold expression was refused. The texts are shown to users as they are.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ThresholdError {
    /// No comparison operator: not `metric op value`.
    #[error(
        "`{0}` is not a threshold: write `metric op value`, e.g. `p95 < 500ms` or `error_rate < 1%`"
    )]
    NotAnExpression(String),
    #[error("unknown metric `{0}`{hint} (known: {known})", hint = did_you_mean(.0), known = METRICS_HELP)]
    UnknownMetric(String),
    #[error("percentile `{0}` must be between 0 and 100")]
    PercentileOutOfRange(String),
    /// A latency limit that is neither milliseconds nor a duration.
    #[error("`{0}` is not a duration (e.g. 500ms, 1.5s is written 1500ms)")]
    NotADuration(String),
    /// A rate limit ending in `%` whose number does not parse.
    #[error("`{0}` is not a percentage")]
    NotAPercentage(String),
    #[error("`{0}` is not a rate (write 1% or 0.01)")]
    NotARate(String),
    #[error("`{0}` is not a number")]
    NotANumber(String),
    #[error(
        "`{0}`: write `baseline.METRIC` or `baseline.METRIC * FACTOR`, e.g. `baseline.p95 * 1.10`"
    )]
    NotABaseline(String),
    #[error("`{0}`: compare like with like (a latency with a latency, a rate with a rate, a count with a count)")]
    UnlikeBaseline(String),
    #[error("`{0}`: the factor must be a positive number")]
    BadFactor(String),
}

/// The metric names a misspelling is compared with.
const METRIC_NAMES: &[&str] = &[
    "p50",
    "p90",
    "p95",
    "p99",
    "min",
    "max",
    "mean",
    "error_rate",
    "errors",
    "requests",
    "rps",
    "dropped_iterations",
    "check_pass_rate",
    "checks_failed",
];

fn did_you_mean(word: &str) -> String {
    crate::near::closest(word, METRIC_NAMES)
        .map(|m| format!(" — did you mean `{m}`?"))
        .unwrap_or_default()
}

fn parse_metric(s: &str) -> Result<Metric, ThresholdError> {
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
                Some(_) => return Err(ThresholdError::PercentileOutOfRange(s.to_string())),
                None => return Err(ThresholdError::UnknownMetric(s.to_string())),
            }
        }
    };
    Ok(m)
}

fn parse_value(metric: Metric, s: &str) -> Result<f64, ThresholdError> {
    if metric.is_latency() {
        if let Ok(n) = s.parse::<f64>() {
            return Ok(n); // milliseconds
        }
        return humantime::parse_duration(s)
            .map(|d| d.as_secs_f64() * 1000.0)
            .map_err(|_| ThresholdError::NotADuration(s.to_string()));
    }
    if metric.is_rate() {
        if let Some(p) = s.strip_suffix('%') {
            return p
                .trim()
                .parse::<f64>()
                .map(|v| v / 100.0)
                .map_err(|_| ThresholdError::NotAPercentage(s.to_string()));
        }
        return s
            .parse::<f64>()
            .map_err(|_| ThresholdError::NotARate(s.to_string()));
    }
    s.parse::<f64>()
        .map_err(|_| ThresholdError::NotANumber(s.to_string()))
}

impl Metric {
    /// Latency, rate or count: what a baseline comparison must keep the same.
    fn kind(self) -> u8 {
        if self.is_latency() {
            0
        } else if self.is_rate() {
            1
        } else {
            2
        }
    }
}

fn parse_baseline(metric: Metric, s: &str) -> Result<BaselineRef, ThresholdError> {
    let rest = s
        .strip_prefix("baseline.")
        .ok_or_else(|| ThresholdError::NotABaseline(s.to_string()))?;
    let (m, factor) = match rest.split_once('*') {
        Some((m, f)) => {
            let f = f.trim();
            let factor = f
                .parse::<f64>()
                .ok()
                .filter(|x| x.is_finite() && *x > 0.0)
                .ok_or_else(|| ThresholdError::BadFactor(f.to_string()))?;
            (m.trim(), factor)
        }
        None => (rest.trim(), 1.0),
    };
    let base = parse_metric(m)?;
    if base.kind() != metric.kind() {
        return Err(ThresholdError::UnlikeBaseline(s.to_string()));
    }
    Ok(BaselineRef {
        metric: base,
        factor,
    })
}

/// Parses `metric op value` or `metric op baseline.METRIC [* FACTOR]`.
pub fn parse_limit(expr: &str) -> Result<(Metric, Op, Limit), ThresholdError> {
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
            let rhs = expr[i + sym.len()..].trim();
            let limit = if rhs.starts_with("baseline") {
                Limit::Baseline(parse_baseline(metric, rhs)?)
            } else {
                Limit::Value(parse_value(metric, rhs)?)
            };
            return Ok((metric, op, limit));
        }
    }
    Err(ThresholdError::NotAnExpression(expr.to_string()))
}

/// Parses `metric op value` (a threshold with a constant limit).
pub fn parse_expr(expr: &str) -> Result<(Metric, Op, f64), ThresholdError> {
    match parse_limit(expr)? {
        (metric, op, Limit::Value(v)) => Ok((metric, op, v)),
        (_, _, Limit::Baseline(_)) => Err(ThresholdError::NotAnExpression(expr.to_string())),
    }
}

/// What a threshold saw, for reports. `observed` is NaN (JSON `null`) when it could not be
/// judged, and then it did not pass.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ThresholdResult {
    pub expr: String,
    pub label: Option<String>,
    /// `null` when it could not be judged.
    #[schemars(with = "Option<f64>")]
    pub observed: f64,
    pub passed: bool,
    /// A baseline threshold's limit: the baseline's value times the factor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<f64>,
    /// Why it could not be judged (no baseline, or the baseline lacks the metric).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// `observed` in the threshold's own unit, as people read it: `0.80ms`, `20.00%`, `1250/s`.
    #[serde(default)]
    pub observed_display: String,
    /// `limit` likewise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_display: Option<String>,
}

impl Metric {
    /// `value` (as `observe` gives it) in this metric's unit: latencies in ms (or s past 10 s),
    /// rates as percentages, counts as integers, throughput per second.
    pub fn display(self, value: f64) -> String {
        if !value.is_finite() {
            return "n/a".into();
        }
        match self {
            Metric::Percentile(_) | Metric::Min | Metric::Max | Metric::Mean => {
                if value >= 10_000.0 {
                    format!("{:.2}s", value / 1000.0)
                } else {
                    format!("{value:.2}ms")
                }
            }
            Metric::ErrorRate | Metric::CheckPassRate => format!("{:.2}%", value * 100.0),
            Metric::Errors
            | Metric::Requests
            | Metric::DroppedIterations
            | Metric::ChecksFailed => {
                format!("{value:.0}")
            }
            Metric::Rps => format!("{value:.1}/s"),
        }
    }
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
    /// Judges the threshold on `stats`; a baseline threshold against `baseline`, and without
    /// one (or a baseline lacking the metric) it fails, saying why.
    pub fn judge(
        &self,
        stats: &LabelStats,
        seconds: f64,
        dropped: u64,
        baseline: Option<&dyn BaselineValues>,
    ) -> ThresholdResult {
        let observed = observe(self.metric, stats, seconds, dropped);
        let shown = |v: f64| self.metric.display(v);
        let mut r = ThresholdResult {
            expr: self.expr.clone(),
            label: self.label.clone(),
            observed,
            passed: false,
            limit: None,
            reason: None,
            observed_display: shown(observed),
            limit_display: None,
        };
        let Some(b) = self.baseline else {
            r.passed = self.op.holds(observed, self.value);
            return r;
        };
        match baseline {
            None => r.reason = Some("no baseline run to compare with".into()),
            Some(base) => match base.value(self.label.as_deref(), b.metric) {
                Some(v) if v.is_finite() => {
                    let limit = v * b.factor;
                    r.limit = Some(limit);
                    r.limit_display = Some(shown(limit));
                    r.passed = self.op.holds(observed, limit);
                    if !r.passed {
                        r.reason = Some(format!(
                            "regression against baseline {}: {} against a limit of {} ({} × {})",
                            base.name(),
                            shown(observed),
                            shown(limit),
                            shown(v),
                            b.factor
                        ));
                    }
                }
                _ => {
                    r.reason = Some(format!(
                        "baseline {} has no value for this metric{}",
                        base.name(),
                        self.label
                            .as_deref()
                            .map(|l| format!(" of label {l:?}"))
                            .unwrap_or_default()
                    ))
                }
            },
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observed_values_are_shown_in_the_thresholds_unit() {
        let shown = |expr: &str, v: f64| parse_expr(expr).unwrap().0.display(v);
        assert_eq!(shown("p95 < 200ms", 0.795), "0.80ms");
        assert_eq!(shown("p99 < 30s", 12_345.0), "12.35s");
        assert_eq!(shown("error_rate < 1%", 0.2), "20.00%");
        assert_eq!(shown("check_pass_rate > 99%", 0.99), "99.00%");
        assert_eq!(shown("requests == 10", 10.0), "10");
        assert_eq!(shown("rps > 100", 1234.56), "1234.6/s");
        assert_eq!(shown("p95 < 1ms", f64::NAN), "n/a");
    }

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
            .to_string()
            .contains("metric op value"));
        assert!(parse_expr("latency < 5")
            .unwrap_err()
            .to_string()
            .contains("unknown metric"));
        assert!(parse_expr("p95 < 5x")
            .unwrap_err()
            .to_string()
            .contains("not a duration"));
        assert!(parse_expr("p101 < 5ms")
            .unwrap_err()
            .to_string()
            .contains("between 0 and 100"));
    }

    #[test]
    fn baseline_limits_parse_and_refuse_unlike_metrics() {
        assert_eq!(
            parse_limit("p95 < baseline.p95 * 1.10").unwrap(),
            (
                Metric::Percentile(95.0),
                Op::Lt,
                Limit::Baseline(BaselineRef {
                    metric: Metric::Percentile(95.0),
                    factor: 1.10
                })
            )
        );
        assert_eq!(
            parse_limit("rps >= baseline.rps*0.95").unwrap().2,
            Limit::Baseline(BaselineRef {
                metric: Metric::Rps,
                factor: 0.95
            })
        );
        assert_eq!(
            parse_limit("error_rate <= baseline.error_rate").unwrap().2,
            Limit::Baseline(BaselineRef {
                metric: Metric::ErrorRate,
                factor: 1.0
            })
        );
        assert_eq!(parse_limit("p95 < 500ms").unwrap().2, Limit::Value(500.0));
        let err = |e: &str| parse_limit(e).unwrap_err().to_string();
        assert!(err("p95 < baseline.rps * 1.1").contains("like with like"));
        assert!(err("p95 < baseline.p95 * -1").contains("positive"));
        assert!(err("p95 < baseline.p95 * x").contains("positive"));
        assert!(err("p95 < baselines.p95").contains("baseline.METRIC"));
        assert!(err("p95 < baseline.latency").contains("unknown metric"));
    }

    struct Base(f64);
    impl BaselineValues for Base {
        fn value(&self, _label: Option<&str>, m: Metric) -> Option<f64> {
            (m == Metric::Percentile(95.0)).then_some(self.0)
        }
        fn name(&self) -> &str {
            "base-1"
        }
    }

    #[test]
    fn a_baseline_threshold_is_judged_against_the_baseline_or_fails_saying_why() {
        let (metric, op, limit) = parse_limit("p95 < baseline.p95 * 1.10").unwrap();
        let Limit::Baseline(b) = limit else { panic!() };
        let t = Threshold {
            expr: "p95 < baseline.p95 * 1.10".into(),
            label: None,
            metric,
            op,
            value: 0.0,
            baseline: Some(b),
            abort: None,
        };
        let mut stats = LabelStats::default();
        for _ in 0..100 {
            stats.latency.record(12_000).unwrap(); // 12 ms
        }
        stats.requests = 100;
        let slower = t.judge(&stats, 1.0, 0, Some(&Base(10.0)));
        assert!(!slower.passed);
        assert!((slower.limit.unwrap() - 11.0).abs() < 1e-9);
        assert!(slower
            .reason
            .unwrap()
            .contains("regression against baseline base-1"));
        let fine = t.judge(&stats, 1.0, 0, Some(&Base(11.5)));
        assert!(fine.passed && fine.reason.is_none());
        let none = t.judge(&stats, 1.0, 0, None);
        assert!(!none.passed);
        assert_eq!(
            none.reason.as_deref(),
            Some("no baseline run to compare with")
        );
        let constant = Threshold {
            baseline: None,
            value: 20.0,
            ..t
        };
        assert!(constant.judge(&stats, 1.0, 0, None).passed);
    }

    /// The texts are what users see (with the spec position in front), so they are pinned here.
    #[test]
    fn error_texts_are_the_user_messages() {
        let text = |e: &str| parse_expr(e).unwrap_err().to_string();
        assert_eq!(
            text("p95 500ms"),
            "`p95 500ms` is not a threshold: write `metric op value`, e.g. `p95 < 500ms` or `error_rate < 1%`"
        );
        assert_eq!(
            text("latency < 5"),
            format!("unknown metric `latency` (known: {METRICS_HELP})")
        );
        assert_eq!(
            text("p101 < 5ms"),
            "percentile `p101` must be between 0 and 100"
        );
        assert_eq!(
            text("p95 < 5x"),
            "`5x` is not a duration (e.g. 500ms, 1.5s is written 1500ms)"
        );
        assert_eq!(text("error_rate < x%"), "`x%` is not a percentage");
        assert_eq!(
            text("error_rate < x"),
            "`x` is not a rate (write 1% or 0.01)"
        );
        assert_eq!(text("rps > x"), "`x` is not a number");
        assert_eq!(
            parse_expr("rps > x"),
            Err(ThresholdError::NotANumber("x".into()))
        );
    }
}
