//! Request handling: counting, control routes (`/__…`) and the routes of the table in
//! the crate docs.

use std::convert::Infallible;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde::Deserialize;

use crate::counters::{bump_key, lock, Shared, FAST_PATHS};
use crate::MAX_BODY_BYTES;

type Resp = Response<Full<Bytes>>;

pub(crate) async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Resp, Infallible> {
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
        ("redirect-to", None) => match query_param(req.uri().query(), "url") {
            Some(to) => match HeaderValue::from_str(to) {
                Ok(loc) => {
                    let mut resp = empty(StatusCode::FOUND);
                    resp.headers_mut().insert(header::LOCATION, loc);
                    resp
                }
                Err(_) => bad_request("url must be a valid header value"),
            },
            None => bad_request("need ?url=<where to>"),
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
