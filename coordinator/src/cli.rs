//! Subcommands of `herd` and their exit codes.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use messages::spec::{parse_spec, Spec, SpecError};
use tokio::sync::watch;

use crate::target::{self, TargetConfig};

/// All thresholds passed (or there were none).
pub const EXIT_OK: u8 = 0;
/// The run could not be carried out (I/O, broker, agents…).
pub const EXIT_ERROR: u8 = 1;
/// The spec or the command line is invalid.
pub const EXIT_INVALID: u8 = 2;
/// The run completed and at least one threshold failed (k6 uses the same code).
pub const EXIT_THRESHOLDS: u8 = 99;
/// Cancelled by Ctrl-C.
pub const EXIT_CANCELLED: u8 = 130;

#[derive(Parser, Debug)]
#[command(
    name = "herd",
    version,
    about = "Distributed load testing: one binary, embedded broker by default"
)]
pub struct Cli {
    /// More log output (-v info, -vv debug). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a spec on this machine: embedded broker, coordinator, agents as child processes.
    Run(RunArgs),
    /// Run one load agent (coordinated through a broker, or `--standalone`).
    Agent(AgentArgs),
    /// The long-running coordinator: inbox folder locally; SQS, ECS, IoT Core, S3 on AWS.
    Serve {
        /// Configuration file (TOML). Default: `HERD_CONFIG`, else TOML in `HERD_CONFIG_TOML`.
        #[arg(long, env = "HERD_CONFIG", value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Start the built-in HTTP target (for demos, tests and benchmarks).
    Target(TargetArgs),
    /// Check a spec and print every problem with its line and column.
    Validate {
        /// The spec file (YAML or JSON).
        spec: PathBuf,
    },
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// The spec file (YAML or JSON).
    pub spec: PathBuf,
    /// Number of agents (default: the spec's `agents`, else one per CPU core).
    #[arg(long)]
    pub agents: Option<u32>,
    /// Use this MQTT broker instead of the embedded one: mqtt://host:port or mqtts://host:port.
    #[arg(long, value_name = "URL")]
    pub broker: Option<String>,
    #[command(flatten)]
    pub tls: TlsArgs,
    /// Where run folders are written.
    #[arg(long, default_value = "herd-results")]
    pub results_dir: PathBuf,
    /// No live lines or summary table (results files and exit code only).
    #[arg(long, short)]
    pub quiet: bool,
    /// Seconds a second of the series stays open for late batches before its percentiles are
    /// final (later batches still count in the totals).
    #[arg(long, value_name = "SECS", default_value_t = crate::aggregator::LATE_WINDOW_S)]
    pub late_window: u64,
    /// Broker URL handed to agents when they reach the broker by another address than this
    /// coordinator (NAT, a proxy, a load balancer). Default: the same as --broker.
    #[arg(long, value_name = "URL")]
    pub agent_broker: Option<String>,
}

#[derive(Args, Debug, Clone, Default)]
pub struct TlsArgs {
    /// CA certificate (PEM) to trust for mqtts:// (default: the public web roots).
    #[arg(long, value_name = "PEM")]
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM) for mqtts:// brokers that require one.
    #[arg(long, value_name = "PEM", requires = "key")]
    pub cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, value_name = "PEM", requires = "cert")]
    pub key: Option<PathBuf>,
}

impl TlsArgs {
    fn files(&self) -> agent::mqtt::TlsFiles {
        agent::mqtt::TlsFiles {
            ca: self.ca.clone(),
            cert: self.cert.clone(),
            key: self.key.clone(),
        }
    }
}

#[derive(Args, Debug)]
pub struct AgentArgs {
    /// Run the spec's whole load in this process, without a coordinator.
    #[arg(long, value_name = "SPEC", conflicts_with_all = ["broker", "run", "index", "bootstrap"])]
    pub standalone: Option<PathBuf>,
    /// ECS mode: read this task's index, broker and certificate from its bootstrap object
    /// under this S3 prefix (set by the coordinator as a container override).
    #[arg(long, env = "HERD_BOOTSTRAP", value_name = "S3_URL", conflicts_with_all = ["broker", "index"])]
    pub bootstrap: Option<String>,
    /// The coordinator's broker (coordinated mode): mqtt://host:port or mqtts://host:port.
    #[arg(long, value_name = "URL", requires_all = ["run", "index"])]
    pub broker: Option<String>,
    /// Run id to join (coordinated mode).
    #[arg(long, env = "HERD_RUN")]
    pub run: Option<String>,
    /// This agent's index in the run, from 0 (coordinated mode).
    #[arg(long, env = "HERD_AGENT_INDEX")]
    pub index: Option<u32>,
    #[command(flatten)]
    pub tls: TlsArgs,
    /// Print the final summary as one JSON line (`{"summary": …}`) instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Override the spec's target URL.
    #[arg(long, value_name = "URL")]
    pub target_url: Option<String>,
}

