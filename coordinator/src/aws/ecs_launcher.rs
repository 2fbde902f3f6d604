//! `EcsLauncher`: a run's agents as ECS Fargate tasks. Regions launch in parallel; each region
//! starts its agents in RunTask calls of at most 10 tasks (the API's limit), retrying with
//! backoff on throttling and capacity errors. Every started task gets a bootstrap object with
//! its index and its own IoT certificate ([`super::bootstrap`]). StopTask on cancel and at run
//! end, then the run's credentials and bootstrap objects are removed. Task state changes come
//! back as [`TaskStopped`] and turn into [`AgentExited`].

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use aws_sdk_ecs::types::{
    AssignPublicIp, AwsVpcConfiguration, ContainerOverride, KeyValuePair, LaunchType,
    NetworkConfiguration, TaskOverride,
};

use transport::keys::Redacted;

use super::bootstrap::Bootstrap;
use super::err_text;
use super::iot::{Iot, RunCredentials};
use super::store::S3Store;
use crate::config::RegionConfig;
use crate::run::protocol::{AgentExited, LaunchAgents, LaunchError, StopAgents};

/// RunTask starts at most this many tasks per call.
pub const MAX_PER_CALL: u32 = 10;
/// Attempts per RunTask call before the remaining agents count as lost.
const ATTEMPTS: u32 = 5;

/// An ECS task of this run stopped (from an `ECS Task State Change` event).
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct TaskStopped {
    pub task_arn: String,
    pub reason: String,
}

pub struct Region {
    pub config: RegionConfig,
    pub ecs: aws_sdk_ecs::Client,
}

#[derive(Default)]
struct Shared {
    /// Task ARN → (agent index, region).
    tasks: HashMap<String, (u32, String)>,
    creds: Option<RunCredentials>,
    bootstrap_keys: Vec<String>,
    stopped: bool,
}

pub struct EcsLauncher {
    run_id: String,
    /// Region of each agent index.
    region_of: Vec<String>,
    regions: Arc<HashMap<String, Region>>,
    store: S3Store,
    iot: Iot,
    /// Home region of the bootstrap bucket, for agents in other regions.
    home_region: String,
    /// CA agents trust for the broker (None: public roots, right for IoT Core).
    agent_ca_pem: Option<String>,
    supervisor: Recipient<AgentExited>,
    shared: Arc<Mutex<Shared>>,
}

impl EcsLauncher {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        run_id: String,
        region_of: Vec<String>,
        regions: Arc<HashMap<String, Region>>,
        store: S3Store,
        iot: Iot,
        home_region: String,
        agent_ca_pem: Option<String>,
        supervisor: Recipient<AgentExited>,
    ) -> EcsLauncher {
        EcsLauncher {
            run_id,
            region_of,
            regions,
            store,
            iot,
            home_region,
            agent_ca_pem,
            supervisor,
            shared: Arc::default(),
        }
    }

    fn bootstrap_prefix(&self) -> String {
        format!("_agents/{}/", self.run_id)
    }
}

impl Actor for EcsLauncher {
    type Context = Context<Self>;
}

/// Consecutive index blocks of at most [`MAX_PER_CALL`], per region, in spec order.
pub fn plan_calls(region_of: &[String]) -> BTreeMap<String, Vec<Vec<u32>>> {
    let mut by_region: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for (i, r) in region_of.iter().enumerate() {
        by_region.entry(r.clone()).or_default().push(i as u32);
    }
    by_region
        .into_iter()
        .map(|(r, idx)| {
            let calls = idx
                .chunks(MAX_PER_CALL as usize)
                .map(<[u32]>::to_vec)
                .collect();
            (r, calls)
        })
        .collect()
}

/// Throttling and capacity problems are worth another try; anything else is not.
fn retryable(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    [
        "throttl",
        "rate exceeded",
        "capacity",
        "resource:",
        "servicequota",
        "503",
        "500",
        "internal",
        "timeout",
        "dispatch failure",
    ]
    .iter()
    .any(|p| t.contains(p))
}

struct CallResult {
    started: Vec<(String, u32)>,
    failed: Vec<(u32, String)>,
}

