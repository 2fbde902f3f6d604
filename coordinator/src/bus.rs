//! The coordinator's MQTT link: one [`Session`] per process, shared by every run it holds.
//! A run [`Bus::attach`]es with where its agents' messages go — status to its supervisor,
//! metric batches to its aggregator — and gets a [`RunBus`] to publish with; when it ends it
//! detaches (unsubscribes). So a long-running `herd serve` keeps one connection however many
//! runs it has finished, and that connection renews every active run's subscription when the
//! broker comes back.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use actix::prelude::*;
use messages::metrics::MetricBatch;
use messages::topics::{self, AgentTopic};
use messages::wire::{self, Body, Envelope};
use transport::{BrokerUrl, QoS, Session, SessionConfig, SessionError, TlsFiles};

use crate::clock::unix_ms;

/// How long connecting and each subscription may take.
pub const BUS_WAIT: Duration = Duration::from_secs(10);
/// Requests the coordinator's client queues (control messages, live snapshots, results).
const CAPACITY: usize = 10_000;

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
}

/// Where one run's agent messages go.
#[derive(Clone)]
pub struct Route {
    pub status: Recipient<FromAgent>,
    pub batches: Recipient<BatchIn>,
}

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error(transparent)]
    Session(#[from] SessionError),
}

type Routes = Arc<Mutex<HashMap<String, Route>>>;

fn lock(routes: &Routes) -> MutexGuard<'_, HashMap<String, Route>> {
    routes.lock().unwrap_or_else(|p| p.into_inner())
}

#[derive(Clone)]
pub struct Bus {
    session: Arc<Session>,
    routes: Routes,
}

impl Bus {
    /// Connects as `client_id` and returns once the broker accepted the connection.
    pub async fn connect(
        url: &BrokerUrl,
        tls: &TlsFiles,
        client_id: String,
    ) -> Result<Bus, BusError> {
        let routes: Routes = Arc::default();
        let inbound = {
            let routes = routes.clone();
            move |topic: &str, payload: &[u8]| route(&routes, topic, payload)
        };
        let session = Session::start(
            SessionConfig {
                url: url.clone(),
                tls: tls.clone(),
                client_id,
                capacity: CAPACITY,
                name: "coordinator".into(),
            },
            inbound,
        )?;
        session.connected(BUS_WAIT).await?;
        Ok(Bus {
            session: Arc::new(session),
            routes,
        })
    }

    /// Routes `run_id`'s agent topics to `route` and returns once the broker confirmed the
    /// subscription, so no agent message of the run can be missed.
    pub async fn attach(&self, run_id: &str, route: Route) -> Result<RunBus, BusError> {
        lock(&self.routes).insert(run_id.to_string(), route);
        let filter = topics::agents_wildcard(run_id);
        if let Err(e) = self
            .session
            .subscribe(&filter, QoS::AtLeastOnce, BUS_WAIT)
            .await
        {
            lock(&self.routes).remove(run_id);
            self.session.unsubscribe(&filter);
            return Err(e.into());
        }
        Ok(RunBus {
            bus: self.clone(),
            run_id: run_id.to_string(),
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
}

impl RunBus {
    pub fn publish(&self, topic: String, payload: Vec<u8>, qos: QoS, retain: bool) {
        self.bus.publish(topic, payload, qos, retain)
    }

    /// A control message (Assign, Start, Stop) to the run's agents, QoS 1, not retained.
    pub fn control(&self, seq: u64, body: Body) {
        let env = Envelope {
            version: wire::WIRE_VERSION,
            run_id: self.run_id.clone(),
            sender: "coordinator".into(),
            seq,
            sent_at_ms: unix_ms(),
            body,
        };
        match wire::encode(&env) {
            Ok(bytes) => self.publish(
                topics::control(&self.run_id),
                bytes,
                QoS::AtLeastOnce,
                false,
            ),
            Err(e) => tracing::error!(error = %e, "cannot encode a control message"),
        }
    }

    /// Stops routing the run's agent topics (what arrives later for it is dropped).
    pub fn detach(&self) {
        lock(&self.bus.routes).remove(&self.run_id);
        self.bus
            .session
            .unsubscribe(&topics::agents_wildcard(&self.run_id));
    }
}

/// On the session's task: decode, then hand over to the run's actors.
fn route(routes: &Routes, topic: &str, payload: &[u8]) {
    let Some(t) = topics::parse_agent_topic(topic) else {
        return;
    };
    let run = match &t {
        AgentTopic::Metrics { run, .. } | AgentTopic::Status { run, .. } => run.as_str(),
    };
    let Some(to) = lock(routes).get(run).cloned() else {
        tracing::debug!(%topic, "message for a run this coordinator does not hold");
        return;
    };
    let env = match wire::decode(payload) {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(%topic, error = %e, "ignoring a malformed agent message");
            return;
        }
    };
    match (t, env.body) {
        (AgentTopic::Metrics { agent, .. }, Body::Metrics(batch)) => to.batches.do_send(BatchIn {
            agent,
            seq: env.seq,
            batch,
        }),
        (AgentTopic::Status { agent, .. }, body) => to.status.do_send(FromAgent {
            agent,
            env: Envelope { body, ..env },
        }),
        (_, body) => {
            tracing::warn!(%topic, kind = body.kind(), "unexpected message kind on this topic")
        }
    }
}
