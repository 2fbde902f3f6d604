//! Checks and captures on a response.

use crate::http::Response;

use super::compile::{CCapture, CCheck, CStep};

/// Outcome of a step's checks and captures for one response.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub passed: u16,
    pub failed: u16,
}

/// Runs `step`'s checks and captures on `resp`, storing captured values in `slots`.
/// A capture counts as a check: one that finds nothing fails (the next steps would run blind).
pub fn evaluate(step: &CStep, resp: &Response, slots: &mut [Option<String>]) -> Tally {
    let mut t = Tally::default();
    let mut json: Option<Option<serde_json::Value>> = None;
    let parse_json =
        |resp: &Response| -> Option<serde_json::Value> { serde_json::from_slice(&resp.body).ok() };
    for c in &step.checks {
        let ok = match c {
            CCheck::Status(codes) => codes.contains(&resp.status),
            CCheck::Header { name, contains } => match resp.headers.get(name) {
                None => false,
                Some(v) => contains.as_ref().is_none_or(|needle| {
                    String::from_utf8_lossy(v.as_bytes()).contains(needle.as_str())
                }),
            },
            CCheck::BodyContains(needle) => {
                String::from_utf8_lossy(&resp.body).contains(needle.as_str())
            }
            CCheck::BodyRegex(re) => re.is_match(&String::from_utf8_lossy(&resp.body)),
            CCheck::JsonPath { path, equals, .. } => {
                let doc = json.get_or_insert_with(|| parse_json(resp));
                match doc {
                    None => false,
                    Some(doc) => {
                        let nodes = path.query(doc);
                        match (nodes.first(), equals) {
                            (None, _) => false,
                            (Some(_), None) => true,
                            (Some(v), Some(want)) => *v == *want,
                        }
                    }
                }
            }
        };
        if ok {
            t.passed += 1;
        } else {
            t.failed += 1;
        }
    }
    for (slot, _name, cap) in &step.captures {
        let value = match cap {
            CCapture::Header(h) => resp
                .headers
                .get(h)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            CCapture::Regex(re) => {
                let body = String::from_utf8_lossy(&resp.body);
                re.captures(&body)
                    .and_then(|c| c.get(1).or_else(|| c.get(0)))
                    .map(|m| m.as_str().to_string())
            }
            CCapture::JsonPath(p) => {
                let doc = json.get_or_insert_with(|| parse_json(resp));
                doc.as_ref().and_then(|d| {
                    p.query(d).first().map(|v| match v {
                        serde_json::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                })
            }
        };
        if value.is_none() {
            t.failed += 1;
        } else {
            t.passed += 1;
        }
        if let Some(s) = slots.get_mut(*slot) {
            *s = value;
        }
    }
    t
}
