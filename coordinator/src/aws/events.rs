//! What an intake message means: pure decoding of SQS message bodies into [`Intent`]s, so the
//! SQS actor only moves messages and every format is unit-tested.
//!
//! Understood bodies:
//! - EventBridge events (the body *is* the event): S3 `Object Created`, herd pipeline events
//!   (`source: herd.pipeline`, `RunRequested` / `CancelRequested`), ECS `Task State Change`;
//! - direct S3 → SQS notifications (`{"Records": [...]}`) and their `s3:TestEvent`;
//! - either of the above wrapped in an SNS envelope (`{"Type": "Notification", "Message": …}`).

use serde_json::Value;

use crate::bundle::Overrides;
#[cfg(test)]
use crate::config::PIPELINE_SOURCE;
use crate::request::{RunRequest, SpecSource};

/// `source` of the events herd emits (`RunCompleted`, `RunRejected`).
pub const HERD_SOURCE: &str = "herd";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Intent {
    Start(RunRequest),
    Cancel {
        run_id: Option<String>,
        correlation_id: Option<String>,
        reason: String,
    },
    /// An ECS task stopped; the run's launcher knows which agent it was.
    TaskStopped {
        task_arn: String,
        /// From the task's `HERD_RUN` override, when the event carries it.
        run_id: Option<String>,
        reason: String,
    },
    /// Understood and deliberately not acted on (a test event, another prefix…).
    Ignore(String),
}

/// A body herd cannot understand: left for the queue's redrive policy (DLQ), with this reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Poison(pub String);

/// Who may ask for runs through pipeline events. `events:PutEvents` is granted widely and
/// `herd.pipeline` is not a reserved source, so the source alone proves nothing: an event is
/// taken only from a listed source *and* a listed account (the `account` EventBridge sets to
/// the sender's, which a sender cannot choose).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PipelineTrust {
    pub sources: Vec<String>,
    pub accounts: Vec<String>,
}

impl PipelineTrust {
    fn trusts_source(&self, source: &str) -> bool {
        self.sources.iter().any(|s| s == source)
    }

    fn check_account(&self, v: &Value) -> Result<(), Poison> {
        let account = str_at(v, "/account").unwrap_or("");
        if self.accounts.iter().any(|a| a == account) {
            Ok(())
        } else {
            Err(Poison(format!(
                "pipeline event from account {account:?}, which [aws.pipeline] accounts does not list"
            )))
        }
    }
}

/// What selects the messages herd acts on.
#[derive(Debug, Clone, Copy)]
pub struct Accept<'a> {
    /// Which S3 objects are specs.
    pub spec_bucket: &'a str,
    pub spec_prefix: &'a str,
    pub pipeline: &'a PipelineTrust,
}

/// Decodes one SQS body.
pub fn decode(body: &str, accept: Accept<'_>) -> Result<Intent, Poison> {
    let v: Value = serde_json::from_str(body).map_err(|e| Poison(format!("not JSON: {e}")))?;
    decode_value(&v, accept, 0)
}

