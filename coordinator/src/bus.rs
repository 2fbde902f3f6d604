//! The coordinator's MQTT link: one [`Session`] per process, shared by every run it holds.
//! A run [`Bus::attach`]es with where its agents' messages go — status to its supervisor,
//! metric batches to its aggregator — and gets a [`RunBus`] to publish with; when it ends it
//! detaches (unsubscribes). So a long-running `herd serve` keeps one connection however many
//! runs it has finished, and that connection renews every active run's subscription when the
//! broker comes back.
//!
//! Every message is checked against the run's keys (`transport::keys`): a message on agent
//! *i*'s topics is taken only if agent *i*'s key made it, and only if it speaks about agent
//! *i* (sender, body). What fails is dropped, counted per agent and logged once per agent.
//! Control messages go out sealed for one agent (Assign) or signed (Start, Stop, Alive).
//!
//! Batches reach the aggregator through a counted, bounded hand-over ([`BatchQueue`], in
//! `bus_queue.rs`): the run's deadlines count what is queued, and a full queue refuses.
//!
//! **Intake connections.** A broker may cap what it delivers to one connection — AWS IoT Core:
//! 100 publishes/s, not adjustable — while a fleet sends one message per agent per second. With
//! `intake` > 1 the agents' topics are read by that many further connections through one
//! shared subscription (`$share/herd/…`, MQTT 5 and IoT Core; the broker hands each message
//! to one of them), so the intake grows with the fleet; the first connection then only
//! publishes. Messages of one agent may then arrive on different connections and out of
//! order: nothing here depends on their order (batches are folded by second and deduplicated
//! by seq; status messages are each complete).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use actix::prelude::*;
use messages::metrics::MetricBatch;
use messages::topics::{self, AgentTopic};
use messages::wire::{self, Body, Envelope};
use transport::keys::{self, AgentKeys, PublicKey, Secret};
use transport::{BrokerUrl, QoS, Session, SessionConfig, SessionError, TlsFiles};

use crate::clock::unix_ms;
use crate::identity::Identity;

#[path = "bus_queue.rs"]
mod queue;
pub use queue::{BatchQueue, Queued, MAX_QUEUED_BYTES};

/// How long connecting and each subscription may take.
pub const BUS_WAIT: Duration = Duration::from_secs(10);
/// Requests the coordinator's client queues (control messages, live snapshots, results).
const CAPACITY: usize = 10_000;
/// Ping interval of an intake connection. Its PINGRESP waits behind the fleet's messages the
/// broker is still delivering, which a broker that throttles each connection (IoT Core: 100
/// a second) can hold for seconds: with the agents' 5 s, a CI run saw all ten intake
/// connections time out and reconnect in mid-run. 30 s is also the shortest keep-alive IoT
/// Core honours. A broker that dies still ends the connection at once (TCP reset).
const INTAKE_KEEP_ALIVE: Duration = Duration::from_secs(30);

/// The shared subscription group of the intake connections.
const SHARE_GROUP: &str = "herd";
/// Most intake connections (IoT Core: one shared subscription group holds at most 128).
pub const MAX_INTAKE: u32 = 128;

/// A status message from an agent (Ready, Heartbeat, Finished, Failed), for its supervisor.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct FromAgent {
    pub agent: u32,
    pub env: Envelope,
}

/// A metric batch from an agent, for its run's aggregator.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct BatchIn {
    pub agent: u32,
    pub seq: u64,
    pub batch: MetricBatch,
    /// Counts the batch as queued until the aggregator is done with it (drops it).
    pub queued: Queued,
}

/// A metric batch from `agent` arrived: a sign of life like a heartbeat (agents send none while
/// their batches flow, halving what the broker must deliver to the coordinator).
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct Heard {
    pub agent: u32,
}

/// Where one run's agent messages go.
#[derive(Clone)]
pub struct Route {
    pub status: Recipient<FromAgent>,
    pub heard: Recipient<Heard>,
    pub batches: Recipient<BatchIn>,
    /// What `batches` holds and has not folded yet; bounded.
    pub queue: Arc<BatchQueue>,
}

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error(transparent)]
    Session(#[from] SessionError),
}

/// A run's route and what checking its agents' messages takes.
#[derive(Clone)]
struct Attached {
    route: Route,
    keys: Arc<RunKeys>,
}

