//! The `herd` command line: arguments (clap), logging, and the dispatch to each command's
//! `run`. This is the binary's edge: OS signals become [`Interrupts`] here.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use demo_target::TargetConfig;

use crate::commands::agent::AgentMode;
use crate::commands::run::RunOptions;
use crate::config::ServeConfig;
use crate::exit::Exit;
use crate::signals::Interrupts;

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
    /// Write a run folder's `report.html` (one self-contained page), or compare it with a
    /// baseline run's folder.
    Report {
        /// The run's folder (`herd-results/<run>`).
        run_dir: PathBuf,
        /// A baseline run's folder: overlays and a delta table.
        #[arg(long, value_name = "DIR")]
        baseline: Option<PathBuf>,
        /// Where to write (default: `<run_dir>/report.html`).
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Submit a spec to a `herd serve` API; with --wait, follow it and exit as `herd run` does
    /// (0 passed, 99 thresholds failed, 130 cancelled, 1 failed, 2 invalid spec).
    Submit {
        /// The spec file (YAML or JSON; it names no data files).
        spec: PathBuf,
        /// Stream the live lines and wait for the result.
        #[arg(long)]
        wait: bool,
        /// The same key makes one run, however often the step is retried.
        #[arg(long, value_name = "KEY")]
        idempotency_key: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// List runs from a `herd serve` API, newest first.
    Runs {
        #[arg(long)]
        spec: Option<String>,
        /// running, completed, failed or cancelled.
        #[arg(long)]
        status: Option<String>,
        /// passed or failed.
        #[arg(long)]
        verdict: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// The `next` of the previous page.
        #[arg(long)]
        cursor: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Show one run from a `herd serve` API.
    Show {
        run: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Cancel a run on a `herd serve` API.
    Cancel {
        run: String,
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Schedules on a `herd serve` API.
    Schedule {
        #[command(subcommand)]
        action: ScheduleAction,
    },
    /// Baselines on a `herd serve` API.
    Baseline {
        #[command(subcommand)]
        action: BaselineAction,
    },
    /// API tokens in a serve config's state folder (the first admin token comes from here).
    Token {
        /// The serve configuration file (TOML). Default: `HERD_CONFIG`.
        #[arg(long, env = "HERD_CONFIG", value_name = "FILE", global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        action: TokenAction,
    },
}

#[derive(Subcommand, Debug)]
pub enum TokenAction {
    /// Make a token; it is printed once, alone on stdout.
    Create {
        /// viewer (reads), runner (also starts and cancels runs), admin (also tokens).
        #[arg(long)]
        role: String,
        /// Who or what holds it.
        #[arg(long)]
        name: String,
    },
    /// Every token (never their secrets).
    List,
    /// Revoke a token by id.
    Revoke { id: String },
}

#[derive(Subcommand, Debug)]
pub enum ScheduleAction {
    /// Make a schedule: a stored spec (--spec) or a file (--file), by cron or once (--at).
    Add {
        #[arg(long)]
        name: String,
        /// A stored spec's name (each firing runs its latest version).
        #[arg(long, conflicts_with = "file")]
        spec: Option<String>,
        /// A spec file, sent inline.
        #[arg(long)]
        file: Option<PathBuf>,
        /// Five fields: `0 9 * * MON-FRI`.
        #[arg(long, conflicts_with = "at")]
        cron: Option<String>,
        /// Once, at this RFC 3339 instant.
        #[arg(long)]
        at: Option<String>,
        /// IANA zone the cron is read in (default UTC).
        #[arg(long)]
        timezone: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Every schedule with its next fire time.
    List {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Remove a schedule.
    Rm {
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum BaselineAction {
    /// Make a completed run its spec's baseline.
    Set {
        run: String,
        #[command(flatten)]
        server: ServerArgs,
    },
}

/// Where a `herd serve` API is and the token to call it with.
#[derive(Args, Debug)]
pub struct ServerArgs {
    /// The API's base URL (`http://host:8080`).
    #[arg(long, env = "HERD_SERVER", value_name = "URL")]
    pub server: String,
    /// API token (`herd token create`).
    #[arg(long, env = "HERD_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// JSON documents on stdout instead of lines for people.
    #[arg(long)]
    pub json: bool,
}

impl ServerArgs {
    fn server(self) -> crate::commands::client::Server {
        crate::commands::client::Server {
            url: self.server,
            token: self.token,
            json: self.json,
        }
    }
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
    /// A run folder to judge thresholds like `p95 < baseline.p95 * 1.10` against.
    #[arg(long, value_name = "RUN_DIR")]
    pub baseline: Option<PathBuf>,
    /// No live lines or summary table (results files and exit code only).
    #[arg(long, short)]
    pub quiet: bool,
    /// Seconds a second of the series stays open for late batches before its percentiles are
    /// final (later batches still count in the totals).
    #[arg(long, value_name = "SECS", default_value_t = crate::run::aggregator::LATE_WINDOW_S)]
    pub late_window: u64,
    /// Broker URL handed to agents when they reach the broker by another address than this
    /// coordinator (NAT, a proxy, a load balancer). Default: the same as --broker.
    #[arg(long, value_name = "URL")]
    pub agent_broker: Option<String>,
    /// Connections that read the agents' messages through one shared subscription, for a
    /// broker that caps what it delivers to one connection (IoT Core: 100 messages/s). 1: the
    /// coordinator's own connection reads them.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=i64::from(crate::bus::MAX_INTAKE)))]
    pub intake_connections: u32,
    /// Agents one child process hosts (each still its own MQTT client, keys and engine): a
    /// fleet of thousands on one machine without thousands of processes.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=i64::from(crate::commands::agent::MAX_AGENTS_PER_PROCESS)))]
    pub agents_per_process: u32,
    #[command(flatten)]
    pub targets: PolicyArgs,
}

/// The target policy from the command line (`herd run`, `herd agent --standalone`).
#[derive(Args, Debug, Clone, Default)]
pub struct PolicyArgs {
    /// Send load only to these targets (repeatable; given at all, everything else is denied;
    /// the built-in target stays allowed): a host (`api.example.com`, `*.example.com`), an
    /// address or CIDR (`10.1.2.0/24`), or a URL prefix (`https://api.example.com/v1/`).
    #[arg(long = "allow-target", value_name = "RULE")]
    pub allow: Vec<String>,
    /// Never send load to these targets (repeatable; same forms; wins over --allow-target).
    /// Checked on every URL, redirect hop and connected address; a refused request is an
    /// error of kind `policy`.
    #[arg(long = "deny-target", value_name = "RULE")]
    pub deny: Vec<String>,
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
    fn files(&self) -> transport::TlsFiles {
        transport::TlsFiles {
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
    /// Read this agent's keys from one JSON line on stdin (what launchers do; otherwise
    /// HERD_AGENT_SECRET and HERD_COORDINATOR_KEY).
    #[arg(long, requires = "broker")]
    pub credentials_stdin: bool,
    /// Coordinated mode: host agents `index..index + count` in this process, each its own MQTT
    /// client with its own keys (one credentials line each on stdin, in index order). What
    /// `herd run --agents-per-process` starts.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 1,
        requires = "credentials_stdin",
        value_parser = clap::value_parser!(u32).range(1..=i64::from(crate::commands::agent::MAX_AGENTS_PER_PROCESS))
    )]
    pub count: u32,
    /// Coordinated mode: stop by itself after hearing no Alive from the coordinator for this
    /// many seconds (gracefully, every batch sent, if the load runs; at once before it).
    #[arg(
        long,
        env = "HERD_ORPHAN_AFTER_S",
        value_name = "SECS",
        default_value_t = messages::wire::DEFAULT_ORPHAN_AFTER_S,
        value_parser = clap::value_parser!(u64).range(1..=86_400)
    )]
    pub orphan_after: u64,
    #[command(flatten)]
    pub tls: TlsArgs,
    /// Print the final summary as one JSON line (`{"summary": …}`) instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Override the spec's target URL.
    #[arg(long, value_name = "URL")]
    pub target_url: Option<String>,
    /// --standalone only: a coordinated agent gets its policy in its Assign.
    #[command(flatten)]
    pub targets: PolicyArgs,
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
        // Colour codes only for a person at a terminal, never into a log file or a pipe.
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

/// Runs the command; `program` is this `herd` binary (what local agents run as).
pub async fn dispatch(cli: Cli, program: PathBuf) -> Exit {
    let result = match cli.command {
        Command::Run(r) => {
            crate::commands::run::run(
                RunOptions {
                    spec: r.spec,
                    agents: r.agents,
                    broker: r.broker,
                    tls: r.tls.files(),
                    results_dir: r.results_dir,
                    quiet: r.quiet,
                    late_window_s: r.late_window,
                    agent_broker: r.agent_broker,
                    intake_connections: r.intake_connections,
                    agents_per_process: r.agents_per_process,
                    allow_targets: r.targets.allow,
                    deny_targets: r.targets.deny,
                    program,
                    baseline: r.baseline,
                },
                Interrupts::from_os_all(),
            )
            .await
        }
        Command::Agent(a) => match agent_mode(a) {
            // A coordinated agent keeps the default Ctrl-C (it dies); it stops gracefully on
            // the coordinator's Stop or on SIGTERM (link.rs).
            Some(mode @ AgentMode::Standalone { .. }) => {
                crate::commands::agent::run(mode, Interrupts::from_os(false)).await
            }
            Some(mode) => crate::commands::agent::run(mode, Interrupts::channel().1).await,
            None => {
                eprintln!("herd agent: give --standalone SPEC, --broker URL --run ID --index N, or --bootstrap S3_URL (--allow-target and --deny-target go with --standalone only)");
                Ok(Exit::Invalid)
            }
        },
        Command::Serve { config } => match ServeConfig::load(config.as_deref()) {
            Ok(cfg) => {
                let mut interrupts = Interrupts::from_os(true);
                crate::serve::run(cfg, program, async move {
                    interrupts.next().await;
                })
                .await
                .map(|()| Exit::Ok)
            }
            Err(e) => {
                eprintln!("herd serve: {e}");
                Ok(Exit::Invalid)
            }
        },
        Command::Target(t) => {
            let cfg = TargetConfig {
                listen: t.listen,
                tls: t.tls,
                base_delay: crate::commands::delay(t.delay),
            };
            crate::commands::target(cfg, Interrupts::from_os(false)).await
        }
        Command::Validate { spec } => crate::commands::validate(&spec).await,
        Command::Submit {
            spec,
            wait,
            idempotency_key,
            server,
        } => crate::commands::client::submit(&server.server(), &spec, wait, idempotency_key).await,
        Command::Runs {
            spec,
            status,
            verdict,
            limit,
            cursor,
            server,
        } => {
            let mut q = vec![("limit", limit.to_string())];
            for (k, v) in [
                ("spec", spec),
                ("status", status),
                ("verdict", verdict),
                ("cursor", cursor),
            ] {
                if let Some(v) = v {
                    q.push((k, v));
                }
            }
            crate::commands::client::runs(&server.server(), &q).await
        }
        Command::Show { run, server } => {
            crate::commands::client::show(&server.server(), &run).await
        }
        Command::Cancel {
            run,
            reason,
            server,
        } => crate::commands::client::cancel(&server.server(), &run, reason).await,
        Command::Report {
            run_dir,
            baseline,
            output,
        } => crate::commands::report::run(&run_dir, baseline.as_deref(), output.as_deref()),
        Command::Schedule { action } => match action {
            ScheduleAction::Add {
                name,
                spec,
                file,
                cron,
                at,
                timezone,
                server,
            } => {
                let n = crate::commands::client::NewSchedule {
                    name,
                    spec,
                    file,
                    cron,
                    at,
                    timezone,
                };
                crate::commands::client::schedule_add(&server.server(), n).await
            }
            ScheduleAction::List { server } => {
                crate::commands::client::schedule_list(&server.server()).await
            }
            ScheduleAction::Rm { id, server } => {
                crate::commands::client::schedule_rm(&server.server(), &id).await
            }
        },
        Command::Baseline {
            action: BaselineAction::Set { run, server },
        } => crate::commands::client::baseline_set(&server.server(), &run).await,
        Command::Token { config, action } => match ServeConfig::load(config.as_deref()) {
            Ok(cfg) => match action {
                TokenAction::Create { role, name } => {
                    crate::commands::token::create(&cfg, &role, &name)
                }
                TokenAction::List => crate::commands::token::list(&cfg),
                TokenAction::Revoke { id } => crate::commands::token::revoke(&cfg, &id),
            },
            Err(e) => {
                eprintln!("herd token: {e}");
                Ok(Exit::Invalid)
            }
        },
    };
    match result {
        Ok(exit) => exit,
        Err(e) => {
            eprintln!("herd: {e:#}");
            Exit::Error
        }
    }
}

fn agent_mode(a: AgentArgs) -> Option<AgentMode> {
    if let Some(spec) = a.standalone {
        return Some(AgentMode::Standalone {
            spec,
            target_url: a.target_url,
            json: a.json,
            allow_targets: a.targets.allow,
            deny_targets: a.targets.deny,
        });
    }
    if !a.targets.allow.is_empty() || !a.targets.deny.is_empty() {
        // A coordinated agent enforces the policy its Assign carries, never its own flags.
        return None;
    }
    let orphan_after = std::time::Duration::from_secs(a.orphan_after);
    if let Some(url) = a.bootstrap {
        return Some(AgentMode::Bootstrap {
            url,
            run: a.run,
            orphan_after,
        });
    }
    Some(AgentMode::Coordinated {
        broker: a.broker?,
        run: a.run?,
        index: a.index?,
        count: a.count,
        tls: a.tls.files(),
        credentials_stdin: a.credentials_stdin,
        orphan_after,
    })
}
