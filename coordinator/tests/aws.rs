//! The AWS engine end to end, for real against moto's server and mosquitto:
//! spec object in S3 → EventBridge rule → SQS → `herd serve` (aws profile) → RunTask on moto →
//! the ECS harness starts one real `herd agent` per task → agents fetch their bootstrap object
//! and connect to mosquitto over TLS with per-agent certificates (signed by the test CA and
//! registered in moto's IoT) → results in moto's S3 → `RunCompleted` through SNS and through
//! an EventBridge rule, each on its own SQS queue.

use std::time::Duration;

use herd_tests::aws::{start_moto, Clients, EcsHarness, Moto, MotoFix, Stack, REGION};
use herd_tests::{make_pki, start_mosquitto_tls, start_target, Mosquitto, Pki};
use serde_json::{json, Value};

/// The `herd` binary cargo built for these tests.
fn herd() -> &'static std::path::Path {
    std::path::Path::new(env!("CARGO_BIN_EXE_herd"))
}

struct Env {
    moto: Moto,
    fix: MotoFix,
    _mosq: Mosquitto,
    pki: Pki,
    aws: Clients,
    stack: Stack,
    serve: std::process::Child,
    work: tempfile::TempDir,
    harness: EcsHarness,
}

impl Drop for Env {
    fn drop(&mut self) {
        unsafe {
            libc::kill(self.serve.id() as i32, libc::SIGTERM);
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if self.serve.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.serve.kill();
        let _ = self.serve.wait();
    }
}

impl Env {
    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.work.path().join(name)).unwrap_or_default()
    }

    fn logs(&self) -> String {
        let mut out = format!("--- serve.log\n{}\n", self.log("serve.log"));
        if let Ok(rd) = std::fs::read_dir(self.work.path().join("tasks")) {
            for e in rd.flatten() {
                out.push_str(&format!(
                    "--- {}\n{}\n",
                    e.path().display(),
                    std::fs::read_to_string(e.path()).unwrap_or_default()
                ));
            }
        }
        out
    }
}

