//! A slow aggregator (issue 11, item 5): `herd run` with two agent processes against a real
//! target while the aggregator pauses 1.5 s after each batch (the test-only
//! `HERD_TEST_FOLD_DELAY_MS`), so its queue holds more than the drain timeout's worth of
//! batches when the agents finish. The drain deadline counts what is queued: no agent is
//! lost, and the run's count equals the target's own.

use std::time::{Duration, Instant};

use herd_tests::{spawn_run_with, start_target, summary};

fn herd() -> &'static std::path::Path {
    std::path::Path::new(env!("CARGO_BIN_EXE_herd"))
}

const SPEC: &str = "name: slow-fold\ntarget: {url}\nscenario: [{request: GET /fast}]\nload: {executor: constant-vus, vus: 2, duration: 5s}\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_whose_batches_wait_for_a_slow_aggregator_are_not_lost() {
    let t = start_target().await;
    let begun = Instant::now();
    let run = spawn_run_with(
        herd(),
        SPEC,
        &t.url(),
        &[],
        &["--agents", "2", "--quiet"],
        &[("HERD_TEST_FOLD_DELAY_MS", "1500")],
    );
    let (code, stdout, stderr, results) =
        tokio::time::timeout(Duration::from_secs(55), run.finish())
            .await
            .expect("the run ended within 55 s");
    let took = begun.elapsed();
    eprintln!("the run took {took:?} with a 1.5 s pause per batch");
    assert_eq!(code, Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    // About 12 batches, 18 s to fold: at the drain deadline (~10 s after Finished) some waited.
    assert!(
        stderr.contains("still queued for the aggregator"),
        "the drain deadline met a queue:\n{stderr}"
    );
    let s = summary(results.path());
    assert_eq!(s["state"], "completed", "{s:#}");
    assert_eq!(s["agents_lost"], 0, "{s:#}");
    assert_eq!(s["total"]["requests"].as_u64(), Some(t.stats().requests));
    for a in s["agents"].as_array().expect("agents") {
        assert_eq!(a["rejected_batches"], 0, "{a:#}");
    }
}
