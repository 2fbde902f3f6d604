//! The agents' clocks as the supervisor sees them: when each agent's latest heartbeat was sent
//! and arrived (the probe an Assign carries, `messages::clock`), and the offset each agent
//! measured from it (its `Ready`, for the results). Plain state beside the run machine — the
//! machine decides nothing on clocks — fed and read by `RunSupervisor`.

use messages::clock::{ClockProbe, ClockSync};

/// An agent whose clock is further off than this is logged at warn. Its times are corrected
/// all the same; the warning says that machine's clock is worth fixing.
pub const WARN_OFFSET_MS: u64 = 1_000;

#[derive(Debug, Default)]
pub struct Clocks {
    /// By agent: its latest heartbeat's `sent_at_ms` (its clock) and when it arrived (ours).
    heard: Vec<Option<(u64, u64)>>,
    /// By agent: the offset and round trip it reported in its Ready.
    synced: Vec<Option<ClockSync>>,
}

impl Clocks {
    pub fn new(agents: u32) -> Clocks {
        let n = agents as usize;
        Clocks {
            heard: vec![None; n],
            synced: vec![None; n],
        }
    }

    /// A heartbeat of `agent`, sent at `sent_at_ms`, arrived at `now_ms`: the next Assign to
    /// it answers this one (so a re-sent Assign measures afresh).
    pub fn heartbeat(&mut self, agent: u32, sent_at_ms: u64, now_ms: u64) {
        if let Some(h) = self.heard.get_mut(agent as usize) {
            *h = Some((sent_at_ms, now_ms));
        }
    }

    /// The probe for an Assign to `agent` sent at `now_ms`; `None` before any heartbeat.
    pub fn probe(&self, agent: u32, now_ms: u64) -> Option<ClockProbe> {
        let (sent, received) = (*self.heard.get(agent as usize)?)?;
        Some(ClockProbe {
            agent_sent_ms: sent,
            coordinator_received_ms: received,
            coordinator_sent_ms: now_ms,
        })
    }

    /// `agent`'s Ready said what it measured.
    pub fn ready(&mut self, agent: u32, sync: Option<ClockSync>) {
        let Some(slot) = self.synced.get_mut(agent as usize) else {
            return;
        };
        *slot = sync;
        match sync {
            None => tracing::warn!(
                agent,
                "agent measured no clock offset: its times are its own clock's"
            ),
            Some(s) if s.offset_ms.unsigned_abs() > WARN_OFFSET_MS => tracing::warn!(
                agent,
                offset_ms = s.offset_ms,
                round_trip_ms = s.round_trip_ms,
                "agent's clock is more than {WARN_OFFSET_MS} ms off the coordinator's: its times \
                 are corrected, but its machine's clock is worth fixing"
            ),
            Some(s) => tracing::info!(
                agent,
                offset_ms = s.offset_ms,
                round_trip_ms = s.round_trip_ms,
                "agent clock offset"
            ),
        }
    }

    /// By agent: what each measured, for the results.
    pub fn synced(&self) -> &[Option<ClockSync>] {
        &self.synced
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_assign_answers_the_latest_heartbeat_and_is_stamped_when_sent() {
        let mut c = Clocks::new(2);
        assert_eq!(c.probe(0, 10), None, "no heartbeat yet");
        c.heartbeat(0, 100, 5_100);
        c.heartbeat(0, 1_100, 6_100);
        assert_eq!(
            c.probe(0, 6_105),
            Some(ClockProbe {
                agent_sent_ms: 1_100,
                coordinator_received_ms: 6_100,
                coordinator_sent_ms: 6_105,
            })
        );
        assert_eq!(c.probe(1, 6_105), None);
        assert_eq!(c.probe(7, 6_105), None, "an index the run does not have");
    }

    #[test]
    fn what_each_agent_measured_is_kept_for_the_results() {
        let mut c = Clocks::new(2);
        let s = ClockSync {
            offset_ms: -5_000,
            round_trip_ms: 4,
        };
        c.ready(1, Some(s));
        c.ready(9, Some(s));
        assert_eq!(c.synced(), &[None, Some(s)]);
    }
}
