//! The run's result, built once: [`build`] turns the state machine's end state and agent
//! slots plus the aggregator's fold into a [`FinalResult`]. The results files, the retained
//! result, the terminal summary and the notifications are all rendered from that one value,
//! so none of them can tell a different story.

use std::collections::BTreeMap;

use messages::clock::ClockSync;
use messages::metrics::{total_of, LabelStats};
use messages::outcome::{verdict, AgentState, EndState, RunCompleted, Verdict};
use messages::spec::Spec;
use messages::summary::{AgentSummary, Stats, Summary, TotalStats};
use messages::threshold::ThresholdResult;

use super::aggregator::Folded;
use super::fold::Row;
use super::machine::{RunState, Slot, SlotState};

#[derive(Clone)]
pub struct FinalResult {
    pub run_id: String,
    pub spec_name: String,
    pub state: EndState,
    pub reason: Option<String>,
    pub verdict: Verdict,
    pub start_at_ms: Option<u64>,
    pub ended_at_ms: u64,
    /// The load phase: from the start instant to the last agent's Finished.
    pub seconds: f64,
    pub labels: BTreeMap<String, LabelStats>,
    pub total: LabelStats,
    pub by_region: BTreeMap<String, LabelStats>,
    pub thresholds: Vec<ThresholdResult>,
    pub agents: Vec<AgentSummary>,
    pub iterations: u64,
    pub dropped: u64,
    pub late_batches: u64,
    pub rows: Vec<Row>,
    /// The first message agents saw for each kind of failed request (set by the supervisor
    /// from their `Finished`).
    pub error_samples: BTreeMap<String, String>,
    /// Each check's passes and failures, summed over the agents' `Finished` (set by the
    /// supervisor).
    pub checks: Vec<messages::wire::CheckCount>,
    /// Connections by the HTTP version they spoke, over the agents (set by the supervisor).
    pub http_versions: BTreeMap<String, u64>,
    pub timing: messages::summary::Timing,
}

/// What the state machine knew at the end.
pub struct RunFacts<'a> {
    pub run_id: &'a str,
    pub spec: &'a Spec,
    /// Each agent's region, by index.
    pub regions: &'a [String],
    pub state: &'a RunState,
    pub slots: &'a [Slot],
    pub start_at_ms: Option<u64>,
    /// Launch → every agent Ready ([`super::machine::RunMachine::ready_ms`]).
    pub ready_ms: Option<u64>,
    pub ended_at_ms: u64,
    /// Messages the bus refused on each agent's topics, by index.
    pub refused: &'a [u64],
    /// The clock offset each agent measured at the handshake, by index.
    pub clocks: &'a [Option<ClockSync>],
    /// What thresholds like `p95 < baseline.p95 * 1.10` are judged against.
    pub baseline: Option<&'a super::baseline::Baseline>,
}

