//! Framework runners: the agent runs k6, Locust or JMeter on the user's script with
//! this agent's share of the load, reads the tool's machine output **while it runs**, and feeds
//! every sample to the same [`Recorder`] the native engine uses — so live view, batches and the
//! exact merge are the same whatever produced the load.
//!
//! What differs per tool lives behind [`Runner`] (one implementation each in [`k6`], [`locust`],
//! [`jmeter`], chosen by [`runner()`]); everything here is shared by all tools:
//!
//! - [`find_tool`]: the tool on PATH or where `HERD_K6` / `HERD_LOCUST` / `HERD_JMETER` point;
//!   a missing tool is an error at Assign time (the agent answers Failed, never hangs).
//! - [`run_share`]: write the script, start the tool at the fleet's start instant, tail its
//!   output file, stop it gracefully on Stop (SIGINT, then SIGTERM, then SIGKILL) and still read
//!   what it wrote; a tool that fails brings its exit status and stderr tail back.

mod feed;
pub mod jmeter;
pub mod k6;
mod k6_duration;
pub mod k6_options;
mod k6_thresholds;
pub mod locust;
mod process;
pub use process::on_parent_death;
mod runner;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use messages::policy::TargetPolicy;
use messages::spec::{Engine, Spec, SCRIPT_FILE};
use messages::split::Share;
use tokio::sync::watch;

use crate::executor::Report;
use crate::recorder::Recorder;

pub use feed::Event;
pub use runner::{runner, Entry, Launch, LineError, OutputReader, Runner};

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
    #[error(transparent)]
    Plan(#[from] jmeter::PlanError),
    /// What the script's own options ask that herd cannot carry over, one line each.
    #[error("{}", .0.join("; "))]
    Options(Vec<String>),
    #[error("{tool} exited with {status}; last lines of its output:\n{tail}")]
    Failed {
        tool: &'static str,
        status: String,
        tail: String,
    },
}

/// The tool's executable: `HERD_<TOOL>` if set, else the first match on PATH.
pub fn find_tool(engine: Engine) -> Result<PathBuf, RunnerError> {
    let r = runner(engine);
    let not_found = || RunnerError::NotFound {
        tool: r.tool(),
        hint: r.install_hint(),
    };
    if let Ok(p) = std::env::var(r.path_var()) {
        let p = PathBuf::from(p);
        return if p.is_file() { Ok(p) } else { Err(not_found()) };
    }
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|d| d.join(r.tool()))
        .find(|p| p.is_file())
        .ok_or_else(not_found)
}

/// What the agent checks when it gets its assignment, before it says Ready.
pub fn check(spec: &Spec, data: &BTreeMap<String, Vec<u8>>) -> Result<(), RunnerError> {
    let Some(r) = &spec.runner else { return Ok(()) };
    find_tool(r.engine)?;
    let files = script_files(data);
    if files.is_empty() {
        return Err(RunnerError::NoScript);
    }
    entry(runner(r.engine), &r.script, &files)?;
    Ok(())
}

