//! What differs between `herd serve`'s profiles, set up once at start: broker and
//! credentials, where agents run, where results and notifications go.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use actix::prelude::*;
use anyhow::Context as _;
use messages::policy::TargetPolicy;
use messages::spec::SpecLimits;
use transport::{BrokerUrl, TlsFiles};

use super::notifier::{Notifier, Sink};
use super::state::StateDir;
use crate::aws::ecs_launcher::Region;
use crate::aws::iot::{Credential, Iot};
use crate::aws::store::S3Store;
use crate::config::{AwsConfig, Profile, ServeConfig};
use crate::identity::Identity;

/// What differs between the local and the AWS profile, fixed at start.
pub struct Env {
    /// This coordinator's keys: embedded-broker logins, every run's agent keys. Kept in the
    /// state folder, so a restart derives the same ones.
    pub identity: Arc<Identity>,
    /// What a restart must find again (`serve::state`).
    pub state: Arc<StateDir>,
    /// Whether this coordinator and its agents log in to the broker (the embedded one).
    pub broker_login: bool,
    pub results_dir: PathBuf,
    pub default_agents: u32,
    /// What one spec may ask for (`[limits]`).
    pub limits: SpecLimits,
    pub late_window_s: u64,
    /// The coordinator's broker and credentials.
    pub broker: BrokerUrl,
    pub tls: TlsFiles,
    /// What agents are told.
    pub agent_broker: String,
    pub agent_tls: TlsFiles,
    /// The `herd` binary local agents run as.
    pub program: PathBuf,
    /// `on_shutdown = "resume"`: local agents outlive this process.
    pub agents_outlive: bool,
    pub aws: Option<AwsEnv>,
    pub notifier: Addr<Notifier>,
    /// `[targets]`: checked on each spec up front and sent in every Assign.
    pub policy: TargetPolicy,
    /// Accept runner specs the policy cannot confine (`[targets] unconfined_runners`).
    pub unconfined_runners: bool,
}

pub struct AwsEnv {
    pub store: S3Store,
    pub spec_bucket: String,
    pub iot: Iot,
    pub home_region: String,
    pub regions: Arc<HashMap<String, Region>>,
    /// Spec regions not in the config (`local`, a plain count) go to this one.
    pub default_region: String,
    pub agent_ca_pem: Option<String>,
    /// `[aws.scheduler]`: schedules live in EventBridge Scheduler.
    pub scheduler: Option<Arc<crate::aws::scheduler::EbScheduler>>,
}

/// The coordinator's own IoT identity, made at start and deleted at shutdown.
pub struct OwnCredential {
    pub iot: Iot,
    pub cred: Credential,
    pub policy: String,
    /// Holds the certificate files while the process runs.
    pub _dir: tempfile::TempDir,
}

/// A set-up profile.
pub struct Setup {
    pub env: Env,
    /// The AWS profile's queue, for the SQS intake.
    pub sqs: Option<(aws_sdk_sqs::Client, AwsConfig)>,
    pub own_credential: Option<OwnCredential>,
}

fn read(path: &Option<PathBuf>, what: &str) -> anyhow::Result<Option<String>> {
    path.as_ref()
        .map(|p| std::fs::read_to_string(p).with_context(|| format!("{what} {}", p.display())))
        .transpose()
}

pub async fn setup(cfg: &ServeConfig, program: PathBuf) -> anyhow::Result<Setup> {
    let state = Arc::new(StateDir::open(&cfg.state_dir())?);
    let identity = Arc::new(state.identity()?);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    let tls = TlsFiles {
        ca: cfg.broker.ca.clone(),
        cert: cfg.broker.cert.clone(),
        key: cfg.broker.key.clone(),
    };
    let policy = cfg.target_policy().context("[targets]")?;
    tracing::info!(%policy, unconfined_runners = cfg.unconfined_runners(), "target policy");
    match cfg.profile {
        Profile::Local => {
            let broker = match &cfg.broker.url {
                Some(u) => BrokerUrl::parse(u)?,
                None => {
                    // The port it had before, if free: the agents of resumed runs reconnect there.
                    let port = state
                        .broker_port()
                        .filter(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
                        .unwrap_or(0);
                    let addr =
                        crate::broker::start(port, Some(Arc::new(identity.secret().clone())))?;
                    state.keep_broker_port(addr.port())?;
                    BrokerUrl::local(addr)
                }
            };
            let agent_broker = cfg
                .broker
                .agent_url
                .clone()
                .unwrap_or_else(|| broker.to_string());
            let file = cfg.notifications_file();
            if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {} (notifications)", dir.display()))?;
            }
            let notifier = Notifier::new(Sink::Local(file)).start();
            Ok(Setup {
                env: Env {
                    identity,
                    state,
                    broker_login: cfg.broker.url.is_none(),
                    results_dir: cfg.results_dir.clone(),
                    default_agents: cfg.agents.unwrap_or(cores),
                    limits: cfg.limits.spec_limits(),
                    late_window_s: cfg.late_window_s,
                    broker,
                    tls: tls.clone(),
                    agent_broker,
                    agent_tls: tls,
                    program,
                    agents_outlive: cfg.on_shutdown == crate::config::OnShutdown::Resume,
                    aws: None,
                    notifier,
                    policy,
                    unconfined_runners: cfg.unconfined_runners(),
                },
                sqs: None,
                own_credential: None,
            })
        }
        Profile::Aws => aws(cfg, tls, program, identity, state, policy).await,
    }
}

