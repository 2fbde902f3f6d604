//! The coordinated agent: its MQTT link to the coordinator and its side of a run.
//!
//! Connect → subscribe to the run's control topic → heartbeat (the first one says "here") →
//! receive `Assign` → measure this clock's offset to the coordinator's from it → compile →
//! `Ready` (with the offset) → wait for `Start{at}` → run the share at `at` by the corrected
//! clock, publishing every per-second batch (QoS 1, one sequence number per message) →
//! `Finished`. A `Stop` ends the load gracefully at any point. From the Assign on, every time
//! this agent sends is on the coordinator's clock ([`crate::clock`]).
//!
//! The agent also gives up by itself ([`crate::orphan`]): when it hears no `Alive` from its
//! coordinator for `orphan_after` (before the start it leaves, during the load it stops as on a
//! `Stop`), and at the run's planned end plus a grace even while it does.
//!
//! If the broker goes away the load goes on: rumqttc keeps unacknowledged publishes and
//! resends them after reconnecting, and its bounded request queue holds what is produced
//! meanwhile. A batch that finds the queue full is dropped and counted in `Finished`. An outage
//! longer than `orphan_after` cannot be told from a lost coordinator: the agent stops.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use messages::clock::{ClockProbe, ClockSync};
use messages::topics;
use messages::wire::{self, Body, Envelope, Failed, Finished, Heartbeat, Ready, WIRE_VERSION};
use tokio::sync::{mpsc, watch};
use transport::keys::{self, AgentKeys, Control, PublicKey};
use transport::{BrokerUrl, QoS, Session, SessionConfig, SessionError, TlsFiles};

use crate::clock::{Clock, WallClock};
use crate::engine::{run_share, NetConfig};
use crate::orphan::{ceiling_after_start_ms, GiveUp, Watchdog, STOP_SLACK};
use crate::replay::Unconfirmed;

#[derive(Debug, Clone)]
pub struct LinkConfig {
    pub broker: BrokerUrl,
    pub tls: TlsFiles,
    pub run_id: String,
    pub agent: u32,
    /// Outgoing messages held while the broker is unreachable (≈ seconds of batches).
    pub buffer: usize,
    /// How long to wait for the broker, then for an assignment, then for Start.
    pub wait: Duration,
    /// Stop by itself after hearing no `Alive` from the coordinator this long
    /// (`herd agent --orphan-after`, default `wire::DEFAULT_ORPHAN_AFTER_S`).
    pub orphan_after: Duration,
    /// What the coordinator's launcher handed this agent alone.
    pub credentials: Credentials,
    /// This machine's clock (with the test-only skew, if any); corrected at the Assign.
    pub clock: WallClock,
}

/// An agent's keys: its own (to authenticate what it sends and read its Assign), the
/// coordinator's public key (to check Start and Stop), and whether the broker wants a login.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub keys: AgentKeys,
    pub coordinator: PublicKey,
    pub broker_login: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error("no {what} from the coordinator within {wait:?}")]
    Timeout { what: &'static str, wait: Duration },
}

#[derive(Debug, PartialEq, Eq)]
pub enum LinkOutcome {
    Finished,
    Stopped,
    Failed(String),
    /// It stopped by itself (no coordinator, or past the run's planned end): gracefully, with
    /// a `Finished`, if the load had started.
    GaveUp(GiveUp),
}

/// How long a finished agent waits for its coordinator to confirm every batch: long enough for
/// a coordinator restart (`herd serve` killed and started again).
const CONFIRM_WAIT: Duration = Duration::from_secs(30);
/// How long a finished agent waits for the broker to acknowledge what it queued.
const FLUSH_WAIT: Duration = Duration::from_secs(30);
/// The same for an agent that gave up: its coordinator (and perhaps the broker) may be gone.
const GAVE_UP_FLUSH_WAIT: Duration = Duration::from_secs(10);

/// One sender's stream of envelopes: `(sender, seq)` identifies a message.
struct Out {
    session: Arc<Session>,
    keys: AgentKeys,
    run: String,
    sender: String,
    agent: u32,
    seq: u64,
    /// Shared with the link: corrected once the offset is measured.
    clock: WallClock,
}

