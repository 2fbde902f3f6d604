//! The embedded MQTT broker (rumqttd) on a loopback port: what makes `herd run` need nothing.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("no free loopback port for the embedded broker: {0}")]
    Port(std::io::Error),
    #[error("the embedded broker did not start listening on {0} within 5 s")]
    NotListening(SocketAddr),
}

/// Starts rumqttd on `port` (0 = a free one) and returns its address once it accepts
/// connections. rumqttd has no stop method: it lives as long as the process.
pub fn start(port: u16) -> Result<SocketAddr, BrokerError> {
    let port = if port == 0 {
        // Ask the OS for a free port, then hand it to rumqttd (which cannot report one back).
        let l = TcpListener::bind("127.0.0.1:0").map_err(BrokerError::Port)?;
        l.local_addr().map_err(BrokerError::Port)?.port()
    } else {
        port
    };
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let server = ServerSettings {
        name: "herd-v4".into(),
        listen: addr,
        tls: None,
        next_connection_delay_ms: 1,
        connections: ConnectionSettings {
            connection_timeout_ms: 60_000,
            // Assign carries the spec and its data files.
            max_payload_size: messages::wire::MAX_MESSAGE_BYTES + 1024,
            max_inflight_count: 500,
            auth: None,
            external_auth: None,
            dynamic_filters: true,
        },
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
