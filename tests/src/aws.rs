//! AWS stand-ins for tests: a private moto server per test, the resources the CloudFormation
//! stack would make (buckets, queues, rules, topic, cluster, task definition), and the ECS
//! harness that turns every task moto "starts" into a real `herd agent` process with the
//! task's env overrides — and SIGTERMs it when the task is stopped, as ECS would.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::time::Duration;

use aws_config::{BehaviorVersion, Region};

pub const REGION: &str = "us-east-1";
/// moto's account: what real EventBridge would put in its events' `account`.
pub const ACCOUNT: &str = "123456789012";

pub struct Moto {
    pub port: u16,
    pub url: String,
    child: std::process::Child,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn moto_exe() -> Option<std::path::PathBuf> {
    match std::env::var("HERD_MOTO_SERVER") {
        Ok(p) => Some(p.into()),
        Err(_) => crate::on_path("moto_server"),
    }
}

/// Starts moto's server on a free port, or returns None when it is not installed (CI installs
/// it and sets HERD_REQUIRE_MOTO=1, which turns a missing moto into a failure).
pub fn start_moto() -> Option<Moto> {
    let Some(exe) = moto_exe() else {
        assert!(
            std::env::var("HERD_REQUIRE_MOTO").is_err(),
            "moto_server is required but not found (pip install 'moto[server]')"
        );
        eprintln!("SKIPPED: moto_server is not installed (pip install 'moto[server]')");
        return None;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let child = std::process::Command::new(exe)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start moto_server");
    let m = Moto {
        port,
        url: format!("http://127.0.0.1:{port}"),
        child,
    };
    for _ in 0..200 {
        if raw_http(port, "GET", "/moto-api/", "", &[]).is_ok() {
            return Some(m);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("moto_server did not answer on {port}");
}

/// A minimal HTTP/1.0 exchange (moto's own API and EC2's query API need nothing more).
pub fn raw_http(
    port: u16,
    method: &str,
    path: &str,
    body: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut req = format!(
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes())?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

impl Moto {
    /// SDK configuration for `endpoint` (moto itself, or a [`MotoFix`] in front of it).
    pub async fn config(&self, endpoint: &str) -> aws_config::SdkConfig {
        // Static test credentials: moto accepts any.
        std::env::set_var("AWS_ACCESS_KEY_ID", "test");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "test");
        std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
        aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(REGION))
            .endpoint_url(endpoint)
            .load()
            .await
    }

    /// moto advances an ECS task's status on every DescribeTasks unless told not to.
    pub fn pin_ecs_task_states(&self) {
        let body =
            r#"{"model_name":"ecs::task","transition":{"progression":"manual","times":1000}}"#;
        raw_http(
            self.port,
            "POST",
            "/moto-api/state-manager/set-transition",
            body,
            &[("Content-Type", "application/json")],
        )
        .expect("moto set-transition");
    }

    /// A subnet of moto's default VPC (RunTask checks that it exists).
    pub fn default_subnet(&self) -> String {
        let auth = "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/ec2/aws4_request, SignedHeaders=host, Signature=0";
        let out = raw_http(
            self.port,
            "POST",
            "/",
            "Action=DescribeSubnets&Version=2016-11-15",
            &[
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("Authorization", auth),
            ],
        )
        .expect("DescribeSubnets");
        let start = out.find("<subnetId>").expect("a subnet in DescribeSubnets") + 10;
        let end = out[start..].find('<').expect("end of subnetId") + start;
        out[start..end].to_string()
    }
}

/// What the stack would create, as names and ARNs the test needs.
pub struct Stack {
    pub history_table: String,
    pub spec_bucket: String,
    pub results_bucket: String,
    pub queue_url: String,
    pub dlq_url: String,
    pub topic_arn: String,
    /// Receives `RunCompleted`/`RunRejected` through the SNS topic.
    pub sns_sink: String,
    /// Receives them through an EventBridge rule on `source: herd`.
    pub eb_sink: String,
    pub cluster: String,
    pub task_definition: String,
    pub subnet: String,
}

pub struct Clients {
    pub s3: aws_sdk_s3::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub sns: aws_sdk_sns::Client,
    pub events: aws_sdk_eventbridge::Client,
    pub ecs: aws_sdk_ecs::Client,
    pub iot: aws_sdk_iot::Client,
}

impl Clients {
    pub fn new(conf: &aws_config::SdkConfig) -> Clients {
        Clients {
            s3: aws_sdk_s3::Client::from_conf(
                aws_sdk_s3::config::Builder::from(conf)
                    .force_path_style(true)
                    .build(),
            ),
            sqs: aws_sdk_sqs::Client::new(conf),
            sns: aws_sdk_sns::Client::new(conf),
            events: aws_sdk_eventbridge::Client::new(conf),
            ecs: aws_sdk_ecs::Client::new(conf),
            iot: aws_sdk_iot::Client::new(conf),
        }
    }

    async fn queue(&self, name: &str, attrs: &[(&str, String)]) -> (String, String) {
        let mut req = self.sqs.create_queue().queue_name(name);
        for (k, v) in attrs {
            req = req.attributes(aws_sdk_sqs::types::QueueAttributeName::from(*k), v);
        }
        let url = req
            .send()
            .await
            .expect("CreateQueue")
            .queue_url
            .expect("queue url");
        let arn = self
            .sqs
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await
            .expect("GetQueueAttributes")
            .attributes
            .and_then(|a| {
                a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn)
                    .cloned()
            })
            .expect("queue arn");
        (url, arn)
    }

    async fn rule(&self, name: &str, pattern: serde_json::Value, target_arn: &str) {
        self.events
            .put_rule()
            .name(name)
            .event_pattern(pattern.to_string())
            .send()
            .await
            .expect("PutRule");
        self.events
            .put_targets()
            .rule(name)
            .targets(
                aws_sdk_eventbridge::types::Target::builder()
                    .id("1")
                    .arn(target_arn)
                    .build()
                    .expect("target"),
            )
            .send()
            .await
            .expect("PutTargets");
    }

    /// Creates what `deploy/herd.yaml` creates, in moto.
    pub async fn stack(&self, moto: &Moto) -> Stack {
        use serde_json::json;
        let spec_bucket = "herd-specs".to_string();
        let results_bucket = "herd-results".to_string();
        for b in [&spec_bucket, &results_bucket] {
            self.s3
                .create_bucket()
                .bucket(b)
                .send()
                .await
                .expect("CreateBucket");
        }
        self.s3
            .put_bucket_notification_configuration()
            .bucket(&spec_bucket)
            .notification_configuration(
                aws_sdk_s3::types::NotificationConfiguration::builder()
                    .event_bridge_configuration(
                        aws_sdk_s3::types::EventBridgeConfiguration::builder().build(),
                    )
                    .build(),
            )
            .send()
            .await
            .expect("PutBucketNotificationConfiguration");
        let (dlq_url, dlq_arn) = self.queue("herd-intake-dlq", &[]).await;
        let redrive = json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 2}).to_string();
        let (queue_url, queue_arn) = self
            .queue(
                "herd-intake",
                &[
                    ("RedrivePolicy", redrive),
                    ("VisibilityTimeout", "30".into()),
                ],
            )
            .await;
        let (sns_sink, sns_sink_arn) = self.queue("sns-sink", &[]).await;
        let (eb_sink, eb_sink_arn) = self.queue("eb-sink", &[]).await;
        self.rule(
            "herd-spec-objects",
            json!({"source": ["aws.s3"], "detail-type": ["Object Created"],
                   "detail": {"bucket": {"name": [spec_bucket]}, "object": {"key": [{"prefix": "specs/"}]}}}),
            &queue_arn,
        )
        .await;
        self.rule(
            "herd-pipeline",
            json!({"source": ["herd.pipeline"], "detail-type": ["RunRequested", "CancelRequested"]}),
            &queue_arn,
        )
        .await;
        self.rule(
            "herd-agent-tasks",
            json!({"source": ["aws.ecs"], "detail-type": ["ECS Task State Change"], "detail": {"lastStatus": ["STOPPED"]}}),
            &queue_arn,
        )
        .await;
        self.rule(
            "gate-on-verdict",
            json!({"source": ["herd"], "detail-type": ["RunCompleted", "RunRejected"]}),
            &eb_sink_arn,
        )
        .await;
        let topic_arn = self
            .sns
            .create_topic()
            .name("herd-runs")
            .send()
            .await
            .expect("CreateTopic")
            .topic_arn
            .expect("topic arn");
        self.sns
            .subscribe()
            .topic_arn(&topic_arn)
            .protocol("sqs")
            .endpoint(&sns_sink_arn)
            .send()
            .await
            .expect("Subscribe");
        let cluster = "herd".to_string();
        self.ecs
            .create_cluster()
            .cluster_name(&cluster)
            .send()
            .await
            .expect("CreateCluster");
        // moto: every container needs its own memory (ENVIRONMENT.md).
        self.ecs
            .register_task_definition()
            .family("herd-agent")
            .requires_compatibilities(aws_sdk_ecs::types::Compatibility::Fargate)
            .network_mode(aws_sdk_ecs::types::NetworkMode::Awsvpc)
            .cpu("256")
            .memory("512")
            .container_definitions(
                aws_sdk_ecs::types::ContainerDefinition::builder()
                    .name("agent")
                    .image("herd:test")
                    .memory(512)
                    .command("agent")
                    .build(),
            )
            .send()
            .await
            .expect("RegisterTaskDefinition");
        moto.pin_ecs_task_states();
        create_history_table(&moto.url, "herd-history").await;
        Stack {
            history_table: "herd-history".into(),
            spec_bucket,
            results_bucket,
            queue_url,
            dlq_url,
            topic_arn,
            sns_sink,
            eb_sink,
            cluster,
            task_definition: "herd-agent".into(),
            subnet: moto.default_subnet(),
        }
    }

