//! How much one spec may ask for: a cap on every count, rate, duration and iteration field, and
//! on the YAML tree itself (values produced through aliases, nesting), so that a spec of a few
//! lines cannot ask for 10^12 VUs, four billion agents or a billion-node tree.
//!
//! The defaults ([`SpecLimits::DEFAULT`], one `DEFAULT_*` constant each) are what `herd run`,
//! `herd validate` and `herd agent --standalone` use; `herd serve` reads them from the `[limits]`
//! section of its config, so a deployment can raise (or lower) them. A value over a limit is an
//! ordinary positioned [`super::SpecIssue`] naming the limit and the config key that raises it.
//!
//! Spec names are not limits: their charset and length ([`MAX_NAME_LEN`], [`check_name`]) are
//! fixed by what a name becomes — run ids, MQTT topics, result folders and IoT thing names.

/// Most VUs: `vus`, `start_vus`, `pre_allocated_vus`, `max_vus` and `ramping-vus` stage targets.
pub const DEFAULT_MAX_VUS: u64 = 100_000;
/// Most iterations started per second: `rate`, `start_rate` and `ramping-arrival-rate` stage
/// targets, each over its `time_unit`.
pub const DEFAULT_MAX_RATE_PER_S: u64 = 1_000_000;
/// Most iterations: `iterations`, and `per-vu-iterations`' VUs × iterations.
pub const DEFAULT_MAX_ITERATIONS: u64 = 1_000_000_000;
/// Longest duration, 24 h: every duration field (`duration`, each stage, `max_duration`,
/// `graceful_stop`, `time_unit`, think times, HTTP timeouts) and the stages' sum.
pub const DEFAULT_MAX_DURATION_MS: u64 = 24 * 60 * 60 * 1000;
/// Most agents: a plain `agents` count, each region's count and the regions' sum (also
/// `herd run --agents` and a pipeline event's `overrides.agents`).
pub const DEFAULT_MAX_AGENTS: u32 = 10_000;
/// Most `load.stages`.
pub const DEFAULT_MAX_STAGES: usize = 100;
/// Most `scenario` steps.
pub const DEFAULT_MAX_STEPS: usize = 1_000;
/// Most `thresholds`.
pub const DEFAULT_MAX_THRESHOLDS: usize = 100;
/// Most `data` sources.
pub const DEFAULT_MAX_DATA_SOURCES: usize = 32;
/// Most `target.http.redirects`.
pub const DEFAULT_MAX_REDIRECTS: u32 = 100;
/// Most YAML values (scalars, keys, lists, mappings) made while reading the document; an alias
/// counts its anchor's values again each time it is used, and so does keeping the anchor.
pub const DEFAULT_MAX_YAML_NODES: usize = 100_000;
/// Most lists and mappings nested in one another.
pub const DEFAULT_MAX_YAML_DEPTH: usize = 64;
/// Most bytes of scalars and keys made while reading the document, aliases counted as above.
pub const DEFAULT_MAX_YAML_BYTES: usize = 8 << 20;

/// Longest spec name. The name goes into the run id `<name>-<stamp>-<hex>` and so into the IoT
/// thing name `herd-<run>-agent-<index>`, which CreateThing caps at 128 characters: 64 leaves
/// room for the 44 characters around it with any `u32` index.
pub const MAX_NAME_LEN: usize = 64;

/// The caps one spec is checked against. See the `DEFAULT_*` constants for what each covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecLimits {
    pub vus: u64,
    pub rate_per_s: u64,
    pub iterations: u64,
    pub duration_ms: u64,
    pub agents: u32,
    pub stages: usize,
    pub steps: usize,
    pub thresholds: usize,
    pub data_sources: usize,
    pub redirects: u32,
    pub yaml_nodes: usize,
    pub yaml_depth: usize,
    pub yaml_bytes: usize,
}

