//! `ResultsWriter`: the run's files in `./herd-results/<run>/` and the retained result message.
//!
//! Files: `summary.json` (totals, per label, per region, thresholds with observed values and
//! verdict, agents with start skew and losses), `timeseries.csv` and `timeseries.json` (per
//! second, per label, plus a `TOTAL` label), `junit.xml` (one case per threshold), the spec as
//! written (`spec.yaml`) and as run (`spec.json`: the same spec as JSON with the resolved target
//! URL — itself a valid spec).
//!
//! Each file is written atomically (temp file, fsync, rename, folder fsync) and `summary.json`
//! last: its presence marks a complete folder. A file that cannot be written (a full disk)
//! fails the whole write with an error naming it; no torn file keeps a final name, and the
//! result is published on its retained topic only once every file is durable.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use actix::prelude::*;
use messages::spec::Spec;
use transport::QoS;

use super::fold::{Row, RowStats};
use super::outcome::FinalResult;
use crate::bus::RunBus;
use crate::journal::{self, FileError, Step};

fn csv_row(out: &mut String, r: &Row, label: &str, s: &RowStats, start_at_ms: Option<u64>) {
    let time = chrono::DateTime::from_timestamp(r.second as i64, 0)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default();
    // Seconds from the start to the end of this second, as the live view counts them.
    let elapsed = start_at_ms
        .map(|ms| {
            format!(
                "{:.3}",
                ((r.second + 1) * 1000).saturating_sub(ms) as f64 / 1000.0
            )
        })
        .unwrap_or_default();
    let error_rate = if s.requests > 0 {
        s.errors as f64 / s.requests as f64
    } else {
        0.0
    };
    let _ = writeln!(
        out,
        "{},{},{},{},{},{:.3},{:.3},{:.3},{:.3},{:.3},{},{time},{elapsed},{error_rate:.6},{},{}",
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
        r.vus,
        r.iterations,
        r.dropped_iterations,
    );
}

