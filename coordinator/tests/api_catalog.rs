//! Stored specs, baselines and schedules through `herd serve`'s API and the `herd` client,
//! against a real serve and a real target: versions, a run of a stored spec compared with its
//! baseline, a one-time schedule firing a run, cron schedules listing their next fire times.

use std::time::Duration;

use herd_tests::start_target;
use serde_json::Value;

#[path = "support/serve.rs"]
mod serve;
use serve::Serve;

#[path = "support/api.rs"]
mod api;
use api::{client, herd_cli, json, sse, API};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_specs_keep_versions_and_a_run_is_compared_with_its_baseline() {
    let t = start_target().await;
    let serve = Serve::start_with(&[], API).await;
    let url = serve.api_url();
    let base = format!("{url}/api/v1");
    let (runner, admin) = (serve.token("runner"), serve.token("admin"));
    let c = client();
    let text = |iterations: u32| {
        format!(
            "name: stored\ntarget: {}\nscenario: [{{request: GET /fast}}]\nload: {{executor: per-vu-iterations, vus: 2, iterations: {iterations}}}\n",
            t.url()
        )
    };
    let put = |body: String| {
        let c = c.clone();
        let (base, runner) = (base.clone(), runner.clone());
        async move {
            json(
                c.put(format!("{base}/specs/stored"))
                    .bearer_auth(&runner)
                    .body(body),
            )
            .await
        }
    };
    let (status, v1) = put(text(5)).await;
    assert_eq!((status, v1["version"].as_u64()), (201, Some(1)), "{v1}");
    let (status, same) = put(text(5)).await;
    assert_eq!(
        (status, same["version"].as_u64()),
        (200, Some(1)),
        "the same text is no new version"
    );
    let (status, v2) = put(text(8)).await;
    assert_eq!((status, v2["version"].as_u64()), (201, Some(2)));
    let (status, wrong) = json(
        c.put(format!("{base}/specs/other"))
            .bearer_auth(&runner)
            .body(text(1)),
    )
    .await;
    assert_eq!(status, 400, "the path names the spec: {wrong}");
    let (_, spec) = json(c.get(format!("{base}/specs/stored")).bearer_auth(&runner)).await;
    assert_eq!(spec["version"], 2);
    assert_eq!(spec["versions"].as_array().unwrap().len(), 2);
    let (_, old) = json(
        c.get(format!("{base}/specs/stored?version=1"))
            .bearer_auth(&runner),
    )
    .await;
    assert!(
        old["text"].as_str().unwrap().contains("iterations: 5"),
        "{old}"
    );

    // Version 1 runs and becomes the baseline; the latest (8 iterations a VU) is compared.
    let (status, first) = json(
        c.post(format!("{base}/runs?spec=stored&version=1"))
            .bearer_auth(&runner),
    )
    .await;
    assert_eq!(status, 201, "{first}");
    let first = first["run_id"].as_str().unwrap().to_string();
    let done = sse(&c, &format!("{base}/runs/{first}/live"), &runner).await;
    assert_eq!(done.last().unwrap().1["requests"], 10);
    let (code, out, err) = herd_cli(&["baseline", "set", &first], &url, &runner).await;
    assert_eq!(code, 1, "a runner may not set baselines: {out}{err}");
    assert!(err.contains("403"), "{err}");
    let (code, out, err) = herd_cli(&["baseline", "set", &first], &url, &admin).await;
    assert_eq!(code, 0, "{out}{err}");
    let (status, second) = json(
        c.post(format!("{base}/runs?spec=stored"))
            .bearer_auth(&runner),
    )
    .await;
    assert_eq!(status, 201, "{second}");
    let second = second["run_id"].as_str().unwrap().to_string();
    sse(&c, &format!("{base}/runs/{second}/live"), &runner).await;
    let (_, detail) = json(c.get(format!("{base}/runs/{second}")).bearer_auth(&runner)).await;
    let cmp = &detail["baseline"];
    assert_eq!(cmp["baseline_run"], first.as_str(), "{detail}");
    assert_eq!(cmp["requests"]["baseline"], 10.0);
    assert_eq!(cmp["requests"]["this"], 16.0);
    assert_eq!(cmp["requests"]["change_pct"], 60.0);
    assert_eq!(t.stats().requests, 26, "the target saw both runs whole");

    // Thresholds against the baseline gate the verdict: 16 requests pass `>= 1.5 ×` the
    // baseline's 10 and fail `>= 2 ×`, with the regression named in RunCompleted.
    let gated = |factor: &str| {
        format!(
            "{}thresholds: ['requests >= baseline.requests * {factor}']\n",
            text(8)
        )
    };
    let mut verdicts = Vec::new();
    for factor in ["1.5", "2"] {
        let (status, _) = put(gated(factor)).await;
        assert_eq!(status, 201);
        let (status, run) = json(
            c.post(format!("{base}/runs?spec=stored"))
                .bearer_auth(&runner),
        )
        .await;
        assert_eq!(status, 201, "{run}");
        let run = run["run_id"].as_str().unwrap().to_string();
        let done = sse(&c, &format!("{base}/runs/{run}/live"), &runner).await;
        verdicts.push(done.last().unwrap().1.clone());
    }
    assert_eq!(verdicts[0]["verdict"], "passed", "{}", verdicts[0]);
    assert_eq!(verdicts[0]["thresholds"][0]["limit"], 15.0);
    assert_eq!(verdicts[1]["verdict"], "failed", "{}", verdicts[1]);
    let why = verdicts[1]["thresholds"][0]["reason"].as_str().unwrap();
    assert!(
        why.contains(&format!("regression against baseline {first}")),
        "{why}"
    );
    // The run's report compares it with the spec's baseline.
    let failed_run = verdicts[1]["run_id"].as_str().unwrap();
    let report = c
        .get(format!("{base}/runs/{failed_run}/files/report.html"))
        .bearer_auth(&runner)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        report.contains(&format!("baseline run {first}")),
        "the report's delta table"
    );
    let (_, list) = json(c.get(format!("{base}/specs")).bearer_auth(&runner)).await;
    assert_eq!(list[0]["baseline"], first.as_str(), "{list}");
    // Only a completed run of the same spec can be a baseline.
    let (status, v) = json(
        c.put(format!("{base}/specs/other/baseline"))
            .bearer_auth(&admin)
            .body(format!("{{\"run\": \"{first}\"}}")),
    )
    .await;
    assert_eq!(status, 409, "{v}");
    serve.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_time_schedule_fires_one_run_and_cron_schedules_list_their_next_fires() {
    let t = start_target().await;
    let serve = Serve::start_with(&[], API).await;
    let url = serve.api_url();
    let base = format!("{url}/api/v1");
    let (runner, admin) = (serve.token("runner"), serve.token("admin"));
    let c = client();
    let spec = format!(
        "name: nightly\ntarget: {}\nscenario: [{{request: GET /fast}}]\nload: {{executor: per-vu-iterations, vus: 1, iterations: 4}}\n",
        t.url()
    );
    let (status, _) = json(
        c.put(format!("{base}/specs/nightly"))
            .bearer_auth(&runner)
            .body(spec),
    )
    .await;
    assert_eq!(status, 201);

    // In two seconds, with the client.
    let at =
        humantime::format_rfc3339_seconds(std::time::SystemTime::now() + Duration::from_secs(2))
            .to_string();
    let (code, out, err) = herd_cli(
        &[
            "schedule", "add", "--name", "soon", "--spec", "nightly", "--at", &at,
        ],
        &url,
        &admin,
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    let id = out.trim().to_string();
    assert!(id.starts_with("sch_"), "{out}");

    // It fires once: a run from the schedule, whole at the target.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let run = loop {
        let (_, page) = json(
            c.get(format!("{base}/runs?spec=nightly"))
                .bearer_auth(&runner),
        )
        .await;
        if let Some(r) = page["runs"].as_array().and_then(|r| r.first()).cloned() {
            break r;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the schedule did not fire:\n{}",
            serve.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(run["source"], "schedule:soon");
    let run_id = run["run_id"].as_str().unwrap();
    let done = sse(&c, &format!("{base}/runs/{run_id}/live"), &runner).await;
    assert_eq!(done.last().unwrap().1["state"], "completed");
    assert_eq!(t.stats().requests, 4);
    let (_, s) = json(c.get(format!("{base}/schedules/{id}")).bearer_auth(&runner)).await;
    assert!(s["last_fired_ms"].is_u64(), "{s}");
    assert_eq!(s["enabled"], false, "a one-time schedule is done: {s}");
    assert_eq!(s["next_fires"].as_array().unwrap().len(), 0);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, page) = json(
        c.get(format!("{base}/runs?spec=nightly"))
            .bearer_auth(&runner),
    )
    .await;
    assert_eq!(
        page["runs"].as_array().unwrap().len(),
        1,
        "fired once: {page}"
    );

    // Cron in a zone: the next fires are listed, in that zone.
    let (status, cron) = json(
        c.post(format!("{base}/schedules"))
            .bearer_auth(&admin)
            .body(r#"{"name": "mornings", "spec": "nightly", "cron": "0 9 * * MON-FRI", "timezone": "Europe/Paris", "enabled": false}"#),
    )
    .await;
    assert_eq!(status, 201, "{cron}");
    assert_eq!(
        cron["next_fires"].as_array().unwrap().len(),
        0,
        "disabled: none"
    );
    let (status, on) = json(
        c.patch(format!("{base}/schedules/{}", cron["id"].as_str().unwrap()))
            .bearer_auth(&admin)
            .body(r#"{"enabled": true}"#),
    )
    .await;
    assert_eq!(status, 200, "{on}");
    let fires: Vec<&str> = on["next_fires"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert_eq!(fires.len(), 5, "{on}");
    assert!(
        fires
            .iter()
            .all(|f| f.contains("T09:00:00+01:00") || f.contains("T09:00:00+02:00")),
        "{fires:?}"
    );
    // Bad input is refused with what is wrong.
    for (body, want) in [
        (
            r#"{"name": "x", "spec": "nightly", "cron": "0 9 * *"}"#,
            "cron",
        ),
        (
            r#"{"name": "x", "spec": "nightly", "cron": "* * * * *", "timezone": "Mars/Olympus"}"#,
            "Mars/Olympus",
        ),
        (
            r#"{"name": "x", "spec": "nowhere", "cron": "* * * * *"}"#,
            "not stored",
        ),
        (
            r#"{"name": "x", "spec": "nightly", "at": "2001-01-01T00:00:00Z"}"#,
            "past",
        ),
        (r#"{"name": "x", "spec": "nightly"}"#, "one of cron and at"),
    ] {
        let (status, v) = json(
            c.post(format!("{base}/schedules"))
                .bearer_auth(&admin)
                .body(body),
        )
        .await;
        assert_eq!(status, 400, "{body}: {v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(want),
            "{body}: {v}"
        );
    }
    let (code, out, _) = herd_cli(&["schedule", "list"], &url, &runner).await;
    assert_eq!(code, 0);
    assert!(
        out.contains("mornings") && out.contains("Europe/Paris"),
        "{out}"
    );
    let (code, _, err) = herd_cli(&["schedule", "rm", &id], &url, &admin).await;
    assert_eq!(code, 0, "{err}");
    let (_, all) = json(c.get(format!("{base}/schedules")).bearer_auth(&runner)).await;
    assert_eq!(all.as_array().unwrap().len(), 1);
    let _: Value = all;
    serve.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_serves_https_with_its_certificate_and_the_client_follows_over_tls() {
    let t = start_target().await;
    let dir = tempfile::tempdir().unwrap();
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()])
        .expect("certificate");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    let serve = Serve::start_with(
        &[],
        &format!(
            "[api]\nlisten = \"127.0.0.1:0\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
            cert.display(),
            key.display()
        ),
    )
    .await;
    let url = serve.api_url();
    assert!(url.starts_with("https://"), "{url}");
    let tls = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ck.cert.pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    let ok = tls
        .get(format!("{url}/api/v1/healthz"))
        .send()
        .await
        .expect("https");
    assert_eq!(ok.status().as_u16(), 200);
    // Plain HTTP on the TLS port gets no answer.
    let plain = client()
        .get(format!(
            "{}/api/v1/healthz",
            url.replace("https://", "http://")
        ))
        .send()
        .await;
    assert!(plain.map_or(true, |r| !r.status().is_success()));
    let runner = serve.token("runner");
    let (status, v) = json(
        tls.post(format!("{url}/api/v1/runs")).bearer_auth(&runner).body(format!(
            "name: tls\ntarget: {}\nscenario: [{{request: GET /fast}}]\nload: {{executor: per-vu-iterations, vus: 1, iterations: 3}}\n",
            t.url()
        )),
    )
    .await;
    assert_eq!(status, 201, "{v}");
    let run = v["run_id"].as_str().unwrap();
    let done = sse(&tls, &format!("{url}/api/v1/runs/{run}/live"), &runner).await;
    assert_eq!(done.last().unwrap().1["requests"], 3);
    serve.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multipart_run_brings_its_data_files_confined_to_their_folder() {
    let t = start_target().await;
    let serve = Serve::start_with(&[], API).await;
    let base = format!("{}/api/v1", serve.api_url());
    let runner = serve.token("runner");
    let c = client();
    let spec = format!(
        "name: shop\ntarget: {}\ndata:\n  users: {{file: data/users.csv}}\nscenario:\n  - request: GET /items/{{{{users.name}}}}\nload: {{executor: per-vu-iterations, vus: 1, iterations: 6}}\n",
        t.url()
    );
    let form = |files: Vec<(&str, &str)>| {
        let mut f = reqwest::multipart::Form::new().text("spec", spec.clone());
        for (name, body) in files {
            f = f.part(
                "file",
                reqwest::multipart::Part::bytes(body.as_bytes().to_vec())
                    .file_name(name.to_string()),
            );
        }
        f
    };
    let (status, v) = json(
        c.post(format!("{base}/runs"))
            .bearer_auth(&runner)
            .multipart(form(vec![("data/users.csv", "name\nann\nbob\ncyd\n")])),
    )
    .await;
    assert_eq!(status, 201, "{v}");
    let run = v["run_id"].as_str().unwrap();
    let done = sse(&c, &format!("{base}/runs/{run}/live"), &runner).await;
    assert_eq!(done.last().unwrap().1["state"], "completed", "{done:?}");
    let by_path = t.stats().by_path;
    let from_file: u64 = ["ann", "bob", "cyd"]
        .iter()
        .filter_map(|n| by_path.get(&format!("/items/{n}")).copied())
        .sum();
    assert_eq!(
        from_file, 6,
        "every request took a name from the uploaded file: {by_path:?}"
    );
    // A file outside the folder, a missing file, no spec: refused whole, with why.
    for (files, want_status, want) in [
        (vec![("../users.csv", "name\nx\n")], 400, "users.csv"),
        (vec![("/etc/users.csv", "name\nx\n")], 400, "users.csv"),
        (vec![("other.csv", "name\nx\n")], 422, "data.users"),
    ] {
        let (status, v) = json(
            c.post(format!("{base}/runs"))
                .bearer_auth(&runner)
                .multipart(form(files)),
        )
        .await;
        assert_eq!(status, want_status, "{v}");
        assert!(v.to_string().contains(want), "{v}");
    }
    let no_spec = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(b"x".to_vec()).file_name("a.csv"),
    );
    let (status, v) = json(
        c.post(format!("{base}/runs"))
            .bearer_auth(&runner)
            .multipart(no_spec),
    )
    .await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(t.stats().requests, 6, "nothing refused ran");
    serve.stop().await;
}