async fn setup() -> Option<Env> {
    let t0 = std::time::Instant::now();
    let moto = start_moto()?;
    eprintln!("[{:?}] moto", t0.elapsed());
    let pki = make_pki();
    let mosq = start_mosquitto_tls(&pki)?;
    let fix = MotoFix::start(moto.port).await;
    let conf = moto.config(&fix.url).await;
    let aws = Clients::new(&conf);
    let stack = aws.stack(&moto).await;
    eprintln!("[{:?}] stack", t0.elapsed());
    let work = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir_all(work.path().join("tasks")).expect("tasks dir");
    let config = format!(
        r#"
profile = "aws"
results_dir = "{results}"

[broker]
url = "mqtts://127.0.0.1:{port}"
ca = "{ca}"
cert = "{cert}"
key = "{key}"
agent_ca = "{ca}"

[aws]
region = "{REGION}"
endpoint_url = "{moto}"
queue_url = "{queue}"
spec_bucket = "{specs}"
results_bucket = "{results_bucket}"
sns_topic_arn = "{topic}"
visibility_timeout_s = 20

[aws.pipeline]
accounts = ["123456789012"]

# The test's target is on loopback, which the AWS profile denies by default.
[targets]
allow = ["127.0.0.1"]

[aws.iot]
certificates = "own-ca"
ca_cert = "{ca}"
ca_key = "{ca_key}"

[api]
listen = "127.0.0.1:0"

[history]
dynamodb_table = "{history_table}"

[aws.scheduler]
role_arn = "arn:aws:iam::123456789012:role/herd-scheduler"

[[aws.regions]]
region = "{REGION}"
cluster = "{cluster}"
task_definition = "{taskdef}"
subnets = ["{subnet}"]
security_groups = ["sg-0123456789abcdef0"]
"#,
        results = work.path().join("staging").display(),
        port = mosq.port,
        ca = pki.ca.display(),
        cert = pki.client_cert.display(),
        key = pki.client_key.display(),
        ca_key = pki.ca_key.display(),
        moto = fix.url,
        queue = stack.queue_url,
        specs = stack.spec_bucket,
        results_bucket = stack.results_bucket,
        topic = stack.topic_arn,
        cluster = stack.cluster,
        taskdef = stack.task_definition,
        subnet = stack.subnet,
        history_table = stack.history_table,
    );
    let cfg_path = work.path().join("serve.toml");
    std::fs::write(&cfg_path, config).expect("write config");
    let herd = herd();
    eprintln!("[{:?}] herd built", t0.elapsed());
    let serve_log = std::fs::File::create(work.path().join("serve.log")).expect("log");
    let serve = std::process::Command::new(herd)
        .args(["serve", "--config"])
        .arg(&cfg_path)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env(
            "HERD_LOG",
            "info,rumqttc=warn,aws=warn,aws_config=warn,aws_smithy_runtime=warn,hyper=warn",
        )
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(serve_log)
        .spawn()
        .expect("start herd serve");
    let harness = EcsHarness::start(
        &fix.url,
        &stack.cluster,
        herd.to_path_buf(),
        work.path().join("tasks"),
    );
    let env = Env {
        moto,
        fix,
        _mosq: mosq,
        pki,
        aws,
        stack,
        serve,
        work,
        harness,
    };
    for _ in 0..300 {
        if env.log("serve.log").contains("herd serve: ready") {
            return Some(env);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("herd serve did not become ready:\n{}", env.logs());
}

fn spec_yaml(name: &str, url: &str, agents: u32, duration: &str) -> String {
    format!(
        "name: {name}\ntarget: {url}\nagents: {agents}\nscenario:\n  - name: home\n    request: GET /fast\n  - name: item\n    request: GET /items/7\nload:\n  executor: constant-vus\n  vus: 4\n  duration: {duration}\nthresholds:\n  - error_rate < 1%\n"
    )
}

async fn put_spec(env: &Env, key: &str, body: &str) {
    env.aws
        .s3
        .put_object()
        .bucket(&env.stack.spec_bucket)
        .key(key)
        .body(aws_sdk_s3::primitives::ByteStream::from(
            body.as_bytes().to_vec(),
        ))
        .send()
        .await
        .expect("PutObject");
}

async fn pipeline_event(env: &Env, detail_type: &str, detail: Value) {
    let out = env
        .aws
        .events
        .put_events()
        .entries(
            aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
                .source("herd.pipeline")
                .detail_type(detail_type)
                .detail(detail.to_string())
                .build(),
        )
        .send()
        .await
        .expect("PutEvents");
    assert_eq!(out.failed_entry_count(), 0);
}

/// The `RunCompleted`/`RunRejected` for `key` = `value`, as it arrives on both sink queues.
async fn both_notifications(env: &Env, kind: &str, field: &str, value: &str) -> (Value, Value) {
    let pred = |v: &Value| v["type"] == kind && v["detail"][field] == value;
    let wait = Duration::from_secs(120);
    let sns = env.aws.wait_for(&env.stack.sns_sink, wait, pred).await;
    let eb = env
        .aws
        .wait_for(&env.stack.eb_sink, Duration::from_secs(10), pred)
        .await;
    match (sns, eb) {
        (Some(s), Some(e)) => (s, e),
        (s, e) => panic!(
            "{kind} with {field}={value}: sns {s:?}, eventbridge {e:?}\n{}",
            env.logs()
        ),
    }
}

/// Waits (bounded) until the run has put real load on the target.
async fn wait_for_load(env: &Env, target: &demo_target::Target) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while target.stats().requests < 200 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the run never produced load\n{}",
            env.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// ARNs of the cluster's tasks with this desired status.
async fn tasks(env: &Env, status: aws_sdk_ecs::types::DesiredStatus) -> Vec<String> {
    env.aws
        .ecs
        .list_tasks()
        .cluster("herd")
        .desired_status(status)
        .send()
        .await
        .expect("ListTasks")
        .task_arns()
        .to_vec()
}

async fn s3_json(env: &Env, key: &str) -> Value {
    let out = env
        .aws
        .s3
        .get_object()
        .bucket(&env.stack.results_bucket)
        .key(key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("s3://{}/{key}: {e:?}", env.stack.results_bucket));
    let bytes = out.body.collect().await.expect("body").into_bytes();
    serde_json::from_slice(&bytes).expect("JSON")
}

async fn keys(env: &Env, prefix: &str) -> Vec<String> {
    env.aws
        .s3
        .list_objects_v2()
        .bucket(&env.stack.results_bucket)
        .prefix(prefix)
        .send()
        .await
        .expect("ListObjectsV2")
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_string))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spec_object_runs_on_ecs_agents_and_reports_everywhere() {
    let t0 = std::time::Instant::now();
    let Some(env) = setup().await else { return };
    eprintln!("[{:?}] ready", t0.elapsed());
    let target = start_target().await;

    // 0. A message herd cannot understand goes to the DLQ (after maxReceiveCount receives),
    //    with a log line saying why; checked at the end.
    env.aws
        .sqs
        .send_message()
        .queue_url(&env.stack.queue_url)
        .message_body("{\"hello\": \"queue\"}")
        .send()
        .await
        .expect("SendMessage");

    // 1. A spec dropped into the bucket runs on 2 ECS "tasks".
    put_spec(
        &env,
        "specs/shop.yaml",
        &spec_yaml("shop", &target.url(), 2, "3s"),
    )
    .await;
    let (sns, eb) = both_notifications(&env, "RunCompleted", "spec", "shop").await;
    eprintln!("[{:?}] shop done", t0.elapsed());
    let seen = target.stats().requests;
    for n in [&sns, &eb] {
        let d = &n["detail"];
        assert_eq!(d["verdict"], "passed", "{n}\n{}", env.logs());
        assert_eq!(d["state"], "completed", "{n}");
        assert_eq!(
            d["requests"],
            json!(seen),
            "requests in {} vs target {seen}",
            n["via"]
        );
        assert_eq!(d["source"], "s3://herd-specs/specs/shop.yaml");
    }
    assert!(seen > 0);
    let run = sns["detail"]["run_id"]
        .as_str()
        .expect("run id")
        .to_string();
    let results = format!("results/shop/{run}/");
    assert_eq!(
        sns["detail"]["results"],
        format!("s3://herd-results/{results}")
    );
    assert_eq!(sns["detail"]["results_error"], Value::Null);
    let files = keys(&env, &results).await;
    for f in [
        "summary.json",
        "timeseries.csv",
        "timeseries.json",
        "report.html",
        "junit.xml",
        "spec.yaml",
        "spec.json",
    ] {
        assert!(
            files.contains(&format!("{results}{f}")),
            "{f} missing in {files:?}"
        );
    }
    let summary = s3_json(&env, &format!("{results}summary.json")).await;
    assert_eq!(summary["total"]["requests"], json!(seen));
    assert_eq!(summary["agents_lost"], 0);
    let agents = summary["agents"].as_array().expect("agents");
    assert_eq!(agents.len(), 2);
    assert!(
        agents
            .iter()
            .all(|a| a["state"] == "finished" && a["region"] == REGION),
        "{agents:?}"
    );
    // Both agents ran as ECS tasks started by herd, and were stopped at run end.
    let stopped = tasks(&env, aws_sdk_ecs::types::DesiredStatus::Stopped).await;
    assert_eq!(stopped.len(), 2, "StopTask at run end");
    // Per-run credentials and bootstrap objects are gone.
    let things = env.aws.iot.list_things().send().await.expect("ListThings");
    assert!(
        things.things().is_empty(),
        "things left: {:?}",
        things.things()
    );
    let certs = env
        .aws
        .iot
        .list_certificates()
        .send()
        .await
        .expect("ListCertificates");
    assert!(
        certs.certificates().is_empty(),
        "certificates left: {:?}",
        certs.certificates()
    );
    assert!(keys(&env, &format!("_agents/{run}/")).await.is_empty());

    // 2. An invalid spec object: RunRejected with the errors, on both paths.
    put_spec(
        &env,
        "specs/broken.yaml",
        "name: broken\ntarget: http://127.0.0.1:9\nscenario: []\nlod: {}\n",
    )
    .await;
    let (sns, eb) = both_notifications(
        &env,
        "RunRejected",
        "source",
        "s3://herd-specs/specs/broken.yaml",
    )
    .await;
    for n in [&sns, &eb] {
        let errors: Vec<String> = n["detail"]["errors"]
            .as_array()
            .expect("errors")
            .iter()
            .map(|e| e.as_str().unwrap_or_default().to_string())
            .collect();
        let all = errors.join("\n");
        assert!(all.contains("scenario: needs at least one step"), "{all}");
        assert!(
            all.contains("unknown field `lod`") && all.contains("did you mean `load`"),
            "{all}"
        );
        assert!(
            errors
                .iter()
                .all(|e| e.starts_with("s3://herd-specs/specs/broken.yaml:")),
            "{all}"
        );
    }

    // 3. The same SQS message delivered twice starts one run.
    let target2 = start_target().await;
    let event = json!({
        "version": "0", "id": "7f1e-dup-event", "source": "herd.pipeline", "detail-type": "RunRequested",
        "account": "123456789012", "time": "2026-11-25T00:00:00Z", "region": REGION, "resources": [],
        "detail": {"spec": spec_yaml("dup", &target2.url(), 1, "2s"), "correlation_id": "deploy-dup"},
    })
    .to_string();
    for _ in 0..2 {
        env.aws
            .sqs
            .send_message()
            .queue_url(&env.stack.queue_url)
            .message_body(&event)
            .send()
            .await
            .expect("SendMessage");
    }
    let (sns, _) = both_notifications(&env, "RunCompleted", "correlation_id", "deploy-dup").await;
    eprintln!("[{:?}] dup done", t0.elapsed());
    assert_eq!(sns["detail"]["requests"], json!(target2.stats().requests));
    let more = env
        .aws
        .drain(&env.stack.sns_sink, Duration::from_secs(6))
        .await;
    let dup_runs = more.iter().filter(|b| b.contains("deploy-dup")).count();
    assert_eq!(dup_runs, 0, "a second run for the duplicate: {more:?}");
    assert_eq!(
        keys(&env, "results/dup/")
            .await
            .iter()
            .filter(|k| k.ends_with("summary.json"))
            .count(),
        1
    );
    assert!(
        env.log("serve.log")
            .contains("already handled; deleting the duplicate")
            || env.log("serve.log").contains("duplicate request"),
        "{}",
        env.logs()
    );
    target.shutdown().await;
    target2.shutdown().await;

    let dead = env
        .aws
        .drain(&env.stack.dlq_url, Duration::from_secs(2))
        .await;
    assert_eq!(
        dead,
        vec!["{\"hello\": \"queue\"}".to_string()],
        "the poison message is in the DLQ"
    );
    assert!(
        env.log("serve.log")
            .contains("neither an EventBridge event, an S3 notification nor an SNS envelope"),
        "{}",
        env.logs()
    );
}

#[path = "support/api.rs"]
mod api;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_cancel_and_a_stopped_task() {
    let Some(env) = setup().await else { return };

    // 1. CancelRequested mid-run: StopTask for every task, partial results equal to the target's count.
    let target = start_target().await;
    pipeline_event(&env, "RunRequested", json!({"spec": spec_yaml("long", &target.url(), 2, "60s"), "correlation_id": "deploy-cancel"})).await;
    wait_for_load(&env, &target).await;
    pipeline_event(
        &env,
        "CancelRequested",
        json!({"correlation_id": "deploy-cancel", "reason": "pipeline aborted"}),
    )
    .await;
    let (sns, _) =
        both_notifications(&env, "RunCompleted", "correlation_id", "deploy-cancel").await;
    let d = &sns["detail"];
    assert_eq!(d["state"], "cancelled", "{d}");
    assert_eq!(d["reason"], "pipeline aborted");
    assert_eq!(d["verdict"], "failed");
    assert_eq!(
        d["requests"],
        json!(target.stats().requests),
        "partial results count every request the target saw"
    );
    let stopped = tasks(&env, aws_sdk_ecs::types::DesiredStatus::Stopped).await;
    assert_eq!(stopped.len(), 2, "StopTask for both tasks");
    target.shutdown().await;

    // 2. An ECS STOPPED event for one task (its container died): that agent is lost, the run
    //    completes with the survivor, flagged.
    let target = start_target().await;
    pipeline_event(&env, "RunRequested", json!({"spec": spec_yaml("crash", &target.url(), 2, "8s"), "correlation_id": "deploy-crash"})).await;
    wait_for_load(&env, &target).await;
    let running = tasks(&env, aws_sdk_ecs::types::DesiredStatus::Running).await;
    let victim = running.first().expect("a running task").clone();
    let pid = env
        .harness
        .pids
        .lock()
        .expect("pids")
        .get(&victim)
        .copied()
        .expect("the task's agent");
    unsafe {
        libc::kill(pid as i32, libc::SIGKILL);
    }
    let event = json!({
        "version": "0", "id": "ecs-stop-1", "source": "aws.ecs", "detail-type": "ECS Task State Change",
        "account": "123456789012", "time": "2026-11-25T00:00:00Z", "region": REGION, "resources": [victim],
        "detail": {"taskArn": victim, "clusterArn": "arn:aws:ecs:us-east-1:123456789012:cluster/herd", "lastStatus": "STOPPED",
                   "desiredStatus": "STOPPED", "stopCode": "EssentialContainerExited", "stoppedReason": "Essential container in task exited",
                   "overrides": {"containerOverrides": [{"name": "agent"}]}},
    });
    env.aws
        .sqs
        .send_message()
        .queue_url(&env.stack.queue_url)
        .message_body(event.to_string())
        .send()
        .await
        .expect("SendMessage");
    let (sns, _) = both_notifications(&env, "RunCompleted", "correlation_id", "deploy-crash").await;
    let d = &sns["detail"];
    assert_eq!(d["state"], "completed", "{d}");
    assert_eq!(d["agents_lost"], 1, "{d}");
    let crashed = d.clone();
    let run = d["run_id"].as_str().expect("run id");
    let summary = s3_json(&env, &format!("results/crash/{run}/summary.json")).await;
    let lost: Vec<&Value> = summary["agents"]
        .as_array()
        .expect("agents")
        .iter()
        .filter(|a| a["state"] == "lost")
        .collect();
    assert_eq!(lost.len(), 1, "{summary}");
    let reason = lost[0]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains(
            "ECS task stopped: Essential container in task exited (EssentialContainerExited)"
        ),
        "{reason}"
    );
    target.shutdown().await;

    // 3. The API under the AWS profile: a run submitted over HTTP runs on ECS tasks, streams,
    //    and is in the history beside the pipeline's runs.
    let log = env.log("serve.log");
    let at = log.find(", api ").expect("the API is on the ready line") + ", api ".len();
    let url = log[at..]
        .split_whitespace()
        .next()
        .expect("URL")
        .to_string();
    let token = std::process::Command::new(herd())
        .args([
            "token", "create", "--role", "runner", "--name", "aws test", "--config",
        ])
        .arg(env.work.path().join("serve.toml"))
        .output()
        .expect("herd token");
    assert!(
        token.status.success(),
        "{}",
        String::from_utf8_lossy(&token.stderr)
    );
    let token = String::from_utf8(token.stdout)
        .expect("UTF-8")
        .trim()
        .to_string();
    let target = start_target().await;
    let c = api::client();
    let (status, v) = api::json(
        c.post(format!("{url}/api/v1/runs"))
            .bearer_auth(&token)
            .body(spec_yaml("viaapi", &target.url(), 2, "2s")),
    )
    .await;
    assert_eq!(status, 201, "{v}\n{}", env.logs());
    let run = v["run_id"].as_str().expect("run id").to_string();
    let events = api::sse(&c, &format!("{url}/api/v1/runs/{run}/live"), &token).await;
    let (kind, result) = events.last().expect("events");
    assert_eq!(kind, "result");
    assert_eq!(result["state"], "completed", "{result}");
    assert_eq!(result["requests"], json!(target.stats().requests));
    assert!(
        result["results"]
            .as_str()
            .unwrap_or_default()
            .starts_with("s3://"),
        "{result}"
    );
    let (_, page) = api::json(
        c.get(format!("{url}/api/v1/runs?limit=10"))
            .bearer_auth(&token),
    )
    .await;
    let sources: Vec<&str> = page["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .map(|r| r["source"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        sources.len(),
        3,
        "the pipeline's two runs and the API's: {page}"
    );
    assert_eq!(sources[0], "api:aws test");
    let (_, row) = api::json(
        c.get(format!(
            "{url}/api/v1/runs/{}",
            crashed["run_id"].as_str().unwrap()
        ))
        .bearer_auth(&token),
    )
    .await;
    assert_eq!(row["agents_lost"], 1, "{row}");
    target.shutdown().await;

    // 4. A schedule under the AWS profile lives in EventBridge Scheduler, which sends each
    //    occurrence's RunRequested to the intake queue. moto keeps schedules but fires none, so
    //    the test sends what the Scheduler would, twice: one run.
    let admin = std::process::Command::new(herd())
        .args([
            "token",
            "create",
            "--role",
            "admin",
            "--name",
            "aws admin",
            "--config",
        ])
        .arg(env.work.path().join("serve.toml"))
        .output()
        .expect("herd token");
    let admin = String::from_utf8(admin.stdout)
        .expect("UTF-8")
        .trim()
        .to_string();
    let target = start_target().await;
    let body = json!({
        "name": "weekday mornings", "cron": "0 9 * * MON-FRI", "timezone": "Europe/Paris",
        "spec_text": spec_yaml("scheduled", &target.url(), 1, "1s"),
    });
    let (status, made) = api::json(
        c.post(format!("{url}/api/v1/schedules"))
            .bearer_auth(&admin)
            .body(body.to_string()),
    )
    .await;
    assert_eq!(status, 201, "{made}\n{}", env.logs());
    let id = made["id"].as_str().expect("id").to_string();
    let sched = herd_tests::aws::scheduler_client(&env.moto.url).await;
    let got = sched
        .get_schedule()
        .name(&id)
        .group_name("default")
        .send()
        .await
        .expect("GetSchedule");
    assert_eq!(got.schedule_expression(), Some("cron(0 9 ? * MON-FRI *)"));
    assert_eq!(got.schedule_expression_timezone(), Some("Europe/Paris"));
    let t = got.target().expect("target");
    assert_eq!(t.arn(), "arn:aws:sqs:us-east-1:123456789012:herd-intake");
    assert_eq!(
        t.role_arn(),
        "arn:aws:iam::123456789012:role/herd-scheduler"
    );
    let fired = t
        .input()
        .expect("input")
        .replace("<aws.scheduler.scheduled-time>", "2026-12-01T08:00:00Z");
    for _ in 0..2 {
        env.aws
            .sqs
            .send_message()
            .queue_url(&env.stack.queue_url)
            .message_body(&fired)
            .send()
            .await
            .expect("SendMessage");
    }
    let (sns, _) = both_notifications(
        &env,
        "RunCompleted",
        "correlation_id",
        &format!("schedule:{id}"),
    )
    .await;
    assert_eq!(sns["detail"]["state"], "completed", "{sns}");
    assert_eq!(sns["detail"]["requests"], json!(target.stats().requests));
    let more = env
        .aws
        .drain(&env.stack.sns_sink, Duration::from_secs(4))
        .await;
    assert!(
        !more.iter().any(|b| b.contains(&format!("schedule:{id}"))),
        "one run for the occurrence sent twice: {more:?}"
    );
    let (status, _) = api::json(
        c.delete(format!("{url}/api/v1/schedules/{id}"))
            .bearer_auth(&admin),
    )
    .await;
    assert_eq!(status, 204);
    let gone = sched
        .get_schedule()
        .name(&id)
        .group_name("default")
        .send()
        .await;
    assert!(gone.is_err(), "the EventBridge schedule is deleted too");
    target.shutdown().await;
    let _ = (&env.moto, &env.pki, &env.fix);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iot_credentials_are_made_per_agent_and_removed() {
    // The production default: IoT Core makes the key pairs (CreateKeysAndCertificate).
    let Some(moto) = start_moto() else { return };
    let conf = moto.config(&moto.url).await;
    let client = aws_sdk_iot::Client::new(&conf);
    let iot = coordinator::aws::iot::Iot::new(
        client.clone(),
        REGION.into(),
        coordinator::config::CertificateSource::Aws,
        None,
        "herd-agents".into(),
    );
    let endpoint = iot.endpoint().await.expect("DescribeEndpoint");
    assert!(
        endpoint.starts_with("mqtts://") && endpoint.ends_with(":8883"),
        "{endpoint}"
    );
    let creds = iot.issue_run("r-42", 3).await.expect("issue");
    assert_eq!(creds.policy, "herd-agents", "the one static agent policy");
    assert_eq!(creds.agents.len(), 3);
    for (i, c) in creds.agents.iter().enumerate() {
        assert_eq!(c.thing, format!("herd-r-42-agent-{i}"));
        let thing = client
            .describe_thing()
            .thing_name(&c.thing)
            .send()
            .await
            .expect("DescribeThing");
        assert_eq!(
            thing.attributes().and_then(|a| a.get("agent")),
            Some(&i.to_string()),
            "the policy's ${{iot:Connection.Thing.Attributes[agent]}} is this agent's index"
        );
        assert_eq!(
            thing
                .attributes()
                .and_then(|a| a.get("run"))
                .map(String::as_str),
            Some("r-42"),
            "the policy's ${{iot:Connection.Thing.Attributes[run]}} is this agent's run"
        );
        assert!(c.cert_pem.contains("BEGIN CERTIFICATE") && c.key_pem.0.contains("PRIVATE KEY"));
        let principals = client
            .list_thing_principals()
            .thing_name(&c.thing)
            .send()
            .await
            .expect("ListThingPrincipals");
        assert_eq!(
            principals.principals(),
            std::slice::from_ref(&c.cert_arn),
            "each thing has its own certificate"
        );
    }
    // Made once (moto has no stack to make it), from deploy/iot-agent-policy.json.
    let policy = client
        .get_policy()
        .policy_name("herd-agents")
        .send()
        .await
        .expect("GetPolicy");
    let doc = policy.policy_document().unwrap_or_default();
    assert!(
        doc.contains("herd/runs/${iot:Connection.Thing.Attributes[run]}/agents/${iot:Connection.Thing.Attributes[agent]}/metrics")
            && !doc.contains("r-42"),
        "{doc}"
    );
    let targets = client
        .list_targets_for_policy()
        .policy_name("herd-agents")
        .send()
        .await
        .expect("ListTargetsForPolicy");
    assert_eq!(targets.targets().len(), 3);

    iot.revoke_run(&creds).await;
    assert!(client
        .list_things()
        .send()
        .await
        .expect("ListThings")
        .things()
        .is_empty());
    assert!(client
        .list_certificates()
        .send()
        .await
        .expect("ListCertificates")
        .certificates()
        .is_empty());
    // The static policy stays, attached to nothing.
    let targets = client
        .list_targets_for_policy()
        .policy_name("herd-agents")
        .send()
        .await
        .expect("ListTargetsForPolicy");
    assert!(targets.targets().is_empty());
    let policies = client.list_policies().send().await.expect("ListPolicies");
    assert_eq!(policies.policies().len(), 1, "no policy per run");
}

/// A coordinator that died mid-run, or a cleanup that failed part-way, leaves things and
/// certificates behind; the sweeper removes those of runs nobody holds, and
/// leaves the ones it is told to keep.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_runs_iot_identities_are_swept() {
    let Some(moto) = start_moto() else { return };
    let conf = moto.config(&moto.url).await;
    let client = aws_sdk_iot::Client::new(&conf);
    let iot = coordinator::aws::iot::Iot::new(
        client.clone(),
        REGION.into(),
        coordinator::config::CertificateSource::Aws,
        None,
        "herd-agents".into(),
    );
    let old = "shop-20200101T000000Z-ab12";
    let live = "shop-20991231T000000Z-cd34";
    iot.issue_run(old, 2).await.expect("issue old");
    iot.issue_run(live, 1).await.expect("issue live");
    let removed = iot.sweep(|run| run == live).await.expect("sweep");
    assert_eq!(removed, 2, "the old run's two things");
    let things: Vec<String> = client
        .list_things()
        .send()
        .await
        .expect("ListThings")
        .things()
        .iter()
        .filter_map(|t| t.thing_name().map(str::to_string))
        .collect();
    assert_eq!(
        things,
        vec![format!("herd-{live}-agent-0")],
        "only the held run's"
    );
    let policies: Vec<String> = client
        .list_policies()
        .send()
        .await
        .expect("ListPolicies")
        .policies()
        .iter()
        .filter_map(|p| p.policy_name().map(str::to_string))
        .collect();
    assert_eq!(
        policies,
        vec!["herd-agents".to_string()],
        "no policy per run"
    );
    let certs = client
        .list_certificates()
        .send()
        .await
        .expect("ListCertificates");
    assert_eq!(
        certs.certificates().len(),
        1,
        "the swept run's certificates are deleted"
    );
}
