//! `Runs`: the long-running coordinator's registry. Intake actors (SQS, inbox) hand it run
//! requests; it makes each request into at most one run (idempotency key, kept in memory and —
//! on AWS — as an S3 marker, so a re-delivery after a restart is still one run), validates the
//! spec (an invalid one becomes `RunRejected`, never a crash), starts the run's actors through
//! [`crate::wiring::start_run`], routes cancels and ECS task events to the right run, and when
//! a run ends stores its results (S3 on AWS) and sends `RunCompleted`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use actix::prelude::*;
use agent::mqtt::{BrokerUrl, TlsFiles};
use messages::spec::{parse_spec, Agents, Spec};
use serde_json::json;

use crate::aws::ecs_launcher::{EcsLauncher, Region, TaskStopped};
use crate::aws::events::{RunRequest, SpecSource};
use crate::aws::iot::Iot;
use crate::aws::store::{S3Store, MAX_DATA_BYTES};
use crate::launcher::LocalLauncher;
use crate::notifier::{Notifier, Notify};
use crate::supervisor::{Cancel, Outcome, RunSupervisor};
use crate::wiring::{start_run, LauncherLink, RunParams};

/// What differs between the local and the AWS profile, fixed at start.
pub struct Env {
    pub results_dir: PathBuf,
    pub default_agents: u32,
    pub late_window_s: u64,
    /// The coordinator's broker and credentials.
    pub broker: BrokerUrl,
    pub tls: TlsFiles,
    /// What agents are told.
    pub agent_broker: String,
    pub agent_tls: TlsFiles,
    pub aws: Option<AwsEnv>,
    pub notifier: Addr<Notifier>,
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
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Submitted {
    Started(String),
    /// The same request was seen before: nothing new was started.
    Duplicate(String),
    /// The spec could not run; `RunRejected` was sent with these errors.
    Rejected(Vec<String>),
}

/// A run request. `Err` is transient (S3 unreachable…): the message should come again.
#[derive(Message)]
#[rtype(result = "Result<Submitted, String>")]
pub struct Submit(pub RunRequest);

/// Cancel by run id or by the pipeline's correlation id. Answers how many runs it reached.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct CancelRuns {
    pub run_id: Option<String>,
    pub correlation_id: Option<String>,
    pub reason: String,
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct TaskEvent {
    pub task_arn: String,
    pub run_id: Option<String>,
    pub reason: String,
}

/// Runs still going, for `serve` to wait on at shutdown.
#[derive(Message)]
#[rtype(result = "Vec<String>")]
pub struct ActiveRuns;

#[derive(Message)]
#[rtype(result = "()")]
struct RunEnded {
    run_id: String,
    outcome: Option<Outcome>,
}

struct Active {
    supervisor: Addr<RunSupervisor>,
    ecs: Option<Addr<EcsLauncher>>,
    correlation_id: Option<String>,
    spec_name: String,
    origin: String,
    dir: PathBuf,
    bus: crate::bus::Bus,
}

pub struct Runs {
    env: Arc<Env>,
    active: HashMap<String, Active>,
    /// Idempotency key → run id (or `rejected`), and keys being worked on.
    seen: HashMap<String, String>,
    counter: u32,
}

const PENDING: &str = "\u{0}pending";

impl Runs {
    pub fn new(env: Env) -> Runs {
        Runs {
            env: Arc::new(env),
            active: HashMap::new(),
            seen: HashMap::new(),
            counter: 0,
        }
    }
}

impl Actor for Runs {
    type Context = Context<Self>;
}

/// A spec that was read, checked and is ready to run.
struct Prepared {
    spec: Spec,
    text: String,
    data: Vec<messages::wire::DataFile>,
}

enum Prep {
    Ready(Box<Prepared>),
    Rejected(Vec<String>),
}

async fn prepare(env: &Env, req: &RunRequest) -> Result<Prep, String> {
    let mut local_dir = None;
    let (text, data_base) = match &req.spec {
        SpecSource::Inline(t) => (t.clone(), None),
        SpecSource::File { path, data_dir } => match std::fs::read_to_string(path) {
            Ok(t) => {
                local_dir = Some(data_dir.clone());
                (t, None)
            }
            Err(e) => {
                return Ok(Prep::Rejected(vec![format!(
                    "{}: cannot read: {e}",
                    req.origin
                )]))
            }
        },
        SpecSource::S3 {
            bucket,
            key,
            version,
        } => {
            let Some(aws) = &env.aws else {
                return Ok(Prep::Rejected(vec![format!(
                    "{}: S3 specs need the aws profile",
                    req.origin
                )]));
            };
            let bucket = if bucket.is_empty() {
                &aws.spec_bucket
            } else {
                bucket
            };
            match aws.store.get_text(bucket, key, version.as_deref()).await {
                Ok(t) => (t, Some((bucket.clone(), key.clone()))),
                // Gone or unusable for good: no retry will help.
                Err(e) if e.is_permanent() => return Ok(Prep::Rejected(vec![e.to_string()])),
                Err(e) => return Err(e.to_string()),
            }
        }
    };
    let mut spec = match parse_spec(&text) {
        Ok(s) => s,
        Err(e) => {
            return Ok(Prep::Rejected(
                e.issues()
                    .iter()
                    .map(|i| format!("{}:{i}", req.origin))
                    .collect(),
            ))
        }
    };
    if let Some(n) = req.overrides.agents {
        spec.agents = Agents::Count(n);
    }
    if let Some(u) = &req.overrides.target_url {
        spec.target.url = u.clone();
        spec.target.builtin = false;
    }
    if spec.target.builtin {
        return Ok(Prep::Rejected(vec![format!(
            "{}: target: builtin runs only with `herd run` (point target.url at the system under test, or override target_url)",
            req.origin
        )]));
    }
    if let Some(aws) = &env.aws {
        if let Agents::Regions(rs) = &spec.agents {
            let missing: Vec<&str> = rs
                .iter()
                .map(|r| r.region.as_str())
                .filter(|r| !aws.regions.contains_key(*r))
                .collect();
            if !missing.is_empty() {
                return Ok(Prep::Rejected(vec![format!(
                    "{}: agents: region(s) {} have no [[aws.regions]] entry in the serve config (configured: {})",
                    req.origin,
                    missing.join(", "),
                    aws.regions.keys().cloned().collect::<Vec<_>>().join(", ")
                )]));
            }
        }
    }
    let mut data = Vec::new();
    if let Some(dir) = &local_dir {
        // Beside an inbox file: the same loader as `herd run` (script folders included).
        match agent::engine::load_data(&spec, dir) {
            Ok(files) => {
                let data = files
                    .into_iter()
                    .map(|(name, bytes)| messages::wire::DataFile { name, bytes })
                    .collect();
                return Ok(Prep::Ready(Box::new(Prepared { spec, text, data })));
            }
            Err(e) => return Ok(Prep::Rejected(vec![format!("{}: {e}", req.origin)])),
        }
    }
    for (name, file) in spec.files() {
        let bytes = match (&data_base, &env.aws) {
            (Some((bucket, key)), Some(aws)) => {
                if file.starts_with('/') || file.split('/').any(|p| p == "..") {
                    return Ok(Prep::Rejected(vec![format!(
                        "{}: {name}: {file:?} must be a relative path below the spec",
                        req.origin
                    )]));
                }
                let dir = key.rsplit_once('/').map_or("", |(d, _)| d);
                let k = if dir.is_empty() { file.clone() } else { format!("{dir}/{file}") };
                match aws.store.get_bytes(bucket, &k, None, MAX_DATA_BYTES).await {
                    Ok(b) => b,
                    Err(e) if e.is_permanent() => {
                        return Ok(Prep::Rejected(vec![format!("{}: {name}: {e}", req.origin)]))
                    }
                    Err(e) => return Err(e.to_string()),
                }
            }
            _ => {
                return Ok(Prep::Rejected(vec![format!(
                    "{}: data.{name}: data files need a spec stored next to them (an S3 object or an inbox file)",
                    req.origin
                )]))
            }
        };
        if name == messages::spec::SCRIPT_FILE && file.ends_with(".zip") {
            match agent::engine::read_zip(&bytes) {
                Ok(files) => {
                    data.extend(
                        files
                            .into_iter()
                            .map(|(rel, bytes)| messages::wire::DataFile {
                                name: format!("{name}/{rel}"),
                                bytes,
                            }),
                    )
                }
                Err(e) => return Ok(Prep::Rejected(vec![format!("{}: {file}: {e}", req.origin)])),
            }
            continue;
        }
        data.push(messages::wire::DataFile {
            name: name.clone(),
            bytes,
        });
    }
    Ok(Prep::Ready(Box::new(Prepared { spec, text, data })))
}

impl Handler<Submit> for Runs {
    type Result = ResponseActFuture<Self, Result<Submitted, String>>;

