//! A run's result files: `/runs/{id}/files`, `/runs/{id}/files/{name}` and the per-second
//! series `/runs/{id}/timeseries`. Only regular files directly in the run's folder are served —
//! no link is followed, no name with a separator — and they are streamed, never held whole.

use std::path::{Path, PathBuf};

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use utoipa::IntoParams;

use super::auth::{Caller, Viewer};
use super::error::{ApiError, ErrorBody};
use super::runs::row;
use super::views::FileView;
use super::Api;

/// Bytes read per chunk of a streamed file.
const CHUNK: usize = 64 << 10;
/// Files listed in one run folder, at most.
const MAX_LISTED: usize = 1000;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/runs/{run_id}/files", web::get().to(list))
        .route("/runs/{run_id}/files/{name}", web::get().to(file))
        .route("/runs/{run_id}/timeseries", web::get().to(timeseries));
}

fn checked_name(name: &str) -> Result<&str, ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('.')
        && !name.contains(['/', '\\', '\0']);
    if ok {
        Ok(name)
    } else {
        Err(ApiError::not_found(format!("no result file {name:?}")))
    }
}

/// The run's folder, after the history says the run exists (so an id never probes the disk).
async fn run_dir(api: &Api, run_id: &str) -> Result<PathBuf, ApiError> {
    let row = row(api, run_id).await?;
    let dir = api.results_dir.join(&row.accepted.run_id);
    match std::fs::symlink_metadata(&dir) {
        Ok(m) if m.is_dir() => Ok(dir),
        _ => Err(ApiError::not_found(
            match row.finished.and_then(|f| f.results) {
                Some(at) => {
                    format!("run {run_id}'s results are not on this server: they are at {at}")
                }
                None => format!("run {run_id} has no result files"),
            },
        )),
    }
}

fn content_type(name: &str) -> &'static str {
    match Path::new(name).extension().and_then(|e| e.to_str()) {
        Some("json") => "application/json",
        Some("csv") => "text/csv; charset=utf-8",
        Some("xml") => "application/xml",
        Some("html") => "text/html; charset=utf-8",
        Some("txt" | "log" | "yaml" | "yml" | "jsonl") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// Streams one regular file (opened without following a link).
async fn stream(path: PathBuf, name: &str) -> Result<HttpResponse, ApiError> {
    use std::os::unix::fs::OpenOptionsExt;
    let missing = || ApiError::not_found(format!("no result file {name:?}"));
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&path)
        .map_err(|_| missing())?;
    let meta = f.metadata().map_err(|_| missing())?;
    if !meta.is_file() {
        return Err(missing());
    }
    let file = tokio::fs::File::from_std(f);
    let body = futures::stream::unfold(file, |mut file| async move {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; CHUNK];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(web::Bytes::from(buf)), file))
            }
            Err(e) => Some((Err(e), file)),
        }
    });
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, content_type(name)))
        // A result file is data, never a page of this origin: no script of a report written
        // from a spec runs with the API's credentials.
        .insert_header((header::CONTENT_SECURITY_POLICY, "sandbox"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .body(actix_web::body::SizedStream::new(meta.len(), body)))
}

/// The run's result files.
#[utoipa::path(
    get, path = "/api/v1/runs/{run_id}/files", operation_id = "list_files", tag = "results",
    params(("run_id" = String, Path, description = "The run")),
    responses(
        (status = 200, body = Vec<FileView>),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
    ),
    security(("token" = ["viewer"]))
)]
pub async fn list(
    _caller: Caller<Viewer>,
    api: web::Data<Api>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let dir = run_dir(&api, &path).await?;
    let mut files: Vec<FileView> = std::fs::read_dir(&dir)
        .map_err(|e| ApiError::internal(format!("reading run {}: {e}", path.as_str())))?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let m = e.metadata().ok()?; // does not follow links
            let name = e.file_name().into_string().ok()?;
            (m.is_file() && checked_name(&name).is_ok()).then_some(FileView {
                name,
                bytes: m.len(),
            })
        })
        .take(MAX_LISTED)
        .collect();
    files.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(HttpResponse::Ok().json(files))
}

/// One result file.
#[utoipa::path(
    get, path = "/api/v1/runs/{run_id}/files/{name}", operation_id = "get_file", tag = "results",
    params(("run_id" = String, Path, description = "The run"), ("name" = String, Path, description = "A name from the run's file list")),
    responses(
        (status = 200, description = "The file", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
    ),
    security(("token" = ["viewer"]))
)]
pub async fn file(
    _caller: Caller<Viewer>,
    api: web::Data<Api>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (run_id, name) = path.into_inner();
    let name = checked_name(&name)?.to_string();
    let dir = run_dir(&api, &run_id).await?;
    stream(dir.join(&name), &name).await
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SeriesQuery {
    /// `json` (default) or `csv`; without it, `Accept: text/csv` asks for CSV.
    pub format: Option<String>,
}

/// The run's per-second series: every second, per label and `TOTAL` (requests, errors,
/// latency percentiles from merged histograms, VUs).
#[utoipa::path(
    get, path = "/api/v1/runs/{run_id}/timeseries", operation_id = "get_timeseries", tag = "results",
    params(("run_id" = String, Path, description = "The run"), SeriesQuery),
    responses(
        (status = 200, description = "timeseries.json or timeseries.csv", content_type = "application/json", body = Object),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, description = "No such run, or it has no series yet", body = ErrorBody),
    ),
    security(("token" = ["viewer"]))
)]
pub async fn timeseries(
    _caller: Caller<Viewer>,
    api: web::Data<Api>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let q = super::query::<SeriesQuery>(&req)?;
    let accepts_csv = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/csv"));
    let name = match q.format.as_deref() {
        Some("csv") => "timeseries.csv",
        Some("json") => "timeseries.json",
        None if accepts_csv => "timeseries.csv",
        None => "timeseries.json",
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "format={other:?}: json or csv"
            )))
        }
    };
    let dir = run_dir(&api, &path).await?;
    stream(dir.join(name), name).await
}
