//! `ResultsWriter`: the run's files in `./herd-results/<run>/` and the retained result message.
//!
//! Files: `summary.json` (totals, per label, per region, thresholds with observed values and
//! verdict, agents with start skew and losses), `timeseries.csv` and `timeseries.json` (per
//! second, per label, plus a `TOTAL` label), `junit.xml` (one case per threshold), the spec as
//! written (`spec.yaml`) and as run (`spec.json`, with the resolved target URL).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use actix::prelude::*;
use messages::metrics::LabelStats;
use messages::spec::Spec;
use messages::threshold::Verdict;
use rumqttc::QoS;
use serde::Serialize;
use serde_json::{json, Value};

use crate::bus::Bus;
use crate::fold::{Row, RowStats};

#[derive(Debug, Clone, Serialize)]
pub struct AgentSummary {
    pub index: u32,
    pub region: String,
    /// `finished`, `lost` or `failed`.
    pub state: String,
    pub reason: Option<String>,
    pub started_at_ms: Option<u64>,
    pub batches_received: u64,
    pub batches_dropped_by_agent: u64,
}

#[derive(Clone)]
pub struct FinalResult {
    pub run_id: String,
    /// `completed`, `failed` or `cancelled`.
    pub state: String,
    pub reason: Option<String>,
    pub start_at_ms: Option<u64>,
    pub ended_at_ms: u64,
    pub seconds: f64,
    pub totals: BTreeMap<String, LabelStats>,
    pub total: LabelStats,
    pub by_region: BTreeMap<String, LabelStats>,
    pub verdicts: Vec<Verdict>,
    pub agents: Vec<AgentSummary>,
    pub iterations: u64,
    pub dropped: u64,
    pub late_batches: u64,
    pub rows: Vec<Row>,
}

impl FinalResult {
    pub fn passed(&self) -> bool {
        self.verdicts.iter().all(|v| v.passed)
    }

    /// Largest difference between the agents' actual start instants.
    pub fn start_skew_ms(&self) -> Option<u64> {
        let starts: Vec<u64> = self.agents.iter().filter_map(|a| a.started_at_ms).collect();
        Some(starts.iter().max()? - starts.iter().min()?)
    }

    pub fn agents_lost(&self) -> usize {
        self.agents.iter().filter(|a| a.state != "finished").count()
    }

    pub fn summary_json(&self, spec_name: &str) -> Value {
        let s = self.seconds;
        let mut total = agent::report::stats_json(&self.total, s);
        if let Value::Object(m) = &mut total {
            m.insert("iterations".into(), json!(self.iterations));
            m.insert("dropped_iterations".into(), json!(self.dropped));
        }
        json!({
            "run": self.run_id,
            "spec": spec_name,
            "state": self.state,
            "reason": self.reason,
            "verdict": if self.passed() { "passed" } else { "failed" },
            "start_at_ms": self.start_at_ms,
            "ended_at_ms": self.ended_at_ms,
            "duration_s": s,
            "total": total,
            "labels": self.totals.iter().map(|(k, v)| (k.clone(), agent::report::stats_json(v, s))).collect::<serde_json::Map<_, _>>(),
            "regions": self.by_region.iter().map(|(k, v)| (k.clone(), agent::report::stats_json(v, s))).collect::<serde_json::Map<_, _>>(),
            "thresholds": self.verdicts.iter().map(|v| json!({"expr": v.expr, "label": v.label, "observed": v.observed, "passed": v.passed})).collect::<Vec<_>>(),
            "agents": self.agents,
            "start_skew_ms": self.start_skew_ms(),
            "agents_lost": self.agents_lost(),
            "late_batches": self.late_batches,
        })
    }
}

fn csv_row(out: &mut String, r: &Row, label: &str, s: &RowStats) {
    let _ = writeln!(
        out,
        "{},{},{},{},{},{:.3},{:.3},{:.3},{:.3},{:.3},{}",
        r.second,
        csv_escape(label),
        s.requests,
        s.errors,
        s.rps,
        s.p50_ms,
        s.p90_ms,
        s.p95_ms,
        s.p99_ms,
        s.max_ms,
        r.vus
    );
}

fn csv_escape(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

pub fn timeseries_csv(rows: &[Row]) -> String {
    let mut out =
        String::from("second,label,requests,errors,rps,p50_ms,p90_ms,p95_ms,p99_ms,max_ms,vus\n");
    for r in rows {
        csv_row(&mut out, r, "TOTAL", &r.total);
        for (l, s) in &r.labels {
            csv_row(&mut out, r, l, s);
        }
    }
    out
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

pub fn junit(run_id: &str, verdicts: &[Verdict], seconds: f64) -> String {
    let failures = verdicts.iter().filter(|v| !v.passed).count();
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        x,
        "<testsuites><testsuite name=\"herd thresholds ({})\" tests=\"{}\" failures=\"{failures}\" time=\"{seconds:.3}\">",
        xml_escape(run_id),
        verdicts.len()
    );
    for v in verdicts {
        let name = match &v.label {
            Some(l) => format!("{} [{l}]", v.expr),
            None => v.expr.clone(),
        };
        let _ = write!(
            x,
            "  <testcase classname=\"herd.thresholds\" name=\"{}\">",
            xml_escape(&name)
        );
        if !v.passed {
            let _ = write!(
                x,
                "<failure message=\"observed {:.3}\">{} observed {:.3}</failure>",
                v.observed,
                xml_escape(&name),
                v.observed
            );
        }
        x.push_str("</testcase>\n");
    }
    x.push_str("</testsuite></testsuites>\n");
    x
}

#[derive(Message)]
#[rtype(result = "Result<PathBuf, String>")]
pub struct WriteResults(pub FinalResult);

pub struct ResultsWriter {
    bus: Bus,
    dir: PathBuf,
    spec: Spec,
    spec_text: String,
}

impl ResultsWriter {
    pub fn new(bus: Bus, dir: PathBuf, spec: Spec, spec_text: String) -> ResultsWriter {
        ResultsWriter {
            bus,
            dir,
            spec,
            spec_text,
        }
    }

    fn write(&self, r: &FinalResult) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let summary = r.summary_json(&self.spec.name);
        std::fs::write(
            self.dir.join("summary.json"),
            serde_json::to_vec_pretty(&summary)?,
        )?;
        std::fs::write(self.dir.join("timeseries.csv"), timeseries_csv(&r.rows))?;
        std::fs::write(
            self.dir.join("timeseries.json"),
            serde_json::to_vec_pretty(&r.rows)?,
        )?;
        std::fs::write(
            self.dir.join("junit.xml"),
            junit(&r.run_id, &r.verdicts, r.seconds),
        )?;
        std::fs::write(self.dir.join("spec.yaml"), &self.spec_text)?;
        std::fs::write(
            self.dir.join("spec.json"),
            serde_json::to_vec_pretty(&self.spec)?,
        )?;
        // Retained: a dashboard or pipeline that subscribes later still gets the verdict.
        self.bus.publish(
            messages::topics::result(&r.run_id),
            summary.to_string().into_bytes(),
            QoS::AtLeastOnce,
            true,
        );
        Ok(())
    }
}

impl Actor for ResultsWriter {
    type Context = Context<Self>;
}

impl Handler<WriteResults> for ResultsWriter {
    type Result = Result<PathBuf, String>;

    fn handle(&mut self, msg: WriteResults, _ctx: &mut Context<Self>) -> Self::Result {
        self.write(&msg.0)
            .map(|_| self.dir.clone())
            .map_err(|e| format!("writing results to {}: {e}", self.dir.display()))
    }
}