/// One run's agent keys and what was refused of each agent.
pub struct RunKeys {
    agents: Vec<AgentKeys>,
    refused: Vec<AtomicU64>,
    warned: Vec<AtomicBool>,
}

impl RunKeys {
    fn new(agents: Vec<AgentKeys>) -> RunKeys {
        let n = agents.len();
        RunKeys {
            agents,
            refused: (0..n).map(|_| AtomicU64::new(0)).collect(),
            warned: (0..n).map(|_| AtomicBool::new(false)).collect(),
        }
    }

    /// Counts a refused message of `agent`; logs the first of each agent.
    fn refuse(&self, run: &str, agent: u32, why: &str) {
        let i = agent as usize;
        if let Some(n) = self.refused.get(i) {
            n.fetch_add(1, Ordering::Relaxed);
        }
        if self
            .warned
            .get(i)
            .is_some_and(|w| !w.swap(true, Ordering::Relaxed))
        {
            tracing::warn!(
                run,
                agent,
                reason = why,
                "refused a message on this agent's topics (further ones are counted, not logged)"
            );
        }
    }

    /// Messages refused per agent so far.
    pub fn refused(&self) -> Vec<u64> {
        self.refused
            .iter()
            .map(|n| n.load(Ordering::Relaxed))
            .collect()
    }
}

type Routes = Arc<Mutex<HashMap<String, Attached>>>;

fn lock(routes: &Routes) -> MutexGuard<'_, HashMap<String, Attached>> {
    routes.lock().unwrap_or_else(|p| p.into_inner())
}

#[derive(Clone)]
pub struct Bus {
    session: Arc<Session>,
    /// Connections that read the agents' topics through a shared subscription, with what
    /// each has delivered; empty: `session` reads them.
    intake: Vec<(Arc<Session>, Arc<AtomicU64>)>,
    routes: Routes,
    identity: Arc<Identity>,
}

impl Bus {
    /// Connects as `client_id` (and, with `intake` > 1, that many intake connections as
    /// `<client_id>-in<k>`) and returns once the broker accepted them. With `login`, each
    /// logs in with the password `identity` derives for its id (the embedded broker).
    pub async fn connect(
        url: &BrokerUrl,
        tls: &TlsFiles,
        client_id: String,
        identity: Arc<Identity>,
        login: bool,
        intake: u32,
    ) -> Result<Bus, BusError> {
        let routes: Routes = Arc::default();
        let start = |client_id: String,
                     capacity: usize,
                     count: Option<Arc<AtomicU64>>,
                     keep_alive: Duration| {
            let inbound = {
                let routes = routes.clone();
                move |topic: &str, payload: &[u8]| {
                    if let Some(n) = &count {
                        n.fetch_add(1, Ordering::Relaxed);
                    }
                    route(&routes, topic, payload)
                }
            };
            Session::start(
                SessionConfig {
                    url: url.clone(),
                    tls: tls.clone(),
                    login: login.then(|| {
                        let password = keys::coordinator_password(identity.secret(), &client_id);
                        (client_id.clone(), password)
                    }),
                    client_id,
                    capacity,
                    name: "coordinator".into(),
                    // What agents send while this coordinator reconnects waits at the broker.
                    persistent: true,
                    keep_alive,
                },
                inbound,
            )
        };
        let session = start(
            client_id.clone(),
            CAPACITY,
            None,
            transport::options::KEEP_ALIVE,
        )?;
        session.connected(BUS_WAIT).await?;
        let mut readers = Vec::new();
        if intake > 1 {
            for k in 1..=intake.min(MAX_INTAKE) {
                let count = Arc::new(AtomicU64::new(0));
                // They only subscribe and acknowledge: a small request queue.
                let s = start(
                    format!("{client_id}-in{k}"),
                    64,
                    Some(count.clone()),
                    INTAKE_KEEP_ALIVE,
                )?;
                s.connected(BUS_WAIT).await?;
                readers.push((Arc::new(s), count));
            }
        }
        Ok(Bus {
            session: Arc::new(session),
            intake: readers,
            routes,
            identity,
        })
    }

    /// What each intake connection has delivered so far (empty without intake connections).
    pub fn intake_counts(&self) -> Vec<u64> {
        self.intake
            .iter()
            .map(|(_, n)| n.load(Ordering::Relaxed))
            .collect()
    }

