//! `/runs`: submit a spec, page through the history, read one run, cancel it.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use utoipa::IntoParams;

use super::auth::{Caller, Runner, Viewer};
use super::error::{ApiError, ErrorBody};
use super::views::{CancelRequest, CancelView, RunDetail, RunPage, RunView, SubmitView};
use super::Api;
use crate::request::{RunRequest, SpecSource};
use crate::serve::registry::{CancelRuns, Submit, Submitted};
use crate::store::{parse_verdict, Cursor, RunFilter, RunRow, RunStatus, MAX_PAGE};

/// Rows in a page when `limit` is not given.
pub const DEFAULT_PAGE: u32 = 50;
/// Longest `Idempotency-Key` / `X-Correlation-Id`.
pub const MAX_KEY: usize = 200;
/// Longest cancel reason kept.
pub const MAX_REASON: usize = 500;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/runs", web::post().to(submit))
        .route("/runs", web::get().to(list))
        .route("/runs/{run_id}", web::get().to(get))
        .route("/runs/{run_id}/cancel", web::post().to(cancel));
}

/// A run id as a path segment: letters, digits, `.`, `_`, `-`, not starting with a dot — so
/// it can name a folder under the results directory and nothing else.
pub fn checked_run_id(id: &str) -> Result<&str, ApiError> {
    let ok = !id.is_empty()
        && id.len() <= 200
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(id)
    } else {
        Err(ApiError::not_found(format!("no run {id:?}")))
    }
}

/// The history's row for `run_id`, or 404.
pub async fn row(api: &Api, run_id: &str) -> Result<RunRow, ApiError> {
    let id = checked_run_id(run_id)?.to_string();
    let lookup = id.clone();
    api.store(move |s| s.get(&lookup))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no run {id:?}")))
}

fn header_value(req: &HttpRequest, name: &str) -> Result<Option<String>, ApiError> {
    let Some(v) = req.headers().get(name) else {
        return Ok(None);
    };
    let v = v
        .to_str()
        .ok()
        .filter(|v| !v.is_empty() && v.len() <= MAX_KEY && v.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "header {name}: 1 to {MAX_KEY} printable ASCII characters without spaces"
            ))
        })?;
    Ok(Some(v.to_string()))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StoredQuery {
    /// Run this stored spec (`PUT /specs/{name}`) instead of a body.
    pub spec: Option<String>,
    /// Its version; the latest without it.
    pub version: Option<u32>,
}

