//! The run history: every run `herd serve` accepted, from whatever intake, and how it ended —
//! what the coming REST API (`GET /runs`, `GET /runs/{id}`) answers from.
//!
//! One trait, [`RunStore`], so the local profile's embedded SQLite file ([`sqlite`]) and a later
//! DynamoDB table are interchangeable. The history is a record, not a safeguard: the journal in
//! the state folder is what makes runs durable, so a history that cannot be written is logged
//! and counted, never a reason to stop a run.
//!
//! The trait is synchronous on purpose. SQLite is a blocking library; rather than each caller
//! guessing where blocking is allowed, `herd serve` gives its store one dedicated thread
//! (`serve::history`) that takes work in order — so a run's end is never written before its
//! acceptance, and no actix arbiter ever waits on a disk. An async backend (DynamoDB) can
//! implement it by blocking on its runtime handle from that thread.

pub mod catalog;
pub mod dynamo;
mod dynamo_catalog;
pub mod sqlite;
mod sqlite_catalog;
mod sqlite_tokens;
pub mod tokens;

#[cfg(test)]
mod conformance_tests;
#[cfg(test)]
mod sqlite_tests;

use std::time::Duration;

use messages::outcome::{EndState, Verdict};
use serde::Deserialize;

pub use dynamo::DynamoStore;
pub use sqlite::SqliteStore;
pub use tokens::{Role, TokenRecord};

/// The most rows one [`RunStore::list`] call returns: a page is built in memory.
pub const MAX_PAGE: u32 = 1000;
/// Default `[history] retention_days`.
pub const DEFAULT_RETENTION_DAYS: u32 = 90;
/// The longest retention that can be asked for (a century), so the cut-off cannot overflow.
pub const MAX_RETENTION_DAYS: u32 = 36_500;

/// `[history]` in the serve config.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HistoryConfig {
    /// Runs accepted longer ago than this are pruned (at start and once a day); 0 keeps them
    /// forever.
    #[serde(default = "default_retention")]
    pub retention_days: u32,
    /// AWS profile: keep the history in this DynamoDB table (made by the stack) instead of the
    /// SQLite file in the state folder.
    pub dynamodb_table: Option<String>,
}

fn default_retention() -> u32 {
    DEFAULT_RETENTION_DAYS
}

impl Default for HistoryConfig {
    fn default() -> HistoryConfig {
        HistoryConfig {
            retention_days: DEFAULT_RETENTION_DAYS,
            dynamodb_table: None,
        }
    }
}

impl HistoryConfig {
    /// How long rows are kept, or None to keep them forever.
    pub fn retention(&self) -> Option<Duration> {
        (self.retention_days > 0).then(|| {
            Duration::from_secs(u64::from(self.retention_days.min(MAX_RETENTION_DAYS)) * 86_400)
        })
    }

    pub fn check(&self) -> Result<(), String> {
        if self.retention_days > MAX_RETENTION_DAYS {
            return Err(format!(
                "[history] retention_days = {}: at most {MAX_RETENTION_DAYS} (0 keeps runs forever)",
                self.retention_days
            ));
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {reason}")]
    Open { path: String, reason: String },
    #[error(
        "{path}: not a herd run history ({reason}); move it away or point state_dir elsewhere"
    )]
    NotHistory { path: String, reason: String },
    #[error(
        "{path}: written by a newer herd (history schema {found}, this herd knows up to {known})"
    )]
    Newer {
        path: String,
        found: i64,
        known: i64,
    },
    #[error("{path}: {source}")]
    Sql {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("{path}: run {run_id}: {reason}")]
    Corrupt {
        path: String,
        run_id: String,
        reason: String,
    },
    #[error("run {0} is not in the history")]
    NotRecorded(String),
    #[error("{path}: token {id}: {reason}")]
    CorruptToken {
        path: String,
        id: String,
        reason: String,
    },
    #[error(
        "the history holds {} tokens already: revoke and remove some first",
        tokens::MAX_TOKENS
    )]
    TooManyTokens,
    /// A cap of the history's is reached (`catalog::MAX_*`, `tokens::MAX_TOKENS`).
    #[error("{0}")]
    Full(String),
    #[error("page limit {0}: between 1 and {MAX_PAGE}")]
    Limit(u32),
    /// The history could not be opened at start; `herd serve` runs without it.
    #[error("the run history is unavailable: {0}")]
    Unavailable(String),
}

/// Where a run is: still going, or how it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunStatus {
    /// Accepted, waiting for room under the `[queue]` caps.
    Queued,
    /// Accepted and started, not yet ended.
    Running,
    Ended(EndState),
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Ended(s) => s.as_str(),
        }
    }

    pub fn parse(s: &str) -> Option<RunStatus> {
        Some(match s {
            "queued" => RunStatus::Queued,
            "running" => RunStatus::Running,
            "completed" => RunStatus::Ended(EndState::Completed),
            "failed" => RunStatus::Ended(EndState::Failed),
            "cancelled" => RunStatus::Ended(EndState::Cancelled),
            _ => return None,
        })
    }
}

