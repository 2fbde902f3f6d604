//! Tests through real connections: helpers here, the tests in `counting` (exact counts,
//! stall, base delay), `routes` (what each route answers) and `transport` (h2c, TLS,
//! shutdown, `run_cli`).

mod counting;
mod routes;
mod transport;

use std::net::SocketAddr;

use bytes::Bytes;
use http::{header, HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::{Target, TargetConfig, TargetStats};

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
