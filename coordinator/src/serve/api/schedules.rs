//! `/schedules`: one-time and cron schedules (read in a time zone) that start runs of a stored
//! spec (its latest version at each firing) or of an inline spec. The scheduler
//! (`serve::scheduler`) fires them; viewers list them with their next fire times, admins make,
//! pause and remove them.

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::{Admin, Caller, Viewer};
use super::checked_spec_name;
use super::error::{ApiError, ErrorBody};
use super::Api;
use crate::serve::when::{local, next, parse_cron, parse_zone, timing};
use crate::store::catalog::{Schedule, ScheduledSpec, When};

/// Next fire times listed per schedule.
pub const NEXT_LISTED: usize = 5;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/schedules", web::get().to(list))
        .route("/schedules", web::post().to(create))
        .route("/schedules/{id}", web::get().to(get))
        .route("/schedules/{id}", web::patch().to(patch))
        .route("/schedules/{id}", web::delete().to(remove));
}

/// A schedule to make. One of `spec` and `spec_text`; one of `cron` and `at`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSchedule {
    /// For people (1 to 100 characters).
    pub name: String,
    /// A stored spec's name: each firing runs its latest version.
    pub spec: Option<String>,
    /// An inline spec (YAML or JSON).
    pub spec_text: Option<String>,
    /// Five fields: minute hour day-of-month month day-of-week (`0 9 * * MON-FRI`).
    pub cron: Option<String>,
    /// Once, at this RFC 3339 instant (in the future).
    pub at: Option<String>,
    /// IANA zone the cron is read in (default `UTC`).
    pub timezone: Option<String>,
    /// Default true.
    pub enabled: Option<bool>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchSchedule {
    pub enabled: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ScheduleView {
    pub id: String,
    pub name: String,
    pub spec: Option<String>,
    pub spec_text: Option<String>,
    pub cron: Option<String>,
    pub at_ms: Option<u64>,
    pub timezone: String,
    pub enabled: bool,
    pub created_at_ms: u64,
    pub created_by: String,
    pub last_fired_ms: Option<u64>,
    /// Why the last occurrence made no run (rejected spec, missed while down).
    pub last_error: Option<String>,
    /// The next fire times (ms since the epoch), at most five; empty when disabled or done.
    pub next_fires_ms: Vec<u64>,
    /// The same, as RFC 3339 in the schedule's zone.
    pub next_fires: Vec<String>,
}

fn view(s: Schedule) -> ScheduleView {
    let now = crate::clock::unix_ms();
    let after = s.last_fired_ms.unwrap_or(0).max(now);
    let fires = match (&s.enabled, timing(&s)) {
        (true, Ok(t)) => next(&t, after, NEXT_LISTED),
        _ => Vec::new(),
    };
    let (spec, spec_text) = match s.spec {
        ScheduledSpec::Stored(n) => (Some(n), None),
        ScheduledSpec::Inline(t) => (None, Some(t)),
    };
    let (cron, at_ms) = match s.when {
        When::Cron(c) => (Some(c), None),
        When::Once(a) => (None, Some(a)),
    };
    ScheduleView {
        next_fires: fires.iter().map(|f| local(*f, &s.timezone)).collect(),
        next_fires_ms: fires,
        id: s.id,
        name: s.name,
        spec,
        spec_text,
        cron,
        at_ms,
        timezone: s.timezone,
        enabled: s.enabled,
        created_at_ms: s.created_at_ms,
        created_by: s.created_by,
        last_fired_ms: s.last_fired_ms,
        last_error: s.last_error,
    }
}

/// With `[aws.scheduler]`, the schedule made (or replaced) in EventBridge Scheduler — a stored
/// spec as its latest version now (EventBridge sends a fixed event).
async fn delegate(api: &Api, s: &Schedule, update: bool) -> Result<(), ApiError> {
    let Some(eb) = api.env.aws.as_ref().and_then(|a| a.scheduler.clone()) else {
        return Ok(());
    };
    let text = match &s.spec {
        ScheduledSpec::Inline(t) => t.clone(),
        ScheduledSpec::Stored(name) => {
            let n = name.clone();
            api.store(move |st| st.spec(&n, None))
                .await?
                .map(|v| v.text)
                .ok_or_else(|| ApiError::bad_request(format!("spec {name:?} is not stored")))?
        }
    };
    eb.put(s, &text, update)
        .await
        .map_err(ApiError::unavailable)
}

/// Every schedule, with its next fire times.
#[utoipa::path(get, path = "/api/v1/schedules", tag = "schedules", operation_id = "list_schedules",
    responses(
        (status = 200, body = Vec<ScheduleView>),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 503, body = ErrorBody),
    ),
    security(("token" = ["viewer"])))]
pub async fn list(_caller: Caller<Viewer>, api: web::Data<Api>) -> Result<HttpResponse, ApiError> {
    let all = api.store(|s| s.schedules()).await?;
    Ok(HttpResponse::Ok().json(all.into_iter().map(view).collect::<Vec<_>>()))
}

async fn find(api: &Api, id: &str) -> Result<Schedule, ApiError> {
    let all = api.store(|s| s.schedules()).await?;
    all.into_iter()
        .find(|s| s.id == id)
        .ok_or_else(|| ApiError::not_found(format!("no schedule {id:?}")))
}

/// One schedule.
#[utoipa::path(get, path = "/api/v1/schedules/{id}", tag = "schedules", operation_id = "get_schedule",
    params(("id" = String, Path, description = "The schedule")),
    responses(
        (status = 200, body = ScheduleView),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
    ),
    security(("token" = ["viewer"])))]
