//! Messages that cross a run's actors. Messages only one actor handles live in its file; what
//! the bus delivers ([`crate::bus::FromAgent`], [`crate::bus::BatchIn`]) lives with the bus.

use actix::prelude::*;
use transport::TlsFiles;

use super::fold::Row;

/// An agent process (or task) ended.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct AgentExited {
    pub agent: u32,
    pub reason: String,
}

/// Why agents could not be launched.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct LaunchError(pub String);

/// Launch agents `0..count` for a run. Handled by every launcher (local processes, ECS…).
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<(), LaunchError>")]
pub struct LaunchAgents {
    pub run_id: String,
    pub count: u32,
    pub broker: String,
    pub tls: TlsFiles,
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

/// The load starts at this instant (unix ms): the LivePublisher counts elapsed time from it,
/// the Aggregator refuses batches for seconds before it (minus the late window).
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct Started {
    pub at_ms: u64,
}

/// The aggregator tells the supervisor that a batch of an agent was rejected (sent once per
/// agent, with the first reason): that agent's data is not exact, so it cannot be drained.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct BatchesRejected {
    pub agent: u32,
    pub reason: String,
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
