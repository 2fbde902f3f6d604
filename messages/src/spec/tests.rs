use super::*;
use crate::threshold::{Metric, Op};

const GOOD: &str = r#"
name: shop
target:
  url: http://127.0.0.1:8080/
  headers: { User-Agent: herd }
  http: { version: http1, timeout: 5s }
variables:
  pass: secret
data:
  users: { file: users.csv, mode: per-vu, on_end: cycle }
scenario:
  - name: login
    request:
      method: POST
      url: /login
      json: { username: "{{users.name}}", password: "{{pass}}" }
    checks:
      - status: 200
      - json_path: $.token
    captures:
      - { var: token, json_path: $.token }
  - request:
      url: /items/{{vu}}
      headers: { Authorization: "Bearer {{token}}" }
    think: { min: 10ms, max: 20ms }
load:
  executor: ramping-arrival-rate
  start_rate: 10
  stages:
    - { duration: 10s, target: 100 }
    - { duration: 1m, target: 100 }
  pre_allocated_vus: 20
  max_vus: 200
agents:
  - { region: us-east-1, count: 2 }
  - { region: eu-west-1, count: 1 }
thresholds:
  - p95 < 500ms
  - { expr: "error_rate < 1%", label: login }
"#;

#[test]
fn a_full_spec_parses() {
    let s = parse_spec(GOOD).unwrap();
    assert_eq!(s.name, "shop");
    assert_eq!(s.target.url, "http://127.0.0.1:8080");
    assert_eq!(s.target.http.version, HttpVersion::Http1);
    assert_eq!(s.target.http.timeout_ms, 5000);
    assert_eq!(s.scenario.len(), 2);
    assert_eq!(s.scenario[1].name, "GET /items/{{vu}}");
    assert!(
        matches!(s.scenario[0].request.body, Some(Body::Json(ref j)) if j.contains("{{users.name}}"))
    );
    assert_eq!(
        s.scenario[1].think,
        Some(Think::Range {
            min_ms: 10,
            max_ms: 20
        })
    );
    assert_eq!(s.agents.total(), Some(3));
    assert_eq!(s.agents.region_of(2), "eu-west-1");
    assert_eq!(s.thresholds[1].label.as_deref(), Some("login"));
    assert_eq!(s.thresholds[0].metric, Metric::Percentile(95.0));
    assert_eq!(s.thresholds[0].op, Op::Lt);
    match s.load.executor {
        Executor::RampingArrivalRate {
            start_rate,
            ref stages,
            max_vus,
            ..
        } => {
            assert_eq!(start_rate, 10);
            assert_eq!(stages[1].duration_ms, 60_000);
            assert_eq!(max_vus, 200);
        }
        ref e => panic!("wrong executor {e:?}"),
    }
}

#[test]
fn json_specs_parse_too() {
    let src = r#"{"name":"j","target":"http://localhost:1","scenario":[{"request":"GET /"}],
        "load":{"executor":"constant-vus","vus":2,"duration":"1s"}}"#;
    let s = parse_spec(src).unwrap();
    assert_eq!(s.scenario[0].name, "GET /");
    assert_eq!(
        s.load.executor,
        Executor::ConstantVus {
            vus: 2,
            duration_ms: 1000
        }
    );
}

fn issues(src: &str) -> Vec<String> {
    match parse_spec(src) {
        Ok(_) => panic!("expected errors"),
        Err(e) => e.issues().iter().map(|i| i.to_string()).collect(),
    }
}

