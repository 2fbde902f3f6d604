//! `Runs`: the long-running coordinator's registry of runs. Intake actors (SQS, inbox) hand it
//! requests; it makes each request into at most one run (an idempotency key, kept in memory
//! and — on AWS — as an S3 marker, so a re-delivery after a restart is still one run), has it
//! prepared ([`super::prepare`]: an invalid spec becomes `RunRejected`, never a crash), starts
//! the run's actors on the shared bus, routes cancels and ECS task events to the right run, and
//! when a run ends hands it to [`super::completion`].

use std::collections::HashMap;
use std::sync::Arc;

use actix::prelude::*;
use messages::outcome::{Notification, RunRejected};

use super::completion::{complete, Announced, Ended, Origin, PlanInfo};
use super::history::History;
use super::notifier::Notify;
use super::prepare::{prepare, PrepareError, Prepared};
use super::profile::Env;
use super::queue::{Going, QueueConfig, RunQueue};
use super::seen::{Seen, SeenKeys};
use super::state::{KnownRequest, RunRecord, Unfinished};
use crate::aws::ecs_launcher::{EcsLauncher, TaskStopped};
use crate::aws::store::Marker;
use crate::bus::{Bus, RunBus};
use crate::request::RunRequest;
use crate::run::launcher::LocalLauncher;
use crate::run::live::LiveTap;
use crate::run::machine::Timing;
use crate::run::supervisor::{Cancel, Outcome, RunSupervisor};
use crate::run::{start_run, JournalAt, LauncherLink, RunPlan, RunSettings};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Submitted {
    Started(String),
    /// The same request was seen before: nothing new was started.
    Duplicate(Option<String>),
    /// The spec could not run; `RunRejected` was sent with these errors.
    Rejected(Vec<String>),
}

/// A request that should come again later (storage unreachable).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct Transient(pub String);

/// A run request.
#[derive(Message)]
#[rtype(result = "Result<Submitted, Transient>")]
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

/// Runs still going or still being announced, for `serve` to wait on at shutdown.
#[derive(Message)]
#[rtype(result = "Vec<String>")]
pub struct ActiveRuns;

#[path = "registry_queue.rs"]
mod queued;
use queued::Queued;

#[derive(Message)]
#[rtype(result = "()")]
struct RunEnded {
    run_id: String,
    outcome: Option<Outcome>,
}

/// A run between its acceptance and its actors' start.
struct Starting {
    origin: Origin,
    cancel: Option<String>,
}

struct Active {
    supervisor: Addr<RunSupervisor>,
    ecs: Option<Addr<EcsLauncher>>,
    origin: Origin,
    plan: Arc<PlanInfo>,
    bus: RunBus,
}

pub struct Runs {
    env: Arc<Env>,
    bus: Bus,
    active: HashMap<String, Active>,
    /// Runs accepted whose actors are being started; a cancel for one waits here.
    starting: HashMap<String, Starting>,
    /// Runs whose result is being stored and announced.
    completing: std::collections::HashSet<String>,
    seen: SeenKeys,
    counter: u32,
    /// Every run, from acceptance to its end (a record: a failed write never stops a run).
    history: History,
    /// What the API shows of the runs in flight.
    board: super::board::Board,
    /// Runs accepted over the `[queue]` caps, waiting for room.
    queue: RunQueue<Queued>,
    /// Runs started and not yet ended (what the caps count).
    going: Going,
}

impl Runs {
    /// `known`: the requests the state folder remembers (`StateDir::scan`), so a request
    /// delivered again after a restart is still one run.
    pub fn new(
        env: Arc<Env>,
        bus: Bus,
        known: Vec<KnownRequest>,
        history: History,
        board: super::board::Board,
        queue: QueueConfig,
    ) -> Runs {
        let mut seen = SeenKeys::default();
        for (key, run) in known {
            seen.insert(key, Seen::Run(run));
        }
        Runs {
            env,
            bus,
            active: HashMap::new(),
            starting: HashMap::new(),
            completing: Default::default(),
            seen,
            counter: 0,
            history,
            board,
            queue: RunQueue::new(queue),
            going: Going::default(),
        }
    }
}

/// A run a restarted coordinator found unfinished in its state folder: resumed from its
/// journal (`run::start_run`), or — ended before the restart — announced.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ResumeRun(pub Unfinished);

