//! The web console at `/`: a page of plain ES modules and one stylesheet (`coordinator/console/`)
//! compiled into the binary, so `cargo build` alone makes it — no Node, nothing fetched from a
//! CDN, no third-party script. The page talks only to the public API, with the signed-in bearer
//! token; this module serves its files and `/console/config.json` (how to sign in).
//!
//! Every answer carries a Content-Security-Policy that allows scripts from this origin only, so
//! text a spec or a target put into a run can never run as script in a viewer's browser (the
//! page also never parses data as markup). Styles may be inline: `report.html`, opened from the
//! console as a `blob:` page, inherits this policy and keeps its style in the file.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;

use super::Api;

/// One file of the console.
struct Asset {
    name: &'static str,
    mime: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $mime:expr) => {
        Asset {
            name: $name,
            mime: $mime,
            body: include_bytes!(concat!("../../../console/", $name)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// Everything the console is made of (the size test in this module keeps it under 300 KB).
const ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("app.css", "text/css; charset=utf-8"),
    asset!("favicon.svg", "image/svg+xml"),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("chart.js", JS),
    asset!("compare.js", JS),
    asset!("editor.js", JS),
    asset!("oidc.js", JS),
    asset!("run.js", JS),
    asset!("runs.js", JS),
    asset!("schedules.js", JS),
    asset!("series.js", JS),
    asset!("specs.js", JS),
    asset!("util.js", JS),
];

/// The whole console, at most (its files together).
pub const MAX_CONSOLE_BYTES: usize = 300 << 10;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(index))
        .route("/console/config.json", web::get().to(config))
        .route("/console/{name}", web::get().to(file));
}

/// A strong validator for a file: its content's SHA-256, cut short.
fn etag(body: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, body);
    let hex: String = d.as_ref()[..12]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("\"{hex}\"")
}

/// `connect-src`: this origin, and the OIDC token endpoint's when the console signs in there.
fn csp(api: &Api) -> String {
    let token_origin = api
        .oidc_login()
        .and_then(|l| url::Url::parse(&l.token_url).ok())
        .map(|u| format!(" {}", u.origin().ascii_serialization()))
        .unwrap_or_default();
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; \
         connect-src 'self'{token_origin}; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    )
}

fn serve(req: &HttpRequest, api: &Api, a: &Asset) -> HttpResponse {
    let tag = etag(a.body);
    let fresh = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag));
    let mut r = if fresh {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    r.insert_header((header::ETAG, tag))
        // Revalidated each load: a new herd's console is never mixed with an old cached module.
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::CONTENT_SECURITY_POLICY, csp(api)))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"));
    if fresh {
        return r.finish();
    }
    r.content_type(a.mime).body(a.body)
}

async fn index(req: HttpRequest, api: web::Data<Api>) -> HttpResponse {
    match ASSETS.iter().find(|a| a.name == "index.html") {
        Some(a) => serve(&req, &api, a),
        None => HttpResponse::InternalServerError().finish(),
    }
}

async fn file(req: HttpRequest, api: web::Data<Api>, name: web::Path<String>) -> HttpResponse {
    match ASSETS.iter().find(|a| a.name == name.as_str()) {
        Some(a) => serve(&req, &api, a),
        None => HttpResponse::NotFound()
            .content_type("text/plain; charset=utf-8")
            .body(format!("the console has no file {:?}", name.as_str())),
    }
}

/// How the console offers sign-in with the identity provider.
#[derive(Debug, Serialize)]
pub struct LoginConfig {
    pub name: String,
    pub authorize_url: String,
    pub token_url: String,
    pub client_id: String,
    pub scopes: String,
}

#[derive(Serialize)]
struct ConsoleConfig {
    oidc: Option<LoginConfig>,
}

/// Public: what the sign-in page needs before anyone is signed in (no secret is in it).
async fn config(api: web::Data<Api>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .json(ConsoleConfig {
            oidc: api.oidc_login(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_console_stays_under_its_size_budget() {
        let total: usize = ASSETS.iter().map(|a| a.body.len()).sum();
        assert!(
            total <= MAX_CONSOLE_BYTES,
            "the console is {total} bytes, over {MAX_CONSOLE_BYTES}"
        );
    }

    #[test]
    fn every_module_the_page_imports_is_served() {
        // An import of a file not in ASSETS would 404 in the browser and break the page.
        for a in ASSETS.iter().filter(|a| a.name.ends_with(".js")) {
            let text = std::str::from_utf8(a.body).expect("UTF-8");
            for line in text.lines().filter(|l| l.starts_with("import ")) {
                let Some(from) = line.split("from \"./").nth(1) else {
                    continue;
                };
                let file = from.split('"').next().unwrap_or_default();
                assert!(
                    ASSETS.iter().any(|x| x.name == file),
                    "{} imports {file}, which is not served",
                    a.name
                );
            }
        }
    }

    #[test]
    fn every_console_file_is_embedded() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("console");
        for e in std::fs::read_dir(&dir).expect("console dir") {
            let name = e.expect("entry").file_name();
            let name = name.to_string_lossy();
            assert!(
                ASSETS.iter().any(|a| a.name == name),
                "console/{name} is not in ASSETS"
            );
        }
    }
}
