//! Why a run failed and why an agent dropped out, as values: the state machine and its tests
//! match on them, people read their `Display` text in `summary.json` and notifications.

use serde::{Deserialize, Serialize};

/// Why a run failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reason {
    /// A restarted coordinator found the run still launching: what was launched is unknown.
    RestartedWhileLaunching,
    /// The run could not be set up at all (its broker refused it…): the words say why.
    Setup(String),
    LaunchFailed(String),
    /// An agent dropped out before the start, and the spec tolerates no losses.
    AgentBeforeStart {
        agent: u32,
        why: AgentLoss,
    },
    NotReady {
        agents: Vec<u32>,
        ms: u64,
    },
    EveryAgentLost,
    BelowMinHealthy {
        healthy: u32,
        total: u32,
        pct: u32,
        /// Up to five `(agent, why)` pairs.
        examples: Vec<(u32, String)>,
    },
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::Setup(e) => f.write_str(e),
            Reason::RestartedWhileLaunching => {
                f.write_str("the coordinator restarted while the run's agents were being launched")
            }
            Reason::LaunchFailed(e) => write!(f, "launching agents failed: {e}"),
            Reason::AgentBeforeStart { agent, why } => write!(f, "agent {agent} {why}"),
            Reason::NotReady { agents, ms } => {
                let list: Vec<String> = agents.iter().map(u32::to_string).collect();
                write!(
                    f,
                    "agents {} did not report Ready within {}",
                    list.join(", "),
                    secs(*ms)
                )
            }
            Reason::EveryAgentLost => f.write_str("every agent was lost"),
            Reason::BelowMinHealthy {
                healthy,
                total,
                pct,
                examples,
            } => {
                let why: Vec<String> = examples
                    .iter()
                    .map(|(i, r)| format!("agent {i}: {r}"))
                    .collect();
                write!(
                    f,
                    "healthy agents {healthy}/{total} fell below min_healthy_agents {pct}% ({})",
                    why.join("; ")
                )
            }
        }
    }
}

/// Why one agent is out of the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AgentLoss {
    /// The coordinator was away past the run's end: what arrived before counts.
    CoordinatorRestarted,
    NoHeartbeat {
        ms: u64,
    },
    NotReady {
        ms: u64,
    },
    Overran,
    BatchesMissing,
    /// Its batches did not all arrive because the aggregator rejected some (the first reason).
    BatchesRejected(String),
    StopTimeout,
    /// Its process or task ended (the launcher's words).
    Exited(String),
    ExitedBeforeReady(String),
    /// It reported a failure before the start (its words).
    FailedBeforeStart(String),
    /// It reported a failure during the load (its words).
    Failed(String),
}

impl std::fmt::Display for AgentLoss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AgentLoss::NoHeartbeat { ms } => write!(f, "no heartbeat for {}", secs(*ms)),
            AgentLoss::NotReady { ms } => write!(f, "not Ready within {}", secs(*ms)),
            AgentLoss::Overran => f.write_str("overran the planned duration"),
            AgentLoss::CoordinatorRestarted => f.write_str(
                "the coordinator restarted after the run's end: what arrived before counts",
            ),
            AgentLoss::BatchesMissing => {
                f.write_str("finished, but some of its batches never arrived")
            }
            AgentLoss::BatchesRejected(r) => {
                write!(f, "finished, but some of its batches were rejected ({r})")
            }
            AgentLoss::StopTimeout => f.write_str("did not stop within the graceful stop"),
            AgentLoss::Exited(r) | AgentLoss::Failed(r) => f.write_str(r),
            AgentLoss::ExitedBeforeReady(r) => write!(f, "ended before it was ready: {r}"),
            AgentLoss::FailedBeforeStart(r) => write!(f, "failed before the start: {r}"),
        }
    }
}

/// `10s`, `1.5s`: how the deadlines were always written.
fn secs(ms: u64) -> String {
    format!("{:?}", std::time::Duration::from_millis(ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_read_as_before() {
        assert_eq!(
            AgentLoss::NoHeartbeat { ms: 10_000 }.to_string(),
            "no heartbeat for 10s"
        );
        assert_eq!(
            Reason::NotReady {
                agents: vec![1, 2],
                ms: 60_000
            }
            .to_string(),
            "agents 1, 2 did not report Ready within 60s"
        );
        assert_eq!(
            Reason::AgentBeforeStart {
                agent: 1,
                why: AgentLoss::FailedBeforeStart("k6 not found".into())
            }
            .to_string(),
            "agent 1 failed before the start: k6 not found"
        );
        assert_eq!(
            AgentLoss::BatchesRejected("batch 3: 2 labels, more than 1".into()).to_string(),
            "finished, but some of its batches were rejected (batch 3: 2 labels, more than 1)"
        );
        assert_eq!(
            Reason::BelowMinHealthy {
                healthy: 1,
                total: 2,
                pct: 80,
                examples: vec![(0, "overran the planned duration".into())]
            }
            .to_string(),
            "healthy agents 1/2 fell below min_healthy_agents 80% (agent 0: overran the planned duration)"
        );
    }
}
