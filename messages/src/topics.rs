//! MQTT topic names (the same on IoT Core).

/// Broadcasts to every agent of the run (Start, Stop, Alive).
pub fn control(run: &str) -> String {
    format!("herd/runs/{run}/control")
}
/// What is for one agent alone (its Assign): on a topic of its own, so a fleet of N agents does
/// not receive N² Assigns (each agent would get every peer's, sealed for the peer) — what a
/// broker capping each connection (IoT Core: 100 messages/s) would hold back for seconds.
pub fn control_for(run: &str, agent: u32) -> String {
    format!("herd/runs/{run}/control/{agent}")
}
pub fn status(run: &str, agent: u32) -> String {
    format!("herd/runs/{run}/agents/{agent}/status")
}
pub fn metrics(run: &str, agent: u32) -> String {
    format!("herd/runs/{run}/agents/{agent}/metrics")
}
pub fn live(run: &str) -> String {
    format!("herd/runs/{run}/live")
}
pub fn result(run: &str) -> String {
    format!("herd/runs/{run}/result")
}
/// What the coordinator subscribes to for one run: every agent's status and metrics.
pub fn agents_wildcard(run: &str) -> String {
    format!("herd/runs/{run}/agents/+/+")
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentTopic {
    Status { run: String, agent: u32 },
    Metrics { run: String, agent: u32 },
}

/// Parses an agent → coordinator topic; `None` for anything else.
pub fn parse_agent_topic(topic: &str) -> Option<AgentTopic> {
    let mut it = topic.split('/');
    let (herd, runs, run, agents, agent, kind) = (
        it.next()?,
        it.next()?,
        it.next()?,
        it.next()?,
        it.next()?,
        it.next()?,
    );
    if it.next().is_some() || herd != "herd" || runs != "runs" || agents != "agents" {
        return None;
    }
    let agent = agent.parse().ok()?;
    let run = run.to_string();
    match kind {
        "status" => Some(AgentTopic::Status { run, agent }),
        "metrics" => Some(AgentTopic::Metrics { run, agent }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_topics_round_trip() {
        assert_eq!(
            parse_agent_topic(&metrics("r1", 3)),
            Some(AgentTopic::Metrics {
                run: "r1".into(),
                agent: 3
            })
        );
        assert_eq!(
            parse_agent_topic(&status("r1", 0)),
            Some(AgentTopic::Status {
                run: "r1".into(),
                agent: 0
            })
        );
        assert_eq!(parse_agent_topic(&live("r1")), None);
        assert_eq!(parse_agent_topic("herd/runs/r/agents/x/metrics"), None);
    }
}
