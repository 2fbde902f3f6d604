//! `ResultsWriter`: the run's files in `./herd-results/<run>/` and the retained result message.
//!
//! Files: `summary.json` (totals, per label, per region, thresholds with observed values and
//! verdict, agents with start skew and losses), `timeseries.csv` and `timeseries.json` (per
//! second, per label, plus a `TOTAL` label), `junit.xml` (one case per threshold), the spec as
//! written (`spec.yaml`) and as run (`spec.json`, with the resolved target URL).

use std::fmt::Write as _;
use std::path::PathBuf;

use actix::prelude::*;
use messages::spec::Spec;
use messages::threshold::ThresholdResult;
use transport::QoS;

use super::fold::{Row, RowStats};
use super::outcome::FinalResult;
use crate::bus::RunBus;

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

pub fn junit(run_id: &str, verdicts: &[ThresholdResult], seconds: f64) -> String {
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

/// The results could not be written.
#[derive(Debug, thiserror::Error)]
#[error("writing results to {dir}: {source}")]
pub struct ResultsError {
    pub dir: String,
    #[source]
    pub source: std::io::Error,
}

#[derive(Message)]
#[rtype(result = "Result<PathBuf, ResultsError>")]
pub struct WriteResults(pub FinalResult);

pub struct ResultsWriter {
    bus: RunBus,
    dir: PathBuf,
    spec: Spec,
    spec_text: String,
}

impl ResultsWriter {
    pub fn new(bus: RunBus, dir: PathBuf, spec: Spec, spec_text: String) -> ResultsWriter {
        ResultsWriter {
            bus,
            dir,
            spec,
            spec_text,
        }
    }

    fn write(&self, r: &FinalResult) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let summary = serde_json::to_vec_pretty(&r.summary())?;
        std::fs::write(self.dir.join("summary.json"), &summary)?;
        std::fs::write(self.dir.join("timeseries.csv"), timeseries_csv(&r.rows))?;
        std::fs::write(
            self.dir.join("timeseries.json"),
            serde_json::to_vec_pretty(&r.rows)?,
        )?;
        std::fs::write(
            self.dir.join("junit.xml"),
            junit(&r.run_id, &r.thresholds, r.seconds),
        )?;
        std::fs::write(self.dir.join("spec.yaml"), &self.spec_text)?;
        std::fs::write(
            self.dir.join("spec.json"),
            serde_json::to_vec_pretty(&self.spec)?,
        )?;
        // Retained: a dashboard or pipeline that subscribes later still gets the verdict.
        self.bus.publish(
            messages::topics::result(&r.run_id),
            summary,
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
    type Result = Result<PathBuf, ResultsError>;

    fn handle(&mut self, msg: WriteResults, _ctx: &mut Context<Self>) -> Self::Result {
        self.write(&msg.0)
            .map(|_| self.dir.clone())
            .map_err(|source| ResultsError {
                dir: self.dir.display().to_string(),
                source,
            })
    }
}
