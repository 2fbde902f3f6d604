//! The OpenAPI 3.1 document, generated from the handlers' annotations: what
//! `/api/v1/openapi.json` serves and `docs/api/openapi.json` commits (a test fails when they
//! drift; `HERD_UPDATE_SCHEMAS=1` rewrites the committed copy). Each operation's `security`
//! names the role it needs (`token: [runner]`); an empty requirement needs no token.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::error::{ErrorBody, ErrorDetail};
use super::schedules::{CreateSchedule, PatchSchedule, ScheduleView};
use super::specs::{BaselineView, SetBaseline, SpecEntryView, SpecView, VersionView};
use super::tokens::{CreateToken, MeView, NewTokenView, TokenView};
use super::views::*;

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("herd_<id>_<secret> or an OIDC JWT")
                    .description(Some(
                        "An API token (`herd token create --role viewer|runner|admin`), or with `[api.oidc]` a JWT of that issuer whose groups give the role. The scopes name the least role: viewer < runner < admin.",
                    ))
                    .build(),
            ),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "herd", description = "herd serve's API: runs, results, live streams, stored specs and baselines, schedules, tokens."),
    paths(
        super::runs::submit, super::runs::list, super::runs::get, super::runs::cancel,
        super::live::live,
        super::files::list, super::files::file, super::files::timeseries,
        super::ops::healthz, super::ops::readyz, super::ops::metrics, super::ops::validate,
        openapi,
        super::tokens::list, super::tokens::create, super::tokens::revoke, super::tokens::me,
        super::specs::list, super::specs::get, super::specs::put, super::specs::get_baseline,
        super::specs::put_baseline,
        super::schedules::list, super::schedules::get, super::schedules::create,
        super::schedules::patch, super::schedules::remove,
    ),
    components(schemas(
        ErrorBody, ErrorDetail, RunView, RunDetail, RunPage, SubmitView, CancelView,
        CancelRequest, FileView, SpecIssueView, ValidateView, ReadyView, TokenView, CreateToken,
        NewTokenView, SpecEntryView, VersionView, SpecView, BaselineView, SetBaseline,
        CreateSchedule, PatchSchedule, ScheduleView, Comparison, Change, MeView,
    )),
    modifiers(&Bearer),
)]
struct Doc;

pub fn routes(cfg: &mut actix_web::web::ServiceConfig) {
    cfg.route("/openapi.json", actix_web::web::get().to(openapi));
}

/// This API's OpenAPI 3.1 document. No token.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "operations",
    responses((status = 200, description = "OpenAPI 3.1", body = Object)), security(()))]
pub async fn openapi() -> actix_web::HttpResponse {
    actix_web::HttpResponse::Ok().json(document())
}

/// The document, with the version of this herd.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut d = Doc::openapi();
    d.info.version = env!("CARGO_PKG_VERSION").to_string();
    d
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_operation_has_its_own_id_and_says_which_role_it_needs() {
        let doc = serde_json::to_value(super::document()).expect("JSON");
        let mut ids = std::collections::BTreeSet::new();
        for (path, ops) in doc["paths"].as_object().expect("paths") {
            for (method, op) in ops.as_object().expect("operations") {
                let id = op["operationId"].as_str().expect("operationId");
                assert!(
                    ids.insert(id.to_string()),
                    "{method} {path}: operationId {id} twice"
                );
                assert!(
                    op["security"].is_array(),
                    "{method} {path}: no security requirement"
                );
            }
        }
    }

    /// The served document and docs/api/openapi.json must not drift apart.
    #[test]
    fn the_openapi_document_matches_the_committed_copy() {
        let doc = super::document().to_pretty_json().expect("JSON");
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/api/openapi.json");
        if std::env::var_os("HERD_UPDATE_SCHEMAS").is_some() {
            std::fs::create_dir_all(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/api"))
                .expect("docs/api");
            std::fs::write(path, format!("{doc}\n")).expect("write");
        }
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert_eq!(
            committed.trim_end(),
            doc.trim_end(),
            "the API changed: review the diff, then run with HERD_UPDATE_SCHEMAS=1 to commit it"
        );
    }
}
