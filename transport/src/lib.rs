//! herd's MQTT transport, shared by the agent and the coordinator so that neither reaches into
//! the other's internals for it.
//!
//! - [`url`]: `mqtt://` / `mqtts://` broker addresses.
//! - [`options`]: TLS files and the connection options every herd client uses (packet limits
//!   sized for the largest wire message, a bounded request queue).
//! - [`keys`]: who may say what: per-agent keys, MACs, the Assign sealed for one agent,
//!   signed broadcasts, embedded-broker logins.
//! - [`session`]: [`Session`], one connection that renews its subscriptions on every ConnAck,
//!   hands what arrives to one handler, counts acknowledgements, and — unlike a bare rumqttc
//!   client — stops for good when closed instead of reconnecting.

pub mod keys;
pub mod options;
pub mod session;
pub mod url;

pub use options::{options, MqttSetupError, TlsFiles};
pub use rumqttc::QoS;
pub use session::{Inbound, PublishError, Session, SessionConfig, SessionError};
pub use url::{BrokerUrl, UrlError};
