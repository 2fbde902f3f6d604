//! `herd serve`'s HTTP API, `/api/v1` (actix-web, on its own worker thread beside the actors),
//! and the web console over it at `/` (`console.rs`):
//! runs (submit, history, summary, series, files, cancel, a live SSE stream), spec validation,
//! API tokens, health and Prometheus metrics, and the OpenAPI document generated from these
//! handlers (`openapi.rs`).
//!
//! Limits, each named where it is enforced:
//! - a request body is at most `bundle::MAX_SPEC_BYTES` (a spec), JSON bodies 64 KiB;
//! - [`MAX_CALLS`] history reads wait at once (past it: 503), so readers never crowd the
//!   history's write queue;
//! - `[api] max_streams` live streams at once (past it: 503);
//! - a page of runs is at most `store::MAX_PAGE` rows; result files are streamed in 64 KiB
//!   chunks, never held whole.

pub mod auth;
pub mod console;
pub mod error;
pub mod files;
pub mod live;
pub mod oidc;
pub mod openapi;
pub mod ops;
pub mod runs;
pub mod schedules;
pub mod specs;
pub mod tokens;
pub mod upload;
pub mod views;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use actix::Addr;
use actix_web::{web, App, HttpResponse, HttpServer};
use anyhow::Context as _;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::ApiConfig;
use crate::serve::board::Board;
use crate::serve::history::History;
use crate::serve::profile::Env;
use crate::serve::registry::Runs;
use error::ApiError;

/// History calls (reads, token checks) waiting at once.
pub const MAX_CALLS: usize = 64;
/// Largest JSON body (token requests, cancel reasons).
pub const MAX_JSON_BYTES: usize = 64 << 10;

/// A spec name in a path: what `messages::spec::check_name` accepts of a spec's `name`.
pub fn checked_spec_name(name: &str) -> Result<&str, ApiError> {
    messages::spec::check_name(name)
        .map(|()| name)
        .map_err(|e| ApiError::not_found(format!("no spec {name:?} ({e})")))
}

/// The query string as `T`, read in the handler — after the caller's role was checked, so a
/// bad query never answers before a missing token does.
pub fn query<T: serde::de::DeserializeOwned>(req: &actix_web::HttpRequest) -> Result<T, ApiError> {
    web::Query::<T>::from_query(req.query_string())
        .map(web::Query::into_inner)
        .map_err(|e| ApiError::bad_request(format!("the query: {e}")))
}

/// A request body, at most `limit` bytes: more is refused (413) as soon as it arrives.
pub async fn read_body(mut payload: web::Payload, limit: usize) -> Result<web::Bytes, ApiError> {
    use futures::StreamExt;
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::bad_request(format!("reading the body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::too_large(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}
/// What every handler shares.
pub struct Api {
    pub runs: Addr<Runs>,
    pub env: Arc<Env>,
    pub board: Board,
    pub history: History,
    /// Why the history could not be opened, if it could not: the API then answers 503.
    pub history_error: Option<String>,
    pub results_dir: PathBuf,
    /// `[api.oidc]`: OIDC bearer tokens are accepted too.
    pub oidc: Option<oidc::Oidc>,
    calls: Arc<Semaphore>,
    streams: Arc<Semaphore>,
}

impl Api {
    pub fn new(
        runs: Addr<Runs>,
        env: Arc<Env>,
        board: Board,
        history: History,
        history_error: Option<String>,
        max_streams: usize,
        oidc: Option<oidc::Oidc>,
    ) -> Api {
        let results_dir = env.results_dir.clone();
        Api {
            oidc,
            runs,
            env,
            board,
            history,
            history_error,
            results_dir,
            calls: Arc::new(Semaphore::new(MAX_CALLS)),
            streams: Arc::new(Semaphore::new(max_streams)),
        }
    }

    /// A place among the [`MAX_CALLS`] history calls, or 503 at once.
    pub fn call_permit(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        self.calls
            .clone()
            .try_acquire_owned()
            .map_err(|_| ApiError::busy("too many requests waiting on the run history"))
    }

    /// Runs `f` on the history's thread (`History::call`), holding one of the [`MAX_CALLS`]
    /// places while it waits.
    pub async fn store<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn crate::store::RunStore) -> Result<T, crate::store::StoreError>
            + Send
            + 'static,
    ) -> Result<T, ApiError> {
        let _permit = self.call_permit()?;
        Ok(self.history.call(f).await?)
    }

    /// How the console signs in with the OIDC provider, if it can.
    pub fn oidc_login(&self) -> Option<console::LoginConfig> {
        self.oidc.as_ref().and_then(oidc::Oidc::login)
    }

    pub fn stream_permit(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        self.streams
            .clone()
            .try_acquire_owned()
            .map_err(|_| ApiError::busy("too many live streams open: try again later"))
    }
}

/// The API, listening.
pub struct Listening {
    pub addr: SocketAddr,
    pub tls: bool,
    pub handle: actix_web::dev::ServerHandle,
}

impl Listening {
    pub fn url(&self) -> String {
        format!(
            "{}://{}",
            if self.tls { "https" } else { "http" },
            self.addr
        )
    }
}

fn tls_config(cfg: &ApiConfig) -> anyhow::Result<Option<rustls::ServerConfig>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let (Some(cert), Some(key)) = (&cfg.tls_cert, &cfg.tls_key) else {
        return Ok(None);
    };
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| anyhow::anyhow!("[api] tls_cert {}: {e}", cert.display()))?;
    if certs.is_empty() {
        anyhow::bail!("[api] tls_cert {}: no certificate in it", cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| anyhow::anyhow!("[api] tls_key {}: {e}", key.display()))?;
    let mut c = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .context("TLS versions")?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .context("[api] tls_cert and tls_key do not make a certificate")?;
    c.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(c))
}

/// Every route, under `/api/v1`.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/api/v1")
            .configure(ops::routes)
            .configure(openapi::routes)
            .configure(runs::routes)
            .configure(live::routes)
            .configure(files::routes)
            .configure(specs::routes)
            .configure(schedules::routes)
            .configure(tokens::routes),
    )
    .configure(console::routes)
    .default_service(web::to(|| async {
        Err::<HttpResponse, _>(ApiError::not_found(
            "no such endpoint (the API is under /api/v1; see /api/v1/openapi.json)",
        ))
    }));
}

/// Binds and starts the API on its own worker thread; it stops with `handle.stop`.
pub fn start(cfg: &ApiConfig, api: Api) -> anyhow::Result<Listening> {
    let tls = tls_config(cfg)?;
    let data = web::Data::new(api);
    let server = HttpServer::new(move || App::new().app_data(data.clone()).configure(routes))
        .workers(1)
        .disable_signals()
        .shutdown_timeout(5);
    let server = match &tls {
        Some(t) => server.bind_rustls_0_23(cfg.listen, t.clone()),
        None => server.bind(cfg.listen),
    }
    .with_context(|| format!("[api] listen {}", cfg.listen))?;
    let addr = server
        .addrs()
        .first()
        .copied()
        .context("the API bound no address")?;
    let server = server.run();
    let handle = server.handle();
    actix::spawn(async move {
        if let Err(e) = server.await {
            tracing::error!(error = %e, "the API server stopped");
        }
    });
    Ok(Listening {
        addr,
        tls: tls.is_some(),
        handle,
    })
}