/// Where status messages (Ready, Finished, Failed) number from: batches number 1, 2, 3… with
/// no gap (what the coordinator confirms is a gapless prefix), heartbeats from `u64::MAX / 2`;
/// no two messages of one sender share a seq.
const STATUS_SEQ_BASE: u64 = 1 << 62;

impl Out {
    /// The sealed frame of `body` as message `seq`.
    fn frame(&self, seq: u64, body: Body) -> Option<Vec<u8>> {
        let env = Envelope {
            version: WIRE_VERSION,
            run_id: self.run.clone(),
            sender: self.sender.clone(),
            seq,
            sent_at_ms: self.clock.now_ms(),
            body,
        };
        match wire::encode(&env) {
            Ok(bytes) => Some(keys::seal_from_agent(&self.keys, &bytes)),
            Err(e) => {
                tracing::error!(error = %e, "cannot encode a message");
                None
            }
        }
    }

    /// Queues a message; false when the outgoing queue is full (the caller counts it).
    fn send(&mut self, topic: String, body: Body, qos: QoS) -> bool {
        self.seq += 1;
        match self.frame(self.seq, body) {
            Some(frame) => self.session.publish(topic, frame, qos, false).is_ok(),
            None => false,
        }
    }

    fn status(&mut self, body: Body) -> bool {
        let t = topics::status(&self.run, self.agent);
        self.send(t, body, QoS::AtLeastOnce)
    }

    /// The agent's last word (Finished, Failed), kept to be said again to a new coordinator.
    fn last_word(&mut self, body: Body, kept: &mut Unconfirmed) {
        self.seq += 1;
        let t = topics::status(&self.run, self.agent);
        if let Some(frame) = self.frame(self.seq, body) {
            kept.last_word(t.clone(), frame.clone());
            let _ = self.session.publish(t, frame, QoS::AtLeastOnce, false);
        }
    }

    /// Batch `seq`, kept until confirmed.
    fn batch(&mut self, topic: &str, seq: u64, body: Body, kept: &mut Unconfirmed) {
        let Some(frame) = self.frame(seq, body) else {
            return;
        };
        kept.keep(
            seq,
            topic.to_string(),
            frame.clone(),
            std::time::Instant::now(),
        );
        if self
            .session
            .publish(topic.to_string(), frame, QoS::AtLeastOnce, false)
            .is_err()
        {
            tracing::warn!(
                seq,
                "outgoing queue full: the batch is kept and sent again later"
            );
        }
    }
}

