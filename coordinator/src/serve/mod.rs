//! `herd serve`: the long-running coordinator. The same run core as `herd run`; what differs
//! by profile ([`profile`]) is intake (inbox folder / SQS), launcher (local processes / ECS
//! Fargate), broker (embedded / IoT Core), result store (folder / S3) and notifier
//! (`notifications.jsonl` / SNS + EventBridge).
//!
//! - Intake: [`inbox`], [`sqs_intake`] → [`registry`] (`Runs`: idempotency, active runs,
//!   cancels) → [`prepare`] (request → checked bundle) → `run::start_run`.
//! - The end: [`completion`] (results to S3, `RunCompleted`) through [`notifier`].
//! - [`history`]: every run, from acceptance to its end, in the run history (`crate::store`).

pub mod api;
pub mod board;
pub mod completion;
pub mod history;
pub mod inbox;
pub mod notifier;
pub mod prepare;
pub mod profile;
pub mod queue;
pub mod registry;
pub mod scheduler;
pub mod seen;
pub mod sqs_intake;
pub mod state;
pub mod when;

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
/// How often abandoned runs' IoT identities are looked for, and how old a run must be before
/// it can be one (a run being launched is not yet in the registry's view).
const SWEEP_EVERY: Duration = Duration::from_secs(600);
const SWEEP_MIN_AGE_S: u64 = 900;

/// Removes the IoT things and certificates of runs this coordinator does not hold and that
/// are old enough not to be starting: left by a coordinator that died, or by a cleanup that
/// failed part-way.
async fn sweep(iot: &crate::aws::iot::Iot, runs: &Addr<Runs>) {
    let Ok(active) = runs.send(ActiveRuns).await else {
        return;
    };
    let now_s = crate::clock::unix_ms() / 1000;
    let keep = |run: &str| {
        active.iter().any(|a| a == run)
            || crate::clock::run_started_s(run)
                .is_none_or(|made| now_s.saturating_sub(made) < SWEEP_MIN_AGE_S)
    };
    match iot.sweep(keep).await {
        Ok(0) => {}
        Ok(n) => tracing::warn!(removed = n, "swept IoT identities of abandoned runs"),
        Err(e) => tracing::warn!(error = %e, "sweeping abandoned IoT identities failed"),
    }
}

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
    if env.broker_login {
        let path = env
            .identity
            .write_observer_login(&cfg.results_dir)
            .with_context(|| {
                format!(
                    "writing the observer login in {}",
                    cfg.results_dir.display()
                )
            })?;
        tracing::info!(file = %path.display(), "observers of live and result topics log in with this");
    }
    // Stable across restarts (derived from the kept identity): the broker keeps this
    // coordinator's persistent session — subscriptions and queued batches — while it is away.
    let client_id = env.identity.serve_client_id();
    let bus = Bus::connect(
        &env.broker,
        &env.tls,
        client_id,
        env.identity.clone(),
        env.broker_login,
        cfg.broker.intake_connections.unwrap_or(1),
    )
    .await
    .with_context(|| format!("connecting to the broker at {}", env.broker))?;
    let broker = env.broker.to_string();
    let iot = env.aws.as_ref().map(|a| a.iot.clone());
    // What the previous coordinator left: requests it already made runs (a redelivery is still
    // one run) and runs it did not finish (taken back before any new request is looked at).
    let (unfinished, known) = env
        .state
        .scan(crate::clock::unix_ms())
        .context("reading the state folder")?;
    // Opened before any run is taken. A file that is not a herd history does not stop the
    // start — the unfinished runs must be taken back whatever the history's state — but says
    // so loudly, and every write that cannot reach it is counted.
    let mut history_error = None;
    let store: Box<dyn crate::store::RunStore> = match history::open_store(&cfg) {
        Ok(store) => store,
        Err(e) => {
            tracing::error!(error = %e, "the run history cannot be opened: serving without it (runs go on and resume; their records are not kept)");
            eprintln!("herd serve: WARNING: the run history cannot be opened: {e}");
            history_error = Some(e.to_string());
            Box::new(crate::store::Unavailable(e.to_string()))
        }
    };
    let history = history::History::start(store, cfg.history.retention())
        .context("starting the run history's thread")?;
    let board = board::Board::default();
    let env = std::sync::Arc::new(env);
    let runs = Runs::new(
        env.clone(),
        bus.clone(),
        known,
        history.clone(),
        board.clone(),
        cfg.queue.clone(),
    )
    .start();
    for u in unfinished {
        runs.do_send(registry::ResumeRun(u));
    }
    if let (Some(iot), Some(_)) = (iot, &cfg.aws) {
        let runs = runs.clone();
        actix::spawn(async move {
            loop {
                sweep(&iot, &runs).await;
                tokio::time::sleep(SWEEP_EVERY).await;
            }
        });
    }
    if let Some((sqs, aws)) = setup.sqs {
        SqsIntake::new(
            sqs,
            aws.queue_url.clone(),
            aws.visibility_timeout_s,
            aws.spec_bucket.clone(),
            aws.spec_prefix.clone(),
            crate::aws::events::PipelineTrust {
                sources: aws.pipeline.sources.clone(),
                accounts: aws.pipeline.accounts.clone(),
            },
            runs.clone(),
        )
        .start();
    }
    // With [aws.scheduler], EventBridge Scheduler fires the schedules (into the intake queue).
    if env.aws.as_ref().is_none_or(|a| a.scheduler.is_none()) {
        scheduler::Scheduler::new(history.clone(), runs.clone(), cfg.schedules.catch_up_s).start();
    }
    if let Some(dir) = &cfg.inbox {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        inbox::Inbox::new(dir.clone(), runs.clone()).start();
    }
    let api = match &cfg.api {
        Some(c) => {
            let state = api::Api::new(
                runs.clone(),
                env.clone(),
                board.clone(),
                history.clone(),
                history_error.clone(),
                c.max_streams,
                c.oidc
                    .clone()
                    .map(api::oidc::Oidc::new)
                    .transpose()
                    .context("[api.oidc]")?,
            );
            Some(api::start(c, state).context("starting the API")?)
        }
        None => None,
    };
    eprintln!(
        "herd serve: ready — profile {:?}, broker {broker}, results {}{}{}",
        cfg.profile,
        cfg.results_dir.display(),
        cfg.inbox
            .as_ref()
            .map(|d| format!(", inbox {}", d.display()))
            .unwrap_or_default(),
        api.as_ref()
            .map(|a| format!(", api {}", a.url()))
            .unwrap_or_default()
    );

    shutdown.await;
    if let Some(a) = &api {
        // Live streams end; runs are then cancelled or left as `on_shutdown` says.
        a.handle.stop(true).await;
    }
    if cfg.on_shutdown == crate::config::OnShutdown::Resume {
        let active = runs.send(ActiveRuns).await.unwrap_or_default();
        eprintln!(
            "herd serve: shutting down — leaving {} active run(s) to the next start on {} (on_shutdown = \"resume\")",
            active.len(),
            cfg.state_dir().display()
        );
        bus.close(Duration::from_secs(2)).await;
        if let Some(own) = setup.own_credential {
            own.iot.revoke_coordinator(&own.cred, &own.policy).await;
        }
        return Ok(());
    }
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