pub fn verdict_str(v: Verdict) -> &'static str {
    match v {
        Verdict::Passed => "passed",
        Verdict::Failed => "failed",
    }
}

pub fn parse_verdict(s: &str) -> Option<Verdict> {
    match s {
        "passed" => Some(Verdict::Passed),
        "failed" => Some(Verdict::Failed),
        _ => None,
    }
}

/// A run as accepted.
#[derive(Debug, Clone, PartialEq)]
pub struct Accepted {
    pub run_id: String,
    /// The spec's `name`.
    pub spec: String,
    /// Where the request came from (inbox file, `s3://…` object, pipeline event).
    pub source: String,
    pub correlation_id: Option<String>,
    pub accepted_at_ms: u64,
    pub agents: u32,
    /// The spec as written: the version this run ran.
    pub spec_text: String,
}

/// How a run ended: the numbers of its `RunCompleted`, and its `summary.json` as JSON text.
#[derive(Debug, Clone, PartialEq)]
pub struct Finished {
    pub run_id: String,
    pub ended_at_ms: u64,
    pub state: EndState,
    pub reason: Option<String>,
    pub verdict: Verdict,
    pub requests: u64,
    pub errors: u64,
    pub rps: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub agents_lost: u32,
    /// Where the result files are, or why there are none: exactly one is set.
    pub results: Option<String>,
    pub results_error: Option<String>,
    pub summary: String,
}

/// One run in the history.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRow {
    pub accepted: Accepted,
    pub status: RunStatus,
    /// None while the run is going.
    pub finished: Option<Finished>,
}

/// Which runs [`RunStore::list`] returns, newest accepted first. Every set field must match.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunFilter {
    pub spec: Option<String>,
    pub status: Option<RunStatus>,
    pub verdict: Option<Verdict>,
    /// Accepted at or after this instant (ms since the epoch).
    pub accepted_from_ms: Option<u64>,
    /// Accepted before this instant.
    pub accepted_before_ms: Option<u64>,
}

/// Where the next page starts: just after the last row of the previous one. A position rather
/// than an offset, so runs accepted while a client pages do not shift what it sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub accepted_at_ms: u64,
    pub run_id: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub rows: Vec<RunRow>,
    /// Set when more rows may follow.
    pub next: Option<Cursor>,
}

pub trait RunStore: Send {
    /// Keeps a run as accepted. A run already there (a resumed run) is left as it is.
    fn record_accepted(&self, run: &Accepted) -> Result<(), StoreError>;
    /// A run not yet ended is now `queued` or `running`.
    fn record_status(&self, run_id: &str, status: RunStatus) -> Result<(), StoreError>;
    /// Keeps how a run ended; the run must have been recorded as accepted.
    fn record_ended(&self, run: &Finished) -> Result<(), StoreError>;
    fn get(&self, run_id: &str) -> Result<Option<RunRow>, StoreError>;
    /// At most `limit` (1..=[`MAX_PAGE`]) runs matching `filter`, after `after`.
    fn list(
        &self,
        filter: &RunFilter,
        after: Option<&Cursor>,
        limit: u32,
    ) -> Result<Page, StoreError>;
    /// Removes the runs accepted before `cutoff_ms`; answers how many.
    fn prune(&self, cutoff_ms: u64) -> Result<u64, StoreError>;
    /// Keeps `text` as the next version of spec `name` (the latest, unchanged, if the same).
    fn put_spec(
        &self,
        name: &str,
        text: &str,
        by: &str,
        at_ms: u64,
    ) -> Result<catalog::SpecVersion, StoreError>;
    /// A version of a stored spec; the latest when `version` is None.
    fn spec(
        &self,
        name: &str,
        version: Option<u32>,
    ) -> Result<Option<catalog::SpecVersion>, StoreError>;
    /// Every version of a spec, newest first, without texts.
    fn spec_versions(&self, name: &str) -> Result<Vec<catalog::SpecVersion>, StoreError>;
    fn specs(&self) -> Result<Vec<catalog::SpecEntry>, StoreError>;
    fn set_baseline(&self, b: &catalog::Baseline) -> Result<(), StoreError>;
    fn baseline(&self, spec: &str) -> Result<Option<catalog::Baseline>, StoreError>;
    fn add_schedule(&self, s: &catalog::Schedule) -> Result<(), StoreError>;
    fn schedules(&self) -> Result<Vec<catalog::Schedule>, StoreError>;
    fn remove_schedule(&self, id: &str) -> Result<bool, StoreError>;
    fn set_schedule_enabled(&self, id: &str, enabled: bool) -> Result<bool, StoreError>;
    /// A schedule fired the occurrence at `at_ms` (with `error` if no run came of it).
    fn record_fired(
        &self,
        id: &str,
        at_ms: u64,
        error: Option<&str>,
        still_enabled: bool,
    ) -> Result<(), StoreError>;
    /// Keeps a new API token's record (at most [`tokens::MAX_TOKENS`]).
    fn create_token(&self, token: &TokenRecord) -> Result<(), StoreError>;
    fn token(&self, id: &str) -> Result<Option<TokenRecord>, StoreError>;
    /// Every token, newest first.
    fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError>;
    /// Revokes a token from `at_ms` on; answers whether a live one was found.
    fn revoke_token(&self, id: &str, at_ms: u64) -> Result<bool, StoreError>;
}

