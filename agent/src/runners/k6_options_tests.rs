use super::*;
use messages::threshold::{AbortOnFail, Metric, Op};

/// k6's own `examples/stages.js`, as its authors wrote it.
const STAGES_JS: &str = r#"import http from "k6/http";
import { check } from "k6";

export let options = {
    stages: [
        // Ramp-up from 1 to 5 VUs in 10s
        { duration: "10s", target: 5 },
        // Stay at rest on 5 VUs for 5s
        { duration: "5s", target: 5 },
        // Ramp-down from 5 to 0 VUs for 5s
        { duration: "5s", target: 0 }
    ]
};

export default function() {
    check(http.get("http://httpbin.test.k6.io/"), {
        "status is 200": (r) => r.status == 200
    });
};
"#;

/// k6's own `examples/thresholds.js`.
const THRESHOLDS_JS: &str = r#"import http from "k6/http";

export let options = {
    thresholds: {
        http_req_duration: ["p(95)<500"],
    }
};

export default function() {
    http.get("https://test-api.k6.io/");
};
"#;

#[test]
fn stages_become_a_ramping_vus_load_starting_at_one_vu() {
    let f = read(STAGES_JS).expect("read").expect("options");
    assert_eq!(f.line, 4);
    let t = translate(&f.value, true, true).expect("translate");
    let [(load, None)] = t.scenarios.as_slice() else {
        panic!("{:?}", t.scenarios)
    };
    assert_eq!(load["executor"], "ramping-vus");
    assert_eq!(load["start_vus"], 1);
    assert_eq!(
        load["stages"][0],
        json!({"duration": "10000ms", "target": 5})
    );
    assert_eq!(
        load["stages"][2],
        json!({"duration": "5000ms", "target": 0})
    );
    let l = messages::spec::decode_load(load, &messages::spec::SpecLimits::DEFAULT)
        .expect("a valid herd load");
    assert_eq!(l.executor.planned_ms(), 20_000);
    assert!(t.thresholds.is_empty());
}

#[test]
fn thresholds_are_translated_to_herds_own() {
    let f = read(THRESHOLDS_JS).expect("read").expect("options");
    let t = translate(&f.value, true, true).expect("translate");
    assert!(
        t.scenarios.is_empty(),
        "no load options: k6's one iteration"
    );
    let [th] = t.thresholds.as_slice() else {
        panic!("{:?}", t.thresholds)
    };
    assert_eq!(th.metric, Metric::Percentile(95.0));
    assert_eq!(
        (th.op, th.value, th.label.as_deref()),
        (Op::Lt, 500.0, None)
    );
    assert_eq!(th.expr, "http_req_duration: p(95)<500");
}

#[test]
fn tag_filters_abort_on_fail_and_every_metric_herd_merges() {
    let v = json!({
        "http_req_duration{name:login}": [{"threshold": "p(99) < 300", "abortOnFail": true, "delayAbortEval": "10s"}, "avg<100", "med<=80", "max<2000", "min>=0"],
        "http_req_failed": ["rate<0.01"],
        "http_reqs": ["count>=100", "rate>10"],
        "checks": ["rate>0.9"],
        "dropped_iterations": ["count==0"],
    });
    let t = translate(&json!({"thresholds": v}), true, true).expect("translate");
    let find = |m: Metric| t.thresholds.iter().find(|x| x.metric == m).expect("metric");
    let login = find(Metric::Percentile(99.0));
    assert_eq!(login.label.as_deref(), Some("login"));
    assert_eq!(login.abort, Some(AbortOnFail { delay_ms: 10_000 }));
    assert_eq!(find(Metric::Mean).label.as_deref(), Some("login"));
    assert_eq!(find(Metric::Percentile(50.0)).op, Op::Le);
    assert_eq!(find(Metric::ErrorRate).value, 0.01);
    assert_eq!(find(Metric::Requests).op, Op::Ge);
    assert_eq!(find(Metric::Rps).value, 10.0);
    assert_eq!(find(Metric::CheckPassRate).op, Op::Gt);
    assert_eq!(find(Metric::DroppedIterations).op, Op::Eq);
    assert_eq!(t.thresholds.len(), 10);
}

