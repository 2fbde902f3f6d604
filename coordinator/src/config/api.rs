//! `[api]`: where `herd serve`'s HTTP API listens, and its limits.

use std::path::PathBuf;

use serde::Deserialize;

/// Default `[api] max_streams`.
pub const DEFAULT_MAX_STREAMS: usize = 256;

/// `[api]` in the serve config: without it, `herd serve` has no HTTP API.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Address to listen on (`127.0.0.1:8080`); port 0 picks a free one, printed on the ready
    /// line (`api http://…`).
    pub listen: std::net::SocketAddr,
    /// Serve HTTPS with this certificate chain and key (PEM); both or neither.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Live streams open at once, at most.
    #[serde(default = "default_max_streams")]
    pub max_streams: usize,
    /// `[api.oidc]`: also accept OIDC bearer tokens (JWTs) from this issuer.
    pub oidc: Option<OidcConfig>,
}

/// `[api.oidc]`: JWTs an identity provider signs (a Cognito user pool, Okta, Entra ID…). A
/// token is accepted when its signature checks against the issuer's published keys (JWKS),
/// `iss` is `issuer`, `aud` (or Cognito's `client_id`) is `audience`, and it has not expired;
/// its role comes from the groups in `roles_claim`. A valid token in no herd group is known but
/// may do nothing (403).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    pub issuer: String,
    pub audience: String,
    /// Default: `<issuer>/.well-known/jwks.json` (Cognito's).
    pub jwks_url: Option<String>,
    /// The claim holding the caller's groups (an array, or a space-separated string).
    #[serde(default = "default_roles_claim")]
    pub roles_claim: String,
    #[serde(default = "default_admin")]
    pub admin_groups: Vec<String>,
    #[serde(default = "default_runner")]
    pub runner_groups: Vec<String>,
    #[serde(default = "default_viewer")]
    pub viewer_groups: Vec<String>,
    /// The console's "sign in with" button: the provider's authorization endpoint (Cognito:
    /// `https://<domain>/oauth2/authorize`). The console runs the code flow with PKCE for the
    /// client `audience`, which must allow `https://<herd>/` as a callback. Needs `token_url`.
    pub login_url: Option<String>,
    /// The provider's token endpoint (Cognito: `https://<domain>/oauth2/token`).
    pub token_url: Option<String>,
    /// Scopes asked for at sign-in (default `openid`).
    pub login_scopes: Option<String>,
    /// The button's provider name (default "your identity provider").
    pub login_name: Option<String>,
}

fn default_roles_claim() -> String {
    "cognito:groups".into()
}
fn default_admin() -> Vec<String> {
    vec!["herd-admin".into()]
}
fn default_runner() -> Vec<String> {
    vec!["herd-runner".into()]
}
fn default_viewer() -> Vec<String> {
    vec!["herd-viewer".into()]
}

impl OidcConfig {
    pub fn jwks_url(&self) -> String {
        self.jwks_url.clone().unwrap_or_else(|| {
            format!(
                "{}/.well-known/jwks.json",
                self.issuer.trim_end_matches('/')
            )
        })
    }

    fn check(&self) -> Result<(), String> {
        if self.login_url.is_some() != self.token_url.is_some() {
            return Err(
                "[api.oidc] login_url and token_url go together: give both or neither".into(),
            );
        }
        let login = [
            ("login_url", &self.login_url),
            ("token_url", &self.token_url),
        ]
        .into_iter()
        .filter_map(|(what, u)| u.clone().map(|u| (what, u)));
        for (what, u) in [
            ("issuer", self.issuer.clone()),
            ("jwks_url", self.jwks_url()),
        ]
        .into_iter()
        .chain(login)
        {
            let url = url::Url::parse(&u).map_err(|e| format!("[api.oidc] {what} {u:?}: {e}"))?;
            let loopback = matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
            if url.scheme() != "https" && !(url.scheme() == "http" && loopback) {
                return Err(format!(
                    "[api.oidc] {what} {u:?}: https only (http only on loopback, for tests)"
                ));
            }
        }
        if self.audience.is_empty() {
            return Err("[api.oidc] audience: the client id tokens are issued for".into());
        }
        Ok(())
    }
}

fn default_max_streams() -> usize {
    DEFAULT_MAX_STREAMS
}

impl ApiConfig {
    pub fn check(&self) -> Result<(), String> {
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err("[api] tls_cert and tls_key go together: give both or neither".into());
        }
        if self.max_streams == 0 || self.max_streams > 100_000 {
            return Err(format!(
                "[api] max_streams = {}: between 1 and 100000",
                self.max_streams
            ));
        }
        if let Some(o) = &self.oidc {
            o.check()?;
        }
        Ok(())
    }
}