pub async fn run(cfg: LinkConfig) -> Result<LinkOutcome, LinkError> {
    let (ctl_tx, mut ctl_rx) = mpsc::unbounded_channel::<Envelope>();
    let client_id = keys::agent_client_id(&cfg.run_id, cfg.agent);
    let creds = cfg.credentials.clone();
    let me = cfg.agent;
    let session = Arc::new(Session::start(
        SessionConfig {
            url: cfg.broker.clone(),
            tls: cfg.tls.clone(),
            login: creds
                .broker_login
                .then(|| (client_id.clone(), creds.keys.mqtt_password())),
            client_id,
            capacity: cfg.buffer,
            name: format!("agent {}", cfg.agent),
            // Control messages sent while this agent reconnects wait at the broker.
            persistent: true,
            keep_alive: transport::options::KEEP_ALIVE,
        },
        move |topic: &str, payload: &[u8]| {
            let plain = match keys::open_control(payload, me, &creds.keys, &creds.coordinator) {
                Ok(Control::Broadcast(p) | Control::Mine(p)) => p,
                Ok(Control::Other) => return,
                Err(e) => {
                    // Not from this run's coordinator (or not for us): never acted on.
                    tracing::warn!(%topic, error = %e, "ignoring a control message");
                    return;
                }
            };
            match wire::decode(&plain) {
                Ok(env) => {
                    let _ = ctl_tx.send(env);
                }
                Err(e) => {
                    tracing::warn!(%topic, error = %e, "ignoring a malformed control message")
                }
            }
        },
    )?);
    let outcome = async {
        session
            .subscribe(&topics::control(&cfg.run_id), QoS::AtLeastOnce, cfg.wait)
            .await?;
        // Its Assign comes on a topic of its own (before the first heartbeat asks for it).
        session
            .subscribe(
                &topics::control_for(&cfg.run_id, cfg.agent),
                QoS::AtLeastOnce,
                cfg.wait,
            )
            .await?;
        // Heartbeats: the first announces this agent; later ones prove it alive. They count
        // from u64::MAX / 2 so they never share a seq with the status and batch stream.
        let vus = Arc::new(AtomicU64::new(0));
        let last_batch = Arc::new(AtomicU64::new(0));
        let hb = {
            let mut hb_out = Out {
                session: session.clone(),
                keys: cfg.credentials.keys.clone(),
                run: cfg.run_id.clone(),
                sender: format!("agent-{}", cfg.agent),
                agent: cfg.agent,
                seq: u64::MAX / 2,
                clock: cfg.clock.clone(),
            };
            let (vus, last_batch) = (vus.clone(), last_batch.clone());
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                // The last batch seq a tick saw: a batch sent since then has told the
                // coordinator this agent is alive (it counts batches as heartbeats), so the
                // heartbeat is left out — half the messages a broker delivers to the
                // coordinator while a fleet loads (IoT Core: 100 per connection per second).
                let mut seen = 0;
                loop {
                    tick.tick().await;
                    let sent = last_batch.load(Ordering::Relaxed);
                    if sent != seen {
                        seen = sent;
                        continue;
                    }
                    let body = Body::Heartbeat(Heartbeat {
                        agent: hb_out.agent,
                        vus: vus.load(Ordering::Relaxed),
                        last_batch_seq: sent,
                    });
                    let t = topics::status(&hb_out.run, hb_out.agent);
                    hb_out.send(t, body, QoS::AtMostOnce);
                }
            })
        };
        let mut out = Out {
            session: session.clone(),
            keys: cfg.credentials.keys.clone(),
            run: cfg.run_id.clone(),
            sender: format!("agent-{}", cfg.agent),
            agent: cfg.agent,
            seq: STATUS_SEQ_BASE,
            clock: cfg.clock.clone(),
        };
        let outcome = drive(&cfg, &mut out, &mut ctl_rx, vus, last_batch).await;
        hb.abort();
        outcome
    }
    .await;
    // Leave only once the coordinator's broker has everything we queued (or we gave up).
    let flush_wait = match outcome {
        Ok(LinkOutcome::GaveUp(_)) => GAVE_UP_FLUSH_WAIT,
        _ => FLUSH_WAIT,
    };
    if !session.flush(flush_wait).await {
        tracing::warn!("some messages were not acknowledged within {flush_wait:?}");
    }
    session.close(Duration::from_secs(2)).await;
    outcome
}

