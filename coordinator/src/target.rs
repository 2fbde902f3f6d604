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

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::future::Future;
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

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

// ---------------------------------------------------------------------------
// TLS

fn tls_acceptor(listen_ip: IpAddr) -> io::Result<(TlsAcceptor, Vec<u8>)> {
    let mut names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    if !listen_ip.is_unspecified() && !listen_ip.is_loopback() {
        names.push(listen_ip.to_string());
    }
    let certified = rcgen::generate_simple_self_signed(names).map_err(io::Error::other)?;
    let cert_der = certified.cert.der().to_vec();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .with_no_client_auth()
        .with_single_cert(vec![CertificateDer::from(cert_der.clone())], key)
        .map_err(io::Error::other)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok((TlsAcceptor::from(Arc::new(config)), cert_der))
}

// ---------------------------------------------------------------------------
// Accepting and serving connections

type Builder = auto::Builder<TokioExecutor>;

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    tls: Option<TlsAcceptor>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut builder = Builder::new(TokioExecutor::new());
    // No timer: hyper's default header-read timeout would arm (allocate) a timer
    // for every request head, which costs throughput on the hot path.
    builder.http1().keep_alive(true).header_read_timeout(None);
    let builder = Arc::new(builder);
    loop {
        let accepted = tokio::select! {
            biased;
            _ = shutdown.changed() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // E.g. EMFILE: back off a little instead of spinning.
                warn!(error = %e, "herd target: accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if let Err(e) = stream.set_nodelay(true) {
            debug!(error = %e, %peer, "set_nodelay failed");
        }
        let builder = Arc::clone(&builder);
        let shared = Arc::clone(&shared);
        let shutdown = shutdown.clone();
        match &tls {
            None => {
                tokio::spawn(serve_connection(builder, stream, shared, shutdown));
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
                    {
                        Ok(Ok(tls_stream)) => {
                            serve_connection(builder, tls_stream, shared, shutdown).await
                        }
                        Ok(Err(e)) => debug!(error = %e, %peer, "TLS handshake failed"),
                        Err(_) => debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        }
    }
    debug!("herd target accept loop stopped");
}

async fn serve_connection<I>(
    builder: Arc<Builder>,
    io: I,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| handle(Arc::clone(&shared), req));
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    tokio::select! {
        biased;
        res = conn.as_mut() => {
            if let Err(e) = res {
                debug!(error = %e, "connection ended with an error");
            }
        }
        _ = shutdown.changed() => {
            conn.as_mut().graceful_shutdown();
            if tokio::time::timeout(SHUTDOWN_GRACE, conn).await.is_err() {
                debug!("connection dropped at shutdown");
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Shared state and counters

struct Shared {
    counters: Counters,
    base_delay: Option<Duration>,
    epoch: Instant,
    /// Nanoseconds since `epoch` until which counted requests are held; 0 = no stall.
    stall_until: AtomicU64,
}

impl Shared {
    fn new(base_delay: Option<Duration>) -> Self {
        Shared {
            counters: Counters::new(),
            base_delay: base_delay.filter(|d| !d.is_zero()),
            epoch: Instant::now(),
            stall_until: AtomicU64::new(0),
        }
    }

    fn nanos_since_epoch(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// True when a counted request must wait (stall window or base delay).
    #[inline]
    fn must_wait(&self) -> bool {
        self.base_delay.is_some() || self.stall_until.load(Relaxed) != 0
    }

    /// Holds a counted request through any stall window, then the base delay.
    async fn wait(&self) {
        loop {
            let until = self.stall_until.load(Relaxed);
            if until == 0 {
                break;
            }
            let now = self.nanos_since_epoch();
            if now >= until {
                // Window over: clear it so the hot path goes back to one atomic load.
                let _ = self
                    .stall_until
                    .compare_exchange(until, 0, Relaxed, Relaxed);
                break;
            }
            // The window may be moved by another /__stall meanwhile: look again after.
            tokio::time::sleep_until(self.epoch + Duration::from_nanos(until)).await;
        }
        if let Some(d) = self.base_delay {
            tokio::time::sleep(d).await;
        }
    }

    fn stall_for(&self, ms: u64) {
        if ms == 0 {
            self.stall_until.store(0, Relaxed);
            return;
        }
        let until = self
            .nanos_since_epoch()
            .saturating_add(ms.saturating_mul(1_000_000))
            .max(1);
        self.stall_until.store(until, Relaxed);
    }
}

/// Methods with their own atomic counter, in index order.
const KNOWN_METHODS: [Method; 9] = [
    Method::GET,
    Method::POST,
    Method::PUT,
    Method::DELETE,
    Method::HEAD,
    Method::OPTIONS,
    Method::PATCH,
    Method::CONNECT,
    Method::TRACE,
];

/// The hot-path routes with their own atomic counter.
const FAST_PATHS: [&str; 2] = ["/", "/fast"];

const MIN_STATUS: u16 = 100;
const STATUS_SLOTS: usize = 900; // 100..=999

struct Counters {
    requests: AtomicU64,
    fast_paths: [AtomicU64; FAST_PATHS.len()],
    methods: [AtomicU64; KNOWN_METHODS.len()],
    statuses: Box<[AtomicU64]>,
    other_paths: Mutex<HashMap<String, u64>>,
    other_methods: Mutex<HashMap<String, u64>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn bump_key(map: &mut HashMap<String, u64>, key: &str) {
    if let Some(n) = map.get_mut(key) {
        *n += 1;
    } else if map.len() < MAX_TRACKED_KEYS {
        map.insert(key.to_owned(), 1);
    } else {
        *map.entry(OVERFLOW_KEY.to_owned()).or_insert(0) += 1;
    }
}

impl Counters {
    fn new() -> Self {
        Counters {
            requests: AtomicU64::new(0),
            fast_paths: Default::default(),
            methods: Default::default(),
            statuses: (0..STATUS_SLOTS).map(|_| AtomicU64::new(0)).collect(),
            other_paths: Mutex::new(HashMap::new()),
            other_methods: Mutex::new(HashMap::new()),
        }
    }

    #[inline]
    fn count_method(&self, method: &Method) {
        for (i, known) in KNOWN_METHODS.iter().enumerate() {
            if method == known {
                self.methods[i].fetch_add(1, Relaxed);
                return;
            }
        }
        bump_key(&mut lock(&self.other_methods), method.as_str());
    }

    #[inline]
    fn count_status(&self, status: StatusCode) {
        let slot = usize::from(status.as_u16().saturating_sub(MIN_STATUS));
        if let Some(counter) = self.statuses.get(slot) {
            counter.fetch_add(1, Relaxed);
        }
    }

    fn snapshot(&self) -> TargetStats {
        let mut stats = TargetStats {
            requests: self.requests.load(Relaxed),
            ..TargetStats::default()
        };
        for (path, n) in lock(&self.other_paths).iter() {
            stats.by_path.insert(path.clone(), *n);
        }
        for (path, counter) in FAST_PATHS.iter().zip(&self.fast_paths) {
            let n = counter.load(Relaxed);
            if n > 0 {
                stats.by_path.insert((*path).to_string(), n);
            }
        }
        for (m, n) in lock(&self.other_methods).iter() {
            stats.by_method.insert(m.clone(), *n);
        }
        for (method, counter) in KNOWN_METHODS.iter().zip(&self.methods) {
            let n = counter.load(Relaxed);
            if n > 0 {
                stats.by_method.insert(method.as_str().to_string(), n);
            }
        }
        for (slot, counter) in self.statuses.iter().enumerate() {
            let n = counter.load(Relaxed);
            if n > 0 {
                // slot < 900, so this fits in u16.
                let code = MIN_STATUS + u16::try_from(slot).unwrap_or(0);
                stats.by_status.insert(code, n);
            }
        }
        stats
    }

    fn reset(&self) {
        self.requests.store(0, Relaxed);
        for c in self
            .fast_paths
            .iter()
            .chain(&self.methods)
            .chain(self.statuses.iter())
        {
            c.store(0, Relaxed);
        }
        lock(&self.other_paths).clear();
        lock(&self.other_methods).clear();
    }
}

// ---------------------------------------------------------------------------
// Request handling

type Resp = Response<Full<Bytes>>;

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Resp, Infallible> {
    let path = req.uri().path();

    // Hot path: a few relaxed atomic adds, no allocation of our own.
    let fast = FAST_PATHS.iter().position(|p| *p == path);
    if let Some(idx) = fast {
        let counters = &shared.counters;
        counters.requests.fetch_add(1, Relaxed);
        counters.fast_paths[idx].fetch_add(1, Relaxed);
        counters.count_method(req.method());
        if shared.must_wait() {
            shared.wait().await;
        }
        counters.count_status(StatusCode::OK);
        return Ok(Response::new(Full::new(Bytes::from_static(b"ok"))));
    }

    if let Some(control) = path.strip_prefix("/__") {
        return Ok(handle_control(&shared, control, &req));
    }

    let counters = &shared.counters;
    counters.requests.fetch_add(1, Relaxed);
    bump_key(&mut lock(&counters.other_paths), path);
    counters.count_method(req.method());
    if shared.must_wait() {
        shared.wait().await;
    }
    let resp = route(req).await;
    counters.count_status(resp.status());
    Ok(resp)
}

fn handle_control(shared: &Shared, name: &str, req: &Request<Incoming>) -> Resp {
    let method = req.method();
    match name {
        "stats" if method == Method::GET => match serde_json::to_vec(&shared.counters.snapshot()) {
            Ok(body) => json_response(StatusCode::OK, body),
            Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        },
        "reset" if method == Method::POST => {
            shared.counters.reset();
            text(StatusCode::OK, "ok")
        }
        "stall" if method == Method::POST => {
            match query_param(req.uri().query(), "ms").and_then(|v| v.parse::<u64>().ok()) {
                Some(ms) => {
                    shared.stall_for(ms);
                    json_response(StatusCode::OK, format!("{{\"stall_ms\":{ms}}}"))
                }
                None => text(StatusCode::BAD_REQUEST, "need ?ms=<milliseconds>"),
            }
        }
        "stats" | "reset" | "stall" => text(StatusCode::METHOD_NOT_ALLOWED, ""),
        _ => text(StatusCode::NOT_FOUND, "unknown control route"),
    }
}

async fn route(req: Request<Incoming>) -> Resp {
    let path = req.uri().path();
    let trimmed = path.strip_prefix('/').unwrap_or(path);
    let (first, rest) = match trimmed.split_once('/') {
        Some((first, rest)) => (first, Some(rest)),
        None => (trimmed, None),
    };
    match (first, rest) {
        ("delay", Some(ms)) => match ms.parse::<u64>() {
            Ok(ms) => {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                ok()
            }
            Err(_) => bad_request("delay must be a number of milliseconds"),
        },
        ("status", Some(code)) => match code.parse::<u16>().ok().filter(|c| *c >= 200) {
            Some(code) => match StatusCode::from_u16(code) {
                Ok(status) => empty(status),
                Err(_) => bad_request("status must be 200..=999"),
            },
            None => bad_request("status must be 200..=999"),
        },
        ("bytes", Some(n)) => match n.parse::<usize>() {
            Ok(n) if n <= MAX_BODY_BYTES => bytes_response(n),
            Ok(_) => bad_request("at most 10 MiB"),
            Err(_) => bad_request("bytes must be a number"),
        },
        ("echo", None) => echo(req).await,
        ("login", None) => {
            if req.method() == Method::POST {
                login(req).await
            } else {
                text(StatusCode::METHOD_NOT_ALLOWED, "POST only")
            }
        }
        ("me", None) => {
            if req.method() == Method::GET || req.method() == Method::HEAD {
                me(req.headers())
            } else {
                text(StatusCode::METHOD_NOT_ALLOWED, "GET only")
            }
        }
        ("items", Some(id)) if !id.is_empty() && !id.contains('/') => item(id),
        ("redirect", Some(n)) => match n.parse::<u64>() {
            Ok(0) => ok(),
            Ok(n) => {
                let mut resp = empty(StatusCode::FOUND);
                match HeaderValue::from_str(&format!("/redirect/{}", n - 1)) {
                    Ok(loc) => {
                        resp.headers_mut().insert(header::LOCATION, loc);
                        resp
                    }
                    Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
                }
            }
            Err(_) => bad_request("redirect count must be a number"),
        },
        ("cookie", Some("set")) => cookie_set(req.uri().query()),
        ("cookie", Some("get")) => cookie_get(req.headers()),
        _ => text(StatusCode::NOT_FOUND, "not found"),
    }
}

fn ok() -> Resp {
    Response::new(Full::new(Bytes::from_static(b"ok")))
}

fn empty(status: StatusCode) -> Resp {
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = status;
    resp
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Resp {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

fn bad_request(msg: &'static str) -> Resp {
    text(StatusCode::BAD_REQUEST, msg)
}

fn json_response(status: StatusCode, body: impl Into<Bytes>) -> Resp {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

fn json_value(status: StatusCode, value: &serde_json::Value) -> Resp {
    match serde_json::to_vec(value) {
        Ok(body) => json_response(status, body),
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

fn bytes_response(n: usize) -> Resp {
    static BLOB: OnceLock<Bytes> = OnceLock::new();
    let blob = BLOB.get_or_init(|| Bytes::from(vec![b'x'; MAX_BODY_BYTES]));
    let mut resp = Response::new(Full::new(blob.slice(..n)));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    resp
}

/// Reads the request body, up to [`MAX_BODY_BYTES`].
async fn read_body(req: Request<Incoming>) -> Result<(http::request::Parts, Bytes), Resp> {
    let (parts, body) = req.into_parts();
    match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => Ok((parts, collected.to_bytes())),
        Err(e) => {
            if e.is::<http_body_util::LengthLimitError>() {
                Err(text(StatusCode::PAYLOAD_TOO_LARGE, "body over 10 MiB"))
            } else {
                Err(bad_request("could not read the request body"))
            }
        }
    }
}

async fn echo(req: Request<Incoming>) -> Resp {
    let (parts, body) = match read_body(req).await {
        Ok(pair) => pair,
        Err(resp) => return resp,
    };
    let mut headers = serde_json::Map::new();
    for (name, value) in &parts.headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        match headers.get_mut(name.as_str()) {
            Some(serde_json::Value::String(prev)) => {
                prev.push_str(", ");
                prev.push_str(&value);
            }
            _ => {
                headers.insert(name.as_str().to_owned(), serde_json::Value::String(value));
            }
        }
    }
    let value = serde_json::json!({
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "query": parts.uri.query().unwrap_or(""),
        "headers": headers,
        "body": String::from_utf8_lossy(&body),
    });
    json_value(StatusCode::OK, &value)
}

#[derive(Deserialize)]
struct LoginRequest {
    username: String,
    #[allow(dead_code)] // required to be present, never checked
    password: String,
}

async fn login(req: Request<Incoming>) -> Resp {
    let (_, body) = match read_body(req).await {
        Ok(pair) => pair,
        Err(resp) => return resp,
    };
    match serde_json::from_slice::<LoginRequest>(&body) {
        Ok(login) if !login.username.is_empty() => json_value(
            StatusCode::OK,
            &serde_json::json!({
                "token": format!("tok-{}", login.username),
                "user": login.username,
            }),
        ),
        _ => bad_request("want JSON {\"username\":\"..\",\"password\":\"..\"}"),
    }
}

fn me(headers: &HeaderMap) -> Resp {
    let user = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then_some(token.trim())
        })
        .and_then(|token| token.strip_prefix("tok-"))
        .filter(|user| !user.is_empty());
    match user {
        Some(user) => json_value(StatusCode::OK, &serde_json::json!({ "user": user })),
        None => text(StatusCode::UNAUTHORIZED, "unauthorized"),
    }
}

fn item(id: &str) -> Resp {
    let id_value = match id.parse::<u64>() {
        Ok(n) => serde_json::Value::from(n),
        Err(_) => serde_json::Value::from(id),
    };
    json_value(
        StatusCode::OK,
        &serde_json::json!({ "id": id_value, "name": format!("item-{id}") }),
    )
}

fn cookie_set(query: Option<&str>) -> Resp {
    let mut resp = ok();
    for pair in query.unwrap_or("").split('&') {
        let Some((name, value)) = pair.split_once('=') else {
            continue;
        };
        if name.is_empty() {
            continue;
        }
        match HeaderValue::from_str(&format!("{name}={value}; Path=/")) {
            Ok(v) => {
                resp.headers_mut().append(header::SET_COOKIE, v);
            }
            Err(_) => return bad_request("invalid cookie"),
        }
    }
    resp
}

fn cookie_get(headers: &HeaderMap) -> Resp {
    // HTTP/2 clients may split cookies over several `cookie` headers.
    let mut body = Vec::new();
    for value in headers.get_all(header::COOKIE) {
        if !body.is_empty() {
            body.extend_from_slice(b"; ");
        }
        body.extend_from_slice(value.as_bytes());
    }
    text(StatusCode::OK, body)
}

fn query_param<'q>(query: Option<&'q str>, key: &str) -> Option<&'q str> {
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

// ---------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Empty;
    use hyper::client::conn::{http1, http2};
    use std::time::Instant as StdInstant;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    type Sender = http1::SendRequest<Full<Bytes>>;

    async fn start() -> Target {
        Target::start(TargetConfig::default()).await.unwrap()
    }

    async fn connect(addr: SocketAddr) -> Sender {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (sender, conn) = http1::handshake(TokioIo::new(stream)).await.unwrap();
        tokio::spawn(conn);
        sender
    }

    struct Reply {
        status: StatusCode,
        headers: HeaderMap,
        body: Bytes,
    }

    impl Reply {
        fn json(&self) -> serde_json::Value {
            serde_json::from_slice(&self.body).unwrap()
        }
    }

    async fn send(
        sender: &mut Sender,
        method: Method,
        uri: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Reply {
        let mut builder = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::HOST, "localhost");
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        let req = builder
            .body(Full::new(Bytes::copy_from_slice(body.as_bytes())))
            .unwrap();
        sender.ready().await.unwrap();
        let resp = sender.send_request(req).await.unwrap();
        let (parts, body) = resp.into_parts();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body: body.collect().await.unwrap().to_bytes(),
        }
    }

    async fn get(sender: &mut Sender, uri: &str) -> Reply {
        send(sender, Method::GET, uri, &[], "").await
    }

    async fn http_stats(sender: &mut Sender) -> TargetStats {
        let reply = get(sender, "/__stats").await;
        assert_eq!(reply.status, StatusCode::OK);
        serde_json::from_slice(&reply.body).unwrap()
    }

    #[tokio::test]
    async fn counts_are_exact_and_control_routes_are_not_counted() {
        let target = start().await;
        let mut c = connect(target.local_addr()).await;
        for _ in 0..100 {
            assert_eq!(get(&mut c, "/fast").await.body, "ok");
        }
        for _ in 0..7 {
            assert_eq!(get(&mut c, "/").await.status, StatusCode::OK);
        }
        for i in 0..5 {
            let r = send(&mut c, Method::POST, &format!("/items/{i}?x=1"), &[], "").await;
            assert_eq!(r.status, StatusCode::OK);
        }
        assert_eq!(get(&mut c, "/status/503").await.status, 503);
        assert_eq!(get(&mut c, "/status/503").await.status, 503);
        assert_eq!(get(&mut c, "/nope").await.status, StatusCode::NOT_FOUND);
        let r = send(
            &mut c,
            Method::from_bytes(b"BREW").unwrap(),
            "/fast",
            &[],
            "",
        )
        .await;
        assert_eq!(r.status, StatusCode::OK);
        // Control routes: not counted, and unknown ones are 404 but still not counted.
        assert_eq!(get(&mut c, "/__nope").await.status, StatusCode::NOT_FOUND);
        assert_eq!(get(&mut c, "/__reset").await.status, 405);

        let stats = http_stats(&mut c).await;
        assert_eq!(stats, target.stats());
        assert_eq!(stats.requests, 100 + 7 + 5 + 2 + 1 + 1);
        assert_eq!(stats.by_path["/fast"], 101);
        assert_eq!(stats.by_path["/"], 7);
        assert_eq!(stats.by_path["/items/0"], 1);
        assert_eq!(stats.by_path["/items/4"], 1);
        assert_eq!(stats.by_path["/status/503"], 2);
        assert_eq!(stats.by_path["/nope"], 1);
        assert_eq!(stats.by_path.len(), 2 + 5 + 1 + 1);
        assert_eq!(stats.by_status[&200], 100 + 7 + 5 + 1);
        assert_eq!(stats.by_status[&503], 2);
        assert_eq!(stats.by_status[&404], 1);
        assert_eq!(stats.by_status.len(), 3);
        assert_eq!(stats.by_method["GET"], 100 + 7 + 2 + 1);
        assert_eq!(stats.by_method["POST"], 5);
        assert_eq!(stats.by_method["BREW"], 1);
        assert_eq!(stats.by_method.len(), 3);

        let r = send(&mut c, Method::POST, "/__reset", &[], "").await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(http_stats(&mut c).await, TargetStats::default());
        get(&mut c, "/fast").await;
        assert_eq!(target.stats().requests, 1);
        target.reset();
        assert_eq!(target.stats(), TargetStats::default());
        target.shutdown().await;
    }

    #[tokio::test]
    async fn concurrent_connections_are_counted_exactly() {
        let target = start().await;
        let addr = target.local_addr();
        let mut tasks = Vec::new();
        for _ in 0..8 {
            tasks.push(tokio::spawn(async move {
                let mut c = connect(addr).await;
                for _ in 0..250 {
                    assert_eq!(get(&mut c, "/fast").await.status, StatusCode::OK);
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let stats = target.stats();
        assert_eq!(stats.requests, 2000);
        assert_eq!(stats.by_path["/fast"], 2000);
        assert_eq!(stats.by_status[&200], 2000);
        assert_eq!(stats.by_method["GET"], 2000);
        target.shutdown().await;
    }

    #[tokio::test]
    async fn raw_http11_keep_alive_and_pipelining() {
        let target = start().await;
        let mut s = TcpStream::connect(target.local_addr()).await.unwrap();
        s.write_all(
            b"GET /fast HTTP/1.1\r\nHost: x\r\n\r\n\
              GET /?q=1 HTTP/1.1\r\nHost: x\r\n\r\n\
              GET /fast HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await
        .unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.unwrap();
        let out = String::from_utf8(out).unwrap();
        assert_eq!(out.matches("HTTP/1.1 200 OK\r\n").count(), 3, "{out}");
        assert_eq!(out.matches("content-length: 2\r\n").count(), 3, "{out}");
        let stats = target.stats();
        assert_eq!(stats.requests, 3);
        assert_eq!(stats.by_path["/fast"], 2);
        assert_eq!(stats.by_path["/"], 1);
        target.shutdown().await;
    }

    #[tokio::test]
    async fn routes_behave() {
        let target = start().await;
        let mut c = connect(target.local_addr()).await;

        let t = StdInstant::now();
        let r = get(&mut c, "/delay/120").await;
        assert_eq!((r.status, &r.body[..]), (StatusCode::OK, &b"ok"[..]));
        assert!(t.elapsed() >= Duration::from_millis(120));
        assert_eq!(get(&mut c, "/delay/x").await.status, 400);

        assert_eq!(get(&mut c, "/status/418").await.status, 418);
        let r = get(&mut c, "/status/204").await;
        assert_eq!((r.status, r.body.len()), (StatusCode::NO_CONTENT, 0));
        assert_eq!(get(&mut c, "/status/99").await.status, 400);
        assert_eq!(get(&mut c, "/status/1000").await.status, 400);

        assert_eq!(get(&mut c, "/bytes/0").await.body.len(), 0);
        assert_eq!(get(&mut c, "/bytes/1000").await.body.len(), 1000);
        let r = get(&mut c, &format!("/bytes/{MAX_BODY_BYTES}")).await;
        assert_eq!(r.body.len(), MAX_BODY_BYTES);
        let r = get(&mut c, &format!("/bytes/{}", MAX_BODY_BYTES + 1)).await;
        assert_eq!(r.status, 400);

        let r = send(
            &mut c,
            Method::PUT,
            "/echo?a=1&b=2",
            &[("x-test", "v1"), ("content-type", "text/plain")],
            "héllo",
        )
        .await;
        assert_eq!(r.status, 200);
        let v = r.json();
        assert_eq!(v["method"], "PUT");
        assert_eq!(v["path"], "/echo");
        assert_eq!(v["query"], "a=1&b=2");
        assert_eq!(v["headers"]["x-test"], "v1");
        assert_eq!(v["headers"]["content-type"], "text/plain");
        assert_eq!(v["body"], "héllo");

        let r = get(&mut c, "/items/42").await;
        assert_eq!(r.headers[header::CONTENT_TYPE], "application/json");
        assert_eq!(r.json(), serde_json::json!({"id": 42, "name": "item-42"}));
        let r = get(&mut c, "/items/abc").await;
        assert_eq!(
            r.json(),
            serde_json::json!({"id": "abc", "name": "item-abc"})
        );
        assert_eq!(get(&mut c, "/items/").await.status, 404);

        let r = get(&mut c, "/redirect/2").await;
        assert_eq!(r.status, StatusCode::FOUND);
        assert_eq!(r.headers[header::LOCATION], "/redirect/1");
        let r = get(&mut c, "/redirect/0").await;
        assert_eq!((r.status, &r.body[..]), (StatusCode::OK, &b"ok"[..]));

        let r = get(&mut c, "/cookie/set?session=abc&theme=dark").await;
        assert_eq!(r.status, 200);
        let cookies: Vec<_> = r.headers.get_all(header::SET_COOKIE).iter().collect();
        assert_eq!(cookies, ["session=abc; Path=/", "theme=dark; Path=/"]);
        let r = send(
            &mut c,
            Method::GET,
            "/cookie/get",
            &[("cookie", "a=1; b=2")],
            "",
        )
        .await;
        assert_eq!((r.status, &r.body[..]), (StatusCode::OK, &b"a=1; b=2"[..]));
        let r = get(&mut c, "/cookie/get").await;
        assert_eq!((r.status, r.body.len()), (StatusCode::OK, 0));

        assert_eq!(get(&mut c, "/nowhere/at/all").await.status, 404);
        let r = send(&mut c, Method::POST, "/__stall", &[], "").await;
        assert_eq!(r.status, 400);
        target.shutdown().await;
    }

    #[tokio::test]
    async fn login_then_me() {
        let target = start().await;
        let mut c = connect(target.local_addr()).await;
        let body = r#"{"username":"alice","password":"pw"}"#;
        let r = send(&mut c, Method::POST, "/login", &[], body).await;
        assert_eq!(r.status, 200);
        let v = r.json();
        assert_eq!(
            v,
            serde_json::json!({"token": "tok-alice", "user": "alice"})
        );
        let auth = format!("Bearer {}", v["token"].as_str().unwrap());
        let r = send(&mut c, Method::GET, "/me", &[("authorization", &auth)], "").await;
        assert_eq!(r.status, 200);
        assert_eq!(r.json(), serde_json::json!({"user": "alice"}));

        assert_eq!(get(&mut c, "/me").await.status, 401);
        let r = send(
            &mut c,
            Method::GET,
            "/me",
            &[("authorization", "Bearer x")],
            "",
        )
        .await;
        assert_eq!(r.status, 401);
        let r = send(&mut c, Method::POST, "/login", &[], "not json").await;
        assert_eq!(r.status, 400);
        let r = send(&mut c, Method::POST, "/login", &[], r#"{"username":"a"}"#).await;
        assert_eq!(r.status, 400);
        assert_eq!(get(&mut c, "/login").await.status, 405);

        let stats = target.stats();
        assert_eq!(stats.requests, 7);
        assert_eq!(stats.by_status[&200], 2);
        assert_eq!(stats.by_status[&401], 2);
        assert_eq!(stats.by_status[&400], 2);
        assert_eq!(stats.by_status[&405], 1);
        target.shutdown().await;
    }

    #[tokio::test]
    async fn stall_holds_requests_for_the_window() {
        let target = start().await;
        let addr = target.local_addr();
        let mut c = connect(addr).await;
        let window = Duration::from_millis(500);
        let t0 = StdInstant::now();
        let r = send(&mut c, Method::POST, "/__stall?ms=500", &[], "").await;
        assert_eq!(r.status, 200);
        // One request right away, one arriving in the middle of the window, one control
        // request that must not be held.
        let first = tokio::spawn(async move {
            let mut c = connect(addr).await;
            get(&mut c, "/fast").await.status
        });
        let second = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let mut c = connect(addr).await;
            get(&mut c, "/items/1").await.status
        });
        let stats = http_stats(&mut c).await;
        assert!(t0.elapsed() < window, "control routes are not held");
        assert_eq!(stats.by_status.len(), 0, "nothing answered yet");
        assert_eq!(first.await.unwrap(), StatusCode::OK);
        assert!(t0.elapsed() >= window);
        assert_eq!(second.await.unwrap(), StatusCode::OK);
        assert!(t0.elapsed() >= window);
        // After the window requests flow freely again.
        let t1 = StdInstant::now();
        get(&mut c, "/fast").await;
        assert!(t1.elapsed() < window);
        assert_eq!(target.stats().requests, 3);
        target.shutdown().await;
    }

    #[tokio::test]
    async fn base_delay_applies_to_counted_requests_only() {
        let cfg = TargetConfig {
            base_delay: Some(Duration::from_millis(500)),
            ..TargetConfig::default()
        };
        let target = Target::start(cfg).await.unwrap();
        let mut c = connect(target.local_addr()).await;
        let t = StdInstant::now();
        get(&mut c, "/fast").await;
        assert!(t.elapsed() >= Duration::from_millis(500));
        let t = StdInstant::now();
        http_stats(&mut c).await;
        assert!(t.elapsed() < Duration::from_millis(400));
        target.shutdown().await;
    }

    async fn h2_get<T>(io: T, url: &str) -> (StatusCode, Bytes)
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (mut sender, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(io))
            .await
            .unwrap();
        tokio::spawn(conn);
        let req = Request::get(url).body(Empty::<Bytes>::new()).unwrap();
        let resp = sender.send_request(req).await.unwrap();
        assert_eq!(resp.version(), http::Version::HTTP_2);
        let status = resp.status();
        (status, resp.into_body().collect().await.unwrap().to_bytes())
    }

    #[tokio::test]
    async fn h2c_prior_knowledge() {
        let target = start().await;
        let stream = TcpStream::connect(target.local_addr()).await.unwrap();
        let url = format!("{}/fast", target.url());
        let (status, body) = h2_get(stream, &url).await;
        assert_eq!((status, &body[..]), (StatusCode::OK, &b"ok"[..]));
        assert_eq!(target.stats().requests, 1);
        target.shutdown().await;
    }

    async fn tls_connect(
        target: &Target,
        alpn: &[&[u8]],
    ) -> tokio_rustls::client::TlsStream<TcpStream> {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from(target.cert_der().unwrap()))
            .unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = TcpStream::connect(target.local_addr()).await.unwrap();
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        connector.connect(name, tcp).await.unwrap()
    }

    #[tokio::test]
    async fn tls_with_alpn_h2_and_http11() {
        let cfg = TargetConfig {
            tls: true,
            ..TargetConfig::default()
        };
        let target = Target::start(cfg).await.unwrap();
        assert!(target.url().starts_with("https://127.0.0.1:"));

        let tls = tls_connect(&target, &[b"h2", b"http/1.1"]).await;
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        let (status, body) = h2_get(tls, &format!("{}/items/7", target.url())).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&body).unwrap(),
            serde_json::json!({"id": 7, "name": "item-7"})
        );

        let tls = tls_connect(&target, &[b"http/1.1"]).await;
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
        let (mut sender, conn) = http1::handshake(TokioIo::new(tls)).await.unwrap();
        tokio::spawn(conn);
        let r = get(&mut sender, "/fast").await;
        assert_eq!((r.status, &r.body[..]), (StatusCode::OK, &b"ok"[..]));

        assert_eq!(target.stats().requests, 2);
        target.shutdown().await;
    }

    #[tokio::test]
    async fn shutdown_stops_listening_even_with_requests_in_flight() {
        let target = start().await;
        let addr = target.local_addr();
        let in_flight = tokio::spawn(async move {
            let stream = TcpStream::connect(addr).await.unwrap();
            let (mut sender, conn) = http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream))
                .await
                .unwrap();
            tokio::spawn(conn);
            let req = Request::get("/delay/60000")
                .header(header::HOST, "x")
                .body(Full::new(Bytes::new()))
                .unwrap();
            sender.send_request(req).await.is_err()
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        let t = StdInstant::now();
        target.shutdown().await;
        assert!(t.elapsed() < Duration::from_secs(3));
        assert!(in_flight.await.unwrap(), "the held request was cut off");
        assert!(TcpStream::connect(addr).await.is_err());
    }

    #[tokio::test]
    async fn run_cli_prints_one_line_and_stops_on_shutdown() {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let (line_tx, line_rx) = std::sync::mpsc::channel::<Vec<u8>>();
        struct Out(Vec<u8>, std::sync::mpsc::Sender<Vec<u8>>);
        impl Write for Out {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                self.0.extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                let _ = self.1.send(self.0.clone());
                Ok(())
            }
        }
        let cli = tokio::spawn(run_cli_to(
            TargetConfig::default(),
            async {
                let _ = rx.await;
            },
            Out(Vec::new(), line_tx),
        ));
        let printed = tokio::task::spawn_blocking(move || line_rx.recv().unwrap())
            .await
            .unwrap();
        let printed = String::from_utf8(printed).unwrap();
        let url = printed
            .strip_prefix("herd target listening on ")
            .and_then(|s| s.strip_suffix('\n'))
            .unwrap();
        assert!(url.starts_with("http://127.0.0.1:"), "{printed}");
        let addr: SocketAddr = url.trim_start_matches("http://").parse().unwrap();
        let mut c = connect(addr).await;
        assert_eq!(get(&mut c, "/fast").await.status, StatusCode::OK);
        tx.send(()).unwrap();
        cli.await.unwrap().unwrap();
        assert!(TcpStream::connect(addr).await.is_err());
    }
}
