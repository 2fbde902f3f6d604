//! One agent's share of a run, start to end: compile, start the recorder, run the executor,
//! hand every batch to `out`. Used by standalone mode and by the coordinated agent alike.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use messages::metrics::MetricBatch;
use messages::spec::Spec;
use messages::split::Share;
use rustls::pki_types::CertificateDer;
use tokio::sync::{mpsc, watch};

use crate::executor::{self, Env, Report};
use crate::http::{tls, HttpConfig};
use crate::recorder::Recorder;
use crate::scenario::{compile, CompileError};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("data file {path} of source `{name}`: {source}")]
    DataFile {
        name: String,
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Compile(#[from] CompileError),
    #[error(transparent)]
    Runner(#[from] crate::runners::RunnerError),
}

/// Reads the files the spec names (CSV feeders, a runner's script), relative to the spec's
/// folder. A runner's script may be a folder: its files travel as `@script/<path>`.
pub fn load_data(spec: &Spec, spec_dir: &Path) -> Result<BTreeMap<String, Vec<u8>>, EngineError> {
    let mut out = BTreeMap::new();
    for (name, file) in spec.files() {
        let path = spec_dir.join(&file);
        let err = |source| EngineError::DataFile {
            name: name.clone(),
            path: path.display().to_string(),
            source,
        };
        if name == messages::spec::SCRIPT_FILE && path.is_dir() {
            for (rel, bytes) in read_folder(&path).map_err(err)? {
                out.insert(format!("{name}/{rel}"), bytes);
            }
        } else if name == messages::spec::SCRIPT_FILE && file.ends_with(".zip") {
            let bytes = std::fs::read(&path).map_err(err)?;
            for (rel, bytes) in read_zip(&bytes).map_err(err)? {
                out.insert(format!("{name}/{rel}"), bytes);
            }
        } else {
            out.insert(name.clone(), std::fs::read(&path).map_err(err)?);
        }
    }
    Ok(out)
}

/// Every file in a zip archive as (relative path, bytes). Entries that would land outside the
/// folder (`../`, absolute paths) are refused, not skipped.
pub fn read_zip(bytes: &[u8]) -> std::io::Result<Vec<(String, Vec<u8>)>> {
    use std::io::Read;
    let bad = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidData, m);
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| bad(format!("not a zip archive: {e}")))?;
    let mut out = Vec::new();
    for i in 0..archive.len() {
        let mut f = archive
            .by_index(i)
            .map_err(|e| bad(format!("zip entry {i}: {e}")))?;
        if f.is_dir() {
            continue;
        }
        let Some(rel) = f.enclosed_name() else {
            return Err(bad(format!(
                "zip entry {:?} points outside the folder",
                f.name()
            )));
        };
        let rel: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        let mut data = Vec::new();
        f.read_to_end(&mut data)?;
        out.push((rel.join("/"), data));
    }
    out.sort();
    Ok(out)
}

/// Every file below `root` as (relative path with `/`, bytes), hidden entries skipped.
fn read_folder(root: &Path) -> std::io::Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir)? {
            let e = e?;
            let p = e.path();
            if e.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            if e.file_type()?.is_dir() {
                stack.push(p);
            } else if let Ok(rel) = p.strip_prefix(root) {
                let rel: Vec<String> = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                out.push((rel.join("/"), std::fs::read(&p)?));
            }
        }
    }
    out.sort();
    Ok(out)
}

pub fn http_config(spec: &Spec, extra_roots: &[CertificateDer<'static>]) -> Arc<HttpConfig> {
    let h = &spec.target.http;
    Arc::new(HttpConfig {
        version: h.version,
        timeout: Duration::from_millis(h.timeout_ms),
        connect_timeout: Duration::from_millis(h.connect_timeout_ms),
        max_redirects: h.max_redirects,
        cookies: h.cookies,
        tls: tls::client_config(h.version, h.insecure, extra_roots),
    })
}

/// Runs `share` of `spec` and sends each per-second batch to `out`. Returns when the executor
/// and the recorder are done, i.e. after the last batch was sent.
pub async fn run_share(
    spec: &Spec,
    data: &BTreeMap<String, Vec<u8>>,
    share: &Share,
    run_id: &str,
    extra_roots: &[CertificateDer<'static>],
    stop: watch::Receiver<bool>,
    out: mpsc::UnboundedSender<MetricBatch>,
) -> Result<Report, EngineError> {
    if spec.runner.is_some() {
        return Ok(crate::runners::run_share(spec, data, share, run_id, stop, out).await?);
    }
    let plan = Arc::new(compile(spec, data, run_id, share.index, share.count)?);
    let recorder = Recorder::new(share.index, plan.labels.clone(), out);
    let env = Env {
        plan,
        http: http_config(spec, extra_roots),
        recorder: recorder.handle(),
        vu_offset: share.vu_offset,
        graceful_stop: Duration::from_millis(spec.load.graceful_stop_ms),
    };
    let rec = tokio::spawn(recorder.run());
    let report = executor::run(&share.executor, env, stop).await;
    // Every buffer and handle is gone now, so the recorder drains and ends.
    if let Err(e) = rec.await {
        tracing::error!(error = %e, "recorder task failed");
    }
    Ok(report)
}

#[cfg(test)]
mod zip_tests {
    use super::read_zip;
    use std::io::Write;

    fn archive(entries: &[(&str, &str)]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        for (name, body) in entries {
            w.start_file(*name, zip::write::SimpleFileOptions::default())
                .expect("entry");
            w.write_all(body.as_bytes()).expect("write");
        }
        w.finish().expect("finish").into_inner()
    }

    #[test]
    fn zip_entries_stay_inside_the_folder() {
        let ok = read_zip(&archive(&[("main.js", "x"), ("data/a.csv", "y")])).expect("zip");
        assert_eq!(
            ok,
            vec![
                ("data/a.csv".to_string(), b"y".to_vec()),
                ("main.js".to_string(), b"x".to_vec())
            ]
        );
        let evil = read_zip(&archive(&[("../evil.js", "x")])).expect_err("zip slip");
        assert!(
            evil.to_string().contains("points outside the folder"),
            "{evil}"
        );
        assert!(read_zip(b"not a zip").is_err());
    }
}
