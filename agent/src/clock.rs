//! The agent's one clock. Everything a coordinated agent stamps — batch seconds, the start it
//! waits for, `Finished.started_at_ms`, every envelope's `sent_at_ms` — is read from a
//! [`WallClock`]: this machine's wall clock plus the offset to the coordinator's measured at
//! the handshake (`messages::clock`), so all of a run's times are on the coordinator's clock.
//! Standalone agents have no coordinator: their offset stays 0.
//!
//! [`Clock`] is a snapshot of it for the hot path: monotonic instants to unix ms without a
//! syscall per sample.
//!
//! For tests only, `HERD_TEST_CLOCK_SKEW_MS` (every agent joining a run started with it) or
//! `HERD_TEST_CLOCK_SKEW_MS_AGENT_<i>` (agent `i` alone, and first) adds signed milliseconds
//! to this machine's clock, as if it were set wrong ([`test_skew_ms`]; logged at warn).

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Every coordinated agent started with it runs this many ms (signed) off. Tests only.
pub const TEST_SKEW_VAR: &str = "HERD_TEST_CLOCK_SKEW_MS";

/// This machine's wall clock, in unix milliseconds (0 if it is before 1970). Not corrected:
/// the coordinator's own clock, and the base an agent's [`WallClock`] corrects.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// This machine's clock (plus the test-only skew), corrected by the offset to the
/// coordinator's once it is measured. Clones share the offset, so the heartbeat task and the
/// load see the same correction.
#[derive(Debug, Clone, Default)]
pub struct WallClock {
    /// Tests only: added to every reading of this machine's clock.
    skew_ms: i64,
    /// Coordinator time − this clock's local time; 0 until measured.
    offset_ms: Arc<AtomicI64>,
}

impl WallClock {
    /// This machine's clock as it is: standalone agents, and coordinated ones until measured.
    pub fn system() -> WallClock {
        WallClock::default()
    }

    /// A clock that runs `skew_ms` off this machine's. Tests only ([`test_skew_ms`]).
    pub fn with_test_skew(skew_ms: i64) -> WallClock {
        if skew_ms != 0 {
            tracing::warn!(
                skew_ms,
                "{TEST_SKEW_VAR}: this agent's clock is skewed on purpose — for tests only"
            );
        }
        WallClock {
            skew_ms,
            ..WallClock::default()
        }
    }

    /// This agent's own reading, uncorrected: the A1 / A2 of the handshake.
    pub fn local_ms(&self) -> u64 {
        unix_ms().saturating_add_signed(self.skew_ms)
    }

    /// Now, on the coordinator's clock.
    pub fn now_ms(&self) -> u64 {
        self.of_system_ms(unix_ms())
    }

    /// A time this machine's wall clock gave (a load tool's own timestamps), on the
    /// coordinator's clock.
    pub fn of_system_ms(&self, system_ms: u64) -> u64 {
        system_ms.saturating_add_signed(self.shift_ms())
    }

    /// The measured offset: coordinator time − local time.
    pub fn offset_ms(&self) -> i64 {
        self.offset_ms.load(Ordering::Relaxed)
    }

    /// From now on every reading is corrected by `offset_ms`.
    pub fn set_offset_ms(&self, offset_ms: i64) {
        self.offset_ms.store(offset_ms, Ordering::Relaxed);
    }

    /// What is added to this machine's wall clock: the test skew and the offset.
    fn shift_ms(&self) -> i64 {
        self.skew_ms.saturating_add(self.offset_ms())
    }
}

/// The test-only skew for agent `index`, from `var` (the environment):
/// `HERD_TEST_CLOCK_SKEW_MS_AGENT_<index>` if set, else `HERD_TEST_CLOCK_SKEW_MS`, else 0.
/// A value that is not a whole number of ms is an error, never silently 0.
pub fn test_skew_ms(index: u32, var: impl Fn(&str) -> Option<String>) -> Result<i64, String> {
    let own = format!("{TEST_SKEW_VAR}_AGENT_{index}");
    let Some((name, value)) = [own.as_str(), TEST_SKEW_VAR]
        .into_iter()
        .find_map(|n| var(n).map(|v| (n, v)))
    else {
        return Ok(0);
    };
    value.trim().parse::<i64>().map_err(|_| {
        format!("{name}={value:?} is not a whole number of milliseconds (it is for tests only)")
    })
}