impl Handler<ResumeRun> for Runs {
    type Result = ();

    fn handle(&mut self, msg: ResumeRun, ctx: &mut Context<Self>) {
        let u = msg.0;
        tracing::info!(run = %u.record.run_id, "taking back a run the previous coordinator left unfinished");
        self.seen.insert(
            u.record.idempotency_key.clone(),
            Seen::Run(u.record.run_id.clone()),
        );
        // A run whose journal holds events had started: its agents may be loading, so it goes
        // on whatever the caps. One with none was waiting in the queue, and waits again.
        let started = ["events.log", "batches.log"]
            .iter()
            .any(|f| std::fs::metadata(u.dir.join(f)).is_ok_and(|m| m.len() > 0));
        self.admit(u.record, u.dir, true, started, ctx);
    }
}

impl Actor for Runs {
    type Context = Context<Self>;
}

/// What became of a request, before the actor acts on it.
enum Decided {
    Duplicate(Marker),
    Prepared(Box<Prepared>),
    Rejected(Vec<String>),
}

impl Handler<Submit> for Runs {
    type Result = ResponseActFuture<Self, Result<Submitted, Transient>>;

    fn handle(&mut self, msg: Submit, _ctx: &mut Context<Self>) -> Self::Result {
        let req = msg.0;
        let key = req.idempotency_key.clone();
        if let Some(seen) = self.seen.get(&key) {
            let run = match seen {
                Seen::Run(r) => Some(r.clone()),
                Seen::Pending | Seen::Rejected => None,
            };
            tracing::info!(%key, ?run, origin = %req.origin, "duplicate request: no new run");
            return Box::pin(fut::ready(Ok(Submitted::Duplicate(run))));
        }
        // Reserved before any await: two copies handled at once still make one run.
        self.seen.insert(key.clone(), Seen::Pending);
        let env = self.env.clone();
        let history = self.history.clone();
        let k = key.clone();
        let work = async move {
            if let Some(aws) = &env.aws {
                let marked = aws
                    .store
                    .seen(&k)
                    .await
                    .map_err(|e| Transient(e.to_string()))?;
                if let Some(run) = marked {
                    return Ok((req, Decided::Duplicate(run)));
                }
            }
            let decided = match prepare(&env, &req).await {
                Ok(mut p) => {
                    // The spec's baseline as it is now, kept with the run: thresholds against a
                    // baseline are judged on it, and the run's report compares with it.
                    {
                        let spec = p.bundle.spec.name.clone();
                        p.baseline_summary = history
                            .call(move |s| match s.baseline(&spec)? {
                                Some(b) => Ok(s.get(&b.run_id)?.and_then(|r| r.finished).map(|f| f.summary)),
                                None => Ok(None),
                            })
                            .await
                            .unwrap_or_else(|e| {
                                tracing::warn!(error = %e, "the spec's baseline could not be read: thresholds against it will fail");
                                None
                            });
                    }
                    Decided::Prepared(Box::new(p))
                }
                Err(PrepareError::Rejected(errors)) => Decided::Rejected(errors),
                Err(PrepareError::Transient(e)) => return Err(Transient(e)),
            };
            Ok((req, decided))
        };
        Box::pin(work.into_actor(self).then(move |res, act, _ctx| {
            let out = match res {
                Err(e) => {
                    act.seen.remove(&key);
                    Err(e)
                }
                Ok((_, Decided::Duplicate(Marker::Run(run)))) => {
                    act.seen.insert(key.clone(), Seen::Run(run.clone()));
                    Ok(Submitted::Duplicate(Some(run)))
                }
                Ok((_, Decided::Duplicate(Marker::Rejected))) => {
                    act.seen.insert(key.clone(), Seen::Rejected);
                    Ok(Submitted::Duplicate(None))
                }
                Ok((req, Decided::Rejected(errors))) => {
                    tracing::warn!(origin = %req.origin, errors = ?errors, "run rejected");
                    act.seen.insert(key.clone(), Seen::Rejected);
                    act.board.rejected();
                    act.env
                        .notifier
                        .do_send(Notify(Notification::RunRejected(RunRejected {
                            source: req.origin.clone(),
                            correlation_id: req.correlation_id.clone(),
                            errors: errors.clone(),
                        })));
                    Ok(Submitted::Rejected(errors))
                }
                Ok((req, Decided::Prepared(p))) => {
                    return act.accept_and_launch(key, &req, *p);
                }
            };
            if out.is_err() {
                // Nothing started: the request must be able to come again.
                act.seen.remove(&key);
            }
            let rejected = matches!(out, Ok(Submitted::Rejected(_)));
            let env = act.env.clone();
            Box::pin(
                async move {
                    if let (Some(aws), true) = (&env.aws, rejected) {
                        if let Err(e) = aws.store.mark(&key, &Marker::Rejected).await {
                            tracing::warn!(error = %e, "could not persist the idempotency marker");
                        }
                    }
                    out
                }
                .into_actor(act),
            ) as ResponseActFuture<Self, Result<Submitted, Transient>>
        }))
    }
}

