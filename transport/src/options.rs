//! Connection options every herd MQTT client uses, and the TLS files for `mqtts://`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{MqttOptions, TlsConfiguration, Transport};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::url::BrokerUrl;

#[derive(Debug, thiserror::Error)]
pub enum MqttSetupError {
    #[error("{what} {path}: {reason}")]
    File {
        what: &'static str,
        path: String,
        reason: String,
    },
    #[error("TLS setup: {0}")]
    Tls(String),
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

/// Ping interval of a client: short, so an agent notices a broker gone within seconds.
pub const KEEP_ALIVE: Duration = Duration::from_secs(5);

/// Options for one MQTT client. `capacity` bounds the client's outgoing queue: publishes that
/// find it full are refused (and counted by the caller) instead of growing memory without end.
pub fn options(
    url: &BrokerUrl,
    client_id: &str,
    tls: &TlsFiles,
    capacity: usize,
) -> Result<MqttOptions, MqttSetupError> {
    let mut o = MqttOptions::new(client_id, url.host.clone(), url.port);
    o.set_keep_alive(KEEP_ALIVE);
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
