//! One run's core, the same under `herd run` and `herd serve`: only the launcher (local
//! processes or ECS tasks) and what happens to the results afterwards differ.
//!
//! - [`RunPlan`]: what a run is made of, fixed before it starts (spec, files, shares, regions).
//! - [`machine`]: the run's lifecycle as a pure state machine; [`reasons`]: why runs fail and
//!   agents drop out; [`clocks`]: the agents' clock probes and measured offsets, kept beside it.
//! - Actors, one a file: [`supervisor`] (wraps the machine), [`launcher`] (agents as child
//!   processes), [`aggregator`] (exact fold of batches; its state in [`fold`], pure), [`live`]
//!   (per-second snapshot), [`results`] (files and the retained result). [`protocol`] holds
//!   the messages that cross them.
//! - [`outcome`]: the result, built once from the machine's end state and the fold.
//!
//! [`start_run`] wires them for one run on a shared [`Bus`].

pub mod abort;
pub mod aggregator;
pub mod baseline;
pub mod clocks;
pub mod durable;
pub mod fold;
pub mod lag;
pub mod launcher;
pub mod live;
pub mod machine;
pub mod outcome;
pub mod protocol;
pub mod reasons;
pub mod results;
pub mod supervisor;
pub mod tallies;

use std::path::PathBuf;
use std::sync::Arc;

use actix::prelude::*;
use messages::policy::TargetPolicy;
use messages::spec::Spec;
use messages::split::{split, Share};
use messages::wire::DataFile;
use tokio::sync::oneshot;
use transport::TlsFiles;

use crate::bundle::SpecBundle;
use crate::bus::{BatchQueue, Bus, BusError, Route, RunBus};
use crate::clock::unix_ms;
use aggregator::{Aggregator, AggregatorLinks};
use durable::{BatchJournal, DurableError, EventJournal};
use live::LivePublisher;
use machine::{replay, MachineConfig, Timing};
use protocol::{AgentCredentials, AgentExited, LaunchAgents, StopAgents};
use results::ResultsWriter;
use supervisor::{Begin, Deps, Outcome, Resume, RunSupervisor};

/// What one run is made of, fixed before it starts.
pub struct RunPlan {
    pub run_id: String,
    /// The spec as run (target URL resolved, overrides applied).
    pub spec: Spec,
    /// The spec as the user wrote it, kept with the results.
    pub spec_text: String,
    pub data: Vec<DataFile>,
    /// Each agent's exact share of the load, by index.
    pub shares: Vec<Share>,
    /// Each agent's region, by index.
    pub regions: Vec<String>,
    /// The run's local results folder (also the staging area for S3).
    pub dir: PathBuf,
    /// The run thresholds like `p95 < baseline.p95 * 1.10` are judged against.
    pub baseline: Option<std::sync::Arc<baseline::Baseline>>,
}

impl RunPlan {
    /// Splits the load over `agents` (at least one) and places each agent in its region.
    pub fn new(run_id: String, bundle: SpecBundle, agents: u32, dir: PathBuf) -> RunPlan {
        let agents = agents.max(1);
        let spec = bundle.spec;
        RunPlan {
            shares: split(&spec.load.executor, agents),
            regions: (0..agents).map(|i| spec.agents.region_of(i)).collect(),
            run_id,
            spec,
            spec_text: bundle.text,
            data: bundle.data,
            dir,
            baseline: None,
        }
    }

    /// Thresholds that refer to a baseline are judged against this one.
    pub fn with_baseline(mut self, b: Option<baseline::Baseline>) -> RunPlan {
        self.baseline = b.map(std::sync::Arc::new);
        self
    }

    pub fn agents(&self) -> u32 {
        self.shares.len() as u32
    }

    pub fn region_of(&self, agent: u32) -> &str {
        self.regions
            .get(agent as usize)
            .map_or("local", |r| r.as_str())
    }
}

/// How a run behaves, beyond its spec.
#[derive(Clone)]
pub struct RunSettings {
    /// Seconds a second of the series stays open for late batches.
    pub late_window_s: u64,
    /// No terminal lines (the live topic is published regardless).
    pub quiet: bool,
    /// The broker URL and credentials handed to agents.
    pub agent_broker: String,
    pub agent_tls: TlsFiles,
    /// Whether agents log in to the broker (the embedded one wants it).
    pub broker_login: bool,
    pub timing: Timing,
    /// Where the agents' load may go; sent in every Assign.
    pub policy: TargetPolicy,
    /// `herd serve`: the run's journal folder, and when the run was accepted. `None` (`herd
    /// run`): nothing is journaled, batches are confirmed to agents as soon as they are folded.
    pub journal: Option<JournalAt>,
    /// `herd serve`: the run's in-process live feed (the API's SSE streams and `/metrics`).
    pub live_tap: Option<live::LiveTap>,
}

/// Where a run's journal lives (`serve::state`): a folder holding journals is a run a
/// restarted coordinator resumes.
#[derive(Clone)]
pub struct JournalAt {
    pub dir: PathBuf,
    pub accepted_at_ms: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("the run's journal: {0}")]
    Journal(#[from] DurableError),
}

/// A launcher, seen from the supervisor.
pub struct LauncherLink {
    pub launch: Recipient<LaunchAgents>,
    pub stop: Recipient<StopAgents>,
}

