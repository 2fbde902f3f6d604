//! A k6 script's thresholds in herd's terms: the metrics herd merges across agents, with their
//! k6 aggregations, a `{name:…}` filter as a label, and `abortOnFail` / `delayAbortEval`. What
//! herd does not keep (other metrics, other tags, `!=`) is refused by name: a threshold the
//! author relies on is never dropped silently.

use messages::threshold::{AbortOnFail, Metric, Op, Threshold};
use serde_json::Value;

use super::k6_duration::ms;

/// k6 thresholds on the metrics herd merges across agents.
pub(super) fn thresholds(v: &Value, errs: &mut Vec<String>) -> Vec<Threshold> {
    let Some(map) = v.as_object() else {
        errs.push("options.thresholds must be an object of metric: [expressions]".into());
        return Vec::new();
    };
    let mut out = Vec::new();
    for (key, list) in map {
        let items: Vec<&Value> = match list {
            Value::Array(a) => a.iter().collect(),
            other => vec![other],
        };
        for item in items {
            match threshold(key, item) {
                Ok(t) => out.push(t),
                Err(e) => errs.push(format!("options.thresholds[{key:?}]: {e}")),
            }
        }
    }
    out
}

/// One k6 threshold (`"p(95)<500"` or `{threshold, abortOnFail, delayAbortEval}`) on `key`
/// (`metric` or `metric{tag:value}`).
pub fn threshold(key: &str, item: &Value) -> Result<Threshold, String> {
    let (expr, abort) = match item {
        Value::String(s) => (s.as_str(), None),
        Value::Object(o) => {
            let expr = o
                .get("threshold")
                .and_then(Value::as_str)
                .ok_or("an object threshold needs `threshold: \"...\"`")?;
            let abort = match o.get("abortOnFail") {
                Some(Value::Bool(true)) => {
                    let mut e = Vec::new();
                    let delay = match o.get("delayAbortEval").filter(|v| !v.is_null()) {
                        Some(d) => ms(d, "delayAbortEval", &mut e),
                        None => Some(0),
                    };
                    match delay {
                        Some(delay_ms) => Some(AbortOnFail { delay_ms }),
                        None => return Err(e.join("; ")),
                    }
                }
                Some(Value::Bool(false)) | None => None,
                Some(other) => return Err(format!("abortOnFail: {other} is not true or false")),
            };
            (expr, abort)
        }
        other => return Err(format!("{other} is not a threshold expression")),
    };
    let (metric_name, label) = match key.split_once('{') {
        None => (key.trim(), None),
        Some((m, tags)) => {
            let tags = tags
                .strip_suffix('}')
                .ok_or_else(|| format!("`{key}`: the tag filter is not closed"))?;
            let mut label = None;
            for tag in tags.split(',') {
                let (k, v) = tag
                    .split_once(':')
                    .ok_or_else(|| format!("`{key}`: `{tag}` is not tag:value"))?;
                match k.trim() {
                    "name" => label = Some(v.trim().to_string()),
                    other => {
                        return Err(format!(
                            "`{key}`: herd keeps results apart by the `name` tag only; a filter \
                             on `{other}` cannot be judged (give the spec `thresholds:` instead)"
                        ))
                    }
                }
            }
            (m.trim(), label)
        }
    };
    let (agg, op, value) = k6_expr(expr)?;
    let unsupported = || {
        format!(
            "`{agg}` is not an aggregation herd keeps for {metric_name} (it keeps: {})",
            match metric_name {
                "http_req_duration" => "avg, min, med, max, p(N)",
                "http_req_failed" | "checks" => "rate",
                "http_reqs" => "count, rate",
                _ => "count",
            }
        )
    };
    let metric = match metric_name {
        "http_req_duration" => match agg {
            "avg" => Metric::Mean,
            "min" => Metric::Min,
            "max" => Metric::Max,
            "med" => Metric::Percentile(50.0),
            p => {
                let n = p
                    .strip_prefix("p(")
                    .and_then(|r| r.strip_suffix(')'))
                    .and_then(|n| n.trim().parse::<f64>().ok())
                    .filter(|n| (0.0..=100.0).contains(n))
                    .ok_or_else(unsupported)?;
                Metric::Percentile(n)
            }
        },
        "http_req_failed" if agg == "rate" => Metric::ErrorRate,
        "http_reqs" if agg == "count" => Metric::Requests,
        "http_reqs" if agg == "rate" => Metric::Rps,
        "checks" if agg == "rate" => Metric::CheckPassRate,
        "dropped_iterations" if agg == "count" => Metric::DroppedIterations,
        "http_req_failed" | "http_reqs" | "checks" | "dropped_iterations" => {
            return Err(unsupported())
        }
        other => {
            return Err(format!(
                "herd merges http_req_duration, http_req_failed, http_reqs, checks and \
                 dropped_iterations across its agents; a threshold on `{other}` cannot be judged \
                 (give the spec `thresholds:` instead, which replace the script's)"
            ))
        }
    };
    if label.is_some() && matches!(metric, Metric::DroppedIterations) {
        return Err(format!("`{key}`: dropped iterations are not kept per name"));
    }
    Ok(Threshold {
        expr: format!("{key}: {expr}"),
        label,
        metric,
        op,
        value,
        baseline: None,
        abort,
    })
}

/// `aggregation op number`, as k6 writes it (`p(95)<500`, `rate < 0.01`, `count>=10`).
fn k6_expr(expr: &str) -> Result<(&str, Op, f64), String> {
    let e = expr.trim();
    let at = e
        .find(['<', '>', '=', '!'])
        .ok_or_else(|| format!("`{expr}` is not `aggregation operator value`"))?;
    let (agg, rest) = (e[..at].trim(), &e[at..]);
    let (op, num) = [
        ("===", Some(Op::Eq)),
        ("!=", None),
        ("<=", Some(Op::Le)),
        (">=", Some(Op::Ge)),
        ("==", Some(Op::Eq)),
        ("<", Some(Op::Lt)),
        (">", Some(Op::Gt)),
    ]
    .iter()
    .find_map(|(sym, op)| rest.strip_prefix(sym).map(|n| (*op, n)))
    .ok_or_else(|| format!("`{expr}`: unknown operator"))?;
    let op = op.ok_or_else(|| format!("`{expr}`: herd has no `!=` threshold"))?;
    let value: f64 = num
        .trim()
        .parse()
        .ok()
        .filter(|v: &f64| v.is_finite())
        .ok_or_else(|| format!("`{expr}`: `{}` is not a number", num.trim()))?;
    Ok((agg, op, value))
}
