//! What agents' `Finished` tells beyond the state machine's events: each check's passes and
//! failures, and the HTTP versions their connections spoke. Kept per agent, so a `Finished`
//! delivered twice counts once, and summed at the end within bounds whatever agents sent.

use std::collections::BTreeMap;

use messages::wire::{bounded_checks, clip_text, CheckCount, Finished, MAX_CHECKS, OTHER_CHECKS};

/// HTTP versions an agent may report (`h1`, `h2`, and room for one more).
const MAX_VERSIONS: usize = 4;

/// What one agent's `Finished` said: its checks, and its connections by HTTP version.
type AgentTally = (Vec<CheckCount>, Vec<(String, u64)>);

#[derive(Debug, Default)]
pub struct Tallies {
    by_agent: BTreeMap<u32, AgentTally>,
}

impl Tallies {
    pub fn finished(&mut self, agent: u32, f: &Finished) {
        let versions = f
            .http_versions
            .iter()
            .take(MAX_VERSIONS)
            .map(|(v, n)| (clip_text(v, 8), *n))
            .collect();
        self.by_agent
            .insert(agent, (bounded_checks(&f.checks), versions));
    }

    /// Every agent's checks summed by (label, name), in first-seen order; past [`MAX_CHECKS`]
    /// names, under [`OTHER_CHECKS`]. Sums saturate (a hostile agent cannot wrap them).
    pub fn checks(&self) -> Vec<CheckCount> {
        let mut out: Vec<CheckCount> = Vec::new();
        let mut at: BTreeMap<(String, String), usize> = BTreeMap::new();
        for (checks, _) in self.by_agent.values() {
            for c in checks {
                let mut key = (c.label.clone(), c.name.clone());
                if !at.contains_key(&key) && at.len() >= MAX_CHECKS {
                    key = (String::new(), OTHER_CHECKS.to_string());
                }
                let i = *at.entry(key.clone()).or_insert_with(|| {
                    out.push(CheckCount {
                        label: key.0.clone(),
                        name: key.1.clone(),
                        passed: 0,
                        failed: 0,
                    });
                    out.len() - 1
                });
                out[i].passed = out[i].passed.saturating_add(c.passed);
                out[i].failed = out[i].failed.saturating_add(c.failed);
            }
        }
        out
    }

    /// Connections by HTTP version, over every agent that said.
    pub fn http_versions(&self) -> BTreeMap<String, u64> {
        let mut out: BTreeMap<String, u64> = BTreeMap::new();
        for (_, versions) in self.by_agent.values() {
            for (v, n) in versions {
                if out.len() < MAX_VERSIONS || out.contains_key(v) {
                    let e = out.entry(v.clone()).or_default();
                    *e = e.saturating_add(*n);
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finished(checks: Vec<CheckCount>, versions: Vec<(&str, u64)>) -> Finished {
        Finished {
            agent: 0,
            started_at_ms: 0,
            last_batch_seq: 0,
            batches_sent: 0,
            batches_dropped: 0,
            error_samples: Vec::new(),
            checks,
            http_versions: versions.into_iter().map(|(v, n)| (v.into(), n)).collect(),
        }
    }

    fn c(label: &str, name: &str, passed: u64, failed: u64) -> CheckCount {
        CheckCount {
            label: label.into(),
            name: name.into(),
            passed,
            failed,
        }
    }

    #[test]
    fn agents_are_summed_once_each_and_bounded() {
        let mut t = Tallies::default();
        let a = finished(
            vec![c("login", "status 200", 5, 1), c("", "is ok", 2, 0)],
            vec![("h1", 3)],
        );
        t.finished(0, &a);
        t.finished(0, &a); // delivered twice
        t.finished(
            1,
            &finished(
                vec![c("login", "status 200", 4, 0), c("", "is ok", u64::MAX, 0)],
                vec![("h1", 2), ("h2", 1)],
            ),
        );
        let sum = t.checks();
        assert_eq!(sum[0], c("login", "status 200", 9, 1));
        assert_eq!(sum[1], c("", "is ok", u64::MAX, 0), "saturates");
        assert_eq!(
            t.http_versions().into_iter().collect::<Vec<_>>(),
            vec![("h1".to_string(), 5), ("h2".to_string(), 1)]
        );
        // A flood of names from one agent: at most MAX_CHECKS kept, the rest together.
        let many = (0..(MAX_CHECKS as u64) * 3)
            .map(|i| c("x", &format!("n{i}"), 1, 0))
            .collect();
        let mut t = Tallies::default();
        t.finished(0, &finished(many, vec![]));
        t.finished(
            1,
            &finished(
                (0..(MAX_CHECKS as u64) + 7)
                    .map(|i| c("y", &format!("m{i}"), 1, 0))
                    .collect(),
                vec![],
            ),
        );
        let sum = t.checks();
        assert_eq!(sum.len(), MAX_CHECKS + 1);
        let other = sum.iter().find(|c| c.name == OTHER_CHECKS).expect("other");
        assert_eq!(
            other.passed, MAX_CHECKS as u64,
            "agent 1's checks, all counted"
        );
        assert_eq!(
            sum.iter().map(|c| c.passed).sum::<u64>(),
            2 * MAX_CHECKS as u64
        );
    }
}