fn decode_value(v: &Value, accept: Accept<'_>, depth: u8) -> Result<Intent, Poison> {
    let (bucket, prefix) = (accept.spec_bucket, accept.spec_prefix);
    if v.get("Type").and_then(Value::as_str) == Some("Notification") && depth == 0 {
        let inner =
            str_at(v, "/Message").ok_or_else(|| Poison("SNS envelope without Message".into()))?;
        let inner: Value = serde_json::from_str(inner)
            .map_err(|e| Poison(format!("SNS Message is not JSON: {e}")))?;
        return decode_value(&inner, accept, depth + 1);
    }
    if v.get("Event").and_then(Value::as_str) == Some("s3:TestEvent") {
        return Ok(Intent::Ignore("S3 test event".into()));
    }
    if let Some(records) = v.get("Records").and_then(Value::as_array) {
        return s3_records(records, bucket, prefix);
    }
    let source = v.get("source").and_then(Value::as_str);
    let detail_type = v.get("detail-type").and_then(Value::as_str);
    match (source, detail_type) {
        (Some("aws.s3"), Some("Object Created")) => {
            let b = str_at(v, "/detail/bucket/name")
                .ok_or_else(|| Poison("Object Created without detail.bucket.name".into()))?;
            let k = str_at(v, "/detail/object/key")
                .ok_or_else(|| Poison("Object Created without detail.object.key".into()))?;
            let version_id = str_at(v, "/detail/object/version-id").filter(|x| is_version(x));
            let etag =
                str_at(v, "/detail/object/etag").or_else(|| str_at(v, "/detail/object/eTag"));
            let ident = identity(version_id, etag, str_at(v, "/detail/object/sequencer"));
            Ok(s3_intent(
                b,
                k,
                ident.as_deref(),
                version_id,
                bucket,
                prefix,
            ))
        }
        (Some("aws.s3"), Some(other)) => Ok(Intent::Ignore(format!("S3 event {other:?}"))),
        (Some(s), Some("RunRequested")) if accept.pipeline.trusts_source(s) => {
            accept.pipeline.check_account(v)?;
            pipeline_run(v)
        }
        (Some(s), Some("CancelRequested")) if accept.pipeline.trusts_source(s) => {
            accept.pipeline.check_account(v)?;
            let run_id = str_at(v, "/detail/run_id").map(str::to_string);
            let correlation_id = str_at(v, "/detail/correlation_id").map(str::to_string);
            if run_id.is_none() && correlation_id.is_none() {
                return Err(Poison(
                    "CancelRequested needs detail.run_id or detail.correlation_id".into(),
                ));
            }
            let reason = str_at(v, "/detail/reason")
                .unwrap_or("cancelled by a pipeline event")
                .to_string();
            Ok(Intent::Cancel {
                run_id,
                correlation_id,
                reason,
            })
        }
        (Some(s), Some(other)) if accept.pipeline.trusts_source(s) => Err(Poison(format!(
            "unknown pipeline detail-type {other:?} (expected RunRequested or CancelRequested)"
        ))),
        (Some("aws.ecs"), Some("ECS Task State Change")) => Ok(ecs_task(v)),
        (Some("aws.ecs"), Some(other)) => Ok(Intent::Ignore(format!("ECS event {other:?}"))),
        (Some(s), Some(d)) => Err(Poison(format!(
            "unknown event source {s:?} / detail-type {d:?}"
        ))),
        _ => Err(Poison(
            "neither an EventBridge event, an S3 notification nor an SNS envelope".into(),
        )),
    }
}

/// Unversioned buckets say `"null"`.
fn is_version(v: &str) -> bool {
    !v.is_empty() && v != "null"
}

/// What tells two writes of one key apart: the version id in a versioned bucket, else the
/// ETag (content) and the sequencer (order of writes).
fn identity(version: Option<&str>, etag: Option<&str>, sequencer: Option<&str>) -> Option<String> {
    match (version, etag, sequencer) {
        (Some(v), _, _) => Some(v.to_string()),
        (None, None, None) => None,
        (None, e, s) => Some(format!("{}-{}", e.unwrap_or(""), s.unwrap_or(""))),
    }
}

fn str_at<'v>(v: &'v Value, pointer: &str) -> Option<&'v str> {
    v.pointer(pointer).and_then(Value::as_str)
}

/// `ident` tells deliveries apart (version id, else ETag, else sequencer); only a version id
/// selects what to fetch.
fn s3_intent(
    b: &str,
    key: &str,
    ident: Option<&str>,
    version_id: Option<&str>,
    bucket: &str,
    prefix: &str,
) -> Intent {
    if b != bucket || !key.starts_with(prefix) {
        return Intent::Ignore(format!(
            "s3://{b}/{key} is not under s3://{bucket}/{prefix}"
        ));
    }
    if key.ends_with('/') {
        return Intent::Ignore(format!("s3://{b}/{key} is a folder marker"));
    }
    let origin = format!("s3://{b}/{key}");
    Intent::Start(RunRequest {
        idempotency_key: key_of(&format!("s3/{b}/{key}/{}", ident.unwrap_or("-"))),
        spec: SpecSource::S3 {
            bucket: b.to_string(),
            key: key.to_string(),
            version: version_id
                .filter(|v| !v.is_empty() && *v != "null")
                .map(str::to_string),
        },
        overrides: Overrides::default(),
        correlation_id: None,
        origin,
    })
}

