//! `Session`: one MQTT connection, as both ends of a run need it.
//!
//! - Subscriptions are state, not calls: the session remembers what it wants and renews it on
//!   every ConnAck (a clean session loses them on each reconnect), and [`Session::subscribe`]
//!   returns only once the broker confirmed it, so no message of a run can slip past.
//! - Everything that arrives goes to one [`Inbound`] handler on the event loop's own task: the
//!   handler routes, the session does not know what herd's topics mean.
//! - Acknowledgements are counted, so a sender can wait until the broker holds every QoS 1
//!   message it queued ([`Session::flush`]).
//! - [`Session::close`] sends DISCONNECT and ends the event loop. A bare rumqttc client would
//!   reconnect after a DISCONNECT, and a long-running coordinator kept one live connection per
//!   finished run that way.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rumqttc::{
    AsyncClient, ClientError, ConnectionError, Event, EventLoop, Outgoing, Packet, QoS, SubAck,
    SubscribeReasonCode,
};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use crate::options::{options, MqttSetupError, TlsFiles};
use crate::url::BrokerUrl;

/// Pause between reconnect attempts while the broker is away.
const RECONNECT_PAUSE: Duration = Duration::from_millis(300);

pub struct SessionConfig {
    pub url: BrokerUrl,
    pub tls: TlsFiles,
    pub client_id: String,
    /// Requests (publishes, subscribes) the client queues while the broker is away. Bounded:
    /// a publish that finds it full is refused ([`PublishError::Full`]) and the caller counts
    /// it, instead of memory growing without end during an outage.
    pub capacity: usize,
    /// Who this is in log lines (`coordinator`, `agent 3`).
    pub name: String,
    /// User name and password, for brokers that want a login (the embedded one does).
    pub login: Option<(String, String)>,
    /// Clean session off: the broker keeps this client's subscriptions and queues its QoS 1
    /// messages while it is away (a reconnect, a broker restarted with persistence), as long as
    /// it comes back with the same client id. The broker's own expiry bounds how long
    /// (mosquitto `persistent_client_expiration`, IoT Core one hour by default).
    pub persistent: bool,
    /// How often the client pings and how long it waits for the answer before it reconnects.
    /// A PINGRESP queues behind every message the broker is still delivering, so a connection
    /// that takes in a fleet's backlog through a throttled broker needs a longer one than
    /// [`crate::options::KEEP_ALIVE`].
    pub keep_alive: std::time::Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Setup(#[from] MqttSetupError),
    #[error("no connection to the broker at {url} within {wait:?}{}", last.as_ref().map(|e| format!(" (last error: {e})")).unwrap_or_default())]
    Unreachable {
        url: String,
        wait: Duration,
        /// Why the last attempt failed (refused, TLS alert…), when one did.
        last: Option<String>,
    },
    #[error("the broker at {url} refused the subscription to {filter} (not authorised?)")]
    Refused { url: String, filter: String },
    #[error("the broker at {url} did not confirm the subscription to {filter} within {wait:?}")]
    NoSubAck {
        url: String,
        filter: String,
        wait: Duration,
    },
    #[error("the MQTT session is closed")]
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    #[error("the outgoing MQTT queue is full")]
    Full,
    #[error("the MQTT session is closed")]
    Closed,
}

/// Receives every publish that arrives, on the event loop's task: keep it short (decode and
/// hand over), the next packet waits for it.
pub trait Inbound: Send + 'static {
    fn message(&mut self, topic: &str, payload: &[u8]);
}

impl<F: FnMut(&str, &[u8]) + Send + 'static> Inbound for F {
    fn message(&mut self, topic: &str, payload: &[u8]) {
        self(topic, payload)
    }
}

/// Subscription bookkeeping, shared by callers and the event loop.
#[derive(Default)]
struct Subs {
    connected: bool,
    last_error: Option<String>,
    wanted: BTreeMap<String, QoS>,
    /// Filters of subscribe requests queued but not yet written, in queue order: the event
    /// loop writes them in that order and names each by its packet id (`Outgoing::Subscribe`).
    queued: VecDeque<String>,
    sent: HashMap<u16, String>,
    confirmed: BTreeSet<String>,
    refused: BTreeSet<String>,
}

struct Shared {
    name: String,
    url: String,
    subs: Mutex<Subs>,
    /// Bumped whenever `subs` or the ack count change, for waiters.
    changed: watch::Sender<u64>,
    qos1_queued: AtomicU64,
    acked: AtomicU64,
    closing: AtomicBool,
    /// The event loop has ended.
    ended: AtomicBool,
    wake: Notify,
}

impl Shared {
    fn subs(&self) -> MutexGuard<'_, Subs> {
        // A panic elsewhere while holding the lock leaves plain bookkeeping behind: keep going.
        self.subs.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn bump(&self) {
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }

