//! One clock for a run: the coordinator's. Each agent measures its offset to it at the
//! handshake, NTP-style, on messages that travel anyway (no extra round, no broadcast):
//!
//! ```text
//! agent (its own clock)                       coordinator (the run's clock)
//!   first Heartbeat, envelope sent_at_ms = A1 ──►  received at C1
//!   received at A2  ◄── Assign { clock: ClockProbe { A1, C1, C2 = when it was sent } }
//!   offset     = ((C1 − A1) + (C2 − A2)) / 2      coordinator time = agent time + offset
//!   round trip = (A2 − A1) − (C2 − C1)
//! ```
//!
//! The offset is exact when both legs take equally long; otherwise it is off by half their
//! difference, never more than half the round trip — which is why the round trip is reported
//! beside it. Every value comes off the wire, so the arithmetic is done in `i128` and a result
//! that does not fit (or a probe whose own times run backwards) is no measurement at all,
//! never a wrapped number.

use serde::{Deserialize, Serialize};

/// What the coordinator puts in an agent's `Assign`: the three times of the exchange it saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClockProbe {
    /// A1: when the agent sent the heartbeat this Assign answers (its `sent_at_ms`, agent clock).
    pub agent_sent_ms: u64,
    /// C1: when that heartbeat reached the coordinator (coordinator clock).
    pub coordinator_received_ms: u64,
    /// C2: when the coordinator sent this Assign (coordinator clock).
    pub coordinator_sent_ms: u64,
}

/// What an agent measured, and reports in its `Ready`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClockSync {
    /// Coordinator time − agent time, in ms: the agent adds it to every reading of its clock.
    pub offset_ms: i64,
    /// Heartbeat out and Assign back, less the coordinator's time in between: the offset is
    /// within half of it.
    pub round_trip_ms: u64,
}

