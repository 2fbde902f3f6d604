//! S3: specs in, results out, short-lived agent bootstrap objects, and idempotency markers
//! that make a re-delivered request a no-op even across coordinator restarts.

use std::path::Path;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;

use super::err_text;
use crate::run::results::SUMMARY;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("s3://{bucket}/{key}: {message}")]
    S3 {
        bucket: String,
        key: String,
        message: String,
    },
    #[error("s3://{bucket}/{key} does not exist")]
    Missing { bucket: String, key: String },
    /// Access denied. Without s3:ListBucket, S3 also answers a missing key this way.
    #[error("s3://{bucket}/{key}: access denied (or missing, without list permission)")]
    Denied { bucket: String, key: String },
    /// There, but not usable as asked (too large, not text): no retry will change that.
    #[error("s3://{bucket}/{key}: {reason}")]
    Unusable {
        bucket: String,
        key: String,
        reason: String,
    },
    #[error("{0}: {1}")]
    Local(String, std::io::Error),
}

impl StoreError {
    /// Missing, denied or unusable for good, as opposed to S3 being unreachable right now. A
    /// denied read (a `spec_key` outside what the coordinator may read) does not change on
    /// retry: the request is rejected with why, not retried into the dead-letter queue.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            StoreError::Missing { .. } | StoreError::Denied { .. } | StoreError::Unusable { .. }
        )
    }
}

#[derive(Clone)]
pub struct S3Store {
    pub client: Client,
    pub results_bucket: String,
    pub results_prefix: String,
}

/// Bootstrap objects and idempotency markers are a page of text at most.
pub const MAX_TEXT_BYTES: i64 = 1 << 20;

impl S3Store {
    fn err(bucket: &str, key: &str, e: impl std::error::Error) -> StoreError {
        StoreError::S3 {
            bucket: bucket.into(),
            key: key.into(),
            message: err_text(&e),
        }
    }

    /// Fetches a small object as UTF-8 text (a marker, a bootstrap object).
    pub async fn get_text(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
    ) -> Result<String, StoreError> {
        let bytes = self.get_bytes(bucket, key, version, MAX_TEXT_BYTES).await?;
        String::from_utf8(bytes).map_err(|_| StoreError::Unusable {
            bucket: bucket.into(),
            key: key.into(),
            reason: "not UTF-8 text".into(),
        })
    }

    /// Fetches an object of at most `limit` bytes.
    pub async fn get_bytes(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
        limit: i64,
    ) -> Result<Vec<u8>, StoreError> {
        let out = self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .set_version_id(version.map(str::to_string))
            .send()
            .await
            .map_err(|e| {
                if e.as_service_error().is_some_and(|s| s.is_no_such_key()) {
                    StoreError::Missing {
                        bucket: bucket.into(),
                        key: key.into(),
                    }
                } else if e.raw_response().is_some_and(|r| r.status().as_u16() == 403) {
                    StoreError::Denied {
                        bucket: bucket.into(),
                        key: key.into(),
                    }
                } else {
                    Self::err(bucket, key, e)
                }
            })?;
        let too_large = || StoreError::Unusable {
            bucket: bucket.into(),
            key: key.into(),
            reason: format!("larger than {limit} bytes"),
        };
        if out.content_length().unwrap_or(0) > limit {
            return Err(too_large());
        }
        // The header may be missing or wrong: count what actually arrives.
        let mut body = out.body;
        let mut bytes = Vec::new();
        while let Some(chunk) = body
            .try_next()
            .await
            .map_err(|e| Self::err(bucket, key, e))?
        {
            if (bytes.len() + chunk.len()) as i64 > limit {
                return Err(too_large());
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(bytes)
    }

    pub async fn put(
        &self,
        key: &str,
        body: Vec<u8>,
        content_type: &str,
    ) -> Result<(), StoreError> {
        self.client
            .put_object()
            .bucket(&self.results_bucket)
            .key(key)
            .content_type(content_type)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| Self::err(&self.results_bucket, key, e))?;
        Ok(())
    }

    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.client
            .delete_object()
            .bucket(&self.results_bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| Self::err(&self.results_bucket, key, e))?;
        Ok(())
    }

    /// `results/<spec>/<run>/` as an `s3://` URL.
    pub fn results_url(&self, spec: &str, run: &str) -> String {
        format!(
            "s3://{}/{}",
            self.results_bucket,
            self.results_key(spec, run, "")
        )
    }

