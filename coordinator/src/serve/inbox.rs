//! `Inbox`: the local twin of the spec bucket. A spec file (`.yaml`, `.yml`, `.json`) written
//! into the folder starts a run the same way an S3 object does. A file is taken once its size
//! has stopped changing (so a half-written file is not read). It stays where it is until the
//! registry has made it a run and kept that run durably; only then is it moved to `.accepted/`
//! (or — with its errors next to it — to `.rejected/`). A crash in between leaves the file in
//! the inbox, and its idempotency key (name, size, mtime, inode) makes the second look at it the
//! same run, not a new one: intake is at least once, the effect exactly once.

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
    /// Files being handed to the registry right now.
    taking: std::collections::HashSet<PathBuf>,
    /// Files whose hand-over failed for a reason that may pass, and when to try again.
    retry_at: HashMap<PathBuf, std::time::Instant>,
}

/// How long a file whose hand-over failed waits before the next try.
const RETRY_AFTER: Duration = Duration::from_secs(5);

impl Inbox {
    pub fn new(dir: PathBuf, runs: Addr<Runs>) -> Inbox {
        Inbox {
            dir,
            runs,
            sizes: HashMap::new(),
            taking: Default::default(),
            retry_at: HashMap::new(),
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
            if !is_spec || hidden || !p.is_file() || self.taking.contains(&p) {
                continue;
            }
            if self
                .retry_at
                .get(&p)
                .is_some_and(|t| std::time::Instant::now() < *t)
            {
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
                me.taking.insert(path.clone());
                let p = path.clone();
                ctx.spawn(take(path, runs).into_actor(me).map(move |done, me, _| {
                    me.taking.remove(&p);
                    if done {
                        me.retry_at.remove(&p);
                    } else {
                        me.retry_at
                            .insert(p, std::time::Instant::now() + RETRY_AFTER);
                    }
                }));
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

/// The same file, as long as nobody rewrote it: the key survives a restart of `herd serve`.
fn identity_of(path: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some(format!(
        "inbox/{}/{}-{}.{}-{}",
        path.file_name()?.to_string_lossy(),
        m.size(),
        m.mtime(),
        m.mtime_nsec(),
        m.ino()
    ))
}

/// Hands `path` to the registry; moves it once the registry answered for good. False when it
/// should be tried again later.
async fn take(path: PathBuf, runs: Addr<Runs>) -> bool {
    let origin = path.display().to_string();
    let Some(key) = identity_of(&path) else {
        return false;
    };
    let req = RunRequest {
        idempotency_key: key,
        spec: SpecSource::File {
            path: path.clone(),
            data_dir: path.parent().unwrap_or(Path::new(".")).to_path_buf(),
        },
        overrides: Overrides::default(),
        correlation_id: None,
        origin: origin.clone(),
    };
    let move_to = |sub: &str| {
        let to = moved(&path, sub);
        if let Err(e) = std::fs::rename(&path, &to) {
            tracing::warn!(file = %origin, error = %e, "cannot move the inbox file");
        }
        to
    };
    match runs.send(Submit(req)).await {
        Ok(Ok(Submitted::Started(run))) => {
            move_to(".accepted");
            tracing::info!(file = %origin, %run, "run started from the inbox");
            true
        }
        Ok(Ok(Submitted::Duplicate(run))) => {
            move_to(".accepted");
            tracing::info!(file = %origin, ?run, "already a run (a restart found it again)");
            true
        }
        Ok(Ok(Submitted::Rejected(errors))) => {
            let rejected = move_to(".rejected");
            let mut errs = rejected.into_os_string();
            errs.push(".errors.txt");
            let _ = std::fs::write(PathBuf::from(errs), errors.join("\n") + "\n");
            true
        }
        Ok(Err(e)) => {
            tracing::error!(file = %origin, error = %e, "the run could not start; trying again later");
            false
        }
        Err(e) => {
            tracing::error!(error = %e, "run registry unreachable");
            false
        }
    }
}