/// The history `herd serve` runs with when its file could not be opened (not SQLite, not
/// herd's, from a newer herd): every call fails saying why, so each write is logged and counted
/// — and the runs themselves, whose durability is the journal's, go on and resume as ever.
pub struct Unavailable(pub String);

impl RunStore for Unavailable {
    fn record_accepted(&self, _run: &Accepted) -> Result<(), StoreError> {
        Err(StoreError::Unavailable(self.0.clone()))
    }
    fn record_ended(&self, _run: &Finished) -> Result<(), StoreError> {
        Err(StoreError::Unavailable(self.0.clone()))
    }
    fn record_status(&self, _run_id: &str, _status: RunStatus) -> Result<(), StoreError> {
        Err(StoreError::Unavailable(self.0.clone()))
    }
    fn get(&self, _run_id: &str) -> Result<Option<RunRow>, StoreError> {
        Err(StoreError::Unavailable(self.0.clone()))
    }
    fn list(
        &self,
        _filter: &RunFilter,
        _after: Option<&Cursor>,
        _limit: u32,
    ) -> Result<Page, StoreError> {
        Err(StoreError::Unavailable(self.0.clone()))
    }
    fn prune(&self, _cutoff_ms: u64) -> Result<u64, StoreError> {
        Err(StoreError::Unavailable(self.0.clone()))
    }
    fn create_token(&self, _token: &TokenRecord) -> Result<(), StoreError> {
        Err(StoreError::Unavailable(self.0.clone()))
    }
    fn put_spec(
        &self,
        _name: &str,
        _text: &str,
        _by: &str,
        _at_ms: u64,
    ) -> Result<catalog::SpecVersion, StoreError> {
        Err(StoreError::Unavailable(self.0.clone()))
    }
    fn spec(
        &self,
        _name: &str,
        _version: Option<u32>,
    ) -> Result<Option<catalog::SpecVersion>, StoreError> {
        Err(StoreError::Unavailable(self.0.clone()))
    }
    fn spec_versions(&self, _name: &str) -> Result<Vec<catalog::SpecVersion>, StoreError> {
        Err(StoreError::Unavailable(self.0.clone()))
    }
    fn specs(&self) -> Result<Vec<catalog::SpecEntry>, StoreError> {
        Err(StoreError::Unavailable(self.0.clone()))
    }
    fn set_baseline(&self, _b: &catalog::Baseline) -> Result<(), StoreError> {
        Err(StoreError::Unavailable(self.0.clone()))
    }
    fn baseline(&self, _spec: &str) -> Result<Option<catalog::Baseline>, StoreError> {
        Err(StoreError::Unavailable(self.0.clone()))
    }
    fn add_schedule(&self, _s: &catalog::Schedule) -> Result<(), StoreError> {
        Err(StoreError::Unavailable(self.0.clone()))
    }
    fn schedules(&self) -> Result<Vec<catalog::Schedule>, StoreError> {
        Err(StoreError::Unavailable(self.0.clone()))
    }
    fn remove_schedule(&self, _id: &str) -> Result<bool, StoreError> {
        Err(StoreError::Unavailable(self.0.clone()))
    }
    fn set_schedule_enabled(&self, _id: &str, _enabled: bool) -> Result<bool, StoreError> {
        Err(StoreError::Unavailable(self.0.clone()))
    }
    fn record_fired(
        &self,
        _id: &str,
        _at_ms: u64,
        _error: Option<&str>,
        _still_enabled: bool,
    ) -> Result<(), StoreError> {
        Err(StoreError::Unavailable(self.0.clone()))
    }
    fn token(&self, _id: &str) -> Result<Option<TokenRecord>, StoreError> {
        Err(StoreError::Unavailable(self.0.clone()))
    }
    fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        Err(StoreError::Unavailable(self.0.clone()))
    }
    fn revoke_token(&self, _id: &str, _at_ms: u64) -> Result<bool, StoreError> {
        Err(StoreError::Unavailable(self.0.clone()))
    }
}
