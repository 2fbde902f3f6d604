//! `GET /runs/{id}/live`: Server-Sent Events. Each second `event: snapshot` with the fleet
//! snapshot (the MQTT `live` topic's document, `docs/schemas/live.schema.json`), then one
//! `event: result` with the run's `RunCompleted`, and the stream ends. A run already over gets
//! its result at once. A reader too slow for the feed is told how many snapshots it missed
//! (`event: lagged`) rather than holding anything up; a comment every
//! [`KEEPALIVE`] keeps proxies from closing a quiet stream.

use std::time::Duration;

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use tokio::sync::broadcast::error::RecvError;

use super::auth::{Caller, Viewer};
use super::error::{ApiError, ErrorBody};
use super::runs::{checked_run_id, row};
use super::Api;
use crate::run::live::LiveEvent;
use crate::store::RunRow;

pub const KEEPALIVE: Duration = Duration::from_secs(15);

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/runs/{run_id}/live", web::get().to(live));
}

fn frame(event: &str, data: &str) -> web::Bytes {
    // JSON documents hold no raw newline, so each is one `data:` line.
    web::Bytes::from(format!("event: {event}\ndata: {data}\n\n"))
}

/// The `RunCompleted` of a run that ended before the stream was asked for, rebuilt from the
/// history (which kept exactly what was announced; the thresholds from its `summary.json`).
fn result_of(row: &RunRow) -> Option<String> {
    let f = row.finished.as_ref()?;
    let thresholds = serde_json::from_str::<serde_json::Value>(&f.summary)
        .ok()
        .and_then(|s| serde_json::from_value(s.get("thresholds")?.clone()).ok())
        .unwrap_or_default();
    let done = messages::outcome::RunCompleted {
        run_id: row.accepted.run_id.clone(),
        spec: row.accepted.spec.clone(),
        correlation_id: row.accepted.correlation_id.clone(),
        source: row.accepted.source.clone(),
        state: f.state,
        reason: f.reason.clone(),
        verdict: f.verdict,
        requests: f.requests,
        errors: f.errors,
        rps: f.rps,
        p95_ms: f.p95_ms,
        p99_ms: f.p99_ms,
        agents_lost: f.agents_lost,
        thresholds,
        results: f.results.clone(),
        results_error: f.results_error.clone(),
    };
    serde_json::to_string(&done).ok()
}

fn sse<S>(body: S) -> HttpResponse
where
    S: futures::Stream<Item = Result<web::Bytes, actix_web::Error>> + 'static,
{
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/event-stream"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(body)
}

/// The run's live stream.
#[utoipa::path(
    get, path = "/api/v1/runs/{run_id}/live", operation_id = "follow_run", tag = "runs",
    params(("run_id" = String, Path, description = "The run")),
    responses(
        (status = 200, description = "text/event-stream: `snapshot` events (live.schema.json) each second, then one `result` (RunCompleted)", content_type = "text/event-stream", body = String),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 503, description = "Too many streams open", body = ErrorBody),
    ),
    security(("token" = ["viewer"]))
)]
pub async fn live(
    _caller: Caller<Viewer>,
    api: web::Data<Api>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let run_id = checked_run_id(&path)?.to_string();
    let permit = api.stream_permit()?;
    let Some(rx) = api.board.subscribe(&run_id) else {
        // Not running here: ended (its result at once), or unknown.
        let row = row(&api, &run_id).await?;
        let result = result_of(&row).ok_or_else(|| {
            ApiError::unavailable(format!(
                "run {run_id} is not running on this server and has no result yet"
            ))
        })?;
        let once =
            futures::stream::once(
                async move { Ok::<_, actix_web::Error>(frame("result", &result)) },
            );
        return Ok(sse(once));
    };
    struct Feed {
        rx: tokio::sync::broadcast::Receiver<LiveEvent>,
        greeted: bool,
        done: bool,
        _permit: tokio::sync::OwnedSemaphorePermit,
    }
    let feed = Feed {
        rx,
        greeted: false,
        done: false,
        _permit: permit,
    };
    // Dropped with the response when the client goes away: the receiver and the stream's
    // permit go with it.
    let body = futures::stream::unfold(feed, |mut f| async move {
        if f.done {
            return None;
        }
        if !f.greeted {
            f.greeted = true;
            return Some((Ok(web::Bytes::from_static(b": herd live stream\n\n")), f));
        }
        let out = match tokio::time::timeout(KEEPALIVE, f.rx.recv()).await {
            Err(_) => web::Bytes::from_static(b": keepalive\n\n"),
            Ok(Ok(LiveEvent::Snapshot(doc))) => frame("snapshot", &doc),
            Ok(Ok(LiveEvent::Result(doc))) => {
                f.done = true;
                frame("result", &doc)
            }
            Ok(Err(RecvError::Lagged(n))) => frame("lagged", &format!("{{\"skipped\":{n}}}")),
            // The feed is gone without a result (the server is stopping).
            Ok(Err(RecvError::Closed)) => return None,
        };
        Some((Ok::<_, actix_web::Error>(out), f))
    });
    Ok(sse(body))
}
