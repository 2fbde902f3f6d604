//! Results on a nearly full filesystem: a real tmpfs of its own ([`TinyFs`]), filled to leave a
//! few KiB, and — needing no privilege, so it runs everywhere — a file size limit
//! (`RLIMIT_FSIZE`, as `ulimit -f` sets). The results write fails loudly — `herd run` exits 1
//! naming the file and the cause, `herd serve`'s `RunCompleted` says the results are missing and
//! why — no torn `summary.json` and no temp file is left, nothing is published on the result
//! topic, and `serve` goes on serving.

use std::path::{Path, PathBuf};
use std::time::Duration;

use herd_tests::tinyfs::TinyFs;
use herd_tests::{broker_port_in, start_target, wait_until_ready, watch_results};
use serde_json::Value;

fn herd() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_herd"))
}

/// Room for `.broker-observer` and the agents' logs, not for the result files.
const LEAVE_KIB: u64 = 12;

/// Every file of a run folder but the agents' logs, in the order they are written.
const RESULT_FILES: [&str; 7] = [
    "timeseries.csv",
    "timeseries.json",
    "report.html",
    "junit.xml",
    "spec.yaml",
    "spec.json",
    "summary.json",
];

/// A two-second, one-user spec named `name` against `url`.
fn spec_yaml(name: &str, url: &str) -> String {
    format!(
        "name: {name}\ntarget: {url}\nscenario:\n  - request: GET /fast\nload: {{executor: constant-vus, vus: 1, duration: 2s}}\n"
    )
}

/// The result file of `run` the error text names (`…/<run>/<file>: …`), if it names one.
fn file_named<'a>(text: &str, run: &str) -> Option<&'a str> {
    RESULT_FILES
        .into_iter()
        .find(|f| text.contains(&format!("{run}/{f}: ")))
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut n: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    n.sort();
    n
}

/// What a failed write may leave in a run folder: no summary, no temp file.
fn assert_not_marked_complete(run_dir: &Path) {
    let files = files_in(run_dir);
    assert!(
        !files.iter().any(|f| f == "summary.json"),
        "{}: {files:?}",
        run_dir.display()
    );
    assert!(
        !files.iter().any(|f| f.starts_with('.')),
        "a temp file was left: {files:?}"
    );
}