async fn drive(
    cfg: &LinkConfig,
    out: &mut Out,
    ctl: &mut mpsc::UnboundedReceiver<Envelope>,
    vus: Arc<AtomicU64>,
    last_batch: Arc<AtomicU64>,
) -> Result<LinkOutcome, LinkError> {
    let me = cfg.agent;
    // Counted from the connection: a coordinator says Alive from the launch on.
    let mut dog = Watchdog::new(&cfg.run_id, cfg.orphan_after, std::time::Instant::now());
    // 1. The assignment, and when it arrived by this agent's own clock (A2).
    let (assign, received_ms) =
        match await_control(ctl, cfg.wait, "assignment", &mut dog, |b| match b {
            Body::Assign(a) if a.agent == me => Some((a, cfg.clock.local_ms())),
            _ => None,
        })
        .await?
        {
            Awaited::Got(a) => a,
            Awaited::Stopped => return Ok(LinkOutcome::Stopped),
            Awaited::GaveUp(why) => return Ok(gave_up_before_start(why)),
        };
    let clock_sync = sync_clock(&cfg.clock, assign.clock.as_ref(), received_ms);
    let data: BTreeMap<String, Vec<u8>> =
        assign.data.into_iter().map(|f| (f.name, f.bytes)).collect();
    tracing::info!(policy = %assign.policy, "target policy");
    let net = NetConfig {
        clock: cfg.clock.clone(),
        ..NetConfig::with_policy(assign.policy)
    };
    let checked = if assign.spec.runner.is_some() {
        crate::runners::check(&assign.spec, &data).map_err(|e| e.to_string())
    } else {
        crate::scenario::compile(
            &assign.spec,
            &data,
            &cfg.run_id,
            (assign.share.index, assign.share.count),
            &net.policy,
        )
        .map_err(|e| e.to_string())
        .and_then(|_| {
            // Refused before Ready, so the run fails before it starts rather than at load.
            crate::limits::check_descriptors(crate::limits::peak_vus(&assign.share.executor))
                .map_err(|e| e.to_string())
        })
    };
    if let Err(e) = checked {
        let reason = format!("agent {me}: {e}");
        out.status(Body::Failed(Failed {
            agent: me,
            reason: reason.clone(),
        }));
        return Ok(LinkOutcome::Failed(reason));
    }
    out.status(Body::Ready(Ready {
        agent: me,
        host: hostname(),
        herd_version: env!("CARGO_PKG_VERSION").to_string(),
        clock: clock_sync,
    }));
    // 2. The start instant.
    let at_ms = match await_control(ctl, cfg.wait, "Start", &mut dog, |b| match b {
        Body::Start(s) => Some(s.at_ms),
        _ => None,
    })
    .await?
    {
        Awaited::Got(at) => at,
        Awaited::Stopped => return Ok(LinkOutcome::Stopped),
        Awaited::GaveUp(why) => return Ok(gave_up_before_start(why)),
    };
    let clock = Clock::new(&cfg.clock);
    let graceful_stop = Duration::from_millis(assign.spec.graceful_stop_ms());
    // The run's planned end plus the grace, on the same clock as the start (every scenario of
    // a script: the share's executor has the first one's length).
    let planned = assign
        .share
        .executor
        .planned_ms()
        .max(assign.spec.planned_ms());
    let end_ms = at_ms.saturating_add(ceiling_after_start_ms(
        planned,
        assign.spec.graceful_stop_ms(),
    ));
    dog.ceiling_at(clock.instant_of(end_ms));
    tokio::time::sleep_until(tokio::time::Instant::from_std(clock.instant_of(at_ms))).await;
    let started_at_ms = cfg.clock.now_ms();
    // 3. The load, with batches going out as they come.
    let (stop_tx, stop_rx) = watch::channel(false);
    let (batch_tx, mut batch_rx) = mpsc::unbounded_channel();
    let engine = run_share(
        &assign.spec,
        &data,
        &assign.share,
        &cfg.run_id,
        &net,
        stop_rx,
        batch_tx,
    );
    tokio::pin!(engine);
    // Batches number 1, 2, 3…: `sent` is also the last batch's seq.
    let mut sent = 0u64;
    let mut kept = Unconfirmed::default();
    let mut engine_result = None;
    // Once stopping (Stop, SIGTERM, or by itself): when to leave without the engine.
    let mut leave_at: Option<tokio::time::Instant> = None;
    // Why it stopped by itself, if it did.
    let mut gave_up: Option<GiveUp> = None;
    let mut abandoned = false;
    let metrics_topic = topics::metrics(&cfg.run_id, me);
    let mut pace =
        crate::pace::Pace::new(crate::pace::MAX_METRICS_PER_S, std::time::Instant::now());
    // SIGTERM (ECS StopTask, a scaled-down fleet) ends the load like a Stop: the VUs stop
    // gracefully and every batch still goes out before Finished.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    loop {
        let stopping = leave_at.is_some();
        tokio::select! {
            Some(()) = async { match term.as_mut() { Some(t) => t.recv().await, None => None } }, if !stopping => {
                tracing::info!("SIGTERM: stopping gracefully");
                leave_at = Some(stop(&stop_tx, graceful_stop));
            }
            r = &mut engine, if engine_result.is_none() => engine_result = Some(r),
            b = batch_rx.recv() => match b {
                Some(b) => {
                    vus.store(b.vus, Ordering::Relaxed);
                    // Within what one IoT Core message may carry, split between labels, and
                    // within what one connection may publish in a second.
                    for part in messages::wire::split_batch(b, messages::wire::MAX_BATCH_PAYLOAD_BYTES) {
                        let wait = pace.next(std::time::Instant::now());
                        if !wait.is_zero() {
                            tokio::time::sleep(wait).await;
                        }
                        sent += 1;
                        out.batch(&metrics_topic, sent, Body::Metrics(part), &mut kept);
                    }
                    last_batch.store(sent, Ordering::Relaxed);
                }
                None => break,
            },
            env = ctl.recv() => {
                if let Some(env) = env {
                    if heard_stop(env, &mut dog, &mut kept, out) && !stopping {
                        leave_at = Some(stop(&stop_tx, graceful_stop));
                    }
                }
            }
            // The watchdog, until the load is stopping for any reason (after a Stop the
            // coordinator may end, and its Alives with it).
            _ = tokio::time::sleep_until(tokio::time::Instant::from_std(dog.deadline())), if !stopping => {
                // What already arrived counts first: a deadline must not beat a waiting message.
                while let Ok(env) = ctl.try_recv() {
                    if heard_stop(env, &mut dog, &mut kept, out) && leave_at.is_none() {
                        leave_at = Some(stop(&stop_tx, graceful_stop));
                    }
                }
                if leave_at.is_none() {
                    if let Some(why) = dog.check(std::time::Instant::now()) {
                        tracing::warn!(reason = %why, "stopping gracefully by itself");
                        leave_at = Some(stop(&stop_tx, graceful_stop));
                        gave_up = Some(why);
                    }
                }
            }
            _ = async { if let Some(at) = leave_at { tokio::time::sleep_until(at).await } }, if stopping && engine_result.is_none() => {
                tracing::error!(
                    "the load did not end within the graceful stop + {STOP_SLACK:?}: leaving \
                     without it"
                );
                abandoned = true;
                break;
            }
        }
    }
    // The batch channel can close before the engine's result was polled: wait for it, or an
    // engine error would pass for a normal finish — unless it was left behind.
    let engine_result = match engine_result {
        Some(r) => Some(r),
        None if abandoned => None,
        None => Some((&mut engine).await),
    };
    // Left behind: its checks are not known (the batches still carry their totals).
    let (checks, http_versions) = match &engine_result {
        Some(Ok(report)) => (report.checks.clone(), report.http_versions.clone()),
        _ => (Vec::new(), Vec::new()),
    };
    if let Some(Err(e)) = engine_result {
        let reason = format!("agent {me}: {e}");
        out.last_word(
            Body::Failed(Failed {
                agent: me,
                reason: reason.clone(),
            }),
            &mut kept,
        );
        // Failed is the outcome whatever the wait comes to.
        let _ = await_confirmation(ctl, &mut dog, &mut kept, out).await;
        return Ok(LinkOutcome::Failed(reason));
    }
    vus.store(0, Ordering::Relaxed);
    out.last_word(
        Body::Finished(Finished {
            agent: me,
            started_at_ms,
            last_batch_seq: sent,
            batches_sent: sent,
            batches_dropped: kept.evicted(),
            error_samples: crate::http::error_samples(),
            checks,
            http_versions,
        }),
        &mut kept,
    );
    // An agent that gave up has no coordinator worth waiting for (silent, or the run is past
    // its end): what it kept goes with it. One that falls silent while it waits gives up too.
    let gave_up = match gave_up {
        Some(why) => Some(why),
        None => await_confirmation(ctl, &mut dog, &mut kept, out).await,
    };
    Ok(match (gave_up, leave_at) {
        (Some(why), _) => LinkOutcome::GaveUp(why),
        (None, Some(_)) => LinkOutcome::Stopped,
        (None, None) => LinkOutcome::Finished,
    })
}

