//! `herd agent --standalone`: one process runs the whole load and prints a line per second and
//! a summary. The engine is usable (and benchmarkable) without any coordinator.

use std::collections::BTreeMap;
use std::io::Write;

use messages::outcome::EndState;
use messages::spec::Spec;
use messages::split::split;
use messages::summary::{Stats, Summary, TotalStats};
use messages::threshold::ThresholdResult;
use tokio::sync::{mpsc, watch};

use crate::engine::{run_share, EngineError, NetConfig};
use crate::executor::Report;
use crate::report::{second_line, summary_table, Totals};

pub struct Outcome {
    pub totals: Totals,
    pub seconds: f64,
    pub verdicts: Vec<ThresholdResult>,
    pub report: Report,
    pub summary: serde_json::Value,
}

impl Outcome {
    pub fn passed(&self) -> bool {
        self.verdicts.iter().all(|v| v.passed)
    }
}

/// Runs the whole spec in this process. Per-second lines and the summary table go to `out`;
/// with `json`, `out` gets only the summary — one document laid out as a coordinated run's
/// `summary.json` — and the per-second lines go to stderr, so `| jq` reads it. `net` holds the
/// target policy (`herd agent --standalone --allow-target/--deny-target`).
pub async fn run(
    spec: &Spec,
    data: &BTreeMap<String, Vec<u8>>,
    net: &NetConfig,
    stop: watch::Receiver<bool>,
    out: &mut (dyn Write + Send),
    json: bool,
) -> Result<Outcome, EngineError> {
    let started_ms = unix_ms();
    let share = split(&spec.load.executor, 1).remove(0);
    let stopped = stop.clone();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let engine = run_share(spec, data, &share, "standalone", net, stop, tx);
    tokio::pin!(engine);
    let mut totals = Totals::default();
    let mut first: Option<u64> = None;
    let mut engine_result = None;
    loop {
        tokio::select! {
            r = &mut engine, if engine_result.is_none() => engine_result = Some(r),
            b = rx.recv() => match b {
                Some(b) => {
                    let f = *first.get_or_insert(b.second);
                    if let Err(e) = totals.add(&b) {
                        tracing::error!(error = %e, "dropping a corrupt batch");
                    }
                    let line = second_line(b.second.saturating_sub(f) + 1, &b);
                    if json {
                        eprintln!("{line}");
                    } else {
                        let _ = writeln!(out, "{line}");
                    }
                }
                None => break,
            },
        }
    }
    let report = match engine_result {
        Some(r) => r?,
        None => engine.await?,
    };
    let seconds = (report.ended - report.started).as_secs_f64();
    let verdicts = totals.judge(&spec.thresholds, seconds).unwrap_or_default();
    let state = if *stopped.borrow() {
        EndState::Cancelled
    } else {
        EndState::Completed
    };
    let summary = standalone_summary(
        spec, &totals, &verdicts, state, started_ms, seconds, &report,
    );
    if json {
        let _ = writeln!(out, "{summary}");
    } else {
        let samples = crate::http::error_samples().into_iter().collect();
        match summary_table(
            &totals,
            seconds,
            &verdicts,
            &samples,
            &check_results(&report),
        ) {
            Ok(t) => {
                let _ = write!(out, "\n{t}");
            }
            Err(e) => {
                let _ = writeln!(out, "cannot build the summary: {e}");
            }
        }
    }
    Ok(Outcome {
        totals,
        seconds,
        verdicts,
        report,
        summary,
    })
}

fn check_results(report: &crate::executor::Report) -> Vec<messages::summary::CheckResult> {
    report.checks.iter().map(Into::into).collect()
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The run as `summary.json` lays out a coordinated one: one agent, in region `local`.
fn standalone_summary(
    spec: &Spec,
    totals: &Totals,
    verdicts: &[ThresholdResult],
    state: EndState,
    started_ms: u64,
    seconds: f64,
    report: &crate::executor::Report,
) -> serde_json::Value {
    let total = totals.total().unwrap_or_else(|e| {
        tracing::error!(error = %e, "summing labels failed");
        Default::default()
    });
    let stats = Stats::of(&total, seconds);
    let s = Summary {
        run: format!("{}-standalone", spec.name),
        spec: spec.name.clone(),
        state,
        reason: (state == EndState::Cancelled).then(|| "stopped with Ctrl-C".to_string()),
        verdict: messages::outcome::verdict(state, verdicts),
        start_at_ms: Some(started_ms),
        ended_at_ms: unix_ms(),
        duration_s: seconds,
        total: TotalStats {
            stats: stats.clone(),
            iterations: totals.iterations,
            dropped_iterations: totals.dropped,
        },
        labels: totals
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), Stats::of(v, seconds)))
            .collect(),
        regions: BTreeMap::from([("local".to_string(), stats)]),
        thresholds: verdicts.to_vec(),
        agents: Vec::new(),
        start_skew_ms: None,
        max_clock_offset_ms: None,
        agents_lost: 0,
        late_batches: 0,
        warnings: {
            let mut w = messages::summary::run_warnings(&total);
            w.extend(messages::summary::check_warnings(
                &total,
                &check_results(report),
            ));
            w
        },
        error_samples: crate::http::error_samples().into_iter().collect(),
        checks: check_results(report),
        http_versions: report.http_versions.iter().cloned().collect(),
        timing: Default::default(),
    };
    serde_json::to_value(&s).unwrap_or_default()
}
