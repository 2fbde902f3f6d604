//! A fleet against the limits of a shared broker: 500 real agent processes on this machine,
//! their coordinator behind a broker that delivers at most 100 messages a second to each
//! connection, as AWS IoT Core does; and the fleet bench at a small size. Alone in their test
//! binary, one at a time: 500 processes would slow the timing of any test running beside them.
//! Loopback only; they end by themselves in about 20 s each.

use herd_tests::{spawn_run, start_target, summary};

/// The `herd` binary cargo built for these tests.
fn herd() -> &'static std::path::Path {
    std::path::Path::new(env!("CARGO_BIN_EXE_herd"))
}

/// The tests here load the machine: one at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The fleet bench (`bench/fleet.sh`) at a small size, as CI's smoke test of it: 30 agents,
/// 10 to a process, through the embedded broker and through mosquitto. It must run, count
/// every request the target served and write its figures; no timing is judged here (that is
/// what the bench's table is for, on a quiet machine).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_bench_runs_a_small_fleet_exactly_through_both_brokers() {
    let _one = ONE_AT_A_TIME.lock().await;
    let require = std::env::var("HERD_REQUIRE_MOSQUITTO").is_ok();
    let out = tempfile::tempdir().expect("temp dir");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let run = tokio::process::Command::new("bash")
        .arg(root.join("bench/fleet.sh"))
        .args(["--no-build", "--herd-bin"])
        .arg(herd())
        .args(["-d", "3", "-p", "10", "30"])
        .env("OUT_DIR", out.path())
        .kill_on_drop(true)
        .output();
    let res = tokio::time::timeout(std::time::Duration::from_secs(120), run)
        .await
        .expect("the bench ends within 2 minutes")
        .expect("bash runs");
    let stderr = String::from_utf8_lossy(&res.stderr);
    let stdout = String::from_utf8_lossy(&res.stdout);
    assert!(res.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let runs: Vec<serde_json::Value> = std::fs::read_to_string(out.path().join("runs.jsonl"))
        .expect("runs.jsonl")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let brokers: Vec<&str> = runs.iter().filter_map(|r| r["broker"].as_str()).collect();
    if require {
        assert_eq!(brokers, ["embedded", "mosquitto"], "{runs:?}");
    }
    for r in &runs {
        assert_eq!(r["exact"], true, "{r}");
        // 30 agents × 3 s × 1 iteration × 3 requests, all served and counted.
        assert_eq!(r["requests"], r["target_requests"], "{r}");
        assert_eq!(r["agents_lost"], 0, "{r}");
        // Every figure the table shows was measured.
        assert!(r["ready_ms"].as_u64().is_some(), "{r}");
        assert!(r["intake_lag_ms"]["count"].as_u64() >= Some(90), "{r}");
        assert!(r["coordinator"]["rss_mb"].as_u64() > Some(0), "{r}");
    }
    assert!(stdout.contains("| 30 | embedded |"), "{stdout}");
}

/// A fleet of 500 real agent processes against a broker that, as AWS IoT Core does, delivers
/// at most 100 messages a second to one connection (`herd_tests::throttle`: delayed, never
/// dropped). Their messages come to about one per agent per second while they load — five
/// times what one connection takes. The coordinator reads them with 10 intake connections, each
/// kept under the limit: nothing is lost (every request the target saw is counted) and no agent
/// is marked lost. The agents reach the broker directly; only the coordinator goes through the
/// limit, as only its connections carry the fleet's fan-in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_of_500_agents_through_a_broker_capped_at_100_messages_per_connection_loses_nothing(
) {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(m) = herd_tests::start_mosquitto() else {
        return;
    };
    let proxy = herd_tests::throttle::ThrottleProxy::start(m.port, 100).await;
    let t = start_target().await;
    let spec = "name: fleet\ntarget: {url}\nscenario:\n  - request: GET /fast\nload: {executor: constant-arrival-rate, rate: 500, duration: 10s, pre_allocated_vus: 500}\n";
    let coordinator = format!("mqtt://127.0.0.1:{}", proxy.port);
    let agents = format!("mqtt://127.0.0.1:{}", m.port);
    let began = std::time::Instant::now();
    let (code, stdout, stderr, results) = spawn_run(
        herd(),
        spec,
        &t.url(),
        &[
            "--agents",
            "500",
            "--quiet",
            "--broker",
            &coordinator,
            "--agent-broker",
            &agents,
            "--intake-connections",
            "10",
        ],
    )
    .finish()
    .await;
    let took = began.elapsed();
    assert_eq!(code, Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let s = summary(results.path());
    assert_eq!(s["agents_lost"], 0, "{}", s["agents"]);
    // Agents' clocks are this machine's: an offset far from 0 would mean a message path held
    // back for seconds (as Assigns were when every agent received every peer's).
    assert!(
        !stderr.contains("more than 1000 ms off"),
        "clock offsets measured through a slow path: {stderr}"
    );
    // Exact: what the target saw, and with the iterations no VU could take, the whole load.
    let seen = t.stats().requests;
    assert_eq!(s["total"]["requests"].as_u64(), Some(seen), "{s}");
    let dropped = s["total"]["dropped_iterations"].as_u64().unwrap_or(0);
    assert_eq!(seen + dropped, 5000, "{s}");
    let delivered = proxy.delivered();
    assert!(
        delivered.iter().all(|c| c.peak_per_s <= 100),
        "the limit held: {delivered:?}"
    );
    // Accepted in order: the coordinator's own connection, then its 10 intake connections
    // (each waits for the one before); any later one is a reconnect, which loses nothing (a
    // persistent session) but should be rare now that intake connections ping every 30 s.
    assert!(delivered.len() >= 11, "{delivered:?}");
    assert!(
        delivered[1..=10].iter().all(|c| c.publishes > 0),
        "every intake connection took a share: {delivered:?}"
    );
    let reconnects = delivered.len() - 11;
    // More than one connection could have taken in the whole run: the limit mattered.
    let total: u64 = delivered.iter().map(|c| c.publishes).sum();
    assert!(
        total as f64 > 100.0 * took.as_secs_f64(),
        "{total} messages in {took:?}"
    );
    eprintln!(
        "fleet: 500 agents, {total} messages through 10 intake connections ({reconnects} reconnects) in {took:?}, start skew {} ms, load {} s, dropped {dropped}",
        s["start_skew_ms"], s["duration_s"]
    );
}
