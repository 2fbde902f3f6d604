//! `[queue]`: how many runs `herd serve` runs at once (`serve::queue`), and `[schedules]`.

use serde::Deserialize;

/// Default `[queue] max_active_runs`.
pub const DEFAULT_MAX_ACTIVE: u32 = 8;
/// Default `[queue] max_queued`.
pub const DEFAULT_MAX_QUEUED: u32 = 1000;

/// `[queue]` in the serve config.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    /// Runs going at once, in all (0: no cap).
    #[serde(default = "default_active")]
    pub max_active_runs: u32,
    /// Runs of one spec name going at once (0: no cap).
    #[serde(default)]
    pub max_active_per_spec: u32,
    /// Runs waiting, at most; past it a request is refused (and comes again, from SQS).
    #[serde(default = "default_queued")]
    pub max_queued: u32,
}

fn default_active() -> u32 {
    DEFAULT_MAX_ACTIVE
}

fn default_queued() -> u32 {
    DEFAULT_MAX_QUEUED
}

impl Default for QueueConfig {
    fn default() -> QueueConfig {
        QueueConfig {
            max_active_runs: DEFAULT_MAX_ACTIVE,
            max_active_per_spec: 0,
            max_queued: DEFAULT_MAX_QUEUED,
        }
    }
}

impl QueueConfig {
    pub fn check(&self) -> Result<(), String> {
        if self.max_queued == 0 || self.max_queued > 100_000 {
            return Err(format!(
                "[queue] max_queued = {}: between 1 and 100000",
                self.max_queued
            ));
        }
        Ok(())
    }
}

/// Default `[schedules] catch_up_s`.
pub const DEFAULT_CATCH_UP_S: u64 = 3600;

/// `[schedules]` in the serve config.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SchedulesConfig {
    /// After downtime, a schedule's most recent missed occurrence still fires if it is at most
    /// this many seconds old (once, however many were missed); older ones are skipped and said
    /// so in the schedule's `last_error`. 0: never catch up.
    #[serde(default = "default_catch_up")]
    pub catch_up_s: u64,
}

fn default_catch_up() -> u64 {
    DEFAULT_CATCH_UP_S
}

impl Default for SchedulesConfig {
    fn default() -> SchedulesConfig {
        SchedulesConfig {
            catch_up_s: DEFAULT_CATCH_UP_S,
        }
    }
}
