//! When a coordinated agent gives up on its run by itself, as a plain value: no I/O, the time
//! passed in. `link.rs` feeds it every control message and sleeps until [`Watchdog::deadline`].
//!
//! - **Silence.** While a run is between its launch and its end, the coordinator publishes
//!   `Alive` on the run's control topic every second. An agent that hears none for
//!   `orphan_after` (default 30 s, counted from its connection) has lost its coordinator:
//!   before the start it leaves; during the load it stops gracefully, as on a `Stop`.
//! - **Ceiling.** Once the start is known the agent also stops at start + planned duration +
//!   graceful stop + [`OVERRUN_GRACE_MS`], Alives or not (the coordinator declares its agents
//!   overrun at the same instant), so a task never outlives its run's planned end plus grace,
//!   whatever its coordinator does.
//! - **Leave.** Once the load is stopping (a `Stop`, SIGTERM, or either of the above), its engine
//!   has the graceful stop plus [`STOP_SLACK`] to end; then the agent leaves without it
//!   (`link.rs`), so a hung tool cannot keep the task alive.
//!
//! An `Alive` counts only if it is of this run and comes after the last one counted, by (epoch,
//! seq): a signed one replayed later proves nothing (and could at most hold off the silence until
//! the ceiling).

use std::time::{Duration, Instant};

use messages::wire::{Body, Envelope, OVERRUN_GRACE_MS};

/// Once the load is stopping: how long past the graceful stop the engine may take to end.
/// The runners' own stop is SIGINT, SIGTERM after the graceful stop + 5 s, SIGKILL 5 s later.
pub const STOP_SLACK: Duration = Duration::from_secs(15);

/// Why an agent stopped by itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GiveUp {
    /// No `Alive` from the coordinator for this long.
    Silent { ms: u64 },
    /// The run's planned end (start + planned duration + graceful stop) plus this grace passed.
    PastPlannedEnd { grace_ms: u64 },
}

impl std::fmt::Display for GiveUp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GiveUp::Silent { ms } => write!(
                f,
                "no Alive from the coordinator for {:?} (--orphan-after): it is gone or cut off",
                Duration::from_millis(*ms)
            ),
            GiveUp::PastPlannedEnd { grace_ms } => write!(
                f,
                "the run's planned end (start + duration + graceful stop) passed {:?} ago",
                Duration::from_millis(*grace_ms)
            ),
        }
    }
}

/// Milliseconds from the start instant to the ceiling: planned duration + graceful stop +
/// [`OVERRUN_GRACE_MS`], saturating.
pub fn ceiling_after_start_ms(planned_ms: u64, graceful_stop_ms: u64) -> u64 {
    planned_ms
        .saturating_add(graceful_stop_ms)
        .saturating_add(OVERRUN_GRACE_MS)
}

#[derive(Debug, Clone)]
pub struct Watchdog {
    run: String,
    orphan_after: Duration,
    /// When the last Alive was counted (at first: when the agent connected).
    heard_at: Instant,
    /// (epoch, seq) of the last Alive counted.
    last: Option<(u64, u64)>,
    ceiling: Option<Instant>,
}

impl Watchdog {
    /// Watching from `now` (the agent just connected) for run `run`.
    pub fn new(run: &str, orphan_after: Duration, now: Instant) -> Watchdog {
        Watchdog {
            run: run.to_string(),
            orphan_after,
            heard_at: now,
            last: None,
            ceiling: None,
        }
    }

    /// Counts `env` if it is an `Alive` of this run, newer than the last one counted. Other
    /// messages are not counted (one Alive follows each within a second).
    pub fn heard(&mut self, env: &Envelope, now: Instant) -> bool {
        let Body::Alive(alive) = &env.body else {
            return false;
        };
        if env.run_id != self.run {
            return false;
        }
        let id = (alive.epoch, env.seq);
        if self.last.is_some_and(|last| id <= last) {
            return false;
        }
        self.last = Some(id);
        self.heard_at = self.heard_at.max(now);
        true
    }

    /// The load started: stop by `at` whatever is heard (start + [`ceiling_after_start_ms`]).
    pub fn ceiling_at(&mut self, at: Instant) {
        self.ceiling = Some(at);
    }

    /// The next instant [`Watchdog::check`] may say something new.
    pub fn deadline(&self) -> Instant {
        let silent = self
            .heard_at
            .checked_add(self.orphan_after)
            .unwrap_or(self.heard_at);
        match self.ceiling {
            Some(c) => c.min(silent),
            None => silent,
        }
    }

    /// Whether the agent must give up at `now`; the ceiling first, since it holds regardless.
    pub fn check(&self, now: Instant) -> Option<GiveUp> {
        if self.ceiling.is_some_and(|c| now >= c) {
            return Some(GiveUp::PastPlannedEnd {
                grace_ms: OVERRUN_GRACE_MS,
            });
        }
        let silent = now.saturating_duration_since(self.heard_at);
        (silent >= self.orphan_after).then_some(GiveUp::Silent {
            ms: self.orphan_after.as_millis() as u64,
        })
    }
}

#[cfg(test)]
#[path = "orphan_tests.rs"]
mod tests;
