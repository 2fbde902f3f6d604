//! The arithmetic of ramps: VU targets over time and arrival instants, without a runtime.

use std::time::Duration;

use messages::spec::Stage;

/// Linear ramps from `start` through each stage's target (k6 semantics).
pub fn ramp_value(start: u64, stages: &[Stage], elapsed: Duration) -> Option<f64> {
    let mut t = elapsed.as_secs_f64() * 1000.0;
    let mut from = start as f64;
    for s in stages {
        let d = s.duration_ms as f64;
        let to = s.target as f64;
        if t < d {
            return Some(from + (to - from) * (t / d));
        }
        t -= d;
        from = to;
    }
    None
}

/// Start offsets of arrival-rate iterations: the k-th iteration starts when the integral of
/// the rate reaches k, so counts are exact and independent of timer granularity.
pub struct Arrivals {
    /// (duration ms, rate at start, rate at end) in iterations per ms.
    segments: Vec<(f64, f64, f64)>,
    seg: usize,
    /// Iterations scheduled before the current segment and its start offset (ms).
    seg_base_count: f64,
    seg_base_ms: f64,
    k: u64,
}

impl Arrivals {
    pub fn constant(rate: u64, time_unit_ms: u64, duration_ms: u64) -> Arrivals {
        let r = rate as f64 / time_unit_ms.max(1) as f64;
        Arrivals::from_segments(vec![(duration_ms as f64, r, r)])
    }

    pub fn ramping(start_rate: u64, time_unit_ms: u64, stages: &[Stage]) -> Arrivals {
        let tu = time_unit_ms.max(1) as f64;
        let mut from = start_rate as f64 / tu;
        let mut segs = Vec::new();
        for s in stages {
            let to = s.target as f64 / tu;
            segs.push((s.duration_ms as f64, from, to));
            from = to;
        }
        Arrivals::from_segments(segs)
    }

    fn from_segments(segments: Vec<(f64, f64, f64)>) -> Arrivals {
        Arrivals {
            segments,
            seg: 0,
            seg_base_count: 0.0,
            seg_base_ms: 0.0,
            k: 0,
        }
    }

    /// How many iterations the whole schedule starts.
    pub fn total(&self) -> u64 {
        let area: f64 = self
            .segments
            .iter()
            .map(|(d, a, b)| (a + b) / 2.0 * d)
            .sum();
        // Iteration k starts at the instant the integral reaches k, if that is within the run.
        let c = area - 1e-9;
        if c < 0.0 {
            0
        } else {
            c.floor() as u64 + 1
        }
    }
}

impl Iterator for Arrivals {
    type Item = Duration;

    /// The next iteration's start offset from the executor's start.
    fn next(&mut self) -> Option<Duration> {
        let want = self.k as f64;
        while let Some(&(d, a, b)) = self.segments.get(self.seg) {
            let seg_count = (a + b) / 2.0 * d;
            let rem = want - self.seg_base_count;
            if rem < seg_count - 1e-9 || (rem <= 1e-9 && seg_count > 0.0) {
                // Solve a·t + (b−a)/(2d)·t² = rem for t in [0, d].
                let q = (b - a) / (2.0 * d);
                let t = if rem <= 0.0 {
                    0.0
                } else if q.abs() < 1e-15 {
                    rem / a
                } else {
                    (-a + (a * a + 4.0 * q * rem).max(0.0).sqrt()) / (2.0 * q)
                };
                self.k += 1;
                let ms = self.seg_base_ms + t.clamp(0.0, d);
                return Some(Duration::from_secs_f64(ms / 1000.0));
            }
            self.seg_base_count += seg_count;
            self.seg_base_ms += d;
            self.seg += 1;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_rate_schedules_exactly() {
        let a = Arrivals::constant(100, 1000, 5000);
        assert_eq!(a.total(), 500);
        let v: Vec<Duration> = Arrivals::constant(100, 1000, 5000).collect();
        assert_eq!(v.len(), 500);
        assert_eq!(v[0], Duration::ZERO);
        assert!((v[1].as_secs_f64() - 0.01).abs() < 1e-9);
        assert!(v[499] < Duration::from_secs(5));
    }

    #[test]
    fn ramp_from_zero_counts_the_area() {
        // 0 → 100/s over 2 s: area 100 iterations, then 100/s for 1 s: 100 more.
        let st = [
            Stage {
                duration_ms: 2000,
                target: 100,
            },
            Stage {
                duration_ms: 1000,
                target: 100,
            },
        ];
        let v: Vec<Duration> = Arrivals::ramping(0, 1000, &st).collect();
        assert_eq!(v.len(), 200);
        assert_eq!(Arrivals::ramping(0, 1000, &st).total(), 200);
        // Arrivals get denser as the rate rises.
        assert!(v[1] - v[0] > v[99] - v[98]);
        assert!(v.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn ramp_values_interpolate() {
        let st = [
            Stage {
                duration_ms: 1000,
                target: 10,
            },
            Stage {
                duration_ms: 1000,
                target: 0,
            },
        ];
        assert_eq!(ramp_value(0, &st, Duration::from_millis(500)), Some(5.0));
        assert_eq!(ramp_value(0, &st, Duration::from_millis(1500)), Some(5.0));
        assert_eq!(ramp_value(0, &st, Duration::from_millis(2000)), None);
    }
}
