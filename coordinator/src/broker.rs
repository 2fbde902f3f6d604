//! The embedded MQTT broker (rumqttd) on a loopback port: what makes `herd run` need nothing.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use std::sync::Arc;

use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};
use transport::keys::{login_ok, Secret};

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("no free loopback port for the embedded broker: {0}")]
    Port(std::io::Error),
    #[error("the embedded broker did not start listening on {0} within 5 s")]
    NotListening(SocketAddr),
}

/// Starts rumqttd on `port` (0 = a free one) and returns its address once it accepts
/// connections. rumqttd has no stop method: it lives as long as the process.
///
/// With `logins`, only clients the coordinator holding that secret made credentials for may
/// connect: the coordinator as itself and each agent as itself (user name = client id,
/// password derived from the secret). Anonymous clients and other local users are refused, so
/// nobody else can read a run's topics or inject messages. `None` is an open broker: what
/// tests use to stand in for an external one.
pub fn start(port: u16, logins: Option<Arc<Secret>>) -> Result<SocketAddr, BrokerError> {
    let port = if port == 0 {
        // Ask the OS for a free port, then hand it to rumqttd (which cannot report one back).
        let l = TcpListener::bind("127.0.0.1:0").map_err(BrokerError::Port)?;
        l.local_addr().map_err(BrokerError::Port)?.port()
    } else {
        port
    };
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut connections = ConnectionSettings {
        connection_timeout_ms: 60_000,
        // Assign carries the spec and its data files.
        max_payload_size: messages::wire::MAX_MESSAGE_BYTES + 1024,
        max_inflight_count: 500,
        auth: None,
        external_auth: None,
        dynamic_filters: true,
    };
    if let Some(secret) = logins {
        connections.set_auth_handler(move |client_id: String, user: String, password: String| {
            let ok = login_ok(&secret, &client_id, &user, &password);
            if !ok {
                tracing::warn!(%client_id, "embedded broker: login refused");
            }
            async move { ok }
        });
    }
    let server = ServerSettings {
        name: "herd-v4".into(),
        listen: addr,
        tls: None,
        next_connection_delay_ms: 1,
        connections,
    };
    let config = Config {
        id: 0,
        router: RouterConfig {
            max_connections: 10_010,
            max_outgoing_packet_count: 1000,
            max_segment_size: 64 * 1024 * 1024,
            max_segment_count: 10,
            ..Default::default()
        },
        v4: Some(HashMap::from([("herd".to_string(), server)])),
        ..Default::default()
    };
    std::thread::Builder::new()
        .name("herd-broker".into())
        .spawn(move || {
            let mut broker = Broker::new(config);
            if let Err(e) = broker.start() {
                tracing::error!(error = %e, "embedded broker stopped");
            }
        })
        .map_err(BrokerError::Port)?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(addr);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(BrokerError::NotListening(addr))
}
