//! `/tokens` (admin): make, list and revoke API tokens. A token is shown once, in the answer
//! that made it; the history keeps only its hash.

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::{Admin, Caller};
use super::error::{ApiError, ErrorBody};
use super::Api;
use crate::store::tokens::{generate, Role, TokenRecord};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/tokens", web::get().to(list))
        .route("/tokens", web::post().to(create))
        .route("/tokens/{id}", web::delete().to(revoke))
        .route("/me", web::get().to(me));
}

/// Who the bearer token is: what a client (the console) shows and which actions it offers.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MeView {
    /// The token's name, or the OIDC user's.
    pub name: String,
    /// `viewer`, `runner` or `admin`.
    pub role: String,
}

/// The caller.
#[utoipa::path(get, path = "/api/v1/me", operation_id = "who_am_i", tag = "tokens",
    responses(
        (status = 200, body = MeView),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 503, body = ErrorBody),
    ),
    security(("token" = ["viewer"])))]
pub async fn me(caller: Caller<super::auth::Viewer>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(MeView {
        name: caller.name,
        role: caller.role.as_str().into(),
    }))
}

/// A token's record (never its secret).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TokenView {
    pub id: String,
    pub name: String,
    /// `viewer`, `runner` or `admin`.
    pub role: String,
    pub created_at_ms: u64,
    pub revoked_at_ms: Option<u64>,
}

impl TokenView {
    pub fn of(r: &TokenRecord) -> TokenView {
        TokenView {
            id: r.id.clone(),
            name: r.name.clone(),
            role: r.role.as_str().into(),
            created_at_ms: r.created_at_ms,
            revoked_at_ms: r.revoked_at_ms,
        }
    }
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// `viewer`, `runner` or `admin`.
    pub role: String,
    /// Who or what holds it (1 to 100 characters).
    pub name: String,
}

/// A token just made: `token` is shown this once.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NewTokenView {
    pub token: String,
    #[serde(flatten)]
    pub record: TokenView,
}

/// Every token, newest first.
#[utoipa::path(get, path = "/api/v1/tokens", operation_id = "list_tokens", tag = "tokens",
    responses(
        (status = 200, body = Vec<TokenView>),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 503, body = ErrorBody),
    ),
    security(("token" = ["admin"])))]
pub async fn list(_caller: Caller<Admin>, api: web::Data<Api>) -> Result<HttpResponse, ApiError> {
    let all = api.store(|s| s.tokens()).await?;
    Ok(HttpResponse::Ok().json(all.iter().map(TokenView::of).collect::<Vec<_>>()))
}

/// Makes a token.
#[utoipa::path(post, path = "/api/v1/tokens", operation_id = "create_token", tag = "tokens",
    request_body = CreateToken,
    responses(
        (status = 201, body = NewTokenView),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, description = "The history holds the most tokens it may", body = ErrorBody),
        (status = 503, body = ErrorBody),
    ),
    security(("token" = ["admin"])))]
pub async fn create(
    caller: Caller<Admin>,
    api: web::Data<Api>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body = super::read_body(payload, super::MAX_JSON_BYTES).await?;
    let body: CreateToken = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("the body: {e}")))?;
    let role = Role::parse(&body.role).ok_or_else(|| {
        ApiError::bad_request(format!("role {:?}: viewer, runner or admin", body.role))
    })?;
    let made = generate(role, &body.name, crate::clock::unix_ms())
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let record = made.record.clone();
    api.store(move |s| s.create_token(&record)).await?;
    tracing::info!(by = %caller.name, id = %made.record.id, role = %role, name = %made.record.name, "API token made");
    Ok(HttpResponse::Created().json(NewTokenView {
        token: made.token,
        record: TokenView::of(&made.record),
    }))
}

/// Revokes a token: it is refused from now on.
#[utoipa::path(delete, path = "/api/v1/tokens/{id}", operation_id = "revoke_token", tag = "tokens",
    params(("id" = String, Path, description = "The token's id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ),
    security(("token" = ["admin"])))]
pub async fn revoke(
    caller: Caller<Admin>,
    api: web::Data<Api>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let lookup = id.clone();
    let found = api
        .store(move |s| s.revoke_token(&lookup, crate::clock::unix_ms()))
        .await?;
    if !found {
        return Err(ApiError::not_found(format!("no live token {id:?}")));
    }
    tracing::info!(by = %caller.name, %id, "API token revoked");
    Ok(HttpResponse::NoContent().finish())
}
