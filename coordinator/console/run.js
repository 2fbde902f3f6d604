// A run: live charts while it runs (from the SSE stream, each second), then its summary,
// thresholds, agents and files; cancel, make it the spec's baseline, compare, open its report.

import { get, call, stream, blob } from "./api.js";
import { chart } from "./chart.js";
import { fromSnapshot, fromRows, line, keys } from "./series.js";
import { h, flash, when, badge, ms, num, pct, table, tabs } from "./util.js";

/** The charts of one scope: the whole run, a label or a region. */
export function charts(points, scope, overlay = [], overlayName = "baseline") {
  const pick = (p) => (scope.kind === "all" ? p : p[scope.kind]?.[scope.name]);
  const ser = (name, pts, f, cls, base) => ({ name, points: line(pts, (p) => { const x = pick(p); return x ? f(x) : undefined; }), cls, base });
  const withBase = (name, f, cls) => {
    const out = [ser(name, points, f, cls)];
    if (overlay.length) out.push(ser(`${name} (${overlayName})`, overlay, f, cls, true));
    return out;
  };
  const out = [
    chart("Requests per second", "", withBase("req/s", (x) => x.rps, "s0")),
    chart("Latency", "ms", [
      ...withBase("p50", (x) => x.p50, "s3"), ...withBase("p95", (x) => x.p95, "s1"), ...withBase("p99", (x) => x.p99, "s2")]),
  ];
  if (scope.kind === "all") {
    const codes = keys(points, "status");
    out.push(chart("Errors by status", "", codes.length
      ? codes.map((c, i) => ({ name: c === "0" ? "no response" : c, points: line(points, (p) => p.status[c] || 0), cls: `s${(i + 2) % 6}` }))
      : [{ name: "errors", points: line(points, (p) => p.errors), cls: "s2" }]));
    out.push(chart("Active VUs", "", withBase("VUs", (x) => x.vus, "s4")));
    out.push(chart("Agents reporting", "", [
      { name: "reporting", points: line(points, (p) => p.reporting), cls: "s3" },
      { name: "planned", points: line(points, (p) => p.total), cls: "s0", base: true }]));
  } else {
    out.push(chart("Errors", "", withBase("errors", (x) => x.errors, "s2")));
  }
  return h("div", { class: "charts" }, out);
}

/** Tabs for the whole run, each label and each region, over a charts area. */
export function scopedCharts(points, overlay, overlayName) {
  const area = h("div", { id: "chart-area" });
  const list = [{ id: "all", label: "All requests" },
    ...keys(points, "labels").map((l) => ({ id: `labels:${l}`, label: `Label: ${l}` })),
    ...keys(points, "regions").map((r) => ({ id: `regions:${r}`, label: `Region: ${r}` }))];
  let current = "all";
  const show = (id) => {
    current = id;
    const [kind, ...rest] = id.split(":");
    area.replaceChildren(charts(points, id === "all" ? { kind: "all" } : { kind, name: rest.join(":") }, overlay, overlayName));
  };
  const bar = tabs("Chart scope", list, show, current);
  return { node: h("div", {}, bar, area), redraw: () => show(current), count: list.length };
}

function cards(run, s) {
  const t = s?.total;
  const c = (label, value) => h("div", { class: "card" }, h("b", { id: `card-${label.replace(/[^a-z0-9]+/g, "-")}` }, value), h("span", {}, label));
  return h("div", { class: "cards" },
    c("requests", num(t?.requests ?? run.requests)),
    c("req/s", num(t?.rps ?? run.rps, 1)),
    c("p95", ms(t?.latency_ms?.p95 ?? run.p95_ms)),
    c("p99", ms(t?.latency_ms?.p99 ?? run.p99_ms)),
    c("error rate", t ? pct(t.requests ? t.errors / t.requests : 0) : "–"),
    c("agents lost", num(s?.agents_lost ?? run.agents_lost)));
}

