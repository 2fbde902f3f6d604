//! Every row of the run-state, slot and deadline tables in `docs/ARCHITECTURE.md`, driven with a
//! fake clock: no process, no broker, no sleep.

use super::*;

const T0: u64 = 1_000_000;

fn cfg(agents: u32, min_healthy_pct: Option<u32>) -> MachineConfig {
    MachineConfig {
        agents,
        planned_ms: 10_000,
        graceful_stop_ms: 2_000,
        min_healthy_pct,
        timing: Timing::default(),
    }
}

/// A machine and its clock.
struct Run {
    m: RunMachine,
    now: u64,
}

impl Run {
    fn new(agents: u32, min_healthy_pct: Option<u32>) -> Run {
        Run {
            m: RunMachine::new(cfg(agents, min_healthy_pct), T0),
            now: T0,
        }
    }

    fn on(&mut self, e: Event) -> Vec<Effect> {
        self.m.on(e, self.now)
    }

    fn at(&mut self, ms: u64, e: Event) -> Vec<Effect> {
        self.now = T0 + ms;
        self.on(e)
    }

    fn slot(&self, i: usize) -> &SlotState {
        &self.m.slots()[i].state
    }

    /// Begin → launched → every agent heartbeats and reports Ready: Running at T0 + 100.
    fn running(agents: u32, min_healthy_pct: Option<u32>) -> Run {
        let mut r = Run::new(agents, min_healthy_pct);
        r.on(Event::Begin);
        r.on(Event::Launched);
        for a in 0..agents {
            r.at(50, Event::Heartbeat { agent: a });
        }
        for a in 0..agents {
            r.at(100, Event::Ready { agent: a });
        }
        assert_eq!(r.m.state(), &RunState::Running);
        r
    }

    fn finished(&mut self, ms: u64, agent: u32, batches: u64) -> Vec<Effect> {
        self.at(
            ms,
            Event::Finished {
                agent,
                started_at_ms: T0 + 1_100,
                sent_at_ms: T0 + ms,
                batches_sent: batches,
                batches_dropped: 0,
            },
        )
    }
}

fn stop(reason: &str) -> Effect {
    Effect::Stop {
        reason: reason.into(),
    }
}

fn arm(timer: Timer, at_ms: u64) -> Effect {
    Effect::Arm { timer, at_ms }
}

// ---- run states

#[test]
fn begin_asks_the_launcher_and_enters_launching() {
    let mut r = Run::new(2, None);
    assert_eq!(r.m.state(), &RunState::Accepted);
    assert_eq!(r.on(Event::Begin), vec![Effect::Launch]);
    assert_eq!(r.m.state(), &RunState::Launching);
    assert_eq!(r.on(Event::Begin), vec![], "a second Begin does nothing");
}

#[test]
fn the_launchers_reply_arms_the_ready_deadline() {
    let mut r = Run::new(2, None);
    r.on(Event::Begin);
    assert_eq!(
        r.at(5, Event::Launched),
        vec![arm(Timer::Ready, T0 + 5 + 60_000)]
    );
    assert_eq!(r.m.state(), &RunState::WaitingForAgents);
}

#[test]
fn a_launch_error_fails_the_run_and_stops_agents() {
    let mut r = Run::new(2, None);
    r.on(Event::Begin);
    let fx = r.on(Event::LaunchFailed {
        reason: "no capacity".into(),
    });
    assert_eq!(
        fx,
        vec![stop("launching agents failed: no capacity"), Effect::End]
    );
    assert_eq!(
        r.m.state(),
        &RunState::Failed(Reason::LaunchFailed("no capacity".into()))
    );
    assert_eq!(r.m.state().end_state(), Some(EndState::Failed));
}