#[derive(Args, Debug)]
pub struct TargetArgs {
    /// Address to listen on; port 0 picks a free port (printed on the first line).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Serve HTTPS with a self-signed certificate (ALPN h2 and http/1.1).
    #[arg(long)]
    pub tls: bool,
    /// Delay added to every response, in milliseconds.
    #[arg(long, value_name = "MS")]
    pub delay: Option<u64>,
}

pub fn init_tracing(verbose: u8) {
    // rumqttd logs every probe and client disconnect as an error: quiet unless asked.
    let default = match verbose {
        0 => "warn,rumqttd=off",
        1 => "info,rumqttd=warn",
        _ => "debug",
    };
    // RUST_LOG, else HERD_LOG (what the task definitions set), else -v.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_env("HERD_LOG"))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

pub async fn run(cli: Cli) -> u8 {
    let result = match cli.command {
        Command::Run(r) => {
            crate::run_cmd::run(crate::run_cmd::RunOptions {
                spec: r.spec,
                agents: r.agents,
                broker: r.broker,
                tls: r.tls.files(),
                results_dir: r.results_dir,
                quiet: r.quiet,
                late_window_s: r.late_window,
                agent_broker: r.agent_broker,
            })
            .await
        }
        Command::Agent(a) => agent(a).await,
        Command::Serve { config } => crate::serve::serve(config).await,
        Command::Target(t) => target_cmd(t).await,
        Command::Validate { spec } => validate(&spec),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("herd: {e:#}");
            EXIT_ERROR
        }
    }
}

/// A spec that failed to load, already formatted for the terminal.
#[derive(Debug)]
pub struct SpecLoadError(pub String);

/// Reads and validates a spec file; errors are `file:line:col: path: message` lines.
pub fn load_spec(path: &Path) -> Result<Spec, SpecLoadError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| SpecLoadError(format!("{}: cannot read: {e}", path.display())))?;
    parse_spec(&text).map_err(|e: SpecError| {
        let lines: Vec<String> = e
            .issues()
            .iter()
            .map(|i| format!("{}:{i}", path.display()))
            .collect();
        SpecLoadError(lines.join("\n"))
    })
}

fn validate(path: &Path) -> anyhow::Result<u8> {
    match load_spec(path) {
        Ok(spec) => {
            let what = match &spec.runner {
                Some(r) => format!("engine {} running {}", r.engine.name(), r.script),
                None => format!("{} step(s)", spec.scenario.len()),
            };
            println!(
                "{}: ok — {what}, executor {}, {}",
                path.display(),
                spec.load.executor.name(),
                match spec.agents.total() {
                    Some(n) => format!("{n} agent(s)"),
                    None => "one agent per CPU core".to_string(),
                }
            );
            Ok(EXIT_OK)
        }
        Err(SpecLoadError(msg)) => {
            eprintln!("{msg}");
            Ok(EXIT_INVALID)
        }
    }
}

async fn agent(a: AgentArgs) -> anyhow::Result<u8> {
    let Some(standalone) = a.standalone.clone() else {
        return coordinated_agent(a).await;
    };
    let mut spec = match load_spec(&standalone) {
        Ok(s) => s,
        Err(SpecLoadError(msg)) => {
            eprintln!("{msg}");
            return Ok(EXIT_INVALID);
        }
    };
    let dir = standalone.parent().unwrap_or(Path::new(".")).to_path_buf();
    let data = agent::engine::load_data(&spec, &dir)?;
    // The built-in target lives as long as this command.
    let mut builtin = None;
    if let Some(url) = a.target_url {
        spec.target.url = url;
    } else if spec.target.builtin {
        let t = target::Target::start(TargetConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            tls: false,
            base_delay: None,
        })
        .await
        .context("starting the built-in target")?;
        spec.target.url = t.url();
        eprintln!("herd: built-in target on {}", spec.target.url);
        builtin = Some(t);
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let cancelled = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let c2 = cancelled.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            c2.store(true, std::sync::atomic::Ordering::SeqCst);
            eprintln!("herd: stopping (Ctrl-C again to abort)…");
            let _ = stop_tx.send(true);
            if tokio::signal::ctrl_c().await.is_ok() {
                std::process::exit(i32::from(EXIT_CANCELLED));
            }
        }
    });
    let mut stdout = std::io::stdout();
    let outcome = agent::standalone::run(&spec, &data, stop_rx, &mut stdout, a.json).await?;
    let _ = stdout.flush();
    if let Some(t) = builtin {
        let seen = t.stats().requests;
        eprintln!("herd: built-in target counted {seen} requests");
        t.shutdown().await;
    }
    Ok(if cancelled.load(std::sync::atomic::Ordering::SeqCst) {
        EXIT_CANCELLED
    } else if outcome.passed() {
        EXIT_OK
    } else {
        EXIT_THRESHOLDS
    })
}

