//! The end of a run under `herd serve`: results to S3 on AWS, then exactly one `RunCompleted`,
//! rendered from the run's one [`FinalResult`](crate::run::outcome::FinalResult) — or, when the
//! run never got a result, from a failed one that says why.

use std::sync::Arc;

use messages::outcome::Notification;

use super::notifier::Notify;
use super::profile::Env;
use crate::run::outcome::not_started;
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
}

pub async fn complete(env: Arc<Env>, e: Ended) {
    let plan = &e.plan;
    let (result, written) = match e.outcome {
        Some(o) => {
            if let Err(err) = &o.dir {
                tracing::error!(run = %plan.run_id, error = %err, "results were not written");
            }
            (o.result, o.dir.is_ok())
        }
        None => (
            not_started(&plan.run_id, &plan.spec, e.why_no_outcome),
            false,
        ),
    };
    let mut location = written.then(|| plan.dir.display().to_string());
    if let (Some(aws), true) = (&env.aws, written) {
        match aws
            .store
            .upload_results(&plan.dir, &plan.spec.name, &plan.run_id)
            .await
        {
            Ok(url) => location = Some(url),
            Err(err) => tracing::error!(
                run = %plan.run_id,
                error = %err,
                "uploading results failed; they stay in {}",
                plan.dir.display()
            ),
        }
    }
    let note = result.completed(&e.origin.source, e.origin.correlation_id.clone(), location);
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
}
