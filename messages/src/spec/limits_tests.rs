//! Every cap of [`SpecLimits`], each a positioned issue; the YAML budget against alias bombs
//! and deep nesting; checked sums; spec names.

use std::time::Instant;

use proptest::prelude::*;

use super::*;
use crate::split;

const HEAD: &str = "name: t\ntarget: http://x\nscenario: [{request: GET /}]\n";

/// Every issue of `src`, as `line:col: path: message`.
fn issues_with(src: &str, limits: &SpecLimits) -> Vec<String> {
    match parse_spec_with(src, limits) {
        Ok(_) => panic!("expected errors for\n{src}"),
        Err(e) => e.issues().iter().map(|i| i.to_string()).collect(),
    }
}

fn issues(src: &str) -> Vec<String> {
    issues_with(src, &SpecLimits::DEFAULT)
}

/// The one issue of a spec whose `load` (line 4) is `load`.
fn load_issue(load: &str) -> String {
    let got = issues(&format!("{HEAD}load: {load}\n"));
    assert_eq!(got.len(), 1, "{got:#?}");
    got[0].clone()
}

// ---- the YAML budget ------------------------------------------------------------------

/// Nine levels of ten aliases each: 10^9 strings from a document of about 500 bytes.
fn billion_laughs() -> String {
    let mut doc = String::from(
        "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
    );
    let names = ["a", "b", "c", "d", "e", "f", "g", "h", "i"];
    for w in names.windows(2) {
        let refs = vec![format!("*{}", w[0]); 10].join(",");
        doc.push_str(&format!("{}: &{} [{refs}]\n", w[1], w[1]));
    }
    doc
}

#[test]
fn a_billion_laughs_stops_at_the_node_budget_with_a_position() {
    let doc = billion_laughs();
    assert!(doc.len() < 1 << 20);
    let start = Instant::now();
    let got = issues(&doc);
    assert!(start.elapsed().as_secs() < 10, "took {:?}", start.elapsed());
    assert_eq!(got.len(), 1, "{got:#?}");
    assert!(
        got[0].contains("the document expands to more than 100000 YAML values")
            && got[0].contains("raise [limits] yaml_nodes in the serve config"),
        "{got:#?}"
    );
    // At the alias that went over: `e` makes 10^5 values, plus the anchors kept.
    assert!(got[0].starts_with("5:26: "), "{got:#?}");
}

#[test]
fn a_big_scalar_aliased_many_times_stops_at_the_byte_budget() {
    let doc = format!(
        "a: &a \"{}\"\nb: [{}]\n",
        "x".repeat(100_000),
        vec!["*a"; 100].join(",")
    );
    let got = issues(&doc);
    assert_eq!(got.len(), 1, "{got:#?}");
    assert!(
        got[0].starts_with("2:") && got[0].contains("more than 8388608 bytes of text"),
        "{got:#?}"
    );
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    for doc in [
        // Block sequences: yaml-rust2's scanner does not limit these.
        format!("{}x\n", "- ".repeat(200_000)),
        // Flow collections (yaml-rust2's scanner itself stops at 255 levels of these).
        format!("{}{}", "[".repeat(200), "]".repeat(200)),
        format!("{}1{}", "{a: ".repeat(200), "}".repeat(200)),
    ] {
        let got = issues(&doc);
        assert_eq!(got.len(), 1, "{got:#?}");
        assert!(
            got[0].contains("nested more than 64 deep"),
            "{}: {got:#?}",
            &doc[..10]
        );
    }
    // An alias that would nest past the limit is refused too.
    let nest = |k: usize| format!("{}1{}", "[".repeat(k), "]".repeat(k));
    let doc = format!(
        "a: &a {}\nb: {}*a{}\n",
        nest(40),
        "[".repeat(30),
        "]".repeat(30)
    );
    assert!(issues(&doc)[0].contains("nested more than 64 deep"));
    // Past 255 flow levels the scanner refuses first, as a syntax error: no overflow either.
    let got = issues(&format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)));
    assert!(got[0].contains("recursion limit exceeded"), "{got:#?}");
    // 64 levels are fine as far as the tree goes (then it is not a spec).
    let got = issues(&nest(63));
    assert!(got[0].contains("expected a mapping"), "{got:#?}");
}