#[test]
fn what_herd_cannot_judge_is_refused_by_name() {
    let errs = translate(
        &json!({"thresholds": {
            "http_req_waiting": ["p(95)<100"],
            "http_req_duration{expected_response:true}": ["p(95)<100"],
            "my_trend": ["avg<1"],
            "http_req_failed": ["rate!=0"],
            "http_req_duration": ["p(95)<abc"],
        }}),
        true,
        true,
    )
    .expect_err("refused");
    let all = errs.join("\n");
    for needle in [
        "`http_req_waiting` cannot be judged",
        "a filter on `expected_response` cannot be judged",
        "`my_trend` cannot be judged",
        "herd has no `!=` threshold",
        "`abc` is not a number",
    ] {
        assert!(all.contains(needle), "{needle} in:\n{all}");
    }
    // The spec's own thresholds replace the script's: nothing of them is judged, or refused.
    let t =
        translate(&json!({"thresholds": {"my_trend": ["avg<1"]}}), true, false).expect("not read");
    assert!(t.thresholds.is_empty() && t.notes[0].contains("replace the script's own"));
}

#[test]
fn one_named_scenario_keeps_its_name_exec_env_and_tags() {
    let src = r#"
        // export const options = { vus: 99 }  (a comment is not the declaration)
        const note = "export const options = { vus: 98 }";
        export const options = {
          scenarios: {
            browse: {
              executor: 'constant-arrival-rate',
              rate: 50, timeUnit: '1s', duration: '1m30s',
              preAllocatedVUs: 10, maxVUs: 40,
              exec: 'browse', env: { KIND: 'web' }, tags: { team: 'shop' },
              gracefulStop: '5s',
            },
          },
          discardResponseBodies: true,
        };
        export function browse() {}
    "#;
    let f = read(src).expect("read").expect("options");
    assert_eq!(f.line, 4);
    let t = translate(&f.value, true, true).expect("translate");
    let [(load, Some(sc))] = t.scenarios.as_slice() else {
        panic!("{:?}", t.scenarios)
    };
    assert_eq!(load["duration"], "90000ms");
    assert_eq!(
        (load["rate"].as_u64(), load["max_vus"].as_u64()),
        (Some(50), Some(40))
    );
    assert_eq!(load["graceful_stop"], "5000ms");
    let l = messages::spec::decode_load(load, &messages::spec::SpecLimits::DEFAULT).expect("valid");
    assert!(l.executor.is_arrival_rate() && l.graceful_stop_ms == 5_000);
    assert_eq!(
        (sc.name.as_str(), sc.exec.as_deref()),
        ("browse", Some("browse"))
    );
    assert_eq!(sc.env, vec![("KIND".into(), "web".into())]);
    assert_eq!(sc.tags, vec![("team".into(), "shop".into())]);
}

