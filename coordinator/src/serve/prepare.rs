//! From a request to a runnable bundle: read the spec and its files from wherever the request
//! points (confined to the spec's folder), then apply what a shared service decides beyond the
//! spec — no built-in target, targets the policy allows (`crate::targets`: the target URL or
//! its override, absolute static step URLs, runners that can be confined), only configured
//! regions, every agent in a region, a default agent count. Pure of actors: the registry
//! calls it and acts on the answer.

use messages::spec::{Agents, RegionAgents};

use super::profile::Env;
use crate::aws::spec_source::S3Source;
use crate::bundle::{self, local::LocalSource, BundleError, SpecBundle};
use crate::request::{RunRequest, SpecSource};
use crate::targets::{check_spec, TargetFrom};

/// A request made runnable.
pub struct Prepared {
    pub bundle: SpecBundle,
    pub agents: u32,
    /// The spec's baseline run's `summary.json`, if the spec has one.
    pub baseline_summary: Option<String>,
}

/// Why a request could not become a run.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// The request can never run as it is: every reason, one line each.
    #[error("{}", .0.join("\n"))]
    Rejected(Vec<String>),
    /// Try again later (storage unreachable).
    #[error("{0}")]
    Transient(String),
}

impl From<BundleError> for PrepareError {
    fn from(e: BundleError) -> PrepareError {
        if e.is_transient() {
            PrepareError::Transient(e.to_string())
        } else {
            PrepareError::Rejected(e.lines())
        }
    }
}

pub async fn prepare(env: &Env, req: &RunRequest) -> Result<Prepared, PrepareError> {
    let reject = |m: String| PrepareError::Rejected(vec![format!("{}: {m}", req.origin)]);
    let mut b = match &req.spec {
        SpecSource::File { path, data_dir } => {
            let src = LocalSource::with_dir(path, data_dir.clone()).origin_as(req.origin.clone());
            bundle::build(&src, &req.overrides, &env.limits).await?
        }
        SpecSource::Inline(text) => {
            let src = bundle::InlineSource {
                text: text.clone(),
                origin: req.origin.clone(),
            };
            bundle::build(&src, &req.overrides, &env.limits).await?
        }
        SpecSource::S3 {
            bucket,
            key,
            version,
        } => {
            let Some(aws) = &env.aws else {
                return Err(reject("S3 specs need the aws profile".into()));
            };
            let bucket = if bucket.is_empty() {
                aws.spec_bucket.clone()
            } else {
                bucket.clone()
            };
            let src = S3Source {
                store: &aws.store,
                bucket,
                key: key.clone(),
                version: version.clone(),
                origin: req.origin.clone(),
            };
            bundle::build(&src, &req.overrides, &env.limits).await?
        }
    };
    if b.spec.target.builtin {
        return Err(reject(
            "target: builtin runs only with `herd run` (point target.url at the system under test, or override target_url)".into(),
        ));
    }
    let from = if req.overrides.target_url.is_some() {
        TargetFrom::Override
    } else {
        TargetFrom::Spec
    };
    check_spec(&b.spec, from, &env.policy, env.unconfined_runners).map_err(|errors| {
        PrepareError::Rejected(
            errors
                .into_iter()
                .map(|e| format!("{}: {e}", req.origin))
                .collect(),
        )
    })?;
    let agents = b.spec.agents.total().unwrap_or(env.default_agents).max(1);
    if let Some(aws) = &env.aws {
        match &b.spec.agents {
            Agents::Regions(rs) => {
                let missing: Vec<&str> = rs
                    .iter()
                    .map(|r| r.region.as_str())
                    .filter(|r| !aws.regions.contains_key(*r))
                    .collect();
                if !missing.is_empty() {
                    let mut configured: Vec<&str> =
                        aws.regions.keys().map(String::as_str).collect();
                    configured.sort();
                    return Err(reject(format!(
                        "agents: region(s) {} have no [[aws.regions]] entry in the serve config (configured: {})",
                        missing.join(", "),
                        configured.join(", ")
                    )));
                }
            }
            // On AWS every agent runs in a configured region: a plain count goes to the first
            // one, so results name it.
            Agents::Count(_) | Agents::Default => {
                b.spec.agents = Agents::Regions(vec![RegionAgents {
                    region: aws.default_region.clone(),
                    count: agents,
                }]);
            }
        }
    }
    Ok(Prepared {
        bundle: b,
        agents,
        baseline_summary: None,
    })
}
