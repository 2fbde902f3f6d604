//! How a run ended, in one set of types every reader shares: `summary.json`, the retained
//! `herd/runs/{run}/result` topic, `notifications.jsonl`, SNS and EventBridge all carry these,
//! so a verdict cannot mean one thing in a file and another in a notification.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::threshold::ThresholdResult;

/// The end state of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EndState {
    /// Every agent's load phase ended and its batches were folded (some agents may be lost:
    /// see `agents_lost`).
    Completed,
    /// The run could not be carried out: launch failed, agents failed before the start, every
    /// agent was lost, fewer healthy agents than `min_healthy_agents`.
    Failed,
    /// Stopped on request (Ctrl-C, a pipeline's `CancelRequested`, shutdown) with partial results.
    Cancelled,
}

impl EndState {
    pub fn as_str(self) -> &'static str {
        match self {
            EndState::Completed => "completed",
            EndState::Failed => "failed",
            EndState::Cancelled => "cancelled",
        }
    }
}

impl std::fmt::Display for EndState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How one agent ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AgentState {
    /// It finished (or stopped gracefully) and every batch it sent was folded.
    Finished,
    /// It went silent, exited, overran, or some of its batches never arrived.
    Lost,
    /// It reported a failure (its reason says which).
    Failed,
}

/// A run's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Passed,
    Failed,
}

/// The one definition of a run's verdict: passed only when the run completed and every
/// threshold held. A failed or cancelled run is never `passed`, thresholds or not — a pipeline
/// gating on the verdict must not ship on a run that did not happen.
pub fn verdict(state: EndState, thresholds: &[ThresholdResult]) -> Verdict {
    if state == EndState::Completed && thresholds.iter().all(|t| t.passed) {
        Verdict::Passed
    } else {
        Verdict::Failed
    }
}

/// A run ended (EventBridge detail-type / SNS `type` attribute `RunCompleted`). Sent once per
/// accepted run, whatever its end state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunCompleted {
    pub run_id: String,
    /// The spec's `name`.
    pub spec: String,
    /// The pipeline's correlation id, when the run was requested with one.
    pub correlation_id: Option<String>,
    /// Where the request came from (inbox file, `s3://…` object, pipeline event).
    pub source: String,
    pub state: EndState,
    /// Why the run failed or was cancelled.
    pub reason: Option<String>,
    pub verdict: Verdict,
    pub requests: u64,
    pub errors: u64,
    /// Requests per second over the load phase.
    pub rps: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub agents_lost: u32,
    pub thresholds: Vec<ThresholdResult>,
    /// Where the result files are (`s3://…` or a local folder), all of them written whole;
    /// null when they are not, and then `results_error` says why.
    pub results: Option<String>,
    /// Why there are no results to read (a full disk, a failed upload, a run that never
    /// started), naming the file and the cause; null when `results` is set. Exactly one of the
    /// two is non-null.
    pub results_error: Option<String>,
}

/// A run request that could not become a run (detail-type `RunRejected`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunRejected {
    pub source: String,
    pub correlation_id: Option<String>,
    /// Every problem, each `origin:line:col: path: message` when it has a position.
    pub errors: Vec<String>,
}

/// The two notification kinds, as written to `notifications.jsonl` (`{"type", "detail"}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", content = "detail")]
pub enum Notification {
    RunCompleted(RunCompleted),
    RunRejected(RunRejected),
}

impl Notification {
    /// The EventBridge detail-type and SNS `type` attribute.
    pub fn kind(&self) -> &'static str {
        match self {
            Notification::RunCompleted(_) => "RunCompleted",
            Notification::RunRejected(_) => "RunRejected",
        }
    }

    /// The event's detail as JSON text.
    pub fn detail_json(&self) -> String {
        let text = match self {
            Notification::RunCompleted(c) => serde_json::to_string(c),
            Notification::RunRejected(r) => serde_json::to_string(r),
        };
        // Plain structs of strings and numbers always serialize.
        text.unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(passed: bool) -> ThresholdResult {
        ThresholdResult {
            expr: "p95 < 1ms".into(),
            label: None,
            observed: 0.5,
            passed,
            limit: None,
            reason: None,
            observed_display: "0.50ms".into(),
            limit_display: None,
        }
    }

    #[test]
    fn only_a_completed_run_with_every_threshold_held_passes() {
        assert_eq!(verdict(EndState::Completed, &[]), Verdict::Passed);
        assert_eq!(verdict(EndState::Completed, &[t(true)]), Verdict::Passed);
        assert_eq!(
            verdict(EndState::Completed, &[t(true), t(false)]),
            Verdict::Failed
        );
        assert_eq!(verdict(EndState::Failed, &[]), Verdict::Failed);
        assert_eq!(verdict(EndState::Cancelled, &[]), Verdict::Failed);
        assert_eq!(verdict(EndState::Cancelled, &[t(true)]), Verdict::Failed);
    }

    #[test]
    fn notifications_are_type_and_detail_lines() {
        let n = Notification::RunRejected(RunRejected {
            source: "inbox/a.yaml".into(),
            correlation_id: None,
            errors: vec!["a.yaml:1:1: name: required".into()],
        });
        let v: serde_json::Value = serde_json::to_value(&n).unwrap();
        assert_eq!(v["type"], "RunRejected");
        assert_eq!(v["detail"]["errors"][0], "a.yaml:1:1: name: required");
        assert_eq!(n.kind(), "RunRejected");
        let back: Notification = serde_json::from_value(v).unwrap();
        assert_eq!(back, n);
    }
}