#[test]
fn all_ready_starts_the_load_at_a_common_instant_and_arms_the_run_deadline() {
    let mut r = Run::new(2, None);
    r.on(Event::Begin);
    r.on(Event::Launched);
    assert_eq!(r.at(10, Event::Ready { agent: 0 }), vec![]);
    assert_eq!(r.slot(0), &SlotState::Ready);
    let fx = r.at(20, Event::Ready { agent: 1 });
    let at = T0 + 20 + 1_000;
    // planned 10 s + graceful stop 2 s + overrun grace 30 s past the start instant.
    assert_eq!(
        fx,
        vec![
            Effect::Start { at_ms: at },
            arm(Timer::Run, at + 10_000 + 2_000 + 30_000)
        ]
    );
    assert_eq!(r.m.state(), &RunState::Running);
    assert_eq!(r.m.start_at_ms(), Some(at));
    assert_eq!(r.m.ready_ms(), Some(20), "from Begin to the last Ready");
    assert!(r.m.slots().iter().all(|s| s.state == SlotState::Running));
}

#[test]
fn all_ready_before_the_launchers_reply_still_starts() {
    let mut r = Run::new(1, None);
    r.on(Event::Begin);
    let fx = r.at(10, Event::Ready { agent: 0 });
    assert!(matches!(fx[0], Effect::Start { .. }), "{fx:?}");
    assert_eq!(r.m.state(), &RunState::Running);
    assert_eq!(
        r.on(Event::Launched),
        vec![],
        "the late reply changes nothing"
    );
    assert_eq!(r.m.state(), &RunState::Running);
}

#[test]
fn the_first_finished_moves_the_run_to_draining_and_expects_batches() {
    let mut r = Run::running(2, None);
    let fx = r.finished(12_000, 0, 11);
    assert_eq!(
        fx,
        vec![
            Effect::ExpectBatches {
                agent: 0,
                batches: 11
            },
            arm(Timer::Drain { agent: 0 }, T0 + 12_000 + 10_000)
        ]
    );
    assert_eq!(r.m.state(), &RunState::Draining);
    assert_eq!(r.slot(0), &SlotState::Finished);
    assert_eq!(r.m.slots()[0].started_at_ms, Some(T0 + 1_100));
}

#[test]
fn every_agent_drained_completes_the_run() {
    let mut r = Run::running(2, None);
    r.finished(12_000, 0, 11);
    r.finished(12_001, 1, 11);
    assert_eq!(r.at(12_100, Event::Drained { agent: 0 }), vec![]);
    assert_eq!(r.slot(0), &SlotState::Drained);
    assert_eq!(r.at(12_200, Event::Drained { agent: 1 }), vec![Effect::End]);
    assert_eq!(r.m.state(), &RunState::Completed);
}

#[test]
fn a_lost_agent_flags_but_does_not_fail_a_completed_run() {
    let mut r = Run::running(2, None);
    r.at(3_000, Event::Heartbeat { agent: 0 });
    r.at(9_000, Event::Heartbeat { agent: 0 });
    // Agent 1 went silent after T0 + 100.
    r.at(10_200, Event::Tick);
    assert_eq!(
        r.slot(1),
        &SlotState::Lost(AgentLoss::NoHeartbeat { ms: 10_000 })
    );
    r.finished(12_000, 0, 11);
    assert_eq!(r.at(12_100, Event::Drained { agent: 0 }), vec![Effect::End]);
    assert_eq!(r.m.state(), &RunState::Completed);
}

#[test]
fn every_agent_lost_fails_the_run() {
    let mut r = Run::running(2, None);
    let fx = r.at(10_200, Event::Tick);
    // Nobody is left to hear a Stop: the end stops the processes.
    assert_eq!(fx, vec![Effect::End]);
    assert_eq!(r.m.state(), &RunState::Failed(Reason::EveryAgentLost));
}

#[test]
fn events_after_the_end_change_nothing() {
    let mut r = Run::running(1, None);
    r.finished(12_000, 0, 1);
    r.at(12_100, Event::Drained { agent: 0 });
    assert_eq!(r.m.state(), &RunState::Completed);
    for e in [
        Event::Cancel { reason: "x".into() },
        Event::Tick,
        Event::Timer(Timer::Run),
        Event::Failed {
            agent: 0,
            reason: "late".into(),
        },
    ] {
        assert_eq!(r.at(50_000, e), vec![]);
    }
    assert_eq!(r.m.state(), &RunState::Completed);
    assert_eq!(r.slot(0), &SlotState::Drained);
}