#[test]
fn every_problem_is_reported_at_once_with_path_and_position() {
    let src = "\
name: bad
target: { url: http://x }
scenario:
  - request: GET /
load:
  executor: ramping-vus
  stages:
    - { duration: 1s, target: 1 }
    - { duration: 2s, target: 2 }
    - { duration: 5x, target: 3 }
  vu: 3
thresholds:
  - p95 << 3
";
    let got = issues(src);
    assert!(got.contains(&"10:19: load.stages[2].duration: \"5x\" is not a duration (write e.g. \"30s\", \"1m30s\", \"500ms\")".to_string()), "{got:#?}");
    assert!(
        got.iter()
            .any(|e| e.starts_with("11:3: load.vu: unknown field `vu` for executor ramping-vus")),
        "{got:#?}"
    );
    assert!(
        got.iter().any(|e| e.starts_with("13:5: thresholds[0]:")),
        "{got:#?}"
    );
    assert_eq!(got.len(), 3, "{got:#?}");
}

#[test]
fn typos_are_errors_with_suggestions() {
    let src = "name: t\ntarget: http://x\nscenario: [{request: GET /}]\nload: {executor: constant-vus, vus: 1, duration: 1s}\nthreshold: []\n";
    let got = issues(src);
    assert_eq!(
        got,
        vec!["5:1: threshold: unknown field `threshold` in the spec (did you mean `thresholds`?)"]
    );
}

#[test]
fn missing_required_fields_are_named() {
    let got = issues("name: t\nload: {executor: constant-vus}\n");
    let joined = got.join("\n");
    assert!(joined.contains("target: is required"), "{joined}");
    assert!(joined.contains("scenario: is required"), "{joined}");
    assert!(joined.contains("load.vus: is required"), "{joined}");
    assert!(joined.contains("load.duration: is required"), "{joined}");
}

#[test]
fn unknown_template_variables_are_caught() {
    let src = "name: t\ntarget: http://x\nscenario:\n  - request: GET /items/{{idd}}\nload: {executor: constant-vus, vus: 1, duration: 1s}\n";
    let got = issues(src);
    assert!(
        got[0].contains("scenario[0].request.url: `{{idd}}` is not a variable"),
        "{got:#?}"
    );
}

#[test]
fn wrong_types_and_values_are_explained() {
    let src = "name: t\ntarget: ftp://x\nscenario:\n  - request: { method: FETCH, url: / }\n    checks: [{status: 999}, {body_regex: '('}]\nload: {executor: constant-arrival-rate, rate: -1, duration: 1s, pre_allocated_vus: 5, max_vus: 2}\nagents: many\n";
    let got = issues(src).join("\n");
    for want in [
        "target: \"ftp://x\" must be an http:// or https:// URL",
        "scenario[0].request.method: \"FETCH\" is not an HTTP method",
        "scenario[0].checks[0].status: 999 is not an HTTP status",
        "scenario[0].checks[1].body_regex: \"(\" is not a valid regex",
        "load.rate: -1 is negative",
        "load.max_vus: max_vus (2) must be at least pre_allocated_vus (5)",
        "agents: expected a number of agents or a list of {region, count}, found a string",
    ] {
        assert!(got.contains(want), "missing {want:?} in\n{got}");
    }
}

#[test]
fn syntax_errors_have_a_position() {
    match parse_spec("name: [unclosed\n") {
        Err(SpecError::Syntax { line, .. }) => assert!(line >= 1),
        other => panic!("{other:?}"),
    }
}

#[test]
fn more_than_five_regions_is_refused() {
    let regions: String = (0..6)
        .map(|i| format!("  - {{region: r{i}, count: 1}}\n"))
        .collect();
    let src = format!("name: t\ntarget: http://x\nscenario: [{{request: GET /}}]\nload: {{executor: constant-vus, vus: 1, duration: 1s}}\nagents:\n{regions}");
    assert!(issues(&src).join("\n").contains("at most 5"));
}

#[test]
fn threshold_labels_must_exist() {
    let src = "name: t\ntarget: http://x\nscenario: [{name: home, request: GET /}]\nload: {executor: constant-vus, vus: 1, duration: 1s}\nthresholds: [{expr: p95 < 1s, label: hom}]\n";
    assert!(issues(src)[0].contains("no step is labelled \"hom\""));
}

#[test]
fn min_healthy_agents_is_a_percent() {
    let base = "name: t\ntarget: http://x\nscenario: [{request: GET /}]\nload: {executor: constant-vus, vus: 1, duration: 1s}\n";
    for (v, want) in [("80%", 80), ("100", 100), ("1%", 1)] {
        let s = parse_spec(&format!("{base}min_healthy_agents: {v}\n")).expect(v);
        assert_eq!(s.min_healthy_agents, Some(want), "{v}");
    }
    assert_eq!(parse_spec(base).expect("no field").min_healthy_agents, None);
    for bad in ["0%", "101%", "80.5%", "most", "-5"] {
        let got = issues(&format!("{base}min_healthy_agents: {bad}\n"));
        assert!(
            got.iter()
                .any(|e| e.starts_with("5:21: min_healthy_agents:") && e.contains("percent")),
            "{bad}: {got:#?}"
        );
    }
}

#[test]
fn runner_engines_take_a_script_instead_of_a_scenario() {
    let base = "name: t\ntarget: http://x\nload: {executor: constant-vus, vus: 1, duration: 1s}\n";
    let s = parse_spec(&format!(
        "{base}engine: k6\nscript: load.js\ntool_args: [--no-thresholds]\n"
    ))
    .expect("k6 spec");
    let r = s.runner.clone().expect("runner");
    assert_eq!((r.engine, r.script.as_str()), (Engine::K6, "load.js"));
    assert_eq!(r.args, vec!["--no-thresholds".to_string()]);
    assert!(s.scenario.is_empty());
    assert_eq!(
        s.files(),
        vec![(SCRIPT_FILE.to_string(), "load.js".to_string())]
    );
    let got = issues(&format!("{base}engine: k7\nscript: x\n"));
    assert!(
        got.iter().any(|e| e.contains("\"k7\" is not an engine")),
        "{got:#?}"
    );
    let got = issues(&format!("{base}engine: locust\n"));
    assert!(
        got.iter()
            .any(|e| e.contains("engine: locust needs `script:`")),
        "{got:#?}"
    );
    let got = issues(&format!(
        "{base}engine: jmeter\nscript: p.jmx\nscenario: [{{request: GET /}}]\n"
    ));
    assert!(
        got.iter()
            .any(|e| e.contains("scenario is for herd's native engine")),
        "{got:#?}"
    );
    let got = issues(&format!(
        "{base}script: x.js\nscenario: [{{request: GET /}}]\n"
    ));
    assert!(
        got.iter().any(|e| e.contains("script needs engine")),
        "{got:#?}"
    );
    let got = issues(base);
    assert!(got.iter().any(|e| e.contains("scenario")), "{got:#?}");
}

#[test]
fn a_threshold_may_stop_the_run_when_it_fails() {
    let base = "name: a\ntarget: http://127.0.0.1:1\nscenario:\n  - request: GET /\nload: {executor: constant-vus, vus: 1, duration: 10s}\nthresholds:\n";
    let s = parse_spec(&format!(
        "{base}  - {{expr: p95 < 10ms, abort_on_fail: true, delay_abort_eval: 5s}}\n  - error_rate < 1%\n"
    ))
    .expect("valid");
    assert_eq!(
        s.thresholds[0].abort,
        Some(crate::threshold::AbortOnFail { delay_ms: 5_000 })
    );
    assert_eq!(s.thresholds[1].abort, None);
    let e = parse_spec(&format!(
        "{base}  - {{expr: p95 < 10ms, delay_abort_eval: 5s}}\n"
    ))
    .expect_err("delay alone");
    assert!(
        e.to_string()
            .contains("delay_abort_eval needs abort_on_fail: true"),
        "{e}"
    );
    let e = parse_spec(&format!(
        "{base}  - {{expr: p95 < baseline.p95 * 1.1, abort_on_fail: true}}\n"
    ))
    .expect_err("baseline");
    assert!(
        e.to_string().contains("abort_on_fail needs a fixed limit"),
        "{e}"
    );
}

#[test]
fn a_k6_spec_may_leave_load_and_thresholds_to_its_script() {
    let s = parse_spec("name: k\ntarget: http://127.0.0.1:1\nengine: k6\nscript: load.js\n")
        .expect("valid");
    let r = s.runner.as_ref().expect("runner");
    assert!(r.load_from_script && r.thresholds_from_script);
    assert_eq!(s.load, Load::k6_default());
    let s = parse_spec("name: k\ntarget: http://127.0.0.1:1\nengine: k6\nscript: load.js\nload: {executor: constant-vus, vus: 1, duration: 1s}\nthresholds: []\n")
        .expect("valid");
    let r = s.runner.as_ref().expect("runner");
    assert!(!r.load_from_script && !r.thresholds_from_script);
    let e = parse_spec("name: l\ntarget: http://127.0.0.1:1\nengine: locust\nscript: l.py\n")
        .expect_err("locust needs its load");
    assert!(e.to_string().contains("load"), "{e}");
}
