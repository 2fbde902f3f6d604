//! `herd target`: a built-in HTTP server to aim load tests at.
//!
//! One port serves HTTP/1.1 (keep-alive) and HTTP/2 (h2c prior knowledge, or
//! ALPN `h2` over TLS with a self-signed certificate). Every request that is
//! not a control request (`/__…`) is counted exactly; the counters can be read
//! with `GET /__stats` or [`Target::stats`] and cleared with `POST /__reset`.
//!
//! Routes:
//!
//! | route | answer |
//! | --- | --- |
//! | `/`, `/fast` (any method) | 200 `ok` — the hot path, no allocation of its own |
//! | `/delay/{ms}` | sleeps `ms`, then 200 `ok` |
//! | `/status/{code}` | that status (200..=999), empty body |
//! | `/bytes/{n}` | `n` bytes (at most 10 MiB, else 400) |
//! | `/echo` | JSON `{"method","path","query","headers","body"}` |
//! | `POST /login` | JSON `{"username","password"}` → `{"token":"tok-<u>","user":"<u>"}`, else 400 |
//! | `GET /me` | `Authorization: Bearer tok-<u>` → `{"user":"<u>"}`, else 401 |
//! | `/items/{id}` | `{"id":<id>,"name":"item-<id>"}` |
//! | `/redirect/{n}` | 302 to `/redirect/{n-1}`; `/redirect/0` → 200 `ok` |
//! | `/redirect-to?url=U` | 302 to `U` as written (not percent-decoded), anywhere |
//! | `/cookie/set?k=v&…` | 200 with `Set-Cookie: k=v; Path=/` per pair |
//! | `/cookie/get` | 200, body = the request's `Cookie` header |
//! | `GET /__stats` | [`TargetStats`] JSON (not counted) |
//! | `POST /__reset` | zero every counter (not counted) |
//! | `POST /__stall?ms=N` | hold every counted request until N ms from now (not counted) |
//! | anything else | 404 (counted) |
//!
//! Counting: `requests`, `by_path` and `by_method` are counted when a request
//! arrives (before any stall or delay); `by_status` when its response is made.
//! So while requests are in flight, `requests` can exceed the sum of
//! `by_status`; once they have been answered the two agree.
//!
//! Modules: `counters` (the exact counting and the stall window), `routes` (request
//! handling), `server` (TLS, accepting and serving connections).

mod counters;
mod routes;
mod server;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::future::Future;
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use counters::Shared;
use server::{accept_loop, tls_acceptor};

/// Largest body `/bytes/{n}` serves, and largest request body `/echo` and `/login` read.
pub const MAX_BODY_BYTES: usize = 10 * 1024 * 1024;
/// At most this many distinct paths (and methods) are kept in the stats; the rest are
/// counted under [`OVERFLOW_KEY`].
pub const MAX_TRACKED_KEYS: usize = 10_000;
/// The `by_path` / `by_method` key for requests beyond [`MAX_TRACKED_KEYS`].
pub const OVERFLOW_KEY: &str = "<other>";
/// How long [`Target::shutdown`] lets open connections finish before dropping them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);
/// How long a TLS handshake may take.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How to run a [`Target`].
#[derive(Clone, Debug)]
pub struct TargetConfig {
    /// Address to listen on; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Serve HTTPS with a fresh self-signed certificate (ALPN `h2`, `http/1.1`).
    pub tls: bool,
    /// Added to every counted (non-control) request.
    pub base_delay: Option<Duration>,
}

impl Default for TargetConfig {
    fn default() -> Self {
        TargetConfig {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            tls: false,
            base_delay: None,
        }
    }
}

/// A snapshot of what a [`Target`] has counted. Only non-zero entries appear in the maps.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct TargetStats {
    /// Every counted request (control routes under `/__` are not counted).
    pub requests: u64,
    /// Per path, without the query string.
    pub by_path: BTreeMap<String, u64>,
    /// Per response status.
    pub by_status: BTreeMap<u16, u64>,
    /// Per request method.
    pub by_method: BTreeMap<String, u64>,
}

