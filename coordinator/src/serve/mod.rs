//! `herd serve`: the long-running coordinator. The same run actors as `herd run`; what
//! differs by profile is intake (inbox folder / SQS), launcher (local processes / ECS
//! Fargate), broker (embedded / IoT Core), result store (folder / S3) and notifier
//! (`notifications.jsonl` / SNS + EventBridge).

pub mod config;
pub mod inbox;
pub mod runs;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use agent::mqtt::{BrokerUrl, TlsFiles};
use anyhow::Context as _;

use crate::aws::ecs_launcher::Region;
use crate::aws::iot::{Credential, Iot};
use crate::aws::sqs_intake::SqsIntake;
use crate::aws::store::S3Store;
use crate::cli::{EXIT_INVALID, EXIT_OK};
use crate::notifier::{Notifier, Sink};
use config::{Profile, ServeConfig};
use runs::{ActiveRuns, AwsEnv, CancelRuns, Env, Runs};

/// How long a shutdown waits for cancelled runs to write their results.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(60);

fn read(path: &Option<PathBuf>, what: &str) -> anyhow::Result<Option<String>> {
    path.as_ref()
        .map(|p| std::fs::read_to_string(p).with_context(|| format!("{what} {}", p.display())))
        .transpose()
}

pub async fn serve(config_path: Option<PathBuf>) -> anyhow::Result<u8> {
    let cfg = match ServeConfig::load(config_path.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("herd serve: {e}");
            return Ok(EXIT_INVALID);
        }
    };
    std::fs::create_dir_all(&cfg.results_dir)
        .with_context(|| format!("creating {}", cfg.results_dir.display()))?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    let tls = TlsFiles {
        ca: cfg.broker.ca.clone(),
        cert: cfg.broker.cert.clone(),
        key: cfg.broker.key.clone(),
    };
    // Kept alive for the process: the coordinator's IoT certificate files.
    let mut _cred_dir = None;
    let mut coordinator_cred: Option<(Iot, Credential, String)> = None;
    let (env, aws_parts) = match cfg.profile {
        Profile::Local => {
            let broker = match &cfg.broker.url {
                Some(u) => BrokerUrl::parse(u)?,
                None => {
                    let addr = crate::broker::start(0)?;
                    BrokerUrl {
                        tls: false,
                        host: addr.ip().to_string(),
                        port: addr.port(),
                    }
                }
            };
            let agent_broker = cfg
                .broker
                .agent_url
                .clone()
                .unwrap_or_else(|| broker.to_string());
            let notifier =
                Notifier::new(Sink::Local(cfg.results_dir.join("notifications.jsonl"))).start();
            (
                Env {
                    results_dir: cfg.results_dir.clone(),
                    default_agents: cfg.agents.unwrap_or(cores),
                    late_window_s: cfg.late_window_s,
                    broker,
                    tls: tls.clone(),
                    agent_broker,
                    agent_tls: tls.clone(),
                    aws: None,
                    notifier,
                },
                None,
            )
        }
        Profile::Aws => {
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
            );
            let broker_url = match (&cfg.broker.url, &aws.iot.endpoint) {
                (Some(u), _) | (None, Some(u)) => u.clone(),
                (None, None) => iot.endpoint().await?,
            };
            let broker = BrokerUrl::parse(&broker_url)?;
            let mut tls = tls.clone();
            if tls.cert.is_none() {
                // No certificate configured: the coordinator makes its own under the stack's
                // coordinator policy, and deletes it at shutdown.
                let id = format!("herd-coordinator-{}", crate::clock::stamp());
                let cred = iot
                    .issue_coordinator(&aws.iot.coordinator_policy, &id)
                    .await?;
                let dir =
                    tempfile::tempdir().context("a folder for the coordinator's certificate")?;
                let cert = dir.path().join("coordinator.pem");
                let key = dir.path().join("coordinator.key");
                std::fs::write(&cert, &cred.cert_pem)?;
                std::fs::write(&key, &cred.key_pem)?;
                tls.cert = Some(cert);
                tls.key = Some(key);
                _cred_dir = Some(dir);
                coordinator_cred = Some((iot.clone(), cred, aws.iot.coordinator_policy.clone()));
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
            let default_region = aws.regions[0].region.clone();
            let sqs = aws_sdk_sqs::Client::new(&conf);
            (
                Env {
                    results_dir: cfg.results_dir.clone(),
                    default_agents: cfg.agents.unwrap_or(1),
                    late_window_s: cfg.late_window_s,
                    broker,
                    tls: tls.clone(),
                    agent_broker,
                    agent_tls: TlsFiles::default(),
                    aws: Some(AwsEnv {
                        store,
                        spec_bucket: aws.spec_bucket.clone(),
                        iot,
                        home_region: aws.region.clone(),
                        regions: Arc::new(regions),
                        default_region,
                        agent_ca_pem: read(&cfg.broker.agent_ca, "[broker] agent_ca")?,
                    }),
                    notifier,
                },
                Some((sqs, aws)),
            )
        }
    };
    let broker = env.broker.to_string();
    let runs = Runs::new(env).start();
    if let Some((sqs, aws)) = aws_parts {
        SqsIntake::new(
            sqs,
            aws.queue_url.clone(),
            aws.visibility_timeout_s,
            aws.spec_bucket.clone(),
            aws.spec_prefix.clone(),
            runs.clone(),
        )
        .start();
    }
    if let Some(dir) = &cfg.inbox {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        inbox::Inbox::new(dir.clone(), runs.clone()).start();
    }
    eprintln!(
        "herd serve: ready — profile {:?}, broker {broker}, results {}{}",
        cfg.profile,
        cfg.results_dir.display(),
        cfg.inbox
            .as_ref()
            .map(|d| format!(", inbox {}", d.display()))
            .unwrap_or_default()
    );

    shutdown_signal().await;
    eprintln!("herd serve: shutting down — cancelling active runs");
    let active = runs.send(ActiveRuns).await.unwrap_or_default();
    for run_id in &active {
        runs.do_send(CancelRuns {
            run_id: Some(run_id.clone()),
            correlation_id: None,
            reason: "the coordinator is shutting down".into(),
        });
    }
    let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
    while tokio::time::Instant::now() < deadline {
        if runs.send(ActiveRuns).await.map_or(true, |a| a.is_empty()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Give the last notifications a moment to leave.
    tokio::time::sleep(Duration::from_millis(500)).await;
    if let Some((iot, cred, policy)) = coordinator_cred {
        iot.revoke_coordinator(&cred, &policy).await;
    }
    Ok(EXIT_OK)
}

/// Ctrl-C, or SIGTERM (what ECS sends a service task before it stops it).
async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}