    /// The sessions that read agents' topics, and the filter each subscribes for `filter`.
    fn readers(&self, filter: &str) -> Vec<(Arc<Session>, String)> {
        if self.intake.is_empty() {
            return vec![(self.session.clone(), filter.to_string())];
        }
        self.intake
            .iter()
            .map(|(s, _)| (s.clone(), format!("$share/{SHARE_GROUP}/{filter}")))
            .collect()
    }

    /// Routes `run_id`'s agent topics (agents `0..agents`) to `route` and returns once the
    /// broker confirmed the subscription, so no agent message of the run can be missed.
    pub async fn attach(
        &self,
        run_id: &str,
        agents: u32,
        route: Route,
    ) -> Result<RunBus, BusError> {
        let keys = Arc::new(RunKeys::new(self.identity.agent_keys(run_id, agents)));
        lock(&self.routes).insert(
            run_id.to_string(),
            Attached {
                route,
                keys: keys.clone(),
            },
        );
        let readers = self.readers(&topics::agents_wildcard(run_id));
        for (session, filter) in &readers {
            if let Err(e) = session.subscribe(filter, QoS::AtLeastOnce, BUS_WAIT).await {
                lock(&self.routes).remove(run_id);
                for (s, f) in &readers {
                    s.unsubscribe(f);
                }
                return Err(e.into());
            }
        }
        Ok(RunBus {
            bus: self.clone(),
            run_id: run_id.to_string(),
            keys,
        })
    }

    pub fn publish(&self, topic: String, payload: Vec<u8>, qos: QoS, retain: bool) {
        if let Err(e) = self.session.publish(topic.clone(), payload, qos, retain) {
            tracing::warn!(%topic, error = %e, "could not queue a publish");
        }
    }

    /// Waits (up to `wait`) until the broker holds every QoS 1 message queued, then ends the
    /// session for good.
    pub async fn close(&self, wait: Duration) {
        self.session.flush(wait).await;
        self.session.close(Duration::from_secs(2)).await;
        for (s, _) in &self.intake {
            s.close(Duration::from_secs(2)).await;
        }
    }

    /// Runs routed now.
    pub fn attached(&self) -> usize {
        lock(&self.routes).len()
    }
}

/// One run's side of the bus.
#[derive(Clone)]
pub struct RunBus {
    bus: Bus,
    run_id: String,
    keys: Arc<RunKeys>,
}

impl RunBus {
    pub fn publish(&self, topic: String, payload: Vec<u8>, qos: QoS, retain: bool) {
        self.bus.publish(topic, payload, qos, retain)
    }

    /// What each agent needs from its launcher: its own secret and the coordinator's public
    /// key. Hand each agent its own only.
    pub fn agent_secrets(&self) -> (Vec<Secret>, PublicKey) {
        (
            self.keys
                .agents
                .iter()
                .map(|k| k.secret().clone())
                .collect(),
            self.bus.identity.public(),
        )
    }

    /// Messages refused per agent so far (not made with that agent's key, or about another).
    pub fn refused(&self) -> Vec<u64> {
        self.keys.refused()
    }

    /// This coordinator process's epoch (`Identity::epoch`), for `Alive`.
    pub fn epoch(&self) -> u64 {
        self.bus.identity.epoch()
    }

    /// A control message to the run's agents, not retained: an Assign sealed for its agent
    /// alone, Start, Stop and Alive signed for all. QoS 1, except Alive: QoS 0, since a stale
    /// one redelivered after a reconnect says nothing about now.
    pub fn control(&self, seq: u64, body: Body) {
        let qos = match &body {
            Body::Alive(_) => QoS::AtMostOnce,
            _ => QoS::AtLeastOnce,
        };
        self.send_control(seq, body, qos)
    }

    /// The run's last `Alive`, with the final confirmations: QoS 1, because agents waiting to
    /// hear that their last batches are safe leave on it — lost, they would wait out their
    /// confirmation timeout instead.
    pub fn last_alive(&self, seq: u64, alive: wire::Alive) {
        self.send_control(seq, Body::Alive(alive), QoS::AtLeastOnce)
    }