    fn handle(&mut self, msg: Submit, _ctx: &mut Context<Self>) -> Self::Result {
        let req = msg.0;
        let key = req.idempotency_key.clone();
        if let Some(run) = self.seen.get(&key) {
            let run = if run == PENDING {
                "(starting)".to_string()
            } else {
                run.clone()
            };
            tracing::info!(%key, %run, origin = %req.origin, "duplicate request: no new run");
            return Box::pin(fut::ready(Ok(Submitted::Duplicate(run))));
        }
        self.seen.insert(key.clone(), PENDING.into());
        let env = self.env.clone();
        let k = key.clone();
        let work = async move {
            if let Some(aws) = &env.aws {
                if let Some(run) = aws.store.seen(&k).await.map_err(|e| e.to_string())? {
                    return Ok((req, Err(Submitted::Duplicate(run))));
                }
            }
            let prep = prepare(&env, &req).await?;
            Ok((req, Ok(prep)))
        };
        Box::pin(work.into_actor(self).then(move |res, act, ctx| {
            let env = act.env.clone();
            let key2 = key.clone();
            let out: Result<Submitted, String> = match res {
                Err(e) => {
                    act.seen.remove(&key);
                    Err(e)
                }
                Ok((_req, Err(dup))) => {
                    if let Submitted::Duplicate(run) = &dup {
                        act.seen.insert(key.clone(), run.clone());
                    }
                    Ok(dup)
                }
                Ok((req, Ok(Prep::Rejected(errors)))) => {
                    tracing::warn!(origin = %req.origin, errors = ?errors, "run rejected");
                    act.seen.insert(key.clone(), "rejected".into());
                    env.notifier.do_send(Notify {
                        kind: "RunRejected",
                        detail: json!({
                            "source": req.origin,
                            "correlation_id": req.correlation_id,
                            "errors": errors,
                        }),
                    });
                    Ok(Submitted::Rejected(errors))
                }
                Ok((req, Ok(Prep::Ready(p)))) => act.launch(req, *p, ctx),
            };
            let marker = match &out {
                Ok(Submitted::Started(run)) => Some(run.clone()),
                Ok(Submitted::Rejected(_)) => Some("rejected".to_string()),
                _ => None,
            };
            async move {
                // The effect is durable before the message may be deleted.
                if let (Some(aws), Some(v)) = (&env.aws, marker) {
                    if let Err(e) = aws.store.mark(&key2, &v).await {
                        tracing::warn!(error = %e, "could not persist the idempotency marker");
                    }
                }
                out
            }
            .into_actor(act)
        }))
    }
}

impl Runs {
    fn launch(
        &mut self,
        req: RunRequest,
        mut p: Prepared,
        ctx: &mut Context<Self>,
    ) -> Result<Submitted, String> {
        self.counter += 1;
        // `prepare` already put an `agents` override into the spec.
        let count = p
            .spec
            .agents
            .total()
            .unwrap_or(self.env.default_agents)
            .max(1);
        // On AWS every agent runs in a configured region (`prepare` checked the spec's): a plain
        // count goes to the first one, so results name it.
        if let (Some(aws), Agents::Count(_) | Agents::Default) = (&self.env.aws, &p.spec.agents) {
            p.spec.agents = Agents::Regions(vec![messages::spec::RegionAgents {
                region: aws.default_region.clone(),
                count,
            }]);
        }
        let run_id = format!(
            "{}-{}-{:04x}",
            p.spec.name,
            crate::clock::stamp(),
            (crate::clock::unix_ms() as u32)
                .wrapping_mul(2654435761)
                .wrapping_add(self.counter)
                & 0xffff
        );
        let dir = self.env.results_dir.join(&run_id);
        std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let env = self.env.clone();
        let spec_name = p.spec.name.clone();
        let region_of: Vec<String> = (0..count).map(|i| p.spec.agents.region_of(i)).collect();
        tracing::info!(run = %run_id, origin = %req.origin, agents = count, "starting a run");
        let params = RunParams {
            run_id: run_id.clone(),
            spec: p.spec,
            spec_text: p.text,
            data: p.data,
            agents: count,
            broker: env.broker.clone(),
            tls: env.tls.clone(),
            agent_broker: env.agent_broker.clone(),
            agent_tls: env.agent_tls.clone(),
            late_window_s: env.late_window_s,
            quiet: true,
            dir: dir.clone(),
        };
        let me = ctx.address();
        let rid = run_id.clone();
        let rid2 = run_id.clone();
        let correlation_id = req.correlation_id.clone();
        let origin = req.origin.clone();
        let dir2 = dir.clone();
        ctx.spawn(
            async move {
                let mut ecs_addr = None;
                let started = start_run(params, |sup| match &env.aws {
                    Some(aws) => {
                        let l = EcsLauncher::new(
                            rid.clone(),
                            region_of,
                            aws.regions.clone(),
                            aws.store.clone(),
                            aws.iot.clone(),
                            aws.home_region.clone(),
                            aws.agent_ca_pem.clone(),
                            sup,
                        )
                        .start();
                        ecs_addr = Some(l.clone());
                        LauncherLink {
                            launch: l.clone().recipient(),
                            stop: l.recipient(),
                        }
                    }
                    None => {
                        let l = LocalLauncher::new(sup, dir2.clone()).start();
                        LauncherLink {
                            launch: l.clone().recipient(),
                            stop: l.recipient(),
                        }
                    }
                })
                .await;
                (started, ecs_addr)
            }
            .into_actor(self)
            .map(move |(started, ecs), act, _ctx| match started {
                Ok(h) => {
                    act.active.insert(
                        h.run_id.clone(),
                        Active {
                            supervisor: h.supervisor,
                            ecs,
                            correlation_id,
                            spec_name,
                            origin,
                            dir,
                            bus: h.bus,
                        },
                    );
                    let run_id = h.run_id;
                    let done = h.done;
                    actix::spawn(async move {
                        let outcome = done.await.ok();
                        me.do_send(RunEnded { run_id, outcome });
                    });
                }
                Err(e) => {
                    tracing::error!(run = %rid2, error = %e, "the run could not connect to its broker");
                    act.env.notifier.do_send(Notify {
                        kind: "RunCompleted",
                        detail: json!({
                            "run_id": rid2, "spec": spec_name, "correlation_id": correlation_id,
                            "state": "failed", "verdict": "failed", "reason": e.to_string(),
                        }),
                    });
                }
            }),
        );
        Ok(Submitted::Started(run_id))
    }
}

impl Handler<CancelRuns> for Runs {
    type Result = usize;

