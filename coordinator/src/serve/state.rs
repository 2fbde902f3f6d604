//! `herd serve`'s state folder: what it must find again after a crash or a restart.
//!
//! ```text
//! <state>/identity.json        the coordinator's keys (owner-only): resumed runs' agents check them
//! <state>/broker.json          the embedded broker's port: agents reconnect to it
//! <state>/runs/<run>/plan.bin  the run as accepted — written before intake is acknowledged
//!                  events.log  the state machine's events (run::durable)
//!                  batches.log the batches the fold accepted (run::durable)
//!                  notified.done RunCompleted sent: the run is over; logs are dropped, the
//!                                plan kept for the idempotency window
//! ```
//!
//! A run without `notified.done` is unfinished: on start `herd serve` resumes it.

use std::path::{Path, PathBuf};

use messages::policy::TargetPolicy;
use messages::spec::Spec;
use messages::wire::DataFile;
use serde::{Deserialize, Serialize};

use crate::identity::{Identity, IdentityError};
use crate::journal::{write_atomic, FileError};

/// How long a finished run's plan is kept, so a late redelivery of its request is still one run.
pub const KEEP_FINISHED_S: u64 = 14 * 24 * 3600;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Decode { path: String, reason: String },
    /// A file that could not be written whole (it names itself).
    #[error(transparent)]
    File(#[from] FileError),
    #[error(transparent)]
    Identity(#[from] IdentityError),
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> StateError + '_ {
    move |source| StateError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// A run as accepted: everything needed to run it again from its journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub run_id: String,
    pub idempotency_key: String,
    /// Where the request came from.
    pub source: String,
    pub correlation_id: Option<String>,
    /// The spec as run, and as written.
    pub spec: Spec,
    pub spec_text: String,
    pub data: Vec<DataFile>,
    pub agents: u32,
    /// The run's results folder.
    pub dir: PathBuf,
    pub accepted_at_ms: u64,
    pub late_window_s: u64,
    pub policy: TargetPolicy,
    /// The spec's baseline run's `summary.json`, if the spec has one: kept with the run, so a
    /// resumed run is judged (and its report drawn) against the same one.
    pub baseline_summary: Option<String>,
}

/// A request already made into a run: (idempotency key, run id).
pub type KnownRequest = (String, String);

/// What a restart finds of an unfinished run.
pub struct Unfinished {
    pub record: RunRecord,
    pub dir: PathBuf,
}

pub struct StateDir {
    root: PathBuf,
}

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

impl StateDir {
    pub fn open(root: &Path) -> Result<StateDir, StateError> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(root.join("runs"))
            .map_err(io(root))?;
        Ok(StateDir {
            root: root.to_path_buf(),
        })
    }

    pub fn identity(&self) -> Result<Identity, StateError> {
        Ok(Identity::load_or_create(&self.root.join("identity.json"))?)
    }

    /// The port the embedded broker had, if it had one.
    pub fn broker_port(&self) -> Option<u16> {
        let text = std::fs::read_to_string(self.root.join("broker.json")).ok()?;
        let v: serde_json::Value = serde_json::from_str(&text).ok()?;
        v["port"].as_u64().and_then(|p| u16::try_from(p).ok())
    }

    pub fn keep_broker_port(&self, port: u16) -> Result<(), StateError> {
        let path = self.root.join("broker.json");
        Ok(write_atomic(
            &path,
            format!("{{\"port\":{port}}}\n").as_bytes(),
        )?)
    }

    /// A run's journal folder.
    pub fn run_dir(&self, run: &str) -> PathBuf {
        self.root.join("runs").join(run)
    }

    /// Keeps `record` durably; returns the run's journal folder. Intake may be acknowledged
    /// (inbox file moved, SQS message deleted) only after this returns.
    pub fn accept(&self, record: &RunRecord) -> Result<PathBuf, StateError> {
        let dir = self.run_dir(&record.run_id);
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let bytes =
            bincode::serde::encode_to_vec(record, config()).map_err(|e| StateError::Decode {
                path: dir.display().to_string(),
                reason: e.to_string(),
            })?;
        write_atomic(&dir.join("plan.bin"), &bytes)?;
        Ok(dir)
    }

    fn mark(&self, run: &str, name: &str) -> Result<(), StateError> {
        let path = self.run_dir(run).join(name);
        Ok(write_atomic(&path, b"")?)
    }

    /// The run is over: its `RunCompleted` left. Its logs go; its plan stays for
    /// [`KEEP_FINISHED_S`] so a redelivered request is still recognised.
    pub fn mark_notified(&self, run: &str) -> Result<(), StateError> {
        self.mark(run, "notified.done")?;
        let dir = self.run_dir(run);
        for log in ["events.log", "batches.log"] {
            let _ = std::fs::remove_file(dir.join(log));
        }
        Ok(())
    }

    /// Forgets an accepted run that never got going (it could not be launched): its request may
    /// come again.
    pub fn forget(&self, run: &str) {
        let _ = std::fs::remove_dir_all(self.run_dir(run));
    }

    fn record_of(dir: &Path) -> Result<RunRecord, StateError> {
        let plan = dir.join("plan.bin");
        let bytes = std::fs::read(&plan).map_err(io(&plan))?;
        bincode::serde::decode_from_slice::<RunRecord, _>(&bytes, config())
            .map(|(r, _)| r)
            .map_err(|e| StateError::Decode {
                path: plan.display().to_string(),
                reason: e.to_string(),
            })
    }

    /// Every run folder: (idempotency key, run id, finished?). Finished runs older than
    /// [`KEEP_FINISHED_S`] are removed on the way.
    pub fn scan(&self, now_ms: u64) -> Result<(Vec<Unfinished>, Vec<KnownRequest>), StateError> {
        let runs = self.root.join("runs");
        let mut unfinished = Vec::new();
        let mut keys = Vec::new();
        for e in std::fs::read_dir(&runs).map_err(io(&runs))?.flatten() {
            let dir = e.path();
            if !dir.is_dir() {
                continue;
            }
            let record = match StateDir::record_of(&dir) {
                Ok(r) => r,
                Err(err) => {
                    // Accepted but never completely written (a crash inside `accept`): intake
                    // was not acknowledged, so the request comes again.
                    tracing::warn!(error = %err, "dropping a run folder without a readable plan");
                    let _ = std::fs::remove_dir_all(&dir);
                    continue;
                }
            };
            let notified = dir.join("notified.done").exists();
            let age_s = now_ms.saturating_sub(record.accepted_at_ms) / 1000;
            if notified && age_s > KEEP_FINISHED_S {
                let _ = std::fs::remove_dir_all(&dir);
                continue;
            }
            keys.push((record.idempotency_key.clone(), record.run_id.clone()));
            if !notified {
                unfinished.push(Unfinished { record, dir });
            }
        }
        unfinished.sort_by_key(|u| u.record.accepted_at_ms);
        Ok((unfinished, keys))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(run: &str, accepted_at_ms: u64) -> RunRecord {
        let spec = messages::parse_spec(
            "name: s\ntarget: http://127.0.0.1:1\nscenario:\n  - request: GET /\nload: {executor: constant-vus, vus: 1, duration: 1s}\n",
        )
        .expect("spec");
        RunRecord {
            run_id: run.into(),
            idempotency_key: format!("key-{run}"),
            source: "inbox/s.yaml".into(),
            correlation_id: None,
            spec,
            spec_text: "name: s".into(),
            data: vec![DataFile {
                name: "users".into(),
                bytes: b"name\nada\n".to_vec(),
            }],
            agents: 2,
            dir: PathBuf::from("/results/s-1"),
            accepted_at_ms,
            late_window_s: 10,
            policy: TargetPolicy::default(),
            baseline_summary: Some("{\"run\": \"base\"}".into()),
        }
    }

    #[test]
    fn accepted_runs_come_back_until_notified_and_keys_until_they_expire() {
        let dir = tempfile::tempdir().expect("dir");
        let state = StateDir::open(dir.path()).expect("open");
        state.accept(&record("a", 1_000)).expect("a");
        state.accept(&record("b", 2_000)).expect("b");
        let (unfinished, keys) = state.scan(3_000).expect("scan");
        assert_eq!(unfinished.len(), 2);
        assert_eq!(unfinished[0].record, record("a", 1_000));
        assert_eq!(unfinished[1].record, record("b", 2_000), "oldest first");
        assert_eq!(keys.len(), 2);
        state.mark_notified("a").expect("notified");
        let (unfinished, keys) = state.scan(3_000).expect("scan");
        assert_eq!(unfinished.len(), 1, "a is over");
        assert!(
            keys.contains(&("key-a".into(), "a".into())),
            "still a known request"
        );
        let later = 1_000 + (KEEP_FINISHED_S + 1) * 1000;
        let (_, keys) = state.scan(later).expect("scan");
        assert!(!keys.iter().any(|(k, _)| k == "key-a"), "expired");
        // A folder whose plan never got written is dropped, not resumed.
        std::fs::create_dir_all(dir.path().join("runs/torn")).expect("dir");
        let (unfinished, _) = state.scan(3_000).expect("scan");
        assert!(unfinished.iter().all(|u| u.record.run_id != "torn"));
        assert!(!dir.path().join("runs/torn").exists());
    }

    #[test]
    fn the_broker_port_is_kept() {
        let dir = tempfile::tempdir().expect("dir");
        let state = StateDir::open(dir.path()).expect("open");
        assert_eq!(state.broker_port(), None);
        state.keep_broker_port(41234).expect("keep");
        assert_eq!(state.broker_port(), Some(41234));
    }
}
