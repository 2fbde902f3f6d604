// Sign-in through the OIDC provider (Cognito's hosted UI on AWS): the authorization-code flow
// with PKCE, so no client secret lives in the page. The provider's access token is then used as
// the bearer token, which the API checks against the issuer's keys like any OIDC token.

const FLOW = "herd.oidc";

function b64url(bytes) {
  return btoa(String.fromCharCode(...new Uint8Array(bytes))).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function redirectUri() {
  return `${location.origin}/`;
}

export async function oidcSignIn(cfg) {
  const verifier = b64url(crypto.getRandomValues(new Uint8Array(48)));
  const state = b64url(crypto.getRandomValues(new Uint8Array(16)));
  const challenge = b64url(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier)));
  sessionStorage.setItem(FLOW, JSON.stringify({ verifier, state, token_url: cfg.token_url, client_id: cfg.client_id, back: location.hash }));
  const q = new URLSearchParams({
    response_type: "code", client_id: cfg.client_id, redirect_uri: redirectUri(),
    scope: cfg.scopes || "openid", state, code_challenge: challenge, code_challenge_method: "S256",
  });
  location.assign(`${cfg.authorize_url}?${q}`);
}

/** Finishes a sign-in when the provider sent the browser back here with a code. */
export async function oidcCallback(setToken) {
  const q = new URLSearchParams(location.search);
  if (!q.has("code") && !q.has("error")) return;
  const flow = JSON.parse(sessionStorage.getItem(FLOW) || "null");
  sessionStorage.removeItem(FLOW);
  history.replaceState(null, "", `/${flow?.back || ""}`);
  const flash = document.getElementById("flash");
  if (q.has("error")) { flash.textContent = `Sign-in refused: ${q.get("error_description") || q.get("error")}`; return; }
  if (!flow || q.get("state") !== flow.state) { flash.textContent = "Sign-in refused: the answer does not match a sign-in started here."; return; }
  const r = await fetch(flow.token_url, {
    method: "POST",
    headers: { "Content-Type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({ grant_type: "authorization_code", code: q.get("code"), redirect_uri: redirectUri(), client_id: flow.client_id, code_verifier: flow.verifier }),
  });
  const body = await r.json().catch(() => ({}));
  if (!r.ok || !body.access_token) { flash.textContent = `Sign-in failed at the provider: ${body.error || r.status}`; return; }
  setToken(body.access_token, false);
}