#[test]
fn unknown_agent_indexes_are_ignored() {
    let mut r = Run::running(1, None);
    assert_eq!(r.on(Event::Ready { agent: 7 }), vec![]);
    assert_eq!(r.on(Event::Drained { agent: 7 }), vec![]);
    assert_eq!(
        r.on(Event::Exited {
            agent: 7,
            reason: "x".into()
        }),
        vec![]
    );
    assert_eq!(r.m.state(), &RunState::Running);
}

// ---- slots

#[test]
fn a_heartbeat_from_a_launched_slot_gets_an_assign() {
    let mut r = Run::new(2, None);
    r.on(Event::Begin);
    assert_eq!(
        r.at(10, Event::Heartbeat { agent: 1 }),
        vec![Effect::Assign { agent: 1 }]
    );
    assert_eq!(r.slot(1), &SlotState::Assigned { at_ms: T0 + 10 });
    assert_eq!(r.slot(0), &SlotState::Launched);
}

#[test]
fn an_unanswered_assign_is_offered_again_after_three_seconds() {
    let mut r = Run::new(1, None);
    r.on(Event::Begin);
    r.on(Event::Launched);
    r.at(10, Event::Heartbeat { agent: 0 });
    assert_eq!(r.at(3_010, Event::Heartbeat { agent: 0 }), vec![]);
    assert_eq!(
        r.at(3_011, Event::Heartbeat { agent: 0 }),
        vec![Effect::Assign { agent: 0 }]
    );
}

#[test]
fn no_assign_after_the_start() {
    let mut r = Run::running(1, None);
    assert_eq!(r.at(20_000, Event::Heartbeat { agent: 0 }), vec![]);
    assert_eq!(r.slot(0), &SlotState::Running);
}

#[test]
fn a_failure_after_the_start_is_final_for_its_slot() {
    let mut r = Run::running(2, None);
    r.at(
        500,
        Event::Failed {
            agent: 1,
            reason: "k6 exited with status 107".into(),
        },
    );
    assert_eq!(
        r.slot(1),
        &SlotState::Failed(AgentLoss::Failed("k6 exited with status 107".into()))
    );
    r.finished(12_000, 0, 3);
    assert_eq!(r.at(12_100, Event::Drained { agent: 0 }), vec![Effect::End]);
    assert_eq!(r.m.state(), &RunState::Completed);
}

#[test]
fn a_finished_that_arrives_after_the_exit_still_counts() {
    let mut r = Run::running(1, None);
    let fx = r.at(
        12_000,
        Event::Exited {
            agent: 0,
            reason: "agent process exited (exit status: 0)".into(),
        },
    );
    assert_eq!(fx, vec![arm(Timer::ExitGrace { agent: 0 }, T0 + 17_000)]);
    assert!(matches!(r.slot(0), SlotState::Exited(_)));
    r.finished(12_050, 0, 12);
    r.at(12_060, Event::Drained { agent: 0 });
    assert_eq!(
        r.at(17_000, Event::Timer(Timer::ExitGrace { agent: 0 })),
        vec![]
    );
    assert_eq!(r.m.state(), &RunState::Completed);
}

#[test]
fn an_exit_after_finished_is_the_normal_end() {
    let mut r = Run::running(1, None);
    r.finished(12_000, 0, 12);
    assert_eq!(
        r.on(Event::Exited {
            agent: 0,
            reason: "exit 0".into()
        }),
        vec![]
    );
    assert_eq!(r.slot(0), &SlotState::Finished);
}

// ---- deadlines

#[test]
fn the_ready_deadline_fails_the_run_naming_the_missing_agents() {
    let mut r = Run::new(3, None);
    r.on(Event::Begin);
    r.on(Event::Launched);
    r.at(10, Event::Ready { agent: 1 });
    let fx = r.at(60_000, Event::Timer(Timer::Ready));
    assert_eq!(
        fx,
        vec![
            stop("agents 0, 2 did not report Ready within 60s"),
            Effect::End
        ]
    );
}