    fn handle(&mut self, msg: CancelRuns, _ctx: &mut Context<Self>) -> usize {
        let mut n = 0;
        for (id, a) in &self.active {
            let hit = msg.run_id.as_deref() == Some(id.as_str())
                || (msg.correlation_id.is_some() && msg.correlation_id == a.correlation_id);
            if hit {
                tracing::info!(run = %id, reason = %msg.reason, "cancel requested");
                a.supervisor.do_send(Cancel {
                    reason: msg.reason.clone(),
                });
                n += 1;
            }
        }
        if n == 0 {
            tracing::warn!(run_id = ?msg.run_id, correlation_id = ?msg.correlation_id, "cancel for no active run");
        }
        n
    }
}

impl Handler<TaskEvent> for Runs {
    type Result = ();

    fn handle(&mut self, msg: TaskEvent, _ctx: &mut Context<Self>) {
        // The run id from the task's overrides picks the run; without it every ECS launcher
        // checks the ARN against its own tasks.
        let stop = TaskStopped {
            task_arn: msg.task_arn,
            reason: msg.reason,
        };
        for (id, a) in &self.active {
            if msg.run_id.as_deref().is_none_or(|r| r == id) {
                if let Some(l) = &a.ecs {
                    l.do_send(stop.clone());
                }
            }
        }
    }
}

impl Handler<ActiveRuns> for Runs {
    type Result = MessageResult<ActiveRuns>;
    fn handle(&mut self, _msg: ActiveRuns, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(self.active.keys().cloned().collect())
    }
}

impl Handler<RunEnded> for Runs {
    type Result = ();

