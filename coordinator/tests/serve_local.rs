//! `herd serve` with the local profile: the inbox folder is the local twin of the spec bucket.
//! A spec file dropped there runs (agents as child processes, embedded broker) and ends in a
//! `RunCompleted` line in `notifications.jsonl`; an invalid one lands in `.rejected/` with its
//! errors, and a `RunRejected` line.

use std::time::Duration;

use herd_tests::start_target;
use serde_json::Value;

#[path = "support/serve.rs"]
mod serve;
use serve::{notifications, Serve};

/// Established TCP connections to `port` on this machine, counted from the client side.
fn connections_to(port: u16) -> usize {
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .flat_map(|t| t.lines().skip(1).map(str::to_string).collect::<Vec<_>>())
        .filter(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            let remote_port = cols
                .get(2)
                .and_then(|a| a.rsplit(':').next())
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            remote_port == Some(port) && cols.get(3) == Some(&"01")
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inbox_spec_runs_and_an_invalid_one_is_rejected() {
    let t = start_target().await;
    let serve = Serve::start(&[]).await;
    let inbox = serve.inbox.clone();
    std::fs::write(inbox.join("users.csv"), "name\nada\nbob\n").expect("data");
    std::fs::write(
        inbox.join("shop.yaml"),
        format!(
            "name: shop\ntarget: {}\ndata:\n  users: {{file: users.csv}}\nscenario:\n  - request: GET /items/{{{{users.name}}}}\nload: {{executor: constant-vus, vus: 2, duration: 2s}}\nthresholds: [error_rate < 1%]\n",
            t.url()
        ),
    )
    .expect("spec");
    std::fs::write(inbox.join("bad.yaml"), "name: bad\ntarget: nowhere\n").expect("spec");

    let completed = serve
        .wait_for("RunCompleted", 1, Duration::from_secs(60))
        .await
        .remove(0);
    let rejected = serve
        .wait_for("RunRejected", 1, Duration::from_secs(60))
        .await
        .remove(0);
    let d = &completed["detail"];
    assert_eq!(d["verdict"], "passed", "{d}");
    assert_eq!(d["requests"].as_u64(), Some(t.stats().requests));
    // Each line says when it was written.
    for n in [&completed, &rejected] {
        let at = n["at"].as_str().unwrap_or_default();
        assert!(chrono::DateTime::parse_from_rfc3339(at).is_ok(), "{n}");
    }
    let run = d["run_id"].as_str().expect("run id");
    // Whoever watches the service sees each run start and end, with its verdict.
    let out = serve.stdout();
    assert!(
        out.contains(&format!(
            "herd serve: run {run} starting — spec shop, 2 agent(s)"
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!("herd serve: run {run} completed — passed (")),
        "{out}"
    );

    let summary = serve.summary(run);
    assert_eq!(summary["agents"].as_array().map(Vec::len), Some(2));
    assert_eq!(summary["verdict"], "passed");
    let errors = rejected["detail"]["errors"].to_string();
    assert!(errors.contains("bad.yaml:2:9: target"), "{errors}");
    assert!(errors.contains("scenario"), "{errors}");
    // Taken files move out of the inbox; the rejected one keeps its errors beside it.
    let rejected_dir: Vec<String> = std::fs::read_dir(inbox.join(".rejected"))
        .expect(".rejected")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        rejected_dir
            .iter()
            .any(|n| n.ends_with("bad.yaml.errors.txt")),
        "{rejected_dir:?}"
    );
    assert!(!inbox.join("shop.yaml").exists() && !inbox.join("bad.yaml").exists());

    // SIGTERM: a clean shutdown.
    serve.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spec_whose_target_the_policy_denies_is_rejected_before_any_agent_starts() {
    let t = start_target().await;
    let serve = Serve::start_with(&[], "[targets]\ndeny_private = true\n").await;
    std::fs::write(
        serve.inbox.join("inward.yaml"),
        format!(
            "name: inward\ntarget: {}\nscenario: [{{request: GET /fast}}]\nload: {{executor: constant-vus, vus: 1, duration: 1s}}\n",
            t.url()
        ),
    )
    .expect("spec");
    let rejected = serve
        .wait_for("RunRejected", 1, Duration::from_secs(60))
        .await
        .remove(0);
    let errors = rejected["detail"]["errors"].to_string();
    assert!(
        errors.contains(&format!("target.url {}", t.url()))
            && errors.contains("is in the reserved range 127.0.0.0/8"),
        "{errors}"
    );
    assert!(serve
        .notifications()
        .iter()
        .all(|n| n["type"] != "RunCompleted"));
    assert_eq!(t.stats().requests, 0);
    serve.stop().await;
}

/// Regression: `Bus::disconnect` used to send DISCONNECT and let rumqttc reconnect, so a
/// long-running coordinator kept one live connection per finished run and logged a reconnect
/// after each. Now runs share the coordinator's one session and detach when they end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_runs_leave_serve_with_its_one_connection_and_no_reconnects() {
    let t = start_target().await;
    let serve = Serve::start(&[]).await;
    let port = serve.broker_port();
    for i in 0..3 {
        std::fs::write(
            serve.inbox.join(format!("run{i}.yaml")),
            format!(
                "name: r{i}\ntarget: {}\nscenario:\n  - request: GET /fast\nload: {{executor: constant-vus, vus: 1, duration: 1s}}\n",
                t.url()
            ),
        )
        .expect("spec");
    }
    let done = serve
        .wait_for("RunCompleted", 3, Duration::from_secs(90))
        .await;
    for d in &done {
        assert_eq!(d["detail"]["state"], "completed", "{d}");
    }
    // The agents leave once their batches are acknowledged; then only serve's own session is
    // connected, and it stays the only one.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while connections_to(port) > 1 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        connections_to(port),
        1,
        "connections to the broker after 3 runs"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(connections_to(port), 1, "no connection came back");
    let log = serve.log();
    assert!(
        !log.contains("reconnect") && !log.contains("connection lost"),
        "{log}"
    );
    serve.stop().await;
}

/// Regression: `summary.json` and the retained result said `"verdict": "passed"` for a failed
/// or cancelled run without thresholds while its `RunCompleted` said failed. One `verdict()`
/// now decides all three.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_and_cancelled_runs_are_failed_in_the_summary_the_result_topic_and_run_completed() {
    let t = start_target().await;
    // k6 "missing": agents fail before the start, so that run fails.
    let serve = Serve::start(&[("HERD_K6", "/nonexistent/k6")]).await;
    // Everything published on the result topics, retained or live.
    let mut results = herd_tests::watch_results(
        serve.broker_port(),
        &serve.results.join(".broker-observer"),
        "herd-observer-test",
    )
    .await;
    std::fs::write(
        serve.inbox.join("script.js"),
        "export default function () {}\n",
    )
    .expect("script");
    std::fs::write(
        serve.inbox.join("fails.yaml"),
        format!(
            "name: fails\ntarget: {}\nengine: k6\nscript: script.js\nload: {{executor: constant-vus, vus: 1, duration: 2s}}\n",
            t.url()
        ),
    )
    .expect("spec");
    let failed = serve
        .wait_for("RunCompleted", 1, Duration::from_secs(60))
        .await
        .remove(0);
    assert_eq!(failed["detail"]["state"], "failed", "{failed}");
    std::fs::write(
        serve.inbox.join("long.yaml"),
        format!(
            "name: long\ntarget: {}\nscenario:\n  - request: GET /fast\nload: {{executor: constant-vus, vus: 1, duration: 60s}}\n",
            t.url()
        ),
    )
    .expect("spec");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while t.stats().requests == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no load\n{}",
            serve.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Shutting down cancels the active run.
    let results_dir = serve.results.clone();
    let _work = serve.stop().await;
    let all = notifications(&results_dir.join("notifications.jsonl"));
    let completed: Vec<&Value> = all.iter().filter(|v| v["type"] == "RunCompleted").collect();
    assert_eq!(completed.len(), 2, "{all:?}");
    let cancelled = completed[1];
    assert_eq!(cancelled["detail"]["state"], "cancelled", "{cancelled}");
    let mut topics = Vec::new();
    while topics.len() < 2 {
        let got = tokio::time::timeout(Duration::from_secs(10), results.recv())
            .await
            .expect("both results published")
            .expect("watcher alive");
        topics.push(got);
    }
    drop(results);
    for note in [&failed, cancelled] {
        let d = &note["detail"];
        let run = d["run_id"].as_str().expect("run id");
        assert_eq!(d["verdict"], "failed", "RunCompleted: {d}");
        let p = results_dir.join(run).join("summary.json");
        let summary: Value =
            serde_json::from_str(&std::fs::read_to_string(&p).expect("summary.json"))
                .expect("JSON");
        assert_eq!(summary["state"], d["state"]);
        assert_eq!(summary["verdict"], "failed", "summary.json: {summary}");
        let (_, published) = topics
            .iter()
            .find(|(topic, _)| *topic == format!("herd/runs/{run}/result"))
            .unwrap_or_else(|| panic!("no result published for {run}: {topics:?}"));
        assert_eq!(published["verdict"], "failed", "result topic: {published}");
        assert_eq!(published, &summary, "the topic carries summary.json");
    }
}

/// Tries to log in to the broker at `port`; true when the broker accepted.
async fn broker_accepts(port: u16, client_id: &str, login: Option<(&str, &str)>) -> bool {
    let mut opts = rumqttc::MqttOptions::new(client_id, "127.0.0.1", port);
    if let Some((u, p)) = login {
        opts.set_credentials(u, p);
    }
    let (_client, mut events) = rumqttc::AsyncClient::new(opts, 10);
    let first = tokio::time::timeout(Duration::from_secs(5), events.poll()).await;
    matches!(
        first,
        Ok(Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(ack))))
            if ack.code == rumqttc::ConnectReturnCode::Success
    )
}

