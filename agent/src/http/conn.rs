//! Opening one connection: DNS, TCP, optional TLS with ALPN, then the HTTP/1.1 or HTTP/2
//! handshake. The socket is wrapped so the bytes really sent and received are counted.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use messages::policy::{TargetPolicy, UrlVerdict};
use messages::spec::HttpVersion;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::{ErrorKind, HttpError, Origin};

/// Bytes on the wire for one connection (TLS records included when TLS is used).
#[derive(Debug, Default)]
pub struct WireCounters {
    pub read: AtomicU64,
    pub written: AtomicU64,
}

pub struct Counting<S> {
    inner: S,
    counters: Arc<WireCounters>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Counting<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            self.counters.read.fetch_add(n as u64, Ordering::Relaxed);
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counting<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &r {
            self.counters
                .written
                .fetch_add(*n as u64, Ordering::Relaxed);
        }
        r
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = &r {
            self.counters
                .written
                .fetch_add(*n as u64, Ordering::Relaxed);
        }
        r
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

pub type ReqBody = Full<Bytes>;

pub enum Sender {
    H1(http1::SendRequest<ReqBody>),
    H2(http2::SendRequest<ReqBody>),
}

pub struct Conn {
    pub sender: Sender,
    pub counters: Arc<WireCounters>,
    /// The policy allows this connection's address on its own, not only for a URL an allow
    /// rule names (see [`TargetPolicy::check_addr`]); a later unnamed URL may reuse it only then.
    pub unnamed_ok: bool,
}

/// How long opening took, for the timing breakdown.
#[derive(Debug, Clone, Copy, Default)]
pub struct ConnectTimings {
    pub connect: Duration,
    pub tls: Duration,
}

pub struct ConnectOptions<'a> {
    pub version: HttpVersion,
    pub tls: &'a Arc<rustls::ClientConfig>,
    pub timeout: Duration,
    pub policy: &'a TargetPolicy,
    /// What the URL check said of the request that opens this connection.
    pub verdict: UrlVerdict,
}

/// DNS, then TCP to the first address the policy allows that accepts: the check is on the
/// address actually connected, so no name can lead a request where its address may not go.
/// Returns the stream and whether its address is allowed on its own ([`Conn::unnamed_ok`]).
async fn dial(origin: &Origin, opts: &ConnectOptions<'_>) -> Result<(TcpStream, bool), HttpError> {
    let host = (origin.host.as_str(), origin.port);
    if opts.policy.is_open() {
        let tcp = TcpStream::connect(host).await;
        return tcp
            .map(|t| (t, true))
            .map_err(|e| HttpError::new(ErrorKind::Connect, format!("connect to {origin}: {e}")));
    }
    let addrs = tokio::net::lookup_host(host)
        .await
        .map_err(|e| HttpError::new(ErrorKind::Connect, format!("resolve {origin}: {e}")))?;
    let mut denied: Option<(SocketAddr, messages::policy::Denied)> = None;
    let mut failed = None;
    for addr in addrs {
        if let Err(d) = opts.policy.check_addr(addr.ip(), opts.verdict) {
            denied.get_or_insert((addr, d));
            continue;
        }
        match TcpStream::connect(addr).await {
            Ok(tcp) => {
                let alone = opts.policy.check_addr(addr.ip(), UrlVerdict::ByAddress);
                return Ok((tcp, alone.is_ok()));
            }
            Err(e) => failed = Some(e),
        }
    }
    Err(match (failed, denied) {
        (Some(e), _) => HttpError::new(ErrorKind::Connect, format!("connect to {origin}: {e}")),
        (None, Some((addr, d))) => HttpError::new(
            ErrorKind::Policy,
            format!("connect to {origin}: address {}: {d}", addr.ip()),
        ),
        (None, None) => HttpError::new(
            ErrorKind::Connect,
            format!("resolve {origin}: no addresses"),
        ),
    })
}

pub async fn open(
    origin: &Origin,
    opts: &ConnectOptions<'_>,
) -> Result<(Conn, ConnectTimings), HttpError> {
    let t0 = Instant::now();
    let (tcp, unnamed_ok) = tokio::time::timeout(opts.timeout, dial(origin, opts))
        .await
        .map_err(|_| {
            HttpError::new(
                ErrorKind::Timeout,
                format!("connect to {origin} timed out after {:?}", opts.timeout),
            )
        })??;
    // Small requests must not wait for Nagle.
    let _ = tcp.set_nodelay(true);
    let connect = t0.elapsed();
    let counters = Arc::new(WireCounters::default());
    let io = Counting {
        inner: tcp,
        counters: counters.clone(),
    };
    if !origin.tls {
        let sender = if opts.version == HttpVersion::H2c {
            h2(io).await?
        } else {
            h1(io).await?
        };
        return Ok((
            Conn {
                sender,
                counters,
                unnamed_ok,
            },
            ConnectTimings {
                connect,
                tls: Duration::ZERO,
            },
        ));
    }
    let t1 = Instant::now();
    let name = ServerName::try_from(origin.host.clone()).map_err(|e| {
        HttpError::new(
            ErrorKind::Tls,
            format!("{} is not a TLS server name: {e}", origin.host),
        )
    })?;
    let tls = tokio::time::timeout(
        opts.timeout,
        tokio_rustls::TlsConnector::from(opts.tls.clone()).connect(name, io),
    )
    .await
    .map_err(|_| {
        HttpError::new(
            ErrorKind::Timeout,
            format!("TLS handshake with {origin} timed out"),
        )
    })?
    .map_err(|e| HttpError::new(ErrorKind::Tls, format!("TLS handshake with {origin}: {e}")))?;
    let tls_time = t1.elapsed();
    let h2_negotiated = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    if opts.version == HttpVersion::Http2 && !h2_negotiated {
        return Err(HttpError::new(
            ErrorKind::Tls,
            format!("{origin} did not negotiate HTTP/2 (ALPN) but the spec asks for http2"),
        ));
    }
    let sender = if h2_negotiated {
        h2(tls).await?
    } else {
        h1(tls).await?
    };
    Ok((
        Conn {
            sender,
            counters,
            unnamed_ok,
        },
        ConnectTimings {
            connect,
            tls: tls_time,
        },
    ))
}

async fn h1<S>(io: S) -> Result<Sender, HttpError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| HttpError::new(ErrorKind::Protocol, format!("HTTP/1.1 handshake: {e}")))?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "HTTP/1.1 connection ended");
        }
    });
    Ok(Sender::H1(sender))
}

async fn h2<S>(io: S) -> Result<Sender, HttpError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(io))
        .await
        .map_err(|e| HttpError::new(ErrorKind::Protocol, format!("HTTP/2 handshake: {e}")))?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "HTTP/2 connection ended");
        }
    });
    Ok(Sender::H2(sender))
}
