//! Specs dropped in S3, and the files they name beside them, for the bundle builder. A
//! script folder cannot be read from S3 (zip it instead).

use super::store::{S3Store, StoreError};
use crate::bundle::{Source, SourceError};

pub struct S3Source<'a> {
    pub store: &'a S3Store,
    pub bucket: String,
    pub key: String,
    pub version: Option<String>,
    pub origin: String,
}

fn source_error(e: StoreError) -> SourceError {
    if e.is_permanent() {
        SourceError::Unusable(e.to_string())
    } else {
        SourceError::Transient(e.to_string())
    }
}

impl Source for S3Source<'_> {
    fn origin(&self) -> &str {
        &self.origin
    }

    async fn spec_text(&self, limit: u64) -> Result<String, SourceError> {
        let bytes = self
            .store
            .get_bytes(
                &self.bucket,
                &self.key,
                self.version.as_deref(),
                limit as i64,
            )
            .await
            .map_err(source_error)?;
        String::from_utf8(bytes).map_err(|_| {
            SourceError::Unusable(format!("s3://{}/{}: not UTF-8 text", self.bucket, self.key))
        })
    }

    async fn file(&self, path: &str, limit: u64) -> Result<Vec<u8>, SourceError> {
        let dir = self.key.rsplit_once('/').map_or("", |(d, _)| d);
        let key = if dir.is_empty() {
            path.to_string()
        } else {
            format!("{dir}/{path}")
        };
        self.store
            .get_bytes(&self.bucket, &key, None, limit as i64)
            .await
            .map_err(source_error)
    }

    async fn folder(
        &self,
        _path: &str,
        _limit: u64,
    ) -> Result<Option<Vec<(String, Vec<u8>)>>, SourceError> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_denied_or_missing_spec_is_rejected_and_only_an_unreachable_s3_retried() {
        let (bucket, key) = ("specs-bucket".to_string(), "results/x.yaml".to_string());
        let denied = StoreError::Denied {
            bucket: bucket.clone(),
            key: key.clone(),
        };
        assert!(
            matches!(source_error(denied), SourceError::Unusable(m) if m.contains("access denied"))
        );
        let missing = StoreError::Missing {
            bucket: bucket.clone(),
            key: key.clone(),
        };
        assert!(matches!(source_error(missing), SourceError::Unusable(_)));
        let down = StoreError::S3 {
            bucket,
            key,
            message: "connection refused".into(),
        };
        assert!(matches!(source_error(down), SourceError::Transient(_)));
    }
}
