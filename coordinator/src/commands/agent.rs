//! `herd agent`: one agent. `--standalone SPEC` runs the spec's whole load in this process;
//! `--broker --run --index` joins a coordinated run; `--bootstrap S3_URL` is an ECS task that
//! learns which agent it is from its bootstrap object first.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use agent::link::Credentials;
use anyhow::Context as _;
use demo_target::{Target, TargetConfig};
use messages::spec::SpecLimits;
use tokio::sync::watch;
use transport::keys::{AgentKeys, PublicKey, Secret};
use transport::{BrokerUrl, TlsFiles};

use crate::aws::bootstrap;
use crate::bundle::{self, local::LocalSource, BundleError, Overrides};
use crate::exit::Exit;
use crate::signals::Interrupts;
use messages::policy::TargetPolicy;

/// What `herd agent` was asked to be.
pub enum AgentMode {
    Standalone {
        spec: PathBuf,
        target_url: Option<String>,
        json: bool,
        /// `--allow-target` / `--deny-target` (`TargetPolicy::from_flags`).
        allow_targets: Vec<String>,
        deny_targets: Vec<String>,
    },
    Coordinated {
        broker: String,
        run: String,
        index: u32,
        /// Agents `index..index + count` in this process (`--count`).
        count: u32,
        tls: TlsFiles,
        /// Read the credentials from stdin (what local launchers do), else the environment.
        credentials_stdin: bool,
        /// Stop by itself after this long without an Alive from the coordinator.
        orphan_after: Duration,
    },
    Bootstrap {
        url: String,
        run: Option<String>,
        orphan_after: Duration,
    },
}

pub async fn run(mode: AgentMode, interrupts: Interrupts) -> anyhow::Result<Exit> {
    match mode {
        AgentMode::Standalone {
            spec,
            target_url,
            json,
            allow_targets,
            deny_targets,
        } => {
            let policy = match TargetPolicy::from_flags(&allow_targets, &deny_targets) {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("herd agent: {e}");
                    return Ok(Exit::Invalid);
                }
            };
            standalone(&spec, target_url, json, policy, interrupts).await
        }
        AgentMode::Coordinated {
            broker,
            run,
            index,
            count,
            tls,
            credentials_stdin,
            orphan_after,
        } => {
            if count <= 1 {
                let credentials = credentials(credentials_stdin)?;
                return link(broker, tls, run, index, credentials, orphan_after).await;
            }
            let all = credentials_lines(count)?;
            index.checked_add(count).ok_or_else(|| {
                anyhow::anyhow!("--index {index} with --count {count} is past the last agent index")
            })?;
            let mut agents = tokio::task::JoinSet::new();
            for (k, c) in (index..).zip(all) {
                let (broker, tls, run) = (broker.clone(), tls.clone(), run.clone());
                agents.spawn(link(broker, tls, run, k, c, orphan_after));
            }
            // The process's exit is its worst agent's.
            let mut exit = Exit::Ok;
            while let Some(done) = agents.join_next().await {
                match done {
                    Ok(Ok(Exit::Ok)) => {}
                    Ok(Ok(other)) => exit = other,
                    Ok(Err(e)) => {
                        eprintln!("herd agent: {e:#}");
                        exit = Exit::Error;
                    }
                    Err(e) => {
                        eprintln!("herd agent: an agent's task ended abnormally: {e}");
                        exit = Exit::Error;
                    }
                }
            }
            Ok(exit)
        }
        AgentMode::Bootstrap {
            url,
            run,
            orphan_after,
        } => bootstrapped(&url, run, orphan_after).await,
    }
}

async fn standalone(
    path: &Path,
    target_url: Option<String>,
    json: bool,
    mut policy: TargetPolicy,
    mut interrupts: Interrupts,
) -> anyhow::Result<Exit> {
    let source = LocalSource::new(path);
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
        crate::targets::allow_builtin(&mut policy, &spec.target.url);
        builtin = Some(t);
    }
    crate::targets::warn_up_front(spec, &policy);
    let data = bundle.data.into_iter().map(|f| (f.name, f.bytes)).collect();
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut stdout = std::io::stdout();
    let mut cancelled = false;
    let outcome = {
        let net = agent::engine::NetConfig::with_policy(policy);
        let work = agent::standalone::run(&bundle.spec, &data, &net, stop_rx, &mut stdout, json);
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
async fn bootstrapped(
    url: &str,
    run: Option<String>,
    orphan_after: Duration,
) -> anyhow::Result<Exit> {
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
    // It holds this agent's private key: gone as soon as it is read (the coordinator deletes
    // what is left at run end, a lifecycle rule after a day).
    let key = bootstrap::object_key(&prefix, &arn);
    if let Err(e) = store.delete(&key).await {
        tracing::warn!(error = %e, "could not delete the bootstrap object after reading it");
    }
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
        key: Some(write("agent.key", &boot.key_pem.0)?),
    };
    let credentials = Credentials {
        keys: AgentKeys::new(Secret::from_hex("agent secret", &boot.agent_secret.0)?),
        coordinator: PublicKey::from_hex(&boot.coordinator_key)?,
        broker_login: false,
    };
    link(
        boot.broker,
        tls,
        boot.run_id,
        boot.index,
        credentials,
        orphan_after,
    )
    .await
}

