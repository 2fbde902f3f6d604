//! `summary.json` and the retained result: the whole run in one document, typed so that the
//! file, the topic and the notifications are rendered from the same value.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::metrics::LabelStats;
use crate::outcome::{AgentState, EndState, Verdict};
use crate::threshold::ThresholdResult;

/// Latency in milliseconds, from the merged histogram (never averaged percentiles).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct Latency {
    pub min: f64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

/// One label's (or region's, or the run's) numbers.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct Stats {
    pub requests: u64,
    pub errors: u64,
    /// Requests per second over the load phase.
    pub rps: f64,
    /// Status code → requests; `"0"` for requests without a response.
    pub status: BTreeMap<String, u64>,
    /// Why requests without a response failed (`timeout`, `connect`, `tls`, `io`, `policy`…).
    pub error_kinds: BTreeMap<String, u64>,
    pub latency_ms: Latency,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub checks_passed: u64,
    pub checks_failed: u64,
}

impl Stats {
    /// `seconds` is the load phase's length (for `rps`).
    pub fn of(s: &LabelStats, seconds: f64) -> Stats {
        let h = &s.latency;
        let ms = |us: u64| us as f64 / 1000.0;
        Stats {
            requests: s.requests,
            errors: s.errors,
            rps: if seconds > 0.0 {
                s.requests as f64 / seconds
            } else {
                0.0
            },
            status: s.status.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            error_kinds: s.error_kinds.clone(),
            latency_ms: Latency {
                min: if h.is_empty() { 0.0 } else { ms(h.min()) },
                mean: h.mean() / 1000.0,
                p50: ms(h.value_at_quantile(0.50)),
                p90: ms(h.value_at_quantile(0.90)),
                p95: ms(h.value_at_quantile(0.95)),
                p99: ms(h.value_at_quantile(0.99)),
                max: ms(h.max()),
            },
            bytes_in: s.bytes_in,
            bytes_out: s.bytes_out,
            checks_passed: s.checks_passed,
            checks_failed: s.checks_failed,
        }
    }
}

/// The run's totals: every label's numbers together, plus iterations.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct TotalStats {
    #[serde(flatten)]
    pub stats: Stats,
    pub iterations: u64,
    pub dropped_iterations: u64,
}

/// How one agent did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AgentSummary {
    pub index: u32,
    pub region: String,
    pub state: AgentState,
    /// Why it was lost or failed.
    pub reason: Option<String>,
    /// When its load started (unix ms, the coordinator's clock: corrected by its offset).
    pub started_at_ms: Option<u64>,
    /// Its clock's offset, measured at the handshake: coordinator time − agent time, in ms.
    /// Everything the agent stamps (batch seconds, start, finish) is corrected by it. Absent
    /// when it never reported Ready with a measurement.
    pub clock_offset_ms: Option<i64>,
    /// The round trip of that measurement: the offset is within half of it.
    pub clock_round_trip_ms: Option<u64>,
    pub batches_received: u64,
    /// Its batches the coordinator rejected whole (out of bounds, inconsistent, or for a second
    /// outside the run's window): left out of every number. An agent with any is not drained.
    pub rejected_batches: u64,
    /// Messages on its topics that it did not make (not authenticated by its key, or speaking
    /// for another agent): refused, left out of every number. Nonzero means someone tried.
    pub refused_messages: u64,
    /// Batches it could not queue while its broker was away (reported in its `Finished`).
    pub batches_dropped_by_agent: u64,
}

/// `summary.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Summary {
    pub run: String,
    pub spec: String,
    pub state: EndState,
    pub reason: Option<String>,
    /// [`crate::outcome::verdict`]: passed only for a completed run whose thresholds all held.
    pub verdict: Verdict,
    /// The common start instant (unix ms); absent when the load never started.
    pub start_at_ms: Option<u64>,
    pub ended_at_ms: u64,
    /// The load phase: from the start instant to the last agent's `Finished`.
    pub duration_s: f64,
    pub total: TotalStats,
    pub labels: BTreeMap<String, Stats>,
    /// Per region (one entry, the whole run, when it ran in one region).
    pub regions: BTreeMap<String, Stats>,
    pub thresholds: Vec<ThresholdResult>,
    pub agents: Vec<AgentSummary>,
    /// Largest difference between the agents' actual start instants.
    pub start_skew_ms: Option<u64>,
    /// The largest clock offset among the agents, in absolute ms (each agent's, signed, is its
    /// `clock_offset_ms`); absent when none was measured.
    pub max_clock_offset_ms: Option<u64>,
    pub agents_lost: u32,
    /// Batches that arrived after their second was final: in the totals, in no series row.
    pub late_batches: u64,
    /// What a person should look at before trusting the numbers (most requests got no
    /// response, no request at all).
    #[serde(default)]
    pub warnings: Vec<String>,
    /// For each kind of request that got no response, the first message an agent saw
    /// (`tls` → the certificate problem): why, in words.
    #[serde(default)]
    pub error_samples: BTreeMap<String, String>,
    /// Each check by the label of the requests it checked (empty for a tool's checks, as
    /// k6's) and its name, with passes and failures over the whole run.
    #[serde(default)]
    pub checks: Vec<CheckResult>,
    /// Connections the agents opened, by the HTTP version they spoke (`h1`, `h2`): what
    /// `version: auto` got. Empty for k6, Locust and JMeter runs.
    #[serde(default)]
    pub http_versions: BTreeMap<String, u64>,
    /// How the coordinator kept up with its fleet: how long agents took to be ready, and how
    /// far behind the clock the batches and the live view ran.
    #[serde(default)]
    pub timing: Timing,
}

