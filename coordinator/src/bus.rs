//! The coordinator's MQTT link: subscribes to a run's agent topics and routes what arrives —
//! metric batches to the aggregator, status to the supervisor. Publishing goes through
//! [`Bus::publish`], a cheap clone of the client.

use std::time::Duration;

use actix::Recipient;
use agent::mqtt::{self, BrokerUrl, TlsFiles};
use messages::topics::{self, AgentTopic};
use messages::wire::{self, Body};
use rumqttc::{AsyncClient, Event, Packet, QoS};
use tokio::sync::watch;

use crate::protocol::{BatchIn, FromAgent};

#[derive(Clone)]
pub struct Bus {
    client: AsyncClient,
}

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error(transparent)]
    Setup(#[from] agent::mqtt::MqttSetupError),
    #[error("cannot subscribe on the broker at {0} within 10 s (is it running?)")]
    NoSubscription(String),
}

impl Bus {
    /// Connects, subscribes to the run's agent topics and returns once the broker confirmed
    /// the subscription, so no agent message can be missed.
    pub async fn connect(
        url: &BrokerUrl,
        tls: &TlsFiles,
        run_id: &str,
        status: Recipient<FromAgent>,
        batches: Recipient<BatchIn>,
    ) -> Result<Bus, BusError> {
        let opts = mqtt::options(url, &format!("herd-coordinator-{run_id}"), tls, 10_000)?;
        let (client, mut eventloop) = AsyncClient::new(opts, 10_000);
        let (sub_tx, mut sub_rx) = watch::channel(false);
        let sub_client = client.clone();
        let filter = topics::agents_wildcard(run_id);
        tokio::spawn(async move {
            let mut down = false;
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        down = false;
                        if let Err(e) = sub_client.try_subscribe(filter.clone(), QoS::AtLeastOnce) {
                            tracing::error!(error = %e, "cannot subscribe to agent topics");
                        }
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = sub_tx.send(true);
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        route(&p.topic, &p.payload, &status, &batches)
                    }
                    Ok(_) => {}
                    Err(e) => {
                        if !down {
                            tracing::warn!(error = %e, "coordinator lost the broker; reconnecting");
                            down = true;
                        }
                        tokio::time::sleep(Duration::from_millis(300)).await;
                    }
                }
            }
        });
        let subscribed = matches!(
            tokio::time::timeout(Duration::from_secs(10), sub_rx.wait_for(|s| *s)).await,
            Ok(Ok(_))
        );
        if subscribed {
            Ok(Bus { client })
        } else {
            Err(BusError::NoSubscription(url.to_string()))
        }
    }

    pub fn publish(&self, topic: String, payload: Vec<u8>, qos: QoS, retain: bool) {
        if let Err(e) = self.client.try_publish(topic.clone(), qos, retain, payload) {
            tracing::warn!(%topic, error = %e, "could not queue a publish");
        }
    }

    pub fn publish_body(&self, topic: String, run_id: &str, seq: u64, body: Body) {
        let env = wire::Envelope {
            version: wire::WIRE_VERSION,
            run_id: run_id.to_string(),
            sender: "coordinator".into(),
            seq,
            sent_at_ms: crate::clock::unix_ms(),
            body,
        };
        match wire::encode(&env) {
            Ok(bytes) => self.publish(topic, bytes, QoS::AtLeastOnce, false),
            Err(e) => tracing::error!(error = %e, "cannot encode a control message"),
        }
    }

    pub fn disconnect(&self) {
        let _ = self.client.try_disconnect();
    }
}

fn route(topic: &str, payload: &[u8], status: &Recipient<FromAgent>, batches: &Recipient<BatchIn>) {
    let Some(t) = topics::parse_agent_topic(topic) else {
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
        (AgentTopic::Metrics { agent, .. }, Body::Metrics(batch)) => batches.do_send(BatchIn {
            agent,
            seq: env.seq,
            batch,
        }),
        (AgentTopic::Status { agent, .. }, body) => status.do_send(FromAgent {
            agent,
            env: wire::Envelope { body, ..env },
        }),
        (_, body) => {
            tracing::warn!(%topic, kind = body.kind(), "unexpected message kind on this topic")
        }
    }
}