    fn handle(&mut self, msg: RunEnded, ctx: &mut Context<Self>) {
        let Some(a) = self.active.remove(&msg.run_id) else {
            return;
        };
        let env = self.env.clone();
        ctx.spawn(
            async move {
                let mut detail = json!({
                    "run_id": msg.run_id,
                    "spec": a.spec_name,
                    "correlation_id": a.correlation_id,
                    "source": a.origin,
                });
                let mut results = format!("{}", a.dir.display());
                match &msg.outcome {
                    Some(o) => {
                        if let Err(e) = &o.dir {
                            tracing::error!(run = %msg.run_id, error = %e, "results were not written");
                        }
                        if let Some(aws) = &env.aws {
                            match aws.store.upload_results(&a.dir, &a.spec_name, &msg.run_id).await {
                                Ok(url) => results = url,
                                Err(e) => tracing::error!(run = %msg.run_id, error = %e, "uploading results failed; they stay in {}", a.dir.display()),
                            }
                        }
                        let r = &o.result;
                        let s = r.summary_json(&a.spec_name);
                        if let serde_json::Value::Object(m) = &mut detail {
                            m.insert("state".into(), json!(r.state));
                            m.insert("reason".into(), json!(r.reason));
                            m.insert("verdict".into(), json!(if r.passed() && r.state == "completed" { "passed" } else { "failed" }));
                            m.insert("requests".into(), s["total"]["requests"].clone());
                            m.insert("errors".into(), s["total"]["errors"].clone());
                            m.insert("rps".into(), s["total"]["rps"].clone());
                            m.insert("p95_ms".into(), s["total"]["latency_ms"]["p95"].clone());
                            m.insert("p99_ms".into(), s["total"]["latency_ms"]["p99"].clone());
                            m.insert("agents_lost".into(), json!(r.agents_lost()));
                            m.insert("thresholds".into(), s["thresholds"].clone());
                            m.insert("results".into(), json!(results));
                        }
                    }
                    None => {
                        if let serde_json::Value::Object(m) = &mut detail {
                            m.insert("state".into(), json!("failed"));
                            m.insert("verdict".into(), json!("failed"));
                            m.insert("reason".into(), json!("the run supervisor ended without a result"));
                        }
                    }
                }
                a.bus.disconnect();
                if let Err(e) = env.notifier.send(Notify { kind: "RunCompleted", detail }).await {
                    tracing::error!(error = %e, "notifier unreachable");
                }
            }
            .into_actor(self),
        );
    }
}