/// An ECS task: who it is comes from its bootstrap object.
async fn bootstrapped_agent(url: &str, run: Option<String>) -> anyhow::Result<u8> {
    let Some((bucket, prefix)) = crate::bootstrap::parse_s3_url(url) else {
        eprintln!("herd agent: --bootstrap {url:?} is not an s3://bucket/prefix/ URL");
        return Ok(EXIT_INVALID);
    };
    let region = std::env::var("HERD_BOOTSTRAP_REGION")
        .or_else(|_| std::env::var("AWS_REGION"))
        .unwrap_or_else(|_| "us-east-1".into());
    let endpoint = std::env::var("HERD_AWS_ENDPOINT_URL").ok();
    let conf = crate::aws::sdk_config(&region, endpoint.as_deref()).await;
    let store = crate::aws::store::S3Store {
        client: crate::aws::s3_client(&conf),
        results_bucket: bucket.clone(),
        results_prefix: String::new(),
    };
    let arn = crate::bootstrap::own_task_arn()
        .await
        .map_err(|e| anyhow::anyhow!(e))?;
    let boot = crate::bootstrap::fetch(&store, &bucket, &prefix, &arn, Duration::from_secs(120))
        .await
        .map_err(|e| anyhow::anyhow!(e))?;
    if let Some(r) = run.filter(|r| *r != boot.run_id) {
        anyhow::bail!(
            "the bootstrap object is for run {}, this task was started for {r}",
            boot.run_id
        );
    }
    eprintln!(
        "herd agent: task {} is agent {} of run {}",
        crate::bootstrap::task_id(&arn),
        boot.index,
        boot.run_id
    );
    let dir = tempfile::tempdir().context("a folder for the agent's certificate")?;
    let write = |name: &str, text: &str| -> anyhow::Result<PathBuf> {
        let p = dir.path().join(name);
        std::fs::write(&p, text).with_context(|| format!("writing {}", p.display()))?;
        Ok(p)
    };
    let tls = agent::mqtt::TlsFiles {
        ca: boot
            .ca_pem
            .as_deref()
            .map(|c| write("ca.pem", c))
            .transpose()?,
        cert: Some(write("agent.pem", &boot.cert_pem)?),
        key: Some(write("agent.key", &boot.key_pem)?),
    };
    link_agent(&boot.broker, tls, boot.run_id, boot.index).await
}

async fn link_agent(
    broker: &str,
    tls: agent::mqtt::TlsFiles,
    run_id: String,
    index: u32,
) -> anyhow::Result<u8> {
    let cfg = agent::link::LinkConfig {
        broker: agent::mqtt::BrokerUrl::parse(broker)?,
        tls,
        run_id,
        agent: index,
        buffer: 1024,
        wait: Duration::from_secs(60),
    };
    match agent::link::run(cfg).await? {
        agent::link::LinkOutcome::Finished | agent::link::LinkOutcome::Stopped => Ok(EXIT_OK),
        agent::link::LinkOutcome::Failed(reason) => {
            eprintln!("herd agent: {reason}");
            Ok(EXIT_ERROR)
        }
    }
}

async fn coordinated_agent(a: AgentArgs) -> anyhow::Result<u8> {
    if let Some(url) = &a.bootstrap {
        return bootstrapped_agent(url, a.run.clone()).await;
    }
    let (Some(broker), Some(run), Some(index)) = (a.broker, a.run, a.index) else {
        eprintln!("herd agent: give --standalone SPEC, --broker URL --run ID --index N, or --bootstrap S3_URL");
        return Ok(EXIT_INVALID);
    };
    link_agent(&broker, a.tls.files(), run, index).await
}

async fn target_cmd(t: TargetArgs) -> anyhow::Result<u8> {
    let cfg = TargetConfig {
        listen: t.listen,
        tls: t.tls,
        base_delay: t.delay.map(Duration::from_millis),
    };
    target::run_cli(cfg, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
    .with_context(|| format!("serving the target on {}", t.listen))?;
    Ok(EXIT_OK)
}
