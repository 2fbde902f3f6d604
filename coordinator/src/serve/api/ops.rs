//! Operations: `/healthz` (the process answers), `/readyz` (it can take runs), `/metrics`
//! (Prometheus text) and `/validate` (a spec's problems, positioned).

use std::fmt::Write as _;

use actix_web::http::header;
use actix_web::{web, HttpResponse};

use super::auth::{Caller, Viewer};
use super::error::{ApiError, ErrorBody};
use super::views::{ReadyView, SpecIssueView, ValidateView};
use super::Api;
use crate::request::{RunRequest, SpecSource};
use crate::serve::prepare::{prepare, PrepareError};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(metrics))
        .route("/validate", web::post().to(validate));
}

/// The process is up. No token: for load balancers and orchestrators.
#[utoipa::path(get, path = "/api/v1/healthz", tag = "operations",
    responses((status = 200, description = "ok", body = String)), security(()))]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok\n")
}

/// The service can take runs: its registry answers and its history is open. No token.
#[utoipa::path(get, path = "/api/v1/readyz", tag = "operations",
    responses((status = 200, body = ReadyView), (status = 503, body = ReadyView)), security(()))]
pub async fn readyz(api: web::Data<Api>) -> HttpResponse {
    let mut problems = Vec::new();
    if let Some(e) = &api.history_error {
        problems.push(format!("the run history is unavailable: {e}"));
    }
    let answered = tokio::time::timeout(
        std::time::Duration::from_secs(2),
        api.runs.send(crate::serve::registry::ActiveRuns),
    )
    .await;
    if !matches!(answered, Ok(Ok(_))) {
        problems.push("the run registry does not answer".into());
    }
    let view = ReadyView {
        ready: problems.is_empty(),
        problems,
    };
    if view.ready {
        HttpResponse::Ok().json(view)
    } else {
        HttpResponse::ServiceUnavailable().json(view)
    }
}

/// A Prometheus label value: `\`, `"` and newlines escaped.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn num(v: Option<&serde_json::Value>) -> f64 {
    v.and_then(serde_json::Value::as_f64).unwrap_or(0.0)
}

/// A per-run gauge: name, help, and how to read it from the run's last live snapshot.
type Gauge = (&'static str, &'static str, fn(&serde_json::Value) -> f64);

/// Prometheus text exposition of the runs in flight and the service's counters.
pub fn exposition(api: &Api) -> String {
    let mut out = String::new();
    let runs = api.board.runs();
    let t = api.board.totals();
    let queued = runs.iter().filter(|(_, r)| r.queued).count();
    let _ = writeln!(
        out,
        "# HELP herd_runs_active Runs started and not yet announced.\n# TYPE herd_runs_active gauge\nherd_runs_active {}",
        runs.len() - queued
    );
    let _ = writeln!(
        out,
        "# HELP herd_runs_queued Runs waiting under the [queue] caps.\n# TYPE herd_runs_queued gauge\nherd_runs_queued {queued}"
    );
    let per_run: [Gauge; 7] = [
        (
            "herd_run_agents",
            "Agents the run was planned with.",
            |_| f64::NAN,
        ),
        (
            "herd_run_agents_reporting",
            "Agents that reported the last second.",
            |d| num(d.pointer("/agents/reporting")),
        ),
        ("herd_run_vus", "Virtual users in the last second.", |d| {
            num(d.get("vus"))
        }),
        (
            "herd_run_rps",
            "Requests in the last reported second.",
            |d| num(d.get("rps")),
        ),
        (
            "herd_run_error_rate",
            "Errors per request in the last reported second.",
            |d| num(d.get("error_rate")),
        ),
        (
            "herd_run_latency_p95_ms",
            "95th percentile latency of the last reported second, in ms.",
            |d| num(d.pointer("/latency_ms/p95")),
        ),
        (
            "herd_run_latency_p99_ms",
            "99th percentile latency of the last reported second, in ms.",
            |d| num(d.pointer("/latency_ms/p99")),
        ),
    ];
    for (name, help, get) in per_run {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (run_id, r) in &runs {
            let v = if name == "herd_run_agents" {
                f64::from(r.agents)
            } else {
                match r.tap.last() {
                    Some(doc) => get(&doc),
                    None => continue,
                }
            };
            let _ = writeln!(
                out,
                "{name}{{run=\"{}\",spec=\"{}\"}} {v}",
                label(run_id),
                label(&r.spec)
            );
        }
    }
    for (name, help, v) in [
        (
            "herd_runs_accepted_total",
            "Runs accepted since start (resumed runs not counted again).",
            t.accepted,
        ),
        (
            "herd_runs_rejected_total",
            "Run requests refused (invalid spec, policy) since start.",
            t.rejected,
        ),
        (
            "herd_api_refused_logins_total",
            "API requests with an unknown, wrong or revoked token.",
            t.refused_logins,
        ),
        (
            "herd_history_write_failures_total",
            "Writes that did not reach the run history.",
            api.history.failures(),
        ),
    ] {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
        );
    }
    let name = "herd_runs_ended_total";
    let _ = writeln!(
        out,
        "# HELP {name} Runs announced since start, by end state.\n# TYPE {name} counter"
    );
    for (state, v) in [
        ("completed", t.completed),
        ("failed", t.failed),
        ("cancelled", t.cancelled),
    ] {
        let _ = writeln!(out, "{name}{{state=\"{state}\"}} {v}");
    }
    out
}

