//! The native engine against a real HTTP target on 127.0.0.1: counts, rates, latency truth,
//! checks and captures. Every run is bounded (a few seconds) and stops by itself.

use std::collections::BTreeMap;
use std::time::Duration;

use herd_tests::{run, spec, start_target, start_target_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn constant_vus_requests_match_what_the_target_counted() {
    let t = start_target().await;
    let s = spec(
        "name: cv\ntarget: {url}\nscenario:\n  - request: GET /fast\n  - request: GET /items/{{vu}}\nload: {executor: constant-vus, vus: 8, duration: 2s}\n",
        &t.url(),
    );
    let out = run(&s, &BTreeMap::new()).await;
    let total = out.totals.total().unwrap();
    let seen = t.stats();
    assert!(total.requests > 100, "only {} requests", total.requests);
    assert_eq!(
        total.requests, seen.requests,
        "herd counted {} but the target saw {}",
        total.requests, seen.requests
    );
    assert_eq!(total.errors, 0);
    // Labels are the path template, not the raw URL with ids.
    assert_eq!(
        out.totals.labels.keys().collect::<Vec<_>>(),
        vec!["GET /fast", "GET /items/{{vu}}"]
    );
    assert_eq!(
        out.totals.labels["GET /fast"].requests,
        seen.by_path["/fast"]
    );
    // Every iteration is two requests; an interrupted last iteration may have sent one.
    assert!(
        out.totals.iterations * 2 <= total.requests
            && total.requests <= out.totals.iterations * 2 + 8
    );
    assert_eq!(
        total.latency.len(),
        total.requests,
        "every request has a latency sample"
    );
    assert!(total.bytes_in > 0 && total.bytes_out > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_vu_iterations_run_exactly_vus_times_iterations() {
    let t = start_target().await;
    let s = spec(
        "name: pv\ntarget: {url}\nscenario:\n  - request: GET /a\n  - request: GET /b\nload: {executor: per-vu-iterations, vus: 5, iterations: 7}\n",
        &t.url(),
    );
    let out = run(&s, &BTreeMap::new()).await;
    assert_eq!(out.totals.iterations, 35);
    assert_eq!(out.totals.total().unwrap().requests, 70);
    assert_eq!(t.stats().requests, 70);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_iterations_are_shared_exactly() {
    let t = start_target().await;
    let s = spec(
        "name: si\ntarget: {url}\nscenario: [{request: GET /}]\nload: {executor: shared-iterations, vus: 4, iterations: 53}\n",
        &t.url(),
    );
    let out = run(&s, &BTreeMap::new()).await;
    assert_eq!(out.totals.iterations, 53);
    assert_eq!(t.stats().requests, 53);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn constant_arrival_rate_starts_or_drops_every_scheduled_iteration() {
    let t = start_target().await;
    let s = spec(
        "name: car\ntarget: {url}\nscenario: [{request: GET /}]\nload: {executor: constant-arrival-rate, rate: 200, duration: 3s, pre_allocated_vus: 10, max_vus: 50}\n",
        &t.url(),
    );
    let out = run(&s, &BTreeMap::new()).await;
    // 200/s for 3 s: exactly 600 iterations are scheduled; each one either ran or was dropped.
    assert_eq!(out.totals.iterations + out.totals.dropped, 600);
    assert_eq!(t.stats().requests, out.totals.iterations);
    // Rate tolerance: a fast local target keeps up, so at most 2% may be dropped.
    assert!(out.totals.dropped <= 12, "{} dropped", out.totals.dropped);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ramping_arrival_rate_follows_the_integral_of_its_stages() {
    let t = start_target().await;
    let s = spec(
        "name: rar\ntarget: {url}\nscenario: [{request: GET /}]\nload:\n  executor: ramping-arrival-rate\n  start_rate: 0\n  pre_allocated_vus: 10\n  max_vus: 50\n  stages:\n    - {duration: 2s, target: 200}\n    - {duration: 1s, target: 200}\n",
        &t.url(),
    );
    let out = run(&s, &BTreeMap::new()).await;
    // 0→200/s over 2 s is 200 iterations, then 200 more at 200/s.
    assert_eq!(out.totals.iterations + out.totals.dropped, 400);
    assert_eq!(t.stats().requests, out.totals.iterations);
    assert!(out.totals.dropped <= 8, "{} dropped", out.totals.dropped);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ramping_vus_ramp_up_and_down() {
    let t = start_target().await;
    let s = spec(
        "name: rv\ntarget: {url}\nscenario: [{request: GET /delay/20}]\nload:\n  executor: ramping-vus\n  start_vus: 0\n  stages:\n    - {duration: 1s, target: 10}\n    - {duration: 1s, target: 10}\n    - {duration: 1s, target: 0}\n",
        &t.url(),
    );
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let (_stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let share = messages::split::split(&s.load.executor, 1).remove(0);
    let net = agent::engine::NetConfig::default();
    agent::engine::run_share(&s, &BTreeMap::new(), &share, "t", &net, stop_rx, tx)
        .await
        .unwrap();
    let mut vus = Vec::new();
    let mut requests = 0;
    while let Some(b) = rx.recv().await {
        vus.push(b.vus);
        requests += b.requests();
    }
    assert!(vus.iter().any(|v| *v >= 8), "never ramped up: {vus:?}");
    assert!(vus.iter().all(|v| *v <= 10), "exceeded the target: {vus:?}");
    assert_eq!(requests, t.stats().requests);
    // ~10 VUs × 50 req/s × 2 s at full ramp: far more than one stage would give.
    assert!(requests > 300, "{requests}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_target_shows_in_the_open_models_p99() {
    let t = start_target().await;
    let url = t.url();
    let stall = async {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        stall_target(&url, 1000).await;
    };
    let s = spec(
        "name: stall\ntarget: {url}\nscenario: [{request: GET /}]\nload: {executor: constant-arrival-rate, rate: 100, duration: 3s, pre_allocated_vus: 20, max_vus: 200}\n",
        &url,
    );
    let none = BTreeMap::new();
    let (out, _) = tokio::join!(run(&s, &none), stall);
    let p99_open = out.totals.total().unwrap().latency.value_at_quantile(0.99);
    assert!(
        p99_open >= 900_000,
        "open-model p99 {p99_open}µs hides a 1 s stall"
    );
    assert_eq!(out.totals.iterations + out.totals.dropped, 300);

    // The closed model with few VUs sends few requests during the stall: it may hide it.
    t.reset();
    let s = spec(
        "name: stall2\ntarget: {url}\nscenario: [{request: GET /}]\nload: {executor: constant-vus, vus: 4, duration: 3s}\n",
        &url,
    );
    let stall = async {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        stall_target(&url, 1000).await;
    };
    let none = BTreeMap::new();
    let (out, _) = tokio::join!(run(&s, &none), stall);
    let p99_closed = out.totals.total().unwrap().latency.value_at_quantile(0.99);
    eprintln!("p99 open {p99_open}µs vs closed {p99_closed}µs");
    assert!(p99_closed < p99_open);
}

async fn stall_target(url: &str, ms: u64) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = url.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("POST /__stall?ms={ms} HTTP/1.1\r\nhost: {addr}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_capture_then_authorized_call_with_csv_users() {
    let t = start_target().await;
    let s = spec(
        r#"name: login
target: {url}
data:
  users: { file: users.csv, mode: shared, on_end: cycle }
scenario:
  - name: login
    request:
      method: POST
      url: /login
      json: { username: "{{users.name}}", password: "{{users.pass}}" }
    checks:
      - status: 200
      - json_path: { path: $.user, equals: "{{users.name}}" }
    captures:
      - { var: token, json_path: $.token }
  - name: me
    request:
      url: /me
      headers: { Authorization: "Bearer {{token}}" }
    checks:
      - status: 200
      - body_regex: '"user":"(ann|bob|cy)"'
      - header: { name: content-type, contains: json }
  - name: expected-miss
    request: GET /fast
    checks:
      - body_contains: nope
load: {executor: per-vu-iterations, vus: 3, iterations: 4}
"#,
        &t.url(),
    );
    let mut data = BTreeMap::new();
    data.insert(
        "users".to_string(),
        b"name,pass\nann,1\nbob,2\ncy,3\n".to_vec(),
    );
    let out = run(&s, &data).await;
    let login = &out.totals.labels["login"];
    let me = &out.totals.labels["me"];
    assert_eq!(login.requests, 12);
    assert_eq!(me.requests, 12);
    assert_eq!(me.errors, 0, "authorized calls failed: {:?}", me.status);
    assert_eq!(me.status.get(&200), Some(&12));
    assert_eq!(me.checks_failed, 0);
    // `equals` was given a template-looking string: it compares literally, so it fails; the
    // status check and the capture pass.
    assert_eq!(login.checks_passed, 12 * 2);
    assert_eq!(login.checks_failed, 12);
    let miss = &out.totals.labels["expected-miss"];
    assert_eq!(
        (miss.checks_passed, miss.checks_failed, miss.errors),
        (0, 12, 0)
    );
    assert_eq!(t.stats().by_path["/me"], 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthorized_calls_are_errors_and_failed_checks() {
    let t = start_target().await;
    let s = spec(
        "name: unauth\ntarget: {url}\nscenario:\n  - request: GET /me\n    checks: [{status: 200}]\n  - request: GET /status/503\nload: {executor: per-vu-iterations, vus: 2, iterations: 3}\n",
        &t.url(),
    );
    let out = run(&s, &BTreeMap::new()).await;
    let me = &out.totals.labels["GET /me"];
    assert_eq!((me.requests, me.errors, me.checks_failed), (6, 6, 6));
    assert_eq!(me.status.get(&401), Some(&6));
    let st = &out.totals.labels["GET /status/503"];
    assert_eq!((st.requests, st.errors), (6, 6));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_are_counted_as_failed_requests_without_a_response() {
    let t = start_target().await;
    let s = spec(
        "name: to\ntarget: {url: '{url}', http: {timeout: 200ms}}\nscenario: [{request: GET /delay/1000}]\nload: {executor: per-vu-iterations, vus: 2, iterations: 2}\n",
        &t.url(),
    );
    let out = run(&s, &BTreeMap::new()).await;
    let total = out.totals.total().unwrap();
    assert_eq!(total.requests, 4);
    assert_eq!(total.errors, 4);
    assert_eq!(total.status.get(&0), Some(&4));
    assert_eq!(total.error_kinds.get("timeout"), Some(&4));
    // Latency of a timed-out request is the time waited, not zero.
    assert!(total.latency.min() >= 190_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_are_followed_and_cookies_kept_per_vu() {
    let t = start_target().await;
    let s = spec(
        "name: rc\ntarget: {url}\nscenario:\n  - request: GET /redirect/3\n    checks: [{status: 200}]\n  - request: GET /cookie/set?session=vu{{vu}}\n  - request: GET /cookie/get\n    checks: [{body_regex: 'session=vu[12]'}]\nload: {executor: per-vu-iterations, vus: 2, iterations: 2}\n",
        &t.url(),
    );
    let out = run(&s, &BTreeMap::new()).await;
    let total = out.totals.total().unwrap();
    assert_eq!(total.checks_failed, 0, "{:?}", out.summary);
    // 4 redirect chains of 4 requests each reach the target, counted by it; herd counts one
    // request per step (the chain's latency is the whole chain's).
    assert_eq!(out.totals.labels["GET /redirect/3"].requests, 4);
    assert_eq!(
        t.stats()
            .by_path
            .iter()
            .filter(|(p, _)| p.starts_with("/redirect/"))
            .map(|(_, n)| n)
            .sum::<u64>(),
        16
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_and_tls_h2_both_work() {
    let t = start_target().await;
    let s = spec(
        "name: h2c\ntarget: {url: '{url}', http: {version: h2c}}\nscenario: [{request: GET /fast, checks: [{status: 200}]}]\nload: {executor: per-vu-iterations, vus: 2, iterations: 5}\n",
        &t.url(),
    );
    let out = run(&s, &BTreeMap::new()).await;
    assert_eq!(out.totals.total().unwrap().checks_passed, 10);

    let tls = start_target_with(true).await;
    let s = spec(
        "name: h2\ntarget: {url: '{url}', http: {version: http2, insecure: true}}\nscenario: [{request: GET /fast, checks: [{status: 200}]}]\nload: {executor: per-vu-iterations, vus: 2, iterations: 5}\n",
        &tls.url(),
    );
    let out = run(&s, &BTreeMap::new()).await;
    let total = out.totals.total().unwrap();
    assert_eq!(
        (total.requests, total.checks_passed),
        (10, 10),
        "{:?}",
        out.summary
    );
    assert_eq!(tls.stats().requests, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_stop_cuts_off_iterations_that_run_too_long() {
    let t = start_target().await;
    let s = spec(
        "name: gs\ntarget: {url}\nscenario:\n  - request: GET /fast\n  - request: GET /delay/5000\nload: {executor: constant-vus, vus: 3, duration: 1s, graceful_stop: 300ms}\n",
        &t.url(),
    );
    let begun = std::time::Instant::now();
    let out = run(&s, &BTreeMap::new()).await;
    assert!(
        begun.elapsed() < Duration::from_secs(4),
        "took {:?}",
        begun.elapsed()
    );
    assert!(out.report.interrupted);
    // The completed first steps were measured and flushed although their VUs were cut off.
    assert_eq!(out.totals.labels["GET /fast"].requests, 3);
    assert!(!out.totals.labels.contains_key("GET /delay/5000"));
    assert_eq!(out.totals.iterations, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_reuses_its_connection_and_reports_timings() {
    use agent::http::{tls, Client, HttpConfig, Origin, OutRequest};
    let t = start_target().await;
    let addr = t.local_addr();
    let cfg = std::sync::Arc::new(HttpConfig {
        version: messages::spec::HttpVersion::Http1,
        timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(5),
        max_redirects: 0,
        cookies: false,
        tls: tls::client_config(messages::spec::HttpVersion::Http1, false, &[]),
        policy: Default::default(),
        versions: Default::default(),
    });
    let mut c = Client::new(cfg);
    let origin = Origin {
        tls: false,
        host: addr.ip().to_string(),
        port: addr.port(),
    };
    let req = OutRequest::new(
        http::Method::GET,
        origin,
        "/delay/30".into(),
        Default::default(),
        Default::default(),
    )
    .unwrap();
    let first = c.send(&req, true).await.unwrap();
    let second = c.send(&req, true).await.unwrap();
    assert_eq!((first.status, second.status), (200, 200));
    assert!(
        first.timings.connect > Duration::ZERO,
        "a new connection was timed"
    );
    assert_eq!(
        second.timings.connect,
        Duration::ZERO,
        "the second request reused the connection"
    );
    for r in [&first, &second] {
        assert!(r.timings.first_byte >= Duration::from_millis(30));
        assert!(r.timings.total >= r.timings.first_byte);
        assert!(r.bytes_in > 0 && r.bytes_out > 0);
    }
    assert_eq!(&second.body[..], b"ok");
}