    /// One long poll of up to a second: the bodies received, deleted from the queue.
    async fn receive(&self, queue: &str) -> Vec<String> {
        let got = self
            .sqs
            .receive_message()
            .queue_url(queue)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .expect("ReceiveMessage");
        let mut out = Vec::new();
        for m in got.messages() {
            out.push(m.body().unwrap_or_default().to_string());
            if let Some(r) = m.receipt_handle() {
                let _ = self
                    .sqs
                    .delete_message()
                    .queue_url(queue)
                    .receipt_handle(r)
                    .send()
                    .await;
            }
        }
        out
    }

    /// Every message that arrives on `queue` within `wait`, bodies only.
    pub async fn drain(&self, queue: &str, wait: Duration) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut out = Vec::new();
        while tokio::time::Instant::now() < deadline {
            out.extend(self.receive(queue).await);
        }
        out
    }

    /// Waits for the first message on `queue` whose body satisfies `pred`.
    pub async fn wait_for(
        &self,
        queue: &str,
        wait: Duration,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> Option<serde_json::Value> {
        let deadline = tokio::time::Instant::now() + wait;
        while tokio::time::Instant::now() < deadline {
            if let Some(v) = self
                .receive(queue)
                .await
                .iter()
                .map(|b| notification(b))
                .find(|v| pred(v))
            {
                return Some(v);
            }
        }
        None
    }
}