fn s3_records(records: &[Value], bucket: &str, prefix: &str) -> Result<Intent, Poison> {
    // S3 sends one record per notification in practice; more would be ambiguous.
    let [r] = records else {
        return Err(Poison(format!(
            "{} S3 records in one message; expected 1",
            records.len()
        )));
    };
    let name = str_at(r, "/eventName").unwrap_or_default();
    if !name.starts_with("ObjectCreated:") {
        return Ok(Intent::Ignore(format!("S3 record {name:?}")));
    }
    let b = str_at(r, "/s3/bucket/name")
        .ok_or_else(|| Poison("S3 record without s3.bucket.name".into()))?;
    let raw = str_at(r, "/s3/object/key")
        .ok_or_else(|| Poison("S3 record without s3.object.key".into()))?;
    let key = url_decode(raw)
        .ok_or_else(|| Poison(format!("S3 key {raw:?} is not URL-encoded UTF-8")))?;
    let version_id = str_at(r, "/s3/object/versionId").filter(|x| is_version(x));
    let ident = identity(
        version_id,
        str_at(r, "/s3/object/eTag"),
        str_at(r, "/s3/object/sequencer"),
    );
    Ok(s3_intent(
        b,
        &key,
        ident.as_deref(),
        version_id,
        bucket,
        prefix,
    ))
}

fn pipeline_run(v: &Value) -> Result<Intent, Poison> {
    let id = str_at(v, "/id").ok_or_else(|| Poison("RunRequested without an event id".into()))?;
    let d = v
        .get("detail")
        .ok_or_else(|| Poison("RunRequested without detail".into()))?;
    let spec = match (str_at(d, "/spec_key"), str_at(d, "/spec")) {
        (Some(k), None) => SpecSource::S3 {
            bucket: String::new(), // the configured spec bucket
            key: k.to_string(),
            version: str_at(d, "/spec_version").map(str::to_string),
        },
        (None, Some(s)) => SpecSource::Inline(s.to_string()),
        (Some(_), Some(_)) => {
            return Err(Poison(
                "RunRequested has both detail.spec_key and detail.spec".into(),
            ))
        }
        (None, None) => {
            return Err(Poison(
                "RunRequested needs detail.spec_key or detail.spec".into(),
            ))
        }
    };
    let mut overrides = Overrides::default();
    if let Some(o) = d.get("overrides") {
        let o = o
            .as_object()
            .ok_or_else(|| Poison("detail.overrides is not an object".into()))?;
        for (k, val) in o {
            match k.as_str() {
                "agents" => {
                    // The serve config's [limits] agents is checked where the spec is
                    // (bundle::build), so a run over it is rejected, not poison.
                    let n = val
                        .as_u64()
                        .and_then(|n| u32::try_from(n).ok())
                        .filter(|n| *n >= 1)
                        .ok_or_else(|| {
                            Poison(format!(
                                "detail.overrides.agents: {val} is not a number of agents (a whole number from 1)"
                            ))
                        })?;
                    overrides.agents = Some(n);
                }
                "target_url" => {
                    let u = val.as_str().ok_or_else(|| {
                        Poison("detail.overrides.target_url is not a string".into())
                    })?;
                    overrides.target_url = Some(u.to_string());
                }
                other => {
                    return Err(Poison(format!(
                        "detail.overrides.{other}: unknown override (expected agents, target_url)"
                    )))
                }
            }
        }
    }
    let correlation_id = str_at(d, "/correlation_id").map(str::to_string);
    Ok(Intent::Start(RunRequest {
        idempotency_key: key_of(&format!("event/{id}")),
        spec,
        overrides,
        origin: format!(
            "pipeline event {id}{}",
            correlation_id
                .as_ref()
                .map(|c| format!(" (correlation id {c})"))
                .unwrap_or_default()
        ),
        correlation_id,
    }))
}

