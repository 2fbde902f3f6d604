//! The run history of a real `herd serve` (local profile): runs taken from the inbox are in
//! `<state>/history.sqlite3` with what their `RunCompleted` and `summary.json` said; a rejected
//! request is not a run; a restart on the same state folder keeps them.

use std::time::Duration;

use herd_tests::start_target;
use serde_json::Value;

#[path = "support/serve.rs"]
mod serve;
use serve::Serve;

/// A run's row, as the history file holds it.
#[derive(Debug)]
struct Row {
    spec: String,
    source: String,
    state: String,
    verdict: Option<String>,
    requests: Option<i64>,
    errors: Option<i64>,
    results: Option<String>,
    summary: Option<String>,
}

fn rows(file: &std::path::Path) -> Vec<(String, Row)> {
    let c = rusqlite::Connection::open_with_flags(file, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .expect("the history opens");
    let mut stmt = c
        .prepare(
            "SELECT run_id, spec, source, state, verdict, requests, errors, results, summary \
             FROM runs ORDER BY run_id",
        )
        .expect("query");
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                Row {
                    spec: r.get(1)?,
                    source: r.get(2)?,
                    state: r.get(3)?,
                    verdict: r.get(4)?,
                    requests: r.get(5)?,
                    errors: r.get(6)?,
                    results: r.get(7)?,
                    summary: r.get(8)?,
                },
            ))
        })
        .expect("rows");
    rows.collect::<Result<_, _>>().expect("decoded")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbox_runs_are_in_the_history_as_announced_and_stay_after_a_restart() {
    let t = start_target().await;
    let extra = "[history]\nretention_days = 30\n";
    let serve = Serve::start_with(&[], extra).await;
    std::fs::write(
        serve.inbox.join("good.yaml"),
        format!(
            "name: good\ntarget: {}\nscenario: [{{request: GET /fast}}]\nload: {{executor: per-vu-iterations, vus: 2, iterations: 5}}\nthresholds: ['error_rate < 1%']\n",
            t.url()
        ),
    )
    .expect("spec");
    std::fs::write(
        serve.inbox.join("broken.yaml"),
        format!(
            "name: broken\ntarget: {}\nscenario: [{{request: GET /status/500}}]\nload: {{executor: per-vu-iterations, vus: 2, iterations: 3}}\nthresholds: ['error_rate < 1%']\n",
            t.url()
        ),
    )
    .expect("spec");
    std::fs::write(serve.inbox.join("bad.yaml"), "name: bad\ntarget: nowhere\n").expect("spec");
    let done = serve
        .wait_for("RunCompleted", 2, Duration::from_secs(90))
        .await;
    serve
        .wait_for("RunRejected", 1, Duration::from_secs(30))
        .await;
    let file = serve.results.join(".state").join("history.sqlite3");
    // The end is written just after it is announced: wait (bounded) for both rows to end.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while rows(&file).iter().any(|(_, r)| r.state == "running") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:?}\n{}",
            rows(&file),
            serve.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let work = serve.stop().await;
    // A restart on the same state folder reopens the history and keeps its rows.
    let serve = Serve::start_in(work, &[], extra).await;
    let serve_results = serve.results.clone();
    let got = rows(&file);
    assert_eq!(
        got.len(),
        2,
        "two runs, the rejected request is none: {got:?}"
    );
    for n in &done {
        let d = &n["detail"];
        let run = d["run_id"].as_str().expect("run id");
        let (_, row) = got
            .iter()
            .find(|(id, _)| id == run)
            .unwrap_or_else(|| panic!("{run} not in the history: {got:?}"));
        assert_eq!(Some(row.spec.as_str()), d["spec"].as_str());
        assert_eq!(Some(row.source.as_str()), d["source"].as_str());
        assert_eq!(Some(row.state.as_str()), d["state"].as_str());
        assert_eq!(row.verdict.as_deref(), d["verdict"].as_str());
        assert_eq!(row.requests.map(|n| n as u64), d["requests"].as_u64());
        assert_eq!(row.errors.map(|n| n as u64), d["errors"].as_u64());
        assert_eq!(row.results.as_deref(), d["results"].as_str());
        let summary: Value =
            serde_json::from_str(row.summary.as_deref().expect("summary")).expect("summary JSON");
        let file: Value = serde_json::from_str(
            &std::fs::read_to_string(serve_results.join(run).join("summary.json"))
                .expect("summary.json"),
        )
        .expect("JSON");
        assert_eq!(summary, file, "{run}");
    }
    let verdicts: Vec<(&str, Option<&str>)> = got
        .iter()
        .map(|(_, r)| (r.spec.as_str(), r.verdict.as_deref()))
        .collect();
    assert!(verdicts.contains(&("good", Some("passed"))), "{verdicts:?}");
    assert!(
        verdicts.contains(&("broken", Some("failed"))),
        "{verdicts:?}"
    );
    let broken = got
        .iter()
        .find(|(_, r)| r.spec == "broken")
        .expect("broken");
    assert_eq!((broken.1.requests, broken.1.errors), (Some(6), Some(6)));
    serve.stop().await;
}

/// A history file that is not a herd history (here: garbage where it should be) does not stop
/// `herd serve`: it starts, says so, and its runs go on — the journal, not the history, is
/// what runs depend on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_history_file_does_not_stop_serve_or_its_runs() {
    let t = start_target().await;
    let work = tempfile::tempdir().expect("temp dir");
    let state = work.path().join("results").join(".state");
    std::fs::create_dir_all(&state).expect("state folder");
    std::fs::write(state.join("history.sqlite3"), b"not a database at all\n").expect("junk");
    let serve = Serve::start_in(work, &[], "[api]\nlisten = \"127.0.0.1:0\"\n").await;
    assert!(
        serve.log().contains("the run history cannot be opened"),
        "{}",
        serve.log()
    );
    // The API says so: alive, not ready (naming the file), and calls needing the history 503.
    let url = serve.api_url();
    let c = reqwest::Client::new();
    let health = c
        .get(format!("{url}/api/v1/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(health.status().as_u16(), 200);
    let ready = c
        .get(format!("{url}/api/v1/readyz"))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status().as_u16(), 503);
    let why = ready.text().await.expect("body");
    assert!(why.contains("history.sqlite3"), "{why}");
    let token = format!("herd_0123abcd_{}", "0".repeat(64));
    let runs = c
        .get(format!("{url}/api/v1/runs"))
        .bearer_auth(token)
        .send()
        .await
        .expect("runs");
    assert_eq!(runs.status().as_u16(), 503, "no history, no token check");
    std::fs::write(
        serve.inbox.join("ok.yaml"),
        format!(
            "name: ok\ntarget: {}\nscenario:\n  - request: GET /fast\nload: {{executor: constant-vus, vus: 1, duration: 1s}}\n",
            t.url()
        ),
    )
    .expect("spec");
    let done = serve
        .wait_for("RunCompleted", 1, Duration::from_secs(60))
        .await;
    assert_eq!(done[0]["detail"]["state"], "completed", "{}", serve.log());
    serve.stop().await;
}