impl Runs {
    /// Makes the prepared request a run: kept durably in the state folder, then (AWS) marked
    /// under its idempotency key, and only then launched and acknowledged — so a crash at any
    /// step either leaves nothing (the request comes again) or a run a restart resumes.
    fn accept_and_launch(
        &mut self,
        key: String,
        req: &RunRequest,
        p: Prepared,
    ) -> ResponseActFuture<Self, Result<Submitted, Transient>> {
        self.counter = self.counter.wrapping_add(1);
        let run_id = crate::clock::run_id(&p.bundle.spec.name, Some(self.counter));
        let dir = self.env.results_dir.join(&run_id);
        let record = RunRecord {
            run_id: run_id.clone(),
            idempotency_key: key.clone(),
            source: req.origin.clone(),
            correlation_id: req.correlation_id.clone(),
            spec: p.bundle.spec,
            spec_text: p.bundle.text,
            data: p.bundle.data,
            agents: p.agents,
            dir: dir.clone(),
            accepted_at_ms: crate::clock::unix_ms(),
            late_window_s: self.env.late_window_s,
            policy: self.env.policy.clone(),
            baseline_summary: p.baseline_summary,
        };
        if self.queue.is_full() && self.queue.must_wait(&record.spec.name, &self.going) {
            self.seen.remove(&key);
            return Box::pin(fut::ready(Err(Transient(format!(
                "the run queue is full ({} runs waiting)",
                self.queue.len()
            )))));
        }
        let accepted = std::fs::create_dir_all(&dir)
            .map_err(|e| format!("creating {}: {e}", dir.display()))
            .and_then(|()| self.env.state.accept(&record).map_err(|e| e.to_string()));
        let journal = match accepted {
            Ok(j) => j,
            Err(e) => {
                self.seen.remove(&key);
                return Box::pin(fut::ready(Err(Transient(e))));
            }
        };
        let env = self.env.clone();
        let k = key.clone();
        let rid = run_id.clone();
        Box::pin(
            async move {
                if let Some(aws) = &env.aws {
                    aws.store
                        .mark(&k, &Marker::Run(rid))
                        .await
                        .map_err(|e| Transient(format!("the idempotency marker: {e}")))?;
                }
                Ok(())
            }
            .into_actor(self)
            .map(move |marked, act, ctx| match marked {
                Ok(()) => {
                    act.seen.insert(key, Seen::Run(run_id.clone()));
                    act.admit(record, journal, false, false, ctx);
                    Ok(Submitted::Started(run_id))
                }
                Err(e) => {
                    act.env.state.forget(&run_id);
                    act.seen.remove(&key);
                    Err(e)
                }
            }),
        )
    }

    /// A run enters the history and the board once, when accepted (or taken back).
    fn enter(&mut self, record: &RunRecord, resumed: bool) -> LiveTap {
        // Whatever the intake; a resumed run's row is already there and stays as it is.
        self.history.accepted(crate::store::Accepted {
            run_id: record.run_id.clone(),
            spec: record.spec.name.clone(),
            source: record.source.clone(),
            correlation_id: record.correlation_id.clone(),
            accepted_at_ms: record.accepted_at_ms,
            agents: record.agents,
            spec_text: record.spec_text.clone(),
        });
        self.board
            .open(&record.run_id, &record.spec.name, record.agents, resumed)
    }