impl SpecLimits {
    pub const DEFAULT: SpecLimits = SpecLimits {
        vus: DEFAULT_MAX_VUS,
        rate_per_s: DEFAULT_MAX_RATE_PER_S,
        iterations: DEFAULT_MAX_ITERATIONS,
        duration_ms: DEFAULT_MAX_DURATION_MS,
        agents: DEFAULT_MAX_AGENTS,
        stages: DEFAULT_MAX_STAGES,
        steps: DEFAULT_MAX_STEPS,
        thresholds: DEFAULT_MAX_THRESHOLDS,
        data_sources: DEFAULT_MAX_DATA_SOURCES,
        redirects: DEFAULT_MAX_REDIRECTS,
        yaml_nodes: DEFAULT_MAX_YAML_NODES,
        yaml_depth: DEFAULT_MAX_YAML_DEPTH,
        yaml_bytes: DEFAULT_MAX_YAML_BYTES,
    };

    /// An agent count from outside the spec (`--agents`, a request's override), checked like
    /// the spec's own.
    pub fn check_agents(&self, n: u64) -> Result<(), String> {
        if n > u64::from(self.agents) {
            return Err(over(n, &format!("{} agents", self.agents), "agents"));
        }
        Ok(())
    }
}

impl Default for SpecLimits {
    fn default() -> Self {
        SpecLimits::DEFAULT
    }
}

/// The message for a value over a limit: what was asked, the limit, and the `[limits]` key of
/// `herd serve`'s config that raises it.
pub(crate) fn over(value: impl std::fmt::Display, limit: &str, key: &str) -> String {
    format!("{value} is more than the limit of {limit} (raise [limits] {key} in the serve config)")
}

/// Milliseconds as the user would write them: `24h`, `90m`, `1500ms`.
pub(crate) fn show_ms(ms: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(3_600_000, "h"), (60_000, "m"), (1_000, "s")];
    for (size, unit) in UNITS {
        if ms >= size && ms % size == 0 {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

/// Checks a spec name: 1 to [`MAX_NAME_LEN`] ASCII letters, digits, `_` and `-`, starting with
/// a letter or digit. The name becomes part of MQTT topics (where `+`, `#` and `/` are
/// wildcards and separators), result folders and S3 keys, and IoT thing names (CreateThing
/// allows only `[a-zA-Z0-9:_-]`, so not even `.`).
pub fn check_name(name: &str) -> Result<(), String> {
    let len = name.chars().count();
    if len > MAX_NAME_LEN {
        return Err(format!(
            "is {len} characters long; a spec name has at most {MAX_NAME_LEN} (it becomes part of run ids, MQTT topics and IoT thing names)"
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        return Err(format!(
            "{name:?} contains {bad:?}; a spec name is ASCII letters, digits, `_` and `-` only (it becomes part of run ids, MQTT topics, result folders and IoT thing names)"
        ));
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(format!("{name:?} must start with a letter or a digit"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_shown_in_the_largest_exact_unit() {
        assert_eq!(show_ms(DEFAULT_MAX_DURATION_MS), "24h");
        assert_eq!(show_ms(90 * 60_000), "90m");
        assert_eq!(show_ms(1_500), "1500ms");
        assert_eq!(show_ms(0), "0ms");
    }

    #[test]
    fn outside_agent_counts_are_checked_like_the_spec_s() {
        let l = SpecLimits::default();
        assert_eq!(l.check_agents(10_000), Ok(()));
        assert_eq!(
            l.check_agents(4_000_000_000).unwrap_err(),
            "4000000000 is more than the limit of 10000 agents (raise [limits] agents in the serve config)"
        );
    }

    #[test]
    fn safe_names_pass_and_the_rest_say_why() {
        for ok in [
            "shop",
            "k6-shop",
            "bench_http-throughput",
            "r0",
            &"a".repeat(64),
        ] {
            assert_eq!(check_name(ok), Ok(()), "{ok}");
        }
        for (bad, why) in [
            ("a#b", "'#'"),
            ("a+b", "'+'"),
            ("a/b", "'/'"),
            ("a b", "' '"),
            ("a.b", "'.'"),
            ("ünï", "'ü'"),
            ("-x", "must start with a letter or a digit"),
            (&"a".repeat(200), "200 characters long"),
        ] {
            let e = check_name(bad).expect_err(bad);
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
