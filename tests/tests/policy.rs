//! The target policy enforced by the native engine against a real target on 127.0.0.1: a
//! refused request is an error of kind `policy`, counted like any other, and never reaches the
//! target — whether the URL is static, templated, a redirect hop, or a name whose address is
//! denied.

use std::collections::BTreeMap;

use agent::engine::NetConfig;
use herd_tests::{run_with, spec, start_target};
use messages::metrics::LabelStats;
use messages::policy::{parse_rules, private_ranges, TargetPolicy};

fn flags(allow: &[&str], deny: &[&str]) -> NetConfig {
    NetConfig::with_policy(TargetPolicy::from_flags(allow, deny).expect("test rules parse"))
}

fn policy_errors(s: &LabelStats) -> u64 {
    s.error_kinds.get("policy").copied().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_target_fails_every_request_with_kind_policy_and_the_target_sees_none() {
    let t = start_target().await;
    let s = spec(
        "name: deny\ntarget: {url}\nscenario: [{request: GET /fast}]\nload: {executor: per-vu-iterations, vus: 3, iterations: 4}\n",
        &t.url(),
    );
    let out = run_with(&s, &BTreeMap::new(), &flags(&[], &["127.0.0.1/32"])).await;
    let total = out.totals.total().expect("totals");
    assert_eq!(out.totals.iterations, 12);
    assert_eq!((total.requests, total.errors), (12, 12));
    assert_eq!(policy_errors(&total), 12, "{:?}", total.error_kinds);
    assert_eq!(
        total.status.get(&0).copied(),
        Some(12),
        "{:?}",
        total.status
    );
    assert_eq!(t.stats().requests, 0);

    // An allow list that names the target lets the same spec through, resolved and checked
    // per connection.
    let out = run_with(&s, &BTreeMap::new(), &flags(&["127.0.0.1"], &[])).await;
    let total = out.totals.total().expect("totals");
    assert_eq!((total.requests, total.errors), (12, 0));
    assert_eq!(t.stats().requests, 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_to_a_denied_host_is_not_followed() {
    let t = start_target().await;
    let port = t.local_addr().port();
    let yaml = format!(
        "name: redirect\ntarget: {{url}}\nscenario:\n  - request: GET /redirect-to?url=http://127.0.0.2:{port}/fast\n    name: to-ip\n  - request: GET /redirect-to?url=http://denied.test:{port}/fast\n    name: to-name\n  - request: GET /redirect/2\nload: {{executor: per-vu-iterations, vus: 2, iterations: 3}}\n"
    );
    let s = spec(&yaml, &t.url());
    let out = run_with(
        &s,
        &BTreeMap::new(),
        &flags(&[], &["127.0.0.2", "denied.test"]),
    )
    .await;
    let by_label = &out.totals.labels;
    for label in ["to-ip", "to-name"] {
        let l = &by_label[label];
        assert_eq!(
            (l.requests, l.errors, policy_errors(l)),
            (6, 6, 6),
            "{label}"
        );
    }
    // Redirects the policy allows are still followed.
    let own = &by_label["GET /redirect/2"];
    assert_eq!((own.requests, own.errors), (6, 0));
    let seen = t.stats();
    // Each denied redirect reached the target once (its first hop), never its `Location`.
    assert_eq!(seen.by_path["/redirect-to"], 12);
    assert_eq!(seen.by_path.get("/fast"), None);
    assert_eq!(seen.requests, 12 + 6 * 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_templated_url_that_renders_to_a_denied_host_is_refused_at_request_time() {
    let t = start_target().await;
    let port = t.local_addr().port();
    let yaml = format!(
        "name: tpl\ntarget: {{url}}\nvariables: {{elsewhere: '127.0.0.3'}}\nscenario:\n  - request: GET /fast\n  - request: GET http://{{{{elsewhere}}}}:{port}/items/{{{{vu}}}}\n    name: elsewhere\nload: {{executor: per-vu-iterations, vus: 2, iterations: 5}}\n"
    );
    let s = spec(&yaml, &t.url());
    let out = run_with(&s, &BTreeMap::new(), &flags(&[], &["127.0.0.3/32"])).await;
    let refused = &out.totals.labels["elsewhere"];
    assert_eq!(
        (refused.requests, refused.errors, policy_errors(refused)),
        (10, 10, 10)
    );
    let fast = &out.totals.labels["GET /fast"];
    assert_eq!((fast.requests, fast.errors), (10, 0));
    assert_eq!(t.stats().requests, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_the_policy_allows_is_refused_when_it_resolves_to_a_denied_address() {
    let t = start_target().await;
    let url = format!("http://localhost:{}", t.local_addr().port());
    let s = spec(
        "name: rebind\ntarget: {url}\nscenario: [{request: GET /fast}]\nload: {executor: per-vu-iterations, vus: 2, iterations: 3}\n",
        &url,
    );
    // The name is allowed; every address it resolves to is denied.
    let by_rule = flags(&["localhost"], &["127.0.0.0/8", "::1"]);
    // The AWS default: a name alone does not lift the reserved ranges.
    let reserved = NetConfig::with_policy(TargetPolicy {
        allow: parse_rules(&["localhost"]).expect("rule"),
        reserved: private_ranges(),
        ..TargetPolicy::default()
    });
    for net in [by_rule, reserved] {
        let out = run_with(&s, &BTreeMap::new(), &net).await;
        let total = out.totals.total().expect("totals");
        assert_eq!(
            (total.requests, total.errors, policy_errors(&total)),
            (6, 6, 6),
            "{:?} under {}",
            total.error_kinds,
            net.policy
        );
    }
    assert_eq!(t.stats().requests, 0);
}
