//! Exact counting, the stall window and the base delay.

use std::time::{Duration, Instant as StdInstant};

use http::{Method, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{connect, get, http_stats, send, start};
use crate::{Target, TargetConfig, TargetStats};

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
