//! Calling `herd serve`'s API from tests: a client, JSON answers, live streams read to the end.
#![allow(dead_code)]

use std::time::Duration;

use serde_json::Value;

pub const API: &str = "[api]\nlisten = \"127.0.0.1:0\"\n";

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .expect("client")
}

pub async fn json(r: reqwest::RequestBuilder) -> (u16, Value) {
    let resp = r.send().await.expect("the API answers");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Reads a live stream to its end: every (event, data) in order.
pub async fn sse(c: &reqwest::Client, url: &str, token: &str) -> Vec<(String, Value)> {
    let mut resp = c.get(url).bearer_auth(token).send().await.expect("stream");
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(
        resp.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let mut buf = String::new();
    let mut events = Vec::new();
    while let Some(chunk) = tokio::time::timeout(Duration::from_secs(60), resp.chunk())
        .await
        .expect("the stream goes on")
        .expect("chunk")
    {
        buf.push_str(std::str::from_utf8(&chunk).expect("UTF-8"));
        while let Some(end) = buf.find("\n\n") {
            let ev: String = buf.drain(..end + 2).collect();
            let mut kind = None;
            let mut data = None;
            for l in ev.lines() {
                if let Some(k) = l.strip_prefix("event: ") {
                    kind = Some(k.to_string());
                }
                if let Some(d) = l.strip_prefix("data: ") {
                    data = Some(serde_json::from_str(d).expect("data is JSON"));
                }
            }
            if let (Some(k), Some(d)) = (kind, data) {
                events.push((k, d));
            }
        }
    }
    events
}