function thresholds(s) {
  if (!s?.thresholds?.length) return h("p", { class: "muted" }, "No thresholds.");
  return table(["", "Threshold", "Label", "Observed", "Limit", "Why"], s.thresholds.map((t) => [
    h("span", { class: t.passed ? "better" : "worse", "aria-label": t.passed ? "passed" : "failed" }, t.passed ? "✓" : "✗"),
    h("code", {}, t.expr), t.label || "all", t.observed_display || String(t.observed ?? "–"),
    t.limit_display || (t.limit === undefined || t.limit === null ? "–" : String(t.limit)), t.reason || "",
  ]), [3, 4]);
}

function agents(s) {
  if (!s?.agents?.length) return h("p", { class: "muted" }, "No agents reported.");
  return table(["Agent", "Region", "State", "Start skew", "Clock offset", "Batches", "Rejected", "Lost by agent", "Why"], s.agents.map((a) => [
    a.index, a.region, badge(a.state), a.started_at_ms && s.start_at_ms ? `${a.started_at_ms - s.start_at_ms} ms` : "–",
    a.clock_offset_ms === null || a.clock_offset_ms === undefined ? "–" : `${a.clock_offset_ms} ms`,
    num(a.batches_received), num(a.rejected_batches), num(a.batches_dropped_by_agent), a.reason || "",
  ]), [3, 4, 5, 6, 7]);
}

function statsTable(map) {
  const rows = Object.entries(map || {}).map(([k, v]) => [k, num(v.requests), pct(v.requests ? v.errors / v.requests : 0), num(v.rps, 1),
    ms(v.latency_ms?.p50), ms(v.latency_ms?.p95), ms(v.latency_ms?.p99), ms(v.latency_ms?.max)]);
  return table(["", "Requests", "Errors", "Req/s", "p50", "p95", "p99", "max"], rows, [1, 2, 3, 4, 5, 6, 7]);
}

async function openReport(id) {
  // The window opens within the click (popup blockers allow that), the file follows.
  const w = window.open("about:blank", "_blank");
  if (!w) { flash("The browser blocked the report's window: allow pop-ups for this site.", true); return; }
  w.opener = null;
  try {
    const b = await blob(`/runs/${encodeURIComponent(id)}/files/report.html`);
    const url = URL.createObjectURL(new Blob([b], { type: "text/html" }));
    w.location.href = url;
    setTimeout(() => URL.revokeObjectURL(url), 60000);
  } catch (e) { w.close(); flash(`The report: ${e.message}`, true); }
}

async function download(id, name) {
  try {
    const b = await blob(`/runs/${encodeURIComponent(id)}/files/${encodeURIComponent(name)}`);
    const a = h("a", { href: URL.createObjectURL(b), download: name });
    document.body.append(a); a.click(); a.remove();
  } catch (e) { flash(`${name}: ${e.message}`, true); }
}