/// A notification as `{"type": …, "detail": …}`, whether it came through SNS (JSON envelope
/// with a `type` message attribute) or EventBridge (the event itself).
pub fn notification(body: &str) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    if v.get("Type").and_then(|t| t.as_str()) == Some("Notification") {
        let detail: serde_json::Value = v["Message"]
            .as_str()
            .and_then(|m| serde_json::from_str(m).ok())
            .unwrap_or_default();
        let kind = v["MessageAttributes"]["type"]["Value"].clone();
        return serde_json::json!({"type": kind, "detail": detail, "via": "sns"});
    }
    serde_json::json!({"type": v["detail-type"], "detail": v["detail"], "via": "eventbridge"})
}

/// The ECS harness: watches moto's tasks and runs one real `herd agent` per task.
pub struct EcsHarness {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Task ARN → agent process id, for tests that kill one.
    pub pids: std::sync::Arc<std::sync::Mutex<HashMap<String, u32>>>,
}

impl EcsHarness {
    /// `endpoint`: where the SDK reaches moto (through a [`MotoFix`]).
    pub fn start(
        endpoint: &str,
        cluster: &str,
        herd: std::path::PathBuf,
        logs: std::path::PathBuf,
    ) -> EcsHarness {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let pids = std::sync::Arc::new(std::sync::Mutex::new(HashMap::new()));
        let (s, p, url, cluster) = (
            stop.clone(),
            pids.clone(),
            endpoint.to_string(),
            cluster.to_string(),
        );
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("harness runtime");
            rt.block_on(harness(s, p, url, cluster, herd, logs));
        });
        EcsHarness {
            stop,
            thread: Some(thread),
            pids,
        }
    }
}