fn ecs_task(v: &Value) -> Intent {
    let status = str_at(v, "/detail/lastStatus").unwrap_or_default();
    let Some(arn) = str_at(v, "/detail/taskArn") else {
        return Intent::Ignore("ECS task event without taskArn".into());
    };
    if status != "STOPPED" {
        return Intent::Ignore(format!("ECS task {arn} is {status}"));
    }
    let run_id = v
        .pointer("/detail/overrides/containerOverrides")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c.get("environment").and_then(Value::as_array))
        .flatten()
        .find(|e| e.get("name").and_then(Value::as_str) == Some("HERD_RUN"))
        .and_then(|e| e.get("value").and_then(Value::as_str))
        .map(str::to_string);
    let mut reason = format!(
        "ECS task stopped: {}",
        str_at(v, "/detail/stoppedReason").unwrap_or("no reason given")
    );
    if let Some(code) = str_at(v, "/detail/stopCode") {
        reason.push_str(&format!(" ({code})"));
    }
    Intent::TaskStopped {
        task_arn: arn.to_string(),
        run_id,
        reason,
    }
}

/// An S3-key-safe, stable idempotency key.
fn key_of(raw: &str) -> String {
    let mut out: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-._".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    out.truncate(400);
    out
}

/// S3 event keys are URL-encoded with `+` for spaces.
fn url_decode(s: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(s.len());
    let mut it = s.bytes();
    while let Some(b) = it.next() {
        match b {
            b'+' => bytes.push(b' '),
            b'%' => {
                let h = [it.next()?, it.next()?];
                let h = std::str::from_utf8(&h).ok()?;
                bytes.push(u8::from_str_radix(h, 16).ok()?);
            }
            b => bytes.push(b),
        }
    }
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trust() -> &'static PipelineTrust {
        static T: std::sync::OnceLock<PipelineTrust> = std::sync::OnceLock::new();
        T.get_or_init(|| PipelineTrust {
            sources: vec![PIPELINE_SOURCE.into(), "deploys.example".into()],
            accounts: vec!["123456789012".into()],
        })
    }

    fn acc<'a>(spec_bucket: &'a str, spec_prefix: &'a str) -> Accept<'a> {
        Accept {
            spec_bucket,
            spec_prefix,
            pipeline: trust(),
        }
    }

    #[test]
    fn pipeline_events_count_only_from_listed_sources_and_accounts() {
        let run = |source: &str, account: &str| {
            format!(
                r#"{{"id":"e-9","source":"{source}","account":"{account}","detail-type":"RunRequested","detail":{{"spec_key":"specs/a.yaml"}}}}"#
            )
        };
        assert!(matches!(
            decode(&run("herd.pipeline", "123456789012"), acc("b", "specs/")),
            Ok(Intent::Start(_))
        ));
        assert!(matches!(
            decode(&run("deploys.example", "123456789012"), acc("b", "specs/")),
            Ok(Intent::Start(_))
        ));
        let e = decode(&run("herd.pipeline", "999999999999"), acc("b", "specs/"))
            .expect_err("other account");
        assert!(e.0.contains("account \"999999999999\""), "{e}");
        let e = decode(&run("evil.pipeline", "123456789012"), acc("b", "specs/"))
            .expect_err("other source");
        assert!(e.0.contains("unknown event source"), "{e}");
        let no_account = r#"{"id":"e-8","source":"herd.pipeline","detail-type":"CancelRequested","detail":{"run_id":"r"}}"#;
        assert!(decode(no_account, acc("b", "s/")).is_err());
    }

    fn start(i: Intent) -> RunRequest {
        match i {
            Intent::Start(r) => r,
            other => panic!("expected Start, got {other:?}"),
        }
    }

    const EB_S3: &str = r#"{"version":"0","id":"17793124-05d4-b198-2fde-7ededc63b103","detail-type":"Object Created","source":"aws.s3","account":"123456789012","time":"2021-11-12T00:00:00Z","region":"us-east-1","resources":["arn:aws:s3:::specs-bucket"],"detail":{"version":"0","bucket":{"name":"specs-bucket"},"object":{"key":"specs/shop.yaml","size":5,"etag":"b1946ac92492d2347c6235b4d2611184","version-id":"IYV3p45BT0ac8hjHg1houSdS1a.Mro8e","sequencer":"617f08299329d189"},"request-id":"N4N7GDK58NMKJ12R","requester":"123456789012","source-ip-address":"1.2.3.4","reason":"PutObject"}}"#;

    #[test]
    fn eventbridge_s3_object_created() {
        let r = start(decode(EB_S3, acc("specs-bucket", "specs/")).expect("decodes"));
        assert_eq!(r.origin, "s3://specs-bucket/specs/shop.yaml");
        assert!(r
            .idempotency_key
            .contains("IYV3p45BT0ac8hjHg1houSdS1a.Mro8e"));
        // Outside the prefix or bucket: understood, ignored.
        assert!(matches!(
            decode(EB_S3, acc("specs-bucket", "other/")),
            Ok(Intent::Ignore(_))
        ));
        assert!(matches!(
            decode(EB_S3, acc("elsewhere", "specs/")),
            Ok(Intent::Ignore(_))
        ));
    }

    #[test]
    fn direct_s3_notification_and_test_event() {
        let body = r#"{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","awsRegion":"us-east-1","eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"},"object":{"key":"specs/my+shop%C3%A9.yaml","size":5,"eTag":"abc","versionId":"v1","sequencer":"0A"}}}]}"#;
        let r = start(decode(body, acc("b", "specs/")).expect("decodes"));
        assert_eq!(
            r.spec,
            SpecSource::S3 {
                bucket: "b".into(),
                key: "specs/my shopé.yaml".into(),
                version: Some("v1".into())
            }
        );
        let test = r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2024-01-01T00:00:00Z","Bucket":"b","RequestId":"x","HostId":"y"}"#;
        assert!(matches!(
            decode(test, acc("b", "specs/")),
            Ok(Intent::Ignore(_))
        ));
    }

    #[test]
    fn same_object_same_key_across_paths() {
        let eb = start(decode(EB_S3, acc("specs-bucket", "specs/")).expect("eb"));
        let direct = r#"{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"specs-bucket"},"object":{"key":"specs/shop.yaml","versionId":"IYV3p45BT0ac8hjHg1houSdS1a.Mro8e"}}}]}"#;
        let d = start(decode(direct, acc("specs-bucket", "specs/")).expect("direct"));
        assert_eq!(eb.idempotency_key, d.idempotency_key);
        // Unversioned: a rewrite of the key (new content or a later sequencer) is a new run.
        let unversioned = |etag: &str, seq: &str| {
            EB_S3
                .replace("IYV3p45BT0ac8hjHg1houSdS1a.Mro8e", "null")
                .replace("b1946ac92492d2347c6235b4d2611184", etag)
                .replace("617f08299329d189", seq)
        };
        let k = |b: String| {
            start(decode(&b, acc("specs-bucket", "specs/")).expect("decodes")).idempotency_key
        };
        assert_eq!(k(unversioned("e1", "s1")), k(unversioned("e1", "s1")));
        assert_ne!(k(unversioned("e1", "s1")), k(unversioned("e2", "s1")));
        assert_ne!(k(unversioned("e1", "s1")), k(unversioned("e1", "s2")));
    }

    #[test]
    fn pipeline_events() {
        let body = r#"{"id":"e-1","source":"herd.pipeline","account":"123456789012","detail-type":"RunRequested","detail":{"spec_key":"specs/a.yaml","overrides":{"agents":4,"target_url":"http://x"},"correlation_id":"deploy-7"}}"#;
        let r = start(decode(body, acc("b", "specs/")).expect("decodes"));
        assert_eq!(
            r.overrides,
            Overrides {
                agents: Some(4),
                target_url: Some("http://x".into())
            }
        );
        assert_eq!(r.correlation_id.as_deref(), Some("deploy-7"));
        assert_eq!(r.idempotency_key, "event_e-1");
        let inline = r#"{"id":"e-2","source":"herd.pipeline","account":"123456789012","detail-type":"RunRequested","detail":{"spec":"name: x"}}"#;
        assert_eq!(
            start(decode(inline, acc("b", "s/")).expect("inline")).spec,
            SpecSource::Inline("name: x".into())
        );
        let cancel = r#"{"id":"e-3","source":"herd.pipeline","account":"123456789012","detail-type":"CancelRequested","detail":{"correlation_id":"deploy-7"}}"#;
        assert_eq!(
            decode(cancel, acc("b", "s/")),
            Ok(Intent::Cancel {
                run_id: None,
                correlation_id: Some("deploy-7".into()),
                reason: "cancelled by a pipeline event".into()
            })
        );
    }

    #[test]
    fn poison_is_named() {
        let cases = [
            ("not json", "not JSON"),
            (
                r#"{"id":"e","source":"herd.pipeline","account":"123456789012","detail-type":"RunRequested","detail":{}}"#,
                "needs detail.spec_key or detail.spec",
            ),
            (
                r#"{"id":"e","source":"herd.pipeline","account":"123456789012","detail-type":"RunRequested","detail":{"spec":"x","overrides":{"agents":0}}}"#,
                "detail.overrides.agents",
            ),
            (
                r#"{"id":"e","source":"herd.pipeline","account":"123456789012","detail-type":"RunRequested","detail":{"spec":"x","overrides":{"vus":3}}}"#,
                "unknown override",
            ),
            (
                r#"{"id":"e","source":"herd.pipeline","account":"123456789012","detail-type":"Rerun","detail":{}}"#,
                "unknown pipeline detail-type",
            ),
            (
                r#"{"id":"e","source":"herd.pipeline","account":"123456789012","detail-type":"CancelRequested","detail":{}}"#,
                "needs detail.run_id",
            ),
            (
                r#"{"source":"acme","detail-type":"Thing"}"#,
                "unknown event source",
            ),
            (r#"{"hello":1}"#, "neither"),
        ];
        for (body, want) in cases {
            let e = decode(body, acc("b", "s/")).expect_err(body);
            assert!(e.0.contains(want), "{body}: {e}");
        }
    }

    #[test]
    fn ecs_stopped_task() {
        let body = r#"{"id":"x","source":"aws.ecs","detail-type":"ECS Task State Change","detail":{"taskArn":"arn:aws:ecs:us-east-1:1:task/herd/abc","lastStatus":"STOPPED","stoppedReason":"Essential container in task exited","stopCode":"EssentialContainerExited","overrides":{"containerOverrides":[{"name":"agent","environment":[{"name":"HERD_RUN","value":"shop-1"}]}]}}}"#;
        assert_eq!(
            decode(body, acc("b", "s/")),
            Ok(Intent::TaskStopped {
                task_arn: "arn:aws:ecs:us-east-1:1:task/herd/abc".into(),
                run_id: Some("shop-1".into()),
                reason: "ECS task stopped: Essential container in task exited (EssentialContainerExited)".into(),
            })
        );
        let running = body.replace("STOPPED", "RUNNING");
        assert!(matches!(
            decode(&running, acc("b", "s/")),
            Ok(Intent::Ignore(_))
        ));
    }

    #[test]
    fn sns_envelope_is_unwrapped() {
        let inner = serde_json::to_string(EB_S3).expect("quote");
        let body = format!(r#"{{"Type":"Notification","MessageId":"m","Message":{inner}}}"#);
        start(decode(&body, acc("specs-bucket", "specs/")).expect("decodes"));
    }
}