pub async fn get(
    _caller: Caller<Viewer>,
    api: web::Data<Api>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(view(find(&api, &path).await?)))
}

fn random_id() -> String {
    use rand::RngCore;
    let mut b = [0u8; 6];
    rand::rng().fill_bytes(&mut b);
    format!(
        "sch_{}",
        b.iter().map(|x| format!("{x:02x}")).collect::<String>()
    )
}

/// Makes a schedule.
#[utoipa::path(post, path = "/api/v1/schedules", tag = "schedules", operation_id = "create_schedule",
    request_body = CreateSchedule,
    responses(
        (status = 201, body = ScheduleView),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, description = "The history holds the most schedules it may", body = ErrorBody),
        (status = 422, description = "The inline spec cannot run", body = ErrorBody),
    ),
    security(("token" = ["admin"])))]
pub async fn create(
    caller: Caller<Admin>,
    api: web::Data<Api>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body = super::read_body(payload, crate::bundle::MAX_SPEC_BYTES as usize).await?;
    let c: CreateSchedule = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("the body: {e}")))?;
    if c.name.trim().is_empty()
        || c.name.chars().count() > 100
        || c.name.chars().any(char::is_control)
    {
        return Err(ApiError::bad_request("name: 1 to 100 printable characters"));
    }
    let timezone = c.timezone.unwrap_or_else(|| "UTC".into());
    parse_zone(&timezone).map_err(ApiError::bad_request)?;
    let now = crate::clock::unix_ms();
    let when = match (c.cron, c.at) {
        (Some(cron), None) => {
            parse_cron(&cron).map_err(ApiError::bad_request)?;
            When::Cron(cron)
        }
        (None, Some(at)) => {
            let t = humantime::parse_rfc3339_weak(&at)
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
                .ok_or_else(|| ApiError::bad_request(format!("at {at:?}: an RFC 3339 instant")))?;
            if t <= now {
                return Err(ApiError::bad_request(format!("at {at:?}: in the past")));
            }
            When::Once(t)
        }
        _ => return Err(ApiError::bad_request("give one of cron and at")),
    };
    let spec = match (c.spec, c.spec_text) {
        (Some(name), None) => {
            let name = checked_spec_name(&name)?.to_string();
            let n = name.clone();
            if api.store(move |s| s.spec(&n, None)).await?.is_none() {
                return Err(ApiError::bad_request(format!(
                    "spec {name:?} is not stored (PUT /api/v1/specs/{name} first)"
                )));
            }
            ScheduledSpec::Stored(name)
        }
        (None, Some(text)) => {
            messages::spec::parse_spec_with(&text, &api.env.limits).map_err(|e| {
                ApiError::invalid_spec(e.issues().iter().map(|i| i.to_string()).collect())
            })?;
            ScheduledSpec::Inline(text)
        }
        _ => return Err(ApiError::bad_request("give one of spec and spec_text")),
    };
    let s = Schedule {
        id: random_id(),
        name: c.name,
        spec,
        when,
        timezone,
        enabled: c.enabled.unwrap_or(true),
        created_at_ms: now,
        created_by: caller.name,
        last_fired_ms: None,
        last_error: None,
    };
    let kept = s.clone();
    api.store(move |st| st.add_schedule(&kept)).await?;
    if let Err(e) = delegate(&api, &s, false).await {
        // Not half-made: the history forgets it too.
        let id = s.id.clone();
        let _ = api.store(move |st| st.remove_schedule(&id)).await;
        return Err(e);
    }
    tracing::info!(schedule = %s.id, name = %s.name, "schedule made");
    Ok(HttpResponse::Created().json(view(s)))
}

/// Pauses or resumes a schedule.
#[utoipa::path(patch, path = "/api/v1/schedules/{id}", tag = "schedules", operation_id = "patch_schedule",
    params(("id" = String, Path, description = "The schedule")),
    request_body = PatchSchedule,
    responses(
        (status = 200, body = ScheduleView),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
    ),
    security(("token" = ["admin"])))]
pub async fn patch(
    _caller: Caller<Admin>,
    api: web::Data<Api>,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body = super::read_body(payload, super::MAX_JSON_BYTES).await?;
    let p: PatchSchedule = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("the body: {e}")))?;
    let id = path.into_inner();
    let i = id.clone();
    if !api
        .store(move |s| s.set_schedule_enabled(&i, p.enabled))
        .await?
    {
        return Err(ApiError::not_found(format!("no schedule {id:?}")));
    }
    let s = find(&api, &id).await?;
    delegate(&api, &s, true).await?;
    Ok(HttpResponse::Ok().json(view(s)))
}

/// Removes a schedule (runs it started stay).
#[utoipa::path(delete, path = "/api/v1/schedules/{id}", tag = "schedules", operation_id = "remove_schedule",
    params(("id" = String, Path, description = "The schedule")),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
    ),
    security(("token" = ["admin"])))]
pub async fn remove(
    _caller: Caller<Admin>,
    api: web::Data<Api>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let i = id.clone();
    if !api.store(move |s| s.remove_schedule(&i)).await? {
        return Err(ApiError::not_found(format!("no schedule {id:?}")));
    }
    if let Some(eb) = api.env.aws.as_ref().and_then(|a| a.scheduler.clone()) {
        eb.delete(&id).await.map_err(ApiError::unavailable)?;
    }
    Ok(HttpResponse::NoContent().finish())
}
