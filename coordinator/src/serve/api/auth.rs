//! Who is calling, and whether they may: a bearer token — one of herd's API tokens, checked
//! against its hashed record in the history (`store::tokens`), or an OIDC JWT (`oidc.rs`) when
//! `[api.oidc]` is set — and the role each endpoint needs — checked by the extractor,
//! before the body is read, so a caller without the role learns nothing from how its request
//! would have been judged.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;

use actix_web::http::header;
use actix_web::{dev::Payload, web, FromRequest, HttpRequest};

use super::error::ApiError;
use super::Api;
use crate::store::tokens::{id_of, Role};

/// The role an endpoint needs.
pub trait Needs {
    const ROLE: Role;
}

pub struct Viewer;
pub struct Runner;
pub struct Admin;

impl Needs for Viewer {
    const ROLE: Role = Role::Viewer;
}
impl Needs for Runner {
    const ROLE: Role = Role::Runner;
}
impl Needs for Admin {
    const ROLE: Role = Role::Admin;
}

/// A caller holding at least `N::ROLE`.
pub struct Caller<N: Needs> {
    /// The token's id: scopes idempotency keys, names the caller in run sources.
    pub id: String,
    /// The token's name.
    pub name: String,
    pub role: Role,
    _needs: PhantomData<N>,
}

fn bearer(req: &HttpRequest) -> Option<String> {
    let v = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_string())
}

impl<N: Needs + 'static> FromRequest for Caller<N> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        let api = req.app_data::<web::Data<Api>>().cloned();
        let token = bearer(req);
        Box::pin(async move {
            let api = api.ok_or_else(|| ApiError::internal("API state missing"))?;
            let token = token.ok_or_else(ApiError::unauthorized)?;
            let (id, name, role) = if token.starts_with("herd_") {
                let id = id_of(&token)
                    .map_err(|_| ApiError::unauthorized())?
                    .to_string();
                let _permit = api.call_permit()?;
                let lookup = id.clone();
                let record = api
                    .history
                    .call(move |s| s.token(&lookup))
                    .await?
                    .filter(|r| r.admits(&token))
                    .ok_or_else(|| {
                        api.board.refused_login();
                        ApiError::unauthorized()
                    })?;
                (record.id, record.name, Some(record.role))
            } else if let Some(oidc) = &api.oidc {
                match oidc.verify(&token).await {
                    Ok(p) => (format!("oidc:{}", p.name), p.name, p.role),
                    Err(e @ super::oidc::OidcError::Keys(_)) => {
                        tracing::error!(error = %e, "OIDC token not checked");
                        return Err(ApiError::unavailable(e.to_string()));
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "OIDC token refused");
                        api.board.refused_login();
                        return Err(ApiError::unauthorized());
                    }
                }
            } else {
                return Err(ApiError::unauthorized());
            };
            let role = role.ok_or_else(|| {
                ApiError::forbidden(format!(
                    "this needs the {} role; {name:?} is in no herd group",
                    N::ROLE
                ))
            })?;
            if role < N::ROLE {
                return Err(ApiError::forbidden(format!(
                    "this needs the {} role; {name:?} has {role}",
                    N::ROLE
                )));
            }
            Ok(Caller {
                id,
                name,
                role,
                _needs: PhantomData,
            })
        })
    }
}
