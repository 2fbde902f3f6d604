//! `herd agent --standalone`: one process runs the whole load and prints a line per second and
//! a summary. The engine is usable (and benchmarkable) without any coordinator.

use std::collections::BTreeMap;
use std::io::Write;

use messages::spec::Spec;
use messages::split::split;
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

/// Runs the whole spec in this process. Per-second lines and the summary go to `out`
/// (`json`: a final `{"summary": …}` line for scripts instead of the table). `net` holds the
/// target policy (`herd agent --standalone --allow-target/--deny-target`).
pub async fn run(
    spec: &Spec,
    data: &BTreeMap<String, Vec<u8>>,
    net: &NetConfig,
    stop: watch::Receiver<bool>,
    out: &mut (dyn Write + Send),
    json: bool,
) -> Result<Outcome, EngineError> {
    let share = split(&spec.load.executor, 1).remove(0);
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
                    let _ = writeln!(out, "{}", second_line(b.second.saturating_sub(f) + 1, &b));
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
    let summary = totals.summary_json(seconds, &verdicts).unwrap_or_default();
    if json {
        let _ = writeln!(out, "{}", serde_json::json!({ "summary": summary }));
    } else {
        match summary_table(&totals, seconds, &verdicts) {
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
