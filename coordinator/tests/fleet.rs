//! A fleet against the limits of a shared broker: 500 real agent processes on this machine,
//! their coordinator behind a broker that delivers at most 100 messages a second to each
//! connection, as AWS IoT Core does. Alone in its test binary: 500 processes would slow the
//! timing of any test running beside it. Loopback only; it ends by itself in about 20 s.

use herd_tests::{spawn_run, start_target, summary};

/// The `herd` binary cargo built for these tests.
fn herd() -> &'static std::path::Path {
    std::path::Path::new(env!("CARGO_BIN_EXE_herd"))
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