#[test]
fn the_ready_deadline_does_nothing_once_the_run_started() {
    let mut r = Run::running(1, None);
    assert_eq!(r.on(Event::Timer(Timer::Ready)), vec![]);
}

#[test]
fn with_min_healthy_the_ready_deadline_drops_the_missing_and_starts_the_rest() {
    let mut r = Run::new(4, Some(75));
    r.on(Event::Begin);
    r.on(Event::Launched);
    for a in 0..3 {
        r.at(10, Event::Ready { agent: a });
    }
    let fx = r.at(60_000, Event::Timer(Timer::Ready));
    assert!(matches!(fx[0], Effect::Start { .. }), "{fx:?}");
    assert_eq!(
        r.slot(3),
        &SlotState::Lost(AgentLoss::NotReady { ms: 60_000 })
    );
    assert_eq!(r.m.state(), &RunState::Running);
}

#[test]
fn with_min_healthy_the_ready_deadline_fails_a_fleet_below_it() {
    let mut r = Run::new(4, Some(80));
    r.on(Event::Begin);
    r.on(Event::Launched);
    for a in 0..3 {
        r.at(10, Event::Ready { agent: a });
    }
    r.at(60_000, Event::Timer(Timer::Ready));
    assert!(
        matches!(
            r.m.state(),
            RunState::Failed(Reason::BelowMinHealthy {
                healthy: 3,
                total: 4,
                pct: 80,
                ..
            })
        ),
        "{:?}",
        r.m.state()
    );
}

#[test]
fn with_zero_min_healthy_and_nobody_ready_the_run_fails_instead_of_waiting_forever() {
    let mut r = Run::new(2, Some(0));
    r.on(Event::Begin);
    r.on(Event::Launched);
    r.at(60_000, Event::Timer(Timer::Ready));
    assert_eq!(r.m.state(), &RunState::Failed(Reason::EveryAgentLost));
}

#[test]
fn the_heartbeat_deadline_loses_only_silent_running_agents() {
    let mut r = Run::running(2, None);
    r.at(9_000, Event::Heartbeat { agent: 1 });
    assert_eq!(r.at(10_100, Event::Tick), vec![]);
    assert_eq!(r.slot(0), &SlotState::Running, "exactly 10 s is not late");
    r.at(10_101, Event::Tick);
    assert_eq!(
        r.slot(0),
        &SlotState::Lost(AgentLoss::NoHeartbeat { ms: 10_000 })
    );
    assert_eq!(r.slot(1), &SlotState::Running);
}

#[test]
fn the_run_deadline_loses_overrunning_agents_and_stops_them_then_waits_for_their_last_batches() {
    let mut r = Run::running(2, None);
    r.finished(12_000, 0, 11);
    r.at(12_100, Event::Drained { agent: 0 });
    let fx = r.at(43_100, Event::Timer(Timer::Run));
    // Lost and told to stop; the run waits graceful stop + stop allowance for its last batches.
    let grace = arm(Timer::OverrunGrace, T0 + 43_100 + 2_000 + 10_000);
    assert_eq!(fx, vec![stop("overran the planned duration"), grace]);
    assert_eq!(r.slot(1), &SlotState::Lost(AgentLoss::Overran));
    assert!(r.m.state().loading(), "not over yet: {:?}", r.m.state());
    let fx = r.at(55_100, Event::Timer(Timer::OverrunGrace));
    assert_eq!((fx, r.m.state()), (vec![Effect::End], &RunState::Completed));
}

