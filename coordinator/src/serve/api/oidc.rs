//! OIDC bearer tokens: JWTs checked against the issuer's published keys (JWKS), fetched once
//! and again when a token names a key not yet known (at most every [`REFRESH_MIN`], so a flood
//! of made-up key ids cannot turn into a flood of fetches). Only asymmetric algorithms: a token
//! signed with `none` or an HMAC secret is refused whatever it says.

use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use serde_json::Value;
use tokio::sync::RwLock;

use crate::config::OidcConfig;
use crate::store::Role;

/// The soonest the keys are fetched again for an unknown key id.
pub const REFRESH_MIN: Duration = Duration::from_secs(30);
/// Keys are fetched again this often anyway (the issuer rotates them).
pub const REFRESH_EVERY: Duration = Duration::from_secs(3600);
/// The largest JWKS document read.
pub const MAX_JWKS_BYTES: usize = 256 << 10;
/// The longest token looked at.
pub const MAX_TOKEN_BYTES: usize = 16 << 10;

const ALGORITHMS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
];

/// A caller known by its identity provider.
#[derive(Debug, Clone)]
pub struct Principal {
    pub name: String,
    /// None: a valid token in no herd group.
    pub role: Option<Role>,
}

#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("not a valid token: {0}")]
    Invalid(String),
    #[error("the identity provider's keys could not be read: {0}")]
    Keys(String),
}

struct Keys {
    set: JwkSet,
    fetched: Option<Instant>,
}

pub struct Oidc {
    cfg: OidcConfig,
    http: reqwest::Client,
    keys: RwLock<Keys>,
}

impl Oidc {
    /// The console's sign-in with this provider, when `[api.oidc]` configures it.
    pub fn login(&self) -> Option<super::console::LoginConfig> {
        let c = &self.cfg;
        Some(super::console::LoginConfig {
            name: c
                .login_name
                .clone()
                .unwrap_or_else(|| "your identity provider".into()),
            authorize_url: c.login_url.clone()?,
            token_url: c.token_url.clone()?,
            client_id: c.audience.clone(),
            scopes: c.login_scopes.clone().unwrap_or_else(|| "openid".into()),
        })
    }

    pub fn new(cfg: OidcConfig) -> anyhow::Result<Oidc> {
        Ok(Oidc {
            cfg,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()?,
            keys: RwLock::new(Keys {
                set: JwkSet { keys: Vec::new() },
                fetched: None,
            }),
        })
    }

    async fn fetch(&self) -> Result<JwkSet, OidcError> {
        let url = self.cfg.jwks_url();
        let mut resp = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| OidcError::Keys(format!("{url}: {e}")))?;
        if !resp.status().is_success() {
            return Err(OidcError::Keys(format!("{url}: HTTP {}", resp.status())));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| OidcError::Keys(format!("{url}: {e}")))?
        {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(OidcError::Keys(format!(
                    "{url}: over {MAX_JWKS_BYTES} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&body).map_err(|e| OidcError::Keys(format!("{url}: {e}")))
    }

    /// The key for `kid`, fetching the set when it is unknown (or old) and allowed to.
    async fn key(&self, kid: &str) -> Result<DecodingKey, OidcError> {
        {
            let k = self.keys.read().await;
            let fresh = k.fetched.is_some_and(|t| t.elapsed() < REFRESH_EVERY);
            if let (true, Some(jwk)) = (fresh, k.set.find(kid)) {
                return DecodingKey::from_jwk(jwk).map_err(|e| OidcError::Keys(e.to_string()));
            }
        }
        let mut k = self.keys.write().await;
        let may_fetch = k.fetched.is_none_or(|t| t.elapsed() >= REFRESH_MIN);
        if may_fetch {
            k.set = self.fetch().await?;
            k.fetched = Some(Instant::now());
            tracing::info!(keys = k.set.keys.len(), "OIDC keys fetched");
        }
        let jwk = k
            .set
            .find(kid)
            .ok_or_else(|| OidcError::Invalid(format!("unknown key id {kid:?}")))?;
        DecodingKey::from_jwk(jwk).map_err(|e| OidcError::Keys(e.to_string()))
    }

    pub async fn verify(&self, token: &str) -> Result<Principal, OidcError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(OidcError::Invalid("too long".into()));
        }
        let header = decode_header(token).map_err(|e| OidcError::Invalid(e.to_string()))?;
        if !ALGORITHMS.contains(&header.alg) {
            return Err(OidcError::Invalid(format!(
                "algorithm {:?} is not accepted",
                header.alg
            )));
        }
        let kid = header
            .kid
            .ok_or_else(|| OidcError::Invalid("no key id (kid)".into()))?;
        let key = self.key(&kid).await?;
        let mut v = Validation::new(header.alg);
        v.set_issuer(&[self.cfg.issuer.as_str()]);
        v.validate_aud = false; // checked below: `aud`, or Cognito access tokens' `client_id`
        v.set_required_spec_claims(&["exp", "iss"]);
        let claims = decode::<Value>(token, &key, &v)
            .map_err(|e| OidcError::Invalid(e.to_string()))?
            .claims;
        let aud_ok = match claims.get("aud") {
            Some(Value::String(a)) => *a == self.cfg.audience,
            Some(Value::Array(a)) => a.iter().any(|x| x.as_str() == Some(&self.cfg.audience)),
            _ => claims.get("client_id").and_then(Value::as_str) == Some(&self.cfg.audience),
        };
        if !aud_ok {
            return Err(OidcError::Invalid("issued for another audience".into()));
        }
        let groups: Vec<String> = match claims.get(&self.cfg.roles_claim) {
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|g| g.as_str().map(str::to_string))
                .collect(),
            Some(Value::String(s)) => s.split_whitespace().map(str::to_string).collect(),
            _ => Vec::new(),
        };
        let has = |names: &[String]| groups.iter().any(|g| names.contains(g));
        let role = if has(&self.cfg.admin_groups) {
            Some(Role::Admin)
        } else if has(&self.cfg.runner_groups) {
            Some(Role::Runner)
        } else if has(&self.cfg.viewer_groups) {
            Some(Role::Viewer)
        } else {
            None
        };
        let name = ["email", "username", "cognito:username", "sub"]
            .iter()
            .find_map(|k| claims.get(*k).and_then(Value::as_str))
            .unwrap_or("oidc user")
            .chars()
            .filter(|c| !c.is_control())
            .take(100)
            .collect();
        Ok(Principal { name, role })
    }
}