    fn request_subscribe(&self, subs: &mut Subs, client: &AsyncClient, filter: &str, qos: QoS) {
        match client.try_subscribe(filter, qos) {
            Ok(()) => subs.queued.push_back(filter.to_string()),
            Err(e) => {
                tracing::warn!(session = %self.name, %filter, error = %e, "cannot queue a subscription")
            }
        }
    }

    fn on_connack(&self, client: &AsyncClient) {
        let mut subs = self.subs();
        subs.connected = true;
        let wanted: Vec<(String, QoS)> = subs.wanted.iter().map(|(f, q)| (f.clone(), *q)).collect();
        for (filter, qos) in wanted {
            self.request_subscribe(&mut subs, client, &filter, qos);
        }
        drop(subs);
        self.bump();
    }

    fn on_subscribe_written(&self, pkid: u16) {
        let mut subs = self.subs();
        if let Some(filter) = subs.queued.pop_front() {
            subs.sent.insert(pkid, filter);
        }
    }

    fn on_suback(&self, ack: &SubAck) {
        let mut subs = self.subs();
        if let Some(filter) = subs.sent.remove(&ack.pkid) {
            match ack.return_codes.first() {
                Some(SubscribeReasonCode::Success(_)) => {
                    subs.refused.remove(&filter);
                    subs.confirmed.insert(filter);
                }
                _ => {
                    tracing::error!(session = %self.name, %filter, "the broker refused a subscription");
                    subs.refused.insert(filter);
                }
            }
        }
        drop(subs);
        self.bump();
    }

    fn on_down(&self, error: Option<String>) {
        let mut subs = self.subs();
        subs.connected = false;
        if error.is_some() {
            subs.last_error = error;
        }
        // A clean session forgets subscriptions; written requests will never be answered.
        subs.confirmed.clear();
        subs.sent.clear();
        drop(subs);
        self.bump();
    }
}

pub struct Session {
    client: AsyncClient,
    shared: Arc<Shared>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Session {
    /// Starts connecting in the background. Wait for the broker with [`Session::subscribe`]
    /// (which needs the connection) or [`Session::connected`].
    pub fn start(cfg: SessionConfig, inbound: impl Inbound) -> Result<Session, SessionError> {
        let mut opts = options(&cfg.url, &cfg.client_id, &cfg.tls, cfg.capacity)?;
        if let Some((user, password)) = cfg.login {
            opts.set_credentials(user, password);
        }
        opts.set_clean_session(!cfg.persistent);
        opts.set_keep_alive(cfg.keep_alive);
        let (client, eventloop) = AsyncClient::new(opts, cfg.capacity);
        let (changed, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            name: cfg.name,
            url: cfg.url.to_string(),
            subs: Mutex::new(Subs::default()),
            changed,
            qos1_queued: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            closing: AtomicBool::new(false),
            ended: AtomicBool::new(false),
            wake: Notify::new(),
        });
        let task = tokio::spawn(drive(eventloop, client.clone(), shared.clone(), inbound));
        Ok(Session {
            client,
            shared,
            task: Mutex::new(Some(task)),
        })
    }

    /// Waits until the broker accepted the connection.
    pub async fn connected(&self, wait: Duration) -> Result<(), SessionError> {
        let mut rx = self.shared.changed.subscribe();
        let ok = tokio::time::timeout(wait, async {
            loop {
                if self.shared.subs().connected {
                    return;
                }
                if rx.changed().await.is_err() {
                    return;
                }
            }
        })
        .await
        .is_ok();
        if ok && self.shared.subs().connected {
            Ok(())
        } else {
            Err(self.unreachable(wait))
        }
    }

    fn unreachable(&self, wait: Duration) -> SessionError {
        SessionError::Unreachable {
            url: self.shared.url.clone(),
            wait,
            last: self.shared.subs().last_error.clone(),
        }
    }

    /// Adds `filter` to what this session wants (renewed on every reconnect) and returns once
    /// the broker confirmed it. `wait` covers connecting too.
    pub async fn subscribe(
        &self,
        filter: &str,
        qos: QoS,
        wait: Duration,
    ) -> Result<(), SessionError> {
        if self.shared.closing.load(Ordering::Acquire) {
            return Err(SessionError::Closed);
        }
        let mut rx = self.shared.changed.subscribe();
        {
            let mut subs = self.shared.subs();
            subs.wanted.insert(filter.to_string(), qos);
            subs.refused.remove(filter);
            if subs.connected {
                self.shared
                    .request_subscribe(&mut subs, &self.client, filter, qos);
            }
        }
        let outcome = tokio::time::timeout(wait, async {
            loop {
                {
                    let subs = self.shared.subs();
                    if subs.confirmed.contains(filter) {
                        return Ok(());
                    }
                    if subs.refused.contains(filter) {
                        return Err(SessionError::Refused {
                            url: self.shared.url.clone(),
                            filter: filter.to_string(),
                        });
                    }
                }
                if rx.changed().await.is_err() {
                    return Err(SessionError::Closed);
                }
            }
        })
        .await;
        match outcome {
            Ok(r) => r,
            Err(_) if !self.shared.subs().connected => Err(self.unreachable(wait)),
            Err(_) => Err(SessionError::NoSubAck {
                url: self.shared.url.clone(),
                filter: filter.to_string(),
                wait,
            }),
        }
    }