/// `herd run <spec> --results-dir <dir>` through `wrap` (a namespace, a limit), bounded: exit
/// code, stdout, stderr.
async fn herd_run(
    mut cmd: tokio::process::Command,
    url: &str,
    dir: &Path,
) -> (Option<i32>, String, String) {
    let spec_dir = tempfile::tempdir().expect("temp dir");
    let spec = spec_dir.path().join("full.yaml");
    std::fs::write(&spec, spec_yaml("full", url)).expect("spec");
    let out = cmd
        .arg("run")
        .arg(&spec)
        .args(["--agents", "2", "--quiet", "--results-dir"])
        .arg(dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(120), out)
        .await
        .expect("herd run ends")
        .expect("herd run output");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// What `herd run` must do when a results file cannot be written for `cause`: the load ran,
/// exit 1, one `herd: results not written: <step> <dir>/<run>/<file>: <cause>` line, no
/// `results:` line, and a run folder without `summary.json` or temp files. Returns the file.
fn assert_run_failed_loudly(
    (code, stdout, stderr): &(Option<i32>, String, String),
    results: &Path,
    cause: &str,
) -> &'static str {
    assert_eq!(*code, Some(1), "{stdout}\n{stderr}");
    assert!(stdout.contains(" completed"), "the load ran: {stdout}");
    assert!(!stdout.contains("results: "), "{stdout}");
    let line = stderr
        .lines()
        .find(|l| l.starts_with("herd: results not written: "))
        .unwrap_or_else(|| panic!("no results error: {stderr}"));
    assert!(line.contains(cause), "{line}");
    eprintln!("measured: {line}");
    let runs: Vec<String> = files_in(results)
        .into_iter()
        .filter(|f| f.starts_with("full-"))
        .collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    let file = file_named(line, &runs[0]).unwrap_or_else(|| panic!("names no file: {line}"));
    assert_not_marked_complete(&results.join(&runs[0]));
    file
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn herd_run_on_a_full_disk_exits_1_naming_the_file_and_leaves_no_summary() {
    let Some(tiny) = TinyFs::mount(1024) else {
        return;
    };
    let t = start_target().await;
    tiny.fill(LEAVE_KIB);
    let out = herd_run(tiny.command(herd()), &t.url(), tiny.inside()).await;
    assert_run_failed_loudly(&out, &tiny.outside(), "No space left on device");
    assert!(t.stats().requests > 0);
}

/// Past `RLIMIT_FSIZE` a write fails with EFBIG — once SIGXFSZ, which would kill the process
/// instead, is ignored (as a shell's `trap '' XFSZ; ulimit -f` would). No privilege needed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn herd_run_past_its_file_size_limit_exits_1_naming_the_file_and_leaves_no_summary() {
    /// More than the agents' logs, `.broker-observer` and `timeseries.csv` take; less than
    /// `timeseries.json` and `summary.json` (about 2 KB each for this spec).
    const LIMIT: libc::rlim_t = 1024;
    let t = start_target().await;
    let results = tempfile::tempdir().expect("temp dir");
    let mut cmd = tokio::process::Command::new(herd());
    // SAFETY: between fork and exec, only async-signal-safe calls (signal, setrlimit).
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let limit = libc::rlimit {
                rlim_cur: LIMIT,
                rlim_max: LIMIT,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = herd_run(cmd, &t.url(), results.path()).await;
    let file = assert_run_failed_loudly(&out, results.path(), "File too large");
    // Written in order: what came before the file that failed is there, whole.
    assert_eq!(file, "timeseries.json", "{}", out.2);
    let run = herd_tests::run_dir(results.path());
    assert_eq!(
        files_in(&run),
        ["agent-0.log", "agent-1.log", "timeseries.csv"]
    );
    assert!(t.stats().requests > 0);
}

/// `herd serve` (local profile, embedded broker) with its results on `tiny` and everything
/// else — config, inbox, log, notifications — on the ordinary disk.
struct Serve {
    child: tokio::process::Child,
    work: tempfile::TempDir,
    results: PathBuf,
}

impl Serve {
    async fn start(tiny: &TinyFs) -> Serve {
        let work = tempfile::tempdir().expect("temp dir");
        let cfg = work.path().join("serve.toml");
        std::fs::write(
            &cfg,
            format!(
                "profile = \"local\"\ninbox = \"{}\"\nresults_dir = \"{}\"\nstate_dir = \"{}\"\nnotifications = \"{}\"\nagents = 2\n",
                work.path().join("inbox").display(),
                tiny.inside().join("results").display(),
                work.path().join("state").display(),
                work.path().join("notifications.jsonl").display(),
            ),
        )
        .expect("config");
        let log = std::fs::File::create(work.path().join("serve.log")).expect("log");
        let child = tiny
            .command(herd())
            .args(["serve", "--config"])
            .arg(&cfg)
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("herd serve");
        wait_until_ready(&work.path().join("serve.log")).await;
        Serve {
            child,
            work,
            results: tiny.outside().join("results"),
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.work.path().join("serve.log")).unwrap_or_default()
    }

    fn submit(&self, name: &str, url: &str) {
        std::fs::write(
            self.work.path().join("inbox").join(format!("{name}.yaml")),
            spec_yaml(name, url),
        )
        .expect("spec");
    }

    /// The `n`th `RunCompleted` (bounded wait).
    async fn completed(&self, n: usize) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let text = std::fs::read_to_string(self.work.path().join("notifications.jsonl"))
                .unwrap_or_default();
            let mut got: Vec<Value> = text
                .lines()
                .map(|l| serde_json::from_str(l).expect("every line is whole JSON"))
                .filter(|v: &Value| v["type"] == "RunCompleted")
                .collect();
            if got.len() >= n {
                return got.swap_remove(n - 1);
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{n} RunCompleted expected: {text}\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_on_a_full_results_disk_announces_the_run_without_results_and_keeps_serving() {
    let Some(tiny) = TinyFs::mount(1024) else {
        return;
    };
    let t = start_target().await;
    let mut serve = Serve::start(&tiny).await;
    let mut published = watch_results(
        broker_port_in(&serve.log()),
        &serve.results.join(".broker-observer"),
        "herd-observer-full",
    )
    .await;
    let filler = tiny.fill(LEAVE_KIB);
    serve.submit("lost", &t.url());
    let lost = serve.completed(1).await;
    let d = &lost["detail"];
    let run = d["run_id"].as_str().expect("run id").to_string();
    // The run itself went well: its numbers are all there.
    assert_eq!(d["state"], "completed", "{d}");
    // The verdict is the load's (state and thresholds, as everywhere); the lost files are
    // said beside it, not folded into it.
    assert_eq!(d["verdict"], "passed", "{d}");
    assert_eq!(d["requests"].as_u64(), Some(t.stats().requests));
    // Its results are not, and the notification says which file and why.
    assert_eq!(d["results"], Value::Null, "{d}");
    let why = d["results_error"].as_str().unwrap_or_default();
    assert!(
        why.starts_with("results not written: ")
            && why.contains(&run)
            && why.contains("No space left on device"),
        "{d}"
    );
    eprintln!("measured: results_error = {why}");
    assert_not_marked_complete(&serve.results.join(&run));
    assert!(
        serve.child.try_wait().expect("status").is_none(),
        "serve exited"
    );

    // Space again: the next run is written and announced as before.
    std::fs::remove_file(filler).expect("free the disk");
    serve.submit("kept", &t.url());
    let kept = serve.completed(2).await;
    let d = &kept["detail"];
    let kept_run = d["run_id"].as_str().expect("run id").to_string();
    assert_eq!(d["results_error"], Value::Null, "{d}");
    let dir = d["results"].as_str().expect("results");
    assert!(dir.ends_with(&kept_run), "{dir}");
    let summary: Value = serde_json::from_str(
        &std::fs::read_to_string(serve.results.join(&kept_run).join("summary.json"))
            .expect("summary.json"),
    )
    .expect("a whole summary.json");
    assert_eq!(summary["state"], "completed");

    // Only the written result was published on its retained topic.
    let (topic, doc) = tokio::time::timeout(Duration::from_secs(10), published.recv())
        .await
        .expect("a result published")
        .expect("watcher alive");
    assert_eq!(topic, format!("herd/runs/{kept_run}/result"));
    assert_eq!(doc, summary);
    assert!(published.try_recv().is_err(), "nothing else published");

    let pid = serve.child.id().expect("pid") as i32;
    // SAFETY: signalling our own child (nsenter execs herd, so it is herd).
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let status = tokio::time::timeout(Duration::from_secs(30), serve.child.wait())
        .await
        .expect("serve stops")
        .expect("status");
    assert!(status.success(), "{status}\n{}", serve.log());
}