/// The largest credentials line read from stdin.
const MAX_CREDENTIALS_LINE: u64 = 4096;

/// The most agents one `herd agent` process hosts (`--count`): each holds an MQTT connection,
/// its VUs' connections and a few tasks, so a thousand stay well inside one process's file
/// descriptors and one runtime.
pub const MAX_AGENTS_PER_PROCESS: u32 = 1000;

/// `count` credentials lines from stdin, one per agent in index order (`--count`).
fn credentials_lines(count: u32) -> anyhow::Result<Vec<Credentials>> {
    use std::io::BufRead;
    let mut stdin = std::io::stdin().lock();
    let mut all = Vec::new();
    for k in 0..count {
        let mut line = String::new();
        let n = std::io::Read::take(&mut stdin, MAX_CREDENTIALS_LINE)
            .read_line(&mut line)
            .context("reading credentials from stdin")?;
        if n == 0 {
            anyhow::bail!("stdin ended after {k} credentials lines; --count asked for {count}");
        }
        let parsed = serde_json::from_str::<CredentialsLine>(&line).with_context(|| {
            format!(
                "credentials line {} on stdin is not what a herd launcher writes",
                k + 1
            )
        })?;
        all.push(parsed.credentials()?);
    }
    Ok(all)
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialsLine {
    secret: String,
    coordinator_key: String,
    #[serde(default)]
    broker_login: bool,
}

/// What the launcher handed this agent: one JSON line on stdin, or `HERD_AGENT_SECRET`,
/// `HERD_COORDINATOR_KEY` (and `HERD_BROKER_LOGIN=1`) in the environment.
fn credentials(from_stdin: bool) -> anyhow::Result<Credentials> {
    let line = if from_stdin {
        use std::io::{BufRead, Read};
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .take(MAX_CREDENTIALS_LINE)
            .read_line(&mut line)
            .context("reading credentials from stdin")?;
        serde_json::from_str::<CredentialsLine>(&line)
            .context("the credentials line on stdin is not what a herd launcher writes")?
    } else {
        let (Ok(secret), Ok(coordinator_key)) = (
            std::env::var("HERD_AGENT_SECRET"),
            std::env::var("HERD_COORDINATOR_KEY"),
        ) else {
            anyhow::bail!(
                "this agent has no credentials: a coordinator's launcher hands each agent its keys \
                 (on stdin with --credentials-stdin, or in HERD_AGENT_SECRET and HERD_COORDINATOR_KEY)"
            );
        };
        CredentialsLine {
            secret,
            coordinator_key,
            broker_login: std::env::var("HERD_BROKER_LOGIN").is_ok_and(|v| v == "1"),
        }
    };
    line.credentials()
}

impl CredentialsLine {
    fn credentials(&self) -> anyhow::Result<Credentials> {
        Ok(Credentials {
            keys: AgentKeys::new(Secret::from_hex("agent secret", &self.secret)?),
            coordinator: PublicKey::from_hex(&self.coordinator_key)?,
            broker_login: self.broker_login,
        })
    }
}

async fn link(
    broker: String,
    tls: TlsFiles,
    run_id: String,
    index: u32,
    credentials: Credentials,
    orphan_after: Duration,
) -> anyhow::Result<Exit> {
    // Tests only: an agent whose clock is set wrong (logged at warn when set).
    let skew =
        agent::clock::test_skew_ms(index, |n| std::env::var(n).ok()).map_err(anyhow::Error::msg)?;
    let cfg = agent::link::LinkConfig {
        broker: BrokerUrl::parse(&broker)?,
        tls,
        run_id,
        agent: index,
        buffer: 1024,
        wait: Duration::from_secs(60),
        orphan_after,
        credentials,
        clock: agent::clock::WallClock::with_test_skew(skew),
    };
    match agent::link::run(cfg).await? {
        agent::link::LinkOutcome::Finished | agent::link::LinkOutcome::Stopped => Ok(Exit::Ok),
        agent::link::LinkOutcome::Failed(reason) => {
            eprintln!("herd agent: {reason}");
            Ok(Exit::Error)
        }
        // Not carried out as coordinated: its coordinator is gone, or the run overran.
        agent::link::LinkOutcome::GaveUp(why) => {
            eprintln!("herd agent: stopped by itself: {why}");
            Ok(Exit::Error)
        }
    }
}
