//! `herd serve`'s HTTP API over real HTTP, against a real serve (local profile: embedded
//! broker, agents as child processes) and a real target whose own count is the ground truth:
//! submit, the live SSE stream, history, results, cancel, `herd submit --wait`'s exit codes,
//! and every endpoint's 401 and 403.

use std::time::Duration;

use herd_tests::start_target;
use serde_json::Value;

#[path = "support/serve.rs"]
mod serve;
use serve::{herd, Serve};

#[path = "support/api.rs"]
mod api;
use api::{client, herd_cli, json, sse, Idp, API};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_submitted_through_the_api_streams_each_second_and_its_numbers_match_the_target() {
    let t = start_target().await;
    let serve = Serve::start_with(&[], API).await;
    let base = format!("{}/api/v1", serve.api_url());
    let runner = serve.token("runner");
    let viewer = serve.token("viewer");
    let c = client();
    let spec = format!(
        "name: api-steady\ntarget: {}\nscenario: [{{request: GET /fast}}]\nload: {{executor: constant-vus, vus: 2, duration: 6s}}\nthresholds: ['error_rate < 1%']\n",
        t.url()
    );
    let (status, v) = json(
        c.post(format!("{base}/runs"))
            .bearer_auth(&runner)
            .header("content-type", "application/yaml")
            .header("Idempotency-Key", "steady-1")
            .body(spec.clone()),
    )
    .await;
    assert_eq!(status, 201, "{v}");
    let run = v["run_id"].as_str().expect("run id").to_string();
    // Followed at once, while the duplicate below is sent.
    let stream = {
        let (c, url, viewer) = (c.clone(), format!("{base}/runs/{run}/live"), viewer.clone());
        tokio::spawn(async move { sse(&c, &url, &viewer).await })
    };

    // The same key again is the same run.
    let (status, again) = json(
        c.post(format!("{base}/runs"))
            .bearer_auth(&runner)
            .header("Idempotency-Key", "steady-1")
            .body(spec),
    )
    .await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["run_id"], run.as_str());

    let events = stream.await.expect("the stream");
    let snapshots: Vec<&Value> = events
        .iter()
        .filter(|(k, _)| k == "snapshot")
        .map(|(_, d)| d)
        .collect();
    let (last_kind, result) = events.last().expect("events");
    assert_eq!(
        last_kind, "result",
        "the stream ends with the result: {events:?}"
    );
    assert!(
        snapshots.len() >= 3,
        "a 6 s run streams a snapshot each second (3 at least on a loaded machine): {events:?}"
    );
    let seconds: Vec<u64> = snapshots
        .iter()
        .map(|s| s["second"].as_u64().expect("second"))
        .collect();
    assert!(
        seconds.windows(2).all(|w| w[1] > w[0]),
        "one snapshot a second, in order: {seconds:?}"
    );
    assert!(snapshots.iter().all(|s| s["run"] == run.as_str()));
    let streamed: u64 = snapshots.iter().map(|s| s["rps"].as_u64().unwrap()).sum();

    let seen = t.stats().requests;
    assert!(seen > 0);
    assert_eq!(result["run_id"], run.as_str());
    assert_eq!(result["state"], "completed");
    assert_eq!(result["verdict"], "passed");
    assert_eq!(
        result["requests"].as_u64(),
        Some(seen),
        "the target's own count"
    );
    assert!(
        streamed <= seen,
        "live seconds never count more than the run: {streamed} > {seen}"
    );
    let summary = serve.summary(&run);
    assert_eq!(
        summary["total"]["requests"].as_u64(),
        Some(seen),
        "{summary}"
    );

    // The history, as the API pages it.
    let (status, page) = json(
        c.get(format!(
            "{base}/runs?spec=api-steady&status=completed&verdict=passed"
        ))
        .bearer_auth(&viewer),
    )
    .await;
    assert_eq!(status, 200, "{page}");
    let rows = page["runs"].as_array().expect("runs");
    assert_eq!(rows.len(), 1, "{page}");
    assert_eq!(rows[0]["run_id"], run.as_str());
    assert_eq!(rows[0]["requests"].as_u64(), Some(seen));
    assert_eq!(rows[0]["source"], "api:test runner");
    let (status, one) = json(c.get(format!("{base}/runs/{run}")).bearer_auth(&viewer)).await;
    assert_eq!(status, 200);
    assert_eq!(one["summary"]["total"]["requests"].as_u64(), Some(seen));
    assert!(one["spec_text"].as_str().unwrap().contains("api-steady"));
    let (status, bad) = json(
        c.get(format!("{base}/runs?status=sleeping"))
            .bearer_auth(&viewer),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        bad["error"]["message"].as_str().unwrap().contains("status"),
        "{bad}"
    );

    // The series: the TOTAL rows add up to the run.
    let csv = c
        .get(format!("{base}/runs/{run}/timeseries?format=csv"))
        .bearer_auth(&viewer)
        .send()
        .await
        .expect("csv");
    assert_eq!(csv.status().as_u16(), 200);
    assert!(csv.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let csv = csv.text().await.expect("text");
    let total: u64 = csv
        .lines()
        .skip(1)
        .filter(|l| l.split(',').nth(1) == Some("TOTAL"))
        .map(|l| l.split(',').nth(2).unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(total, seen, "{csv}");
    // Each streamed second against the final series: never more than the run's own second,
    // and (all batches in by the time it streams, as on an idle machine) mostly the same.
    let final_rows: std::collections::HashMap<u64, u64> = csv
        .lines()
        .skip(1)
        .filter(|l| l.split(',').nth(1) == Some("TOTAL"))
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[0].parse().unwrap(), f[2].parse().unwrap())
        })
        .collect();
    let mut same = 0;
    for snap in &snapshots {
        let second = snap["second"].as_u64().unwrap();
        let streamed = snap["rps"].as_u64().unwrap();
        let kept = final_rows.get(&second).copied().unwrap_or(0);
        assert!(
            streamed <= kept,
            "second {second}: streamed {streamed} > final {kept}"
        );
        same += usize::from(streamed == kept);
    }
    assert!(
        same > 0,
        "no streamed second matches the final series: {snapshots:?}\n{csv}"
    );
    let (status, series) = json(
        c.get(format!("{base}/runs/{run}/timeseries"))
            .bearer_auth(&viewer),
    )
    .await;
    assert_eq!(status, 200);
    assert!(series.is_array() || series.is_object(), "{series}");

    // Result files: listed, served, confined.
    let (status, files) = json(
        c.get(format!("{base}/runs/{run}/files"))
            .bearer_auth(&viewer),
    )
    .await;
    assert_eq!(status, 200);
    let names: Vec<&str> = files
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"summary.json") && names.contains(&"junit.xml"),
        "{names:?}"
    );
    let (status, s) = json(
        c.get(format!("{base}/runs/{run}/files/summary.json"))
            .bearer_auth(&viewer),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(s, summary);
    std::fs::write(serve.work.path().join("secret.txt"), "not a result").unwrap();
    std::os::unix::fs::symlink(
        serve.work.path().join("secret.txt"),
        serve.results.join(&run).join("link.txt"),
    )
    .unwrap();
    for path in [
        format!("runs/{run}/files/link.txt"),
        format!("runs/{run}/files/..%2F..%2Fsecret.txt"),
        format!("runs/{run}/files/%2E%2E"),
        "runs/..%2F..%2Fserve.toml/files/x".to_string(),
        "runs/nope/files/summary.json".to_string(),
    ] {
        let (status, body) = json(c.get(format!("{base}/{path}")).bearer_auth(&viewer)).await;
        assert_eq!(status, 404, "{path}: {body}");
    }

    // A stream asked for after the end gets the result at once.
    let late = sse(&c, &format!("{base}/runs/{run}/live"), &viewer).await;
    assert_eq!(late.len(), 1, "{late:?}");
    assert_eq!(late[0].0, "result");
    assert_eq!(late[0].1["requests"].as_u64(), Some(seen));
    assert_eq!(
        &late[0].1, result,
        "the history gives back what was announced"
    );

    // Validation: positioned problems, nothing run.
    let (status, v) = json(
        c.post(format!("{base}/validate"))
            .bearer_auth(&viewer)
            .body("name: v\ntarget: http://127.0.0.1:1\nscenario: [{request: GET /}]\nload: {executor: constant-vus, vus: -3, duration: 1s}\n"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(v["valid"], false, "{v}");
    assert!(v["errors"][0]["line"].as_u64() == Some(4), "{v}");
    let (status, v) = json(
        c.post(format!("{base}/runs"))
            .bearer_auth(&runner)
            .body("name: ["),
    )
    .await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["error"]["code"], "invalid_spec");
    // A body past the spec limit (1 MiB) is refused as it arrives; without the role, 403 first.
    let huge = "#".repeat((1 << 20) + 1);
    let (status, v) = json(
        c.post(format!("{base}/runs"))
            .bearer_auth(&runner)
            .body(huge.clone()),
    )
    .await;
    assert_eq!(status, 413, "{v}");
    assert_eq!(v["error"]["code"], "too_large");
    let (status, _) = json(
        c.post(format!("{base}/runs"))
            .bearer_auth(&viewer)
            .body(huge),
    )
    .await;
    assert_eq!(status, 403);

    // Metrics, as Prometheus reads them.
    let m = c
        .get(format!("{base}/metrics"))
        .bearer_auth(&viewer)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        m.contains("herd_runs_ended_total{state=\"completed\"} 1"),
        "{m}"
    );
    assert!(m.contains("herd_runs_active 0"), "{m}");
    assert!(m.contains("herd_runs_rejected_total 1"), "{m}");
    serve.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn herd_submit_wait_exits_as_the_run_ended_99_on_failed_thresholds_130_when_cancelled() {
    let t = start_target().await;
    let serve = Serve::start_with(&[], API).await;
    let url = serve.api_url();
    let runner = serve.token("runner");
    let dir = tempfile::tempdir().unwrap();
    let failing = dir.path().join("failing.yaml");
    std::fs::write(
        &failing,
        format!(
            "name: failing\ntarget: {}\nscenario: [{{request: GET /status/500}}]\nload: {{executor: per-vu-iterations, vus: 2, iterations: 5}}\nthresholds: ['error_rate < 1%']\n",
            t.url()
        ),
    )
    .unwrap();
    let (code, stdout, stderr) = herd_cli(
        &["submit", "--wait", failing.to_str().unwrap()],
        &url,
        &runner,
    )
    .await;
    assert_eq!(code, 99, "{stdout}\n{stderr}");
    assert!(stdout.contains("thresholds failed"), "{stdout}");
    assert_eq!(t.stats().requests, 10, "the target saw the whole run");
    t.reset();

    // A spec that names a data file: the file goes with it.
    std::fs::write(dir.path().join("users.csv"), "name\nann\nbob\n").unwrap();
    let with_data = dir.path().join("with-data.yaml");
    std::fs::write(
        &with_data,
        format!(
            "name: withdata\ntarget: {}\ndata:\n  users: {{file: users.csv}}\nscenario:\n  - request: GET /items/{{{{users.name}}}}\nload: {{executor: per-vu-iterations, vus: 1, iterations: 4}}\n",
            t.url()
        ),
    )
    .unwrap();
    let (code, _, err) = herd_cli(
        &["submit", "--wait", with_data.to_str().unwrap()],
        &url,
        &runner,
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let by_path = t.stats().by_path;
    let named: u64 = ["/items/ann", "/items/bob"]
        .iter()
        .filter_map(|p| by_path.get(*p).copied())
        .sum();
    assert_eq!(named, 4, "{by_path:?}");

    // No token: refused before anything runs.
    let (code, _, err) = herd_cli(&["submit", "--wait", failing.to_str().unwrap()], &url, "").await;
    assert_eq!(code, 1);
    assert!(err.contains("401"), "{err}");

    // Cancelled while it runs: 130, and the history says so.
    let long = dir.path().join("long.yaml");
    std::fs::write(
        &long,
        format!(
            "name: long\ntarget: {}\nscenario: [{{request: GET /fast}}]\nload: {{executor: constant-vus, vus: 1, duration: 60s}}\n",
            t.url()
        ),
    )
    .unwrap();
    let mut child = tokio::process::Command::new(herd())
        .args(["submit", "--wait", "--json", "--server", &url])
        .arg(&long)
        .env("HERD_TOKEN", &runner)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use tokio::io::AsyncBufReadExt;
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first: Value = serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
    let run = first["run_id"].as_str().unwrap().to_string();
    // Let it load for a second or two, then cancel with the CLI.
    let snap = lines.next_line().await.unwrap().unwrap();
    assert!(snap.starts_with("{\"snapshot\":"), "{snap}");
    let (code, _, err) = herd_cli(&["cancel", &run, "--reason", "enough"], &url, &runner).await;
    assert_eq!(code, 0, "{err}");
    let mut result = None;
    while let Some(l) = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .unwrap()
        .unwrap()
    {
        if l.starts_with("{\"result\":") {
            result = Some(serde_json::from_str::<Value>(&l).unwrap());
        }
    }
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(130));
    let result = result.expect("the result line");
    assert_eq!(result["result"]["state"], "cancelled");
    assert!(
        result["result"]["reason"]
            .as_str()
            .unwrap()
            .contains("enough"),
        "{result}"
    );
    // The history and one run, for people and as JSON.
    let (code, out, err) = herd_cli(&["runs", "--spec", "long", "--json"], &url, &runner).await;
    assert_eq!(code, 0, "{err}");
    let page: Value = serde_json::from_str(&out).expect("--json");
    assert_eq!(page["runs"][0]["run_id"], run.as_str(), "{page}");
    assert_eq!(page["runs"][0]["status"], "cancelled");
    let (_, table, _) = herd_cli(&["runs"], &url, &runner).await;
    assert!(
        table.starts_with("RUN") && table.contains("failing") && table.contains("cancelled"),
        "{table}"
    );
    let (_, shown, _) = herd_cli(&["show", &run], &url, &runner).await;
    assert!(shown.contains("\"reason\""), "{shown}");

    // Cancelling again: the run is over.
    let c = client();
    let (status, v) = json(
        c.post(format!("{url}/api/v1/runs/{run}/cancel"))
            .bearer_auth(&runner),
    )
    .await;
    assert_eq!(status, 409, "{v}");
    serve.stop().await;
}

/// Fills `{run_id}`, `{name}`, `{id}` in a documented path.
fn concrete(path: &str, run: &str) -> String {
    path.replace("{run_id}", run)
        .replace("{name}", "summary.json")
        .replace("{id}", "00000000")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_endpoint_answers_401_without_a_valid_token_and_403_to_a_lesser_role() {
    let t = start_target().await;
    let idp = Idp::start().await;
    let stranger = Idp::start().await;
    let serve = Serve::start_with(&[], &format!("{API}{}", idp.config())).await;
    let url = serve.api_url();
    let c = client();
    let tokens = [
        ("viewer", serve.token("viewer")),
        ("runner", serve.token("runner")),
        ("admin", serve.token("admin")),
    ];
    let role_token = |r: &str| tokens.iter().find(|(n, _)| *n == r).unwrap().1.clone();
    // A revoked admin token is refused everywhere.
    let (status, made) = json(
        c.post(format!("{url}/api/v1/tokens"))
            .bearer_auth(role_token("admin"))
            .header("content-type", "application/json")
            .body(r#"{"role": "admin", "name": "soon revoked"}"#),
    )
    .await;
    assert_eq!(status, 201, "{made}");
    let revoked = made["token"].as_str().unwrap().to_string();
    let (status, _) = json(
        c.delete(format!(
            "{url}/api/v1/tokens/{}",
            made["id"].as_str().unwrap()
        ))
        .bearer_auth(role_token("admin")),
    )
    .await;
    assert_eq!(status, 204);
    // A token listing never shows a secret.
    let (_, list) = json(
        c.get(format!("{url}/api/v1/tokens"))
            .bearer_auth(role_token("admin")),
    )
    .await;
    assert!(!list.to_string().contains(&revoked[14..]), "{list}");

    // One finished run, for the paths that name one.
    let spec = format!(
        "name: auth\ntarget: {}\nscenario: [{{request: GET /fast}}]\nload: {{executor: per-vu-iterations, vus: 1, iterations: 1}}\n",
        t.url()
    );
    let (status, v) = json(
        c.post(format!("{url}/api/v1/runs"))
            .bearer_auth(role_token("runner"))
            .body(spec),
    )
    .await;
    assert_eq!(status, 201, "{v}");
    let run = v["run_id"].as_str().unwrap().to_string();
    serve
        .wait_for("RunCompleted", 1, Duration::from_secs(60))
        .await;

    let (_, doc) = json(c.get(format!("{url}/api/v1/openapi.json"))).await;
    let committed: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../docs/api/openapi.json"
        ))
        .unwrap(),
    )
    .unwrap();
    assert!(
        doc == committed,
        "the served document differs from docs/api/openapi.json"
    );
    let garbage = format!("herd_0000000a_{}", "0".repeat(64));
    let no_group = idp.token(serde_json::json!({}));
    let oidc_role =
        |g: &str| idp.token(serde_json::json!({"cognito:groups": [format!("herd-{g}")]}));
    let unsigned = {
        let t = idp.token(serde_json::json!({"cognito:groups": ["herd-admin"]}));
        let mut parts: Vec<&str> = t.split('.').collect();
        parts[0] = "eyJhbGciOiJub25lIiwia2lkIjoiazEifQ"; // {"alg":"none","kid":"k1"}
        format!("{}.{}.", parts[0], parts[1])
    };
    let bad_oidc = [
        ("an expired OIDC token", idp.token(serde_json::json!({"cognito:groups": ["herd-admin"], "exp": 1_000_000}))),
        ("an OIDC token for another audience", idp.token(serde_json::json!({"cognito:groups": ["herd-admin"], "aud": "other"}))),
        ("an OIDC token from another issuer", idp.token(serde_json::json!({"cognito:groups": ["herd-admin"], "iss": "http://127.0.0.1:1/evil"}))),
        ("an OIDC token signed by another key", stranger.token(serde_json::json!({"cognito:groups": ["herd-admin"], "iss": idp.issuer}))),
        ("an unsigned OIDC token", unsigned),
    ];
    // A Cognito access token: no `aud`, the client in `client_id`.
    let access = idp.token(serde_json::json!({"aud": null, "client_id": "herd-client", "cognito:groups": ["herd-admin"]}));
    let (status, v) = json(c.get(format!("{url}/api/v1/tokens")).bearer_auth(&access)).await;
    assert_eq!(status, 200, "an admin through OIDC: {v}");
    let order = ["viewer", "runner", "admin"];
    let mut checked = 0;
    let mut forbidden_checked = 0;
    let mut forbidden_expected = 0;
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            let target = format!("{url}{}", concrete(path, &run));
            let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let need = op["security"][0]["token"]
                .as_array()
                .map(|s| s[0].as_str().unwrap().to_string());
            let Some(need) = need else {
                let (status, _) = json(c.request(m.clone(), &target)).await;
                assert_eq!(status, 200, "{method} {path} needs no token");
                continue;
            };
            let oidc_bad = bad_oidc.iter().map(|(w, t)| (*w, Some(t.clone())));
            for (what, auth) in [
                ("no token", None),
                ("a malformed token", Some("nope".to_string())),
                ("an unknown token", Some(garbage.clone())),
                ("a revoked token", Some(revoked.clone())),
            ]
            .into_iter()
            .chain(oidc_bad)
            {
                let mut r = c.request(m.clone(), &target);
                if let Some(a) = auth {
                    r = r.bearer_auth(a);
                }
                let resp = r.send().await.unwrap();
                assert_eq!(resp.status().as_u16(), 401, "{method} {path} with {what}");
                assert!(resp.headers().contains_key("www-authenticate"));
            }
            checked += 1;
            let need_at = order.iter().position(|r| *r == need).unwrap();
            forbidden_expected += 2 * need_at + 1;
            let lesser = order[..need_at]
                .iter()
                .flat_map(|r| [role_token(r), oidc_role(r)])
                .chain([no_group.clone()]);
            for lesser in lesser {
                // A body that would be accepted, so only the role can be the reason.
                let resp = c
                    .request(m.clone(), &target)
                    .bearer_auth(&lesser)
                    .header("content-type", "application/json")
                    .body(r#"{"role":"viewer","name":"x"}"#)
                    .send()
                    .await
                    .unwrap();
                let status = resp.status().as_u16();
                let body = resp.text().await.unwrap();
                assert_eq!(status, 403, "{method} {path} with a lesser role: {body}");
                assert!(body.contains(&need), "{body}");
                forbidden_checked += 1;
            }
        }
    }
    assert_eq!(
        forbidden_checked, forbidden_expected,
        "every lesser API token and OIDC group, and a token in no group"
    );
    assert!(
        checked >= 20,
        "the document lists the guarded endpoints: {checked}"
    );
    let m = c
        .get(format!("{url}/api/v1/metrics"))
        .bearer_auth(role_token("viewer"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let refused: u64 = m
        .lines()
        .find_map(|l| l.strip_prefix("herd_api_refused_logins_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        refused,
        (3 + bad_oidc.len() as u64) * checked as u64,
        "malformed, unknown, revoked and bad OIDC tokens are counted: {m}"
    );
    serve.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_over_the_queue_cap_wait_visibly_can_be_cancelled_and_start_when_room_is_made() {
    let t = start_target().await;
    let serve = Serve::start_with(&[], &format!("{API}[queue]\nmax_active_runs = 1\n")).await;
    let base = format!("{}/api/v1", serve.api_url());
    let runner = serve.token("runner");
    let c = client();
    let spec = |name: &str, load: &str| {
        format!(
            "name: {name}\ntarget: {}\nscenario: [{{request: GET /fast}}]\nload: {load}\n",
            t.url()
        )
    };
    let submit = |body: String| {
        let c = c.clone();
        let (base, runner) = (base.clone(), runner.clone());
        async move {
            let (status, v) = json(
                c.post(format!("{base}/runs"))
                    .bearer_auth(&runner)
                    .body(body),
            )
            .await;
            assert_eq!(status, 201, "{v}");
            v["run_id"].as_str().unwrap().to_string()
        }
    };
    let long = submit(spec(
        "long",
        "{executor: constant-vus, vus: 1, duration: 60s}",
    ))
    .await;
    let doomed = submit(spec(
        "doomed",
        "{executor: per-vu-iterations, vus: 1, iterations: 3}",
    ))
    .await;
    let later = submit(spec(
        "later",
        "{executor: per-vu-iterations, vus: 2, iterations: 7}",
    ))
    .await;

    let status_of = |run: String| {
        let c = c.clone();
        let (base, runner) = (base.clone(), runner.clone());
        async move {
            let (_, v) = json(c.get(format!("{base}/runs/{run}")).bearer_auth(&runner)).await;
            v["status"].as_str().unwrap_or_default().to_string()
        }
    };
    assert_eq!(status_of(long.clone()).await, "running");
    assert_eq!(status_of(doomed.clone()).await, "queued");
    assert_eq!(status_of(later.clone()).await, "queued");
    let (_, page) = json(
        c.get(format!("{base}/runs?status=queued"))
            .bearer_auth(&runner),
    )
    .await;
    assert_eq!(page["runs"].as_array().unwrap().len(), 2, "{page}");
    let m = c
        .get(format!("{base}/metrics"))
        .bearer_auth(&runner)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        m.contains("herd_runs_queued 2") && m.contains("herd_runs_active 1"),
        "{m}"
    );

    // A queued run cancelled ends at once, cancelled, having sent nothing.
    let (status, v) = json(
        c.post(format!("{base}/runs/{doomed}/cancel"))
            .bearer_auth(&runner),
    )
    .await;
    assert_eq!(status, 202, "{v}");
    let done = sse(&c, &format!("{base}/runs/{doomed}/live"), &runner).await;
    let result = &done.last().unwrap().1;
    assert_eq!(result["state"], "cancelled", "{result}");
    assert_eq!(result["requests"], 0);

    // The long run ends: the next waiting run starts by itself and runs whole.
    let (status, _) = json(
        c.post(format!("{base}/runs/{long}/cancel"))
            .bearer_auth(&runner),
    )
    .await;
    assert_eq!(status, 202);
    let events = sse(&c, &format!("{base}/runs/{later}/live"), &runner).await;
    let result = &events.last().unwrap().1;
    assert_eq!(result["state"], "completed", "{result}");
    assert_eq!(result["requests"], 14);
    let long_result = sse(&c, &format!("{base}/runs/{long}/live"), &runner).await;
    let long_requests = long_result.last().unwrap().1["requests"].as_u64().unwrap();
    assert_eq!(
        t.stats().requests,
        long_requests + 14,
        "the target saw the long run and the one that waited, nothing of the cancelled one"
    );
    serve.stop().await;
}
