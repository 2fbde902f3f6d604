//! `herd serve` with the local profile: the inbox folder is the local twin of the spec bucket.
//! A spec file dropped there runs (agents as child processes, embedded broker) and ends in a
//! `RunCompleted` line in `notifications.jsonl`; an invalid one lands in `.rejected/` with its
//! errors, and a `RunRejected` line.

use std::time::Duration;

use herd_tests::start_target;
use serde_json::Value;

/// The `herd` binary cargo built for these tests.
fn herd() -> &'static std::path::Path {
    std::path::Path::new(env!("CARGO_BIN_EXE_herd"))
}

fn notifications(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inbox_spec_runs_and_an_invalid_one_is_rejected() {
    let t = start_target().await;
    let work = tempfile::tempdir().expect("temp dir");
    let inbox = work.path().join("inbox");
    let results = work.path().join("results");
    let cfg = work.path().join("serve.toml");
    std::fs::write(
        &cfg,
        format!(
            "profile = \"local\"\ninbox = \"{}\"\nresults_dir = \"{}\"\nagents = 2\n",
            inbox.display(),
            results.display()
        ),
    )
    .expect("config");
    let log = std::fs::File::create(work.path().join("serve.log")).expect("log");
    let mut serve = tokio::process::Command::new(herd())
        .args(["serve", "--config"])
        .arg(&cfg)
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .expect("herd serve");
    let serve_log = || std::fs::read_to_string(work.path().join("serve.log")).unwrap_or_default();
    for _ in 0..200 {
        if serve_log().contains("herd serve: ready") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(serve_log().contains("herd serve: ready"), "{}", serve_log());

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

    let file = results.join("notifications.jsonl");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let (completed, rejected) = loop {
        let n = notifications(&file);
        let c = n.iter().find(|v| v["type"] == "RunCompleted").cloned();
        let r = n.iter().find(|v| v["type"] == "RunRejected").cloned();
        if let (Some(c), Some(r)) = (&c, &r) {
            break (c.clone(), r.clone());
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "notifications: {n:?}\n{}",
            serve_log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let d = &completed["detail"];
    assert_eq!(d["verdict"], "passed", "{d}");
    assert_eq!(d["requests"].as_u64(), Some(t.stats().requests));
    let run = d["run_id"].as_str().expect("run id");
    let summary: Value = serde_json::from_str(
        &std::fs::read_to_string(results.join(run).join("summary.json")).expect("summary.json"),
    )
    .expect("JSON");
    assert_eq!(summary["agents"].as_array().map(Vec::len), Some(2));
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
    let pid = serve.id().expect("pid") as i32;
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let status = tokio::time::timeout(Duration::from_secs(20), serve.wait())
        .await
        .expect("serve stops")
        .expect("status");
    assert!(status.success(), "{status}\n{}", serve_log());
}