/// A started run.
pub struct RunHandle {
    pub run_id: String,
    pub supervisor: Addr<RunSupervisor>,
    pub stop_agents: Recipient<StopAgents>,
    /// Detach it once the run's result is in.
    pub bus: RunBus,
    pub done: oneshot::Receiver<Outcome>,
}

/// Attaches the run to the bus, starts its actors and sends `Begin` — or, when the run's
/// journal already holds events (a restarted `herd serve`), rebuilds the machine and the fold
/// from it and sends `Resume`. `launcher` builds the launcher once the supervisor's address
/// (where it reports exits) exists.
pub async fn start_run(
    plan: RunPlan,
    settings: RunSettings,
    bus: &Bus,
    launcher: impl FnOnce(Recipient<AgentExited>) -> LauncherLink,
) -> Result<RunHandle, StartError> {
    let plan = Arc::new(plan);
    let count = plan.agents();
    let accepted_at_ms = settings
        .journal
        .as_ref()
        .map_or_else(unix_ms, |j| j.accepted_at_ms);
    let (events, batches) = match &settings.journal {
        Some(j) => {
            let (events, past_events) = EventJournal::open(&j.dir.join("events.log"))?;
            let (batches, past_batches) = BatchJournal::open(&j.dir.join("batches.log"))?;
            (Some((events, past_events)), Some((batches, past_batches)))
        }
        None => (None, None),
    };
    let (event_journal, past_events) = match events {
        Some((j, past)) => (Some(j), past),
        None => (None, Vec::new()),
    };
    let (batch_journal, past_batches) =
        batches.unwrap_or_else(|| (BatchJournal::memory(), Vec::new()));
    let resuming = !past_events.is_empty();
    let replayed = replay(
        MachineConfig {
            agents: count,
            planned_ms: plan.spec.planned_ms(),
            graceful_stop_ms: plan.spec.graceful_stop_ms(),
            min_healthy_pct: plan.spec.min_healthy_agents,
            timing: settings.timing,
        },
        accepted_at_ms,
        past_events.into_iter().map(|e| (e.at_ms, e.event)),
    );
    let (done_tx, done_rx) = oneshot::channel();
    // Addresses first, so the actors can reference each other before any of them runs.
    let sup_ctx = Context::<RunSupervisor>::new();
    let sup = sup_ctx.address();
    let agg_ctx = Context::<Aggregator>::new();
    let agg = agg_ctx.address();
    let queue = BatchQueue::new(count);
    let run_bus = bus
        .attach(
            &plan.run_id,
            count,
            Route {
                status: sup.clone().recipient(),
                heard: sup.clone().recipient(),
                batches: agg.clone().recipient(),
                queue: queue.clone(),
            },
        )
        .await?;
    let planned_s = plan.spec.planned_ms() as f64 / 1000.0;
    let open_model = matches!(
        plan.spec.load.executor,
        messages::spec::Executor::ConstantArrivalRate { .. }
            | messages::spec::Executor::RampingArrivalRate { .. }
    );
    let live = LivePublisher::new(
        run_bus.clone(),
        plan.run_id.clone(),
        planned_s,
        count,
        settings.quiet,
        settings.live_tap.clone(),
    )
    .showing_dropped(open_model)
    .start();
    let mut aggregator = Aggregator::new(
        settings.late_window_s,
        count,
        plan.regions.clone(),
        accepted_at_ms,
        AggregatorLinks {
            drained: sup.clone().recipient(),
            rejected: sup.clone().recipient(),
            confirmed: sup.clone().recipient(),
            live: live.clone().recipient(),
            crossed: sup.clone().recipient(),
            queue: queue.clone(),
        },
        batch_journal,
    )
    .watching(&plan.spec.thresholds);
    let start_at_ms = replayed.machine.start_at_ms();
    aggregator.replay(start_at_ms, past_batches);
    let agg = agg_ctx.run(aggregator);
    if let Some(at_ms) = start_at_ms {
        live.do_send(protocol::Started { at_ms });
    }
    for (agent, batches) in replayed.expected {
        agg.do_send(protocol::ExpectBatches {
            agent,
            batches,
            queued: queue.admit(agent, 0),
        });
    }
    let results = ResultsWriter::new(
        run_bus.clone(),
        plan.dir.clone(),
        plan.spec.clone(),
        plan.spec_text.clone(),
    )
    .with_baseline(plan.baseline.clone())
    .start();
    let link = launcher(sup.clone().recipient());
    let (secrets, coordinator) = run_bus.agent_secrets();
    let launch = LaunchAgents {
        run_id: plan.run_id.clone(),
        count,
        broker: settings.agent_broker,
        tls: settings.agent_tls,
        credentials: AgentCredentials {
            secrets,
            coordinator,
            broker_login: settings.broker_login,
        },
    };
    let deps = Deps {
        bus: run_bus.clone(),
        launcher: link.launch,
        stop_agents: link.stop.clone(),
        aggregator: agg,
        queue,
        live,
        results,
    };
    let run_id = plan.run_id.clone();
    sup_ctx.run(RunSupervisor::new(
        plan,
        settings.policy,
        replayed.machine,
        launch,
        deps,
        done_tx,
        event_journal,
    ));
    if resuming {
        sup.do_send(Resume {
            timers: replayed.timers,
        });
    } else {
        sup.do_send(Begin);
    }
    Ok(RunHandle {
        run_id,
        supervisor: sup,
        stop_agents: link.stop,
        bus: run_bus,
        done: done_rx,
    })
}