/// Starts a run of the spec in the body, or of a stored spec (`?spec=NAME[&version=N]`).
#[utoipa::path(
    post, path = "/api/v1/runs", operation_id = "submit_run", tag = "runs",
    request_body(
        description = "The spec, YAML or JSON (at most 1 MiB); or multipart/form-data with the spec (part `spec`) and the files it names (parts `file`, filename = the path relative to the spec; 7 MiB in all).",
        content(
            (String = "application/yaml"),
            (super::upload::MultipartRun = "multipart/form-data"),
        ),
    ),
    params(
        StoredQuery,
        ("Idempotency-Key" = Option<String>, Header, description = "The same key from the same token makes one run, however often it is sent."),
        ("X-Correlation-Id" = Option<String>, Header, description = "Carried into the run's RunCompleted."),
    ),
    responses(
        (status = 201, description = "Started", body = SubmitView),
        (status = 200, description = "A duplicate of an earlier request", body = SubmitView),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 422, description = "The spec cannot run: every problem", body = ErrorBody),
        (status = 503, body = ErrorBody),
    ),
    security(("token" = ["runner"]))
)]
pub async fn submit(
    caller: Caller<Runner>,
    api: web::Data<Api>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    // Kept until the run is accepted: its files are read into the bundle by then.
    let mut upload = None;
    let (body, source) = if super::upload::is_multipart(&req) {
        let u = super::upload::unpack(&req, payload).await?;
        let source = SpecSource::File {
            path: u.spec.clone(),
            data_dir: u.dir.path().to_path_buf(),
        };
        upload = Some(u);
        (web::Bytes::new(), Some(source))
    } else {
        let body = super::read_body(payload, crate::bundle::MAX_SPEC_BYTES as usize).await?;
        (body, None)
    };
    let stored = super::query::<StoredQuery>(&req)?;
    let text = match stored.spec {
        _ if source.is_some() => String::new(),
        Some(name) => {
            if !body.iter().all(u8::is_ascii_whitespace) {
                return Err(ApiError::bad_request(
                    "give the spec in the body or name a stored one with ?spec=, not both",
                ));
            }
            let name = super::checked_spec_name(&name)?.to_string();
            let n = name.clone();
            let v = api.store(move |s| s.spec(&n, stored.version)).await?;
            v.ok_or_else(|| {
                ApiError::not_found(match stored.version {
                    Some(n) => format!("stored spec {name:?} has no version {n}"),
                    None => format!("no stored spec {name:?}"),
                })
            })?
            .text
        }
        None => {
            let text = std::str::from_utf8(&body)
                .map_err(|e| ApiError::bad_request(format!("the spec is not UTF-8: {e}")))?
                .to_string();
            if text.trim().is_empty() {
                return Err(ApiError::bad_request(
                    "the body is empty: send the spec (YAML or JSON), or name a stored one with ?spec=",
                ));
            }
            text
        }
    };
    let key = match header_value(&req, "Idempotency-Key")? {
        Some(k) => format!("api:{}:{k}", caller.id),
        None => format!("api:{}:{}", caller.id, random_key()),
    };
    let request = RunRequest {
        idempotency_key: key,
        spec: source.unwrap_or(SpecSource::Inline(text)),
        overrides: Default::default(),
        correlation_id: header_value(&req, "X-Correlation-Id")?,
        origin: format!("api:{}", caller.name),
    };
    let answer = api
        .runs
        .send(Submit(request))
        .await
        .map_err(|e| ApiError::unavailable(format!("the run registry: {e}")))?
        .map_err(|e| ApiError::unavailable(format!("try again: {e}")))?;
    drop(upload);
    match answer {
        Submitted::Started(run_id) => Ok(HttpResponse::Created()
            .insert_header((header::LOCATION, format!("/api/v1/runs/{run_id}")))
            .json(SubmitView {
                run_id: Some(run_id),
                duplicate: false,
            })),
        Submitted::Duplicate(run_id) => Ok(HttpResponse::Ok().json(SubmitView {
            run_id,
            duplicate: true,
        })),
        Submitted::Rejected(errors) => Err(ApiError::invalid_spec(errors)),
    }
}

fn random_key() -> String {
    use rand::RngCore;
    let mut b = [0u8; 16];
    rand::rng().fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only runs of this spec name.
    pub spec: Option<String>,
    /// `queued`, `running`, `completed`, `failed` or `cancelled`.
    pub status: Option<String>,
    /// `passed` or `failed`.
    pub verdict: Option<String>,
    /// Accepted at or after: RFC 3339 (`2026-12-01T09:00:00Z`) or milliseconds since the epoch.
    pub from: Option<String>,
    /// Accepted before: same forms.
    pub before: Option<String>,
    /// Rows in the page, 1 to 1000 (default 50).
    pub limit: Option<u32>,
    /// The `next` of the previous page.
    pub cursor: Option<String>,
}

fn instant(name: &str, v: &str) -> Result<u64, ApiError> {
    if let Ok(ms) = v.parse::<u64>() {
        return Ok(ms);
    }
    humantime::parse_rfc3339_weak(v)
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "{name}={v:?}: an RFC 3339 time (2026-12-01T09:00:00Z) or milliseconds since the epoch"
            ))
        })
}

fn encode_cursor(c: &Cursor) -> String {
    format!("{}.{}", c.accepted_at_ms, c.run_id)
}

fn decode_cursor(s: &str) -> Result<Cursor, ApiError> {
    s.split_once('.')
        .and_then(|(ms, id)| {
            Some(Cursor {
                accepted_at_ms: ms.parse().ok()?,
                run_id: checked_run_id(id).ok()?.to_string(),
            })
        })
        .ok_or_else(|| ApiError::bad_request(format!("cursor={s:?}: not a cursor this API gave")))
}