#[test]
fn json_that_only_the_json_parser_reads_has_the_same_budget() {
    // A tab before a value is JSON but not YAML, so this goes through serde_json.
    let items = vec!["1"; 200_000].join(",");
    let got = issues(&format!("{{\"name\":\t[{items}]}}"));
    assert!(got[0].contains("100000 YAML values"), "{got:#?}");
}

#[test]
fn yaml_limits_can_be_raised() {
    let limits = SpecLimits {
        yaml_nodes: 300_000,
        ..SpecLimits::DEFAULT
    };
    let got = issues_with(&billion_laughs(), &limits);
    assert!(got[0].contains("more than 300000 YAML values"), "{got:#?}");
    let small = "a: &a [1, 2, 3]\nb: [*a, *a, *a]\n";
    let tight = SpecLimits {
        yaml_nodes: 10,
        ..SpecLimits::DEFAULT
    };
    assert!(issues_with(small, &tight)[0].contains("more than 10 YAML values"));
}

// ---- counts, rates, durations, iterations ----------------------------------------------

#[test]
fn vus_are_capped_everywhere_they_are_written() {
    assert_eq!(
        load_issue("{executor: constant-vus, vus: 1000000000000, duration: 1s}"),
        "4:37: load.vus: 1000000000000 is more than the limit of 100000 VUs (raise [limits] vus in the serve config)"
    );
    assert!(load_issue(
        "{executor: ramping-vus, start_vus: 100001, stages: [{duration: 1s, target: 1}]}"
    )
    .starts_with("4:42: load.start_vus: 100001 is more than the limit of 100000 VUs"));
    assert!(
        load_issue("{executor: ramping-vus, stages: [{duration: 1s, target: 200000}]}")
            .starts_with(
                "4:63: load.stages[0].target: 200000 is more than the limit of 100000 VUs"
            )
    );
    assert!(load_issue(
        "{executor: constant-arrival-rate, rate: 1, duration: 1s, pre_allocated_vus: 100001}"
    )
    .starts_with("4:83: load.pre_allocated_vus: 100001 is more than the limit"));
    assert!(load_issue("{executor: constant-arrival-rate, rate: 1, duration: 1s, pre_allocated_vus: 1, max_vus: 100001}")
        .starts_with("4:95: load.max_vus: 100001 is more than the limit"));
    assert!(load_issue("{executor: shared-iterations, vus: 100001}")
        .starts_with("4:42: load.vus: 100001 is more than the limit"));
}

#[test]
fn rates_are_capped_per_second_whatever_the_time_unit() {
    assert_eq!(
        load_issue("{executor: constant-arrival-rate, rate: 2000000, duration: 1s, pre_allocated_vus: 1}"),
        "4:47: load.rate: 2000000 is more than the limit of 1000000 iterations per second (raise [limits] rate_per_s in the serve config)"
    );
    assert!(load_issue("{executor: constant-arrival-rate, rate: 5000, time_unit: 1ms, duration: 1s, pre_allocated_vus: 1}")
        .starts_with("4:47: load.rate: 5000 per 1ms (5000000 per second) is more than the limit of 1000000 iterations per second"));
    // 59 million a minute is under a million a second.
    parse_spec(&format!("{HEAD}load: {{executor: constant-arrival-rate, rate: 59000000, time_unit: 1m, duration: 1s, pre_allocated_vus: 1}}\n")).expect("per minute");
    assert!(load_issue("{executor: ramping-arrival-rate, start_rate: 1000001, pre_allocated_vus: 1, stages: [{duration: 1s, target: 1}]}")
        .starts_with("4:52: load.start_rate: 1000001 is more than the limit"));
    assert!(load_issue("{executor: ramping-arrival-rate, pre_allocated_vus: 1, stages: [{duration: 1s, target: 18446744073709551615}]}")
        .contains("load.stages[0]"));
    assert!(load_issue("{executor: ramping-arrival-rate, pre_allocated_vus: 1, stages: [{duration: 1s, target: 9000000000000000000}]}")
        .starts_with("4:94: load.stages[0].target: 9000000000000000000 is more than the limit of 1000000 iterations per second"));
}

#[test]
fn iterations_are_capped_alone_and_as_vus_times_iterations() {
    assert_eq!(
        load_issue("{executor: shared-iterations, vus: 1, iterations: 2000000000}"),
        "4:57: load.iterations: 2000000000 is more than the limit of 1000000000 iterations (raise [limits] iterations in the serve config)"
    );
    assert_eq!(
        load_issue("{executor: per-vu-iterations, vus: 100, iterations: 20000000}"),
        "4:59: load.iterations: 100 VUs × 20000000 iterations each (2000000000) is more than the limit of 1000000000 iterations (raise [limits] iterations in the serve config)"
    );
}

