//! The fault suite: each fault is performed on real processes (herd serve, its agents, a real
//! broker, a target that counts what it receives), and herd's numbers are compared with the
//! target's own count. Loopback only, bounded in time; every case stops by itself.
//! `RELIABILITY.md` lists the promises these check.

use std::time::Duration;

use herd_tests::{agent_pids, spawn_run, start_mosquitto_persistent, start_target, summary};
use serde_json::Value;

#[path = "support/serve.rs"]
mod serve;
use serve::Serve;

/// 400 requests a second for `secs` seconds over two agents: enough that a lost batch shows,
/// light enough for a shared 2-core machine.
fn paced_spec(name: &str, url: &str, secs: u64) -> String {
    format!(
        "name: {name}\ntarget: {url}\nscenario:\n  - request: GET /fast\nload: {{executor: constant-arrival-rate, rate: 400, duration: {secs}s, pre_allocated_vus: 20, max_vus: 50}}\n"
    )
}

/// Waits (bounded) until the target has seen at least `n` requests.
async fn wait_requests(t: &demo_target::Target, n: u64, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    while t.stats().requests < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the target saw {} requests, not {n}",
            t.stats().requests
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Agents of `run` still alive (they are not serve's children after a restart).
fn agents_of(run_hint: &str) -> Vec<(i32, String)> {
    agent_pids(run_hint)
}

/// Kills what is left of a run's agents: a failing test must not leave load running.
fn reap(run_hint: &str) {
    for (pid, _) in agents_of(run_hint) {
        // SAFETY: a process this test's serve started.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}

/// Waits (bounded) for `herd run` to end, and checks what every fault of a `herd run` must
/// leave: exit 0, no agent lost, herd's count equal to the target's. Prints what it measured.
async fn every_sample_counted(run: herd_tests::HerdRun, t: &demo_target::Target, note: &str) {
    let (code, stdout, stderr, results) =
        tokio::time::timeout(Duration::from_secs(120), run.finish())
            .await
            .expect("herd run ends");
    assert_eq!(code, Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let s = summary(results.path());
    eprintln!(
        "measured: {note}herd counted {:?}, the target {}; agents lost {}",
        s["total"]["requests"].as_u64(),
        t.stats().requests,
        s["agents_lost"]
    );
    assert_eq!(s["agents_lost"], 0, "{stderr}");
    assert_eq!(
        s["total"]["requests"].as_u64(),
        Some(t.stats().requests),
        "herd's count vs the target's\n{stderr}"
    );
}

/// What a restarted serve must make of the run it took back: it completes, announced once;
/// its agents (not this serve's children) leave by themselves; herd's count is the target's.
/// Returns the run id.
async fn resumed_run_completes_exactly(
    serve: &Serve,
    t: &demo_target::Target,
    note: &str,
) -> String {
    let done = serve
        .wait_for("RunCompleted", 1, Duration::from_secs(90))
        .await;
    let state = done[0]["detail"]["state"].clone();
    let run = done[0]["detail"]["run_id"]
        .as_str()
        .expect("run id")
        .to_string();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    while !agents_of(&run).is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let left = agents_of(&run);
    reap(&run);
    assert!(left.is_empty(), "agents still running: {left:?}");
    let s = serve.summary(&run);
    eprintln!(
        "measured: {note}herd counted {:?}, the target {}; state {state}",
        s["total"]["requests"].as_u64(),
        t.stats().requests,
    );
    assert_eq!(state, "completed", "{}", serve.log());
    assert_eq!(
        s["total"]["requests"].as_u64(),
        Some(t.stats().requests),
        "herd's count vs the target's\n{}",
        serve.log()
    );
    assert_eq!(run_completed(serve).len(), 1, "one RunCompleted");
    run
}

fn run_completed(serve: &Serve) -> Vec<Value> {
    serve
        .notifications()
        .into_iter()
        .filter(|n| n["type"] == "RunCompleted")
        .collect()
}

/// `kill -9` of `herd serve` mid-run (its embedded broker dies with it), then a restart in the
/// same folder: the restarted coordinator takes the run back from its journal, the agents —
/// which loaded on through the outage — reconnect and send again what was not confirmed, and
/// the run completes with exactly the target's count and exactly one `RunCompleted`. The
/// inbox file delivered again afterwards is the same run, not a new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_killed_mid_run_resumes_it_and_counts_every_request_once() {
    let t = start_target().await;
    let serve = Serve::start(&[]).await;
    std::fs::write(
        serve.inbox.join("resume.yaml"),
        paced_spec("resume", &t.url(), 14),
    )
    .expect("spec");
    // Well into the load: Start is journaled, batches are flowing.
    wait_requests(&t, 1_600, Duration::from_secs(60)).await;
    let before = t.stats().requests;
    let work = serve.kill9().await;
    // The agents go on loading while no coordinator (and no broker) is there.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        t.stats().requests > before,
        "agents stopped with their coordinator"
    );
    assert_eq!(agents_of("resume-").len(), 2, "both agents outlive serve");
    let serve = Serve::start_in(work, &[], "").await;
    resumed_run_completes_exactly(&serve, &t, &format!("killed at {before} requests; ")).await;
    // The same inbox file, delivered again (moved back as it was): one run still.
    let accepted = std::fs::read_dir(serve.inbox.join(".accepted"))
        .expect(".accepted")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with("resume.yaml"))
        .expect("the accepted inbox file");
    std::fs::rename(&accepted, serve.inbox.join("resume.yaml")).expect("redeliver");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while serve.inbox.join("resume.yaml").exists() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        !serve.inbox.join("resume.yaml").exists(),
        "the redelivered file was taken\n{}",
        serve.log()
    );
    let runs: Vec<_> = std::fs::read_dir(&serve.results)
        .expect("results")
        .flatten()
        .filter(|e| e.path().is_dir() && !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| e.file_name())
        .collect();
    assert_eq!(
        runs.len(),
        1,
        "taken as a duplicate, not a new run: {runs:?}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(run_completed(&serve).len(), 1, "one run, one RunCompleted");
    let requests = t.stats().requests;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(t.stats().requests, requests, "no new load");
    serve.stop().await;
}

/// A graceful restart (SIGTERM, as a deployment replacing the coordinator sends) with
/// `on_shutdown = "resume"`: serve leaves its run to the next start instead of cancelling it;
/// the agents outlive it and load on; the next serve takes the run back and it completes with
/// exactly the target's count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_stopped_with_on_shutdown_resume_leaves_the_run_to_the_next_start() {
    let t = start_target().await;
    let cfg = "on_shutdown = \"resume\"\n";
    let serve = Serve::start_with(&[], cfg).await;
    std::fs::write(
        serve.inbox.join("redeploy.yaml"),
        paced_spec("redeploy", &t.url(), 10),
    )
    .expect("spec");
    wait_requests(&t, 1_200, Duration::from_secs(60)).await;
    let work = serve.stop().await;
    assert_eq!(agents_of("redeploy-").len(), 2, "the agents outlive it");
    let before = t.stats().requests;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(t.stats().requests > before, "and load on");
    let serve = Serve::start_in(work, &[], cfg).await;
    resumed_run_completes_exactly(&serve, &t, "").await;
    assert_eq!(run_completed(&serve).len(), 1);
    serve.stop().await;
}

/// `herd serve` killed mid-run and started again only after the run's planned end plus grace:
/// the run is not resumed but ended from what its journal holds, each agent lost with a reason
/// that says the coordinator restarted, and announced once. Its agents, meanwhile, heard no
/// `Alive` for their orphan-after and left by themselves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_back_after_the_runs_end_finalizes_it_from_what_arrived() {
    let t = start_target().await;
    let env = [("HERD_ORPHAN_AFTER_S", "3")];
    let serve = Serve::start(&env).await;
    // A short graceful stop: the run's end + grace comes 3 + 1 + 30 s after its start.
    let spec =
        paced_spec("late", &t.url(), 3).replace("max_vus: 50}", "max_vus: 50, graceful_stop: 1s}");
    assert!(spec.contains("graceful_stop: 1s"), "{spec}");
    std::fs::write(serve.inbox.join("late.yaml"), spec).expect("spec");
    // Late in the load: a couple of seconds' batches are journaled.
    wait_requests(&t, 1_000, Duration::from_secs(60)).await;
    let work = serve.kill9().await;
    // The agents heard no Alive for 3 s: they stop and leave.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !agents_of("late-").is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        agents_of("late-").is_empty(),
        "orphaned agents left by themselves"
    );
    // The run's end (3 s) + graceful stop (1 s) + the overrun grace pass.
    tokio::time::sleep(Duration::from_secs(
        messages::wire::OVERRUN_GRACE_MS / 1000 + 4,
    ))
    .await;
    let served = t.stats().requests;
    let serve = Serve::start_in(work, &env, "").await;
    let done = serve
        .wait_for("RunCompleted", 1, Duration::from_secs(30))
        .await;
    let run = done[0]["detail"]["run_id"]
        .as_str()
        .expect("run id")
        .to_string();
    let s = serve.summary(&run);
    let counted = s["total"]["requests"].as_u64().expect("requests");
    eprintln!(
        "measured: served {served}, counted {counted} (what was journaled before the crash); state {}",
        done[0]["detail"]["state"]
    );
    assert!(counted > 0 && counted <= served, "{counted} of {served}");
    for a in s["agents"].as_array().expect("agents") {
        assert_eq!(a["state"], "lost", "{a}");
        assert!(
            a["reason"]
                .as_str()
                .is_some_and(|r| r.contains("the coordinator restarted")),
            "{a}"
        );
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(run_completed(&serve).len(), 1, "announced once");
    serve.stop().await;
}

