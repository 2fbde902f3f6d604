//! What the history keeps beside runs: stored specs and their versions, each spec's baseline
//! run, and schedules. Plain records; the rules they obey (a version is immutable, a baseline
//! is a completed run of its spec, a schedule's cron parses) are checked where they are made.

/// Spec names the history holds, at most.
pub const MAX_SPECS: usize = 1000;
/// Versions of one spec, at most: a spec changed more often belongs in version control.
pub const MAX_VERSIONS: u32 = 1000;
/// Schedules, at most.
pub const MAX_SCHEDULES: usize = 1000;

/// One version of a stored spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecVersion {
    pub name: String,
    /// 1, 2, …: each `PUT` of a different text makes the next.
    pub version: u32,
    pub text: String,
    pub created_at_ms: u64,
    /// The token name that stored it.
    pub created_by: String,
}

/// A stored spec's latest version and baseline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecEntry {
    pub name: String,
    pub latest: u32,
    pub updated_at_ms: u64,
    pub baseline: Option<String>,
}

/// The run a spec's later runs are compared with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Baseline {
    pub spec: String,
    pub run_id: String,
    pub set_at_ms: u64,
    pub set_by: String,
}

/// When a schedule fires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum When {
    /// Once, at this instant (ms since the epoch).
    Once(u64),
    /// A five-field cron expression, read in `timezone`.
    Cron(String),
}

/// What a schedule runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScheduledSpec {
    /// The latest version of a stored spec, at each firing.
    Stored(String),
    /// This text.
    Inline(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    pub id: String,
    pub name: String,
    pub spec: ScheduledSpec,
    pub when: When,
    /// An IANA zone (`Europe/Paris`); `UTC` by default.
    pub timezone: String,
    pub enabled: bool,
    pub created_at_ms: u64,
    pub created_by: String,
    /// The occurrence last fired (its scheduled instant), if any.
    pub last_fired_ms: Option<u64>,
    /// Why the last firing did not make a run, if it did not.
    pub last_error: Option<String>,
}