/// Prometheus metrics: active runs, each run's agents, rps, error rate and percentiles, and
/// the service's counters.
#[utoipa::path(get, path = "/api/v1/metrics", tag = "operations",
    responses(
        (status = 200, description = "Prometheus text format 0.0.4", content_type = "text/plain", body = String),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
    ),
    security(("token" = ["viewer"])))]
pub async fn metrics(_caller: Caller<Viewer>, api: web::Data<Api>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        ))
        .body(exposition(&api))
}

/// Checks a spec as `POST /runs` would — syntax, the spec's rules, this service's limits and
/// target policy, and with multipart the files it names — without running it. Every problem,
/// positioned where the spec says where.
#[utoipa::path(post, path = "/api/v1/validate", tag = "specs",
    request_body(content = String, content_type = "application/yaml", description = "The spec, YAML or JSON; or multipart/form-data laid out as for POST /runs (part `spec`, parts `file`), so the files it names are checked too"),
    responses(
        (status = 200, description = "Valid or not: see `valid`", body = ValidateView),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 413, body = ErrorBody),
    ),
    security(("token" = ["viewer"])))]
pub async fn validate(
    _caller: Caller<Viewer>,
    api: web::Data<Api>,
    req: actix_web::HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    // With files: unpacked below a private temp folder (removed when `upload` drops), and the
    // spec judged from there as a run of it would be.
    let mut upload = None;
    let body = if super::upload::is_multipart(&req) {
        let u = super::upload::unpack(&req, payload).await?;
        let text = std::fs::read(&u.spec)
            .map_err(|e| ApiError::internal(format!("reading the uploaded spec: {e}")))?;
        upload = Some(u);
        web::Bytes::from(text)
    } else {
        super::read_body(payload, crate::bundle::MAX_SPEC_BYTES as usize).await?
    };
    let text = std::str::from_utf8(&body)
        .map_err(|e| ApiError::bad_request(format!("the spec is not UTF-8: {e}")))?;
    let mut warnings = Vec::new();
    let errors = match messages::spec::parse_spec_with(text, &api.env.limits) {
        Err(e) => e
            .issues()
            .into_iter()
            .map(|i| SpecIssueView {
                path: i.path,
                line: i.line,
                column: i.col,
                message: i.message,
            })
            .collect(),
        Ok(spec) => {
            warnings = messages::spec::lint::warnings(&spec);
            const ORIGIN: &str = "spec";
            let req = RunRequest {
                idempotency_key: String::new(),
                spec: match &upload {
                    Some(u) => SpecSource::File {
                        path: u.spec.clone(),
                        data_dir: u.dir.path().to_path_buf(),
                    },
                    None => SpecSource::Inline(text.to_string()),
                },
                overrides: Default::default(),
                correlation_id: None,
                origin: ORIGIN.into(),
            };
            match prepare(&api.env, &req).await {
                Ok(_) => Vec::new(),
                Err(PrepareError::Rejected(lines)) => lines
                    .into_iter()
                    .map(|l| SpecIssueView {
                        path: String::new(),
                        line: None,
                        column: None,
                        message: l
                            .strip_prefix(ORIGIN)
                            .map(|m| m.trim_start_matches([':', ' ']).to_string())
                            .unwrap_or(l),
                    })
                    .collect(),
                Err(PrepareError::Transient(e)) => return Err(ApiError::unavailable(e)),
            }
        }
    };
    Ok(HttpResponse::Ok().json(ValidateView {
        valid: errors.is_empty(),
        errors,
        warnings,
    }))
}
