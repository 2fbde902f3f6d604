//! One agent's share of a run, start to end: compile, start the recorder, run the executor,
//! hand every batch to `out`. Used by standalone mode and by the coordinated agent alike.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use messages::metrics::MetricBatch;
use messages::policy::TargetPolicy;
use messages::spec::Spec;
use messages::split::Share;
use rustls::pki_types::CertificateDer;
use tokio::sync::{mpsc, watch};

use crate::clock::WallClock;
use crate::executor::{self, Env, Report};
use crate::http::{tls, HttpConfig};
use crate::recorder::Recorder;
use crate::scenario::{compile, CompileError};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Compile(#[from] CompileError),
    #[error(transparent)]
    Runner(#[from] crate::runners::RunnerError),
    #[error(transparent)]
    Limit(#[from] crate::limits::LimitError),
}

/// Where an agent's load may go, whom it trusts and which clock it stamps with, beyond the
/// spec: the same for every share it runs. `Default` allows every target, trusts the public
/// web roots and reads this machine's clock as it is.
#[derive(Debug, Clone, Default)]
pub struct NetConfig {
    /// Checked on every URL (static at compile, templated when rendered, every redirect hop)
    /// and every connected address.
    pub policy: Arc<TargetPolicy>,
    /// CAs trusted besides the public web roots.
    pub extra_roots: Vec<CertificateDer<'static>>,
    /// Batch seconds are read from it: a coordinated agent's is on the coordinator's clock.
    pub clock: WallClock,
}

impl NetConfig {
    pub fn with_policy(policy: TargetPolicy) -> NetConfig {
        NetConfig {
            policy: Arc::new(policy),
            ..NetConfig::default()
        }
    }
}

pub fn http_config(spec: &Spec, net: &NetConfig) -> Arc<HttpConfig> {
    let h = &spec.target.http;
    Arc::new(HttpConfig {
        version: h.version,
        timeout: Duration::from_millis(h.timeout_ms),
        connect_timeout: Duration::from_millis(h.connect_timeout_ms),
        max_redirects: h.max_redirects,
        cookies: h.cookies,
        tls: tls::client_config(h.version, h.insecure, &net.extra_roots),
        policy: net.policy.clone(),
        versions: Default::default(),
    })
}

/// Runs `share` of `spec` and sends each per-second batch to `out`. Returns when the executor
/// and the recorder are done, i.e. after the last batch was sent.
pub async fn run_share(
    spec: &Spec,
    data: &BTreeMap<String, Vec<u8>>,
    share: &Share,
    run_id: &str,
    net: &NetConfig,
    stop: watch::Receiver<bool>,
    out: mpsc::UnboundedSender<MetricBatch>,
) -> Result<Report, EngineError> {
    if spec.runner.is_some() {
        let recorder = Recorder::new(share.index, Vec::new(), &net.clock, out);
        return Ok(crate::runners::run_share(
            spec,
            data,
            share,
            run_id,
            &net.policy,
            stop,
            recorder,
        )
        .await?);
    }
    crate::limits::check_descriptors(crate::limits::peak_vus(&share.executor))?;
    let plan = Arc::new(compile(
        spec,
        data,
        run_id,
        (share.index, share.count),
        &net.policy,
    )?);
    let recorder = Recorder::new(share.index, plan.labels.clone(), &net.clock, out);
    let checks = recorder.checks();
    let http = http_config(spec, net);
    let versions = http.versions.clone();
    let env = Env {
        plan: plan.clone(),
        http,
        recorder: recorder.handle(),
        vu_offset: share.vu_offset,
        graceful_stop: Duration::from_millis(spec.load.graceful_stop_ms),
    };
    let rec = tokio::spawn(recorder.run());
    let mut report = executor::run(&share.executor, env, stop).await;
    // Every buffer and handle is gone now, so the recorder drains and ends.
    if let Err(e) = rec.await {
        tracing::error!(error = %e, "recorder task failed");
    }
    report.checks =
        crate::scenario::checks::counts(spec, &plan, &crate::recorder::lock_checks(&checks));
    report.http_versions = versions.snapshot();
    Ok(report)
}