/// The one place a run's result is made.
pub fn build(facts: RunFacts<'_>, folded: Folded) -> FinalResult {
    let (state, reason) = match facts.state.end_state() {
        Some(s) => (s, facts.state.reason()),
        // The supervisor builds results only at the end; anything else is a bug, reported
        // as a failure rather than as a pass.
        None => (
            EndState::Failed,
            Some(format!("ended while still {:?}", facts.state)),
        ),
    };
    let load_end = facts
        .slots
        .iter()
        .filter_map(|s| s.finished_at_ms)
        .max()
        .unwrap_or(facts.ended_at_ms);
    let seconds = facts
        .start_at_ms
        .map_or(0.0, |s| load_end.saturating_sub(s) as f64 / 1000.0);
    let total = total_of(folded.totals.values()).unwrap_or_else(|e| {
        tracing::error!(error = %e, "summing labels failed: totals are empty");
        LabelStats::default()
    });
    let mut thresholds = judge(
        facts.spec,
        &folded.totals,
        &total,
        seconds,
        folded.dropped,
        facts.baseline,
    );
    // A threshold that stopped the run failed, whatever the whole run's data says of it now
    // (as in k6): the run was judged by it and cut short.
    if let Some(c) = &folded.crossed {
        if let (Some(r), Some(t)) = (
            thresholds.get_mut(c.index),
            facts.spec.thresholds.get(c.index),
        ) {
            r.passed = false;
            r.reason = Some(c.reason(t));
        }
    }
    let agents = facts
        .slots
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let (st, why) = match &s.state {
                SlotState::Drained => (AgentState::Finished, None),
                SlotState::Lost(r) => (AgentState::Lost, Some(r.to_string())),
                SlotState::Failed(r) => (AgentState::Failed, Some(r.to_string())),
                other => (
                    AgentState::Lost,
                    Some(format!("still {other:?} at the end")),
                ),
            };
            let index = i as u32;
            let clock = facts.clocks.get(i).copied().flatten();
            AgentSummary {
                index,
                region: facts.regions.get(i).cloned().unwrap_or_default(),
                state: st,
                reason: why,
                started_at_ms: s.started_at_ms,
                clock_offset_ms: clock.map(|c| c.offset_ms),
                clock_round_trip_ms: clock.map(|c| c.round_trip_ms),
                batches_received: folded.batches.get(&index).copied().unwrap_or(0),
                rejected_batches: folded.rejected.get(&index).copied().unwrap_or(0),
                refused_messages: facts.refused.get(i).copied().unwrap_or(0),
                batches_dropped_by_agent: s.dropped,
            }
        })
        .collect();
    FinalResult {
        run_id: facts.run_id.to_string(),
        spec_name: facts.spec.name.clone(),
        verdict: verdict(state, &thresholds),
        state,
        reason,
        start_at_ms: facts.start_at_ms,
        ended_at_ms: facts.ended_at_ms,
        seconds,
        labels: folded.totals,
        total,
        by_region: folded.by_region,
        thresholds,
        agents,
        iterations: folded.iterations,
        dropped: folded.dropped,
        late_batches: folded.late_batches,
        rows: folded.rows,
        error_samples: BTreeMap::new(),
        checks: Vec::new(),
        http_versions: BTreeMap::new(),
        timing: messages::summary::Timing {
            ready_ms: facts.ready_ms,
            intake_lag_ms: folded.intake_lag,
            live_lag_ms: folded.live_lag,
        },
    }
}

/// The result of a run that never got going (its broker refused it, its supervisor died):
/// failed, with `reason`, and no numbers.
pub fn not_started(run_id: &str, spec: &Spec, reason: String) -> FinalResult {
    never_ran(
        run_id,
        spec,
        &RunState::Failed(super::reasons::Reason::Setup(reason)),
    )
}

/// The result of a run cancelled before it started (while queued).
pub fn cancelled_before_start(run_id: &str, spec: &Spec, reason: String) -> FinalResult {
    never_ran(run_id, spec, &RunState::Cancelled(reason))
}

fn never_ran(run_id: &str, spec: &Spec, state: &RunState) -> FinalResult {
    build(
        RunFacts {
            run_id,
            spec,
            regions: &[],
            state,
            slots: &[],
            start_at_ms: None,
            ready_ms: None,
            ended_at_ms: crate::clock::unix_ms(),
            refused: &[],
            clocks: &[],
            baseline: None,
        },
        Folded::default(),
    )
}

/// Thresholds judged on the merged data of the whole fleet.
fn judge(
    spec: &Spec,
    labels: &BTreeMap<String, LabelStats>,
    total: &LabelStats,
    seconds: f64,
    dropped: u64,
    baseline: Option<&super::baseline::Baseline>,
) -> Vec<ThresholdResult> {
    let empty = LabelStats::default();
    let baseline = baseline.map(|b| b as &dyn messages::threshold::BaselineValues);
    spec.thresholds
        .iter()
        .map(|t| {
            let stats = match &t.label {
                Some(l) => labels.get(l).unwrap_or(&empty),
                None => total,
            };
            t.judge(stats, seconds, dropped, baseline)
        })
        .collect()
}

impl FinalResult {
    /// Largest difference between the agents' actual start instants.
    pub fn start_skew_ms(&self) -> Option<u64> {
        let starts = self.agents.iter().filter_map(|a| a.started_at_ms);
        let (min, max) = starts.fold((None, None), |(lo, hi): (Option<u64>, Option<u64>), s| {
            (
                Some(lo.map_or(s, |l| l.min(s))),
                Some(hi.map_or(s, |h| h.max(s))),
            )
        });
        Some(max? - min?)
    }

    /// The largest clock offset among the agents (absolute ms), if any was measured.
    pub fn max_clock_offset_ms(&self) -> Option<u64> {
        self.agents
            .iter()
            .filter_map(|a| a.clock_offset_ms)
            .map(i64::unsigned_abs)
            .max()
    }

