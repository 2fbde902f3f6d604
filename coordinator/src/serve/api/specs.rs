//! `/specs`: stored specs with versions (a `PUT` of a new text makes the next version), and
//! each spec's baseline run (`PUT /specs/{name}/baseline`, admin) that later runs are compared
//! with.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::{Admin, Caller, Runner, Viewer};
use super::error::{ApiError, ErrorBody};
use super::runs::row;
use super::{checked_spec_name, Api};
use crate::store::catalog::{Baseline, SpecEntry, SpecVersion};
use crate::store::RunStatus;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/specs", web::get().to(list))
        .route("/specs/{name}", web::get().to(get))
        .route("/specs/{name}", web::put().to(put))
        .route("/specs/{name}/baseline", web::get().to(get_baseline))
        .route("/specs/{name}/baseline", web::put().to(put_baseline));
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SpecEntryView {
    pub name: String,
    pub latest: u32,
    pub updated_at_ms: u64,
    /// The baseline run, if one is set.
    pub baseline: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VersionView {
    pub version: u32,
    pub created_at_ms: u64,
    /// The token name that stored it.
    pub created_by: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SpecView {
    pub name: String,
    pub version: u32,
    pub text: String,
    pub created_at_ms: u64,
    pub created_by: String,
    /// Every version, newest first.
    pub versions: Vec<VersionView>,
    pub baseline: Option<BaselineView>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BaselineView {
    pub spec: String,
    pub run_id: String,
    pub set_at_ms: u64,
    pub set_by: String,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetBaseline {
    /// A completed run of this spec.
    pub run: String,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct VersionQuery {
    /// A version; the latest without it.
    pub version: Option<u32>,
}

fn version_view(v: &SpecVersion) -> VersionView {
    VersionView {
        version: v.version,
        created_at_ms: v.created_at_ms,
        created_by: v.created_by.clone(),
    }
}

fn baseline_view(b: Baseline) -> BaselineView {
    BaselineView {
        spec: b.spec,
        run_id: b.run_id,
        set_at_ms: b.set_at_ms,
        set_by: b.set_by,
    }
}

/// Every stored spec.
#[utoipa::path(get, path = "/api/v1/specs", tag = "specs", operation_id = "list_specs",
    responses(
        (status = 200, body = Vec<SpecEntryView>),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 503, body = ErrorBody),
    ),
    security(("token" = ["viewer"])))]
pub async fn list(_caller: Caller<Viewer>, api: web::Data<Api>) -> Result<HttpResponse, ApiError> {
    let all: Vec<SpecEntry> = api.store(|s| s.specs()).await?;
    Ok(HttpResponse::Ok().json(
        all.into_iter()
            .map(|e| SpecEntryView {
                name: e.name,
                latest: e.latest,
                updated_at_ms: e.updated_at_ms,
                baseline: e.baseline,
            })
            .collect::<Vec<_>>(),
    ))
}

/// A stored spec: its latest version (or `?version=N`), every version, its baseline.
#[utoipa::path(get, path = "/api/v1/specs/{name}", tag = "specs", operation_id = "get_spec",
    params(("name" = String, Path, description = "The spec's name"), VersionQuery),
    responses(
        (status = 200, body = SpecView),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
    ),
    security(("token" = ["viewer"])))]
pub async fn get(
    _caller: Caller<Viewer>,
    api: web::Data<Api>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let q = super::query::<VersionQuery>(&req)?;
    let name = checked_spec_name(&path)?.to_string();
    let n = name.clone();
    let found = api
        .store(move |s| {
            let v = s.spec(&n, q.version)?;
            let versions = s.spec_versions(&n)?;
            let baseline = s.baseline(&n)?;
            Ok((v, versions, baseline))
        })
        .await?;
    let (Some(v), versions, baseline) = found else {
        return Err(ApiError::not_found(match q.version {
            Some(n) => format!("spec {name:?} has no version {n}"),
            None => format!("no spec {name:?}"),
        }));
    };
    Ok(HttpResponse::Ok().json(SpecView {
        name: v.name.clone(),
        version: v.version,
        text: v.text.clone(),
        created_at_ms: v.created_at_ms,
        created_by: v.created_by.clone(),
        versions: versions.iter().map(version_view).collect(),
        baseline: baseline.map(baseline_view),
    }))
}