    /// Starts the actors of an accepted run, journaling into `journal` (resuming from it,
    /// when it holds a previous life's events).
    fn launch(
        &mut self,
        record: RunRecord,
        journal: std::path::PathBuf,
        tap: LiveTap,
        ctx: &mut Context<Self>,
    ) {
        let run_id = record.run_id.clone();
        self.going.insert(&run_id, &record.spec.name);
        let (late_window_s, policy) = (record.late_window_s, record.policy.clone());
        let journal = JournalAt {
            dir: journal,
            accepted_at_ms: record.accepted_at_ms,
        };
        tracing::info!(run = %run_id, origin = %record.source, agents = record.agents, "starting a run");
        println!(
            "herd serve: run {run_id} starting — spec {}, {} agent(s), from {}",
            record.spec.name, record.agents, record.source
        );
        let req = RunRequest {
            idempotency_key: record.idempotency_key.clone(),
            spec: crate::request::SpecSource::Inline(String::new()),
            overrides: Default::default(),
            correlation_id: record.correlation_id.clone(),
            origin: record.source.clone(),
        };
        let bundle = crate::bundle::SpecBundle {
            spec: record.spec,
            text: record.spec_text,
            data: record.data,
        };
        let baseline = record.baseline_summary.as_deref().and_then(|t| {
            crate::run::baseline::Baseline::from_summary(t)
                .map_err(|e| tracing::warn!(run = %run_id, error = %e, "the kept baseline cannot be read"))
                .ok()
        });
        // Its series, for the report's overlays, from its folder when this server has it.
        // (A run id is one plain path component; anything else is not looked for.)
        let baseline = baseline.map(|b| {
            let id = b.run_id();
            let plain = !id.starts_with('.')
                && id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
            let rows = if plain {
                crate::run::baseline::read_series(&self.env.results_dir.join(id))
            } else {
                Vec::new()
            };
            b.with_series(rows)
        });
        let plan =
            RunPlan::new(run_id.clone(), bundle, record.agents, record.dir).with_baseline(baseline);
        let info = Arc::new(PlanInfo {
            run_id: run_id.clone(),
            spec: plan.spec.clone(),
            regions: plan.regions.clone(),
            dir: plan.dir.clone(),
        });
        let origin = Origin {
            source: req.origin.clone(),
            correlation_id: req.correlation_id.clone(),
        };
        let env = self.env.clone();
        let settings = RunSettings {
            late_window_s,
            quiet: true,
            agent_broker: env.agent_broker.clone(),
            agent_tls: env.agent_tls.clone(),
            broker_login: env.broker_login,
            timing: Timing::default(),
            policy,
            journal: Some(journal),
            live_tap: Some(tap),
        };
        self.starting.insert(
            run_id.clone(),
            Starting {
                origin: origin.clone(),
                cancel: None,
            },
        );
        let bus = self.bus.clone();
        let me = ctx.address();
        let (rid, regions, dir) = (run_id.clone(), info.regions.clone(), info.dir.clone());
        ctx.spawn(
            async move {
                let mut ecs = None;
                let started = start_run(plan, settings, &bus, |sup| match &env.aws {
                    Some(aws) => {
                        let l = EcsLauncher::new(
                            rid,
                            regions,
                            aws.regions.clone(),
                            aws.store.clone(),
                            aws.iot.clone(),
                            aws.home_region.clone(),
                            aws.agent_ca_pem.clone(),
                            sup,
                        )
                        .start();
                        ecs = Some(l.clone());
                        LauncherLink {
                            launch: l.clone().recipient(),
                            stop: l.recipient(),
                        }
                    }
                    None => {
                        let l = LocalLauncher::new(env.program.clone(), sup, dir);
                        let l = if env.agents_outlive { l.outliving() } else { l }.start();
                        LauncherLink {
                            launch: l.clone().recipient(),
                            stop: l.recipient(),
                        }
                    }
                })
                .await;
                (started, ecs)
            }
            .into_actor(self)
            .map(move |(started, ecs), act, ctx| {
                let cancel = act.starting.remove(&info.run_id).and_then(|s| s.cancel);
                match started {
                Ok(h) => {
                    if let Some(reason) = cancel {
                        h.supervisor.do_send(Cancel { reason });
                    }
                    act.active.insert(
                        h.run_id.clone(),
                        Active {
                            supervisor: h.supervisor,
                            ecs,
                            origin,
                            plan: info,
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
                    tracing::error!(run = %info.run_id, error = %e, "the run could not attach to its broker");
                    let run_id = info.run_id.clone();
                    act.going.remove(&run_id);
                    act.start_waiting(ctx);
                    act.completing.insert(run_id.clone());
                    ctx.spawn(
                        complete(
                            act.env.clone(),
                            Ended {
                                plan: info,
                                origin,
                                outcome: None,
                                why_no_outcome: format!(
                                    "the run could not start: {e}"
                                ),
                                cancelled: false,
                            },
                        )
                        .into_actor(act)
                        .map(move |announced, act, _| {
                            act.completed(&run_id, announced);
                        }),
                    );
                }
                }
            }),
        );
    }
}

impl Handler<CancelRuns> for Runs {
    type Result = usize;

    fn handle(&mut self, msg: CancelRuns, ctx: &mut Context<Self>) -> usize {
        let mut n = 0;
        for (id, s) in &mut self.starting {
            let hit = msg.run_id.as_deref() == Some(id.as_str())
                || (msg.correlation_id.is_some() && msg.correlation_id == s.origin.correlation_id);
            if hit {
                tracing::info!(run = %id, reason = %msg.reason, "cancel requested while starting");
                s.cancel = Some(msg.reason.clone());
                n += 1;
            }
        }
        for (id, a) in &self.active {
            let hit = msg.run_id.as_deref() == Some(id.as_str())
                || (msg.correlation_id.is_some() && msg.correlation_id == a.origin.correlation_id);
            if hit {
                tracing::info!(run = %id, reason = %msg.reason, "cancel requested");
                a.supervisor.do_send(Cancel {
                    reason: msg.reason.clone(),
                });
                n += 1;
            }
        }
        n += self.cancel_queued(&msg, ctx);
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
        MessageResult(
            self.active
                .keys()
                .chain(self.starting.keys())
                .chain(self.completing.iter())
                .cloned()
                .chain(self.queue.ids().map(str::to_string))
                .collect(),
        )
    }
}

impl Handler<RunEnded> for Runs {
    type Result = ();

    fn handle(&mut self, msg: RunEnded, ctx: &mut Context<Self>) {
        let Some(a) = self.active.remove(&msg.run_id) else {
            return;
        };
        // The run's result is in: its agent topics are no longer this coordinator's business.
        a.bus.detach();
        self.going.remove(&msg.run_id);
        self.start_waiting(ctx);
        self.completing.insert(msg.run_id.clone());
        let run_id = msg.run_id;
        ctx.spawn(
            complete(
                self.env.clone(),
                Ended {
                    plan: a.plan,
                    origin: a.origin,
                    outcome: msg.outcome,
                    why_no_outcome: "the run supervisor ended without a result".into(),
                    cancelled: false,
                },
            )
            .into_actor(self)
            .map(move |announced, act, _| {
                act.completed(&run_id, announced);
            }),
        );
    }
}

impl Runs {
    /// `RunCompleted` left: the history keeps what it said, and the state folder marks the run
    /// over, so a restart does not announce it again.
    fn completed(&mut self, run_id: &str, a: Announced) {
        self.completing.remove(run_id);
        // One line per end on stdout, for whoever watches the service (logs have the detail).
        let n = &a.note;
        println!(
            "herd serve: run {run_id} {} — {} ({} requests, {} errors, p95 {:.2}ms{}){}",
            n.state,
            match n.verdict {
                messages::outcome::Verdict::Passed => "passed",
                messages::outcome::Verdict::Failed => "failed",
            },
            n.requests,
            n.errors,
            n.p95_ms,
            if n.agents_lost > 0 {
                format!(", {} agent(s) lost", n.agents_lost)
            } else {
                String::new()
            },
            n.reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        );
        let result = serde_json::to_string(&a.note).unwrap_or_default();
        // The history's write is queued first: a client that reads the run after the stream
        // gave it the result finds it ended.
        self.history.ended(&a.note, a.ended_at_ms, a.summary);
        self.board.close(run_id, a.note.state, result.into());
        if let Err(e) = self.env.state.mark_notified(run_id) {
            tracing::error!(run = %run_id, error = %e, "could not mark the run announced: a restart would announce it again");
        }
    }
}
