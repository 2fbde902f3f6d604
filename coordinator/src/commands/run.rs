//! `herd run spec.yaml`: a whole distributed run on this machine. Embedded broker (or
//! `--broker`), the coordinator actors in-process, agents as child processes, a live line per
//! second, results in `./herd-results/<run>/`, and an exit code from the run's end state and
//! verdict.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use anyhow::Context as _;
use demo_target::{Target, TargetConfig, TargetStats};
use messages::policy::TargetPolicy;
use messages::spec::SpecLimits;
use tokio::sync::oneshot;
use transport::{BrokerUrl, TlsFiles};

use crate::bundle::{self, local::LocalSource, BundleError, Overrides};
use crate::bus::Bus;
use crate::exit::Exit;
use crate::identity::Identity;
use crate::run::launcher::LocalLauncher;
use crate::run::machine::Timing;
use crate::run::outcome::FinalResult;
use crate::run::protocol::StopAgents;
use crate::run::supervisor::Cancel;
use crate::run::{start_run, LauncherLink, RunPlan, RunSettings};
use crate::signals::{Interrupts, Signal};

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub spec: PathBuf,
    pub agents: Option<u32>,
    pub broker: Option<String>,
    pub tls: TlsFiles,
    pub results_dir: PathBuf,
    pub quiet: bool,
    /// Seconds a second stays open for late batches.
    pub late_window_s: u64,
    /// The broker address agents use, when it differs from the coordinator's (NAT, proxy).
    pub agent_broker: Option<String>,
    /// `--intake-connections`: connections reading the agents' topics (`Bus::connect`).
    pub intake_connections: u32,
    /// `--agents-per-process`: agents one child process hosts.
    pub agents_per_process: u32,
    /// `--allow-target` / `--deny-target`: the target policy (`TargetPolicy::from_flags`;
    /// everything allowed without them).
    pub allow_targets: Vec<String>,
    pub deny_targets: Vec<String>,
    /// The `herd` binary agents run as.
    pub program: PathBuf,
    /// `--baseline DIR`: a run folder whose `summary.json` thresholds like
    /// `p95 < baseline.p95 * 1.10` are judged against.
    pub baseline: Option<PathBuf>,
}

/// The built-in target on its own threads, so it never competes with the coordinator's.
struct Builtin {
    url: String,
    stop: oneshot::Sender<()>,
    thread: std::thread::JoinHandle<TargetStats>,
}

fn start_builtin() -> anyhow::Result<Builtin> {
    let (url_tx, url_rx) = std::sync::mpsc::channel::<std::io::Result<String>>();
    let (stop, stop_rx) = oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("herd-target".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = url_tx.send(Err(e));
                    return TargetStats::default();
                }
            };
            rt.block_on(async move {
                match Target::start(TargetConfig {
                    listen: SocketAddr::from(([127, 0, 0, 1], 0)),
                    tls: false,
                    base_delay: None,
                })
                .await
                {
                    Ok(t) => {
                        let _ = url_tx.send(Ok(t.url()));
                        let _ = stop_rx.await;
                        let stats = t.stats();
                        t.shutdown().await;
                        stats
                    }
                    Err(e) => {
                        let _ = url_tx.send(Err(e));
                        TargetStats::default()
                    }
                }
            })
        })?;
    let url = url_rx
        .recv()
        .context("the built-in target thread ended")??;
    Ok(Builtin { url, stop, thread })
}

impl Builtin {
    fn stop(self) {
        let _ = self.stop.send(());
        if let Ok(stats) = self.thread.join() {
            eprintln!("herd: built-in target counted {} requests", stats.requests);
        }
    }
}