/// Stores a spec: checked as `POST /runs` would check it, its `name` the path's. A text
/// different from the latest version is the next version; the same text changes nothing.
#[utoipa::path(put, path = "/api/v1/specs/{name}", tag = "specs", operation_id = "put_spec",
    params(("name" = String, Path, description = "The spec's name (its `name` field)")),
    request_body(content = String, content_type = "application/yaml", description = "The spec, YAML or JSON"),
    responses(
        (status = 201, description = "A new version", body = VersionView),
        (status = 200, description = "The same text as the latest version", body = VersionView),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, description = "The history holds the most specs or versions it may", body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 422, body = ErrorBody),
    ),
    security(("token" = ["runner"])))]
pub async fn put(
    caller: Caller<Runner>,
    api: web::Data<Api>,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body = super::read_body(payload, crate::bundle::MAX_SPEC_BYTES as usize).await?;
    let name = checked_spec_name(&path)?.to_string();
    let text = std::str::from_utf8(&body)
        .map_err(|e| ApiError::bad_request(format!("the spec is not UTF-8: {e}")))?
        .to_string();
    let spec = messages::spec::parse_spec_with(&text, &api.env.limits)
        .map_err(|e| ApiError::invalid_spec(e.issues().iter().map(|i| i.to_string()).collect()))?;
    if spec.name != name {
        return Err(ApiError::bad_request(format!(
            "the spec's name is {:?}, the path's {name:?}: they must be the same",
            spec.name
        )));
    }
    let by = caller.name.clone();
    let n = name.clone();
    let stored = api
        .store(move |s| {
            let before = s.spec(&n, None)?.map(|v| v.version);
            let v = s.put_spec(&n, &text, &by, crate::clock::unix_ms())?;
            Ok((before, v))
        })
        .await?;
    let (before, v) = stored;
    let view = version_view(&v);
    Ok(if before == Some(v.version) {
        HttpResponse::Ok().json(view)
    } else {
        HttpResponse::Created().json(view)
    })
}

/// The spec's baseline run.
#[utoipa::path(get, path = "/api/v1/specs/{name}/baseline", tag = "specs", operation_id = "get_baseline",
    params(("name" = String, Path, description = "The spec's name")),
    responses(
        (status = 200, body = BaselineView),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
    ),
    security(("token" = ["viewer"])))]
pub async fn get_baseline(
    _caller: Caller<Viewer>,
    api: web::Data<Api>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let name = checked_spec_name(&path)?.to_string();
    let n = name.clone();
    let b = api.store(move |s| s.baseline(&n)).await?;
    let b = b.ok_or_else(|| ApiError::not_found(format!("spec {name:?} has no baseline")))?;
    Ok(HttpResponse::Ok().json(baseline_view(b)))
}

/// Sets the spec's baseline: a completed run of this spec, kept whatever the retention.
#[utoipa::path(put, path = "/api/v1/specs/{name}/baseline", tag = "specs", operation_id = "set_baseline",
    params(("name" = String, Path, description = "The spec's name")),
    request_body = SetBaseline,
    responses(
        (status = 200, body = BaselineView),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "The run is not a completed run of this spec", body = ErrorBody),
    ),
    security(("token" = ["admin"])))]
pub async fn put_baseline(
    caller: Caller<Admin>,
    api: web::Data<Api>,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body = super::read_body(payload, super::MAX_JSON_BYTES).await?;
    let asked: SetBaseline = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("the body: {e}")))?;
    let name = checked_spec_name(&path)?.to_string();
    let run = row(&api, &asked.run).await?;
    if run.accepted.spec != name {
        return Err(ApiError::conflict(format!(
            "run {} is a run of spec {:?}, not {name:?}",
            asked.run, run.accepted.spec
        )));
    }
    if run.status != RunStatus::Ended(messages::outcome::EndState::Completed) {
        return Err(ApiError::conflict(format!(
            "run {} is {}: only a completed run can be a baseline",
            asked.run,
            run.status.as_str()
        )));
    }
    let b = Baseline {
        spec: name,
        run_id: run.accepted.run_id,
        set_at_ms: crate::clock::unix_ms(),
        set_by: caller.name,
    };
    let kept = b.clone();
    api.store(move |s| s.set_baseline(&kept)).await?;
    tracing::info!(spec = %b.spec, run = %b.run_id, by = %b.set_by, "baseline set");
    Ok(HttpResponse::Ok().json(baseline_view(b)))
}
