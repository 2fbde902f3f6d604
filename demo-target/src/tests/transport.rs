//! HTTP/2 (h2c and over TLS), TLS with ALPN, shutdown and `run_cli`.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant as StdInstant};

use bytes::Bytes;
use http::{header, Request, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::{connect, get, start};
use crate::{run_cli_to, Target, TargetConfig};

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