export async function runPage(id, ctx) {
  const path = `/runs/${encodeURIComponent(id)}`;
  const run = await get(path);
  const live = run.status === "running" || run.status === "queued";
  const head = h("div", { class: "row" },
    h("h1", { id: "run-title" }, run.run_id), badge(run.status), run.verdict ? h("span", { id: "verdict" }, badge(run.verdict)) : null);
  const actions = h("div", { class: "row" });
  const v = ctx.view;
  const points = [];
  if (!live) {
    try {
      const rows = await get(`${path}/timeseries?format=json`);
      points.push(...fromRows(rows, run.agents));
    } catch (e) { flash(`No per-second series: ${e.message}`); }
  }
  const scoped = scopedCharts(points);
  const status = h("p", { id: "live-status", class: "muted", "aria-live": "polite" });
  const body = [head,
    h("p", { class: "muted small" }, `spec ${run.spec} · ${run.agents} agent(s) · accepted ${when(run.accepted_at_ms)} · from ${run.source}`, run.ended_at_ms ? ` · ended ${when(run.ended_at_ms)}` : ""),
    run.reason ? h("p", { class: "worse" }, run.reason) : null,
    ...((run.summary && run.summary.warnings) || []).map((w) => h("p", { class: "worse", role: "alert" }, `⚠ ${w}`)),
    actions, cards(run, run.summary), status, h("h2", {}, "Per second"), scoped.node];
  if (run.summary) {
    body.push(h("h2", {}, "Thresholds"), thresholds(run.summary),
      h("h2", {}, "Labels"), statsTable(run.summary.labels),
      h("h2", {}, "Regions"), statsTable(run.summary.regions),
      h("h2", {}, "Agents"), agents(run.summary));
  }
  if (run.baseline) {
    const b = run.baseline;
    const row = (name, c, worseUp, f) => [name, f(c.baseline), f(c.this), c.change_pct === null ? "n/a" : `${c.change_pct > 0 ? "+" : ""}${c.change_pct.toFixed(1)}%`];
    body.push(h("h2", {}, "Against the spec's baseline ", h("a", { href: `#/runs/${encodeURIComponent(b.baseline_run)}`, class: "mono" }, b.baseline_run)),
      table(["", "Baseline", "This run", "Change"], [row("requests", b.requests, false, num), row("req/s", b.rps, false, (x) => num(x, 1)),
        row("p95", b.p95_ms, true, ms), row("p99", b.p99_ms, true, ms), row("error rate", b.error_rate, true, pct)], [1, 2, 3]));
  }
  body.push(h("h2", {}, "Spec"), h("pre", { class: "mono" }, run.spec_text));
  v.replaceChildren(...body.filter(Boolean));

  if (live && ctx.can("runner")) {
    actions.append(h("button", { type: "button", class: "danger", id: "cancel", onclick: async (ev) => {
      if (!confirm(`Cancel run ${run.run_id}?`)) return;
      ev.target.disabled = true;
      try { await call("POST", `${path}/cancel`, { reason: `cancelled from the console by ${ctx.me.name}` }); flash("Cancelling: the run stops and keeps what it measured."); } catch (e) { flash(e.message, true); ev.target.disabled = false; }
    } }, "Cancel run"));
  }
  if (!live) {
    actions.append(h("button", { type: "button", id: "report", onclick: () => openReport(run.run_id) }, "Open report"),
      h("a", { href: `#/compare?run=${encodeURIComponent(run.run_id)}`, id: "compare" }, "Compare…"));
    if (run.status === "completed" && ctx.can("admin")) {
      actions.append(h("button", { type: "button", id: "make-baseline", onclick: async () => {
        try { await call("PUT", `/specs/${encodeURIComponent(run.spec)}/baseline`, { run: run.run_id }); flash(`${run.run_id} is now the baseline of ${run.spec}.`); } catch (e) { flash(e.message, true); }
      } }, "Make baseline"));
    }
    try {
      const files = await get(`${path}/files`);
      v.append(h("h2", {}, "Files"), h("ul", {}, files.map((f) => h("li", {},
        h("button", { type: "button", class: "linkish", onclick: () => download(run.run_id, f.name) }, f.name), ` ${num(f.bytes)} bytes`))));
    } catch (_) { /* no files (yet): nothing to list */ }
    return;
  }
  status.textContent = run.status === "queued" ? "Queued: waiting for a place to run…" : "Live: waiting for the first second…";
  try {
    await stream(`${path}/live`, (name, data) => {
      if (name === "snapshot") {
        const snap = JSON.parse(data);
        points.push(fromSnapshot(snap));
        status.textContent = `Live · ${Math.round(snap.elapsed_s)}s of ${Math.round(snap.planned_s)}s · ${num(snap.rps)} req/s · agents ${snap.agents.reporting}/${snap.agents.total}`;
        // A new label or region adds a tab: rebuild the tabs then.
        if (scoped.count !== 1 + keys(points, "labels").length + keys(points, "regions").length) {
          const fresh = scopedCharts(points);
          scoped.node.replaceWith(fresh.node);
          Object.assign(scoped, fresh);
        } else scoped.redraw();
      } else if (name === "lagged") {
        status.textContent = "Live · this page fell behind; some seconds were skipped.";
      } else if (name === "result") {
        status.textContent = "Finished.";
      }
    }, ctx.signal);
  } catch (e) {
    if (ctx.signal.aborted) return;
    flash(`The live stream ended: ${e.message}`, true);
  }
  if (!ctx.signal.aborted) await runPage(id, ctx);
}