#[test]
fn every_duration_is_capped() {
    let msg = "25h is more than the limit of 24h (raise [limits] duration_s in the serve config)";
    for (load, path) in [
        ("{executor: constant-vus, vus: 1, duration: 25h}", "load.duration"),
        ("{executor: per-vu-iterations, max_duration: 25h}", "load.max_duration"),
        ("{executor: constant-vus, vus: 1, duration: 1s, graceful_stop: 25h}", "load.graceful_stop"),
        ("{executor: constant-arrival-rate, rate: 1, time_unit: 25h, duration: 1s, pre_allocated_vus: 1}", "load.time_unit"),
        ("{executor: ramping-vus, stages: [{duration: 25h, target: 1}]}", "load.stages[0].duration"),
    ] {
        let got = load_issue(load);
        assert!(got.ends_with(&format!("{path}: {msg}")), "{got}");
    }
    let load = "load: {executor: constant-vus, vus: 1, duration: 1s}\n";
    for (extra, path) in [
        (
            "target: {url: http://x, http: {timeout: 25h}}\nscenario: [{request: GET /}]\n",
            "target.http.timeout",
        ),
        (
            "target: {url: http://x, http: {connect_timeout: 25h}}\nscenario: [{request: GET /}]\n",
            "target.http.connect_timeout",
        ),
        (
            "target: http://x\nscenario: [{request: GET /, think: 25h}]\n",
            "scenario[0].think",
        ),
        (
            "target: http://x\nscenario: [{request: GET /, think: {min: 1s, max: 25h}}]\n",
            "scenario[0].think.max",
        ),
    ] {
        let got = issues(&format!("name: t\n{extra}{load}"));
        assert_eq!(got.len(), 1, "{got:#?}");
        assert!(got[0].ends_with(&format!("{path}: {msg}")), "{got:#?}");
    }
}

#[test]
fn the_stages_sum_is_capped_and_checked_for_overflow() {
    let two = |d: &str| {
        format!("{{executor: ramping-vus, stages: [{{duration: {d}, target: 1}}, {{duration: {d}, target: 1}}]}}")
    };
    assert_eq!(
        load_issue(&two("13h")),
        "4:39: load.stages: the stages' total, 26h, is more than the limit of 24h (raise [limits] duration_s in the serve config)"
    );
    // Each stage near u64::MAX ms: refused one by one by default…
    let near_max = two("26000000000w");
    let got = issues(&format!("{HEAD}load: {near_max}\n"));
    assert_eq!(got.len(), 2, "{got:#?}");
    assert!(
        got.iter()
            .all(|g| g.contains("is more than the limit of 24h")),
        "{got:#?}"
    );
    // …and, with no duration limit at all, their sum overflows: an error, not a wrap.
    let unlimited = SpecLimits {
        duration_ms: u64::MAX,
        ..SpecLimits::DEFAULT
    };
    let got = issues_with(&format!("{HEAD}load: {near_max}\n"), &unlimited);
    assert_eq!(
        got,
        vec!["4:39: load.stages: the stages add up to more than 18446744073709551615ms (past what herd can count); the limit is 18446744073709551615ms (raise [limits] duration_s in the serve config)"]
    );
    let s = parse_spec_with(
        &format!("{HEAD}load: {}\n", two("12h")),
        &SpecLimits::DEFAULT,
    )
    .expect("24h in all");
    assert_eq!(s.load.executor.planned_ms(), 24 * 3_600_000);
}

#[test]
fn agents_are_capped_as_a_count_per_region_and_in_all() {
    let base = format!("{HEAD}load: {{executor: constant-vus, vus: 1, duration: 1s}}\n");
    assert_eq!(
        issues(&format!("{base}agents: 4000000000\n")),
        vec!["5:9: agents: 4000000000 is more than the limit of 10000 agents (raise [limits] agents in the serve config)"]
    );
    assert_eq!(
        issues(&format!("{base}agents: [{{region: us-east-1, count: 4000000000}}]\n")),
        vec!["5:37: agents[0].count: 4000000000 is more than the limit of 10000 agents (raise [limits] agents in the serve config)"]
    );
    assert_eq!(
        issues(&format!("{base}agents:\n  - {{region: us-east-1, count: 6000}}\n  - {{region: eu-west-1, count: 6000}}\n")),
        vec!["6:3: agents: the regions' total, 12000 agents, is more than the limit of 10000 agents (raise [limits] agents in the serve config)"]
    );
    let s = parse_spec(&format!(
        "{base}agents: [{{region: a, count: 5000}}, {{region: b, count: 5000}}]\n"
    ))
    .expect("10000 in all");
    assert_eq!(s.agents.total(), Some(10_000));
}