#[allow(clippy::too_many_arguments)]
async fn run_call(
    region: &Region,
    run_id: &str,
    bootstrap_url: &str,
    home_region: &str,
    indices: Vec<u32>,
) -> CallResult {
    let c = &region.config;
    let env = |k: &str, v: &str| KeyValuePair::builder().name(k).value(v).build();
    let overrides = TaskOverride::builder()
        .container_overrides(
            ContainerOverride::builder()
                .name(&c.container)
                .environment(env("HERD_RUN", run_id))
                .environment(env("HERD_BOOTSTRAP", bootstrap_url))
                .environment(env("HERD_BOOTSTRAP_REGION", home_region))
                .build(),
        )
        .build();
    let network = match AwsVpcConfiguration::builder()
        .set_subnets(Some(c.subnets.clone()))
        .set_security_groups(Some(c.security_groups.clone()))
        .assign_public_ip(if c.assign_public_ip {
            AssignPublicIp::Enabled
        } else {
            AssignPublicIp::Disabled
        })
        .build()
    {
        Ok(n) => n,
        Err(e) => {
            return CallResult {
                started: Vec::new(),
                failed: indices
                    .into_iter()
                    .map(|i| (i, format!("network configuration: {e}")))
                    .collect(),
            }
        }
    };
    let mut left = indices;
    let mut started = Vec::new();
    let mut last_error = String::new();
    for attempt in 0..ATTEMPTS {
        if left.is_empty() {
            break;
        }
        if attempt > 0 {
            // 0.5 s, 1 s, 2 s, 4 s: RunTask's throttle refills per second.
            tokio::time::sleep(Duration::from_millis(500 << (attempt - 1))).await;
        }
        let out = region
            .ecs
            .run_task()
            .cluster(&c.cluster)
            .task_definition(&c.task_definition)
            .launch_type(LaunchType::Fargate)
            .count(left.len() as i32)
            .started_by("herd")
            .network_configuration(
                NetworkConfiguration::builder()
                    .awsvpc_configuration(network.clone())
                    .build(),
            )
            .overrides(overrides.clone())
            .send()
            .await;
        match out {
            Ok(out) => {
                let arns: Vec<String> = out
                    .tasks()
                    .iter()
                    .filter_map(|t| t.task_arn().map(str::to_string))
                    .collect();
                let n = arns.len().min(left.len());
                for (arn, i) in arns.into_iter().zip(left.drain(..n)) {
                    started.push((arn, i));
                }
                let reasons: Vec<String> = out
                    .failures()
                    .iter()
                    .map(|f| {
                        format!(
                            "{}{}",
                            f.reason().unwrap_or("unknown"),
                            f.detail().map(|d| format!(" ({d})")).unwrap_or_default()
                        )
                    })
                    .collect();
                if !left.is_empty() {
                    last_error = if reasons.is_empty() {
                        "RunTask started fewer tasks than asked".to_string()
                    } else {
                        reasons.join("; ")
                    };
                    tracing::warn!(region = %c.region, left = left.len(), attempt, error = %last_error, "RunTask fell short");
                    if !retryable(&last_error) {
                        break;
                    }
                }
            }
            Err(e) => {
                last_error = err_text(&e);
                tracing::warn!(region = %c.region, attempt, error = %last_error, "RunTask failed");
                if !retryable(&last_error) {
                    break;
                }
            }
        }
    }
    CallResult {
        started,
        failed: left
            .into_iter()
            .map(|i| (i, format!("RunTask in {}: {last_error}", c.region)))
            .collect(),
    }
}

impl Handler<LaunchAgents> for EcsLauncher {
    type Result = ResponseFuture<Result<(), LaunchError>>;

    fn handle(&mut self, msg: LaunchAgents, _ctx: &mut Context<Self>) -> Self::Result {
        let run_id = self.run_id.clone();
        let region_of = self.region_of.clone();
        let regions = self.regions.clone();
        let store = self.store.clone();
        let iot = self.iot.clone();
        let home = self.home_region.clone();
        let ca = self.agent_ca_pem.clone();
        let prefix = self.bootstrap_prefix();
        let shared = self.shared.clone();
        let sup = self.supervisor.clone();
        Box::pin(async move {
            for r in &region_of {
                if !regions.contains_key(r) {
                    return Err(LaunchError(format!(
                        "the spec puts agents in region {r:?}, which has no [[aws.regions]] entry in the serve config"
                    )));
                }
            }
            let creds = iot
                .issue_run(&run_id, msg.count)
                .await
                .map_err(|e| LaunchError(format!("agent credentials: {e}")))?;
            let agent_creds = creds.agents.clone();
            if let Ok(mut s) = shared.lock() {
                s.creds = Some(creds);
            }
            let bootstrap_url = format!("s3://{}/{prefix}", store.results_bucket);
            let calls = plan_calls(&region_of);
            let per_region = calls.into_iter().map(|(region, blocks)| {
                let regions = regions.clone();
                let run_id = run_id.clone();
                let url = bootstrap_url.clone();
                let home = home.clone();
                async move {
                    let Some(reg) = regions.get(&region) else {
                        return Vec::new();
                    };
                    let mut out = Vec::new();
                    for block in blocks {
                        out.push(run_call(reg, &run_id, &url, &home, block).await);
                    }
                    out
                }
            });
            let results: Vec<CallResult> = futures::future::join_all(per_region)
                .await
                .into_iter()
                .flatten()
                .collect();
            let mut started_any = false;
            let mut first_failure = None;
            for r in results {
                for (arn, i) in r.started {
                    started_any = true;
                    let Some(cred) = agent_creds.get(i as usize) else {
                        continue;
                    };
                    let boot = Bootstrap {
                        run_id: run_id.clone(),
                        index: i,
                        broker: msg.broker.clone(),
                        ca_pem: ca.clone(),
                        cert_pem: cred.cert_pem.clone(),
                        key_pem: cred.key_pem.clone(),
                        agent_secret: Redacted(
                            msg.credentials
                                .secrets
                                .get(i as usize)
                                .map(|s| s.to_hex())
                                .unwrap_or_default(),
                        ),
                        coordinator_key: msg.credentials.coordinator.to_hex(),
                    };
                    let key = super::bootstrap::object_key(&prefix, &arn);
                    let body = serde_json::to_vec(&boot).map_err(|e| LaunchError(e.to_string()))?;
                    if let Ok(mut s) = shared.lock() {
                        s.tasks
                            .insert(arn.clone(), (i, region_of[i as usize].clone()));
                        s.bootstrap_keys.push(key.clone());
                    }
                    if let Err(e) = store.put(&key, body, "application/json").await {
                        sup.do_send(AgentExited {
                            agent: i,
                            reason: format!("writing its bootstrap object: {e}"),
                        });
                    }
                }
                for (i, why) in r.failed {
                    first_failure.get_or_insert_with(|| why.clone());
                    sup.do_send(AgentExited {
                        agent: i,
                        reason: why,
                    });
                }
            }
            // Stopped while launching (a cancel): what started since must not outlive the run.
            let late = shared.lock().ok().and_then(|mut s| {
                s.stopped.then(|| {
                    (
                        s.tasks.clone(),
                        s.creds.take(),
                        std::mem::take(&mut s.bootstrap_keys),
                    )
                })
            });
            if let Some((tasks, creds, keys)) = late {
                cleanup(regions, store, iot, run_id, tasks, creds, keys).await;
                return Err(LaunchError("stopped while launching".into()));
            }
            if started_any {
                Ok(())
            } else {
                Err(LaunchError(
                    first_failure.unwrap_or_else(|| "no task started".into()),
                ))
            }
        })
    }
}