/// How the coordinator kept up with its fleet. What a fleet run is judged by: a coordinator
/// that falls behind shows it here first (growing lag) before anything is lost.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Timing {
    /// From launching the agents to the last one Ready, when the start instant was set.
    pub ready_ms: Option<u64>,
    /// From the end of a second to the coordinator folding a batch for it, over every batch
    /// (agents send a second's batch about 250 ms after it ends).
    pub intake_lag_ms: Option<Lag>,
    /// From the end of a second to its live snapshot going out (by design 1–2 s: the live
    /// view shows the second that ended two clock seconds ago, to wait for the fleet's
    /// batches). The snapshots sent at the run's end are not in it.
    pub live_lag_ms: Option<Lag>,
}

/// A distribution of delays, in ms.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Lag {
    pub count: u64,
    pub p50: u64,
    pub p99: u64,
    pub max: u64,
}

/// One check's result in `summary.json` (and a JUnit test case).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CheckResult {
    pub label: String,
    pub name: String,
    pub passed: u64,
    pub failed: u64,
}

impl From<&crate::wire::CheckCount> for CheckResult {
    fn from(c: &crate::wire::CheckCount) -> CheckResult {
        CheckResult {
            label: c.label.clone(),
            name: c.name.clone(),
            passed: c.passed,
            failed: c.failed,
        }
    }
}

impl CheckResult {
    /// `login: status 200`, or the name alone for a check without a label.
    pub fn title(&self) -> String {
        if self.label.is_empty() {
            self.name.clone()
        } else {
            format!("{}: {}", self.label, self.name)
        }
    }
}

/// Said when the per-check counts do not add up to the checks the batches counted (an agent
/// that did not finish reports none): the table is then not the whole story.
pub fn check_warnings(total: &LabelStats, checks: &[CheckResult]) -> Vec<String> {
    let counted = total.checks_passed.saturating_add(total.checks_failed);
    let named = checks.iter().fold(0u64, |n, c| {
        n.saturating_add(c.passed).saturating_add(c.failed)
    });
    if checks.is_empty() || named == counted {
        return Vec::new();
    }
    vec![format!(
        "the per-check counts add up to {named} of the {counted} checks counted (agents that did not finish report none)"
    )]
}

/// What usually fixes a kind of request failure, for the line that shows its sample.
pub fn error_hint(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "tls" => "a self-signed or private certificate? set `target: {http: {insecure: true}}` (test targets only)",
        "connect" => "is the target up at its URL, and reachable from the agents?",
        "timeout" => "the target is slow or overloaded; `target.http.timeout` sets the limit",
        "policy" => "the target policy denied it (`--allow-target`, `[targets]`)",
        "redirect" => "too many redirects (`target.http.redirects`), or a loop",
        _ => return None,
    })
}

/// The lines that say why requests failed: `kind: "sample" — hint`.
pub fn error_sample_lines(samples: &BTreeMap<String, String>) -> Vec<String> {
    samples
        .iter()
        .map(|(k, m)| match error_hint(k) {
            Some(h) => format!("  {k}: \"{m}\" — {h}"),
            None => format!("  {k}: \"{m}\""),
        })
        .collect()
}

/// Most requests got no response, or none was made: said loudly, since such a run can pass
/// every threshold it has (or have none) and still measure nothing of the target.
pub fn run_warnings(total: &LabelStats) -> Vec<String> {
    if total.requests == 0 {
        return vec!["no request was made: check the scenario and the load".into()];
    }
    let none = total
        .status
        .get(&crate::metrics::NO_RESPONSE)
        .copied()
        .unwrap_or(0);
    if none * 2 <= total.requests {
        return Vec::new();
    }
    let kinds: Vec<String> = total
        .error_kinds
        .iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect();
    vec![format!(
        "{:.1}% of requests got no response ({}): is the target up, and reachable from the agents?",
        none as f64 * 100.0 / total.requests as f64,
        kinds.join(", ")
    )]
}
