//! How an ECS agent learns who it is. RunTask starts up to 10 identical tasks per call, so the
//! coordinator cannot put an agent index or a credential in their overrides. Instead it writes
//! one short-lived S3 object per started task, named by the task id, holding the index, the
//! broker and that agent's own certificate; the task reads its id from the ECS metadata
//! endpoint and fetches its object. Nothing secret is baked into images or task definitions,
//! and the objects are deleted at run end (and expire after a day by lifecycle rule).

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use transport::keys::Redacted;

use super::store::{S3Store, StoreError};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Bootstrap {
    pub run_id: String,
    pub index: u32,
    /// mqtts://host:port
    pub broker: String,
    /// CA to trust for the broker; absent means the public roots (IoT Core's Amazon CA).
    pub ca_pem: Option<String>,
    pub cert_pem: String,
    pub key_pem: Redacted<String>,
    /// The agent's own secret (hex): its messages are authenticated with it.
    pub agent_secret: Redacted<String>,
    /// The coordinator's public key (hex): Start and Stop are signed with its private half.
    pub coordinator_key: String,
}

/// `s3://bucket/prefix/` → (bucket, prefix).
pub fn parse_s3_url(url: &str) -> Option<(String, String)> {
    let rest = url.strip_prefix("s3://")?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    (!bucket.is_empty()).then(|| (bucket.to_string(), prefix.to_string()))
}

/// The last segment of a task ARN (`arn:aws:ecs:r:a:task/cluster/ID` → `ID`).
pub fn task_id(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}

/// Why an ECS task could not learn who it is.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    /// The task metadata endpoint could not be used.
    #[error("{0}")]
    Metadata(String),
    #[error("s3://{bucket}/{key}: not a bootstrap object: {reason}")]
    Malformed {
        bucket: String,
        key: String,
        reason: String,
    },
    #[error("s3://{bucket}/{key} did not appear within {wait:?}: was this task started by herd?")]
    NeverWritten {
        bucket: String,
        key: String,
        wait: Duration,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The running task's ARN: `HERD_TASK_ARN` when set (tests, other schedulers), else the ECS
/// task metadata endpoint (v4), which Fargate provides to every container.
pub async fn own_task_arn() -> Result<String, BootstrapError> {
    metadata_task_arn().await.map_err(BootstrapError::Metadata)
}

async fn metadata_task_arn() -> Result<String, String> {
    if let Ok(a) = std::env::var("HERD_TASK_ARN") {
        return Ok(a);
    }
    let base = std::env::var("ECS_CONTAINER_METADATA_URI_V4").map_err(|_| {
        "neither HERD_TASK_ARN nor ECS_CONTAINER_METADATA_URI_V4 is set: not an ECS task?"
            .to_string()
    })?;
    let url = format!("{base}/task");
    let uri: http::Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
    let host = uri.host().ok_or(format!("{url}: no host"))?.to_string();
    let port = uri.port_u16().unwrap_or(80);
    let stream = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| format!("{url}: {e}"))?;
    tokio::spawn(conn);
    let req = http::Request::get(uri.path())
        .header(http::header::HOST, host)
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .map_err(|e| format!("{url}: {e}"))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    use http_body_util::BodyExt;
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("{url}: {e}"))?
        .to_bytes();
    let v: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| format!("{url}: not JSON: {e}"))?;
    v.get("TaskARN")
        .and_then(|a| a.as_str())
        .map(str::to_string)
        .ok_or(format!("{url}: no TaskARN in the answer"))
}

fn not_yet(e: &StoreError) -> bool {
    match e {
        StoreError::Missing { .. } | StoreError::Denied { .. } => true,
        StoreError::S3 { .. } | StoreError::Unusable { .. } | StoreError::Local(..) => false,
    }
}

/// Where task `task_arn`'s bootstrap object is, below `prefix`. Task ids are random and
/// agents may not list the bucket, so an agent can name only its own.
pub fn object_key(prefix: &str, task_arn: &str) -> String {
    format!("{prefix}{}.json", task_id(task_arn))
}

/// Waits for this task's bootstrap object (the coordinator writes it right after RunTask
/// returns, which can be after the task started).
pub async fn fetch(
    store: &S3Store,
    bucket: &str,
    prefix: &str,
    task_arn: &str,
    wait: Duration,
) -> Result<Bootstrap, BootstrapError> {
    let key = object_key(prefix, task_arn);
    let deadline = Instant::now() + wait;
    loop {
        match store.get_text(bucket, &key, None).await {
            Ok(text) => {
                return serde_json::from_str(&text).map_err(|e| BootstrapError::Malformed {
                    bucket: bucket.to_string(),
                    key: key.clone(),
                    reason: e.to_string(),
                })
            }
            // Without s3:ListBucket a missing key answers 403, not 404: both mean "not yet".
            Err(e) if not_yet(&e) && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(500)).await
            }
            Err(e) if not_yet(&e) => {
                return Err(BootstrapError::NeverWritten {
                    bucket: bucket.to_string(),
                    key,
                    wait,
                })
            }
            Err(e) => return Err(e.into()),
        }
    }
}
