//! Dividing one spec's load across N agents so that the parts add up exactly.
//!
//! Integer parts, remainders to the lowest indexes: the sum over agents of VUs, rates, stage
//! targets and iteration counts equals the spec's at every instant (linear ramps of parts sum to
//! the linear ramp of the whole).

use serde::{Deserialize, Serialize};

use crate::spec::{Executor, Stage};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Share {
    pub index: u32,
    pub count: u32,
    /// This agent's part of the load.
    pub executor: Executor,
    /// Global number of this agent's first VU, so `{{vu}}` is unique across the fleet.
    pub vu_offset: u64,
}

/// Agent `index`'s part of `total` when split `count` ways.
pub fn part(total: u64, count: u32, index: u32) -> u64 {
    let count = u64::from(count.max(1));
    let index = u64::from(index);
    total / count + u64::from(index < total % count)
}

fn stages(stages: &[Stage], count: u32, index: u32) -> Vec<Stage> {
    stages
        .iter()
        .map(|s| Stage {
            duration_ms: s.duration_ms,
            target: part(s.target, count, index),
        })
        .collect()
}

/// The most VUs an executor may run at once.
pub fn max_vus(e: &Executor) -> u64 {
    match e {
        Executor::ConstantVus { vus, .. }
        | Executor::PerVuIterations { vus, .. }
        | Executor::SharedIterations { vus, .. } => *vus,
        Executor::RampingVus { start_vus, stages } => stages
            .iter()
            .map(|s| s.target)
            .chain(std::iter::once(*start_vus))
            .max()
            .unwrap_or(0),
        Executor::ConstantArrivalRate { max_vus, .. }
        | Executor::RampingArrivalRate { max_vus, .. } => *max_vus,
    }
}

/// Splits `e` into `count` shares (count 0 is treated as 1).
pub fn split(e: &Executor, count: u32) -> Vec<Share> {
    let count = count.max(1);
    let mut offset = 0;
    (0..count)
        .map(|i| {
            let executor = share_of(e, count, i);
            let share = Share {
                index: i,
                count,
                vu_offset: offset,
                executor,
            };
            offset = offset.saturating_add(max_vus(&share.executor));
            share
        })
        .collect()
}

fn share_of(e: &Executor, n: u32, i: u32) -> Executor {
    // Arrival-rate agents that get any rate need at least one VU to run it.
    let vus_for = |v: u64, has_load: bool| {
        let p = part(v, n, i);
        if has_load {
            p.max(1)
        } else {
            p
        }
    };
    match e {
        Executor::ConstantVus { vus, duration_ms } => Executor::ConstantVus {
            vus: part(*vus, n, i),
            duration_ms: *duration_ms,
        },
        Executor::RampingVus {
            start_vus,
            stages: st,
        } => Executor::RampingVus {
            start_vus: part(*start_vus, n, i),
            stages: stages(st, n, i),
        },
        Executor::ConstantArrivalRate {
            rate,
            time_unit_ms,
            duration_ms,
            pre_allocated_vus,
            max_vus,
        } => {
            let r = part(*rate, n, i);
            Executor::ConstantArrivalRate {
                rate: r,
                time_unit_ms: *time_unit_ms,
                duration_ms: *duration_ms,
                pre_allocated_vus: vus_for(*pre_allocated_vus, r > 0),
                max_vus: vus_for(*max_vus, r > 0),
            }
        }
        Executor::RampingArrivalRate {
            start_rate,
            time_unit_ms,
            stages: st,
            pre_allocated_vus,
            max_vus,
        } => {
            let st = stages(st, n, i);
            let start = part(*start_rate, n, i);
            let has_load = start > 0 || st.iter().any(|s| s.target > 0);
            Executor::RampingArrivalRate {
                start_rate: start,
                time_unit_ms: *time_unit_ms,
                stages: st,
                pre_allocated_vus: vus_for(*pre_allocated_vus, has_load),
                max_vus: vus_for(*max_vus, has_load),
            }
        }
        Executor::PerVuIterations {
            vus,
            iterations,
            max_duration_ms,
        } => Executor::PerVuIterations {
            vus: part(*vus, n, i),
            iterations: *iterations,
            max_duration_ms: *max_duration_ms,
        },
        Executor::SharedIterations {
            vus,
            iterations,
            max_duration_ms,
        } => {
            let it = part(*iterations, n, i);
            Executor::SharedIterations {
                // No point starting more VUs than iterations.
                vus: part(*vus, n, i).min(it),
                iterations: it,
                max_duration_ms: *max_duration_ms,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sum(shares: &[Share], f: impl Fn(&Executor) -> u64) -> u64 {
        shares.iter().map(|s| f(&s.executor)).sum()
    }

    proptest! {
        #[test]
        fn parts_sum_to_the_whole(total in 0u64..1_000_000, count in 1u32..64) {
            let s: u64 = (0..count).map(|i| part(total, count, i)).sum();
            prop_assert_eq!(s, total);
        }

        #[test]
        fn ramping_stages_sum_exactly(targets in prop::collection::vec(0u64..10_000, 1..6), start in 0u64..1000, n in 1u32..17) {
            let e = Executor::RampingArrivalRate {
                start_rate: start,
                time_unit_ms: 1000,
                stages: targets.iter().map(|t| Stage { duration_ms: 1000, target: *t }).collect(),
                pre_allocated_vus: 10,
                max_vus: 100,
            };
            let shares = split(&e, n);
            prop_assert_eq!(shares.len(), n as usize);
            for (k, t) in targets.iter().enumerate() {
                let s = sum(&shares, |e| match e { Executor::RampingArrivalRate { stages, .. } => stages[k].target, _ => 0 });
                prop_assert_eq!(s, *t);
            }
            prop_assert_eq!(sum(&shares, |e| match e { Executor::RampingArrivalRate { start_rate, .. } => *start_rate, _ => 0 }), start);
        }

        #[test]
        fn shared_iterations_sum_exactly(it in 0u64..100_000, vus in 1u64..500, n in 1u32..17) {
            let e = Executor::SharedIterations { vus, iterations: it, max_duration_ms: 1000 };
            let shares = split(&e, n);
            prop_assert_eq!(sum(&shares, |e| match e { Executor::SharedIterations { iterations, .. } => *iterations, _ => 0 }), it);
        }
    }

    #[test]
    fn vu_offsets_are_disjoint() {
        let shares = split(
            &Executor::ConstantVus {
                vus: 10,
                duration_ms: 1,
            },
            3,
        );
        let offs: Vec<_> = shares.iter().map(|s| s.vu_offset).collect();
        assert_eq!(offs, vec![0, 4, 7]);
    }

    #[test]
    fn constant_rate_splits_exactly() {
        let e = Executor::ConstantArrivalRate {
            rate: 10,
            time_unit_ms: 1000,
            duration_ms: 1000,
            pre_allocated_vus: 2,
            max_vus: 5,
        };
        let shares = split(&e, 3);
        assert_eq!(
            sum(&shares, |e| match e {
                Executor::ConstantArrivalRate { rate, .. } => *rate,
                _ => 0,
            }),
            10
        );
        // every agent with load has at least one VU
        assert!(shares.iter().all(|s| max_vus(&s.executor) >= 1));
    }
}
