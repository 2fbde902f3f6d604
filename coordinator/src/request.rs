//! A request for a run, however it arrived (inbox file, S3 object, pipeline event): what the
//! intake actors hand the registry.

use std::path::PathBuf;

use crate::bundle::Overrides;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpecSource {
    S3 {
        bucket: String,
        key: String,
        version: Option<String>,
    },
    Inline(String),
    /// A local file (the inbox); data files are read from `data_dir`.
    File {
        path: PathBuf,
        data_dir: PathBuf,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRequest {
    /// Same value for every delivery of the same request: one run however often it arrives.
    pub idempotency_key: String,
    pub spec: SpecSource,
    pub overrides: Overrides,
    pub correlation_id: Option<String>,
    /// Where the request came from, for logs and `RunRejected` (`s3://b/k`, `pipeline event …`).
    pub origin: String,
}