#[test]
fn shortcuts_follow_k6s_rules() {
    let load =
        |v: Value| translate(&v, true, true).map(|t| t.scenarios.first().map(|(l, _)| l.clone()));
    let c = load(json!({"vus": 10, "duration": "30s"}))
        .expect("ok")
        .expect("load");
    assert_eq!(
        (c["executor"].as_str(), c["vus"].as_u64()),
        (Some("constant-vus"), Some(10))
    );
    let i = load(json!({"vus": 2, "iterations": 40, "duration": "1m"}))
        .expect("ok")
        .expect("load");
    assert_eq!(
        (i["executor"].as_str(), i["max_duration"].as_str()),
        (Some("shared-iterations"), Some("60000ms"))
    );
    assert_eq!(
        load(json!({"insecureSkipTLSVerify": true})).expect("ok"),
        None
    );
    let e = load(json!({"vus": 10})).expect_err("no end");
    assert!(
        e[0].contains("needs duration, iterations or stages"),
        "{e:?}"
    );
    let e = load(json!({"vus": 1, "duration": "10s", "scenarios": {"a": {"executor": "constant-vus", "duration": "1s"}}}))
        .expect_err("both");
    assert!(e[0].contains("both scenarios and vus, duration"), "{e:?}");
    let t = translate(
        &json!({"scenarios": {
            "a": {"executor": "constant-vus", "duration": "1s"},
            "b": {"executor": "shared-iterations", "startTime": "2s", "exec": "b"},
        }}),
        true,
        true,
    )
    .expect("two scenarios");
    let names: Vec<(&str, u64)> = t
        .scenarios
        .iter()
        .filter_map(|(_, s)| s.as_ref().map(|s| (s.name.as_str(), s.start_ms)))
        .collect();
    assert_eq!(names, [("a", 0), ("b", 2_000)]);
    let many: Map<String, Value> = (0..17)
        .map(|i| (format!("s{i}"), json!({"executor": "shared-iterations"})))
        .collect();
    let e = load(json!({ "scenarios": many })).expect_err("too many");
    assert!(
        e[0].contains("declares 17 scenarios, more than the 16"),
        "{e:?}"
    );
    let e =
        load(json!({"scenarios": {"a": {"executor": "externally-controlled", "duration": "1s"}}}))
            .expect_err("external");
    assert!(e[0].contains("\"externally-controlled\""), "{e:?}");
    let e =
        load(json!({"scenarios": {"a": {"executor": "constant-vus", "duration": "1s", "vu": 3}}}))
            .expect_err("typo");
    assert!(
        e[0].contains("options.scenarios.a.vu is not a setting"),
        "{e:?}"
    );
}

#[test]
fn options_built_by_code_are_refused_with_their_line() {
    let e = read("import x from 'k6';\n\nexport const options = {\n  vus: __ENV.VUS || 10,\n};\n")
        .expect_err("code");
    assert!(
        e.starts_with("line 3:") && e.contains("not a plain literal"),
        "{e}"
    );
    let e = read("export const options = makeOptions();\n").expect_err("call");
    assert!(e.contains("not an object literal"), "{e}");
    let deep = format!(
        "export const options = {}{}",
        "{a:".repeat(100),
        "}".repeat(100)
    );
    assert!(read(&deep).expect_err("deep").contains("nested more than"));
    assert!(read("export const options = { vus: 1,")
        .expect_err("open")
        .contains("never closed"));
    assert_eq!(read("export default function () {}").expect("none"), None);
    // Declared, then exported by name.
    let f = read("const options = { iterations: 3 };\nexport { options };\n")
        .expect("read")
        .expect("found");
    assert_eq!(f.value["iterations"], 3);
}

#[test]
fn go_durations_as_k6_reads_them() {
    assert_eq!(go_duration_ms("1m30s"), Ok(90_000));
    assert_eq!(go_duration_ms("1.5s"), Ok(1_500));
    assert_eq!(go_duration_ms("2h"), Ok(7_200_000));
    assert_eq!(go_duration_ms("500us"), Ok(1));
    assert_eq!(go_duration_ms("0"), Ok(0));
    assert!(go_duration_ms("10").is_err());
    assert!(go_duration_ms("1d").is_err());
    assert!(go_duration_ms("").is_err());
    assert!(go_duration_ms("99999999999999h").is_err());
}

#[test]
fn a_locust_load_test_shape_is_found() {
    let src = "from locust import HttpUser, LoadTestShape, task\n\nclass U(HttpUser):\n    pass\n\nclass StagesShape(LoadTestShape):\n    stages = []\n";
    assert_eq!(
        crate::runners::locust::load_test_shape(src),
        Some((6, "StagesShape".into()))
    );
    assert_eq!(
        crate::runners::locust::load_test_shape(
            "import locust\nclass S(locust.LoadTestShape):\n  pass\n"
        ),
        Some((2, "S".into()))
    );
    assert_eq!(
        crate::runners::locust::load_test_shape(src.split("class Stages").next().unwrap_or("")),
        None
    );
}
