// Stored specs and their baselines: run one, open it in the editor, see its versions, set the
// baseline (admin) that thresholds such as `p95 < baseline.p95 * 1.1` are judged against.

import { get, call } from "./api.js";
import { h, flash, when, table, params } from "./util.js";

export async function specsPage(ctx) {
  const specs = await get("/specs");
  const open = params(ctx.hash).get("name");
  const rows = specs.map((s) => [
    h("a", { href: `#/specs?name=${encodeURIComponent(s.name)}` }, s.name),
    `v${s.latest}`, when(s.updated_at_ms),
    s.baseline ? h("a", { class: "mono", href: `#/runs/${encodeURIComponent(s.baseline)}` }, s.baseline) : h("span", { class: "muted" }, "none"),
    ctx.can("runner") ? h("button", { type: "button", "aria-label": `Run ${s.name}`, onclick: async () => {
      try { const r = await call("POST", `/runs?spec=${encodeURIComponent(s.name)}`); location.hash = `#/runs/${encodeURIComponent(r.run_id)}`; } catch (e) { flash(e.message, true); }
    } }, "Run") : "",
  ]);
  const nodes = [h("h1", {}, "Specs & baselines"),
    rows.length ? table(["Spec", "Latest", "Updated", "Baseline", ""], rows) : h("p", { class: "muted" }, "No stored specs: save one from New run.")];
  if (open) nodes.push(await detail(ctx, open));
  ctx.view.replaceChildren(...nodes);
}

async function detail(ctx, name) {
  const s = await get(`/specs/${encodeURIComponent(name)}`);
  const box = h("section", { class: "panel", "aria-label": `Spec ${name}` },
    h("h2", {}, `${s.name} v${s.version}`),
    h("p", { class: "small muted" }, `saved ${when(s.created_at_ms)} by ${s.created_by} · versions: ${s.versions.map((v) => `v${v.version}`).join(", ")}`),
    h("div", { class: "row" },
      h("button", { type: "button", onclick: () => { sessionStorage.setItem("herd.draft", s.text); location.hash = "#/new"; } }, "Open in editor"),
      h("a", { href: `#/runs?spec=${encodeURIComponent(name)}` }, "Its runs")),
    s.baseline ? h("p", {}, "Baseline: ", h("a", { class: "mono", href: `#/runs/${encodeURIComponent(s.baseline.run_id)}` }, s.baseline.run_id), ` (set ${when(s.baseline.set_at_ms)} by ${s.baseline.set_by})`) : h("p", { class: "muted" }, "No baseline."),
    h("pre", {}, s.text));
  if (ctx.can("admin")) {
    const run = h("input", { id: "baseline-run", name: "run", required: true, size: 36, class: "mono" });
    box.append(h("form", { class: "row", onsubmit: async (ev) => {
        ev.preventDefault();
        try { await call("PUT", `/specs/${encodeURIComponent(name)}/baseline`, { run: run.value.trim() }); flash(`Baseline of ${name} set.`); await specsPage(ctx); } catch (e) { flash(e.message, true); }
      } }, h("label", { for: "baseline-run" }, "Make this completed run the baseline", run), h("button", { type: "submit" }, "Set baseline")));
  }
  return box;
}