/// Measures this agent's clock offset from the Assign's probe (`received_ms`: A2, by the same
/// uncorrected clock that stamped the heartbeat it answers — no offset is set before the one
/// Assign an agent acts on) and corrects `clock` from now on. The coordinator fills every
/// Assign, re-sent ones too, from the latest heartbeat it has; one that arrives after the
/// first is ignored, as before.
fn sync_clock(
    clock: &WallClock,
    probe: Option<&ClockProbe>,
    received_ms: u64,
) -> Option<ClockSync> {
    let Some(sync) = probe.and_then(|p| p.measure(received_ms)) else {
        tracing::warn!(
            ?probe,
            received_ms,
            "no clock measurement from the Assign: this agent's times stay on its own clock"
        );
        return None;
    };
    clock.set_offset_ms(sync.offset_ms);
    tracing::info!(
        offset_ms = sync.offset_ms,
        round_trip_ms = sync.round_trip_ms,
        "clock offset to the coordinator measured: every time sent from now on is corrected"
    );
    Some(sync)
}

/// Ends the load gracefully; the engine has the graceful stop + [`STOP_SLACK`] to end, then the
/// agent leaves without it (a hung tool cannot keep it alive). Returns that instant.
fn stop(stop_tx: &watch::Sender<bool>, graceful_stop: Duration) -> tokio::time::Instant {
    let _ = stop_tx.send(true);
    tokio::time::Instant::now() + graceful_stop + STOP_SLACK
}

