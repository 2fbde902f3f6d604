// The runs list: filters (spec, state, verdict, time), badges, paging by the API's cursor.

import { get } from "./api.js";
import { h, when, badge, ms, num, params } from "./util.js";

const STATES = ["", "queued", "running", "completed", "failed", "cancelled"];
const VERDICTS = ["", "passed", "failed"];

function select(id, label, values, value) {
  return h("label", { for: id }, label,
    h("select", { id, name: id }, values.map((v) => h("option", { value: v, selected: v === value }, v || "any"))));
}

export async function runsPage(ctx) {
  const p = params(ctx.hash);
  const form = h("form", { class: "filters", "aria-label": "Filter runs", onsubmit: (ev) => {
      ev.preventDefault();
      const q = new URLSearchParams();
      for (const [k, v] of new FormData(form)) {
        if (!v) continue;
        q.set(k, (k === "from" || k === "before") ? new Date(v).toISOString() : v);
      }
      location.hash = `#/runs?${q}`;
    } },
    h("label", { for: "f-spec" }, "Spec", h("input", { id: "f-spec", name: "spec", value: p.get("spec") || "", size: 16 })),
    select("status", "State", STATES, p.get("status") || ""),
    select("verdict", "Verdict", VERDICTS, p.get("verdict") || ""),
    h("label", { for: "f-from" }, "Accepted from", h("input", { id: "f-from", name: "from", type: "datetime-local", value: local(p.get("from")) })),
    h("label", { for: "f-before" }, "before", h("input", { id: "f-before", name: "before", type: "datetime-local", value: local(p.get("before")) })),
    h("button", { type: "submit" }, "Filter"));
  const q = new URLSearchParams();
  for (const k of ["spec", "status", "verdict", "from", "before", "cursor"]) if (p.get(k)) q.set(k, p.get(k));
  q.set("limit", "25");
  const page = await get(`/runs?${q}`);
  const rows = page.runs.map((r) => [
    h("a", { href: `#/runs/${encodeURIComponent(r.run_id)}`, class: "mono" }, r.run_id),
    r.spec,
    badge(r.status),
    r.verdict ? badge(r.verdict) : "",
    when(r.accepted_at_ms),
    num(r.requests),
    r.rps === null || r.rps === undefined ? "–" : num(r.rps, 1),
    ms(r.p95_ms),
    r.agents,
  ]);
  const pager = h("div", { class: "pager" });
  const back = p.get("cursor");
  if (back) pager.append(h("a", { href: `#/runs?${without(p, "cursor")}` }, "← Newest"));
  if (page.next) {
    const n = new URLSearchParams(p);
    n.set("cursor", page.next);
    pager.append(h("a", { href: `#/runs?${n}`, id: "next-page" }, "Older runs →"));
  }
  ctx.view.replaceChildren(
    h("h1", {}, "Runs"), form,
    rows.length ? tableOf(rows) : h("p", { class: "muted" }, "No runs match."),
    pager);
  // A list with a run under way refreshes itself.
  if (page.runs.some((r) => r.status === "running" || r.status === "queued")) {
    const t = setTimeout(() => { if (!ctx.signal.aborted) runsPage(ctx); }, 3000);
    ctx.signal.addEventListener("abort", () => clearTimeout(t));
  }
}

function tableOf(rows) {
  const head = ["Run", "Spec", "State", "Verdict", "Accepted", "Requests", "Req/s", "p95", "Agents"];
  return h("table", { id: "runs" },
    h("thead", {}, h("tr", {}, head.map((t, i) => h("th", { scope: "col", class: i >= 5 ? "n" : "" }, t)))),
    h("tbody", {}, rows.map((r) => h("tr", {}, r.map((c, i) => h("td", { class: i >= 5 ? "n" : "" }, c))))));
}

function without(p, key) {
  const n = new URLSearchParams(p);
  n.delete(key);
  return n;
}

/** An RFC 3339 instant as a datetime-local input's value (local time). */
function local(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "";
  return new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
}
