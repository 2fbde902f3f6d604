// Compare a run with its spec's baseline or with any other run: overlaid series, a delta table
// per metric and label, and a regression verdict — the run's own baseline thresholds when it is
// compared with its baseline, else the tolerances on this page.

import { get } from "./api.js";
import { fromRows } from "./series.js";
import { scopedCharts } from "./run.js";
import { h, params, ms, num, pct, delta, table, badge } from "./util.js";

async function load(id) {
  const run = await get(`/runs/${encodeURIComponent(id)}`);
  let points = [];
  try { points = fromRows(await get(`/runs/${encodeURIComponent(id)}/timeseries?format=json`), run.agents); } catch (_) { /* no series */ }
  return { run, points };
}

const change = (b, t) => (b ? ((t - b) / b) * 100 : null);

/** [metric, baseline, this, change, higher-is-worse] for one stats block of summary.json. */
function metrics(b, t) {
  const er = (s) => (s.requests ? s.errors / s.requests : 0);
  return [
    ["requests", b.requests, t.requests, num, false],
    ["req/s", b.rps, t.rps, (x) => num(x, 1), false],
    ["p50", b.latency_ms.p50, t.latency_ms.p50, ms, true],
    ["p95", b.latency_ms.p95, t.latency_ms.p95, ms, true],
    ["p99", b.latency_ms.p99, t.latency_ms.p99, ms, true],
    ["error rate", er(b), er(t), pct, true],
  ];
}

export async function comparePage(ctx) {
  const p = params(ctx.hash);
  const id = p.get("run");
  const form = h("form", { class: "filters", "aria-label": "Runs to compare", onsubmit: (ev) => {
      ev.preventDefault();
      const q = new URLSearchParams({ run: form.elements.run.value.trim() });
      if (form.elements.with.value.trim()) q.set("with", form.elements.with.value.trim());
      location.hash = `#/compare?${q}`;
    } },
    h("label", { for: "c-run" }, "Run", h("input", { id: "c-run", name: "run", value: id || "", size: 34, class: "mono", required: true })),
    h("label", { for: "c-with" }, "against (empty: its spec's baseline)", h("input", { id: "c-with", name: "with", value: p.get("with") || "", size: 34, class: "mono" })),
    h("button", { type: "submit" }, "Compare"));
  const nodes = [h("h1", {}, "Compare runs"), form];
  if (!id) { ctx.view.replaceChildren(...nodes); return; }
  const a = await load(id);
  let withId = p.get("with");
  let isBaseline = false;
  if (!withId) {
    try { withId = (await get(`/specs/${encodeURIComponent(a.run.spec)}/baseline`)).run_id; isBaseline = true; } catch (e) {
      nodes.push(h("p", { class: "worse" }, `Spec ${a.run.spec} has no baseline: name a run to compare with.`));
      ctx.view.replaceChildren(...nodes);
      return;
    }
  }
  const b = await load(withId);
  const sa = a.run.summary, sb = b.run.summary;
  if (!sa || !sb) {
    nodes.push(h("p", { class: "worse" }, "Both runs must have ended to be compared."));
    ctx.view.replaceChildren(...nodes);
    return;
  }
  const tol = { p95: Number(p.get("p95") || 10), rps: Number(p.get("rps") || 5), err: Number(p.get("err") || 1) };
  const regressions = [];
  const own = (sa.thresholds || []).filter((t) => /baseline\./.test(t.expr));
  if (isBaseline && own.length) {
    for (const t of own) if (!t.passed) regressions.push(t.reason || t.expr);
  } else {
    const t = sa.total, base = sb.total;
    const c95 = change(base.latency_ms.p95, t.latency_ms.p95), crps = change(base.rps, t.rps);
    if (c95 !== null && c95 > tol.p95) regressions.push(`p95 ${c95.toFixed(1)}% slower (tolerance ${tol.p95}%)`);
    if (crps !== null && crps < -tol.rps) regressions.push(`req/s ${(-crps).toFixed(1)}% lower (tolerance ${tol.rps}%)`);
    const e = (s) => (s.requests ? s.errors / s.requests : 0);
    if ((e(t) - e(base)) * 100 > tol.err) regressions.push(`error rate up ${((e(t) - e(base)) * 100).toFixed(2)} points (tolerance ${tol.err})`);
  }
  nodes.push(h("p", {}, h("a", { class: "mono", href: `#/runs/${encodeURIComponent(id)}` }, id), " against ",
    isBaseline ? "its spec's baseline " : "", h("a", { class: "mono", href: `#/runs/${encodeURIComponent(withId)}` }, withId)));
  nodes.push(h("div", { class: "panel", id: "regression" },
    regressions.length ? badge("failed") : badge("passed"), " ",
    h("strong", {}, regressions.length ? "Regression" : "No regression"),
    h("span", { class: "muted small" }, isBaseline && own.length ? " — by the run's baseline thresholds" : ` — tolerances: p95 +${tol.p95}%, req/s −${tol.rps}%, errors +${tol.err} points`),
    regressions.length ? h("ul", {}, regressions.map((r) => h("li", {}, r))) : null));
  const rows = [];
  const scopes = [["all", sb.total, sa.total], ...Object.keys(sa.labels || {}).filter((l) => sb.labels?.[l]).map((l) => [l, sb.labels[l], sa.labels[l]])];
  for (const [scope, bs, ts] of scopes) {
    for (const [m, bv, tv, f, worseUp] of metrics(bs, ts)) rows.push([scope, m, f(bv), f(tv), delta(change(bv, tv), worseUp)]);
  }
  nodes.push(h("h2", {}, "Deltas"), h("div", { id: "deltas" }, table(["Scope", "Metric", "Baseline", "This run", "Change"], rows, [2, 3, 4])));
  nodes.push(h("h2", {}, "Series (dashed: the run compared with)"), scopedCharts(a.points, b.points, "baseline").node);
  ctx.view.replaceChildren(...nodes);
}
