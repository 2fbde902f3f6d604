//! `POST /runs` as `multipart/form-data`: the spec (part `spec`) with the files it names (parts
//! `file`, each with its path relative to the spec as the filename: `users.csv`,
//! `scripts/load.js`, `bundle.zip`). The files are written below a private temporary folder
//! and the spec read from there, so they go through the same checks as an inbox spec's: paths
//! confined to the folder, regular files, sizes and zip ratios capped.

use std::io::Write as _;

use actix_web::web;
use futures::StreamExt;
use serde::Deserialize;
use utoipa::ToSchema;

use super::error::ApiError;
use crate::bundle::{check_path, MAX_BUNDLE_BYTES, MAX_FILES, MAX_SPEC_BYTES};

/// How a multipart run request is laid out (documentation only).
#[derive(Debug, Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct MultipartRun {
    /// The spec, YAML or JSON.
    spec: String,
    /// The files it names, repeatable; each part's filename is its path relative to the spec.
    #[schema(value_type = Vec<String>, format = Binary)]
    file: Vec<Vec<u8>>,
}

/// An upload unpacked: the spec's path and the folder its files are in (removed when dropped).
pub struct Upload {
    pub dir: tempfile::TempDir,
    pub spec: std::path::PathBuf,
    /// The spec's own folder, apart from its files' (no file can take its name).
    _spec_dir: tempfile::TempDir,
}

pub fn is_multipart(req: &actix_web::HttpRequest) -> bool {
    req.headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("multipart/form-data"))
}

pub async fn unpack(
    req: &actix_web::HttpRequest,
    payload: web::Payload,
) -> Result<Upload, ApiError> {
    let dir = tempfile::Builder::new()
        .prefix("herd-upload-")
        .tempdir()
        .map_err(|e| ApiError::internal(format!("a folder for the upload: {e}")))?;
    let spec_dir = tempfile::Builder::new()
        .prefix("herd-upload-spec-")
        .tempdir()
        .map_err(|e| ApiError::internal(format!("a folder for the upload: {e}")))?;
    let limit = (MAX_SPEC_BYTES + MAX_BUNDLE_BYTES) as usize;
    let mut total = 0usize;
    let mut files = 0usize;
    let mut spec = None;
    let mut parts = actix_multipart::Multipart::new(req.headers(), payload);
    while let Some(part) = parts.next().await {
        let mut part =
            part.map_err(|e| ApiError::bad_request(format!("the multipart body: {e}")))?;
        let name = part.name().unwrap_or_default().to_string();
        let path = match name.as_str() {
            "spec" => {
                if spec.is_some() {
                    return Err(ApiError::bad_request("more than one `spec` part"));
                }
                spec_dir.path().join("spec.yaml")
            }
            "file" => {
                files += 1;
                if files > MAX_FILES {
                    return Err(ApiError::bad_request(format!(
                        "more than {MAX_FILES} files"
                    )));
                }
                let rel = part
                    .content_disposition()
                    .and_then(|d| d.get_filename())
                    .map(str::to_string)
                    .ok_or_else(|| {
                        ApiError::bad_request(
                            "a `file` part needs a filename: its path relative to the spec",
                        )
                    })?;
                check_path(&rel)
                    .map_err(|e| ApiError::bad_request(format!("file {rel:?}: {e}")))?;
                let p = dir.path().join(&rel);
                if p.exists() {
                    return Err(ApiError::bad_request(format!("file {rel:?} twice")));
                }
                if let Some(parent) = p.parent() {
                    std::fs::create_dir_all(parent)
                        .map_err(|e| ApiError::internal(format!("unpacking {rel}: {e}")))?;
                }
                p
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "part {other:?}: the parts are `spec` and `file`"
                )))
            }
        };
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| ApiError::internal(format!("unpacking {}: {e}", path.display())))?;
        while let Some(chunk) = part.next().await {
            let chunk =
                chunk.map_err(|e| ApiError::bad_request(format!("the multipart body: {e}")))?;
            total += chunk.len();
            if total > limit {
                return Err(ApiError::too_large(limit));
            }
            out.write_all(&chunk)
                .map_err(|e| ApiError::internal(format!("unpacking: {e}")))?;
        }
        if name == "spec" {
            spec = Some(path);
        }
    }
    let spec = spec.ok_or_else(|| ApiError::bad_request("no `spec` part"))?;
    Ok(Upload {
        dir,
        spec,
        _spec_dir: spec_dir,
    })
}
