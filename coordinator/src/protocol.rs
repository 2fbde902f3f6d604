//! Messages that cross coordinator actors. Messages only one actor handles live in its file.

use actix::prelude::*;
use messages::metrics::MetricBatch;
use messages::wire::Envelope;

use crate::fold::Row;

/// A status message from an agent (Ready, Heartbeat, Finished, Failed), for the supervisor.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct FromAgent {
    pub agent: u32,
    pub env: Envelope,
}

/// A metric batch from an agent, for the aggregator.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct BatchIn {
    pub agent: u32,
    pub seq: u64,
    pub batch: MetricBatch,
}

/// An agent process (or task) ended.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct AgentExited {
    pub agent: u32,
    pub reason: String,
}

/// Launch agents `0..count` for a run. Handled by every launcher (local processes, ECS…).
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<(), String>")]
pub struct LaunchAgents {
    pub run_id: String,
    pub count: u32,
    pub broker: String,
    pub tls: agent::mqtt::TlsFiles,
}

/// Stop every agent of the run now (cancel, overrun, end).
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct StopAgents;

/// The supervisor tells the aggregator how many batches an agent sent in all.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct ExpectBatches {
    pub agent: u32,
    pub batches: u64,
}

/// The aggregator tells the supervisor it has every batch an agent said it sent.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct Drained {
    pub agent: u32,
}

/// One second of the fleet, for the live feed.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct LiveRow {
    pub row: Row,
}
