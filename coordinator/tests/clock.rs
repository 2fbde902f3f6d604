//! One clock per run, end to end: `herd run` with two agent processes, one of them on a
//! machine whose clock runs 5 s ahead (the test-only `HERD_TEST_CLOCK_SKEW_MS_AGENT_1`). It
//! measures its offset at the handshake and lines up with the fleet: it starts with the other
//! agent, none of its batches is refused or shifted, and the offset is reported.

use std::time::{Duration, Instant};

use herd_tests::{run_dir, spawn_run_with, start_target, summary};

/// The `herd` binary cargo built for these tests.
fn herd() -> &'static std::path::Path {
    std::path::Path::new(env!("CARGO_BIN_EXE_herd"))
}

/// Each agent asks for its own path, so the target tells when each one really started.
const SPEC: &str = "name: skewed\ntarget: {url}\nscenario:\n  - request: GET /items/{{agent}}\nload: {executor: constant-vus, vus: 4, duration: 3s}\n";

fn within(value: &serde_json::Value, expected: i64, slack: i64) -> bool {
    value
        .as_i64()
        .is_some_and(|v| (v - expected).abs() <= slack)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_whose_clock_runs_5s_ahead_is_corrected_and_starts_with_the_fleet() {
    let t = start_target().await;
    // Only agent 1 is skewed: a skew shared by every agent would hide a wrong start (all
    // would start equally early) behind a small skew.
    let run = spawn_run_with(
        herd(),
        SPEC,
        &t.url(),
        &[],
        &["--agents", "2", "--quiet"],
        &[("HERD_TEST_CLOCK_SKEW_MS_AGENT_1", "5000")],
    );
    // The real start of each agent: when the target first sees its path (polled every 5 ms).
    let mut first_seen: [Option<Instant>; 2] = [None, None];
    let finish = run.finish();
    tokio::pin!(finish);
    let (code, stdout, stderr, results) = loop {
        tokio::select! {
            out = &mut finish => break out,
            _ = tokio::time::sleep(Duration::from_millis(5)) => {
                let seen = t.stats().by_path;
                for (i, first) in first_seen.iter_mut().enumerate() {
                    if first.is_none() && seen.contains_key(&format!("/items/{i}")) {
                        *first = Some(Instant::now());
                    }
                }
            }
        }
    };
    assert_eq!(code, Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let s = summary(results.path());
    let logs = |i: u32| {
        std::fs::read_to_string(run_dir(results.path()).join(format!("agent-{i}.log")))
            .unwrap_or_default()
    };
    assert!(
        logs(1).contains("for tests only"),
        "the skew is announced in its log:\n{}",
        logs(1)
    );
    assert!(
        stderr.contains("agent's clock is more than 1000 ms off"),
        "the coordinator warns of the far-off clock:\n{stderr}"
    );
    // The run is whole: the target's exact count, nothing refused, late or lost.
    assert_eq!(s["state"], "completed", "{s:#}");
    assert_eq!(s["total"]["requests"].as_u64(), Some(t.stats().requests));
    assert_eq!(s["agents_lost"], 0, "{s:#}");
    assert_eq!(s["late_batches"], 0, "{s:#}");
    for a in s["agents"].as_array().expect("agents") {
        assert_eq!(a["rejected_batches"], 0, "{a:#}");
        assert!(a["batches_received"].as_u64().unwrap_or(0) >= 3, "{a:#}");
    }
    // The offsets as measured: agent 1 is 5 s ahead, so coordinator time = its time − 5 s.
    let agents = &s["agents"];
    assert!(within(&agents[0]["clock_offset_ms"], 0, 200), "{agents:#}");
    assert!(
        within(&agents[1]["clock_offset_ms"], -5_000, 200),
        "{agents:#}"
    );
    assert!(agents[1]["clock_round_trip_ms"].is_u64(), "{agents:#}");
    assert!(within(&s["max_clock_offset_ms"], 5_000, 200), "{s:#}");
    // They started together, by the target's watch (uncorrected, agent 1 would start as soon
    // as Start arrived: the start lead, 1 s, early) and by the summary.
    let [Some(a), Some(b)] = first_seen else {
        panic!("the target never saw both agents: {first_seen:?}");
    };
    let real_skew = if a > b { a - b } else { b - a };
    assert!(real_skew < Duration::from_millis(500), "{real_skew:?}");
    assert!(
        s["start_skew_ms"].as_u64().is_some_and(|k| k < 500),
        "{s:#}"
    );
    // The per-second series: no holes, and no second outside the load (a 5 s shift would add
    // seconds past its end), adding up to the total.
    let rows: Vec<serde_json::Value> = serde_json::from_slice(
        &std::fs::read(run_dir(results.path()).join("timeseries.json")).expect("timeseries"),
    )
    .expect("timeseries.json is JSON");
    let seconds: Vec<u64> = rows.iter().filter_map(|r| r["second"].as_u64()).collect();
    assert!(
        seconds.windows(2).all(|w| w[1] == w[0] + 1),
        "holes in {seconds:?}"
    );
    let start_s = s["start_at_ms"].as_u64().expect("start_at_ms") / 1000;
    assert!(
        seconds
            .iter()
            .all(|&x| x + 1 >= start_s && x <= start_s + 5),
        "seconds {seconds:?} outside the load starting in second {start_s}"
    );
    assert_eq!(
        rows.iter()
            .filter_map(|r| r["total"]["requests"].as_u64())
            .sum::<u64>(),
        t.stats().requests
    );
}