#[test]
fn the_drain_deadline_loses_an_agent_whose_batches_never_came() {
    let mut r = Run::running(2, None);
    r.finished(12_000, 0, 11);
    r.finished(12_000, 1, 11);
    r.at(12_100, Event::Drained { agent: 1 });
    let fx = r.at(22_000, Event::Timer(Timer::Drain { agent: 0 }));
    assert_eq!(fx, vec![Effect::End]);
    assert_eq!(r.slot(0), &SlotState::Lost(AgentLoss::BatchesMissing));
    assert_eq!(r.m.state(), &RunState::Completed);
}

#[test]
fn the_drain_deadline_says_when_an_agents_batches_were_rejected() {
    let mut r = Run::running(2, None);
    let why = |n: u32| format!("batch {n}: second 0 is outside the run's window");
    for (ms, reason) in [(5_000, why(3)), (6_000, why(4))] {
        r.at(ms, Event::BatchesRejected { agent: 0, reason });
    }
    r.finished(12_000, 0, 11);
    r.at(22_000, Event::Timer(Timer::Drain { agent: 0 }));
    let lost = SlotState::Lost(AgentLoss::BatchesRejected(why(3)));
    assert_eq!(r.slot(0), &lost, "the first reason");
}

#[test]
fn the_drain_deadline_of_a_drained_agent_does_nothing() {
    let mut r = Run::running(2, None);
    r.finished(12_000, 0, 11);
    r.at(12_100, Event::Drained { agent: 0 });
    assert_eq!(
        r.at(22_000, Event::Timer(Timer::Drain { agent: 0 })),
        vec![]
    );
    assert_eq!(r.slot(0), &SlotState::Drained);
}

#[test]
fn the_exit_grace_loses_an_agent_that_exited_mid_run() {
    let mut r = Run::running(2, None);
    r.at(
        5_000,
        Event::Exited {
            agent: 1,
            reason: "agent process exited (signal: 9)".into(),
        },
    );
    r.at(10_000, Event::Timer(Timer::ExitGrace { agent: 1 }));
    assert_eq!(
        r.slot(1),
        &SlotState::Lost(AgentLoss::Exited("agent process exited (signal: 9)".into()))
    );
    assert_eq!(r.m.state(), &RunState::Running);
}

#[test]
fn an_exit_before_ready_fails_the_run_after_the_grace() {
    let mut r = Run::new(2, None);
    r.on(Event::Begin);
    r.on(Event::Launched);
    r.at(
        10,
        Event::Exited {
            agent: 0,
            reason: "exit 1".into(),
        },
    );
    let fx = r.at(5_010, Event::Timer(Timer::ExitGrace { agent: 0 }));
    assert_eq!(
        fx,
        vec![
            stop("agent 0 ended before it was ready: exit 1"),
            Effect::End
        ]
    );
}

#[test]
fn a_failure_before_the_start_fails_the_run_with_the_agents_words() {
    let mut r = Run::new(2, None);
    r.on(Event::Begin);
    r.on(Event::Launched);
    r.at(
        10,
        Event::Exited {
            agent: 0,
            reason: "exit 1".into(),
        },
    );
    let fx = r.at(
        20,
        Event::Failed {
            agent: 0,
            reason: "k6 not found".into(),
        },
    );
    assert_eq!(
        fx,
        vec![
            stop("agent 0 failed before the start: k6 not found"),
            Effect::End
        ]
    );
}

#[test]
fn with_min_healthy_a_failure_before_the_start_is_tolerated() {
    let mut r = Run::new(2, Some(50));
    r.on(Event::Begin);
    r.on(Event::Launched);
    r.at(10, Event::Ready { agent: 1 });
    let fx = r.at(
        20,
        Event::Failed {
            agent: 0,
            reason: "boom".into(),
        },
    );
    assert!(matches!(fx[0], Effect::Start { .. }), "{fx:?}");
    assert_eq!(
        r.slot(0),
        &SlotState::Failed(AgentLoss::FailedBeforeStart("boom".into()))
    );
}