    fn results_key(&self, spec: &str, run: &str, file: &str) -> String {
        format!("{}{spec}/{run}/{file}", self.results_prefix)
    }

    /// Uploads a run folder written whole to `results/<spec>/<run>/`, in [`upload_plan`]'s
    /// order: `summary.json` last, so that, as on disk, an S3 folder with a `summary.json` is
    /// complete, and an upload that fails midway leaves none.
    pub async fn upload_results(
        &self,
        dir: &Path,
        spec: &str,
        run: &str,
    ) -> Result<String, StoreError> {
        for f in upload_plan(dir)? {
            let Some(name) = f.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let body =
                std::fs::read(&f).map_err(|e| StoreError::Local(f.display().to_string(), e))?;
            let ct = match f.extension().and_then(|e| e.to_str()) {
                Some("json") => "application/json",
                Some("csv") => "text/csv",
                Some("xml") => "application/xml",
                Some("yaml") => "application/yaml",
                Some("html") => "text/html",
                _ => "text/plain",
            };
            self.put(&self.results_key(spec, run, name), body, ct)
                .await?;
        }
        Ok(self.results_url(spec, run))
    }

    fn marker_key(key: &str) -> String {
        format!("_idempotency/{key}")
    }

    /// What an idempotency key already led to, if anything.
    pub async fn seen(&self, key: &str) -> Result<Option<Marker>, StoreError> {
        let k = Self::marker_key(key);
        match self.get_text(&self.results_bucket.clone(), &k, None).await {
            Ok(text) => Ok(Some(Marker::decode(&text))),
            Err(StoreError::Missing { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub async fn mark(&self, key: &str, marker: &Marker) -> Result<(), StoreError> {
        self.put(
            &Self::marker_key(key),
            marker.encode().into_bytes(),
            "text/plain",
        )
        .await
    }
}

/// The files of a run folder to upload, in order: every visible file (a temp file a crash left
/// is hidden, `.<name>.<random>.tmp`), `summary.json` last. A folder without `summary.json` was
/// not written whole and is refused.
pub fn upload_plan(dir: &Path) -> Result<Vec<std::path::PathBuf>, StoreError> {
    let local = |p: &Path, e| StoreError::Local(p.display().to_string(), e);
    let entries = std::fs::read_dir(dir).map_err(|e| local(dir, e))?;
    let mut files: Vec<_> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| !n.starts_with('.'))
        })
        .collect();
    let summary = Some(std::ffi::OsStr::new(SUMMARY));
    files.sort_by_key(|p| (p.file_name() == summary, p.clone()));
    if files.last().and_then(|p| p.file_name()) != summary {
        return Err(local(
            &dir.join(SUMMARY),
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "missing: the run folder was not written whole",
            ),
        ));
    }
    Ok(files)
}

/// What an idempotency key led to, as stored under `_idempotency/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Marker {
    Run(String),
    Rejected,
}

/// Stored as the run id, or this word (which no run id is: run ids end in a timestamp).
const REJECTED: &str = "rejected";

impl Marker {
    fn encode(&self) -> String {
        match self {
            Marker::Run(id) => id.clone(),
            Marker::Rejected => REJECTED.to_string(),
        }
    }

    fn decode(text: &str) -> Marker {
        match text.trim() {
            REJECTED => Marker::Rejected,
            id => Marker::Run(id.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_is_uploaded_last_and_temp_files_not_at_all() {
        let d = tempfile::tempdir().expect("temp dir");
        for f in [
            "agent-0.log",
            SUMMARY,
            "timeseries.csv",
            ".spec.json.x1.tmp",
        ] {
            std::fs::write(d.path().join(f), "x").expect("file");
        }
        std::fs::create_dir(d.path().join("sub")).expect("folder");
        let names: Vec<String> = upload_plan(d.path())
            .expect("a whole folder")
            .iter()
            .filter_map(|p| p.file_name()?.to_str().map(str::to_string))
            .collect();
        assert_eq!(names, ["agent-0.log", "timeseries.csv", SUMMARY]);
    }

    #[test]
    fn a_folder_without_its_summary_is_not_uploaded() {
        let d = tempfile::tempdir().expect("temp dir");
        std::fs::write(d.path().join("timeseries.csv"), "x").expect("file");
        let e = upload_plan(d.path()).expect_err("incomplete");
        assert!(e.to_string().contains("summary.json: missing"), "{e}");
    }
}