/// Counts a control message for the watchdog, and an `Alive` for what is kept (forgotten once
/// confirmed, sent again to a new coordinator or when stale); true when it is a Stop.
fn heard_stop(env: Envelope, dog: &mut Watchdog, kept: &mut Unconfirmed, out: &Out) -> bool {
    let now = std::time::Instant::now();
    let counted = dog.heard(&env, now);
    match env.body {
        Body::Alive(alive) if counted => {
            let confirmed = alive.confirmed.get(out.agent as usize).copied();
            let again = kept.alive(alive.epoch, confirmed, now);
            if !again.is_empty() {
                tracing::info!(
                    messages = again.len(),
                    epoch = alive.epoch,
                    "sending unconfirmed batches again"
                );
            }
            for (seq, (topic, frame)) in again {
                if out
                    .session
                    .publish(topic, frame, QoS::AtLeastOnce, false)
                    .is_ok()
                {
                    kept.resent(seq, now);
                }
            }
            false
        }
        Body::Stop(s) => {
            tracing::info!(reason = %s.reason, "stop requested");
            true
        }
        _ => false,
    }
}

/// After its last word, an agent stays until its coordinator confirms every batch (an `Alive`
/// at the latest at the run's end), sending again what a restarted coordinator lacks; at most
/// [`CONFIRM_WAIT`], so a coordinator that is gone for good does not keep it. Returns why the
/// watchdog ended the wait, if it did (then the agent leaves as one that gave up).
async fn await_confirmation(
    ctl: &mut mpsc::UnboundedReceiver<Envelope>,
    dog: &mut Watchdog,
    kept: &mut Unconfirmed,
    out: &Out,
) -> Option<GiveUp> {
    let deadline = tokio::time::Instant::now() + CONFIRM_WAIT;
    while !kept.is_empty() {
        // The watchdog still holds: a coordinator silent for orphan-after is not waited for.
        let until = deadline.min(tokio::time::Instant::from_std(dog.deadline()));
        match tokio::time::timeout_at(until, ctl.recv()).await {
            Ok(Some(env)) => {
                heard_stop(env, dog, kept, out);
            }
            Ok(None) => return None,
            Err(_) => {
                let why = dog.check(std::time::Instant::now());
                if why.is_some() || tokio::time::Instant::now() >= deadline {
                    tracing::warn!(
                        unconfirmed = kept.len(),
                        reason = ?why,
                        "leaving with batches the coordinator did not confirm (waited at most \
                         {CONFIRM_WAIT:?})"
                    );
                    return why;
                }
            }
        }
    }
    None
}

fn gave_up_before_start(why: GiveUp) -> LinkOutcome {
    tracing::warn!(reason = %why, "leaving before the start");
    LinkOutcome::GaveUp(why)
}

/// What waiting for a control message came to.
enum Awaited<T> {
    Got(T),
    /// A Stop came first.
    Stopped,
    /// The watchdog said to leave first.
    GaveUp(GiveUp),
}

/// Waits for the control message `pick` accepts, counting each for `dog` and ignoring the rest.
async fn await_control<T>(
    ctl: &mut mpsc::UnboundedReceiver<Envelope>,
    wait: Duration,
    what: &'static str,
    dog: &mut Watchdog,
    mut pick: impl FnMut(Body) -> Option<T>,
) -> Result<Awaited<T>, LinkError> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let until = deadline.min(tokio::time::Instant::from_std(dog.deadline()));
        match tokio::time::timeout_at(until, ctl.recv()).await {
            Ok(Some(env)) => {
                dog.heard(&env, std::time::Instant::now());
                if let Body::Stop(_) = env.body {
                    return Ok(Awaited::Stopped);
                }
                if let Some(v) = pick(env.body) {
                    return Ok(Awaited::Got(v));
                }
            }
            Ok(None) => return Err(LinkError::Timeout { what, wait }),
            Err(_) => {
                if let Some(why) = dog.check(std::time::Instant::now()) {
                    return Ok(Awaited::GaveUp(why));
                }
                if tokio::time::Instant::now() >= deadline {
                    return Err(LinkError::Timeout { what, wait });
                }
            }
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".to_string())
}