fn csv_escape(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// One row per second and label (`TOTAL` first). `vus`, `iterations` and
/// `dropped_iterations` are the fleet's in that second, the same on each of its rows.
pub fn timeseries_csv(rows: &[Row], start_at_ms: Option<u64>) -> String {
    let mut out = String::from(
        "second,label,requests,errors,rps,p50_ms,p90_ms,p95_ms,p99_ms,max_ms,vus,time,elapsed_s,error_rate,iterations,dropped_iterations\n",
    );
    for r in rows {
        csv_row(&mut out, r, "TOTAL", &r.total, start_at_ms);
        for (l, s) in &r.labels {
            csv_row(&mut out, r, l, s, start_at_ms);
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

pub fn junit(r: &FinalResult) -> String {
    let verdicts = &r.thresholds;
    let failures = verdicts.iter().filter(|v| !v.passed).count();
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    // Named after the spec, so a CI's test history follows it from run to run; the run is a
    // property, its start the suite's timestamp (UTC, as JUnit readers expect it).
    let timestamp = r
        .start_at_ms
        .and_then(|ms| chrono::DateTime::from_timestamp_millis(ms as i64))
        .map(|t| format!(" timestamp=\"{}\"", t.format("%Y-%m-%dT%H:%M:%S")))
        .unwrap_or_default();
    let _ = writeln!(
        x,
        "<testsuites><testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" time=\"{:.3}\"{timestamp}>",
        xml_escape(&r.spec_name),
        verdicts.len(),
        r.seconds
    );
    let _ = writeln!(
        x,
        "  <properties><property name=\"run\" value=\"{}\"/><property name=\"state\" value=\"{}\"/><property name=\"verdict\" value=\"{}\"/></properties>",
        xml_escape(&r.run_id),
        r.state,
        match r.verdict {
            messages::outcome::Verdict::Passed => "passed",
            messages::outcome::Verdict::Failed => "failed",
        }
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
            let why = match (&v.reason, v.limit) {
                (Some(r), _) => r.clone(),
                (None, Some(_)) => format!(
                    "observed {}, limit {}",
                    v.observed_display,
                    v.limit_display.as_deref().unwrap_or("n/a")
                ),
                (None, None) => format!("observed {}", v.observed_display),
            };
            let _ = write!(
                x,
                "<failure message=\"{}\">{}: {}</failure>",
                xml_escape(&why),
                xml_escape(&name),
                xml_escape(&why)
            );
        }
        x.push_str("</testcase>\n");
    }
    x.push_str("</testsuite>\n");
    checks_suite(&mut x, r);
    x.push_str("</testsuites>\n");
    x
}

/// Each check as a test case of its own suite, so a CI page shows which one failed and how
/// often. The run's verdict stays the thresholds' (`check_pass_rate` judges checks).
fn checks_suite(x: &mut String, r: &FinalResult) {
    if r.checks.is_empty() {
        return;
    }
    let failing = r.checks.iter().filter(|c| c.failed > 0).count();
    let _ = writeln!(
        x,
        "<testsuite name=\"{} checks\" tests=\"{}\" failures=\"{failing}\">",
        xml_escape(&r.spec_name),
        r.checks.len()
    );
    for c in &r.checks {
        let name = messages::summary::CheckResult::from(c).title();
        let all = c.passed.saturating_add(c.failed);
        let _ = write!(
            x,
            "  <testcase classname=\"herd.checks\" name=\"{}\">",
            xml_escape(&name)
        );
        if c.failed > 0 {
            let why = format!("{} of {all} failed", c.failed);
            let _ = write!(
                x,
                "<failure message=\"{}\">{}: {}</failure>",
                xml_escape(&why),
                xml_escape(&name),
                xml_escape(&why)
            );
        } else {
            let _ = write!(x, "<system-out>{} of {all} passed</system-out>", c.passed);
        }
        x.push_str("</testcase>\n");
    }
    x.push_str("</testsuite>\n");
}

/// The results could not be written; the run folder has no `summary.json`.
#[derive(Debug, thiserror::Error)]
pub enum ResultsError {
    /// A file could not be written whole (a full disk, an I/O error, a permission).
    #[error("results not written: {0}")]
    File(#[from] FileError),
    #[error("results not written: rendering {file}: {source}")]
    Render {
        file: &'static str,
        #[source]
        source: serde_json::Error,
    },
    /// The writer's mailbox or thread failed.
    #[error("results not written to {dir}: the results writer failed: {why}")]
    Writer { dir: String, why: String },
}

/// The file whose presence marks a run folder complete: written last, after every other file
/// is durable.
pub const SUMMARY: &str = "summary.json";

/// Writes `files` into `dir`, each atomically ([`journal::write_atomic`]), in order, with
/// [`SUMMARY`] last whatever its place in `files`. A `summary.json` already there goes first, so
/// the folder is never marked complete by an older one. Files written before a failure stay, each
/// whole; the failure is the error, and `summary.json` is absent.
pub fn write_files(dir: &Path, files: &[(&str, Vec<u8>)]) -> Result<(), ResultsError> {
    std::fs::create_dir_all(dir).map_err(FileError::at(dir, Step::CreateFolder))?;
    let summary = dir.join(SUMMARY);
    journal::remove(&summary)?;
    let (last, rest): (Vec<_>, Vec<_>) = files.iter().partition(|(name, _)| *name == SUMMARY);
    for (name, bytes) in rest.into_iter().chain(last) {
        journal::write_atomic(&dir.join(name), bytes)?;
    }
    // The run folder's own entry in the results folder.
    if let Some(parent) = dir.parent() {
        journal::sync_folder(parent).map_err(FileError::at(dir, Step::SyncFolder))?;
    }
    Ok(())
}

#[derive(Message)]
#[rtype(result = "Result<PathBuf, ResultsError>")]
pub struct WriteResults(pub FinalResult);

pub struct ResultsWriter {
    bus: RunBus,
    dir: PathBuf,
    spec: Spec,
    spec_text: String,
    /// The baseline the run was judged against: the report's delta table.
    baseline: Option<std::sync::Arc<super::baseline::Baseline>>,
}

fn json<T: serde::Serialize>(file: &'static str, v: &T) -> Result<Vec<u8>, ResultsError> {
    serde_json::to_vec_pretty(v).map_err(|source| ResultsError::Render { file, source })
}

impl ResultsWriter {
    pub fn new(bus: RunBus, dir: PathBuf, spec: Spec, spec_text: String) -> ResultsWriter {
        ResultsWriter {
            bus,
            dir,
            spec,
            spec_text,
            baseline: None,
        }
    }

    /// The report compares the run with this baseline (its summary: the delta table).
    pub fn with_baseline(
        mut self,
        b: Option<std::sync::Arc<super::baseline::Baseline>>,
    ) -> ResultsWriter {
        self.baseline = b;
        self
    }

    /// Every file rendered before any is written, `summary.json` last.
    fn render(&self, r: &FinalResult) -> Result<Vec<(&'static str, Vec<u8>)>, ResultsError> {
        let series = json("timeseries.json", &r.rows)?;
        let summary = r.summary();
        let report = {
            let s = serde_json::to_value(&summary).map_err(|source| ResultsError::Render {
                file: "report.html",
                source,
            })?;
            let rows = serde_json::to_value(&r.rows).map_err(|source| ResultsError::Render {
                file: "report.html",
                source,
            })?;
            let rows = rows.as_array().cloned().unwrap_or_default();
            crate::report::render(
                &crate::report::RunDocs {
                    summary: &s,
                    series: &rows,
                },
                self.baseline
                    .as_ref()
                    .map(|b| crate::report::RunDocs {
                        summary: b.summary(),
                        series: b.series(),
                    })
                    .as_ref(),
            )
        };
        Ok(vec![
            (
                "timeseries.csv",
                timeseries_csv(&r.rows, r.start_at_ms).into_bytes(),
            ),
            ("timeseries.json", series),
            ("report.html", report.into_bytes()),
            ("junit.xml", junit(r).into_bytes()),
            ("spec.yaml", self.spec_text.clone().into_bytes()),
            (
                "spec.json",
                json(
                    "spec.json",
                    &messages::spec::as_run(&self.spec_text, &self.spec, &AS_RUN_LIMITS)
                        .unwrap_or_default(),
                )?,
            ),
            (SUMMARY, json(SUMMARY, &summary)?),
        ])
    }
}

/// Reading a spec again for `spec.json`: it was read within its run's limits already; only the
/// nesting stays bounded (the conversion recurses once per level).
const AS_RUN_LIMITS: messages::spec::SpecLimits = messages::spec::SpecLimits {
    yaml_nodes: usize::MAX,
    yaml_bytes: usize::MAX,
    ..messages::spec::SpecLimits::DEFAULT
};

impl Actor for ResultsWriter {
    type Context = Context<Self>;
}

impl Handler<WriteResults> for ResultsWriter {
    type Result = ResponseFuture<Result<PathBuf, ResultsError>>;

    /// Renders, writes on a blocking thread (fsyncs must not stall the runs sharing this
    /// thread), then publishes — only a durable result is announced.
    fn handle(&mut self, msg: WriteResults, _ctx: &mut Context<Self>) -> Self::Result {
        let rendered = self.render(&msg.0);
        let (dir, bus, run_id) = (self.dir.clone(), self.bus.clone(), msg.0.run_id);
        Box::pin(async move {
            let files = rendered?;
            let at = dir.clone();
            let files =
                tokio::task::spawn_blocking(move || write_files(&at, &files).map(|()| files))
                    .await
                    .map_err(|e| ResultsError::Writer {
                        dir: dir.display().to_string(),
                        why: e.to_string(),
                    })??;
            // Retained: a dashboard or pipeline that subscribes later still gets the verdict.
            if let Some((_, summary)) = files.into_iter().find(|(name, _)| *name == SUMMARY) {
                bus.publish(
                    messages::topics::result(&run_id),
                    summary,
                    QoS::AtLeastOnce,
                    true,
                );
            }
            Ok(dir)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::file::tests::names;

    fn files() -> Vec<(&'static str, Vec<u8>)> {
        vec![
            (SUMMARY, b"{\"state\":\"completed\"}".to_vec()),
            ("timeseries.csv", b"second,label\n".to_vec()),
            ("spec.json", b"{}".to_vec()),
        ]
    }

    #[test]
    fn every_file_is_written_and_the_folder_made() {
        let d = tempfile::tempdir().expect("temp dir");
        let run = d.path().join("run-1");
        write_files(&run, &files()).expect("written");
        assert_eq!(names(&run), ["spec.json", SUMMARY, "timeseries.csv"]);
        assert_eq!(
            std::fs::read(run.join(SUMMARY)).expect("summary"),
            b"{\"state\":\"completed\"}"
        );
    }

    #[test]
    fn a_failure_before_the_summary_leaves_no_summary_and_names_the_file() {
        let d = tempfile::tempdir().expect("temp dir");
        let run = d.path().join("run-1");
        // A folder where spec.json should go: its rename fails, as a full disk would fail a write.
        std::fs::create_dir_all(run.join("spec.json")).expect("in the way");
        let e = write_files(&run, &files()).expect_err("spec.json cannot be written");
        let text = e.to_string();
        assert!(
            text.starts_with("results not written: renaming into place")
                && text.contains("spec.json"),
            "{text}"
        );
        // Summary listed first, written last: never there without the rest.
        assert_eq!(names(&run), ["spec.json", "timeseries.csv"]);
    }

    #[test]
    fn an_older_summary_is_gone_once_a_rewrite_fails() {
        let d = tempfile::tempdir().expect("temp dir");
        let run = d.path().join("run-1");
        write_files(&run, &files()).expect("written");
        std::fs::remove_file(run.join("spec.json")).expect("rm");
        std::fs::create_dir(run.join("spec.json")).expect("in the way");
        write_files(&run, &files()).expect_err("fails");
        assert!(!run.join(SUMMARY).exists());
    }
}