#[test]
fn lists_are_capped() {
    let load = "load: {executor: constant-vus, vus: 1, duration: 1s}\n";
    let steps = vec!["{request: GET /}"; 1001].join(", ");
    let got = issues(&format!(
        "name: t\ntarget: http://x\nscenario: [{steps}]\n{load}"
    ));
    assert_eq!(got, vec!["3:11: scenario: 1001 steps is more than the limit of 1000 (raise [limits] steps in the serve config)"]);

    let stages = vec!["{duration: 1s, target: 1}"; 101].join(", ");
    assert_eq!(
        load_issue(&format!("{{executor: ramping-vus, stages: [{stages}]}}")),
        "4:39: load.stages: 101 stages is more than the limit of 100 (raise [limits] stages in the serve config)"
    );

    let thresholds = vec!["p95 < 1s"; 101].join(", ");
    let got = issues(&format!("{HEAD}{load}thresholds: [{thresholds}]\n"));
    assert_eq!(got, vec!["5:13: thresholds: 101 thresholds is more than the limit of 100 (raise [limits] thresholds in the serve config)"]);

    let data: Vec<String> = (0..33)
        .map(|i| format!("d{i}: {{file: d{i}.csv}}"))
        .collect();
    let got = issues(&format!("{HEAD}{load}data: {{{}}}\n", data.join(", ")));
    assert_eq!(got, vec!["5:7: data: 33 data sources is more than the limit of 32 (raise [limits] data_sources in the serve config)"]);

    let got = issues(&format!("name: t\ntarget: {{url: http://x, http: {{redirects: 1000}}}}\nscenario: [{{request: GET /}}]\n{load}"));
    assert_eq!(got, vec!["2:43: target.http.redirects: 1000 is more than the limit of 100 redirects (raise [limits] redirects in the serve config)"]);
}

#[test]
fn numbers_past_i64_are_refused_not_wrapped() {
    assert_eq!(
        load_issue("{executor: constant-vus, vus: 100000000000000000000000, duration: 1s}"),
        "4:37: load.vus: 100000000000000000000000 is far too large a number here"
    );
}

#[test]
fn raised_limits_accept_what_the_defaults_refuse() {
    let src = format!(
        "{HEAD}load: {{executor: constant-vus, vus: 1000000000000, duration: 48h}}\nagents: [{{region: a, count: 4000000000}}]\n"
    );
    assert_eq!(issues(&src).len(), 3);
    let raised = SpecLimits {
        vus: u64::MAX,
        duration_ms: 48 * 3_600_000,
        agents: u32::MAX,
        ..SpecLimits::DEFAULT
    };
    let s = parse_spec_with(&src, &raised).expect("raised");
    assert_eq!(split::max_vus(&s.load.executor), 1_000_000_000_000);
    assert_eq!(s.agents.total(), Some(4_000_000_000));
    // Lowered limits refuse what the defaults accept.
    let low = SpecLimits {
        vus: 10,
        ..SpecLimits::DEFAULT
    };
    let src = format!("{HEAD}load: {{executor: constant-vus, vus: 20, duration: 1s}}\n");
    parse_spec(&src).expect("defaults");
    assert!(issues_with(&src, &low)[0].contains("limit of 10 VUs"));
}

// ---- names -----------------------------------------------------------------------------

#[test]
fn spec_names_are_a_safe_charset_and_length() {
    let rest = "target: http://x\nscenario: [{request: GET /}]\nload: {executor: constant-vus, vus: 1, duration: 1s}\n";
    for (name, want) in [
        ("'a#b'", "'#'"),
        ("a+b", "'+'"),
        ("a/b", "'/'"),
        ("'a b'", "' '"),
        ("a.b", "'.'"),
        (
            &"n".repeat(200),
            "is 200 characters long; a spec name has at most 64",
        ),
    ] {
        let got = issues(&format!("name: {name}\n{rest}"));
        assert_eq!(got.len(), 1, "{got:#?}");
        assert!(
            got[0].starts_with("1:7: name: ") && got[0].contains(want),
            "{got:#?}"
        );
    }
    parse_spec(&format!("name: {}\n{rest}", "n".repeat(MAX_NAME_LEN))).expect("64 chars");
}