    pub fn agents_lost(&self) -> u32 {
        self.agents
            .iter()
            .filter(|a| a.state != AgentState::Finished)
            .count() as u32
    }

    /// `summary.json`, and the retained result.
    pub fn summary(&self) -> Summary {
        let s = self.seconds;
        let per = |m: &BTreeMap<String, LabelStats>| -> BTreeMap<String, Stats> {
            m.iter()
                .map(|(k, v)| (k.clone(), Stats::of(v, s)))
                .collect()
        };
        let checks: Vec<messages::summary::CheckResult> =
            self.checks.iter().map(Into::into).collect();
        Summary {
            run: self.run_id.clone(),
            spec: self.spec_name.clone(),
            state: self.state,
            reason: self.reason.clone(),
            verdict: self.verdict,
            start_at_ms: self.start_at_ms,
            ended_at_ms: self.ended_at_ms,
            duration_s: s,
            total: TotalStats {
                stats: Stats::of(&self.total, s),
                iterations: self.iterations,
                dropped_iterations: self.dropped,
            },
            labels: per(&self.labels),
            regions: per(&self.by_region),
            thresholds: self.thresholds.clone(),
            agents: self.agents.clone(),
            start_skew_ms: self.start_skew_ms(),
            max_clock_offset_ms: self.max_clock_offset_ms(),
            agents_lost: self.agents_lost(),
            late_batches: self.late_batches,
            warnings: {
                let mut w = messages::summary::run_warnings(&self.total);
                w.extend(messages::summary::check_warnings(&self.total, &checks));
                w
            },
            error_samples: self.error_samples.clone(),
            checks,
            http_versions: self.http_versions.clone(),
            timing: self.timing.clone(),
        }
    }

