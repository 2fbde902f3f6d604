//! The `herd` binary as a user runs it: real child processes.

use std::process::Command;

use herd_tests::start_target;

/// The `herd` binary cargo built for these tests.
fn herd() -> &'static std::path::Path {
    std::path::Path::new(env!("CARGO_BIN_EXE_herd"))
}

#[test]
fn validate_reports_every_problem_with_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(
        &path,
        "name: bad\ntarget: http://127.0.0.1:1\nscenario:\n  - request: GET /\nload:\n  executor: ramping-vus\n  stages:\n    - { duration: 1s, target: 1 }\n    - { duration: 2s, target: 2 }\n    - { duration: 5x, target: 3 }\n  vu: 3\n",
    )
    .unwrap();
    let out = Command::new(herd())
        .arg("validate")
        .arg(&path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let p = path.display();
    assert!(
        err.contains(&format!(
            "{p}:10:19: load.stages[2].duration: \"5x\" is not a duration"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{p}:11:3: load.vu: unknown field `vu` for executor ramping-vus"
        )),
        "{err}"
    );
}

/// `herd validate` refuses what `herd run` would, names what was probably meant, and warns
/// about what is legal but unlikely; its "ok" line says how long, how much and on how many.
#[test]
fn validate_catches_what_run_would_refuse_and_names_what_was_meant() {
    let dir = tempfile::tempdir().unwrap();
    let validate = |name: &str, text: &str| {
        std::fs::write(dir.path().join(name), text).unwrap();
        // Run from the spec's own folder with a bare file name, as people do.
        let out = Command::new(herd())
            .arg("validate")
            .arg(name)
            .current_dir(dir.path())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let data = "name: d\ntarget: http://127.0.0.1:1\ndata:\n  users: {file: users.csv}\nscenario:\n  - request: GET /items/{{users.nmae}}\nload: {executor: constant-vus, vus: 2, duration: 30s}\n";
    let (code, _, err) = validate("data.yaml", data);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("data.yaml: data.users: users.csv: No such file"),
        "{err}"
    );
    std::fs::write(dir.path().join("users.csv"), "name\nann\n").unwrap();
    let (code, _, err) = validate("data.yaml", data);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("data source `users` has no column `nmae` (columns: name)"),
        "{err}"
    );

    let (code, _, err) = validate(
        "typos.yaml",
        "name: t\ntarget: {url: http://127.0.0.1:1, http: {version: http2}}\nscenario:\n  - request: GET /\nload: {executor: ramping-vu, stages: [{duration: 1M, target: 1}]}\nthresholds: [erorr_rate < 1%]\n",
    );
    assert_eq!(code, Some(2), "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 3, "every problem at once: {err}");
    assert!(
        lines[0].contains("typos.yaml:2:") && lines[0].contains("use an https:// URL, or `h2c`"),
        "{err}"
    );
    assert!(
        lines[1].contains("typos.yaml:5:") && lines[1].contains("did you mean \"ramping-vus\"?"),
        "{err}"
    );
    assert!(
        lines[2].contains("typos.yaml:6:") && lines[2].contains("did you mean `error_rate`?"),
        "{err}"
    );
    let (code, _, err) = validate(
        "month.yaml",
        "name: m\ntarget: http://127.0.0.1:1\nscenario:\n  - request: GET /\nload: {executor: constant-vus, vus: 1, duration: 1M}\n",
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("load.duration: \"1M\": `M` is a calendar month here, not a load length — minutes are `m`"), "{err}");

    // What a tool cannot do is refused before anything starts: Locust ramping down, a JMeter
    // plan with two thread groups (no tool needs to be installed for this).
    std::fs::write(dir.path().join("shop.py"), "from locust import HttpUser\n").unwrap();
    let (code, _, err) = validate(
        "rampdown.yaml",
        "name: r\ntarget: http://127.0.0.1:1\nengine: locust\nscript: shop.py\nload: {executor: ramping-vus, stages: [{duration: 5s, target: 4}, {duration: 5s, target: 0}]}\n",
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("engine locust runs constant-vus, or ramping-vus that ramps up from 0 in its first stage and then holds"), "{err}");
    let plan = include_str!("../../loadtest-specs/jmeter/shop.jmx");
    let (i, j) = (
        plan.find("<ThreadGroup").unwrap(),
        plan.find("</ThreadGroup>").unwrap() + "</ThreadGroup>".len(),
    );
    std::fs::write(
        dir.path().join("two.jmx"),
        format!("{}{}{}", &plan[..j], &plan[i..j], &plan[j..]),
    )
    .unwrap();
    let (code, _, err) = validate(
        "two.yaml",
        "name: j\ntarget: http://127.0.0.1:1\nengine: jmeter\nscript: two.jmx\nload: {executor: constant-vus, vus: 2, duration: 5s}\n",
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("the plan has 2 thread groups"), "{err}");

    let (code, out, err) = validate(
        "ok.yaml",
        "name: ok\ntarget: http://127.0.0.1:1\nagents: 3\nscenario:\n  - request: GET /\nload: {executor: ramping-vus, stages: [{duration: 1m, target: 40}, {duration: 30s, target: 0}]}\nthresholds: [p95 < 200, error_rate < 1]\n",
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains(
            "ok.yaml: ok — 1 step(s), executor ramping-vus, 1m 30s, peak 40 VUs, 3 agent(s), 2 threshold(s)"
        ),
        "{out}"
    );
    assert!(
        err.contains("warning: thresholds[0]: `p95 < 200` has no unit: read as 200 ms"),
        "{err}"
    );
    assert!(
        err.contains(
            "warning: thresholds[1]: `error_rate < 1` holds even when every request fails"
        ),
        "{err}"
    );
}

