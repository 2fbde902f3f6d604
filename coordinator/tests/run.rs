//! `herd run` end to end: real `herd` processes (coordinator and agents), a real broker
//! (embedded rumqttd or mosquitto) and a real target on 127.0.0.1. Bounded runs of seconds.

use std::collections::HashSet;
use std::time::Duration;

use herd_tests::{
    agent_pids, run_dir, spawn_run, start_mosquitto, start_target, summary, wait_for_run_id,
};
use messages::wire::{self, Body};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

/// The `herd` binary cargo built for these tests.
fn herd() -> &'static std::path::Path {
    std::path::Path::new(env!("CARGO_BIN_EXE_herd"))
}

const CLOSED: &str = "name: closed\ntarget: {url}\nscenario:\n  - request: GET /fast\n  - request: GET /items/{{vu}}\nload: {executor: constant-vus, vus: 6, duration: 3s}\nthresholds: ['error_rate < 1%']\n";

fn p99_ms(v: &serde_json::Value) -> f64 {
    v["latency_ms"]["p99"].as_f64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_agents_count_what_the_target_saw_and_p99_is_that_of_the_union() {
    let t = start_target().await;
    // Our own broker, so the test can listen to every batch the agents publish.
    let addr = coordinator::broker::start(0, None).unwrap();
    let mut opts = MqttOptions::new("test-listener", "127.0.0.1", addr.port());
    opts.set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut el) = AsyncClient::new(opts, 100);
    client
        .subscribe("herd/runs/+/agents/+/metrics", QoS::AtLeastOnce)
        .await
        .unwrap();
    client
        .subscribe("herd/runs/+/live", QoS::AtMostOnce)
        .await
        .unwrap();
    client
        .subscribe("herd/runs/+/result", QoS::AtLeastOnce)
        .await
        .unwrap();
    let result_doc = std::sync::Arc::new(std::sync::Mutex::new(None::<serde_json::Value>));
    let result_sink = result_doc.clone();
    let live_docs = std::sync::Arc::new(std::sync::Mutex::new(Vec::<serde_json::Value>::new()));
    let live_sink = live_docs.clone();
    // Every batch any agent publishes, de-duplicated, merged here independently.
    let collected = std::sync::Arc::new(std::sync::Mutex::new((
        messages::metrics::new_histogram(),
        0u64,
        HashSet::new(),
    )));
    let sink = collected.clone();
    let listener = tokio::spawn(async move {
        while let Ok(ev) = el.poll().await {
            if let Event::Incoming(Packet::Publish(p)) = ev {
                if p.topic.ends_with("/result") {
                    *result_sink.lock().unwrap() = serde_json::from_slice(&p.payload).ok();
                    continue;
                }
                if p.topic.ends_with("/live") {
                    if let Ok(doc) = serde_json::from_slice(&p.payload) {
                        live_sink.lock().unwrap().push(doc);
                    }
                    continue;
                }
                // An agent's frame: [1][envelope][32-byte MAC]. The test reads the envelope
                // without the key (it only counts; the coordinator checks the MAC).
                let Some(inner) = p.payload.get(1..p.payload.len().saturating_sub(32)) else {
                    continue;
                };
                let Ok(env) = wire::decode(inner) else {
                    continue;
                };
                if let Body::Metrics(b) = env.body {
                    let mut g = sink.lock().unwrap();
                    if g.2.insert((env.sender.clone(), env.seq)) {
                        for l in &b.labels {
                            let st = l.to_stats().unwrap();
                            g.1 += st.requests;
                            g.0.add(&st.latency).unwrap();
                        }
                    }
                }
            }
        }
    });
    let broker = format!("mqtt://127.0.0.1:{}", addr.port());
    let run = spawn_run(
        herd(),
        CLOSED,
        &t.url(),
        &["--agents", "3", "--quiet", "--broker", &broker],
    );
    let (code, stdout, stderr, results) = run.finish().await;
    assert_eq!(code, Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let s = summary(results.path());
    let total = s["total"]["requests"].as_u64().unwrap();
    assert!(total > 100, "{total}");
    assert_eq!(
        total,
        t.stats().requests,
        "summary.json vs what the target counted"
    );
    assert_eq!(s["agents_lost"], 0);
    assert_eq!(s["state"], "completed");
    assert_eq!(s["verdict"], "passed");
    assert!(s["start_skew_ms"].as_u64().unwrap() < 1000);
    assert_eq!(s["agents"].as_array().unwrap().len(), 3);
    // The per-second series covers the run without holes and adds up to the total.
    let dir = run_dir(results.path());
    let rows: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(dir.join("timeseries.json")).unwrap()).unwrap();
    let seconds: Vec<u64> = rows.iter().map(|r| r["second"].as_u64().unwrap()).collect();
    assert!(seconds.len() >= 3, "{seconds:?}");
    assert!(
        seconds.windows(2).all(|w| w[1] == w[0] + 1),
        "holes in {seconds:?}"
    );
    assert_eq!(
        rows.iter()
            .map(|r| r["total"]["requests"].as_u64().unwrap())
            .sum::<u64>(),
        total
    );
    let csv = std::fs::read_to_string(dir.join("timeseries.csv")).unwrap();
    assert!(
        csv.starts_with("second,label,requests,errors,rps,p50_ms,p90_ms,p95_ms,p99_ms,max_ms,vus,time,elapsed_s,error_rate,iterations,dropped_iterations\n"),
        "{csv}"
    );
    // The first TOTAL row: an ISO time and the seconds elapsed at its end.
    let first: Vec<&str> = csv.lines().nth(1).unwrap().split(',').collect();
    assert_eq!(first[1], "TOTAL");
    assert!(
        first[11].ends_with('Z') && first[11].contains('T'),
        "{first:?}"
    );
    let elapsed: f64 = first[12].parse().unwrap();
    assert!((0.0..=2.0).contains(&elapsed), "{first:?}");
    assert!(std::fs::read_to_string(dir.join("junit.xml"))
        .unwrap()
        .contains("error_rate &lt; 1%"));
    assert!(dir.join("spec.yaml").exists() && dir.join("spec.json").exists());
    // The report: one page, the run's numbers, a chart point a second, nothing to fetch.
    let report = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(
        report.contains(&format!("<td>all requests</td><td>{total}</td>")),
        "the total"
    );
    let rps = report
        .split("class=\"rps\" points=\"")
        .nth(1)
        .expect("the rps chart");
    assert_eq!(
        rps.split('"').next().unwrap().split(' ').count(),
        seconds.len()
    );
    assert!(!report.contains("<script") && !report.contains("http://127"));
    // Against itself as a baseline: every delta is nil.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_herd"))
        .arg("report")
        .arg(&dir)
        .arg("--baseline")
        .arg(&dir)
        .arg("-o")
        .arg(results.path().join("compare.html"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let compare = std::fs::read_to_string(results.path().join("compare.html")).unwrap();
    assert!(compare.contains("Against the baseline") && compare.contains("+0.0%"));
    assert!(!compare.contains("class=\"worse\""));
    listener.abort();
    // The retained result reached a subscriber of the embedded broker: summary.json's numbers.
    let result = result_doc
        .lock()
        .unwrap()
        .clone()
        .expect("no result was delivered");
    assert_eq!(
        result["total"]["requests"].as_u64(),
        Some(total),
        "{result}"
    );
    let live = live_docs.lock().unwrap();
    assert!(!live.is_empty(), "no live snapshot was published");
    assert!(live
        .iter()
        .all(|d| d["agents"]["total"] == 3 && d["latency_ms"]["p99"].is_number()));
    // The feed goes to the run's end: its last second is the series' last, not two before.
    let last_live = live.iter().filter_map(|d| d["second"].as_u64()).max();
    let last_row = rows.iter().filter_map(|r| r["second"].as_u64()).max();
    assert_eq!(
        last_live, last_row,
        "the live feed stopped short of the run's end"
    );
    let g = collected.lock().unwrap();
    assert_eq!(
        g.1, total,
        "requests in the batches on the wire vs summary.json"
    );
    // Fleet p99 from merged histograms equals the p99 of the union of all agents' samples.
    assert_eq!(
        p99_ms(&s["total"]),
        g.0.value_at_quantile(0.99) as f64 / 1000.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_model_across_three_agents_runs_or_drops_every_iteration() {
    let t = start_target().await;
    let spec = "name: open\ntarget: {url}\nscenario: [{request: GET /}]\nload: {executor: constant-arrival-rate, rate: 150, duration: 3s, pre_allocated_vus: 6, max_vus: 30}\n";
    let (code, stdout, stderr, results) = spawn_run(herd(), spec, &t.url(), &["--agents", "3"])
        .finish()
        .await;
    assert_eq!(code, Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    // An open-model run's live lines say how many iterations could not start.
    let lines: Vec<&str> = stdout.lines().filter(|l| l.contains("s/3s")).collect();
    assert!(
        !lines.is_empty() && lines.iter().all(|l| l.contains("dropped")),
        "{stdout}"
    );
    let s = summary(results.path());
    let total = &s["total"];
    // 150/s for 3 s split 50/50/50: exactly 450 iterations were scheduled across the fleet.
    assert_eq!(
        total["iterations"].as_u64().unwrap() + total["dropped_iterations"].as_u64().unwrap(),
        450
    );
    assert_eq!(total["requests"].as_u64().unwrap(), t.stats().requests);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_threshold_gives_exit_code_99_and_a_failing_junit_case() {
    let t = start_target().await;
    let spec = "name: failing\ntarget: {url}\nscenario: [{request: GET /status/500}]\nload: {executor: per-vu-iterations, vus: 2, iterations: 5}\nthresholds: ['error_rate < 1%', 'requests == 10']\n";
    let (code, stdout, _, results) = spawn_run(herd(), spec, &t.url(), &["--agents", "2"])
        .finish()
        .await;
    assert_eq!(code, Some(99), "{stdout}");
    // Observed values in the threshold's own unit.
    assert!(
        stdout.contains("✗ error_rate < 1%  (observed 100.00%)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("✓ requests == 10  (observed 10)"),
        "{stdout}"
    );
    let s = summary(results.path());
    assert_eq!(s["verdict"], "failed");
    assert_eq!(s["total"]["requests"], 10);
    assert_eq!(s["thresholds"][0]["observed"], 1.0);
    assert_eq!(s["thresholds"][0]["observed_display"], "100.00%");
    let junit = std::fs::read_to_string(run_dir(results.path()).join("junit.xml")).unwrap();
    assert!(junit.contains("tests=\"2\" failures=\"1\""), "{junit}");
    // The suite is the spec (a CI's history follows it), the run a property.
    assert!(junit.contains("<testsuite name=\"failing\""), "{junit}");
    assert!(junit.contains(" timestamp=\"20"), "{junit}");
    let run_id = s["run"].as_str().unwrap();
    assert!(
        junit.contains(&format!("<property name=\"run\" value=\"{run_id}\"/>")),
        "{junit}"
    );
    assert!(
        junit.contains("<failure message=\"observed 100.00%\">"),
        "{junit}"
    );
}

/// Each check by name, not only a total: the step's label and what it checks, with passes and
/// failures summed exactly over both agents — in the terminal, `summary.json` and JUnit — and
/// the HTTP version the connections spoke.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_check_is_counted_by_name_across_agents() {
    let t = start_target().await;
    let spec = r#"name: named-checks
target: {url}
scenario:
  - name: item
    request: GET /items/7
    checks:
      - status: 200
      - json_path: { path: $.name, equals: item-7 }
    captures:
      - { var: n, json_path: $.name }
  - name: missing
    request: GET /status/404
    checks:
      - status: 200
      - body_contains: nope
load: {executor: shared-iterations, vus: 2, iterations: 20}
"#;
    let (code, stdout, _, results) = spawn_run(herd(), spec, &t.url(), &["--agents", "2"])
        .finish()
        .await;
    assert_eq!(code, Some(0), "checks alone decide no verdict: {stdout}");
    assert_eq!(t.stats().requests, 40);
    let s = summary(results.path());
    let checks: Vec<(String, String, u64, u64)> = s["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .map(|c| {
            (
                c["label"].as_str().unwrap_or("").to_string(),
                c["name"].as_str().unwrap_or("").to_string(),
                c["passed"].as_u64().unwrap_or(99),
                c["failed"].as_u64().unwrap_or(99),
            )
        })
        .collect();
    let row = |l: &str, n: &str, p: u64, f: u64| (l.to_string(), n.to_string(), p, f);
    assert_eq!(
        checks,
        vec![
            row("item", "status 200", 20, 0),
            row("item", "json_path $.name == \"item-7\"", 20, 0),
            row("item", "captures n", 20, 0),
            row("missing", "status 200", 0, 20),
            row("missing", "body contains \"nope\"", 0, 20),
        ],
        "{s}"
    );
    // They add up to the batches' totals: nothing said twice, nothing missing.
    assert_eq!(s["total"]["checks_passed"], 60);
    assert_eq!(s["total"]["checks_failed"], 40);
    assert!(
        s["warnings"].as_array().is_some_and(|w| w.is_empty()),
        "{s}"
    );
    assert!(s["http_versions"]["h1"].as_u64().unwrap_or(0) >= 2, "{s}");
    assert!(
        stdout.contains("✗ missing: status 200  0/20 passed (100.00% failed)")
            && stdout.contains("✓ item: captures n  20/20 passed"),
        "{stdout}"
    );
    let junit = std::fs::read_to_string(run_dir(results.path()).join("junit.xml")).unwrap();
    assert!(
        junit.contains("<testsuite name=\"named-checks checks\" tests=\"5\" failures=\"2\">"),
        "{junit}"
    );
    assert!(
        junit.contains("name=\"missing: body contains &quot;nope&quot;\"><failure message=\"20 of 20 failed\">"),
        "{junit}"
    );
}

/// A run judged against a baseline run's folder: the same latency passes a 50 % margin, a p95
/// 20 % slower fails a 10 % one — exit 99, the regression named in the table, JUnit and the
/// summary — and a baseline threshold with no baseline fails saying so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_slower_than_its_baseline_fails_its_baseline_threshold_by_name() {
    let t = start_target().await;
    let base_spec = "name: gate\ntarget: {url}\nscenario: [{request: GET /delay/50}]\nload: {executor: per-vu-iterations, vus: 2, iterations: 15}\nthresholds: ['error_rate < 1%']\n";
    let (code, out, _, base) = spawn_run(herd(), base_spec, &t.url(), &["--agents", "1"])
        .finish()
        .await;
    assert_eq!(code, Some(0), "{out}");
    let base_dir = run_dir(base.path());
    let base_p95 = summary(base.path())["total"]["latency_ms"]["p95"]
        .as_f64()
        .unwrap();
    let gate = |delay: u32, factor: &str| {
        format!(
            "name: gate\ntarget: {{url}}\nscenario: [{{request: GET /delay/{delay}}}]\nload: {{executor: per-vu-iterations, vus: 2, iterations: 15}}\nthresholds: ['p95 < baseline.p95 * {factor}']\n"
        )
    };
    let dir_arg = base_dir.to_str().unwrap().to_string();
    let args = ["--agents", "1", "--baseline", dir_arg.as_str()];
    let (code, out, _, _) = spawn_run(herd(), &gate(50, "1.5"), &t.url(), &args)
        .finish()
        .await;
    assert_eq!(code, Some(0), "as fast as the baseline: {out}");
    // 60 ms against 50: the server's own delay makes the p95 20 % slower.
    let (code, out, _, slow) = spawn_run(herd(), &gate(60, "1.10"), &t.url(), &args)
        .finish()
        .await;
    assert_eq!(code, Some(99), "20 % slower: {out}");
    assert!(out.contains("✗ p95 < baseline.p95 * 1.10"), "{out}");
    assert!(out.contains("regression against baseline gate-"), "{out}");
    let s = summary(slow.path());
    let th = &s["thresholds"][0];
    assert_eq!(th["passed"], false);
    let limit = th["limit"].as_f64().unwrap();
    assert!((limit - base_p95 * 1.1).abs() < 1e-6, "{th}");
    assert!(th["observed"].as_f64().unwrap() > limit);
    let junit = std::fs::read_to_string(run_dir(slow.path()).join("junit.xml")).unwrap();
    assert!(junit.contains("regression against baseline"), "{junit}");
    // Its report shows the run against the baseline, p95 worse.
    let report = std::fs::read_to_string(run_dir(slow.path()).join("report.html")).unwrap();
    assert!(report.contains("Against the baseline"), "the delta table");
    assert!(report.contains("class=\"worse\""), "p95 marked worse");
    assert!(
        report.contains("<polyline class=\"base\""),
        "the baseline's series overlaid"
    );
    // The latency distribution, this run's bars beside the baseline's.
    assert!(report.contains("<h2>Latency distribution</h2>"));
    assert!(report.contains("<rect class=\"bar\"") && report.contains("<rect class=\"bar base\""));
    // No baseline given: the threshold cannot hold.
    let (code, out, _, _) = spawn_run(herd(), &gate(10, "1.5"), &t.url(), &["--agents", "1"])
        .finish()
        .await;
    assert_eq!(code, Some(99), "{out}");
    assert!(out.contains("no baseline run to compare with"), "{out}");
    // A folder that holds no summary is refused before anything runs.
    let (code, _, err, _) = spawn_run(
        herd(),
        &gate(10, "1.5"),
        &t.url(),
        &["--agents", "1", "--baseline", "/nonexistent"],
    )
    .finish()
    .await;
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("--baseline /nonexistent/summary.json"),
        "{err}"
    );
}

/// The pid of agent `index` of the run (exactly one must be running).
fn the_agent(run_id: &str, index: u32) -> i32 {
    let needle = format!("--index {index}");
    let pids: Vec<i32> = agent_pids(run_id)
        .into_iter()
        .filter(|(_, c)| c.contains(&needle))
        .map(|(p, _)| p)
        .collect();
    assert_eq!(pids.len(), 1, "agent {index} of {run_id}");
    pids[0]
}

async fn no_agents_left(run_id: &str) -> bool {
    for _ in 0..40 {
        if agent_pids(run_id).is_empty() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_mid_run_stops_agents_and_keeps_partial_results() {
    let t = start_target().await;
    let spec = "name: cancel\ntarget: {url}\nscenario: [{request: GET /fast}]\nload: {executor: constant-vus, vus: 4, duration: 60s, graceful_stop: 5s}\n";
    let run = spawn_run(herd(), spec, &t.url(), &["--agents", "2", "--quiet"]);
    let run_id = wait_for_run_id(run.results.path()).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let agents = agent_pids(&run_id);
    assert_eq!(agents.len(), 2, "both agents run");
    // Any local user can read a command line: the agents' keys are not on theirs.
    for (_, cmd) in &agents {
        assert!(cmd.contains("--credentials-stdin"), "{cmd}");
        assert!(
            !cmd.split_whitespace()
                .any(|w| w.len() >= 64 && w.chars().all(|c| c.is_ascii_hexdigit())),
            "a key on the command line: {cmd}"
        );
    }
    let pid = run.child.id().unwrap() as i32;
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(pid, libc::SIGINT) };
    let begun = std::time::Instant::now();
    let (code, stdout, stderr, results) = run.finish().await;
    assert_eq!(code, Some(130), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(begun.elapsed() < Duration::from_secs(20));
    let s = summary(results.path());
    assert_eq!(s["state"], "cancelled");
    assert_eq!(s["verdict"], "failed", "a cancelled run is never passed");
    let total = s["total"]["requests"].as_u64().unwrap();
    assert!(total > 0);
    // Stopped gracefully: every request the target served was measured and counted.
    assert_eq!(total, t.stats().requests);
    assert!(
        no_agents_left(&run_id).await,
        "orphan agents: {:?}",
        agent_pids(&run_id)
    );
}

/// What CI cancellation, `timeout` and a closed SSH session send: SIGTERM and SIGHUP stop a run
/// as Ctrl-C does (partial results, every served request counted), exiting 143 and 129; a
/// second Ctrl-C kills the agents and still writes `summary.json`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_and_sighup_stop_a_run_like_ctrl_c_and_a_second_ctrl_c_still_writes_the_summary() {
    let fast = "name: signals\ntarget: {url}\nscenario: [{request: GET /fast}]\nload: {executor: constant-vus, vus: 4, duration: 60s, graceful_stop: 5s}\n";
    // Requests of 1.5 s: the graceful stop is still waiting for them when the second Ctrl-C
    // comes, and the seconds before are already sent.
    let slow = "name: signals\ntarget: {url}\nscenario: [{request: GET /fast}, {request: GET /delay/1500}]\nload: {executor: constant-vus, vus: 4, duration: 60s, graceful_stop: 10s}\n";
    for (signals, code, spec) in [
        (vec![libc::SIGTERM], 143, fast),
        (vec![libc::SIGHUP], 129, fast),
        (vec![libc::SIGINT, libc::SIGINT], 130, slow),
    ] {
        let t = start_target().await;
        let run = spawn_run(herd(), spec, &t.url(), &["--agents", "2", "--quiet"]);
        let run_id = wait_for_run_id(run.results.path()).await;
        tokio::time::sleep(Duration::from_secs(5)).await;
        let pid = run.child.id().unwrap() as i32;
        for sig in &signals {
            // SAFETY: signalling our own child process.
            unsafe { libc::kill(pid, *sig) };
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let (exit, stdout, stderr, results) = run.finish().await;
        assert_eq!(
            exit,
            Some(code),
            "{signals:?}\nstdout:\n{stdout}\nstderr:\n{stderr}"
        );
        let s = summary(results.path());
        assert_eq!(s["state"], "cancelled", "{signals:?}");
        let total = s["total"]["requests"].as_u64().unwrap();
        assert!(total > 0, "{signals:?}: {s}\n{stderr}");
        if signals.len() == 1 {
            // Stopped gracefully: every request the target served was counted.
            assert_eq!(total, t.stats().requests, "{signals:?}");
        } else {
            assert!(stderr.contains("killing the agents"), "{stderr}");
            assert!(total <= t.stats().requests);
        }
        assert!(
            no_agents_left(&run_id).await,
            "{signals:?}: agents left {:?}",
            agent_pids(&run_id)
        );
    }
}

/// `herd run` killed outright (SIGKILL, a crash): its agents are told by the kernel and stop
/// loading within seconds, not when their watchdog notices the silence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_stop_loading_within_seconds_when_herd_run_is_killed() {
    let t = start_target().await;
    let spec = "name: orphaned\ntarget: {url}\nscenario: [{request: GET /fast}]\nload: {executor: constant-vus, vus: 4, duration: 60s, graceful_stop: 2s}\n";
    let run = spawn_run(herd(), spec, &t.url(), &["--agents", "2", "--quiet"]);
    let run_id = wait_for_run_id(run.results.path()).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(agent_pids(&run_id).len(), 2);
    let pid = run.child.id().unwrap() as i32;
    // SAFETY: killing our own child process.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let killed = std::time::Instant::now();
    let _ = run.finish().await;
    // The load stops within the graceful stop (2 s) and a little: the count holds still.
    let mut last = t.stats().requests;
    let mut still_since = std::time::Instant::now();
    while still_since.elapsed() < Duration::from_secs(1) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = t.stats().requests;
        if now != last {
            last = now;
            still_since = std::time::Instant::now();
        }
        assert!(
            killed.elapsed() < Duration::from_secs(5),
            "the agents kept loading the target 5 s after herd run was killed"
        );
    }
    // And the processes go: their last batches cannot be sent (the broker died with herd run),
    // so they leave once their flush wait (30 s, `agent/src/link.rs` FLUSH_WAIT) is over.
    let deadline = std::time::Instant::now() + Duration::from_secs(45);
    while !agent_pids(&run_id).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "agents left: {:?}",
            agent_pids(&run_id)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_agent_is_marked_lost_and_the_survivors_are_counted() {
    let t = start_target().await;
    let spec = "name: kill\ntarget: {url}\nscenario: [{request: GET /fast}]\nload: {executor: constant-vus, vus: 6, duration: 6s}\n";
    let run = spawn_run(herd(), spec, &t.url(), &["--agents", "3", "--quiet"]);
    let run_id = wait_for_run_id(run.results.path()).await;
    tokio::time::sleep(Duration::from_millis(3000)).await;
    // SAFETY: killing an agent process this test's run started.
    unsafe { libc::kill(the_agent(&run_id, 1), libc::SIGKILL) };
    let (code, stdout, stderr, results) = run.finish().await;
    assert_eq!(
        code,
        Some(0),
        "a run with a lost agent still completes; stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("RUN FLAGGED: agents lost"), "{stdout}");
    let s = summary(results.path());
    assert_eq!(s["state"], "completed");
    assert_eq!(s["agents_lost"], 1);
    let agents = s["agents"].as_array().unwrap();
    assert_eq!(agents[1]["state"], "lost");
    for i in [0, 2] {
        // Finished means the aggregator holds every batch the agent said it sent.
        assert_eq!(agents[i]["state"], "finished", "{:?}", agents[i]);
        assert!(agents[i]["batches_received"].as_u64().unwrap() >= 6);
    }
    let total = s["total"]["requests"].as_u64().unwrap();
    // The killed agent's last, unsent second is the only thing missing.
    assert!(total <= t.stats().requests && total > 0);
    assert!(no_agents_left(&run_id).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_run_works_through_an_external_mosquitto() {
    let Some(m) = start_mosquitto() else { return };
    let t = start_target().await;
    let broker = format!("mqtt://127.0.0.1:{}", m.port);
    let (code, stdout, stderr, results) = spawn_run(
        herd(),
        CLOSED,
        &t.url(),
        &["--agents", "3", "--quiet", "--broker", &broker],
    )
    .finish()
    .await;
    assert_eq!(code, Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let s = summary(results.path());
    assert_eq!(s["total"]["requests"].as_u64().unwrap(), t.stats().requests);
    assert_eq!(s["agents_lost"], 0);
}

/// Agents' messages read by three intake connections through one shared subscription (what a
/// broker that caps each connection, as IoT Core does, needs): through mosquitto and through
/// the embedded broker, every connection takes a share, nothing is lost or counted twice, and
/// while batches flow agents send no heartbeats — about one message per agent per second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intake_connections_share_the_agents_messages_and_lose_none() {
    let m = start_mosquitto();
    let spec = "name: intake\ntarget: {url}\nscenario:\n  - request: GET /fast\nload: {executor: constant-arrival-rate, rate: 50, duration: 8s, pre_allocated_vus: 4}\n";
    let mut brokers = vec![None];
    if let Some(m) = &m {
        brokers.push(Some(format!("mqtt://127.0.0.1:{}", m.port)));
    }
    for broker in brokers {
        let t = start_target().await;
        let mut args = vec!["--agents", "4", "--intake-connections", "3"];
        if let Some(b) = &broker {
            args.extend(["--broker", b.as_str()]);
        }
        let (code, stdout, stderr, results) =
            spawn_run(herd(), spec, &t.url(), &args).finish().await;
        assert_eq!(
            code,
            Some(0),
            "{broker:?}\nstdout:\n{stdout}\nstderr:\n{stderr}"
        );
        let s = summary(results.path());
        assert_eq!(s["total"]["requests"], 400, "{s}");
        assert_eq!(t.stats().requests, 400);
        assert_eq!(s["agents_lost"], 0, "{s}");
        let line = stdout
            .lines()
            .find(|l| l.starts_with("intake: 3 connections delivered"))
            .unwrap_or_else(|| panic!("no intake line: {stdout}"));
        let per: Vec<u64> = line
            .rsplit_once('(')
            .and_then(|(_, r)| r.strip_suffix(')'))
            .map(|r| r.split(", ").filter_map(|n| n.parse().ok()).collect())
            .unwrap_or_default();
        assert!(
            per.len() == 3 && per.iter().all(|n| *n > 0),
            "{broker:?}: {line}"
        );
        // Batches stand in for heartbeats: the messages are about the batches plus the few
        // status messages around the start and the end, not twice the batches.
        let batches: u64 = s["agents"]
            .as_array()
            .expect("agents")
            .iter()
            .map(|a| a["batches_received"].as_u64().unwrap_or(0))
            .sum();
        let total: u64 = per.iter().sum();
        assert!(
            batches >= 32 && total < batches + 4 * 8,
            "{broker:?}: {total} messages for {batches} batches"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_through_mosquitto_over_tls_with_client_certificates() {
    let pki = herd_tests::make_pki();
    let Some(m) = herd_tests::start_mosquitto_tls(&pki) else {
        return;
    };
    let t = start_target().await;
    let broker = format!("mqtts://127.0.0.1:{}", m.port);
    let (ca, cert, key) = (
        pki.ca.display().to_string(),
        pki.client_cert.display().to_string(),
        pki.client_key.display().to_string(),
    );
    let args = [
        "--agents", "2", "--quiet", "--broker", &broker, "--ca", &ca, "--cert", &cert, "--key",
        &key,
    ];
    let (code, stdout, stderr, results) = spawn_run(herd(), CLOSED, &t.url(), &args).finish().await;
    assert_eq!(code, Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let s = summary(results.path());
    assert_eq!(s["total"]["requests"].as_u64().unwrap(), t.stats().requests);
    assert_eq!(s["agents_lost"], 0);

    // Without a client certificate the broker refuses us: a clear error, exit 1, no hang.
    let (code, _, stderr, _) = spawn_run(
        herd(),
        CLOSED,
        &t.url(),
        &["--agents", "1", "--quiet", "--broker", &broker, "--ca", &ca],
    )
    .finish()
    .await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("no connection to the broker") && stderr.contains("CertificateRequired"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_keep_loading_through_a_broker_outage_and_replay_their_batches() {
    let t = start_target().await;
    let addr = coordinator::broker::start(0, None).unwrap();
    // Agents reach the broker through a proxy the test cuts for 3 s mid-run.
    let proxy = herd_tests::Proxy::start(addr.port()).await;
    let broker = format!("mqtt://127.0.0.1:{}", addr.port());
    let agent_broker = format!("mqtt://127.0.0.1:{}", proxy.port);
    let spec = "name: blip\ntarget: {url}\nscenario: [{request: GET /fast}]\nload: {executor: constant-vus, vus: 4, duration: 7s}\n";
    let run = spawn_run(
        herd(),
        spec,
        &t.url(),
        &[
            "--agents",
            "2",
            "--quiet",
            "--broker",
            &broker,
            "--agent-broker",
            &agent_broker,
        ],
    );
    let run_id = wait_for_run_id(run.results.path()).await;
    // Wait until the load is under way, then cut.
    for _ in 0..100 {
        if t.stats().requests > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    proxy.cut();
    let before = t.stats().requests;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        t.stats().requests > before + 100,
        "load stopped during the outage"
    );
    proxy.restore();
    let (code, stdout, stderr, results) = run.finish().await;
    assert_eq!(code, Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let s = summary(results.path());
    assert_eq!(s["agents_lost"], 0, "{s}");
    for a in s["agents"].as_array().unwrap() {
        assert_eq!(a["batches_dropped_by_agent"], 0);
    }
    let log = std::fs::read_to_string(run_dir(results.path()).join("agent-0.log")).unwrap();
    assert!(
        log.contains("broker connection lost"),
        "the outage did not reach the agent:\n{log}"
    );
    // Every batch buffered during the outage arrived afterwards: nothing measured was lost.
    assert_eq!(s["total"]["requests"].as_u64().unwrap(), t.stats().requests);
    assert!(no_agents_left(&run_id).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigtermed_agent_stops_gracefully_and_loses_nothing() {
    // What ECS StopTask does to a task: SIGTERM. The agent stops its VUs, sends every batch
    // and Finished, so the run has no loss and counts exactly what the target served.
    let t = start_target().await;
    let spec = "name: term\ntarget: {url}\nscenario: [{request: GET /fast}]\nload: {executor: constant-vus, vus: 4, duration: 6s}\n";
    let run = spawn_run(herd(), spec, &t.url(), &["--agents", "2", "--quiet"]);
    let run_id = wait_for_run_id(run.results.path()).await;
    tokio::time::sleep(Duration::from_millis(3000)).await;
    // SAFETY: signalling an agent process this test's run started.
    unsafe { libc::kill(the_agent(&run_id, 1), libc::SIGTERM) };
    let (code, stdout, stderr, results) = run.finish().await;
    assert_eq!(code, Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let s = summary(results.path());
    assert_eq!(s["agents_lost"], 0, "{s}");
    assert_eq!(s["total"]["requests"].as_u64(), Some(t.stats().requests));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn below_min_healthy_agents_the_run_fails() {
    let t = start_target().await;
    let spec = "name: healthy\ntarget: {url}\nmin_healthy_agents: 100%\nscenario: [{request: GET /fast}]\nload: {executor: constant-vus, vus: 4, duration: 20s}\n";
    let run = spawn_run(herd(), spec, &t.url(), &["--agents", "2", "--quiet"]);
    let run_id = wait_for_run_id(run.results.path()).await;
    tokio::time::sleep(Duration::from_millis(3000)).await;
    // SAFETY: killing an agent process this test's run started.
    unsafe { libc::kill(the_agent(&run_id, 0), libc::SIGKILL) };
    let begun = std::time::Instant::now();
    let (code, stdout, stderr, results) = run.finish().await;
    assert_eq!(code, Some(1), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(
        begun.elapsed() < Duration::from_secs(15),
        "failed fast, not at the end of the 20 s"
    );
    let s = summary(results.path());
    assert_eq!(s["state"], "failed");
    assert_eq!(s["verdict"], "failed", "a failed run is never passed");
    let reason = s["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("healthy agents 1/2 fell below min_healthy_agents 100%"),
        "{reason}"
    );
    assert!(no_agents_left(&run_id).await);
}

/// An attacker on the broker (here an open one, as an external broker may be) forges what
/// agents and the coordinator say: batches and a `Finished` in agent 1's name, a `Stop` for
/// the whole run, and replays of agent 0's real frames on agent 1's topics. None of it is
/// taken: the counts stay the target's, both agents finish, the run is not stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_agent_and_coordinator_messages_are_refused() {
    use messages::metrics::{LabelStats, MetricBatch};
    use messages::wire::{Envelope, Finished, Stop, WIRE_VERSION};
    let t = start_target().await;
    let addr = coordinator::broker::start(0, None).unwrap();
    let mut opts = MqttOptions::new("attacker", "127.0.0.1", addr.port());
    opts.set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut el) = AsyncClient::new(opts, 1000);
    client
        .subscribe("herd/runs/+/agents/0/metrics", QoS::AtLeastOnce)
        .await
        .unwrap();
    let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel::<(String, Vec<u8>)>();
    let pump = tokio::spawn(async move {
        while let Ok(ev) = el.poll().await {
            if let Event::Incoming(Packet::Publish(p)) = ev {
                let _ = seen_tx.send((p.topic.clone(), p.payload.to_vec()));
            }
        }
    });
    let spec = "name: forged\ntarget: {url}\nscenario: [{request: GET /fast}]\nload: {executor: constant-vus, vus: 2, duration: 4s}\n";
    let broker = format!("mqtt://127.0.0.1:{}", addr.port());
    let run = spawn_run(
        herd(),
        spec,
        &t.url(),
        &["--agents", "2", "--quiet", "--broker", &broker],
    );
    // Agent 0's first real batch tells the run id; then the forgeries.
    let (topic, frame) = tokio::time::timeout(Duration::from_secs(30), seen.recv())
        .await
        .expect("a batch within 30 s")
        .expect("pump alive");
    let run_id = topic
        .split('/')
        .nth(2)
        .expect("run id in topic")
        .to_string();
    let env = |sender: &str, seq: u64, body: Body| {
        wire::encode(&Envelope {
            version: WIRE_VERSION,
            run_id: run_id.clone(),
            sender: sender.into(),
            seq,
            sent_at_ms: 0,
            body,
        })
        .expect("encode")
    };
    let mut fake = LabelStats {
        requests: 1_000_000,
        ..Default::default()
    };
    fake.latency.record(1).expect("record");
    let batch = Body::Metrics(MetricBatch {
        agent: 1,
        second: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs(),
        labels: vec![fake.to_wire("GET /fast")],
        vus: 1,
        iterations: 1_000_000,
        dropped_iterations: 0,
    });
    let finished = Body::Finished(Finished {
        agent: 1,
        started_at_ms: 0,
        last_batch_seq: 1,
        batches_sent: 1,
        batches_dropped: 0,
        error_samples: Vec::new(),
        checks: Vec::new(),
        http_versions: Vec::new(),
    });
    let stop = Body::Stop(Stop {
        reason: "forged".into(),
    });
    let metrics1 = format!("herd/runs/{run_id}/agents/1/metrics");
    let status1 = format!("herd/runs/{run_id}/agents/1/status");
    let control = format!("herd/runs/{run_id}/control");
    let mut forged: Vec<(String, Vec<u8>)> = vec![
        // No frame at all, as an old agent or a stranger would send.
        (metrics1.clone(), env("agent-1", 1, batch.clone())),
        // Framed like an agent's, with a made-up MAC.
        (
            metrics1.clone(),
            [vec![1u8], env("agent-1", 2, batch), vec![0; 32]].concat(),
        ),
        (
            status1.clone(),
            [vec![1u8], env("agent-1", 3, finished), vec![7; 32]].concat(),
        ),
        // Agent 0's genuine frame replayed on agent 1's topics: right key, wrong agent.
        (metrics1, frame.clone()),
        (status1, frame),
        // A Stop for everyone, unsigned and as a fake signature.
        (control.clone(), env("coordinator", 1, stop.clone())),
        (
            control,
            [vec![2u8], env("coordinator", 2, stop), vec![0; 64]].concat(),
        ),
    ];
    for (topic, payload) in forged.drain(..) {
        client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .await
            .expect("publish");
    }
    let (code, stdout, stderr, results) = run.finish().await;
    pump.abort();
    assert_eq!(code, Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let s = summary(results.path());
    assert_eq!(s["state"], "completed", "{s}");
    assert_eq!(
        s["total"]["requests"].as_u64(),
        Some(t.stats().requests),
        "only what the target saw: {s}"
    );
    assert_eq!(s["agents_lost"], 0, "{s}");
    assert!(
        s["duration_s"].as_f64().unwrap_or(0.0) >= 3.5,
        "the forged Stop did not stop the run: {s}"
    );
    // The five forgeries on agent 1's topics are counted against it; agent 0 had none.
    assert_eq!(s["agents"][1]["refused_messages"], 5, "{s}");
    assert_eq!(s["agents"][0]["refused_messages"], 0, "{s}");
}

/// `{{secret.NAME}}` is read by each agent from its environment: the request carries it, and
/// no file the run writes does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_reach_the_target_and_no_result_file() {
    let t = start_target().await;
    let spec = "name: secret\ntarget: {url}\nscenario:\n  - request: {method: GET, url: /me, headers: {Authorization: 'Bearer {{secret.api_token}}'}}\n    checks: [{status: 200}]\nload: {executor: per-vu-iterations, vus: 2, iterations: 5}\n";
    let run = herd_tests::spawn_run_with(
        herd(),
        spec,
        &t.url(),
        &[],
        &["--agents", "2", "--quiet"],
        &[("HERD_SECRET_API_TOKEN", "tok-hush-7f3a")],
    );
    let (code, stdout, stderr, results) = run.finish().await;
    assert_eq!(code, Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let s = summary(results.path());
    assert_eq!(s["total"]["requests"].as_u64(), Some(10));
    assert_eq!(
        s["total"]["errors"].as_u64(),
        Some(0),
        "the token was sent: {s}"
    );
    assert_eq!(t.stats().requests, 10);
    let dir = run_dir(results.path());
    for e in std::fs::read_dir(&dir).unwrap().flatten() {
        let text = String::from_utf8_lossy(&std::fs::read(e.path()).unwrap()).into_owned();
        assert!(
            !text.contains("tok-hush-7f3a"),
            "{} holds the secret",
            e.path().display()
        );
    }
    assert!(!stdout.contains("tok-hush-7f3a") && !stderr.contains("tok-hush-7f3a"));
    // Without it the agents fail before the start, naming what to set.
    let (code, stdout, _, results) =
        spawn_run(herd(), spec, &t.url(), &["--agents", "1", "--quiet"])
            .finish()
            .await;
    assert_eq!(code, Some(1), "{stdout}");
    let s = summary(results.path());
    assert!(
        s["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("HERD_SECRET_API_TOKEN"),
        "{s}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_target_completes_with_every_request_a_policy_error_and_the_target_counting_none()
{
    let t = start_target().await;
    let spec = "name: denied\ntarget: {url}\nscenario: [{request: GET /fast}]\nload: {executor: per-vu-iterations, vus: 2, iterations: 5}\n";
    let run = spawn_run(
        herd(),
        spec,
        &t.url(),
        &["--agents", "2", "--quiet", "--deny-target", "127.0.0.1/32"],
    );
    let (code, stdout, stderr, results) = run.finish().await;
    assert_eq!(code, Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(
        stderr.contains("herd: warning: target.url http://127.0.0.1:")
            && stderr.contains("denied by the rule `127.0.0.1/32`"),
        "{stderr}"
    );
    let s = summary(results.path());
    assert_eq!(s["state"], "completed");
    let total = &s["total"];
    // per-vu-iterations: 2 VUs × 5 iterations, over the fleet.
    assert_eq!(total["requests"], 10, "{total}");
    assert_eq!(total["errors"], 10, "{total}");
    assert_eq!(total["error_kinds"]["policy"], 10, "{total}");
    assert_eq!(total["status"]["0"], 10, "{total}");
    // Said loudly: the run measured nothing of the target.
    let warning = "100.0% of requests got no response (policy: 10): is the target up, and reachable from the agents?";
    assert_eq!(s["warnings"][0], warning, "{s}");
    assert!(
        stderr.contains(&format!("⚠ WARNING: {warning}")),
        "{stderr}"
    );
    assert_eq!(t.stats().requests, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_builtin_target_stays_reachable_under_an_allow_list() {
    let spec = "name: builtin\ntarget: {builtin: true}\nscenario: [{request: GET /fast}]\nload: {executor: per-vu-iterations, vus: 2, iterations: 5}\n";
    let run = spawn_run(
        herd(),
        spec,
        "",
        &[
            "--agents",
            "1",
            "--quiet",
            "--allow-target",
            "api.example.com",
        ],
    );
    let (code, stdout, stderr, results) = run.finish().await;
    assert_eq!(code, Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let s = summary(results.path());
    assert_eq!(
        (
            s["total"]["requests"].as_u64(),
            s["total"]["errors"].as_u64()
        ),
        (Some(10), Some(0))
    );
    assert!(
        stderr.contains("built-in target counted 10 requests"),
        "{stderr}"
    );
    // spec.json is the spec as it ran, itself a spec: the built-in target's address resolved.
    let as_run = run_dir(results.path()).join("spec.json");
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&as_run).unwrap()).unwrap();
    let url = doc["target"]["url"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "{doc}");
    assert!(
        stderr.contains(&format!("built-in target on {url}")),
        "{stderr}"
    );
    let out = std::process::Command::new(herd())
        .arg("validate")
        .arg(&as_run)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A subscriber of `herd run`'s own embedded broker (the observer login) gets the retained
/// result before the broker goes down with `herd run`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_result_reaches_a_subscriber_of_herd_runs_own_broker() {
    use tokio::io::AsyncBufReadExt;
    let t = start_target().await;
    let spec = "name: retained\ntarget: {url}\nscenario: [{request: GET /fast}]\nload: {executor: constant-vus, vus: 2, duration: 3s}\n";
    let mut run = spawn_run(herd(), spec, &t.url(), &["--agents", "1", "--quiet"]);
    let stderr = run.child.stderr.take().expect("stderr");
    let mut lines = tokio::io::BufReader::new(stderr).lines();
    let port: u16 = loop {
        let line = lines
            .next_line()
            .await
            .unwrap()
            .expect("the run's first lines");
        if let Some(at) = line.find("broker mqtt://127.0.0.1:") {
            let rest = &line[at + "broker mqtt://127.0.0.1:".len()..];
            break rest
                .split(|c: char| !c.is_ascii_digit())
                .next()
                .unwrap()
                .parse()
                .unwrap();
        }
    };
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let login: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(run.results.path().join(".broker-observer")).unwrap(),
    )
    .unwrap();
    let mut opts = MqttOptions::new("herd-observer-test", "127.0.0.1", port);
    opts.set_credentials(
        login["user"].as_str().unwrap(),
        login["password"].as_str().unwrap(),
    );
    opts.set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut el) = AsyncClient::new(opts, 10);
    client
        .subscribe("herd/runs/+/result", QoS::AtLeastOnce)
        .await
        .unwrap();
    let got = tokio::spawn(async move {
        while let Ok(ev) = el.poll().await {
            if let Event::Incoming(Packet::Publish(p)) = ev {
                if p.topic.ends_with("/result") {
                    return serde_json::from_slice::<serde_json::Value>(&p.payload).ok();
                }
            }
        }
        None
    });
    let (code, _, _, results) = run.finish().await;
    assert_eq!(code, Some(0));
    let result = tokio::time::timeout(Duration::from_secs(5), got)
        .await
        .ok()
        .and_then(Result::ok)
        .flatten()
        .expect("the result reached the subscriber");
    assert_eq!(
        result["total"]["requests"],
        summary(results.path())["total"]["requests"]
    );
    assert_eq!(
        result["total"]["requests"].as_u64(),
        Some(t.stats().requests)
    );
}

/// Requests that got no response say why, in words: the first message of each kind with what
/// usually fixes it — here a self-signed certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_without_a_response_say_why_with_a_sample_and_a_hint() {
    let t = herd_tests::start_target_with(true).await;
    let spec = "name: tlsfail\ntarget: {url}\nscenario: [{request: GET /fast}]\nload: {executor: per-vu-iterations, vus: 2, iterations: 3}\n";
    let (code, stdout, stderr, results) = spawn_run(herd(), spec, &t.url(), &["--agents", "2"])
        .finish()
        .await;
    assert_eq!(code, Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let s = summary(results.path());
    assert_eq!(s["total"]["error_kinds"]["tls"], 6, "{s}");
    let sample = s["error_samples"]["tls"].as_str().unwrap_or_default();
    assert!(sample.to_lowercase().contains("certificate"), "{s}");
    assert!(
        stdout.contains(&format!(
            "  tls: \"{sample}\" — a self-signed or private certificate?"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("⚠ WARNING: 100.0% of requests got no response (tls: 6)"),
        "{stdout}"
    );
}
