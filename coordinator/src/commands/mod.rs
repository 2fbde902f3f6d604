//! The `herd` subcommands, each a `run(options, interrupts)` that returns an [`Exit`]; only
//! `main` turns that into the process's exit.
//!
//! - [`run`]: `herd run` (the quickstart); [`agent`]: `herd agent`.
//! - [`client`]: `herd submit`, `runs`, `show`, `cancel` — a client of `herd serve`'s API;
//!   [`token`]: API tokens in a serve config's state folder.
//! - `herd serve` is [`crate::serve::run`]; `validate` and `target` are below.

pub mod agent;
pub mod client;
mod client_files;
pub mod report;
pub mod run;
pub mod token;

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use demo_target::TargetConfig;
use messages::spec::SpecLimits;

use crate::bundle::{self, local::LocalSource, BundleError, Overrides};
use crate::exit::Exit;
use crate::signals::Interrupts;

/// `herd validate`: every problem of the spec at once, with line and column; the files it
/// names are read and checked too.
pub async fn validate(path: &Path) -> anyhow::Result<Exit> {
    let source = LocalSource::new(path);
    match bundle::build(&source, &Overrides::default(), &SpecLimits::DEFAULT).await {
        Ok(b) => {
            let spec = &b.spec;
            let what = match &spec.runner {
                Some(r) => format!("engine {} running {}", r.engine.name(), r.script),
                None => format!("{} step(s)", spec.scenario.len()),
            };
            let from_script = |yes: bool| {
                if yes {
                    " (from the script's options)"
                } else {
                    ""
                }
            };
            let (load_from, thresholds_from) = spec.runner.as_ref().map_or((false, false), |r| {
                (r.load_from_script, r.thresholds_from_script)
            });
            let more = spec.runner.as_ref().map_or(0, |r| r.more_scenarios.len());
            let more = if more > 0 {
                format!(
                    " + {more} more scenario(s), the last ending {} after the start",
                    humantime::format_duration(Duration::from_millis(spec.planned_ms()))
                )
            } else {
                String::new()
            };
            println!(
                "{}: ok — {what}, {}{more}{}, {}, {} threshold(s){}",
                path.display(),
                load_line(&spec.load.executor),
                from_script(load_from),
                match spec.agents.total() {
                    Some(n) => format!("{n} agent(s)"),
                    None => "one agent per CPU core".to_string(),
                },
                spec.thresholds.len(),
                from_script(thresholds_from && !spec.thresholds.is_empty()),
            );
            for w in messages::spec::lint::warnings(spec) {
                eprintln!("{}: warning: {w}", path.display());
            }
            Ok(Exit::Ok)
        }
        Err(e @ (BundleError::Invalid(_) | BundleError::File { .. })) => {
            eprintln!("{e}");
            Ok(Exit::Invalid)
        }
        Err(e) => Err(e.into()),
    }
}

/// What the load will be, as a person checks it: the executor, how long, and its peak.
pub fn load_line(e: &messages::spec::Executor) -> String {
    use messages::spec::Executor as E;
    let secs = |ms: u64| humantime::format_duration(Duration::from_millis(ms)).to_string();
    let per = |unit_ms: u64| match unit_ms {
        1000 => "/s".to_string(),
        60_000 => "/min".to_string(),
        ms => format!(" per {}", secs(ms)),
    };
    let peak = match e {
        E::ConstantArrivalRate {
            rate,
            time_unit_ms,
            max_vus,
            ..
        } => format!(
            "{rate} iterations{} (up to {max_vus} VUs)",
            per(*time_unit_ms)
        ),
        E::RampingArrivalRate {
            start_rate,
            time_unit_ms,
            stages,
            max_vus,
            ..
        } => {
            let top = stages.iter().map(|s| s.target).fold(*start_rate, u64::max);
            format!(
                "peak {top} iterations{} (up to {max_vus} VUs)",
                per(*time_unit_ms)
            )
        }
        E::PerVuIterations {
            vus, iterations, ..
        } => format!("{vus} VUs × {iterations} iterations"),
        E::SharedIterations {
            vus, iterations, ..
        } => format!("{iterations} iterations shared by {vus} VUs"),
        other => format!("peak {} VUs", messages::split::max_vus(other)),
    };
    let length = match e {
        E::PerVuIterations { .. } | E::SharedIterations { .. } => {
            format!("at most {}", secs(e.planned_ms()))
        }
        _ => secs(e.planned_ms()),
    };
    format!("executor {}, {length}, {peak}", e.name())
}

/// `herd target`: the built-in HTTP target until the first interrupt.
pub async fn target(cfg: TargetConfig, mut interrupts: Interrupts) -> anyhow::Result<Exit> {
    let listen = cfg.listen;
    demo_target::run_cli(cfg, async move {
        interrupts.next().await;
    })
    .await
    .with_context(|| format!("serving the target on {listen}"))?;
    Ok(Exit::Ok)
}

/// Reads a `--delay` in milliseconds.
pub fn delay(ms: Option<u64>) -> Option<Duration> {
    ms.map(Duration::from_millis)
}
