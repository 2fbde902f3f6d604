//! Delays measured in the coordinator's own clock: how far behind the wall clock its view of a
//! run is. Recorded in an HdrHistogram (1 ms resolution, 2 significant digits, up to an hour:
//! a few KB whatever the count), so a fleet's every batch costs one bucket increment.

use hdrhistogram::Histogram;
use messages::summary::Lag;

/// The largest delay kept apart; longer ones count at this value.
const MAX_LAG_MS: u64 = 3_600_000;

pub struct LagMeter {
    h: Option<Histogram<u64>>,
}

impl Default for LagMeter {
    fn default() -> LagMeter {
        LagMeter {
            h: Histogram::new_with_bounds(1, MAX_LAG_MS, 2).ok(),
        }
    }
}

impl LagMeter {
    /// The delay from `due_ms` (a second's end) to `now_ms`; early counts as 0.
    pub fn record(&mut self, due_ms: u64, now_ms: u64) {
        if let Some(h) = &mut self.h {
            h.saturating_record(now_ms.saturating_sub(due_ms).min(MAX_LAG_MS));
        }
    }

    pub fn lag(&self) -> Option<Lag> {
        let h = self.h.as_ref().filter(|h| !h.is_empty())?;
        Some(Lag {
            count: h.len(),
            p50: h.value_at_quantile(0.50),
            p99: h.value_at_quantile(0.99),
            max: h.max(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_are_measured_from_the_due_instant_and_early_counts_as_zero() {
        let mut m = LagMeter::default();
        assert_eq!(m.lag(), None, "nothing measured: no numbers");
        for d in 1..=100 {
            m.record(10_000, 10_000 + d * 10);
        }
        m.record(10_000, 9_000);
        let l = m.lag().expect("measured");
        assert_eq!(l.count, 101);
        assert!((495..=505).contains(&l.p50), "{l:?}");
        assert!((985..=1_000).contains(&l.p99), "{l:?}");
        assert!((995..=1_005).contains(&l.max), "{l:?}");
        m.record(0, u64::MAX);
        assert!(m.lag().expect("measured").max >= MAX_LAG_MS - MAX_LAG_MS / 100);
    }
}