#[test]
fn every_example_spec_is_within_the_default_limits() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../loadtest-specs");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).expect("loadtest-specs") {
        let p = e.expect("entry").path();
        if p.extension().is_some_and(|x| x == "yaml") {
            let text = std::fs::read_to_string(&p).expect("example");
            parse_spec(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            n += 1;
        }
    }
    assert!(n >= 7, "{n} examples");
}

// ---- no input panics ---------------------------------------------------------------------

fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        (0u64..200).prop_map(|v| v.to_string()),
        any::<u64>().prop_map(|v| v.to_string()),
        any::<i64>().prop_map(|v| v.to_string()),
        Just("1e30".to_string()),
        Just("100000000000000000000000".to_string()),
    ]
}

fn duration() -> impl Strategy<Value = String> {
    prop_oneof![
        (0u64..100).prop_map(|v| format!("{v}s")),
        any::<u64>().prop_map(|v| format!("{v}ms")),
        (0u64..1_000_000_000).prop_map(|v| format!("{v}y")),
        Just("0".to_string()),
    ]
}

fn load() -> impl Strategy<Value = String> {
    let stages = prop::collection::vec((duration(), number()), 1..4).prop_map(|st| {
        st.iter()
            .map(|(d, t)| format!("{{duration: {d}, target: {t}}}"))
            .collect::<Vec<_>>()
            .join(", ")
    });
    (0usize..6, number(), number(), duration(), duration(), stages, number()).prop_map(
        |(ex, a, b, d, tu, stages, agents)| {
            let load = match ex {
                0 => format!("{{executor: constant-vus, vus: {a}, duration: {d}}}"),
                1 => format!("{{executor: ramping-vus, start_vus: {a}, stages: [{stages}]}}"),
                2 => format!("{{executor: constant-arrival-rate, rate: {a}, time_unit: {tu}, duration: {d}, pre_allocated_vus: {b}}}"),
                3 => format!("{{executor: ramping-arrival-rate, start_rate: {a}, time_unit: {tu}, pre_allocated_vus: {b}, stages: [{stages}]}}"),
                4 => format!("{{executor: per-vu-iterations, vus: {a}, iterations: {b}, max_duration: {d}}}"),
                _ => format!("{{executor: shared-iterations, vus: {a}, iterations: {b}, graceful_stop: {tu}}}"),
            };
            format!("{HEAD}load: {load}\nagents: [{{region: a, count: {agents}}}, {{region: b, count: {agents}}}]\n")
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn specs_with_any_numbers_are_refused_or_within_the_limits(src in load()) {
        let l = SpecLimits::DEFAULT;
        if let Ok(s) = parse_spec(&src) {
            prop_assert!(s.load.executor.planned_ms() <= l.duration_ms);
            prop_assert!(s.load.graceful_stop_ms <= l.duration_ms);
            prop_assert!(split::max_vus(&s.load.executor) <= l.vus);
            prop_assert!(s.agents.total().unwrap_or(0) <= l.agents);
            let shares = split::split(&s.load.executor, s.agents.total().unwrap_or(1));
            prop_assert_eq!(shares.len() as u32, s.agents.total().unwrap_or(1));
        }
    }

    #[test]
    fn specs_with_any_numbers_never_panic_even_unlimited(src in load()) {
        let unlimited = SpecLimits {
            vus: u64::MAX,
            rate_per_s: u64::MAX,
            iterations: u64::MAX,
            duration_ms: u64::MAX,
            agents: u32::MAX,
            ..SpecLimits::DEFAULT
        };
        if let Ok(s) = parse_spec_with(&src, &unlimited) {
            let _ = s.load.executor.planned_ms();
            let _ = s.agents.total();
            let _ = s.agents.region_of(u32::MAX);
            let _ = split::split(&s.load.executor, 3);
        }
    }

    #[test]
    fn any_text_is_a_result_not_a_panic(src in "[-\\[\\]{}:&*a-c0-9 ,\n]{0,200}") {
        let _ = parse_spec(&src);
    }
}