    /// Forgets `filter`: not renewed any more, and unsubscribed now if connected.
    pub fn unsubscribe(&self, filter: &str) {
        let mut subs = self.shared.subs();
        subs.wanted.remove(filter);
        subs.confirmed.remove(filter);
        subs.refused.remove(filter);
        if subs.connected {
            if let Err(e) = self.client.try_unsubscribe(filter) {
                tracing::debug!(session = %self.shared.name, %filter, error = %e, "cannot queue an unsubscribe");
            }
        }
    }

    /// Queues a publish. QoS 1 and 2 publishes are counted for [`Session::flush`].
    pub fn publish(
        &self,
        topic: impl Into<String>,
        payload: Vec<u8>,
        qos: QoS,
        retain: bool,
    ) -> Result<(), PublishError> {
        if self.shared.closing.load(Ordering::Acquire) {
            return Err(PublishError::Closed);
        }
        match self.client.try_publish(topic, qos, retain, payload) {
            Ok(()) => {
                if qos != QoS::AtMostOnce {
                    self.shared.qos1_queued.fetch_add(1, Ordering::AcqRel);
                }
                Ok(())
            }
            Err(ClientError::TryRequest(_)) | Err(ClientError::Request(_)) => {
                if self.shared.ended.load(Ordering::Acquire) {
                    Err(PublishError::Closed)
                } else {
                    Err(PublishError::Full)
                }
            }
        }
    }

    /// Acknowledged QoS 1 publishes so far.
    pub fn acked(&self) -> u64 {
        self.shared.acked.load(Ordering::Acquire)
    }

    /// Waits until the broker acknowledged every QoS 1 publish queued so far; false if `wait`
    /// passed first.
    pub async fn flush(&self, wait: Duration) -> bool {
        let target = self.shared.qos1_queued.load(Ordering::Acquire);
        let mut rx = self.shared.changed.subscribe();
        tokio::time::timeout(wait, async {
            while self.acked() < target {
                if rx.changed().await.is_err() {
                    return;
                }
            }
        })
        .await
        .is_ok()
            && self.acked() >= target
    }

    /// Sends DISCONNECT and ends the event loop: no reconnect after this. Waits up to `wait`
    /// for the loop to end (a broker that is away gets no DISCONNECT), then drops it.
    pub async fn close(&self, wait: Duration) {
        self.begin_close();
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(task) = task {
            let abort = task.abort_handle();
            if tokio::time::timeout(wait, task).await.is_err() {
                abort.abort();
            }
        }
    }

    fn begin_close(&self) {
        if !self.shared.closing.swap(true, Ordering::AcqRel) {
            let _ = self.client.try_disconnect();
            self.shared.wake.notify_one();
        }
    }
}

impl Drop for Session {
    /// A session dropped without `close` still ends its event loop (with a DISCONNECT when the
    /// broker is there).
    fn drop(&mut self) {
        self.begin_close();
    }
}

async fn drive(
    mut eventloop: EventLoop,
    client: AsyncClient,
    shared: Arc<Shared>,
    mut inbound: impl Inbound,
) {
    let mut down = false;
    loop {
        let event = eventloop.poll().await;
        let closing = shared.closing.load(Ordering::Acquire);
        match event {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                if down {
                    tracing::info!(session = %shared.name, "broker connection back");
                    down = false;
                }
                shared.on_connack(&client);
            }
            Ok(Event::Outgoing(Outgoing::Subscribe(pkid))) => shared.on_subscribe_written(pkid),
            Ok(Event::Incoming(Packet::SubAck(ack))) => shared.on_suback(&ack),
            Ok(Event::Incoming(Packet::PubAck(_))) => {
                shared.acked.fetch_add(1, Ordering::AcqRel);
                shared.bump();
            }
            Ok(Event::Incoming(Packet::Publish(p))) => inbound.message(&p.topic, &p.payload),
            Ok(Event::Outgoing(Outgoing::Disconnect)) if closing => break,
            Ok(_) => {}
            Err(ConnectionError::RequestsDone) => break,
            Err(e) => {
                shared.on_down(Some(e.to_string()));
                if closing {
                    break;
                }
                if !down {
                    tracing::warn!(session = %shared.name, error = %e, "broker connection lost; reconnecting (messages are queued)");
                    down = true;
                }
                tokio::select! {
                    _ = tokio::time::sleep(RECONNECT_PAUSE) => {}
                    _ = shared.wake.notified() => {}
                }
                if shared.closing.load(Ordering::Acquire) {
                    break;
                }
            }
        }
    }
    shared.on_down(None);
    shared.ended.store(true, Ordering::Release);
    tracing::debug!(session = %shared.name, "MQTT session closed");
}
