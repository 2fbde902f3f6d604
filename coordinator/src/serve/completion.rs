//! The end of a run under `herd serve`: results to S3 on AWS, then exactly one `RunCompleted`,
//! rendered from the run's one [`FinalResult`](crate::run::outcome::FinalResult) — or, when the
//! run never got a result, from a failed one that says why. Its `results` names only a folder
//! written (and uploaded) whole; otherwise `results_error` says what was lost and why.

use std::sync::Arc;

use messages::outcome::Notification;

use super::notifier::Notify;
use super::profile::Env;
use crate::run::outcome::{cancelled_before_start, not_started};
use crate::run::supervisor::Outcome;

/// What is known of a request, kept with its run.
#[derive(Clone)]
pub struct Origin {
    pub source: String,
    pub correlation_id: Option<String>,
}

/// The parts of a plan completion needs.
pub struct PlanInfo {
    pub run_id: String,
    pub spec: messages::spec::Spec,
    pub regions: Vec<String>,
    pub dir: std::path::PathBuf,
}

/// A run that is over, with what its owner knows of it.
pub struct Ended {
    pub plan: Arc<PlanInfo>,
    pub origin: Origin,
    pub outcome: Option<Outcome>,
    /// What to say when there is no outcome.
    pub why_no_outcome: String,
    /// No outcome because it was cancelled before it started (a queued run).
    pub cancelled: bool,
}

/// What was announced, for the run history.
pub struct Announced {
    pub note: messages::outcome::RunCompleted,
    pub ended_at_ms: u64,
    /// The run's `summary.json`, as JSON text.
    pub summary: String,
}

pub async fn complete(env: Arc<Env>, e: Ended) -> Announced {
    let plan = &e.plan;
    let (result, written) = match e.outcome {
        Some(o) => {
            let written = o.dir.map_err(|err| {
                tracing::error!(run = %plan.run_id, error = %err, "results were not written");
                err.to_string()
            });
            (o.result, written)
        }
        None => {
            let why = format!("no results: {}", e.why_no_outcome);
            let result = if e.cancelled {
                cancelled_before_start(&plan.run_id, &plan.spec, e.why_no_outcome)
            } else {
                not_started(&plan.run_id, &plan.spec, e.why_no_outcome)
            };
            (result, Err(why))
        }
    };
    // Only a folder written whole is uploaded or announced.
    let results = match (written, &env.aws) {
        (Err(why), _) => Err(why),
        (Ok(dir), None) => Ok(dir.display().to_string()),
        (Ok(dir), Some(aws)) => aws
            .store
            .upload_results(&dir, &plan.spec.name, &plan.run_id)
            .await
            .map_err(|err| {
                tracing::error!(
                    run = %plan.run_id,
                    error = %err,
                    "uploading results failed; they stay in {}",
                    dir.display()
                );
                format!(
                    "results not uploaded: {err}; they stay in {} on the coordinator",
                    dir.display()
                )
            }),
    };
    let note = result.completed(&e.origin.source, e.origin.correlation_id.clone(), results);
    // A plain struct of strings and numbers: serializing it cannot fail, but if it did the
    // history would say so rather than hold nothing.
    let summary = serde_json::to_string(&result.summary())
        .unwrap_or_else(|err| serde_json::json!({ "error": err.to_string() }).to_string());
    let announced = Announced {
        note: note.clone(),
        ended_at_ms: result.ended_at_ms,
        summary,
    };
    match env
        .notifier
        .send(Notify(Notification::RunCompleted(note)))
        .await
    {
        Ok(Ok(())) => {}
        Ok(Err(err)) => {
            tracing::error!(run = %plan.run_id, error = %err, "RunCompleted not delivered")
        }
        Err(err) => tracing::error!(error = %err, "notifier unreachable"),
    }
    announced
}
