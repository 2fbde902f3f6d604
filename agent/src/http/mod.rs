//! The native HTTP engine: one [`Client`] per VU, holding that VU's connections and cookies.
//!
//! Built on hyper's connection-level API rather than a pooled client: a VU owns its connection,
//! like a browser tab or a k6 VU, and nothing on the hot path takes a lock.

mod conn;
pub mod tls;

use std::fmt;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HeaderMap, HeaderValue, CONTENT_LENGTH, COOKIE, HOST, LOCATION, SET_COOKIE};
use http::{Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use messages::policy::{Denied, TargetPolicy, UrlVerdict};
use messages::spec::HttpVersion;

use conn::{Conn, ConnectOptions, Sender};
pub use conn::{ConnectTimings, WireCounters};

/// The first message of each kind of failed request in this process, for people to read why
/// requests failed (`Finished.error_samples`, the standalone summary). One atomic load once
/// a kind has its sample: nothing on the hot path waits.
static ERROR_SAMPLES: [std::sync::OnceLock<String>; ErrorKind::COUNT] =
    [const { std::sync::OnceLock::new() }; ErrorKind::COUNT];

/// Keeps `e`'s message if it is the first of its kind.
pub fn note_error(e: &HttpError) {
    let slot = &ERROR_SAMPLES[e.kind as usize];
    if slot.get().is_none() {
        let _ = slot.set(messages::wire::clip_text(
            &e.message,
            messages::wire::MAX_ERROR_SAMPLE_BYTES,
        ));
    }
}

/// (kind, first message) for every kind seen.
pub fn error_samples() -> Vec<(String, String)> {
    ErrorKind::ALL
        .iter()
        .filter_map(|k| {
            ERROR_SAMPLES[*k as usize]
                .get()
                .map(|m| (k.as_str().to_string(), m.clone()))
        })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    Connect,
    Tls,
    Timeout,
    /// The connection broke mid-request.
    Io,
    Protocol,
    Redirect,
    InvalidRequest,
    /// The target policy refused the URL or every address it resolved to: nothing was sent.
    Policy,
}

impl ErrorKind {
    const COUNT: usize = 8;
    const ALL: [ErrorKind; ErrorKind::COUNT] = [
        ErrorKind::Connect,
        ErrorKind::Tls,
        ErrorKind::Timeout,
        ErrorKind::Io,
        ErrorKind::Protocol,
        ErrorKind::Redirect,
        ErrorKind::InvalidRequest,
        ErrorKind::Policy,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::Tls => "tls",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Io => "io",
            ErrorKind::Protocol => "protocol",
            ErrorKind::Redirect => "redirect",
            ErrorKind::InvalidRequest => "invalid-request",
            ErrorKind::Policy => "policy",
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{kind:?}: {message}")]
pub struct HttpError {
    pub kind: ErrorKind,
    pub message: String,
}

impl HttpError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> HttpError {
        HttpError {
            kind,
            message: message.into(),
        }
    }
}

/// Scheme, host and port: what a connection is keyed by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    pub tls: bool,
    pub host: String,
    pub port: u16,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

impl Origin {
    pub fn from_url(u: &url::Url) -> Result<Origin, HttpError> {
        let tls = match u.scheme() {
            "http" => false,
            "https" => true,
            s => {
                return Err(HttpError::new(
                    ErrorKind::InvalidRequest,
                    format!("unsupported scheme {s:?} in {u}"),
                ))
            }
        };
        let host = match u.host() {
            Some(url::Host::Ipv6(a)) => a.to_string(),
            Some(h) => h.to_string(),
            None => {
                return Err(HttpError::new(
                    ErrorKind::InvalidRequest,
                    format!("no host in {u}"),
                ))
            }
        };
        let port = u
            .port_or_known_default()
            .unwrap_or(if tls { 443 } else { 80 });
        Ok(Origin { tls, host, port })
    }

    /// `Host` header value: the port is left out when it is the scheme's default.
    pub fn authority(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if (self.tls && self.port == 443) || (!self.tls && self.port == 80) {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

/// A request ready to send: origin, path, `Host` and the request target resolved once, so a
/// pre-built request is sent without any parsing or formatting.
#[derive(Debug, Clone)]
pub struct OutRequest {
    pub method: Method,
    pub origin: Origin,
    /// `/path?query`
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The target policy's URL check of this request, made where the URL was built (once for
    /// a pre-built request): a denied one fails with [`ErrorKind::Policy`] before connecting.
    pub verdict: Result<UrlVerdict, Denied>,
    host: HeaderValue,
    target: Uri,
}

impl OutRequest {
    pub fn new(
        method: Method,
        origin: Origin,
        path: String,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<OutRequest, HttpError> {
        let host = HeaderValue::from_str(&origin.authority()).map_err(|e| {
            HttpError::new(
                ErrorKind::InvalidRequest,
                format!("bad host {:?}: {e}", origin.host),
            )
        })?;
        let target: Uri = path.parse().map_err(|e| {
            HttpError::new(
                ErrorKind::InvalidRequest,
                format!("bad request target {path:?}: {e}"),
            )
        })?;
        Ok(OutRequest {
            method,
            origin,
            path,
            headers,
            body,
            verdict: Ok(UrlVerdict::ByAddress),
            host,
            target,
        })
    }

    /// This request with the policy's verdict on its URL.
    pub fn checked(mut self, verdict: Result<UrlVerdict, Denied>) -> OutRequest {
        self.verdict = verdict;
        self
    }

    fn refused(&self, why: impl fmt::Display) -> HttpError {
        HttpError::new(
            ErrorKind::Policy,
            format!("{} {}{}: {why}", self.method, self.origin, self.path),
        )
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Timings {
    /// TCP connect, when this request had to open a connection.
    pub connect: Duration,
    pub tls: Duration,
    /// From sending to the response head.
    pub first_byte: Duration,
    /// From sending to the last body byte (what latency histograms record).
    pub total: Duration,
}

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: HeaderMap,
    /// The body, when the caller asked to keep it (checks and captures); else empty.
    pub body: Bytes,
    /// Bytes read and written on the wire for this request (headers, framing, TLS included).
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub timings: Timings,
    pub redirects: u32,
}

pub struct HttpConfig {
    pub version: HttpVersion,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub max_redirects: u32,
    pub cookies: bool,
    pub tls: Arc<rustls::ClientConfig>,
    /// Checked on every redirect hop and every connected address.
    pub policy: Arc<TargetPolicy>,
    /// Connections opened, by the HTTP version they speak: what `auto` actually got.
    pub versions: Arc<VersionCounts>,
}

/// Connections opened per HTTP version (one atomic add per connection, never per request).
#[derive(Debug, Default)]
pub struct VersionCounts {
    h1: std::sync::atomic::AtomicU64,
    h2: std::sync::atomic::AtomicU64,
}

impl VersionCounts {
    fn opened(&self, sender: &Sender) {
        let c = match sender {
            Sender::H1(_) => &self.h1,
            Sender::H2(_) => &self.h2,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// `("h1", n)`, `("h2", n)` for the versions used at all.
    pub fn snapshot(&self) -> Vec<(String, u64)> {
        [("h1", &self.h1), ("h2", &self.h2)]
            .into_iter()
            .map(|(k, c)| (k.to_string(), c.load(Ordering::Relaxed)))
            .filter(|(_, n)| *n > 0)
            .collect()
    }
}

pub struct Client {
    cfg: Arc<HttpConfig>,
    /// Usually one entry; more only after redirects to other origins.
    conns: Vec<(Origin, Conn)>,
    jar: Option<cookie_store::CookieStore>,
    /// One timer reused across requests (see [`Client::send`]).
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Client {
    pub fn new(cfg: Arc<HttpConfig>) -> Client {
        let jar = cfg.cookies.then(cookie_store::CookieStore::default);
        Client {
            cfg,
            conns: Vec::new(),
            jar,
            timer: None,
        }
    }

    /// Sends `req`, following redirects as configured, within the request timeout.
    ///
    /// A request fails with [`ErrorKind::Timeout`] at least `timeout` after it started and at
    /// most an eighth later: one timer is kept per VU and only re-armed when its deadline comes
    /// closer than `timeout`, instead of registering a timer for every request.
    pub async fn send(&mut self, req: &OutRequest, keep_body: bool) -> Result<Response, HttpError> {
        let timeout = self.cfg.timeout;
        let now = tokio::time::Instant::now();
        let far = now + timeout + timeout / 8;
        let mut timer = match self.timer.take() {
            Some(t) if t.deadline() >= now + timeout => t,
            Some(mut t) => {
                t.as_mut().reset(far);
                t
            }
            None => Box::pin(tokio::time::sleep_until(far)),
        };
        let result = tokio::select! {
            biased;
            r = self.send_following(req, keep_body) => r,
            _ = &mut timer => Err(HttpError::new(
                ErrorKind::Timeout,
                format!("no complete response within {timeout:?}"),
            )),
        };
        self.timer = Some(timer);
        result
    }

    async fn send_following(
        &mut self,
        first: &OutRequest,
        keep_body: bool,
    ) -> Result<Response, HttpError> {
        let started = Instant::now();
        // Borrowed until a redirect makes a new request.
        let mut req = std::borrow::Cow::Borrowed(first);
        let mut redirects = 0;
        let (mut bytes_in, mut bytes_out) = (0, 0);
        loop {
            let mut resp = self.send_once(req.as_ref(), keep_body).await?;
            bytes_in += resp.bytes_in;
            bytes_out += resp.bytes_out;
            let location = resp.headers.get(LOCATION).and_then(|l| l.to_str().ok());
            let follow = matches!(resp.status, 301 | 302 | 303 | 307 | 308)
                && location.is_some()
                && redirects < self.cfg.max_redirects;
            if !follow {
                if redirects > 0
                    && (300..400).contains(&resp.status)
                    && location.is_some()
                    && self.cfg.max_redirects > 0
                {
                    return Err(HttpError::new(
                        ErrorKind::Redirect,
                        format!("more than {} redirects", self.cfg.max_redirects),
                    ));
                }
                resp.redirects = redirects;
                resp.bytes_in = bytes_in;
                resp.bytes_out = bytes_out;
                resp.timings.total = started.elapsed();
                return Ok(resp);
            }
            let location = location.unwrap_or_default().to_string();
            let base = url::Url::parse(&format!("{}{}", req.origin, req.path)).map_err(|e| {
                HttpError::new(ErrorKind::Redirect, format!("bad request URL: {e}"))
            })?;
            let next = base.join(&location).map_err(|e| {
                HttpError::new(
                    ErrorKind::Redirect,
                    format!("bad Location {location:?}: {e}"),
                )
            })?;
            // Every hop is checked before it is followed: a target may redirect anywhere.
            let verdict = self.cfg.policy.check_url(&next).map_err(|d| {
                HttpError::new(ErrorKind::Policy, format!("redirect to {next}: {d}"))
            })?;
            let path = match next.query() {
                Some(q) => format!("{}?{q}", next.path()),
                None => next.path().to_string(),
            };
            let (mut method, mut body, mut headers) =
                (req.method.clone(), req.body.clone(), req.headers.clone());
            if resp.status == 303 || (matches!(resp.status, 301 | 302) && method == Method::POST) {
                method = Method::GET;
                body = Bytes::new();
                headers.remove(CONTENT_LENGTH);
                headers.remove(http::header::CONTENT_TYPE);
            }
            req = std::borrow::Cow::Owned(
                OutRequest::new(method, Origin::from_url(&next)?, path, headers, body)?
                    .checked(Ok(verdict)),
            );
            redirects += 1;
        }
    }

    async fn send_once(
        &mut self,
        req: &OutRequest,
        keep_body: bool,
    ) -> Result<Response, HttpError> {
        let verdict = match &req.verdict {
            Ok(v) => *v,
            Err(denied) => return Err(req.refused(denied)),
        };
        let mut timings = Timings::default();
        let idx = match self.conns.iter().position(|(o, _)| *o == req.origin) {
            Some(i) => i,
            None => {
                // Boxed: the TLS handshake's state is ~9 KB; inline it would be memcpy'd with
                // every request's future although it runs once per connection.
                let (c, t) = Box::pin(self.connect(&req.origin, verdict)).await?;
                timings.connect = t.connect;
                timings.tls = t.tls;
                self.conns.push((req.origin.clone(), c));
                self.conns.len() - 1
            }
        };
        // A connection opened for a URL an allow rule names carries an unnamed URL of the same
        // origin only if its address is allowed on its own.
        if verdict == UrlVerdict::ByAddress && !self.conns[idx].1.unnamed_ok {
            return Err(req.refused(
                "no allow rule names this URL and the address its origin connected to is not allowed on its own",
            ));
        }
        // A kept-alive connection the server closed shows up here: reconnect once.
        if !self.ready(idx).await {
            let (c, t) = Box::pin(self.connect(&req.origin, verdict)).await?;
            timings.connect = t.connect;
            timings.tls = t.tls;
            self.conns[idx].1 = c;
            if !self.ready(idx).await {
                self.conns.swap_remove(idx);
                return Err(HttpError::new(
                    ErrorKind::Io,
                    format!("new connection to {} closed at once", req.origin),
                ));
            }
        }
        // Parsing a URL per request is only worth it once the jar holds something.
        let jar_in_use = self
            .jar
            .as_ref()
            .is_some_and(|j| j.iter_any().next().is_some());
        let cookie_url = if jar_in_use { cookie_url_of(req) } else { None };
        let conn = &mut self.conns[idx].1;
        let http_req = build(
            req,
            matches!(conn.sender, Sender::H2(_)),
            self.jar.as_ref(),
            cookie_url.as_ref(),
        )?;
        let (r0, w0) = (
            conn.counters.read.load(Ordering::Relaxed),
            conn.counters.written.load(Ordering::Relaxed),
        );
        let sent = Instant::now();
        let result = match &mut conn.sender {
            Sender::H1(s) => s.send_request(http_req).await,
            Sender::H2(s) => s.send_request(http_req).await,
        };
        let resp = match result {
            Ok(r) => r,
            Err(e) => {
                self.conns.swap_remove(idx);
                return Err(classify(&e, "sending request"));
            }
        };
        timings.first_byte = sent.elapsed();
        let (parts, mut body) = resp.into_parts();
        let mut kept = Vec::new();
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(f) => {
                    if let Some(d) = f.data_ref() {
                        if keep_body {
                            kept.extend_from_slice(d);
                        }
                    }
                }
                Err(e) => {
                    self.conns.swap_remove(idx);
                    return Err(classify(&e, "reading response body"));
                }
            }
        }
        let counters = &self.conns[idx].1.counters;
        let bytes_in = counters.read.load(Ordering::Relaxed) - r0;
        let bytes_out = counters.written.load(Ordering::Relaxed) - w0;
        if let Some(jar) = self
            .jar
            .as_mut()
            .filter(|_| parts.headers.contains_key(SET_COOKIE))
        {
            let u = match cookie_url {
                Some(u) => u,
                None => cookie_url_of(req)
                    .ok_or_else(|| HttpError::new(ErrorKind::InvalidRequest, "bad request URL"))?,
            };
            let set: Vec<_> = parts
                .headers
                .get_all(SET_COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .filter_map(|s| cookie_store::RawCookie::parse(s.to_string()).ok())
                .collect();
            if !set.is_empty() {
                jar.store_response_cookies(set.into_iter(), &u);
            }
        }
        timings.total = sent.elapsed();
        Ok(Response {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body: Bytes::from(kept),
            bytes_in,
            bytes_out,
            timings,
            redirects: 0,
        })
    }

    async fn ready(&mut self, idx: usize) -> bool {
        // The synchronous check answers the common case without building a future.
        match &mut self.conns[idx].1.sender {
            Sender::H1(s) => s.is_ready() || s.ready().await.is_ok(),
            Sender::H2(s) => s.is_ready() || s.ready().await.is_ok(),
        }
    }

    async fn connect(
        &self,
        origin: &Origin,
        verdict: UrlVerdict,
    ) -> Result<(Conn, ConnectTimings), HttpError> {
        let opened = conn::open(
            origin,
            &ConnectOptions {
                version: self.cfg.version,
                tls: &self.cfg.tls,
                timeout: self.cfg.connect_timeout,
                policy: &self.cfg.policy,
                verdict,
            },
        )
        .await?;
        self.cfg.versions.opened(&opened.0.sender);
        Ok(opened)
    }
}

fn cookie_url_of(req: &OutRequest) -> Option<url::Url> {
    url::Url::parse(&format!("{}{}", req.origin, req.path)).ok()
}

fn classify(e: &hyper::Error, doing: &str) -> HttpError {
    let kind = if e.is_timeout() {
        ErrorKind::Timeout
    } else if e.is_parse() || e.is_user() {
        ErrorKind::Protocol
    } else {
        ErrorKind::Io
    };
    HttpError::new(kind, format!("{doing}: {e}"))
}

fn build(
    req: &OutRequest,
    h2: bool,
    jar: Option<&cookie_store::CookieStore>,
    cookie_url: Option<&url::Url>,
) -> Result<Request<Full<Bytes>>, HttpError> {
    // HTTP/2 carries scheme and authority as pseudo-headers, taken from an absolute URI.
    let uri: Uri = if h2 {
        format!("{}{}", req.origin, req.path).parse().map_err(|e| {
            HttpError::new(
                ErrorKind::InvalidRequest,
                format!("bad request target {:?}: {e}", req.path),
            )
        })?
    } else {
        req.target.clone()
    };
    let mut r = Request::new(Full::new(req.body.clone()));
    *r.method_mut() = req.method.clone();
    *r.uri_mut() = uri;
    *r.headers_mut() = req.headers.clone();
    if !h2 && !r.headers().contains_key(HOST) {
        r.headers_mut().insert(HOST, req.host.clone());
    }
    if let (Some(jar), Some(u)) = (jar, cookie_url) {
        let cookies: Vec<String> = jar
            .get_request_values(u)
            .map(|(n, v)| format!("{n}={v}"))
            .collect();
        if !cookies.is_empty() {
            if let Ok(v) = HeaderValue::from_str(&cookies.join("; ")) {
                r.headers_mut().insert(COOKIE, v);
            }
        }
    }
    Ok(r)
}
