//! What the API answers, as typed documents (their schemas are in the OpenAPI document).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::store::{verdict_str, RunRow};

/// A run in the history.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RunView {
    pub run_id: String,
    /// The spec's `name`.
    pub spec: String,
    /// Where the request came from: `api:<token name>`, an inbox file, `s3://…`, a pipeline event.
    pub source: String,
    pub correlation_id: Option<String>,
    pub accepted_at_ms: u64,
    pub agents: u32,
    /// `queued`, `running`, `completed`, `failed` or `cancelled`.
    pub status: String,
    pub ended_at_ms: Option<u64>,
    /// Why it failed or was cancelled.
    pub reason: Option<String>,
    /// `passed` or `failed`; absent while running.
    pub verdict: Option<String>,
    pub requests: Option<u64>,
    pub errors: Option<u64>,
    pub rps: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub agents_lost: Option<u32>,
    /// Where the result files are.
    pub results: Option<String>,
    /// Why there are no result files.
    pub results_error: Option<String>,
}

/// A run with its `summary.json` and the spec it ran.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RunDetail {
    #[serde(flatten)]
    pub run: RunView,
    /// The run's `summary.json` (absent while running).
    #[schema(value_type = Option<Object>)]
    pub summary: Option<serde_json::Value>,
    /// The spec as written.
    pub spec_text: String,
    /// This run against its spec's baseline, when both have ended and they differ.
    pub baseline: Option<Comparison>,
}

/// One number, this run against the baseline.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Change {
    pub baseline: f64,
    pub this: f64,
    /// (this − baseline) / baseline × 100; absent when the baseline is 0.
    pub change_pct: Option<f64>,
}

/// A finished run against its spec's baseline run.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Comparison {
    pub baseline_run: String,
    pub requests: Change,
    pub rps: Change,
    pub p95_ms: Change,
    pub p99_ms: Change,
    pub error_rate: Change,
}

fn change(baseline: f64, this: f64) -> Change {
    Change {
        baseline,
        this,
        change_pct: (baseline != 0.0).then(|| (this - baseline) / baseline * 100.0),
    }
}

impl Comparison {
    /// `this` against `base`; None unless both have ended.
    pub fn of(this: &RunRow, base: &RunRow) -> Option<Comparison> {
        let (t, b) = (this.finished.as_ref()?, base.finished.as_ref()?);
        let rate = |f: &crate::store::Finished| {
            if f.requests > 0 {
                f.errors as f64 / f.requests as f64
            } else {
                0.0
            }
        };
        Some(Comparison {
            baseline_run: base.accepted.run_id.clone(),
            requests: change(b.requests as f64, t.requests as f64),
            rps: change(b.rps, t.rps),
            p95_ms: change(b.p95_ms, t.p95_ms),
            p99_ms: change(b.p99_ms, t.p99_ms),
            error_rate: change(rate(b), rate(t)),
        })
    }
}

/// A page of runs, newest accepted first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RunPage {
    pub runs: Vec<RunView>,
    /// Pass as `cursor` for the next page; absent on the last.
    pub next: Option<String>,
}

/// A run request's answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SubmitView {
    /// The run; absent when a duplicate request's first copy was rejected.
    pub run_id: Option<String>,
    /// True when the same `Idempotency-Key` was seen before: nothing new started.
    pub duplicate: bool,
}

/// A cancel's answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CancelView {
    pub run_id: String,
    /// The run was reached and is stopping (its result follows as usual).
    pub cancelling: bool,
}

/// An optional cancel body.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelRequest {
    /// Kept in the run's result (at most 500 characters).
    pub reason: Option<String>,
}

/// A result file.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FileView {
    pub name: String,
    pub bytes: u64,
}

/// One problem in a spec, with where it is.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SpecIssueView {
    /// Dotted path (`load.stages[2].duration`); empty for the document or a check beyond it.
    pub path: String,
    /// 1-based, when known.
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
}

/// `POST /validate`'s answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ValidateView {
    pub valid: bool,
    pub errors: Vec<SpecIssueView>,
    /// What a valid spec probably does not mean (`p95 < 200` without a unit, `error_rate < 1`).
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// `/readyz`'s answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReadyView {
    pub ready: bool,
    /// What is not ready.
    pub problems: Vec<String>,
}

impl RunView {
    pub fn of(row: &RunRow) -> RunView {
        let f = row.finished.as_ref();
        RunView {
            run_id: row.accepted.run_id.clone(),
            spec: row.accepted.spec.clone(),
            source: row.accepted.source.clone(),
            correlation_id: row.accepted.correlation_id.clone(),
            accepted_at_ms: row.accepted.accepted_at_ms,
            agents: row.accepted.agents,
            status: row.status.as_str().to_string(),
            ended_at_ms: f.map(|f| f.ended_at_ms),
            reason: f.and_then(|f| f.reason.clone()),
            verdict: f.map(|f| verdict_str(f.verdict).to_string()),
            requests: f.map(|f| f.requests),
            errors: f.map(|f| f.errors),
            rps: f.map(|f| f.rps),
            p95_ms: f.map(|f| f.p95_ms),
            p99_ms: f.map(|f| f.p99_ms),
            agents_lost: f.map(|f| f.agents_lost),
            results: f.and_then(|f| f.results.clone()),
            results_error: f.and_then(|f| f.results_error.clone()),
        }
    }
}

impl RunDetail {
    pub fn of(row: &RunRow) -> RunDetail {
        RunDetail {
            run: RunView::of(row),
            summary: row
                .finished
                .as_ref()
                .and_then(|f| serde_json::from_str(&f.summary).ok()),
            spec_text: row.accepted.spec_text.clone(),
            baseline: None,
        }
    }
}
