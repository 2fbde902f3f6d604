//! k6's `--out json` stream (NDJSON): `Metric` declarations and `Point` samples.
//!
//! One HTTP request produces a dozen points sharing their tags; the `http_req_duration` point
//! carries everything a request sample needs (label from the `name` tag, `status`, failure
//! from `expected_response`, the error code), so it alone becomes a [`K6Event::Request`].
//! `data_*`, `vus`, `iterations` and `checks` become their own events; the other
//! `http_req_*` timings are skipped (herd records total latency).

use std::borrow::Cow;

use serde::Deserialize;

#[derive(Debug, Clone, PartialEq)]
pub enum K6Event {
    Request {
        /// Unix ms of the sample.
        at_ms: u64,
        label: String,
        /// 0 when k6 got no response.
        status: u16,
        failed: bool,
        /// k6's error code (`1212` connection refused, `1503` HTTP 503…), when set.
        error_code: Option<String>,
        latency_us: u64,
    },
    DataIn {
        at_ms: u64,
        bytes: u64,
    },
    DataOut {
        at_ms: u64,
        bytes: u64,
    },
    Vus {
        at_ms: u64,
        vus: u64,
    },
    Iteration {
        at_ms: u64,
    },
    Check {
        at_ms: u64,
        name: String,
        passed: bool,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum K6ParseError {
    #[error("line is not a k6 JSON output object: {0}")]
    Json(String),
    #[error("point of `{metric}` has a bad time {time:?}")]
    Time { metric: String, time: String },
}

#[derive(Deserialize)]
struct Line<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    metric: Cow<'a, str>,
    #[serde(default)]
    data: Option<Data<'a>>,
}

#[derive(Deserialize)]
struct Data<'a> {
    #[serde(borrow, default)]
    time: Option<Cow<'a, str>>,
    #[serde(default)]
    value: Option<f64>,
    #[serde(borrow, default)]
    tags: Option<Tags<'a>>,
}

#[derive(Deserialize, Default)]
struct Tags<'a> {
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    status: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    expected_response: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    error_code: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    check: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    method: Option<Cow<'a, str>>,
}

fn unix_ms(metric: &str, t: &str) -> Result<u64, K6ParseError> {
    humantime::parse_rfc3339(t)
        .ok()
        .and_then(|st| st.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as u64)
        .ok_or_else(|| K6ParseError::Time {
            metric: metric.to_string(),
            time: t.to_string(),
        })
}

/// Parses one line; `Ok(None)` for declarations and metrics herd does not use.
pub fn parse_line(line: &str) -> Result<Option<K6Event>, K6ParseError> {
    let line = line.trim();
    if line.is_empty() {
        return Ok(None);
    }
    let l: Line = serde_json::from_str(line).map_err(|e| K6ParseError::Json(e.to_string()))?;
    if l.kind != "Point" {
        return Ok(None);
    }
    let metric = l.metric.as_ref();
    if !matches!(
        metric,
        "http_req_duration" | "data_received" | "data_sent" | "vus" | "iterations" | "checks"
    ) {
        return Ok(None);
    }
    let Some(d) = l.data else { return Ok(None) };
    let at_ms = match &d.time {
        Some(t) => unix_ms(metric, t)?,
        None => {
            return Err(K6ParseError::Time {
                metric: metric.to_string(),
                time: String::new(),
            })
        }
    };
    let value = d.value.unwrap_or(0.0);
    let tags = d.tags.unwrap_or_default();
    let count = value.max(0.0).round() as u64;
    Ok(Some(match metric {
        "http_req_duration" => {
            // Without a `name` tag k6 labels by URL; prefer METHOD + name like herd does.
            let name = tags.name.as_deref().unwrap_or("unnamed");
            let label = match tags.method.as_deref() {
                Some(m) if !name.contains(' ') => format!("{m} {name}"),
                _ => name.to_string(),
            };
            let status = tags
                .status
                .as_deref()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            K6Event::Request {
                at_ms,
                label,
                status,
                failed: tags.expected_response.as_deref() == Some("false") || status == 0,
                error_code: tags.error_code.map(Cow::into_owned),
                latency_us: (value.max(0.0) * 1000.0).round() as u64,
            }
        }
        "data_received" => K6Event::DataIn {
            at_ms,
            bytes: count,
        },
        "data_sent" => K6Event::DataOut {
            at_ms,
            bytes: count,
        },
        "vus" => K6Event::Vus { at_ms, vus: count },
        "iterations" => K6Event::Iteration { at_ms },
        _ => K6Event::Check {
            at_ms,
            name: tags.check.map(Cow::into_owned).unwrap_or_default(),
            passed: value > 0.5,
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_become_events_and_declarations_are_skipped() {
        let decl = r#"{"type":"Metric","data":{"name":"http_reqs","type":"counter","contains":"default","thresholds":[],"submetrics":null},"metric":"http_reqs"}"#;
        assert_eq!(parse_line(decl).unwrap(), None);
        let p = r#"{"metric":"http_req_duration","type":"Point","data":{"time":"2026-11-25T22:02:02.5Z","value":0.375208,"tags":{"expected_response":"true","method":"GET","name":"item","status":"200"}}}"#;
        match parse_line(p).unwrap() {
            Some(K6Event::Request {
                at_ms,
                label,
                status,
                failed,
                latency_us,
                ..
            }) => {
                assert_eq!(
                    (label.as_str(), status, failed, latency_us),
                    ("GET item", 200, false, 375)
                );
                assert_eq!(at_ms % 1000, 500);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(parse_line("{not json").is_err());
        assert!(parse_line(
            r#"{"type":"Point","metric":"vus","data":{"time":"yesterday","value":1}}"#
        )
        .is_err());
    }
}
