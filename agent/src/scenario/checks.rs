//! Checks and captures on a response.

use crate::http::Response;

use messages::spec::{Check, Step};
use messages::wire::CheckCount;

use super::compile::{CCapture, CCheck, CStep, Plan};
use crate::recorder::CheckBook;

/// Outcome of a step's checks and captures for one response.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub passed: u16,
    pub failed: u16,
    /// Which failed: bit i for check i (captures after the checks), bit 63 for any past it.
    pub failed_mask: u64,
}

impl Tally {
    fn note(&mut self, i: usize, ok: bool) {
        if ok {
            self.passed += 1;
        } else {
            self.failed += 1;
            self.failed_mask |= 1 << i.min(63);
        }
    }
}

/// Every check of a step failed (its request got no response): the mask of its `n` checks.
pub fn all_failed(n: usize) -> u64 {
    if n >= 64 {
        u64::MAX
    } else {
        (1u64 << n) - 1
    }
}

/// Runs `step`'s checks and captures on `resp`, storing captured values in `slots`.
/// A capture counts as a check: one that finds nothing fails (the next steps would run blind).
pub fn evaluate(step: &CStep, resp: &Response, slots: &mut [Option<String>]) -> Tally {
    let mut t = Tally::default();
    let mut json: Option<Option<serde_json::Value>> = None;
    let parse_json =
        |resp: &Response| -> Option<serde_json::Value> { serde_json::from_slice(&resp.body).ok() };
    for (i, c) in step.checks.iter().enumerate() {
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
        t.note(i, ok);
    }
    let n = step.checks.len();
    for (j, (slot, _name, cap)) in step.captures.iter().enumerate() {
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
        t.note(n + j, value.is_some());
        if let Some(s) = slots.get_mut(*slot) {
            *s = value;
        }
    }
    t
}

/// What a check is called where people read results: derived from what it checks
/// (`status 200`, `json_path $.user == "ann"`, `captures token`), under its step's label.
pub fn names(step: &Step) -> Vec<String> {
    let mut out: Vec<String> = step
        .checks
        .iter()
        .map(|c| match c {
            Check::Status(codes) => match codes.as_slice() {
                [one] => format!("status {one}"),
                many => format!(
                    "status in {}",
                    many.iter()
                        .map(u16::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            },
            Check::Header {
                name,
                contains: None,
            } => format!("header {name} present"),
            Check::Header {
                name,
                contains: Some(c),
            } => format!("header {name} contains {c:?}"),
            Check::BodyContains(s) => format!("body contains {s:?}"),
            Check::BodyRegex(r) => format!("body matches /{r}/"),
            Check::JsonPath { path, equals: None } => format!("json_path {path} exists"),
            Check::JsonPath {
                path,
                equals: Some(v),
            } => format!("json_path {path} == {v}"),
        })
        .collect();
    out.extend(step.captures.iter().map(|c| format!("captures {}", c.var)));
    out
}

/// Each native check's passes and failures from the recorder's tally, named by [`names`]
/// (checks past the 64th of a step share the 64th's count and name it so). At most
/// [`messages::wire::MAX_CHECKS`], in step order.
pub fn counts(spec: &messages::spec::Spec, plan: &Plan, book: &CheckBook) -> Vec<CheckCount> {
    let mut out = Vec::new();
    for (i, (step, cstep)) in spec.scenario.iter().zip(&plan.steps).enumerate() {
        let Some(tally) = book.steps.get(i).filter(|t| t.evaluated > 0) else {
            continue;
        };
        let label = plan
            .labels
            .get(usize::from(cstep.label))
            .cloned()
            .unwrap_or_default();
        let mut names = names(step);
        if names.len() > 64 {
            names.truncate(63);
            names.push("checks 64 and after".into());
        }
        for (bit, name) in names.into_iter().enumerate() {
            let failed = tally.failed.get(bit).copied().unwrap_or(0);
            out.push(CheckCount {
                label: label.clone(),
                name: messages::wire::clip_text(&name, messages::wire::MAX_CHECK_NAME_BYTES),
                passed: tally.evaluated.saturating_sub(failed),
                failed,
            });
        }
    }
    out.truncate(messages::wire::MAX_CHECKS);
    out
}
