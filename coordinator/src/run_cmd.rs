//! `herd run spec.yaml`: a whole distributed run on this machine. Embedded broker (or
//! `--broker`), the coordinator actors in-process, agents as child processes, a live line per
//! second, results in `./herd-results/<run>/`, and an exit code from the thresholds.

use std::net::SocketAddr;
use std::path::PathBuf;

use actix::prelude::*;
use agent::mqtt::{BrokerUrl, TlsFiles};
use anyhow::Context as _;
use tokio::sync::oneshot;

use crate::cli::{
    load_spec, SpecLoadError, EXIT_CANCELLED, EXIT_ERROR, EXIT_INVALID, EXIT_OK, EXIT_THRESHOLDS,
};
use crate::launcher::LocalLauncher;
use crate::protocol::StopAgents;
use crate::supervisor::Cancel;
use crate::target::{Target, TargetConfig, TargetStats};
use crate::wiring::{start_run, LauncherLink, RunParams};

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

pub async fn run(opts: RunOptions) -> anyhow::Result<u8> {
    let mut spec = match load_spec(&opts.spec) {
        Ok(s) => s,
        Err(SpecLoadError(msg)) => {
            eprintln!("{msg}");
            return Ok(EXIT_INVALID);
        }
    };
    let spec_text = std::fs::read_to_string(&opts.spec)
        .with_context(|| format!("reading {}", opts.spec.display()))?;
    let spec_dir = opts
        .spec
        .parent()
        .unwrap_or(std::path::Path::new("."))
        .to_path_buf();
    let data: Vec<messages::wire::DataFile> = agent::engine::load_data(&spec, &spec_dir)?
        .into_iter()
        .map(|(name, bytes)| messages::wire::DataFile { name, bytes })
        .collect();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    let count = opts.agents.or(spec.agents.total()).unwrap_or(cores).max(1);

    let builtin = if spec.target.builtin {
        let b = start_builtin()?;
        spec.target.url = b.url.clone();
        eprintln!("herd: built-in target on {}", b.url);
        Some(b)
    } else {
        None
    };
    let broker = match &opts.broker {
        Some(b) => BrokerUrl::parse(b)?,
        None => {
            let addr = crate::broker::start(0)?;
            BrokerUrl {
                tls: false,
                host: addr.ip().to_string(),
                port: addr.port(),
            }
        }
    };
    let run_id = format!("{}-{}", spec.name, crate::clock::stamp());
    let dir = opts.results_dir.join(&run_id);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    eprintln!(
        "herd: run {run_id}: {} agent(s), broker {broker}{}, executor {}",
        count,
        if opts.broker.is_none() {
            " (embedded)"
        } else {
            ""
        },
        spec.load.executor.name()
    );

    let agent_broker = match &opts.agent_broker {
        Some(b) => BrokerUrl::parse(b)?.to_string(),
        None => broker.to_string(),
    };
    let log_dir = dir.clone();
    let handle = start_run(
        RunParams {
            run_id: run_id.clone(),
            spec,
            spec_text,
            data,
            agents: count,
            broker,
            tls: opts.tls.clone(),
            agent_broker,
            agent_tls: opts.tls.clone(),
            late_window_s: opts.late_window_s,
            quiet: opts.quiet,
            dir: dir.clone(),
        },
        move |sup| {
            let l = LocalLauncher::new(sup, log_dir).start();
            LauncherLink {
                launch: l.clone().recipient(),
                stop: l.recipient(),
            }
        },
    )
    .await?;
    let (sup, bus, done_rx) = (handle.supervisor, handle.bus, handle.done);
    let launcher_c = handle.stop_agents;

    let sup_c = sup.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("herd: cancelling — agents are told to stop; Ctrl-C again to kill them");
            sup_c.do_send(Cancel {
                reason: "cancelled with Ctrl-C".into(),
            });
            if tokio::signal::ctrl_c().await.is_ok() {
                launcher_c.do_send(StopAgents);
                tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                std::process::exit(i32::from(EXIT_CANCELLED));
            }
        }
    });

    let outcome = done_rx
        .await
        .context("the run supervisor ended without a result")?;
    let r = &outcome.result;
    let totals = agent::report::Totals {
        labels: r.totals.clone(),
        iterations: r.iterations,
        dropped: r.dropped,
    };
    if !opts.quiet {
        match agent::report::summary_table(&totals, r.seconds, &r.verdicts) {
            Ok(t) => print!("\n{t}"),
            Err(e) => eprintln!("herd: cannot print the summary: {e}"),
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
        r.agents.len() - r.agents_lost(),
        r.agents.len(),
        if r.agents_lost() > 0 {
            " (RUN FLAGGED: agents lost)"
        } else {
            ""
        },
        r.start_skew_ms()
            .map_or("n/a".to_string(), |s| s.to_string()),
    );
    match &outcome.dir {
        Ok(d) => println!("results: {}", d.display()),
        Err(e) => eprintln!("herd: {e}"),
    }
    bus.disconnect();
    if let Some(b) = builtin {
        let _ = b.stop.send(());
        if let Ok(stats) = b.thread.join() {
            eprintln!("herd: built-in target counted {} requests", stats.requests);
        }
    }
    Ok(match r.state.as_str() {
        "cancelled" => EXIT_CANCELLED,
        "failed" => EXIT_ERROR,
        _ if outcome.dir.is_err() => EXIT_ERROR,
        _ if r.passed() => EXIT_OK,
        _ => EXIT_THRESHOLDS,
    })
}