/// The filter a query asks for, or what is wrong with it.
pub fn filter_of(q: &ListQuery) -> Result<(RunFilter, Option<Cursor>, u32), ApiError> {
    let status = q
        .status
        .as_deref()
        .map(|s| {
            RunStatus::parse(s).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "status={s:?}: one of queued, running, completed, failed, cancelled"
                ))
            })
        })
        .transpose()?;
    let verdict = q
        .verdict
        .as_deref()
        .map(|v| {
            parse_verdict(v)
                .ok_or_else(|| ApiError::bad_request(format!("verdict={v:?}: passed or failed")))
        })
        .transpose()?;
    let limit = q.limit.unwrap_or(DEFAULT_PAGE);
    if limit == 0 || limit > MAX_PAGE {
        return Err(ApiError::bad_request(format!(
            "limit={limit}: between 1 and {MAX_PAGE}"
        )));
    }
    let filter = RunFilter {
        spec: q.spec.clone(),
        status,
        verdict,
        accepted_from_ms: q.from.as_deref().map(|v| instant("from", v)).transpose()?,
        accepted_before_ms: q
            .before
            .as_deref()
            .map(|v| instant("before", v))
            .transpose()?,
    };
    let cursor = q.cursor.as_deref().map(decode_cursor).transpose()?;
    Ok((filter, cursor, limit))
}

/// The run history, newest accepted first, filtered and paged.
#[utoipa::path(
    get, path = "/api/v1/runs", operation_id = "list_runs", tag = "runs", params(ListQuery),
    responses(
        (status = 200, body = RunPage),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ),
    security(("token" = ["viewer"]))
)]
pub async fn list(
    _caller: Caller<Viewer>,
    api: web::Data<Api>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let q = super::query::<ListQuery>(&req)?;
    let (filter, cursor, limit) = filter_of(&q)?;
    let page = api
        .store(move |s| s.list(&filter, cursor.as_ref(), limit))
        .await?;
    Ok(HttpResponse::Ok().json(RunPage {
        runs: page.rows.iter().map(RunView::of).collect(),
        next: page.next.as_ref().map(encode_cursor),
    }))
}

/// One run: how it stands or how it ended, with its summary.
#[utoipa::path(
    get, path = "/api/v1/runs/{run_id}", operation_id = "get_run", tag = "runs",
    params(("run_id" = String, Path, description = "The run")),
    responses(
        (status = 200, body = RunDetail),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ),
    security(("token" = ["viewer"]))
)]
pub async fn get(
    _caller: Caller<Viewer>,
    api: web::Data<Api>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let row = row(&api, &path).await?;
    let mut detail = RunDetail::of(&row);
    if row.finished.is_some() {
        let spec = row.accepted.spec.clone();
        let base = api
            .store(move |s| match s.baseline(&spec)? {
                Some(b) => s.get(&b.run_id),
                None => Ok(None),
            })
            .await?;
        detail.baseline = base
            .filter(|b| b.accepted.run_id != row.accepted.run_id)
            .and_then(|b| super::views::Comparison::of(&row, &b));
    }
    Ok(HttpResponse::Ok().json(detail))
}

/// Stops a run gracefully: its agents stop, its partial results are written and announced.
#[utoipa::path(
    post, path = "/api/v1/runs/{run_id}/cancel", operation_id = "cancel_run", tag = "runs",
    params(("run_id" = String, Path, description = "The run")),
    request_body(content = Option<CancelRequest>, content_type = "application/json"),
    responses(
        (status = 202, body = CancelView),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "The run has already ended", body = ErrorBody),
        (status = 503, body = ErrorBody),
    ),
    security(("token" = ["runner"]))
)]
pub async fn cancel(
    caller: Caller<Runner>,
    api: web::Data<Api>,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body = super::read_body(payload, super::MAX_JSON_BYTES).await?;
    let run_id = checked_run_id(&path)?.to_string();
    let asked: CancelRequest = if body.iter().all(u8::is_ascii_whitespace) {
        CancelRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("the body: {e}")))?
    };
    let why = asked
        .reason
        .map(|r| {
            r.chars()
                .filter(|c| !c.is_control())
                .take(MAX_REASON)
                .collect::<String>()
        })
        .unwrap_or_else(|| "cancelled through the API".into());
    let reached = api
        .runs
        .send(CancelRuns {
            run_id: Some(run_id.clone()),
            correlation_id: None,
            reason: format!("{why} (by {})", caller.name),
        })
        .await
        .map_err(|e| ApiError::unavailable(format!("the run registry: {e}")))?;
    if reached > 0 {
        return Ok(HttpResponse::Accepted().json(CancelView {
            run_id,
            cancelling: true,
        }));
    }
    let row = row(&api, &run_id).await?;
    Err(ApiError::conflict(match row.status {
        RunStatus::Ended(s) => format!("run {run_id} has already ended ({})", s.as_str()),
        _ => format!("run {run_id} is writing its results: it has ended"),
    }))
}
