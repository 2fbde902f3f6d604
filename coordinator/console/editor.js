// New run: a spec editor that validates as you type (the server's positioned problems, marked
// on their lines), the files the spec names (scripts, data, a zip), and start.

import { call } from "./api.js";
import { h, flash } from "./util.js";

const STARTER = `name: console-demo
target: http://127.0.0.1:8080
scenario:
  - request: GET /
load: {executor: constant-vus, vus: 2, duration: 10s}
thresholds:
  - p95 < 200ms
  - error_rate < 1%
`;
const DRAFT = "herd.draft";

/** The spec alone, or with the files it names as `POST /runs` takes them (multipart). */
function multipart(text, files) {
  const fd = new FormData();
  fd.append("spec", new Blob([text], { type: "application/yaml" }), "spec.yaml");
  for (const f of files) fd.append("file", f, f.name);
  return fd;
}

/** Validates `text` (with `files()`) after a pause in typing; the latest answer wins. */
function validator(files, onResult) {
  let timer = null, seq = 0;
  return (text) => {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      const mine = ++seq;
      try {
        const chosen = files();
        const r = chosen.length
          ? await call("POST", "/validate", multipart(text, chosen))
          : await call("POST", "/validate", text, { "Content-Type": "application/yaml" });
        if (mine === seq) onResult(r, null);
      } catch (e) {
        if (mine === seq) onResult(null, e);
      }
    }, 350);
  };
}

export function editorBox(text, onChange) {
  const gutter = h("div", { class: "gutter", "aria-hidden": "true" });
  const area = h("textarea", { id: "spec", spellcheck: "false", "aria-label": "Spec (YAML)", "aria-describedby": "problems", autocomplete: "off" });
  area.value = text;
  const box = h("div", { class: "editor" }, gutter, area);
  let bad = new Set();
  const paint = () => {
    const n = area.value.split("\n").length;
    area.rows = Math.max(n + 1, 16);
    gutter.replaceChildren(...Array.from({ length: n }, (_, i) =>
      h("div", bad.has(i + 1) ? { class: "bad", title: "a problem on this line" } : {}, String(i + 1))));
  };
  area.addEventListener("input", () => { paint(); onChange(area.value); });
  area.addEventListener("keydown", (ev) => {
    // Tab indents (two spaces) instead of leaving the editor; Escape then Tab leaves it.
    if (ev.key === "Tab" && !ev.shiftKey && !area.dataset.escaped) {
      ev.preventDefault();
      area.setRangeText("  ", area.selectionStart, area.selectionEnd, "end");
      area.dispatchEvent(new Event("input"));
    }
    if (ev.key === "Escape") area.dataset.escaped = "1"; else if (ev.key !== "Tab") delete area.dataset.escaped;
  });
  paint();
  return {
    node: box, area,
    mark(lines) { bad = new Set(lines); paint(); },
    goto(line) {
      const at = area.value.split("\n").slice(0, line - 1).reduce((n, l) => n + l.length + 1, 0);
      area.focus();
      area.setSelectionRange(at, at);
    },
  };
}

export function problemsList(ed) {
  const list = h("ul", { id: "problems", class: "problems", "aria-live": "polite" });
  return {
    node: list,
    show(r, err) {
      if (err) { list.replaceChildren(h("li", {}, `Could not validate: ${err.message}`)); ed.mark([]); return false; }
      const warnings = (r.warnings || []).map((w) => h("li", { class: "warn" }, `⚠ ${w}`));
      if (r.valid) { list.replaceChildren(h("li", { class: "ok" }, "✓ The spec is valid."), ...warnings); ed.mark([]); return true; }
      list.replaceChildren(...r.errors.map((e) => h("li", { class: "problem", "data-line": e.line || "" },
        e.line ? h("a", { href: "#", onclick: (ev) => { ev.preventDefault(); ed.goto(e.line); } }, `line ${e.line}${e.column ? `:${e.column}` : ""}`) : null,
        e.line ? " " : null, e.path ? h("code", {}, e.path) : null, e.path ? ": " : null, e.message)));
      ed.mark(r.errors.filter((e) => e.line).map((e) => e.line));
      return false;
    },
  };
}

export async function newRunPage(ctx) {
  const text = sessionStorage.getItem(DRAFT) || STARTER;
  const files = h("input", { id: "files", type: "file", multiple: true, "aria-describedby": "files-help" });
  const check = validator(() => [...files.files], (r, e) => { valid = problems.show(r, e); start.disabled = !valid || !ctx.can("runner"); });
  const ed = editorBox(text, (t) => { sessionStorage.setItem(DRAFT, t); check(t); });
  const problems = problemsList(ed);
  let valid = false;
  files.addEventListener("change", () => check(ed.area.value));
  const start = h("button", { type: "submit", class: "primary", id: "start", disabled: true }, "Start run");
  const form = h("form", { onsubmit: async (ev) => {
      ev.preventDefault();
      start.disabled = true;
      try {
        let r;
        if (files.files.length) {
          r = await call("POST", "/runs", multipart(ed.area.value, files.files));
        } else {
          r = await call("POST", "/runs", ed.area.value, { "Content-Type": "application/yaml" });
        }
        if (!r.run_id) throw new Error("the server started nothing (a duplicate of a rejected request)");
        location.hash = `#/runs/${encodeURIComponent(r.run_id)}`;
      } catch (e) {
        flash(`Not started: ${e.message}`, true);
        start.disabled = false;
      }
    } },
    h("p", { class: "muted small" }, "Checked as you type against this server's limits and target policy. Tab indents; Esc then Tab leaves the editor."),
    ed.node, problems.node,
    h("label", { for: "files" }, "Files the spec names (scripts, data, a zip)", files),
    h("p", { id: "files-help", class: "muted small" }, "Each file lands next to the spec under its own name (data: {users: {file: users.csv}}); a folder goes as a zip. The check above then includes them."),
    h("div", { class: "row" }, start,
      h("button", { type: "button", id: "save-spec", disabled: !ctx.can("runner"), onclick: async () => {
        const name = (ed.area.value.match(/^name:\s*["']?([A-Za-z0-9._-]+)/m) || [])[1];
        if (!name) { flash("The spec needs a name: line to be saved.", true); return; }
        try {
          const v = await call("PUT", `/specs/${encodeURIComponent(name)}`, ed.area.value, { "Content-Type": "application/yaml" });
          flash(`Saved ${name} as version ${v.version}.`);
        } catch (e) { flash(`Not saved: ${e.message}`, true); }
      } }, "Save as stored spec"),
      ctx.can("runner") ? null : h("span", { class: "muted" }, "Starting runs needs the runner role.")));
  ctx.view.replaceChildren(h("h1", {}, "New run"), form);
  check(ed.area.value);
}
