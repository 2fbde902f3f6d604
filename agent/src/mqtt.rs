//! Broker addresses and MQTT connection options, shared by agents and the coordinator.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{MqttOptions, TlsConfiguration, Transport};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

#[derive(Debug, thiserror::Error)]
pub enum MqttSetupError {
    #[error("broker URL {0:?}: expected mqtt://host:port or mqtts://host:port")]
    Url(String),
    #[error("{what} {path}: {reason}")]
    File {
        what: &'static str,
        path: String,
        reason: String,
    },
    #[error("TLS setup: {0}")]
    Tls(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    pub tls: bool,
    pub host: String,
    pub port: u16,
}

impl BrokerUrl {
    pub fn parse(s: &str) -> Result<BrokerUrl, MqttSetupError> {
        let bad = || MqttSetupError::Url(s.to_string());
        let (tls, rest) = if let Some(r) = s.strip_prefix("mqtt://") {
            (false, r)
        } else if let Some(r) = s.strip_prefix("mqtts://") {
            (true, r)
        } else {
            return Err(bad());
        };
        let rest = rest.trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) => (h, p.parse::<u16>().map_err(|_| bad())?),
            None => (rest, if tls { 8883 } else { 1883 }),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(bad());
        }
        Ok(BrokerUrl {
            tls,
            host: host.to_string(),
            port,
        })
    }
}

impl std::fmt::Display for BrokerUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls { "mqtts" } else { "mqtt" };
        write!(f, "{scheme}://{}:{}", self.host, self.port)
    }
}

/// Files for `mqtts://`: a CA to trust (else the public web roots) and an optional client
/// certificate and key (IoT Core and mosquitto with `require_certificate`).
#[derive(Debug, Clone, Default)]
pub struct TlsFiles {
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

fn read(what: &'static str, p: &PathBuf) -> Result<Vec<u8>, MqttSetupError> {
    std::fs::read(p).map_err(|e| MqttSetupError::File {
        what,
        path: p.display().to_string(),
        reason: e.to_string(),
    })
}

/// Options for one MQTT client. `capacity` bounds the client's outgoing queue: publishes that
/// find it full are refused (and counted by the caller) instead of growing memory without end.
pub fn options(
    url: &BrokerUrl,
    client_id: &str,
    tls: &TlsFiles,
    capacity: usize,
) -> Result<MqttOptions, MqttSetupError> {
    let mut o = MqttOptions::new(client_id, url.host.clone(), url.port);
    o.set_keep_alive(Duration::from_secs(5));
    o.set_max_packet_size(
        messages::wire::MAX_MESSAGE_BYTES + 1024,
        messages::wire::MAX_MESSAGE_BYTES + 1024,
    );
    o.set_request_channel_capacity(capacity);
    o.set_inflight(100);
    if url.tls {
        o.set_transport(Transport::Tls(TlsConfiguration::Rustls(Arc::new(
            tls_config(tls)?,
        ))));
    }
    Ok(o)
}

fn tls_config(files: &TlsFiles) -> Result<rustls::ClientConfig, MqttSetupError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    match &files.ca {
        Some(p) => {
            let pem = read("CA file", p)?;
            for c in CertificateDer::pem_slice_iter(&pem) {
                let c = c.map_err(|e| MqttSetupError::File {
                    what: "CA file",
                    path: p.display().to_string(),
                    reason: e.to_string(),
                })?;
                roots
                    .add(c)
                    .map_err(|e| MqttSetupError::Tls(e.to_string()))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| MqttSetupError::Tls(e.to_string()))?
        .with_root_certificates(roots);
    match (&files.cert, &files.key) {
        (Some(c), Some(k)) => {
            let pem = read("client certificate", c)?;
            let certs = CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| MqttSetupError::File {
                    what: "client certificate",
                    path: c.display().to_string(),
                    reason: e.to_string(),
                })?;
            let key_pem = read("client key", k)?;
            let key =
                PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| MqttSetupError::File {
                    what: "client key",
                    path: k.display().to_string(),
                    reason: e.to_string(),
                })?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| MqttSetupError::Tls(e.to_string()))
        }
        (None, None) => Ok(builder.with_no_client_auth()),
        _ => Err(MqttSetupError::Tls(
            "give both a client certificate and its key, or neither".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_urls_parse() {
        assert_eq!(
            BrokerUrl::parse("mqtt://127.0.0.1:1883").unwrap(),
            BrokerUrl {
                tls: false,
                host: "127.0.0.1".into(),
                port: 1883
            }
        );
        assert_eq!(BrokerUrl::parse("mqtts://example.com").unwrap().port, 8883);
        assert_eq!(BrokerUrl::parse("mqtt://[::1]:9").unwrap().host, "::1");
        assert!(BrokerUrl::parse("http://x:1").is_err());
        assert!(BrokerUrl::parse("mqtt://x:port").is_err());
    }
}
