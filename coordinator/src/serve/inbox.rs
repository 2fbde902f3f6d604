//! `Inbox`: the local twin of the spec bucket. A spec file (`.yaml`, `.yml`, `.json`) written
//! into the folder starts a run the same way an S3 object does. A file is taken once its size
//! has stopped changing (so a half-written file is not read), moved to `.accepted/` or — with
//! its errors next to it — to `.rejected/`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use actix::prelude::*;

use super::registry::{Runs, Submit, Submitted};
use crate::bundle::Overrides;
use crate::request::{RunRequest, SpecSource};

pub struct Inbox {
    dir: PathBuf,
    runs: Addr<Runs>,
    /// Size seen at the previous scan, per file.
    sizes: HashMap<PathBuf, u64>,
}

impl Inbox {
    pub fn new(dir: PathBuf, runs: Addr<Runs>) -> Inbox {
        Inbox {
            dir,
            runs,
            sizes: HashMap::new(),
        }
    }

    fn scan(&mut self) -> Vec<PathBuf> {
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut ready = Vec::new();
        let mut now = HashMap::new();
        for e in rd.flatten() {
            let p = e.path();
            let is_spec = p
                .extension()
                .and_then(|x| x.to_str())
                .is_some_and(|x| matches!(x, "yaml" | "yml" | "json"));
            let hidden = p
                .file_name()
                .and_then(|n| n.to_str())
                .is_none_or(|n| n.starts_with('.'));
            if !is_spec || hidden || !p.is_file() {
                continue;
            }
            let size = e.metadata().map(|m| m.len()).unwrap_or(0);
            if self.sizes.get(&p) == Some(&size) {
                ready.push(p.clone());
            } else {
                now.insert(p, size);
            }
        }
        self.sizes = now;
        ready
    }
}

impl Actor for Inbox {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        for sub in [".accepted", ".rejected"] {
            if let Err(e) = std::fs::create_dir_all(self.dir.join(sub)) {
                tracing::error!(dir = %self.dir.display(), error = %e, "cannot prepare the inbox");
            }
        }
        tracing::info!(dir = %self.dir.display(), "watching the inbox for specs");
        ctx.run_interval(Duration::from_millis(300), |me, ctx| {
            for path in me.scan() {
                let runs = me.runs.clone();
                ctx.spawn(take(path, runs).into_actor(me));
            }
        });
    }
}

fn moved(path: &Path, sub: &str) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let parent = path.parent().unwrap_or(Path::new("."));
    parent
        .join(sub)
        .join(format!("{}-{name}", crate::clock::stamp()))
}

async fn take(path: PathBuf, runs: Addr<Runs>) {
    let origin = path.display().to_string();
    // Move first: the file is ours, and a second scan cannot take it again.
    let taken = moved(&path, ".accepted");
    if let Err(e) = std::fs::rename(&path, &taken) {
        tracing::warn!(file = %origin, error = %e, "cannot take the inbox file");
        return;
    }
    let req = RunRequest {
        idempotency_key: format!("inbox/{}", taken.display()),
        spec: SpecSource::File {
            path: taken.clone(),
            data_dir: path.parent().unwrap_or(Path::new(".")).to_path_buf(),
        },
        overrides: Overrides::default(),
        correlation_id: None,
        origin: origin.clone(),
    };
    match runs.send(Submit(req)).await {
        Ok(Ok(Submitted::Started(run))) => {
            tracing::info!(file = %origin, %run, "run started from the inbox")
        }
        Ok(Ok(Submitted::Rejected(errors))) => {
            let rejected = moved(&path, ".rejected");
            let _ = std::fs::rename(&taken, &rejected);
            let mut errs = rejected.clone().into_os_string();
            errs.push(".errors.txt");
            let _ = std::fs::write(PathBuf::from(errs), errors.join("\n") + "\n");
        }
        Ok(Ok(Submitted::Duplicate(_))) => {}
        Ok(Err(e)) => tracing::error!(file = %origin, error = %e, "the run could not start"),
        Err(e) => tracing::error!(error = %e, "run registry unreachable"),
    }
}