/// A [`WallClock`] frozen against a monotonic base: maps instants to unix ms (coordinator
/// time) without a syscall per sample, and back for waiting until a unix instant.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    base: Instant,
    base_unix_ms: u64,
    /// What the wall clock added to this machine's (skew + offset) when frozen.
    shift_ms: i64,
}

impl Clock {
    pub fn new(wall: &WallClock) -> Clock {
        let shift_ms = wall.shift_ms();
        Clock {
            base: Instant::now(),
            base_unix_ms: unix_ms().saturating_add_signed(shift_ms),
            shift_ms,
        }
    }
    pub fn unix_ms(&self, at: Instant) -> u64 {
        let since = at.saturating_duration_since(self.base).as_millis();
        self.base_unix_ms
            .saturating_add(u64::try_from(since).unwrap_or(u64::MAX))
    }
    pub fn second(&self, at: Instant) -> u64 {
        self.unix_ms(at) / 1000
    }
    /// The instant at which (corrected) unix time reaches `unix_ms` (or now, if that is past).
    pub fn instant_of(&self, unix_ms: u64) -> Instant {
        let now = Instant::now();
        let now_ms = self.unix_ms(now);
        // Beyond what this machine's instants can hold: now, rather than a panic.
        now.checked_add(Duration::from_millis(unix_ms.saturating_sub(now_ms)))
            .unwrap_or(now)
    }
    /// A time this machine's wall clock gave (a tool's timestamp), corrected like this clock.
    pub fn of_system_ms(&self, system_ms: u64) -> u64 {
        system_ms.saturating_add_signed(self.shift_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |n| {
            vars.iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn the_skew_is_per_agent_first_then_for_all_and_else_zero() {
        assert_eq!(test_skew_ms(1, env(&[])), Ok(0));
        let all = [("HERD_TEST_CLOCK_SKEW_MS", "-250")];
        assert_eq!(test_skew_ms(1, env(&all)), Ok(-250));
        let one = [
            ("HERD_TEST_CLOCK_SKEW_MS", "-250"),
            ("HERD_TEST_CLOCK_SKEW_MS_AGENT_1", "5000"),
        ];
        assert_eq!(test_skew_ms(1, env(&one)), Ok(5000));
        assert_eq!(test_skew_ms(0, env(&one)), Ok(-250));
        let e = test_skew_ms(0, env(&[("HERD_TEST_CLOCK_SKEW_MS", "5s")])).unwrap_err();
        assert!(e.contains("HERD_TEST_CLOCK_SKEW_MS=\"5s\""), "{e}");
    }

    #[test]
    fn a_skewed_clock_reads_ahead_until_the_offset_corrects_it() {
        let wall = WallClock::with_test_skew(5_000);
        let shared = wall.clone();
        let ahead = wall.local_ms().abs_diff(unix_ms());
        assert!((4_900..=5_100).contains(&ahead), "{ahead}");
        shared.set_offset_ms(-5_000);
        assert_eq!(wall.offset_ms(), -5_000, "clones share the offset");
        assert!(wall.now_ms().abs_diff(unix_ms()) < 100);
        assert!(
            wall.local_ms().abs_diff(unix_ms()) >= 4_900,
            "local stays uncorrected"
        );
        assert_eq!(wall.of_system_ms(1_000_000), 1_000_000);
        let frozen = Clock::new(&wall);
        assert!(frozen.unix_ms(Instant::now()).abs_diff(unix_ms()) < 100);
        assert_eq!(frozen.of_system_ms(1_000_000), 1_000_000);
    }

    #[test]
    fn corrections_saturate_instead_of_wrapping() {
        let wall = WallClock::with_test_skew(i64::MIN);
        assert_eq!(wall.local_ms(), 0);
        wall.set_offset_ms(i64::MIN);
        assert_eq!(
            wall.of_system_ms(u64::MAX),
            u64::MAX - i64::MIN.unsigned_abs()
        );
        let up = WallClock::with_test_skew(i64::MAX);
        up.set_offset_ms(i64::MAX);
        assert_eq!(up.of_system_ms(u64::MAX), u64::MAX);
        assert!(
            up.now_ms() > i64::MAX as u64,
            "the shift itself saturates at i64::MAX"
        );
        let c = Clock::new(&up);
        assert!(c.unix_ms(Instant::now()) > i64::MAX as u64);
        assert_eq!(c.of_system_ms(u64::MAX), u64::MAX);
    }
}