impl Drop for EcsHarness {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn harness(
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    pids: std::sync::Arc<std::sync::Mutex<HashMap<String, u32>>>,
    url: String,
    cluster: String,
    herd: std::path::PathBuf,
    logs: std::path::PathBuf,
) {
    let conf = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(&url)
        .load()
        .await;
    let ecs = aws_sdk_ecs::Client::new(&conf);
    let mut children: HashMap<String, std::process::Child> = HashMap::new();
    let mut signalled: std::collections::HashSet<String> = Default::default();
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let Ok(list) = ecs.list_tasks().cluster(&cluster).send().await else {
            continue;
        };
        let arns: Vec<String> = list.task_arns().to_vec();
        if arns.is_empty() {
            continue;
        }
        let Ok(desc) = ecs
            .describe_tasks()
            .cluster(&cluster)
            .set_tasks(Some(arns))
            .send()
            .await
        else {
            continue;
        };
        for t in desc.tasks() {
            let Some(arn) = t.task_arn() else { continue };
            let stopped = t.desired_status() == Some("STOPPED");
            if !children.contains_key(arn) && !stopped {
                let mut cmd = std::process::Command::new(&herd);
                cmd.arg("agent");
                for o in t
                    .overrides()
                    .map(|o| o.container_overrides())
                    .unwrap_or_default()
                {
                    for kv in o.environment() {
                        if let (Some(k), Some(v)) = (kv.name(), kv.value()) {
                            cmd.env(k, v);
                        }
                    }
                }
                let id = arn.rsplit('/').next().unwrap_or("task");
                let log =
                    std::fs::File::create(logs.join(format!("task-{id}.log"))).expect("task log");
                // What Fargate's metadata endpoint and task role would give the container.
                cmd.env("HERD_TASK_ARN", arn)
                    .env("HERD_AWS_ENDPOINT_URL", &url)
                    .env("AWS_ACCESS_KEY_ID", "test")
                    .env("AWS_SECRET_ACCESS_KEY", "test")
                    .env("AWS_EC2_METADATA_DISABLED", "true")
                    .env("HERD_LOG", "info,rumqttc=warn")
                    .stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::null())
                    .stderr(log);
                let child = cmd.spawn().expect("start herd agent for a task");
                pids.lock()
                    .expect("pids")
                    .insert(arn.to_string(), child.id());
                children.insert(arn.to_string(), child);
            }
            if stopped && signalled.insert(arn.to_string()) {
                // StopTask: ECS sends SIGTERM to the container.
                if let Some(c) = children.get_mut(arn) {
                    if c.try_wait().ok().flatten().is_none() {
                        unsafe {
                            libc::kill(c.id() as i32, libc::SIGTERM);
                        }
                    }
                }
            }
        }
        for c in children.values_mut() {
            let _ = c.try_wait();
        }
    }
    for (_, mut c) in children {
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// moto answers ECS `Container.cpu`/`memory` as JSON numbers where the ECS API (and so the
/// Rust SDK, which is strict) has strings. This proxy sits between every SDK client and moto
/// and turns those two fields into strings — a fix to the stand-in, not to herd.
pub struct MotoFix {
    pub url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for MotoFix {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn stringify_containers(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(m) => {
            if let Some(serde_json::Value::Array(cs)) = m.get_mut("containers") {
                for c in cs.iter_mut() {
                    for k in ["cpu", "memory", "memoryReservation"] {
                        if let Some(n) = c.get(k).filter(|x| x.is_number()).map(|x| x.to_string()) {
                            c[k] = serde_json::Value::String(n);
                        }
                    }
                }
            }
            for (_, x) in m.iter_mut() {
                stringify_containers(x);
            }
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(stringify_containers),
        _ => {}
    }
}

/// moto delivers EventBridge events to SQS without the `account` field real EventBridge sets
/// (its default input template leaves it out); herd checks the account of pipeline events, so
/// the proxy puts moto's account back into each event body it sees.
fn add_event_account(v: &mut serde_json::Value) {
    let Some(msgs) = v.get_mut("Messages").and_then(|m| m.as_array_mut()) else {
        return;
    };
    for m in msgs {
        let Some(body) = m.get("Body").and_then(|b| b.as_str()) else {
            continue;
        };
        let Ok(mut ev) = serde_json::from_str::<serde_json::Value>(body) else {
            continue;
        };
        let is_event = ev.get("detail-type").is_some() && ev.get("source").is_some();
        if let (true, Some(obj)) = (is_event, ev.as_object_mut()) {
            obj.entry("account")
                .or_insert_with(|| serde_json::Value::String(crate::aws::ACCOUNT.into()));
            m["Body"] = serde_json::Value::String(ev.to_string());
        }
    }
}

impl MotoFix {
    pub async fn start(moto_port: u16) -> MotoFix {
        use http_body_util::{BodyExt, Full};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(
                        move |req: hyper::Request<hyper::body::Incoming>| async move {
                            let ecs = req
                                .headers()
                                .get("x-amz-target")
                                .and_then(|t| t.to_str().ok())
                                .is_some_and(|t| t.starts_with("AmazonEC2ContainerService"));
                            let sqs_receive = req
                                .headers()
                                .get("x-amz-target")
                                .and_then(|t| t.to_str().ok())
                                .is_some_and(|t| t == "AmazonSQS.ReceiveMessage");
                            let (parts, body) = req.into_parts();
                            let body = body.collect().await?.to_bytes();
                            let up = tokio::net::TcpStream::connect(("127.0.0.1", moto_port))
                                .await
                                .map_err(|e| std::io::Error::other(format!("moto: {e}")));
                            let up = match up {
                                Ok(u) => u,
                                Err(e) => {
                                    let mut r = hyper::Response::new(Full::new(
                                        bytes::Bytes::from(e.to_string()),
                                    ));
                                    *r.status_mut() = hyper::StatusCode::BAD_GATEWAY;
                                    return Ok::<_, hyper::Error>(r);
                                }
                            };
                            let (mut send, conn) = hyper::client::conn::http1::handshake(
                                hyper_util::rt::TokioIo::new(up),
                            )
                            .await?;
                            tokio::spawn(conn);
                            let resp = send
                                .send_request(hyper::Request::from_parts(parts, Full::new(body)))
                                .await?;
                            let (mut parts, body) = resp.into_parts();
                            let mut bytes = body.collect().await?.to_bytes();
                            if ecs || sqs_receive {
                                if let Ok(mut v) =
                                    serde_json::from_slice::<serde_json::Value>(&bytes)
                                {
                                    if ecs {
                                        stringify_containers(&mut v);
                                    } else {
                                        add_event_account(&mut v);
                                    }
                                    bytes = bytes::Bytes::from(v.to_string());
                                    parts.headers.remove(hyper::header::CONTENT_LENGTH);
                                }
                            }
                            Ok(hyper::Response::from_parts(parts, Full::new(bytes)))
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(conn), svc)
                        .await;
                });
            }
        });
        MotoFix { url, task }
    }
}