impl ClockProbe {
    /// The offset and round trip, given A2 — when the Assign arrived, by the same agent clock
    /// that stamped A1. `None` when either side's times run backwards (a clock stepped, or a
    /// probe that is not what the coordinator sent) or the result does not fit.
    pub fn measure(&self, agent_received_ms: u64) -> Option<ClockSync> {
        let a1 = i128::from(self.agent_sent_ms);
        let c1 = i128::from(self.coordinator_received_ms);
        let c2 = i128::from(self.coordinator_sent_ms);
        let a2 = i128::from(agent_received_ms);
        if a2 < a1 || c2 < c1 {
            return None;
        }
        let offset = ((c1 - a1) + (c2 - a2)).div_euclid(2);
        // Millisecond stamps on two clocks can make a very short round trip come out as −1.
        let round_trip = ((a2 - a1) - (c2 - c1)).max(0);
        Some(ClockSync {
            offset_ms: i64::try_from(offset).ok()?,
            round_trip_ms: u64::try_from(round_trip).ok()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The exchange as it happens: the agent's clock reads `coordinator − true_offset`;
    /// the heartbeat leaves at coordinator time `t`, takes `there` ms, the coordinator holds
    /// it `held` ms, the Assign takes `back` ms.
    fn exchange(
        t: i128,
        true_offset: i128,
        there: i128,
        held: i128,
        back: i128,
    ) -> (ClockProbe, u64) {
        let agent = |coordinator_time: i128| u64::try_from(coordinator_time - true_offset).unwrap();
        let coord = |coordinator_time: i128| u64::try_from(coordinator_time).unwrap();
        let probe = ClockProbe {
            agent_sent_ms: agent(t),
            coordinator_received_ms: coord(t + there),
            coordinator_sent_ms: coord(t + there + held),
        };
        (probe, agent(t + there + held + back))
    }

    const T: i128 = 1_700_000_000_000;

    #[test]
    fn equal_legs_give_the_exact_offset_and_the_round_trip_without_the_coordinators_time() {
        let (probe, a2) = exchange(T, 500, 40, 10, 40);
        let sync = probe.measure(a2).expect("a measurement");
        assert_eq!(
            sync,
            ClockSync {
                offset_ms: 500,
                round_trip_ms: 80
            }
        );
    }

    #[test]
    fn unequal_legs_are_off_by_half_their_difference_within_half_the_round_trip() {
        let (probe, a2) = exchange(T, 500, 10, 10, 90);
        let sync = probe.measure(a2).expect("a measurement");
        assert_eq!(sync.round_trip_ms, 100);
        assert_eq!(sync.offset_ms, 500 - (90 - 10) / 2);
        assert!((sync.offset_ms - 500).unsigned_abs() <= sync.round_trip_ms / 2);
    }

    #[test]
    fn an_agent_clock_running_five_seconds_ahead_gives_minus_five_seconds() {
        let (probe, a2) = exchange(T, -5_000, 20, 3, 20);
        assert_eq!(
            probe.measure(a2),
            Some(ClockSync {
                offset_ms: -5_000,
                round_trip_ms: 40
            })
        );
    }

    #[test]
    fn a_round_trip_rounded_below_zero_counts_as_zero() {
        // Both legs under a millisecond: the coordinator's stamps span more than the agent's.
        let probe = ClockProbe {
            agent_sent_ms: 1_000,
            coordinator_received_ms: 2_000,
            coordinator_sent_ms: 2_001,
        };
        assert_eq!(
            probe.measure(1_000),
            Some(ClockSync {
                offset_ms: 1_000,
                round_trip_ms: 0
            })
        );
    }

    #[test]
    fn times_that_run_backwards_are_no_measurement() {
        let probe = ClockProbe {
            agent_sent_ms: 1_000,
            coordinator_received_ms: 2_000,
            coordinator_sent_ms: 2_010,
        };
        assert_eq!(probe.measure(999), None, "the agent's clock stepped back");
        let swapped = ClockProbe {
            coordinator_received_ms: 2_010,
            coordinator_sent_ms: 2_000,
            ..probe
        };
        assert_eq!(
            swapped.measure(1_100),
            None,
            "the coordinator's clock stepped back"
        );
    }

    #[test]
    fn offsets_beyond_i64_are_no_measurement_and_its_edges_are_exact() {
        let far = ClockProbe {
            agent_sent_ms: 0,
            coordinator_received_ms: u64::MAX,
            coordinator_sent_ms: u64::MAX,
        };
        assert_eq!(far.measure(0), None, "u64::MAX ahead does not fit an i64");
        let behind = ClockProbe {
            agent_sent_ms: u64::MAX - 1,
            coordinator_received_ms: 0,
            coordinator_sent_ms: 0,
        };
        assert_eq!(behind.measure(u64::MAX), None, "nor does u64::MAX behind");
        let edge = i64::MAX as u64;
        let top = ClockProbe {
            agent_sent_ms: 0,
            coordinator_received_ms: edge,
            coordinator_sent_ms: edge,
        };
        assert_eq!(
            top.measure(0),
            Some(ClockSync {
                offset_ms: i64::MAX,
                round_trip_ms: 0
            })
        );
    }

    proptest! {
        #[test]
        fn any_probe_measures_or_refuses_without_panicking(
            a1 in any::<u64>(), c1 in any::<u64>(), c2 in any::<u64>(), a2 in any::<u64>()
        ) {
            let probe = ClockProbe { agent_sent_ms: a1, coordinator_received_ms: c1, coordinator_sent_ms: c2 };
            if let Some(s) = probe.measure(a2) {
                prop_assert!(a2 >= a1 && c2 >= c1);
                prop_assert!(s.round_trip_ms <= a2 - a1);
            }
        }

        #[test]
        fn the_offset_is_within_half_the_round_trip_of_the_truth(
            offset in -86_400_000i128..86_400_000,
            there in 0i128..10_000, held in 0i128..1_000, back in 0i128..10_000,
        ) {
            let (probe, a2) = exchange(T, offset, there, held, back);
            let s = probe.measure(a2).expect("a consistent exchange measures");
            prop_assert_eq!(i128::from(s.round_trip_ms), there + back);
            // Half a millisecond of rounding on top of the bound.
            prop_assert!((i128::from(s.offset_ms) - offset).abs() * 2 <= i128::from(s.round_trip_ms) + 1);
        }
    }
}