/// What a runner spec asks that its tool cannot do, checked where the spec is read (`herd
/// validate`, `herd run`, serve) rather than by each agent after the launch: a load shape the
/// tool cannot express (Locust and JMeter: constant, or a ramp up that then holds — no
/// ramp-down, no arrival rate), a JMeter plan herd cannot split (not exactly one thread
/// group), a script that is not there. The tool need not be installed where this runs.
pub fn check_plan(spec: &Spec, data: &BTreeMap<String, Vec<u8>>) -> Result<(), RunnerError> {
    let Some(r) = &spec.runner else { return Ok(()) };
    let files = script_files(data);
    if files.is_empty() {
        return Err(RunnerError::NoScript);
    }
    let start = entry(runner(r.engine), &r.script, &files)?;
    if r.engine == Engine::Locust {
        for (path, bytes) in &files {
            let name = if path.is_empty() {
                start.as_str()
            } else {
                path.as_str()
            };
            if !name.ends_with(".py") {
                continue;
            }
            if let Some((line, class)) = locust::load_test_shape(&String::from_utf8_lossy(bytes)) {
                return Err(RunnerError::Setup(format!(
                    "{name} line {line}: class {class} is a LoadTestShape; Locust would run the \
                     whole shape on every agent (the fleet making that load times the agents) for \
                     a length herd cannot know before the run, so herd does not run shapes: give \
                     its stages as the spec's `load:` (constant-vus, or ramping-vus that ramps up \
                     and holds) and remove the class"
                )));
            }
        }
    }
    if matches!(r.engine, Engine::Locust | Engine::Jmeter) {
        let shape = users_shape(r.engine, &spec.load.executor)?;
        if r.engine == Engine::Jmeter {
            let plan = files
                .iter()
                .find(|(p, _)| p.is_empty() || *p == start)
                .map(|(_, b)| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            jmeter::share_plan(&plan, shape.users.max(1), 1, 1)?;
        }
    }
    Ok(())
}

/// Reads a k6 script's own `options` into `spec` where the spec leaves them to the script
/// (no `load:`, no `thresholds:`; see [`k6_options`]): the load, checked against `limits` like
/// a written one, the scenario's name, `exec`, `env` and `tags`, the thresholds, and notes on
/// what was not carried over. Called once, where the spec and its files are read.
pub fn apply_script_options(
    spec: &mut Spec,
    data: &BTreeMap<String, Vec<u8>>,
    limits: &messages::spec::SpecLimits,
) -> Result<(), RunnerError> {
    let Some(r) = spec.runner.as_ref().filter(|r| r.engine == Engine::K6) else {
        return Ok(());
    };
    let (load_from_script, thresholds_from_script) = (r.load_from_script, r.thresholds_from_script);
    let files = script_files(data);
    if files.is_empty() {
        return Err(RunnerError::NoScript);
    }
    let start = entry(runner(Engine::K6), &r.script, &files)?;
    let Some((_, bytes)) = files.iter().find(|(p, _)| p.is_empty() || *p == start) else {
        return Err(RunnerError::NoScript);
    };
    let src = std::str::from_utf8(bytes)
        .map_err(|e| RunnerError::Setup(format!("{start} is not UTF-8: {e}")))?;
    let found =
        k6_options::read(src).map_err(|e| RunnerError::Options(vec![format!("{start}: {e}")]))?;
    let Some(found) = found else { return Ok(()) };
    let at = |e: &str| format!("{start} options (line {}): {e}", found.line);
    let t = k6_options::translate(&found.value, load_from_script, thresholds_from_script)
        .map_err(|errs| RunnerError::Options(errs.iter().map(|e| at(e)).collect()))?;
    // Each scenario's load, checked like a written one; then the whole against the caps.
    let mut errs = Vec::new();
    let mut loads = Vec::new();
    for (json, sc) in &t.scenarios {
        let whose = sc
            .as_ref()
            .map(|s| format!("scenario {}: ", s.name))
            .unwrap_or_default();
        match messages::spec::decode_load(json, limits) {
            Ok(l) => loads.push((l, sc.clone())),
            Err(e) => errs.extend(
                e.issues()
                    .iter()
                    .map(|i| at(&format!("{whose}as herd's {}: {}", i.path, i.message))),
            ),
        }
    }
    if !errs.is_empty() {
        return Err(RunnerError::Options(errs));
    }
    let mut loads = loads.into_iter();
    let mut first_scenario = None;
    if let Some((l, sc)) = loads.next() {
        spec.load = l;
        first_scenario = sc;
    }
    let more: Vec<messages::spec::MoreScenario> = loads
        .filter_map(|(load, sc)| {
            Some(messages::spec::MoreScenario {
                scenario: sc?,
                load,
            })
        })
        .collect();
    let peak = more
        .iter()
        .fold(messages::split::max_vus(&spec.load.executor), |n, m| {
            n.saturating_add(messages::split::max_vus(&m.load.executor))
        });
    if peak > limits.vus {
        return Err(RunnerError::Options(vec![at(&format!(
            "the scenarios together reach {peak} VUs, more than the limit of {} (raise [limits] vus in the serve config)",
            limits.vus
        ))]));
    }
    if thresholds_from_script {
        if t.thresholds.len() > limits.thresholds {
            return Err(RunnerError::Options(vec![at(&format!(
                "{} thresholds, more than the {} a spec may have",
                t.thresholds.len(),
                limits.thresholds
            ))]));
        }
        spec.thresholds = t.thresholds;
    }
    if let Some(r) = spec.runner.as_mut() {
        r.scenario = first_scenario;
        r.more_scenarios = more;
        r.notes = t.notes.iter().map(|n| at(n)).collect();
    }
    let end = spec.planned_ms();
    if end > limits.duration_ms {
        return Err(RunnerError::Options(vec![at(&format!(
            "the scenarios end {}s after the start, past the limit of {}s (raise [limits] duration_s in the serve config)",
            end / 1000,
            limits.duration_ms / 1000
        ))]));
    }
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

/// The file the tool starts from. A single file is itself (under the name the user gave it,
/// which the tool may print); in a folder it is the runner's preferred file, or else the only
/// top-level file with the runner's extension, so a folder is never started from a guess.
fn entry(
    runner: &dyn Runner,
    script: &str,
    files: &[(String, &[u8])],
) -> Result<String, RunnerError> {
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
    let Entry { preferred, ext } = runner.entry();
    if let Some(preferred) = preferred.filter(|p| top.contains(p)) {
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
            match preferred {
                None => "keep one".to_string(),
                Some(p) => format!("name the one to start from {p}"),
            }
        ))),
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

/// Runs `share` of `spec` with the spec's tool, its samples into `recorder` (whose clock also
/// corrects the tool's own timestamps). Returns when the tool ended and every sample it wrote
/// was recorded. The target `policy` goes to the tool as far as it takes one; what it cannot
/// enforce is logged (the coordinator refuses such specs unless configured not to).
pub async fn run_share(
    spec: &Spec,
    data: &BTreeMap<String, Vec<u8>>,
    share: &Share,
    run_id: &str,
    policy: &TargetPolicy,
    mut stop: watch::Receiver<bool>,
    recorder: Recorder,
) -> Result<Report, RunnerError> {
    let started = Instant::now();
    let Some(spec_runner) = &spec.runner else {
        return Err(RunnerError::Setup("not a runner spec".into()));
    };
    let r = runner(spec_runner.engine);
    let program = find_tool(spec_runner.engine)?;
    let files = script_files(data);
    if files.is_empty() {
        return Err(RunnerError::NoScript);
    }
    let name = entry(r, &spec_runner.script, &files)?;
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
    for gap in r.unconfined(policy) {
        tracing::warn!(tool = r.tool(), "not enforced on the script: {gap}");
    }
    let cmd = r.command(&Launch {
        spec,
        share,
        run_id,
        program: &program,
        dir: dir.path(),
        script_file: &name,
        policy,
    })?;
    let Some(cmd) = cmd else {
        // Nothing to do for this agent (e.g. 1 VU split across 2 agents).
        let now = Instant::now();
        return Ok(Report {
            started: now,
            ended: now,
            interrupted: false,
            stopped_early: false,
            checks: Vec::new(),
            http_versions: Vec::new(),
        });
    };
    let checks = recorder.checks();
    let mut feed = feed::Feed::new(&recorder);
    let rec = tokio::spawn(recorder.run());
    let result = process::drive(r, cmd, spec.graceful_stop_ms(), &mut stop, &mut feed).await;
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
        checks: feed::named_counts(&crate::recorder::lock_checks(&checks)),
        http_versions: Vec::new(),
    })
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
            entry(runner(Engine::K6), "a/load.js", &f(&[""])).expect("single"),
            "load.js"
        );
        assert_eq!(
            entry(runner(Engine::K6), "d", &f(&["main.js", "lib.js"])).expect("main"),
            "main.js"
        );
        assert_eq!(
            entry(runner(Engine::K6), "d", &f(&["only.js", "data/x.js"])).expect("only"),
            "only.js"
        );
        let many = entry(runner(Engine::K6), "d", &f(&["a.js", "b.js"])).expect_err("ambiguous");
        assert!(
            many.to_string()
                .contains("name the one to start from main.js"),
            "{many}"
        );
        assert_eq!(
            entry(
                runner(Engine::Locust),
                "d",
                &f(&["locustfile.py", "util.py"])
            )
            .expect("lf"),
            "locustfile.py"
        );
        assert_eq!(
            entry(
                runner(Engine::Jmeter),
                "d",
                &f(&["plan.jmx", "lib/ext/p.jar"])
            )
            .expect("jmx"),
            "plan.jmx"
        );
        assert!(entry(runner(Engine::Jmeter), "d", &f(&["x.csv"])).is_err());
    }
}
