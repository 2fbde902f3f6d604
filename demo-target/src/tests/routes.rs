//! What each route answers.

use std::time::{Duration, Instant as StdInstant};

use http::{header, Method, StatusCode};

use super::{connect, get, send, start};
use crate::MAX_BODY_BYTES;

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
    let r = get(&mut c, "/redirect-to?url=http://127.0.0.2:9/fast?a=1").await;
    assert_eq!(r.status, StatusCode::FOUND);
    assert_eq!(r.headers[header::LOCATION], "http://127.0.0.2:9/fast?a=1");
    assert_eq!(get(&mut c, "/redirect-to").await.status, 400);

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
