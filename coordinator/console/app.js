// herd console: a single page over the public API. Routes live in the URL's hash so a page
// can be bookmarked and reloaded: #/runs, #/runs/ID, #/new, #/specs, #/schedules, #/compare.

import { call, token, setToken, signOut } from "./api.js";
import { h, flash } from "./util.js";
import { runsPage } from "./runs.js";
import { runPage } from "./run.js";
import { newRunPage } from "./editor.js";
import { schedulesPage } from "./schedules.js";
import { specsPage } from "./specs.js";
import { comparePage } from "./compare.js";
import { oidcSignIn, oidcCallback } from "./oidc.js";

const view = () => document.getElementById("view");
/** Aborted when the page changes: live streams and timers of the old page stop with it. */
let leaving = new AbortController();
export let me = null;

async function signInPage(reason) {
  const v = view();
  let cfg = {};
  try { cfg = await (await fetch("/console/config.json")).json(); } catch (_) { /* token only */ }
  const input = h("input", { id: "token", type: "password", autocomplete: "off", required: true, "aria-describedby": "token-help", size: 40 });
  const remember = h("input", { id: "remember", type: "checkbox" });
  const form = h("form", { class: "panel", onsubmit: async (ev) => {
      ev.preventDefault();
      setToken(input.value.trim(), remember.checked);
      if (await whoAmI()) route(); else { signOut(); flash("That token was not accepted.", true); input.focus(); }
    } },
    h("label", { for: "token" }, "API token"),
    input,
    h("p", { id: "token-help", class: "small muted" }, "A token made with ", h("code", {}, "herd token create"), " or by an admin under Tokens. It stays in this tab unless remembered."),
    h("label", { class: "inline" }, remember, "Remember on this device"),
    h("p", {}, h("button", { class: "primary", type: "submit", id: "signin" }, "Sign in")));
  v.replaceChildren(h("section", { class: "signin" }, h("h1", {}, "Sign in to herd"),
    reason ? h("p", { class: "muted" }, reason) : null,
    cfg.oidc ? h("p", {}, h("button", { type: "button", class: "primary", id: "oidc", onclick: () => oidcSignIn(cfg.oidc) }, `Sign in with ${cfg.oidc.name || "your identity provider"}`)) : null,
    cfg.oidc ? h("p", { class: "muted small" }, "or with an API token:") : null,
    form));
  input.focus();
}

async function whoAmI() {
  // Asked directly, not through `call`: a refused token here is an answer, not a lost session.
  try {
    const r = await fetch("/api/v1/me", { headers: { Authorization: `Bearer ${token()}` } });
    me = r.ok ? await r.json() : null;
  } catch (_) {
    me = null;
  }
  const who = document.getElementById("who");
  who.textContent = me ? `${me.name} · ${me.role}` : "";
  document.getElementById("signout").hidden = !me;
  return me !== null;
}

/** May the signed-in caller do what needs `role`? */
export function can(role) {
  const order = ["viewer", "runner", "admin"];
  return me && order.indexOf(me.role) >= order.indexOf(role);
}

const pages = [
  [/^#\/runs\/([^/?]+)/, "runs", (m, ctx) => runPage(decodeURIComponent(m[1]), ctx)],
  [/^#\/runs/, "runs", (m, ctx) => runsPage(ctx)],
  [/^#\/new/, "new", (m, ctx) => newRunPage(ctx)],
  [/^#\/specs/, "specs", (m, ctx) => specsPage(ctx)],
  [/^#\/schedules/, "schedules", (m, ctx) => schedulesPage(ctx)],
  [/^#\/compare/, "compare", (m, ctx) => comparePage(ctx)],
];

export async function route() {
  leaving.abort();
  leaving = new AbortController();
  flash("");
  if (!token() || !me) {
    if (token() && (await whoAmI())) return route();
    return signInPage();
  }
  const hash = location.hash || "#/runs";
  const [re, nav, page] = pages.find(([re]) => re.test(hash)) || pages[1];
  for (const a of document.querySelectorAll("[data-nav]")) {
    if (a.dataset.nav === nav) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  const v = view();
  const ctx = { hash, signal: leaving.signal, view: v, can, me };
  try {
    await page(hash.match(re), ctx);
  } catch (e) {
    if (!ctx.signal.aborted) v.replaceChildren(h("h1", {}, "Something went wrong"), h("p", { class: "error" }, e.message));
  }
}

window.addEventListener("hashchange", () => { route(); view().focus(); });
window.addEventListener("herd:unauthorized", () => { me = null; signInPage("Your session has ended: sign in again."); });
document.addEventListener("DOMContentLoaded", async () => {
  document.getElementById("signout").addEventListener("click", () => { signOut(); me = null; whoAmI(); signInPage("Signed out."); });
  await oidcCallback(setToken);
  route();
});
export { call };