#[test]
fn falling_below_min_healthy_mid_run_fails_it() {
    let mut r = Run::running(4, Some(75));
    r.at(
        500,
        Event::Failed {
            agent: 0,
            reason: "a".into(),
        },
    );
    assert_eq!(r.m.state(), &RunState::Running);
    let fx = r.at(
        600,
        Event::Failed {
            agent: 1,
            reason: "b".into(),
        },
    );
    assert_eq!(
        fx,
        vec![
            stop("healthy agents 2/4 fell below min_healthy_agents 75% (agent 0: a; agent 1: b)"),
            Effect::End
        ]
    );
}

#[test]
fn cancel_while_running_stops_agents_and_ends_cancelled_once_drained() {
    let mut r = Run::running(2, None);
    let fx = r.at(
        5_000,
        Event::Cancel {
            reason: "cancelled with Ctrl-C".into(),
        },
    );
    assert_eq!(
        fx,
        vec![
            stop("cancelled with Ctrl-C"),
            arm(Timer::Stop, T0 + 5_000 + 2_000 + 10_000)
        ]
    );
    assert_eq!(r.m.state(), &RunState::Draining);
    r.finished(5_100, 0, 5);
    r.finished(5_100, 1, 5);
    r.at(5_200, Event::Drained { agent: 0 });
    assert_eq!(r.at(5_200, Event::Drained { agent: 1 }), vec![Effect::End]);
    assert_eq!(
        r.m.state(),
        &RunState::Cancelled("cancelled with Ctrl-C".into())
    );
    assert_eq!(r.m.state().end_state(), Some(EndState::Cancelled));
}

#[test]
fn cancel_before_the_start_ends_cancelled_at_once() {
    let mut r = Run::new(2, None);
    r.on(Event::Begin);
    let fx = r.on(Event::Cancel {
        reason: "shutdown".into(),
    });
    assert_eq!(fx, vec![stop("shutdown"), Effect::End]);
    assert_eq!(r.m.state(), &RunState::Cancelled("shutdown".into()));
}

#[test]
fn the_stop_deadline_loses_agents_that_did_not_stop() {
    let mut r = Run::running(2, None);
    r.at(5_000, Event::Cancel { reason: "c".into() });
    r.finished(5_100, 0, 5);
    r.at(5_200, Event::Drained { agent: 0 });
    let fx = r.at(17_000, Event::Timer(Timer::Stop));
    assert_eq!(fx, vec![Effect::End]);
    assert_eq!(r.slot(1), &SlotState::Lost(AgentLoss::StopTimeout));
    assert_eq!(r.m.state(), &RunState::Cancelled("c".into()));
}

// ---- events are values

#[test]
fn events_round_trip_through_json() {
    let events = vec![
        Event::Begin,
        Event::Launched,
        Event::Heartbeat { agent: 1 },
        Event::Finished {
            agent: 0,
            started_at_ms: 1,
            sent_at_ms: 2,
            batches_sent: 3,
            batches_dropped: 4,
        },
        Event::Timer(Timer::Drain { agent: 2 }),
        Event::Cancel { reason: "c".into() },
    ];
    let text = serde_json::to_string(&events).unwrap();
    let back: Vec<Event> = serde_json::from_str(&text).unwrap();
    assert_eq!(back, events);
}

#[test]
fn replaying_the_same_events_rebuilds_the_same_run() {
    let script: Vec<(u64, Event)> = vec![
        (0, Event::Begin),
        (1, Event::Launched),
        (2, Event::Heartbeat { agent: 0 }),
        (3, Event::Ready { agent: 0 }),
        (3, Event::Ready { agent: 1 }),
        (5_000, Event::Cancel { reason: "c".into() }),
        (
            5_100,
            Event::Finished {
                agent: 0,
                started_at_ms: T0,
                sent_at_ms: T0 + 5_100,
                batches_sent: 5,
                batches_dropped: 0,
            },
        ),
    ];
    let play = || {
        let mut m = RunMachine::new(cfg(2, None), T0);
        let fx: Vec<Vec<Effect>> = script
            .iter()
            .map(|(t, e)| m.on(e.clone(), T0 + t))
            .collect();
        (m.state().clone(), m.slots().to_vec(), fx)
    };
    assert_eq!(play(), play());
}
