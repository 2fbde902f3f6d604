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

/// `herd ARGS --server URL` with `HERD_TOKEN=token`: (exit code, stdout, stderr).
pub async fn herd_cli(args: &[&str], url: &str, token: &str) -> (i32, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_herd"))
        .args(args)
        .args(["--server", url])
        .env("HERD_TOKEN", token)
        .output()
        .await
        .expect("herd");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn b64url(bytes: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// An identity provider for tests: an ES256 key, its JWKS served on 127.0.0.1, tokens signed
/// with it — and a sign-in like Cognito's hosted UI: `/oauth2/authorize` signs the browser in
/// at once (as `ann@example.com`, group `herd-runner`) and sends it back with a code;
/// `/oauth2/token` trades the code for an access token when the PKCE verifier matches.
pub struct Idp {
    pub issuer: String,
    pub jwks_url: String,
    /// `http://127.0.0.1:PORT`
    pub origin: String,
    der: Vec<u8>,
}

/// Signs `claims` on top of valid defaults (issuer, audience, an hour to live).
fn sign(der: &[u8], issuer: &str, claims: &Value) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut c = serde_json::json!({
        "iss": issuer, "aud": "herd-client", "sub": "u1", "email": "ann@example.com",
        "exp": now + 3600, "iat": now,
    });
    for (k, v) in claims.as_object().expect("claims") {
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    h.kid = Some("k1".into());
    jsonwebtoken::encode(&h, &c, &jsonwebtoken::EncodingKey::from_ec_der(der)).expect("signed")
}

/// One HTTP request from `s`: the request line and the body (by content-length).
async fn read_request(s: &mut tokio::net::TcpStream) -> (String, String) {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk).await.unwrap_or(0);
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let len = text[..end]
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + len || buf.len() > 1 << 20 {
                let line = text.lines().next().unwrap_or_default().to_string();
                return (line, text[end + 4..].to_string());
            }
        }
    }
    (String::new(), String::new())
}

fn form(q: &str) -> std::collections::HashMap<String, String> {
    url::form_urlencoded::parse(q.as_bytes())
        .into_owned()
        .collect()
}

impl Idp {
    pub async fn start() -> Idp {
        let key = rcgen::KeyPair::generate().expect("key");
        let raw = key.public_key_raw().to_vec();
        assert_eq!(raw.len(), 65, "an uncompressed P-256 point");
        let jwks = serde_json::json!({"keys": [{
            "kty": "EC", "crv": "P-256", "kid": "k1", "alg": "ES256", "use": "sig",
            "x": b64url(&raw[1..33]), "y": b64url(&raw[33..]),
        }]})
        .to_string();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let issuer = format!("http://{addr}/pool");
        let der = key.serialize_der();
        // code → PKCE challenge, for codes handed out and not yet used.
        let codes = std::sync::Arc::new(std::sync::Mutex::new(std::collections::HashMap::<
            String,
            String,
        >::new()));
        let (iss, key_der) = (issuer.clone(), der.clone());
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            while let Ok((mut s, _)) = listener.accept().await {
                let (jwks, iss, key_der, codes) =
                    (jwks.clone(), iss.clone(), key_der.clone(), codes.clone());
                tokio::spawn(async move {
                    let (line, body) = read_request(&mut s).await;
                    let target = line.split_whitespace().nth(1).unwrap_or("/").to_string();
                    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
                    let json = |status: &str, b: String| {
                        format!("HTTP/1.1 {status}\r\ncontent-type: application/json\r\naccess-control-allow-origin: *\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{b}", b.len())
                    };
                    let resp = match path {
                        "/oauth2/authorize" => {
                            let q = form(query);
                            let code = format!("code-{}", codes.lock().unwrap().len() + 1);
                            codes.lock().unwrap().insert(
                                code.clone(),
                                q.get("code_challenge").cloned().unwrap_or_default(),
                            );
                            let back = format!(
                                "{}?code={code}&state={}",
                                q.get("redirect_uri").cloned().unwrap_or_default(),
                                q.get("state").cloned().unwrap_or_default()
                            );
                            format!("HTTP/1.1 302 Found\r\nlocation: {back}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                        }
                        "/oauth2/token" => {
                            let f = form(&body);
                            let challenge =
                                f.get("code").and_then(|c| codes.lock().unwrap().remove(c));
                            let verifier = f.get("code_verifier").cloned().unwrap_or_default();
                            let digest =
                                ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes());
                            match challenge {
                                Some(c) if c == b64url(digest.as_ref()) => {
                                    let t = sign(
                                        &key_der,
                                        &iss,
                                        &serde_json::json!({"cognito:groups": ["herd-runner"]}),
                                    );
                                    json("200 OK", serde_json::json!({"access_token": t, "token_type": "Bearer", "expires_in": 3600}).to_string())
                                }
                                _ => json("400 Bad Request", r#"{"error":"invalid_grant"}"#.into()),
                            }
                        }
                        _ => json("200 OK", jwks),
                    };
                    let _ = s.write_all(resp.as_bytes()).await;
                });
            }
        });
        Idp {
            jwks_url: format!("{issuer}/.well-known/jwks.json"),
            origin: format!("http://{addr}"),
            issuer,
            der,
        }
    }

    /// `[api.oidc]` with the console's sign-in through this provider.
    pub fn config_with_login(&self) -> String {
        format!(
            "{}login_url = \"{o}/oauth2/authorize\"\ntoken_url = \"{o}/oauth2/token\"\nlogin_name = \"Test IdP\"\n",
            self.config(),
            o = self.origin
        )
    }

    /// `[api.oidc]` for this provider, audience `herd-client`.
    pub fn config(&self) -> String {
        format!(
            "[api.oidc]\nissuer = \"{}\"\naudience = \"herd-client\"\n",
            self.issuer
        )
    }

    /// A token with these claims on top of valid defaults (issuer, audience, an hour to live).
    pub fn token(&self, claims: Value) -> String {
        sign(&self.der, &self.issuer, &claims)
    }
}