/// The embedded broker lets in only the coordinator, its agents (each as itself) and
/// observers: a stranger, an agent id with a made-up password, and the observer password used
/// for an agent id are all refused — and serve keeps running runs meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_broker_refuses_strangers_while_runs_go_on() {
    let t = start_target().await;
    let serve = Serve::start(&[]).await;
    let port = serve.broker_port();
    std::fs::write(
        serve.inbox.join("busy.yaml"),
        format!(
            "name: busy\ntarget: {}\nscenario:\n  - request: GET /fast\nload: {{executor: constant-vus, vus: 1, duration: 3s}}\n",
            t.url()
        ),
    )
    .expect("spec");
    let login: Value = serde_json::from_str(
        &std::fs::read_to_string(serve.results.join(".broker-observer")).expect("observer login"),
    )
    .expect("JSON");
    let (user, password) = (
        login["user"].as_str().expect("user"),
        login["password"].as_str().expect("password"),
    );
    for attempt in 0..3 {
        assert!(
            !broker_accepts(port, &format!("stranger-{attempt}"), None).await,
            "anonymous"
        );
        assert!(
            !broker_accepts(
                port,
                "herd-busy-x-agent-0",
                Some(("herd-busy-x-agent-0", "guess"))
            )
            .await,
            "an agent id with a made-up password"
        );
        assert!(
            !broker_accepts(port, "herd-busy-x-agent-0", Some((user, password))).await,
            "the observer login for an agent id"
        );
    }
    assert!(broker_accepts(port, "herd-observer-1", Some((user, password))).await);
    let done = serve
        .wait_for("RunCompleted", 1, Duration::from_secs(60))
        .await;
    assert_eq!(done[0]["detail"]["state"], "completed", "{}", done[0]);
    assert_eq!(
        done[0]["detail"]["requests"].as_u64(),
        Some(t.stats().requests)
    );
    serve.stop().await;
}
