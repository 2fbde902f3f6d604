//! The spec model, v1: what a user asks for, already validated.
//!
//! These types travel inside `Assign` messages (bincode), so they are plain serde types with no
//! untagged enums or flattening: bincode cannot describe those.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::threshold::Threshold;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Spec {
    pub version: u32,
    pub name: String,
    pub target: Target,
    /// Constants available to templates as `{{name}}`.
    pub variables: BTreeMap<String, String>,
    /// CSV feeders, by name; a row's columns are available as `{{name.column}}`.
    pub data: BTreeMap<String, DataSource>,
    pub scenario: Vec<Step>,
    pub load: Load,
    pub agents: Agents,
    pub thresholds: Vec<Threshold>,
    /// Percent of agents that must stay healthy (1–100). When set, a run whose healthy share
    /// falls below it fails, whether agents are lost at launch or mid-run. When not set, any
    /// agent lost before the start fails the run and one lost later flags it.
    pub min_healthy_agents: Option<u32>,
    /// A k6, Locust or JMeter script run by each agent instead of `scenario`; `None` is herd's
    /// native engine.
    pub runner: Option<Runner>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Engine {
    K6,
    Locust,
    Jmeter,
}

impl Engine {
    pub fn name(self) -> &'static str {
        match self {
            Engine::K6 => "k6",
            Engine::Locust => "locust",
            Engine::Jmeter => "jmeter",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Runner {
    pub engine: Engine,
    /// The script, relative to the spec file; it travels to agents as data file [`SCRIPT_FILE`].
    pub script: String,
    /// Extra command-line arguments for the tool, passed through as written.
    pub args: Vec<String>,
    /// No `load:` in the spec: the script's own options decide the load (k6). Until the script
    /// has been read (by `bundle::build`, for `herd validate`, a run, serve) `load` is k6's own
    /// default, one iteration of one VU ([`Load::k6_default`]).
    pub load_from_script: bool,
    /// No `thresholds:` in the spec: the script's own thresholds are judged, fleet-wide (k6).
    pub thresholds_from_script: bool,
    /// The scenario the script's options named, so the k6 it runs keeps its name, `exec`,
    /// `env`, `tags` and start as the author wrote them; its load is `load`.
    pub scenario: Option<ScriptScenario>,
    /// The script's other scenarios, each with its own load, split across the agents like
    /// `load` (k6 runs them side by side).
    pub more_scenarios: Vec<MoreScenario>,
    /// What of the script's options herd did not carry over, shown as warnings.
    pub notes: Vec<String>,
}

/// A k6 scenario's settings besides its load, which herd splits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScriptScenario {
    pub name: String,
    /// The exported function its VUs run; `None`: `default`.
    pub exec: Option<String>,
    pub env: Vec<(String, String)>,
    pub tags: Vec<(String, String)>,
    /// k6's `startTime`: how long after the run's start the scenario begins.
    pub start_ms: u64,
}

/// A further scenario of a script: its settings and its own load.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoreScenario {
    pub scenario: ScriptScenario,
    pub load: Load,
}

/// Name under which the runner's script travels in the Assign message.
pub const SCRIPT_FILE: &str = "@script";

