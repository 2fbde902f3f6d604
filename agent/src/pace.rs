//! An agent's pace of publishing: AWS IoT Core takes at most 100 publishes a second from one
//! connection (not adjustable) and throttles past it. An agent publishes one metrics message a
//! second, but a second with very many labels is split into several (`wire::split_batch`), so
//! the metrics messages are paced to [`MAX_METRICS_PER_S`] — room left under 100 for the
//! heartbeat and status messages of the same second. Within the pace nothing waits.

use std::time::{Duration, Instant};

/// Metrics messages one agent publishes in a second, at most.
pub const MAX_METRICS_PER_S: u32 = 80;

/// Counts publishes in one-second windows.
#[derive(Debug, Clone)]
pub struct Pace {
    per_s: u32,
    window: Instant,
    used: u32,
}

impl Pace {
    pub fn new(per_s: u32, now: Instant) -> Pace {
        Pace {
            per_s: per_s.max(1),
            window: now,
            used: 0,
        }
    }

    /// Counts one publish at `now` and says how long it must wait first (zero within the pace).
    /// A caller that publishes without waiting still gets each window's share only.
    pub fn next(&mut self, now: Instant) -> Duration {
        let second = Duration::from_secs(1);
        if now >= self.window + second {
            self.window = now;
            self.used = 0;
        }
        if self.used >= self.per_s {
            // This window is full: the publish goes in the next one.
            self.window += second;
            self.used = 0;
        }
        self.used += 1;
        self.window.saturating_duration_since(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn within_the_pace_nothing_waits_and_past_it_the_next_second_begins() {
        let t0 = Instant::now();
        let mut p = Pace::new(80, t0);
        for _ in 0..80 {
            assert_eq!(p.next(t0), Duration::ZERO);
        }
        // The 81st in the same instant waits for the next second, and 79 more go with it.
        assert_eq!(p.next(t0), Duration::from_secs(1));
        for _ in 0..79 {
            assert_eq!(p.next(t0 + Duration::from_secs(1)), Duration::ZERO);
        }
        assert_eq!(
            p.next(t0 + Duration::from_millis(1_500)),
            Duration::from_millis(500)
        );
        // A quiet second starts afresh.
        let later = t0 + Duration::from_secs(10);
        assert_eq!(p.next(later), Duration::ZERO);
        // So at most 80 go out in any one window, whatever the burst.
        let mut p = Pace::new(80, t0);
        let waits: Vec<Duration> = (0..1000).map(|_| p.next(t0)).collect();
        for w in 0..12u64 {
            let n = waits
                .iter()
                .filter(|d| **d == Duration::from_secs(w))
                .count();
            assert!(n <= 80, "{n} in second {w}");
        }
    }
}