/// mosquitto restarted (SIGTERM, 2 s down, persistence on) in the middle of a `herd run`: the
/// coordinator's and the agents' sessions are persistent, so what was queued for them comes
/// back with the broker; what was in flight is sent again (rumqttc) or replayed (unconfirmed
/// batches, on the next `Alive`). Not one sample is lost and no agent is marked lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restarted_mid_run_loses_no_sample() {
    let Some(mut m) = start_mosquitto_persistent() else {
        return;
    };
    let t = start_target().await;
    let broker = format!("mqtt://127.0.0.1:{}", m.port);
    let run = spawn_run(
        serve::herd(),
        &paced_spec("brokerrestart", "{url}", 12),
        &t.url(),
        &["--agents", "2", "--quiet", "--broker", &broker],
    );
    wait_requests(&t, 1_200, Duration::from_secs(60)).await;
    tokio::task::block_in_place(|| m.restart(Duration::from_secs(2)));
    every_sample_counted(run, &t, "").await;
}

/// The coordinator (`herd run`, its embedded broker inside it) stopped with SIGSTOP for 15 s
/// mid-load, then continued: its agents load on (15 s is within their orphan-after), keep
/// what it cannot confirm, and reconnect; the coordinator notices its own stall and gives
/// them time instead of marking them lost. Not one sample lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_paused_for_15_s_loses_no_agent_and_no_sample() {
    let t = start_target().await;
    let run = spawn_run(
        serve::herd(),
        &paced_spec("paused", "{url}", 25),
        &t.url(),
        &["--agents", "2", "--quiet"],
    );
    let pid = run.child.id().expect("pid") as i32;
    wait_requests(&t, 1_200, Duration::from_secs(60)).await;
    // SAFETY: signalling the herd run this test started.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let frozen_at = t.stats().requests;
    tokio::time::sleep(Duration::from_secs(15)).await;
    let loaded = t.stats().requests - frozen_at;
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    assert!(
        loaded > 3_000,
        "the agents loaded on while it stood still: {loaded}"
    );
    every_sample_counted(
        run,
        &t,
        &format!("{loaded} requests while it stood still; "),
    )
    .await;
}