/// Runs the spec; each item of `interrupts` is a Ctrl-C, SIGTERM or SIGHUP: the first cancels
/// gracefully (partial results, exit 130, 143 or 129 at the end), the second kills the agents
/// (the results keep what they sent), a third returns at once.
pub async fn run(opts: RunOptions, mut interrupts: Interrupts) -> anyhow::Result<Exit> {
    let mut policy = match TargetPolicy::from_flags(&opts.allow_targets, &opts.deny_targets) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("herd run: {e}");
            return Ok(Exit::Invalid);
        }
    };
    let baseline = match &opts.baseline {
        Some(dir) => {
            let file = dir.join(crate::run::results::SUMMARY);
            let read = std::fs::metadata(&file)
                .map_err(|e| e.to_string())
                .and_then(|m| {
                    if m.len() > 64 << 20 {
                        Err("larger than 64 MiB".into())
                    } else {
                        std::fs::read_to_string(&file).map_err(|e| e.to_string())
                    }
                })
                .and_then(|t| crate::run::baseline::Baseline::from_summary(&t));
            match read {
                Ok(b) => Some(b.with_series(crate::run::baseline::read_series(dir))),
                Err(e) => {
                    eprintln!("herd run: --baseline {}: {e}", file.display());
                    return Ok(Exit::Invalid);
                }
            }
        }
        None => None,
    };
    let source = LocalSource::new(&opts.spec);
    let mut bundle = match bundle::build(&source, &Overrides::default(), &SpecLimits::DEFAULT).await
    {
        Ok(b) => b,
        Err(e @ (BundleError::Invalid(_) | BundleError::File { .. })) => {
            eprintln!("{e}");
            return Ok(Exit::Invalid);
        }
        Err(e) => return Err(e.into()),
    };
    for w in messages::spec::lint::warnings(&bundle.spec) {
        eprintln!("herd: warning: {w}");
    }
    if let Some(n) = opts.agents {
        if let Err(why) = SpecLimits::DEFAULT.check_agents(n.into()) {
            eprintln!("herd: --agents: {why}");
            return Ok(Exit::Invalid);
        }
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    let count = opts
        .agents
        .or(bundle.spec.agents.total())
        .unwrap_or(cores)
        .max(1);
    let builtin = if bundle.spec.target.builtin {
        let b = start_builtin()?;
        bundle.spec.target.url = b.url.clone();
        eprintln!("herd: built-in target on {}", b.url);
        crate::targets::allow_builtin(&mut policy, &b.url);
        Some(b)
    } else {
        None
    };
    crate::targets::warn_up_front(&bundle.spec, &policy);
    let identity = Arc::new(Identity::new()?);
    // The embedded broker lets in only this coordinator and its agents.
    let embedded = opts.broker.is_none();
    let broker = match &opts.broker {
        Some(b) => BrokerUrl::parse(b)?,
        None => BrokerUrl::local(crate::broker::start(
            0,
            Some(Arc::new(identity.secret().clone())),
        )?),
    };
    let run_id = crate::clock::run_id(&bundle.spec.name, None);
    let dir = opts.results_dir.join(&run_id);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    if embedded {
        identity
            .write_observer_login(&opts.results_dir)
            .with_context(|| {
                format!(
                    "writing the observer login in {}",
                    opts.results_dir.display()
                )
            })?;
    }
    eprintln!(
        "herd: run {run_id}: {count} agent(s), broker {broker}{}, executor {}",
        if opts.broker.is_none() {
            " (embedded)"
        } else {
            ""
        },
        bundle.spec.load.executor.name()
    );
    let agent_broker = match &opts.agent_broker {
        Some(b) => BrokerUrl::parse(b)?.to_string(),
        None => broker.to_string(),
    };
    let bus = Bus::connect(
        &broker,
        &opts.tls,
        format!("herd-coordinator-{run_id}"),
        identity,
        embedded,
        opts.intake_connections,
    )
    .await?;
    let plan = RunPlan::new(run_id, bundle, count, dir.clone()).with_baseline(baseline);
    let settings = RunSettings {
        late_window_s: opts.late_window_s,
        quiet: opts.quiet,
        agent_broker,
        agent_tls: opts.tls.clone(),
        broker_login: embedded,
        timing: Timing::default(),
        policy,
        journal: None,
        live_tap: None,
    };
    let program = opts.program.clone();
    let per_process = opts.agents_per_process;
    let handle = start_run(plan, settings, &bus, move |sup| {
        let l = LocalLauncher::new(program, sup, dir)
            .dying_with_parent()
            .agents_per_process(per_process)
            .start();
        LauncherLink {
            launch: l.clone().recipient(),
            stop: l.recipient(),
        }
    })
    .await?;

    let mut done = handle.done;
    // Ctrl-C, SIGTERM and SIGHUP alike: the first cancels gracefully; the second kills the
    // agents, whose exits end the run at once with what they had sent (summary.json still
    // written); a third leaves without waiting.
    let mut first: Option<Signal> = None;
    let mut killed = false;
    let outcome = loop {
        tokio::select! {
            outcome = &mut done => break outcome.context("the run supervisor ended without a result")?,
            sig = interrupts.next_signal() => {
                let Some(sig) = sig else {
                    // Nobody can interrupt any more: just wait for the run.
                    break (&mut done).await.context("the run supervisor ended without a result")?;
                };
                match first {
                    None => {
                        first = Some(sig);
                        eprintln!("herd: {} — cancelling: agents are told to stop; Ctrl-C again to kill them", sig.name());
                        handle.supervisor.do_send(Cancel { reason: format!("cancelled with {}", sig.name()) });
                    }
                    Some(_) if !killed => {
                        killed = true;
                        eprintln!("herd: killing the agents; the results keep what they sent (Ctrl-C again to leave at once)");
                        handle.stop_agents.do_send(StopAgents);
                    }
                    Some(f) => {
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        return Ok(Exit::of_signal(f));
                    }
                }
            }
        }
    };
    let r = &outcome.result;
    if !opts.quiet {
        print!("\n{}", summary_table(r));
    } else {
        // The table (which has them) is not printed; the warnings are, even so.
        for w in messages::summary::run_warnings(&r.total) {
            eprintln!("herd: ⚠ WARNING: {w}");
        }
    }
    println!(
        "run {} {}{} — agents {}/{} finished{}, start skew {} ms",
        r.run_id,
        r.state,
        r.reason
            .as_ref()
            .map(|x| format!(" ({x})"))
            .unwrap_or_default(),
        r.agents.len() as u32 - r.agents_lost(),
        r.agents.len(),
        if r.agents_lost() > 0 {
            " (RUN FLAGGED: agents lost)"
        } else {
            ""
        },
        r.start_skew_ms()
            .map_or("n/a".to_string(), |s| s.to_string()),
    );
    let intake = bus.intake_counts();
    if !intake.is_empty() {
        println!(
            "intake: {} connections delivered {} messages ({})",
            intake.len(),
            intake.iter().sum::<u64>(),
            intake
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    match &outcome.dir {
        Ok(d) => println!("results: {}", d.display()),
        Err(e) => eprintln!("herd: {e}"),
    }
    handle.bus.detach();
    bus.close(Duration::from_secs(2)).await;
    if let Some(b) = builtin {
        b.stop();
    }
    let exit = Exit::of_run(r.state, r.verdict, outcome.dir.is_ok());
    Ok(match first {
        // Cancelled by a signal: exit as that signal says (143 for SIGTERM, 129 for SIGHUP).
        Some(sig) if exit == Exit::Cancelled => Exit::of_signal(sig),
        _ => exit,
    })
}

fn summary_table(r: &FinalResult) -> String {
    let totals = agent::report::Totals {
        labels: r.labels.clone(),
        iterations: r.iterations,
        dropped: r.dropped,
    };
    agent::report::summary_table(
        &totals,
        r.seconds,
        &r.thresholds,
        &r.error_samples,
        &r.summary().checks,
    )
    .unwrap_or_else(|e| format!("herd: cannot print the summary: {e}\n"))
}
