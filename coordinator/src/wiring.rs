//! One run's actors, wired: bus, supervisor, aggregator, live feed, results writer and a
//! launcher. `herd run` and `herd serve` both start runs through [`start_run`]; only the
//! launcher (local processes or ECS tasks) and what happens to the results afterwards differ.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use actix::prelude::*;
use agent::mqtt::{BrokerUrl, TlsFiles};
use messages::spec::Spec;
use messages::split::split;
use messages::wire::DataFile;
use tokio::sync::oneshot;

use crate::aggregator::Aggregator;
use crate::bus::{Bus, BusError};
use crate::live::LivePublisher;
use crate::protocol::{AgentExited, LaunchAgents, StopAgents};
use crate::results::ResultsWriter;
use crate::supervisor::{Begin, Deps, Outcome, RunSupervisor};

/// Everything a run needs that is not an actor.
pub struct RunParams {
    pub run_id: String,
    /// The spec as run (target URL resolved).
    pub spec: Spec,
    /// The spec as the user wrote it, kept with the results.
    pub spec_text: String,
    pub data: Vec<DataFile>,
    pub agents: u32,
    /// The coordinator's broker and credentials.
    pub broker: BrokerUrl,
    pub tls: TlsFiles,
    /// The broker URL and credentials handed to agents.
    pub agent_broker: String,
    pub agent_tls: TlsFiles,
    pub late_window_s: u64,
    pub quiet: bool,
    /// The run's local results folder (also the staging area for S3).
    pub dir: PathBuf,
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
    pub bus: Bus,
    pub done: oneshot::Receiver<Outcome>,
}

/// Connects the run's bus, starts its actors and sends `Begin`. `launcher` builds the
/// launcher once the supervisor's address (where it reports exits) exists.
pub async fn start_run(
    p: RunParams,
    launcher: impl FnOnce(Recipient<AgentExited>) -> LauncherLink,
) -> Result<RunHandle, BusError> {
    let spec = Arc::new(p.spec);
    let count = p.agents;
    let shares = split(&spec.load.executor, count);
    let region_of: HashMap<u32, String> =
        (0..count).map(|i| (i, spec.agents.region_of(i))).collect();
    let (done_tx, done_rx) = oneshot::channel();

    let sup_ctx = Context::<RunSupervisor>::new();
    let sup = sup_ctx.address();
    let agg_ctx = Context::<Aggregator>::new();
    let agg = agg_ctx.address();
    let bus = Bus::connect(
        &p.broker,
        &p.tls,
        &p.run_id,
        sup.clone().recipient(),
        agg.clone().recipient(),
    )
    .await?;
    let planned_s = spec.load.executor.planned_ms() as f64 / 1000.0;
    let live = LivePublisher::new(bus.clone(), p.run_id.clone(), planned_s, count, p.quiet).start();
    let agg = agg_ctx.run(Aggregator::new(
        p.late_window_s,
        count,
        region_of,
        sup.clone().recipient(),
        live.clone().recipient(),
    ));
    let results =
        ResultsWriter::new(bus.clone(), p.dir.clone(), (*spec).clone(), p.spec_text).start();
    let link = launcher(sup.clone().recipient());
    let launch = LaunchAgents {
        run_id: p.run_id.clone(),
        count,
        broker: p.agent_broker,
        tls: p.agent_tls,
    };
    let deps = Deps {
        bus: bus.clone(),
        launcher: link.launch,
        stop_agents: link.stop.clone(),
        aggregator: agg,
        live,
        results,
    };
    sup_ctx.run(RunSupervisor::new(
        p.run_id.clone(),
        spec,
        p.data,
        shares,
        launch,
        deps,
        done_tx,
    ));
    sup.do_send(Begin);
    Ok(RunHandle {
        run_id: p.run_id,
        supervisor: sup,
        stop_agents: link.stop,
        bus,
        done: done_rx,
    })
}
