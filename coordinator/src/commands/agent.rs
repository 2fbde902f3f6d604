//! `herd agent`: one agent. `--standalone SPEC` runs the spec's whole load in this process;
//! `--broker --run --index` joins a coordinated run; `--bootstrap S3_URL` is an ECS task that
//! learns which agent it is from its bootstrap object first.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use demo_target::{Target, TargetConfig};
use messages::spec::SpecLimits;
use tokio::sync::watch;
use transport::{BrokerUrl, TlsFiles};

use crate::aws::bootstrap;
use crate::bundle::{self, local::LocalSource, BundleError, Overrides, PathPolicy};
use crate::exit::Exit;
use crate::signals::Interrupts;

/// What `herd agent` was asked to be.
pub enum AgentMode {
    Standalone {
        spec: PathBuf,
        target_url: Option<String>,
        json: bool,
    },
    Coordinated {
        broker: String,
        run: String,
        index: u32,
        tls: TlsFiles,
    },
    Bootstrap {
        url: String,
        run: Option<String>,
    },
}

pub async fn run(mode: AgentMode, interrupts: Interrupts) -> anyhow::Result<Exit> {
    match mode {
        AgentMode::Standalone {
            spec,
            target_url,
            json,
        } => standalone(&spec, target_url, json, interrupts).await,
        AgentMode::Coordinated {
            broker,
            run,
            index,
            tls,
        } => link(&broker, tls, run, index).await,
        AgentMode::Bootstrap { url, run } => bootstrapped(&url, run).await,
    }
}

async fn standalone(
    path: &Path,
    target_url: Option<String>,
    json: bool,
    mut interrupts: Interrupts,
) -> anyhow::Result<Exit> {
    let source = LocalSource::new(path, PathPolicy::Trusted);
    let mut bundle = match bundle::build(&source, &Overrides::default(), &SpecLimits::DEFAULT).await
    {
        Ok(b) => b,
        Err(e @ (BundleError::Invalid(_) | BundleError::File { .. })) => {
            eprintln!("{e}");
            return Ok(Exit::Invalid);
        }
        Err(e) => return Err(e.into()),
    };
    let spec = &mut bundle.spec;
    // The built-in target lives as long as this command.
    let mut builtin = None;
    if let Some(url) = target_url {
        spec.target.url = url;
    } else if spec.target.builtin {
        let t = Target::start(TargetConfig {
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
    let data = bundle.data.into_iter().map(|f| (f.name, f.bytes)).collect();
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut stdout = std::io::stdout();
    let mut cancelled = false;
    let outcome = {
        let work = agent::standalone::run(&bundle.spec, &data, stop_rx, &mut stdout, json);
        tokio::pin!(work);
        loop {
            tokio::select! {
                r = &mut work => break r?,
                more = interrupts.next() => {
                    if !more {
                        break (&mut work).await?;
                    }
                    if cancelled {
                        // A second Ctrl-C: abort without the summary.
                        return Ok(Exit::Cancelled);
                    }
                    cancelled = true;
                    eprintln!("herd: stopping (Ctrl-C again to abort)…");
                    let _ = stop_tx.send(true);
                }
            }
        }
    };
    use std::io::Write;
    let _ = stdout.flush();
    if let Some(t) = builtin {
        let seen = t.stats().requests;
        eprintln!("herd: built-in target counted {seen} requests");
        t.shutdown().await;
    }
    Ok(if cancelled {
        Exit::Cancelled
    } else if outcome.passed() {
        Exit::Ok
    } else {
        Exit::Thresholds
    })
}

/// An ECS task: who it is comes from its bootstrap object.
async fn bootstrapped(url: &str, run: Option<String>) -> anyhow::Result<Exit> {
    let Some((bucket, prefix)) = bootstrap::parse_s3_url(url) else {
        eprintln!("herd agent: --bootstrap {url:?} is not an s3://bucket/prefix/ URL");
        return Ok(Exit::Invalid);
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
    let arn = bootstrap::own_task_arn().await?;
    let boot = bootstrap::fetch(&store, &bucket, &prefix, &arn, Duration::from_secs(120)).await?;
    if let Some(r) = run.filter(|r| *r != boot.run_id) {
        anyhow::bail!(
            "the bootstrap object is for run {}, this task was started for {r}",
            boot.run_id
        );
    }
    eprintln!(
        "herd agent: task {} is agent {} of run {}",
        bootstrap::task_id(&arn),
        boot.index,
        boot.run_id
    );
    let dir = tempfile::tempdir().context("a folder for the agent's certificate")?;
    let write = |name: &str, text: &str| -> anyhow::Result<PathBuf> {
        let p = dir.path().join(name);
        std::fs::write(&p, text).with_context(|| format!("writing {}", p.display()))?;
        Ok(p)
    };
    let tls = TlsFiles {
        ca: boot
            .ca_pem
            .as_deref()
            .map(|c| write("ca.pem", c))
            .transpose()?,
        cert: Some(write("agent.pem", &boot.cert_pem)?),
        key: Some(write("agent.key", &boot.key_pem)?),
    };
    link(&boot.broker, tls, boot.run_id, boot.index).await
}

async fn link(broker: &str, tls: TlsFiles, run_id: String, index: u32) -> anyhow::Result<Exit> {
    let cfg = agent::link::LinkConfig {
        broker: BrokerUrl::parse(broker)?,
        tls,
        run_id,
        agent: index,
        buffer: 1024,
        wait: Duration::from_secs(60),
    };
    match agent::link::run(cfg).await? {
        agent::link::LinkOutcome::Finished | agent::link::LinkOutcome::Stopped => Ok(Exit::Ok),
        agent::link::LinkOutcome::Failed(reason) => {
            eprintln!("herd agent: {reason}");
            Ok(Exit::Error)
        }
    }
}
