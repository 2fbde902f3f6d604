//! `herd report RUN_DIR [--baseline DIR] [-o FILE]`: a run folder's `report.html` (again, or
//! against a baseline run's folder).

use std::path::Path;

use anyhow::Context as _;
use serde_json::Value;

use crate::exit::Exit;
use crate::report::{render, RunDocs};

/// The largest `summary.json` or `timeseries.json` read (a week-long run's series fits).
const MAX_DOC_BYTES: u64 = 512 << 20;

fn read(dir: &Path, name: &str) -> Result<Value, String> {
    let p = dir.join(name);
    let meta = std::fs::metadata(&p).map_err(|e| format!("{}: {e}", p.display()))?;
    if meta.len() > MAX_DOC_BYTES {
        return Err(format!(
            "{}: larger than {MAX_DOC_BYTES} bytes",
            p.display()
        ));
    }
    let text = std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: not JSON: {e}", p.display()))
}

fn docs(dir: &Path) -> Result<(Value, Vec<Value>), String> {
    let summary = read(dir, crate::run::results::SUMMARY)?;
    let series = match read(dir, "timeseries.json")? {
        Value::Array(rows) => rows,
        _ => {
            return Err(format!(
                "{}: not a list of seconds",
                dir.join("timeseries.json").display()
            ))
        }
    };
    Ok((summary, series))
}

pub fn run(dir: &Path, baseline: Option<&Path>, out: Option<&Path>) -> anyhow::Result<Exit> {
    let (summary, series) = match docs(dir) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("herd report: {e}");
            return Ok(Exit::Invalid);
        }
    };
    let base = match baseline.map(docs).transpose() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("herd report: --baseline: {e}");
            return Ok(Exit::Invalid);
        }
    };
    let html = render(
        &RunDocs {
            summary: &summary,
            series: &series,
        },
        base.as_ref()
            .map(|(s, r)| RunDocs {
                summary: s,
                series: r,
            })
            .as_ref(),
    );
    let out = out.map_or_else(|| dir.join("report.html"), Path::to_path_buf);
    let tmp = out.with_extension("html.tmp");
    std::fs::write(&tmp, html).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &out).with_context(|| format!("writing {}", out.display()))?;
    println!("{}", out.display());
    Ok(Exit::Ok)
}