/// The history table `deploy/herd.yaml` makes (`coordinator::store::dynamo`'s layout): `pk`/`sk`,
/// and the indexes `gsi1` (`g1pk`/`g1sk`) and `gsi2` (`g2pk`/`g2sk`), everything projected.
pub async fn create_history_table(endpoint: &str, name: &str) {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType,
        Projection, ProjectionType, ScalarAttributeType,
    };
    let conf = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "test", "test", None, None, "moto",
        ))
        .load()
        .await;
    let key = |n: &str, t: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(n)
            .key_type(t)
            .build()
            .expect("key")
    };
    let attr = |n: &str| {
        AttributeDefinition::builder()
            .attribute_name(n)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .expect("attribute")
    };
    let gsi = |name: &str, pk: &str, sk: &str| {
        GlobalSecondaryIndex::builder()
            .index_name(name)
            .key_schema(key(pk, KeyType::Hash))
            .key_schema(key(sk, KeyType::Range))
            .projection(
                Projection::builder()
                    .projection_type(ProjectionType::All)
                    .build(),
            )
            .build()
            .expect("index")
    };
    let mut req = aws_sdk_dynamodb::Client::new(&conf)
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(key("pk", KeyType::Hash))
        .key_schema(key("sk", KeyType::Range))
        .global_secondary_indexes(gsi("gsi1", "g1pk", "g1sk"))
        .global_secondary_indexes(gsi("gsi2", "g2pk", "g2sk"));
    for a in ["pk", "sk", "g1pk", "g1sk", "g2pk", "g2sk"] {
        req = req.attribute_definitions(attr(a));
    }
    req.send().await.expect("CreateTable");
}

/// An EventBridge Scheduler client on moto.
pub async fn scheduler_client(endpoint: &str) -> aws_sdk_scheduler::Client {
    let conf = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_scheduler::config::Credentials::new(
            "test", "test", None, None, "moto",
        ))
        .load()
        .await;
    aws_sdk_scheduler::Client::new(&conf)
}