impl Spec {
    /// Files the spec names, as (name in the Assign message, path relative to the spec).
    pub fn files(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self
            .data
            .iter()
            .map(|(n, d)| (n.clone(), d.file.clone()))
            .collect();
        if let Some(r) = &self.runner {
            out.push((SCRIPT_FILE.to_string(), r.script.clone()));
        }
        out
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Target {
    /// Base URL every step's relative URL is joined to, e.g. `http://127.0.0.1:8080`.
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub http: HttpOptions,
    /// Start `herd target` alongside the run and point `url` at it (demos and quickstart only).
    pub builtin: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HttpOptions {
    pub version: HttpVersion,
    pub timeout_ms: u64,
    pub connect_timeout_ms: u64,
    /// Redirects followed per request; 0 returns the 3xx response as is.
    pub max_redirects: u32,
    /// Accept any TLS certificate (self-signed test targets).
    pub insecure: bool,
    /// Keep a cookie jar per VU.
    pub cookies: bool,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            version: HttpVersion::Auto,
            timeout_ms: 60_000,
            connect_timeout_ms: 10_000,
            max_redirects: 10,
            insecure: false,
            cookies: true,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HttpVersion {
    /// HTTP/2 when TLS ALPN offers it, HTTP/1.1 otherwise.
    Auto,
    Http1,
    /// HTTP/2 over TLS (fails if the server does not negotiate h2).
    Http2,
    /// HTTP/2 over cleartext with prior knowledge.
    H2c,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataSource {
    /// Path of the CSV file, relative to the spec file. The first row is the header.
    pub file: String,
    pub mode: DataMode,
    pub on_end: OnEnd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DataMode {
    /// One cursor for all VUs of the agent; agents take disjoint rows (row % agents == agent index).
    Shared,
    /// Each VU walks the file on its own, starting at the row of its VU number.
    PerVu,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OnEnd {
    /// Start again at the first row.
    Cycle,
    /// Stop the VU (per-vu) or all VUs (shared) once the rows run out.
    Stop,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// The label results are grouped by; defaults to `METHOD /path/template`.
    pub name: String,
    pub request: Request,
    pub checks: Vec<Check>,
    pub captures: Vec<Capture>,
    pub think: Option<Think>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub method: String,
    /// Relative to the target URL (or absolute). May contain `{{var}}`.
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub query: Vec<(String, String)>,
    pub body: Option<Body>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Body {
    Raw(String),
    /// JSON text (templated as text, sent with `content-type: application/json`).
    Json(String),
    /// `application/x-www-form-urlencoded` fields.
    Form(Vec<(String, String)>),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Check {
    /// The status must be one of these.
    Status(Vec<u16>),
    Header {
        name: String,
        /// `None`: the header must merely be present.
        contains: Option<String>,
    },
    BodyContains(String),
    BodyRegex(String),
    JsonPath {
        path: String,
        /// JSON text the selected value must equal; `None`: it must exist.
        equals: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Capture {
    /// The VU variable the value is stored in.
    pub var: String,
    pub from: CaptureFrom,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CaptureFrom {
    JsonPath(String),
    /// First match of the pattern; group 1 if the pattern has groups, else the whole match.
    Regex(String),
    Header(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Think {
    Fixed { ms: u64 },
    Range { min_ms: u64, max_ms: u64 },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Load {
    pub executor: Executor,
    /// How long iterations in flight may finish after the executor's end.
    pub graceful_stop_ms: u64,
}

impl Spec {
    /// When the last of the load ends, after the start (without graceful stop): `load`'s
    /// planned length, or for a script with several scenarios the latest start + length.
    /// Saturates rather than wraps.
    pub fn planned_ms(&self) -> u64 {
        let first = self.load.executor.planned_ms();
        let Some(r) = &self.runner else { return first };
        let first = first.saturating_add(r.scenario.as_ref().map_or(0, |s| s.start_ms));
        r.more_scenarios.iter().fold(first, |end, m| {
            end.max(
                m.scenario
                    .start_ms
                    .saturating_add(m.load.executor.planned_ms()),
            )
        })
    }

    /// The longest graceful stop of any scenario.
    pub fn graceful_stop_ms(&self) -> u64 {
        let first = self.load.graceful_stop_ms;
        self.runner.as_ref().map_or(first, |r| {
            r.more_scenarios
                .iter()
                .fold(first, |g, m| g.max(m.load.graceful_stop_ms))
        })
    }
}

impl Load {
    /// What k6 runs for a script without load options: one VU, one iteration (within k6's
    /// default ten minutes), and its default 30 s graceful stop.
    pub fn k6_default() -> Load {
        Load {
            executor: Executor::SharedIterations {
                vus: 1,
                iterations: 1,
                max_duration_ms: 10 * 60 * 1000,
            },
            graceful_stop_ms: 30_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stage {
    pub duration_ms: u64,
    /// VUs (ramping-vus) or iterations per time unit (ramping-arrival-rate) at the stage's end.
    pub target: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Executor {
    ConstantVus {
        vus: u64,
        duration_ms: u64,
    },
    RampingVus {
        start_vus: u64,
        stages: Vec<Stage>,
    },
    ConstantArrivalRate {
        /// Iterations started per `time_unit_ms`.
        rate: u64,
        time_unit_ms: u64,
        duration_ms: u64,
        pre_allocated_vus: u64,
        max_vus: u64,
    },
    RampingArrivalRate {
        start_rate: u64,
        time_unit_ms: u64,
        stages: Vec<Stage>,
        pre_allocated_vus: u64,
        max_vus: u64,
    },
    PerVuIterations {
        vus: u64,
        iterations: u64,
        max_duration_ms: u64,
    },
    SharedIterations {
        vus: u64,
        iterations: u64,
        max_duration_ms: u64,
    },
}

impl Executor {
    pub fn name(&self) -> &'static str {
        match self {
            Executor::ConstantVus { .. } => "constant-vus",
            Executor::RampingVus { .. } => "ramping-vus",
            Executor::ConstantArrivalRate { .. } => "constant-arrival-rate",
            Executor::RampingArrivalRate { .. } => "ramping-arrival-rate",
            Executor::PerVuIterations { .. } => "per-vu-iterations",
            Executor::SharedIterations { .. } => "shared-iterations",
        }
    }

    /// The planned length of the load phase (without graceful stop); for iteration-based
    /// executors, their `max_duration`. A parsed spec's is within its limits; one built
    /// otherwise saturates rather than wraps.
    pub fn planned_ms(&self) -> u64 {
        match self {
            Executor::ConstantVus { duration_ms, .. }
            | Executor::ConstantArrivalRate { duration_ms, .. } => *duration_ms,
            Executor::RampingVus { stages, .. } | Executor::RampingArrivalRate { stages, .. } => {
                stages
                    .iter()
                    .fold(0, |sum, s| sum.saturating_add(s.duration_ms))
            }
            Executor::PerVuIterations {
                max_duration_ms, ..
            }
            | Executor::SharedIterations {
                max_duration_ms, ..
            } => *max_duration_ms,
        }
    }

    /// True for open-model executors, whose latency is measured from the intended start.
    pub fn is_arrival_rate(&self) -> bool {
        matches!(
            self,
            Executor::ConstantArrivalRate { .. } | Executor::RampingArrivalRate { .. }
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Agents {
    /// Not given: `herd run` uses one agent per CPU core.
    Default,
    Count(u32),
    Regions(Vec<RegionAgents>),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionAgents {
    pub region: String,
    pub count: u32,
}

impl Agents {
    /// Total agents, or `None` when the runner decides. A parsed spec's is within its limits;
    /// one built otherwise saturates rather than wraps.
    pub fn total(&self) -> Option<u32> {
        match self {
            Agents::Default => None,
            Agents::Count(n) => Some(*n),
            Agents::Regions(r) => Some(r.iter().fold(0, |sum, r| sum.saturating_add(r.count))),
        }
    }

    /// The region of agent `index` (regions are filled in the order they are listed).
    pub fn region_of(&self, index: u32) -> String {
        if let Agents::Regions(regions) = self {
            let mut left = index;
            for r in regions {
                if left < r.count {
                    return r.region.clone();
                }
                left -= r.count;
            }
        }
        "local".to_string()
    }
}

/// Regions one run may span (the AWS solution's limit too).
pub const MAX_REGIONS: usize = 5;