#[test]
fn validate_and_run_refuse_what_is_over_the_limits_with_a_position() {
    let dir = tempfile::tempdir().unwrap();
    let check = |name: &str, text: &str, args: &[&str], want: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let out = Command::new(herd()).args(args).arg(&path).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        let want = want.replace("{p}", &path.display().to_string());
        assert!(err.contains(&want), "missing {want:?} in {err}");
    };
    let mut laughs = String::from("a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for (x, y) in ["a", "b", "c", "d", "e", "f", "g", "h"]
        .iter()
        .zip(["b", "c", "d", "e", "f", "g", "h", "i"])
    {
        laughs.push_str(&format!(
            "{y}: &{y} [{}]\n",
            vec![format!("*{x}"); 10].join(", ")
        ));
    }
    check("laughs.yaml", &laughs, &["validate"], "{p}:5:");
    check(
        "laughs2.yaml",
        &laughs,
        &["validate"],
        "more than 100000 YAML values",
    );
    let spec = "name: 'a#b'\ntarget: http://127.0.0.1:1\nscenario: [{request: GET /}]\nload: {executor: constant-vus, vus: 1000000000000, duration: 1s}\nagents: [{region: us-east-1, count: 4000000000}]\n";
    for (args, file) in [
        (&["validate"][..], "over.yaml"),
        (&["run"][..], "over2.yaml"),
    ] {
        check(file, spec, args, "{p}:1:7: name: \"a#b\" contains '#'");
        check(file, spec, args, "{p}:4:37: load.vus: 1000000000000 is more than the limit of 100000 VUs (raise [limits] vus in the serve config)");
        check(
            file,
            spec,
            args,
            "{p}:5:37: agents[0].count: 4000000000 is more than the limit of 10000 agents",
        );
    }
    let ok = "name: ok\ntarget: http://127.0.0.1:1\nscenario: [{request: GET /}]\nload: {executor: constant-vus, vus: 1, duration: 1s}\n";
    check(
        "ok.yaml",
        ok,
        &["run", "--agents", "4000000000"],
        "herd: --agents: 4000000000 is more than the limit of 10000 agents",
    );
}

#[test]
fn validate_accepts_the_example_specs() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../loadtest-specs");
    let mut n = 0;
    for e in std::fs::read_dir(root).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "yaml" || x == "json") {
            let out = Command::new(herd())
                .arg("validate")
                .arg(&p)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}: {}",
                p.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            n += 1;
        }
    }
    assert!(n >= 3);
}

