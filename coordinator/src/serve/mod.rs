//! `herd serve`: the long-running coordinator. The same run core as `herd run`; what differs
//! by profile ([`profile`]) is intake (inbox folder / SQS), launcher (local processes / ECS
//! Fargate), broker (embedded / IoT Core), result store (folder / S3) and notifier
//! (`notifications.jsonl` / SNS + EventBridge).
//!
//! - Intake: [`inbox`], [`sqs_intake`] → [`registry`] (`Runs`: idempotency, active runs,
//!   cancels) → [`prepare`] (request → checked bundle) → `run::start_run`.
//! - The end: [`completion`] (results to S3, `RunCompleted`) through [`notifier`].

pub mod completion;
pub mod inbox;
pub mod notifier;
pub mod prepare;
pub mod profile;
pub mod registry;
pub mod sqs_intake;

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use actix::prelude::*;
use anyhow::Context as _;

use crate::bus::Bus;
use crate::config::ServeConfig;
use registry::{ActiveRuns, CancelRuns, Runs};
use sqs_intake::SqsIntake;

/// How long a shutdown waits for cancelled runs to write their results.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(60);

/// Serves until `shutdown` completes, then cancels active runs and waits (up to a minute) for
/// their results. `program` is the `herd` binary local agents run as.
pub async fn run(
    cfg: ServeConfig,
    program: PathBuf,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&cfg.results_dir)
        .with_context(|| format!("creating {}", cfg.results_dir.display()))?;
    let setup = profile::setup(&cfg, program).await?;
    let env = setup.env;
    let client_id = format!(
        "herd-coordinator-{}-{:04x}",
        crate::clock::stamp(),
        std::process::id() & 0xffff
    );
    let bus = Bus::connect(&env.broker, &env.tls, client_id)
        .await
        .with_context(|| format!("connecting to the broker at {}", env.broker))?;
    let broker = env.broker.to_string();
    let runs = Runs::new(env, bus.clone()).start();
    if let Some((sqs, aws)) = setup.sqs {
        SqsIntake::new(
            sqs,
            aws.queue_url.clone(),
            aws.visibility_timeout_s,
            aws.spec_bucket.clone(),
            aws.spec_prefix.clone(),
            runs.clone(),
        )
        .start();
    }
    if let Some(dir) = &cfg.inbox {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        inbox::Inbox::new(dir.clone(), runs.clone()).start();
    }
    eprintln!(
        "herd serve: ready — profile {:?}, broker {broker}, results {}{}",
        cfg.profile,
        cfg.results_dir.display(),
        cfg.inbox
            .as_ref()
            .map(|d| format!(", inbox {}", d.display()))
            .unwrap_or_default()
    );

    shutdown.await;
    eprintln!("herd serve: shutting down — cancelling active runs");
    let active = runs.send(ActiveRuns).await.unwrap_or_default();
    for run_id in &active {
        runs.do_send(CancelRuns {
            run_id: Some(run_id.clone()),
            correlation_id: None,
            reason: "the coordinator is shutting down".into(),
        });
    }
    let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
    while tokio::time::Instant::now() < deadline {
        if runs.send(ActiveRuns).await.map_or(true, |a| a.is_empty()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bus.close(Duration::from_secs(2)).await;
    if let Some(own) = setup.own_credential {
        own.iot.revoke_coordinator(&own.cred, &own.policy).await;
    }
    Ok(())
}
