//! Messages that cross a run's actors. Messages only one actor handles live in its file; what
//! the bus delivers ([`crate::bus::FromAgent`], [`crate::bus::BatchIn`]) lives with the bus.

use actix::prelude::*;
use transport::keys::{PublicKey, Secret};
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
    pub credentials: AgentCredentials,
}

/// What the launcher hands each agent privately (never on a command line): its own secret,
/// the coordinator's public key, and whether the broker wants a login.
#[derive(Debug, Clone)]
pub struct AgentCredentials {
    /// By agent index.
    pub secrets: Vec<Secret>,
    pub coordinator: PublicKey,
    pub broker_login: bool,
}

impl AgentCredentials {
    /// Agent `i`'s credentials as one line of JSON (what `herd agent --credentials-stdin` reads).
    pub fn line_for(&self, i: u32) -> Option<String> {
        let secret = self.secrets.get(i as usize)?;
        Some(format!(
            "{{\"secret\":\"{}\",\"coordinator_key\":\"{}\",\"broker_login\":{}}}\n",
            secret.to_hex(),
            self.coordinator.to_hex(),
            self.broker_login
        ))
    }
}

/// An `abort_on_fail` threshold failed: the run stops early (aggregator → supervisor).
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct ThresholdCrossed {
    pub reason: String,
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
    /// Counts as queued for `agent` until the aggregator handled it: it waits in the same
    /// mailbox as the batches, so a slow aggregator may fold all of an agent's batches before it
    /// knows how many there are — the drain deadline must not call that agent lost meanwhile.
    pub queued: Option<crate::bus::Queued>,
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

/// The aggregator tells the supervisor, once a second, what each agent may forget: per agent
/// (by index), every batch seq up to this one is durable (`durable::BatchJournal`). The
/// supervisor sends it to the agents in `Alive`.
#[derive(Message, Debug, Clone, PartialEq, Eq)]
#[rtype(result = "()")]
pub struct Confirmed {
    pub through: Vec<u64>,
}
