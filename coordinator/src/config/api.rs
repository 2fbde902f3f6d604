//! `[api]`: where `herd serve`'s HTTP API listens, and its limits.

use std::path::PathBuf;

use serde::Deserialize;

/// Default `[api] max_streams`.
pub const DEFAULT_MAX_STREAMS: usize = 256;

/// `[api]` in the serve config: without it, `herd serve` has no HTTP API.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Address to listen on (`127.0.0.1:8080`); port 0 picks a free one, printed on the ready
    /// line (`api http://…`).
    pub listen: std::net::SocketAddr,
    /// Serve HTTPS with this certificate chain and key (PEM); both or neither.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Live streams open at once, at most.
    #[serde(default = "default_max_streams")]
    pub max_streams: usize,
}

fn default_max_streams() -> usize {
    DEFAULT_MAX_STREAMS
}

impl ApiConfig {
    pub fn check(&self) -> Result<(), String> {
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err("[api] tls_cert and tls_key go together: give both or neither".into());
        }
        if self.max_streams == 0 || self.max_streams > 100_000 {
            return Err(format!(
                "[api] max_streams = {}: between 1 and 100000",
                self.max_streams
            ));
        }
        Ok(())
    }
}