impl Handler<TaskStopped> for EcsLauncher {
    type Result = ();

    fn handle(&mut self, msg: TaskStopped, _ctx: &mut Context<Self>) {
        let found = self
            .shared
            .lock()
            .ok()
            .and_then(|s| s.tasks.get(&msg.task_arn).cloned());
        if let Some((agent, _)) = found {
            self.supervisor.do_send(AgentExited {
                agent,
                reason: msg.reason,
            });
        }
    }
}

impl Handler<StopAgents> for EcsLauncher {
    type Result = ();

    fn handle(&mut self, _msg: StopAgents, ctx: &mut Context<Self>) {
        let (tasks, creds, keys) = match self.shared.lock() {
            Ok(mut s) if !s.stopped => {
                s.stopped = true;
                (
                    s.tasks.clone(),
                    s.creds.take(),
                    std::mem::take(&mut s.bootstrap_keys),
                )
            }
            _ => return,
        };
        ctx.spawn(
            cleanup(
                self.regions.clone(),
                self.store.clone(),
                self.iot.clone(),
                self.run_id.clone(),
                tasks,
                creds,
                keys,
            )
            .into_actor(self),
        );
    }
}

/// StopTask every task, delete the bootstrap objects, revoke the credentials.
async fn cleanup(
    regions: Arc<HashMap<String, Region>>,
    store: S3Store,
    iot: Iot,
    run_id: String,
    tasks: HashMap<String, (u32, String)>,
    creds: Option<RunCredentials>,
    keys: Vec<String>,
) {
    let stops = tasks.iter().map(|(arn, (_, region))| {
        let regions = regions.clone();
        let run_id = run_id.clone();
        async move {
            let Some(r) = regions.get(region) else { return };
            if let Err(e) = r
                .ecs
                .stop_task()
                .cluster(&r.config.cluster)
                .task(arn)
                .reason(format!("herd: run {run_id} ended"))
                .send()
                .await
            {
                tracing::debug!(task = %arn, error = %err_text(&e), "StopTask");
            }
        }
    });
    futures::future::join_all(stops).await;
    for k in keys {
        if let Err(e) = store.delete(&k).await {
            tracing::warn!(error = %e, "deleting a bootstrap object failed");
        }
    }
    if let Some(c) = creds {
        iot.revoke_run(&c).await;
    }
    tracing::info!(run = %run_id, tasks = tasks.len(), "agents stopped, credentials revoked");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_hold_at_most_ten_per_region() {
        let mut region_of = vec!["us-east-1".to_string(); 23];
        region_of.extend(vec!["eu-west-1".to_string(); 3]);
        let plan = plan_calls(&region_of);
        let us: Vec<usize> = plan["us-east-1"].iter().map(Vec::len).collect();
        assert_eq!(us, vec![10, 10, 3]);
        assert_eq!(plan["eu-west-1"], vec![vec![23, 24, 25]]);
        let all: Vec<u32> = plan.values().flatten().flatten().copied().collect();
        assert_eq!(all.len(), 26);
    }

    #[test]
    fn capacity_and_throttling_are_retried() {
        assert!(retryable("ThrottlingException: Rate exceeded"));
        assert!(retryable("Capacity is unavailable at this time"));
        assert!(retryable("RESOURCE:MEMORY"));
        assert!(!retryable("ClientException: TaskDefinition not found"));
    }
}