    /// The `RunCompleted` notification for this result; `results` is where its files are, or
    /// why there are none to read.
    pub fn completed(
        &self,
        source: &str,
        correlation_id: Option<String>,
        results: Result<String, String>,
    ) -> RunCompleted {
        let total = Stats::of(&self.total, self.seconds);
        RunCompleted {
            run_id: self.run_id.clone(),
            spec: self.spec_name.clone(),
            correlation_id,
            source: source.to_string(),
            state: self.state,
            reason: self.reason.clone(),
            verdict: self.verdict,
            requests: total.requests,
            errors: total.errors,
            rps: total.rps,
            p95_ms: total.latency_ms.p95,
            p99_ms: total.latency_ms.p99,
            agents_lost: self.agents_lost(),
            thresholds: self.thresholds.clone(),
            results_error: results.as_ref().err().cloned(),
            results: results.ok(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::machine::{AgentLoss, Reason};

    fn spec(thresholds: &str) -> Spec {
        let text = format!(
            "name: t\ntarget: {{ url: http://127.0.0.1:1 }}\nscenario:\n  - request: {{ url: / }}\nload: {{ executor: constant-vus, vus: 1, duration: 1s }}\n{thresholds}"
        );
        messages::parse_spec(&text).expect("test spec")
    }

    fn slot(state: SlotState) -> Slot {
        Slot {
            state,
            last_seen_ms: 0,
            started_at_ms: Some(1_000),
            finished_at_ms: Some(2_000),
            dropped: 0,
            rejected: None,
        }
    }

    fn result(state: RunState, spec: &Spec, slots: &[Slot]) -> FinalResult {
        result_with(state, spec, slots, Folded::default())
    }

    fn result_with(state: RunState, spec: &Spec, slots: &[Slot], folded: Folded) -> FinalResult {
        build(
            RunFacts {
                run_id: "t-1",
                spec,
                regions: &["local".to_string()],
                state: &state,
                slots,
                start_at_ms: Some(1_000),
                ready_ms: Some(400),
                ended_at_ms: 3_000,
                refused: &[],
                clocks: &[],
                baseline: None,
            },
            folded,
        )
    }

    #[test]
    fn a_failed_or_cancelled_run_without_thresholds_is_never_passed() {
        let s = spec("");
        let slots = [slot(SlotState::Drained)];
        let ok = result(RunState::Completed, &s, &slots);
        assert_eq!(ok.verdict, Verdict::Passed);
        let failed = result(RunState::Failed(Reason::EveryAgentLost), &s, &slots);
        assert_eq!(failed.verdict, Verdict::Failed);
        assert_eq!(failed.summary().verdict, Verdict::Failed);
        assert_eq!(
            failed.completed("x", None, Err("none".into())).verdict,
            Verdict::Failed
        );
        let cancelled = result(RunState::Cancelled("c".into()), &s, &slots);
        assert_eq!(cancelled.summary().verdict, Verdict::Failed);
        assert_eq!(cancelled.summary().reason.as_deref(), Some("c"));
    }

    #[test]
    fn the_summary_and_the_notification_tell_the_same_story() {
        let s = spec("thresholds:\n  - p95 < 1ms\n");
        let slots = [
            slot(SlotState::Drained),
            slot(SlotState::Lost(AgentLoss::Overran)),
        ];
        let r = result(RunState::Completed, &s, &slots);
        let sum = r.summary();
        let note = r.completed("inbox/t.yaml", Some("c-1".into()), Ok("dir".into()));
        assert_eq!(
            (note.results.as_deref(), note.results_error.as_deref()),
            (Some("dir"), None)
        );
        let lost = r.completed("t", None, Err("results not written: full".into()));
        assert_eq!(
            (lost.results.as_deref(), lost.results_error.as_deref()),
            (None, Some("results not written: full"))
        );
        assert_eq!(sum.state, note.state);
        assert_eq!(sum.verdict, note.verdict);
        assert_eq!(sum.thresholds, note.thresholds);
        assert_eq!(sum.agents_lost, 1);
        assert_eq!(note.agents_lost, 1);
        assert_eq!(sum.agents[1].state, AgentState::Lost);
        assert_eq!(
            sum.agents[1].reason.as_deref(),
            Some("overran the planned duration")
        );
        assert_eq!(sum.duration_s, 1.0);
        assert_eq!(sum.start_skew_ms, Some(0));
        assert_eq!(
            sum.timing.ready_ms,
            Some(400),
            "the machine's launch-to-ready time"
        );
    }

    #[test]
    fn rejected_batches_are_reported_per_agent_with_the_loss_they_caused() {
        let s = spec("");
        let why = AgentLoss::BatchesRejected("batch 2: 70000 labels, more than 65536".into());
        let slots = [slot(SlotState::Drained), slot(SlotState::Lost(why))];
        let folded = Folded {
            rejected: std::collections::HashMap::from([(1, 3)]),
            ..Folded::default()
        };
        let sum = result_with(RunState::Completed, &s, &slots, folded).summary();
        assert_eq!(sum.agents[0].rejected_batches, 0);
        assert_eq!(sum.agents[1].rejected_batches, 3);
        assert_eq!(
            sum.agents[1].reason.as_deref(),
            Some("finished, but some of its batches were rejected (batch 2: 70000 labels, more than 65536)")
        );
        assert_eq!(sum.agents_lost, 1);
    }

    #[test]
    fn each_agents_clock_offset_is_reported_and_the_largest_one_on_top() {
        let s = spec("");
        let slots = [
            slot(SlotState::Drained),
            slot(SlotState::Drained),
            slot(SlotState::Drained),
        ];
        let sync = |offset_ms, round_trip_ms| {
            Some(ClockSync {
                offset_ms,
                round_trip_ms,
            })
        };
        let summary = |clocks: &[Option<ClockSync>]| {
            build(
                RunFacts {
                    run_id: "t-1",
                    spec: &s,
                    regions: &[],
                    state: &RunState::Completed,
                    slots: &slots,
                    start_at_ms: Some(1_000),
                    ready_ms: None,
                    ended_at_ms: 3_000,
                    refused: &[],
                    clocks,
                    baseline: None,
                },
                Folded::default(),
            )
            .summary()
        };
        let sum = summary(&[sync(120, 2), sync(-5_000, 4), None]);
        assert_eq!(sum.agents[0].clock_offset_ms, Some(120));
        assert_eq!(sum.agents[1].clock_offset_ms, Some(-5_000));
        assert_eq!(sum.agents[1].clock_round_trip_ms, Some(4));
        assert_eq!(sum.agents[2].clock_offset_ms, None);
        assert_eq!(sum.max_clock_offset_ms, Some(5_000));
        assert_eq!(summary(&[]).max_clock_offset_ms, None);
        let extreme = summary(&[sync(i64::MIN, 0)]);
        assert_eq!(extreme.max_clock_offset_ms, Some(1 << 63));
    }
}
