//! What the operating system lets one agent hold. One open connection per VU needs one file
//! descriptor, and a common default soft limit is 1,024: without a check a large share fails
//! every connect with `EMFILE` and spins on the errors. So the soft limit is raised to the hard
//! limit at start, and a share that still cannot fit is refused before the start, naming both
//! numbers.

use messages::spec::Executor;

/// Descriptors an agent needs besides its VUs' connections: broker, runtime, logs, files.
pub const SPARE_DESCRIPTORS: u64 = 64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    #[error(
        "{vus} VUs need about {need} open files, but this process may open {limit} \
         (raise it with `ulimit -n {need}` or more; the hard limit is {hard}), or spread the \
         load over more agents"
    )]
    Descriptors {
        vus: u64,
        need: u64,
        limit: u64,
        hard: u64,
    },
}

/// The most VUs a share can have at once.
pub fn peak_vus(e: &Executor) -> u64 {
    match e {
        Executor::ConstantVus { vus, .. }
        | Executor::PerVuIterations { vus, .. }
        | Executor::SharedIterations { vus, .. } => *vus,
        Executor::RampingVus { start_vus, stages } => {
            stages.iter().map(|s| s.target).fold(*start_vus, u64::max)
        }
        Executor::ConstantArrivalRate {
            pre_allocated_vus,
            max_vus,
            ..
        }
        | Executor::RampingArrivalRate {
            pre_allocated_vus,
            max_vus,
            ..
        } => (*max_vus).max(*pre_allocated_vus),
    }
}

/// (soft, hard) open-file limits of this process.
fn nofile() -> Option<(u64, u64)> {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) } == 0)
        .then_some((l.rlim_cur, l.rlim_max))
}

/// Raises the soft open-file limit to the hard one; returns the soft limit now in force.
pub fn raise_descriptor_limit() -> Option<u64> {
    let (soft, hard) = nofile()?;
    if soft < hard {
        let l = libc::rlimit {
            rlim_cur: hard,
            rlim_max: hard,
        };
        // SAFETY: setrlimit reads the struct we own; raising soft up to hard needs no privilege.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &l) } != 0 {
            return Some(soft);
        }
    }
    nofile().map(|(s, _)| s)
}

/// Whether a share of `vus` VUs fits the open-file limit (after raising it).
pub fn check_descriptors(vus: u64) -> Result<(), LimitError> {
    let Some(limit) = raise_descriptor_limit() else {
        return Ok(());
    };
    let hard = nofile().map_or(limit, |(_, h)| h);
    let need = vus.saturating_add(SPARE_DESCRIPTORS);
    if need > limit {
        return Err(LimitError::Descriptors {
            vus,
            need,
            limit,
            hard,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use messages::spec::Stage;

    #[test]
    fn the_peak_is_the_most_vus_at_once() {
        let ramp = Executor::RampingVus {
            start_vus: 5,
            stages: vec![
                Stage {
                    duration_ms: 1,
                    target: 50,
                },
                Stage {
                    duration_ms: 1,
                    target: 10,
                },
            ],
        };
        assert_eq!(peak_vus(&ramp), 50);
        let open = Executor::ConstantArrivalRate {
            rate: 10,
            time_unit_ms: 1000,
            duration_ms: 1,
            pre_allocated_vus: 20,
            max_vus: 200,
        };
        assert_eq!(peak_vus(&open), 200);
    }

    #[test]
    fn a_share_beyond_the_limit_is_refused_with_both_numbers() {
        let e = check_descriptors(u64::MAX / 2).expect_err("beyond any limit");
        let text = e.to_string();
        assert!(
            text.contains("VUs need about") && text.contains("ulimit -n"),
            "{text}"
        );
        assert!(check_descriptors(1).is_ok());
    }
}