/// Writes `yaml` (with `{url}` replaced) to a temp file and runs `herd agent --standalone` on it.
async fn run_agent(yaml: &str, url: &str, extra: &[&str]) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.yaml");
    std::fs::write(&path, yaml.replace("{url}", url)).unwrap();
    tokio::process::Command::new(herd())
        .arg("agent")
        .args(extra)
        .arg("--standalone")
        .arg(&path)
        .output()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_agent_process_counts_what_the_target_saw() {
    let t = start_target().await;
    let out = run_agent(
        "name: s\ntarget: {url}\nscenario: [{request: GET /fast}]\nload: {executor: constant-vus, vus: 4, duration: 2s}\nthresholds: ['error_rate < 1%', 'p99 < 5s']\n",
        &t.url(),
        &["--json"],
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // stdout is the summary alone (`| jq` reads it), laid out as summary.json; the per-second
    // lines went to stderr.
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("stdout is one JSON document");
    let requests = v["total"]["requests"].as_u64().unwrap();
    assert!(requests > 0);
    assert_eq!(requests, t.stats().requests);
    assert_eq!(v["state"], "completed");
    assert_eq!(v["verdict"], "passed");
    assert_eq!(v["spec"], "s");
    assert_eq!(v["thresholds"][0]["observed_display"], "0.00%");
    assert_eq!(v["regions"]["local"]["requests"].as_u64(), Some(requests));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.lines().filter(|l| l.contains("rps")).count() >= 2,
        "per-second lines expected on stderr:\n{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_thresholds_give_exit_code_99() {
    let t = start_target().await;
    let out = run_agent(
        "name: s\ntarget: {url}\nscenario: [{request: GET /status/500}]\nload: {executor: per-vu-iterations, vus: 1, iterations: 3}\nthresholds: ['error_rate < 1%']\n",
        &t.url(),
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(99));
    assert!(String::from_utf8_lossy(&out.stdout).contains("✗ error_rate < 1%"));
}

/// `herd agent --standalone` under the open-file limits (`soft`, `hard`) a user's shell gives.
async fn agent_under_nofile(yaml: &str, url: &str, soft: u64, hard: u64) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.yaml");
    std::fs::write(&path, yaml.replace("{url}", url)).unwrap();
    let mut cmd = tokio::process::Command::new(herd());
    cmd.args(["agent", "--json", "--standalone"]).arg(&path);
    // SAFETY: only setrlimit between fork and exec, on the child's own limits.
    unsafe {
        cmd.pre_exec(move || {
            let l = libc::rlimit {
                rlim_cur: soft as libc::rlim_t,
                rlim_max: hard as libc::rlim_t,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &l) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    tokio::time::timeout(std::time::Duration::from_secs(60), cmd.output())
        .await
        .expect("the agent ends by itself")
        .unwrap()
}

/// Measured before: under `ulimit -n 1024`, 1,500 VUs never finished and 3,000 ran for 11
/// minutes into 5 GB. Now the soft limit is raised to the hard one, and a share that still
/// cannot fit is refused before the start, naming the numbers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_share_beyond_the_open_file_limit_is_refused_and_one_within_the_hard_limit_runs() {
    let t = start_target().await;
    let spec = "name: fds\ntarget: {url}\nscenario: [{request: GET /fast}]\nload: {executor: constant-vus, vus: 1500, duration: 2s}\n";
    let begun = std::time::Instant::now();
    let out = agent_under_nofile(spec, &t.url(), 256, 1024).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("1500 VUs need about 1564 open files, but this process may open 1024"),
        "{err}"
    );
    assert!(begun.elapsed() < std::time::Duration::from_secs(20));
    assert_eq!(t.stats().requests, 0, "refused before any load");
    // Soft 256, hard 4096: raised at start, so 1,500 VUs fit and every request counts.
    let out = agent_under_nofile(spec, &t.url(), 256, 4096).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["total"]["requests"].as_u64(), Some(t.stats().requests));
    assert_eq!(v["total"]["errors"].as_u64(), Some(0), "{v}");
}

