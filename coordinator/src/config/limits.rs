//! `[limits]`: what one spec may ask of `herd serve`.

use messages::spec::SpecLimits;
use serde::Deserialize;

/// `[limits]`: raises (or lowers) the caps every spec this service reads is checked against —
/// [`SpecLimits`], whose `DEFAULT_MAX_*` constants say what each covers and its default.
#[derive(Debug, Clone, Deserialize, Default, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// VUs (`vus`, `start_vus`, `pre_allocated_vus`, `max_vus`, ramping-vus stage targets).
    pub vus: Option<u64>,
    /// Iterations started per second (`rate`, `start_rate`, ramping-arrival-rate targets).
    pub rate_per_s: Option<u64>,
    /// `iterations`, and per-vu-iterations' VUs × iterations.
    pub iterations: Option<u64>,
    /// Longest duration, in seconds: every duration field and the stages' sum.
    pub duration_s: Option<u64>,
    /// Agents: a count, each region's count, their sum, and a request's override.
    pub agents: Option<u32>,
    pub stages: Option<usize>,
    pub steps: Option<usize>,
    pub thresholds: Option<usize>,
    pub data_sources: Option<usize>,
    pub redirects: Option<u32>,
    /// YAML values made while reading a spec, alias uses counted again.
    pub yaml_nodes: Option<usize>,
    /// Lists and mappings nested in one another (at most [`MAX_YAML_DEPTH`]).
    pub yaml_depth: Option<usize>,
    /// Bytes of YAML text made while reading a spec, alias uses counted again.
    pub yaml_bytes: Option<usize>,
}

/// The most `[limits] yaml_depth` may be: trees are dropped, cloned and turned into JSON by
/// recursion, one stack frame a level.
pub const MAX_YAML_DEPTH: usize = 1_000;

impl LimitsConfig {
    pub fn spec_limits(&self) -> SpecLimits {
        let d = SpecLimits::DEFAULT;
        SpecLimits {
            vus: self.vus.unwrap_or(d.vus),
            rate_per_s: self.rate_per_s.unwrap_or(d.rate_per_s),
            iterations: self.iterations.unwrap_or(d.iterations),
            duration_ms: self
                .duration_s
                .map_or(d.duration_ms, |s| s.saturating_mul(1000)),
            agents: self.agents.unwrap_or(d.agents),
            stages: self.stages.unwrap_or(d.stages),
            steps: self.steps.unwrap_or(d.steps),
            thresholds: self.thresholds.unwrap_or(d.thresholds),
            data_sources: self.data_sources.unwrap_or(d.data_sources),
            redirects: self.redirects.unwrap_or(d.redirects),
            yaml_nodes: self.yaml_nodes.unwrap_or(d.yaml_nodes),
            yaml_depth: self.yaml_depth.unwrap_or(d.yaml_depth),
            yaml_bytes: self.yaml_bytes.unwrap_or(d.yaml_bytes),
        }
    }

    pub(super) fn check(&self) -> Result<(), String> {
        let given = [
            ("vus", self.vus),
            ("rate_per_s", self.rate_per_s),
            ("iterations", self.iterations),
            ("duration_s", self.duration_s),
            ("agents", self.agents.map(u64::from)),
            ("stages", self.stages.map(|v| v as u64)),
            ("steps", self.steps.map(|v| v as u64)),
            ("yaml_nodes", self.yaml_nodes.map(|v| v as u64)),
            ("yaml_depth", self.yaml_depth.map(|v| v as u64)),
            ("yaml_bytes", self.yaml_bytes.map(|v| v as u64)),
        ];
        // A cap of 0 here would refuse every spec; thresholds, data sources and redirects may
        // be 0 (none allowed).
        if let Some((key, _)) = given.iter().find(|(_, v)| *v == Some(0)) {
            return Err(format!("[limits] {key} must be at least 1"));
        }
        if self.yaml_depth.is_some_and(|d| d > MAX_YAML_DEPTH) {
            return Err(format!(
                "[limits] yaml_depth must be at most {MAX_YAML_DEPTH}"
            ));
        }
        Ok(())
    }
}