/// A running target server. Dropping it without [`Target::shutdown`] also stops it
/// (the accept loop and connections notice that the handle is gone).
pub struct Target {
    local_addr: SocketAddr,
    tls: bool,
    cert_der: Option<Vec<u8>>,
    shared: Arc<Shared>,
    shutdown_tx: watch::Sender<bool>,
    accept_task: JoinHandle<()>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("local_addr", &self.local_addr)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

impl Target {
    /// Binds `cfg.listen`, spawns the accept loop on the current tokio runtime and
    /// returns at once.
    pub async fn start(cfg: TargetConfig) -> io::Result<Target> {
        let (acceptor, cert_der) = if cfg.tls {
            let (acceptor, der) = tls_acceptor(cfg.listen.ip())?;
            (Some(acceptor), Some(der))
        } else {
            (None, None)
        };
        let listener = TcpListener::bind(cfg.listen).await?;
        let local_addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(cfg.base_delay));
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let accept_task = tokio::spawn(accept_loop(
            listener,
            Arc::clone(&shared),
            acceptor,
            shutdown_rx,
        ));
        debug!(%local_addr, tls = cfg.tls, "herd target started");
        Ok(Target {
            local_addr,
            tls: cfg.tls,
            cert_der,
            shared,
            shutdown_tx,
            accept_task,
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// `http://IP:PORT` (or `https://`); an unspecified listen address (`0.0.0.0`, `::`)
    /// is shown as the loopback address of the same family.
    pub fn url(&self) -> String {
        let mut addr = self.local_addr;
        if addr.ip().is_unspecified() {
            addr.set_ip(match addr.ip() {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
            });
        }
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{addr}")
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> TargetStats {
        self.shared.counters.snapshot()
    }

    /// Zeroes every counter (same as `POST /__reset`).
    pub fn reset(&self) {
        self.shared.counters.reset();
    }

    /// The self-signed certificate (DER) when serving TLS. Its SANs are `localhost`,
    /// `127.0.0.1`, `::1` and the listen IP.
    pub fn cert_der(&self) -> Option<Vec<u8>> {
        self.cert_der.clone()
    }

    /// Stops accepting, asks open connections to finish (up to ~1 s), then drops them.
    pub async fn shutdown(self) {
        let _ = self.shutdown_tx.send(true);
        if let Err(e) = self.accept_task.await {
            warn!(error = %e, "herd target accept loop ended abnormally");
        }
        // Every connection task holds a receiver; `closed` resolves when all are gone.
        if tokio::time::timeout(
            SHUTDOWN_GRACE + Duration::from_millis(500),
            self.shutdown_tx.closed(),
        )
        .await
        .is_err()
        {
            warn!("herd target: some connections did not close in time");
        }
        info!(local_addr = %self.local_addr, "herd target stopped");
    }
}

/// Runs a target for the `herd target` command: prints exactly one line,
/// `herd target listening on http://ADDR` (or `https://`), to stdout, flushes it,
/// then serves until `shutdown` resolves.
pub async fn run_cli(cfg: TargetConfig, shutdown: impl Future<Output = ()>) -> io::Result<()> {
    run_cli_to(cfg, shutdown, io::stdout()).await
}

async fn run_cli_to<W: Write>(
    cfg: TargetConfig,
    shutdown: impl Future<Output = ()>,
    mut out: W,
) -> io::Result<()> {
    let target = Target::start(cfg).await?;
    writeln!(out, "herd target listening on {}", target.url())?;
    out.flush()?;
    drop(out);
    // Logged only after the line above, which must come first on stdout.
    info!(url = %target.url(), "herd target serving");
    shutdown.await;
    target.shutdown().await;
    Ok(())
}