    fn send_control(&self, seq: u64, body: Body, qos: QoS) {
        let sealed_for = match &body {
            Body::Assign(a) => Some(a.agent),
            _ => None,
        };
        let env = Envelope {
            version: wire::WIRE_VERSION,
            run_id: self.run_id.clone(),
            sender: "coordinator".into(),
            seq,
            sent_at_ms: unix_ms(),
            body,
        };
        let bytes = match wire::encode(&env) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "cannot encode a control message");
                return;
            }
        };
        let frame = match sealed_for {
            Some(agent) => {
                let Some(k) = self.keys.agents.get(agent as usize) else {
                    tracing::error!(agent, "an Assign for an agent this run does not have");
                    return;
                };
                match keys::seal_for_agent(agent, k, &bytes) {
                    Ok(f) => f,
                    Err(e) => {
                        tracing::error!(agent, error = %e, "cannot seal an Assign");
                        return;
                    }
                }
            }
            None => keys::sign_broadcast(self.bus.identity.signing(), &bytes),
        };
        let topic = match sealed_for {
            Some(agent) => topics::control_for(&self.run_id, agent),
            None => topics::control(&self.run_id),
        };
        self.publish(topic, frame, qos, false)
    }

    /// Stops routing the run's agent topics (what arrives later for it is dropped).
    pub fn detach(&self) {
        lock(&self.bus.routes).remove(&self.run_id);
        for (s, f) in self.bus.readers(&topics::agents_wildcard(&self.run_id)) {
            s.unsubscribe(&f);
        }
    }
}

/// On the session's task: decode, then hand over to the run's actors.
fn route(routes: &Routes, topic: &str, payload: &[u8]) {
    let Some(t) = topics::parse_agent_topic(topic) else {
        return;
    };
    let (run, agent, metrics) = match &t {
        AgentTopic::Metrics { run, agent } => (run.as_str(), *agent, true),
        AgentTopic::Status { run, agent } => (run.as_str(), *agent, false),
    };
    let Some(to) = lock(routes).get(run).cloned() else {
        tracing::debug!(%topic, "message for a run this coordinator does not hold");
        return;
    };
    let Some(key) = to.keys.agents.get(agent as usize) else {
        tracing::debug!(%topic, "message for an agent this run does not have");
        return;
    };
    let plain = match keys::open_from_agent(key, payload) {
        Ok(p) => p,
        Err(e) => return to.keys.refuse(run, agent, &e.to_string()),
    };
    let env = match wire::decode(plain) {
        Ok(e) => e,
        Err(e) => return to.keys.refuse(run, agent, &format!("malformed: {e}")),
    };
    if let Err(why) = speaks_for(&env, run, agent) {
        return to.keys.refuse(run, agent, &why);
    }
    match (metrics, env.body) {
        (true, Body::Metrics(batch)) => {
            // Refused when full: counted there, reported by the aggregator.
            if let Some(queued) = to.route.queue.admit(agent, payload.len() as u64) {
                to.route.batches.do_send(BatchIn {
                    agent,
                    seq: env.seq,
                    batch,
                    queued,
                })
            }
            to.route.heard.do_send(Heard { agent });
        }
        (
            false,
            body @ (Body::Ready(_) | Body::Heartbeat(_) | Body::Finished(_) | Body::Failed(_)),
        ) => to.route.status.do_send(FromAgent {
            agent,
            env: Envelope { body, ..env },
        }),
        (_, body) => to
            .keys
            .refuse(run, agent, &format!("a {} on this topic", body.kind())),
    }
}

/// A message on agent `agent`'s topic must say it is from that agent, about that agent, of
/// that run: a valid key is not licence to speak for a peer.
fn speaks_for(env: &Envelope, run: &str, agent: u32) -> Result<(), String> {
    if env.run_id != run {
        return Err(format!("for run {:?}", env.run_id));
    }
    if env.sender != format!("agent-{agent}") {
        return Err(format!("sent as {:?}", env.sender));
    }
    let about = match &env.body {
        Body::Ready(r) => r.agent,
        Body::Heartbeat(h) => h.agent,
        Body::Finished(f) => f.agent,
        Body::Failed(f) => f.agent,
        Body::Metrics(b) => b.agent,
        other => return Err(format!("a {} from an agent", other.kind())),
    };
    if about != agent {
        return Err(format!("about agent {about}"));
    }
    Ok(())
}