async fn aws(
    cfg: &ServeConfig,
    mut tls: TlsFiles,
    program: PathBuf,
    identity: Arc<Identity>,
    state: Arc<StateDir>,
    policy: TargetPolicy,
) -> anyhow::Result<Setup> {
    let aws = cfg.aws.clone().context("profile aws needs [aws]")?;
    let conf = crate::aws::sdk_config(&aws.region, aws.endpoint_url.as_deref()).await;
    let store = S3Store {
        client: crate::aws::s3_client(&conf),
        results_bucket: aws.results_bucket.clone(),
        results_prefix: aws.results_prefix.clone(),
    };
    let ca = match (&aws.iot.ca_cert, &aws.iot.ca_key) {
        (Some(c), Some(k)) => Some((
            std::fs::read_to_string(c)
                .with_context(|| format!("[aws.iot] ca_cert {}", c.display()))?,
            std::fs::read_to_string(k)
                .with_context(|| format!("[aws.iot] ca_key {}", k.display()))?,
        )),
        _ => None,
    };
    let iot = Iot::new(
        aws_sdk_iot::Client::new(&conf),
        aws.region.clone(),
        aws.iot.certificates.clone(),
        ca,
        aws.iot.agent_policy.clone(),
    );
    // Refuse to serve without the agents' policy rather than fail the first run.
    iot.ensure_agent_policy()
        .await
        .with_context(|| format!("[aws.iot] agent_policy {:?}", aws.iot.agent_policy))?;
    let scheduler = match &aws.scheduler {
        Some(sc) => {
            let queue_arn = aws
                .queue_arn()
                .context("[aws.scheduler]: the intake queue's ARN (set queue_arn)")?;
            Some(Arc::new(crate::aws::scheduler::EbScheduler::new(
                &conf,
                sc.clone(),
                queue_arn,
                aws.region.clone(),
            )?))
        }
        None => None,
    };
    let broker_url = match (&cfg.broker.url, &aws.iot.endpoint) {
        (Some(u), _) | (None, Some(u)) => u.clone(),
        (None, None) => iot.endpoint().await?,
    };
    let broker = BrokerUrl::parse(&broker_url)?;
    let mut own_credential = None;
    if tls.cert.is_none() {
        // No certificate configured: the coordinator makes its own under the stack's
        // coordinator policy, and deletes it at shutdown.
        let id = format!("herd-coordinator-{}", crate::clock::stamp());
        let cred = iot
            .issue_coordinator(&aws.iot.coordinator_policy, &id)
            .await?;
        let dir = tempfile::tempdir().context("a folder for the coordinator's certificate")?;
        let cert = dir.path().join("coordinator.pem");
        let key = dir.path().join("coordinator.key");
        std::fs::write(&cert, &cred.cert_pem)?;
        std::fs::write(&key, &cred.key_pem.0)?;
        tls.cert = Some(cert);
        tls.key = Some(key);
        own_credential = Some(OwnCredential {
            iot: iot.clone(),
            cred,
            policy: aws.iot.coordinator_policy.clone(),
            _dir: dir,
        });
    }
    let agent_broker = cfg
        .broker
        .agent_url
        .clone()
        .or(aws.iot.endpoint.clone())
        .unwrap_or_else(|| broker.to_string());
    let mut regions = HashMap::new();
    for r in &aws.regions {
        let ecs_conf = aws_sdk_ecs::config::Builder::from(&conf)
            .region(aws_config::Region::new(r.region.clone()))
            .build();
        regions.insert(
            r.region.clone(),
            Region {
                config: r.clone(),
                ecs: aws_sdk_ecs::Client::from_conf(ecs_conf),
            },
        );
    }
    let notifier = Notifier::new(Sink::Aws {
        sns: aws_sdk_sns::Client::new(&conf),
        topic_arn: aws.sns_topic_arn.clone(),
        events: aws_sdk_eventbridge::Client::new(&conf),
        bus: aws.event_bus.clone(),
    })
    .start();
    let default_region = aws
        .regions
        .first()
        .map(|r| r.region.clone())
        .context("[aws] needs at least one [[aws.regions]] entry")?;
    let sqs = aws_sdk_sqs::Client::new(&conf);
    Ok(Setup {
        env: Env {
            identity,
            state,
            broker_login: false,
            results_dir: cfg.results_dir.clone(),
            default_agents: cfg.agents.unwrap_or(1),
            limits: cfg.limits.spec_limits(),
            late_window_s: cfg.late_window_s,
            broker,
            tls,
            agent_broker,
            agent_tls: TlsFiles::default(),
            program,
            // ECS tasks are not this process's children: they outlive it either way.
            agents_outlive: true,
            aws: Some(AwsEnv {
                store,
                spec_bucket: aws.spec_bucket.clone(),
                iot,
                home_region: aws.region.clone(),
                regions: Arc::new(regions),
                default_region,
                agent_ca_pem: read(&cfg.broker.agent_ca, "[broker] agent_ca")?,
                scheduler,
            }),
            notifier,
            policy,
            unconfined_runners: cfg.unconfined_runners(),
        },
        sqs: Some((sqs, aws)),
        own_credential,
    })
}