/// A k6 script's own options decide the load and the thresholds when the spec leaves them out;
/// what herd cannot carry over is refused with the script's line, and a Locust shape class is
/// refused before anything starts. No tool needs to be installed: herd reads, never runs.
#[test]
fn validate_reads_a_k6_scripts_own_options_and_refuses_what_it_cannot_carry_over() {
    let dir = tempfile::tempdir().unwrap();
    let validate = |script: &str, body: &str, spec_rest: &str| {
        std::fs::write(dir.path().join(script), body).unwrap();
        let engine = if script.ends_with(".py") {
            "locust"
        } else {
            "k6"
        };
        std::fs::write(
            dir.path().join("s.yaml"),
            format!("name: s\ntarget: http://127.0.0.1:1\nagents: 2\nengine: {engine}\nscript: {script}\n{spec_rest}"),
        )
        .unwrap();
        let out = Command::new(herd())
            .args(["validate", "s.yaml"])
            .current_dir(dir.path())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let stages = "export let options = {\n  stages: [\n    { duration: '10s', target: 5 },\n    { duration: '5s', target: 5 },\n    { duration: '5s', target: 0 },\n  ],\n  thresholds: { 'http_req_duration{name:login}': [{ threshold: 'p(95)<500', abortOnFail: true }], http_req_failed: ['rate<0.01'] },\n};\nexport default function () {}\n";
    let (code, out, err) = validate("stages.js", stages, "");
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("executor ramping-vus, 20s, peak 5 VUs (from the script's options), 2 agent(s), 2 threshold(s) (from the script's options)"),
        "{out}"
    );
    // The spec's own load and thresholds win, and say so.
    let (code, out, err) = validate(
        "stages.js",
        stages,
        "load: {executor: constant-vus, vus: 2, duration: 3s}\nthresholds: [p95 < 1s]\n",
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("executor constant-vus, 3s, peak 2 VUs, 2 agent(s), 1 threshold(s)\n"),
        "{out}"
    );
    assert!(
        err.contains("stages.js options (line 1): the spec's `load:` replaces the load"),
        "{err}"
    );
    assert!(
        err.contains("the spec's `thresholds:` replace the script's own"),
        "{err}"
    );

    // Two scenarios, the second starting later: both split, the run as long as the last.
    let (code, out, err) = validate(
        "two.js",
        "export const options = { scenarios: {\n  a: { executor: 'constant-vus', vus: 4, duration: '2s' },\n  b: { executor: 'shared-iterations', iterations: 10, startTime: '1s', maxDuration: '2s', exec: 'b' },\n} };\nexport function b() {}\nexport default function () {}\n",
        "",
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("executor constant-vus, 2s, peak 4 VUs + 1 more scenario(s), the last ending 3s after the start (from the script's options)"),
        "{out}"
    );
    for (body, needle) in [
        (
            "import http from 'k6/http';\n\nexport const options = { vus: __ENV.VUS, duration: '1m' };\n",
            "x.js: line 3: the script's `options` is not a plain literal",
        ),
        (
            "export const options = { scenarios: { a: { executor: 'constant-vus', duration: '1s' }, b: { executor: 'externally-controlled' } } };\n",
            "x.js options (line 1): options.scenarios.b.executor \"externally-controlled\"",
        ),
        (
            "export const options = { scenarios: { a: { executor: 'constant-vus', vus: 60000, duration: '1s' }, b: { executor: 'constant-vus', vus: 60000, duration: '1s' } } };\n",
            "the scenarios together reach 120000 VUs, more than the limit of 100000",
        ),
        (
            "export const options = { vus: 2, duration: '1m', thresholds: { my_trend: ['avg<3'] } };\n",
            "a threshold on `my_trend` cannot be judged",
        ),
        (
            "export const options = { vus: 200000, duration: '1m' };\n",
            "as herd's load.vus: 200000 is more than the limit of 100000 VUs",
        ),
    ] {
        let (code, _, err) = validate("x.js", body, "");
        assert_eq!(code, Some(2), "{body}: {err}");
        assert!(err.contains(needle), "{needle:?} in {err}");
    }

    let shape = "from locust import HttpUser, LoadTestShape, task\n\nclass U(HttpUser):\n    @task\n    def t(self):\n        pass\n\nclass Stages(LoadTestShape):\n    def tick(self):\n        return None\n";
    let (code, _, err) = validate(
        "shape.py",
        shape,
        "load: {executor: constant-vus, vus: 2, duration: 3s}\n",
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("shape.py line 8: class Stages is a LoadTestShape")
            && err.contains("give its stages as the spec's `load:`"),
        "{err}"
    );
    // A Locust spec still needs its load.
    let (code, _, err) = validate("plain.py", "from locust import HttpUser\n", "");
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("load"), "{err}");
}

/// `herd agent --count N` reads one credentials line per agent: fewer lines, or a line that is
/// not a launcher's, are refused before any agent connects, saying which line.
#[test]
fn an_agent_process_hosting_several_agents_needs_a_credentials_line_for_each() {
    use std::io::Write;
    let key = "11".repeat(32);
    let line = format!(r#"{{"secret":"{key}","coordinator_key":"{key}"}}"#);
    let go = |stdin: String, count: &str| {
        let mut child = std::process::Command::new(herd())
            .args([
                "agent",
                "--broker",
                "mqtt://127.0.0.1:9",
                "--run",
                "r-1",
                "--index",
                "0",
                "--credentials-stdin",
                "--count",
                count,
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn herd agent");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin.as_bytes())
            .expect("write stdin");
        child.wait_with_output().expect("herd agent ends")
    };
    let out = go(format!("{line}\n"), "3");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("stdin ended after 1 credentials lines; --count asked for 3"),
        "{err}"
    );
    let out = go(format!("{line}\nnot json\n"), "2");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("credentials line 2 on stdin"), "{err}");
    let out = go(String::new(), "1001");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("1001 is not in 1..=1000"), "{err}");
}
