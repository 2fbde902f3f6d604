// Small DOM helpers. `h` builds elements; strings become text nodes, so nothing the server
// sends is ever parsed as markup.

export function h(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k === "class") e.className = v;
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    e.append(c instanceof Node ? c : String(c));
  }
  return e;
}

export function flash(msg, error = false) {
  const f = document.getElementById("flash");
  f.className = error ? "error" : "";
  f.textContent = msg || "";
}

export function when(ms) {
  if (!ms) return "–";
  const d = new Date(ms);
  return d.toLocaleString(undefined, { year: "numeric", month: "short", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

export function badge(text) {
  return h("span", { class: `badge b-${text}` }, text);
}

export function ms(v) {
  if (v === null || v === undefined) return "–";
  return v >= 1000 ? `${(v / 1000).toFixed(2)} s` : `${v.toFixed(2)} ms`;
}

export function num(v, digits = 0) {
  if (v === null || v === undefined) return "–";
  return Number(v).toLocaleString(undefined, { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

export function pct(v) {
  if (v === null || v === undefined) return "–";
  return `${(v * 100).toFixed(2)}%`;
}

/** A signed percentage change, classed worse/better by which way is bad for the metric. */
export function delta(change, higherIsWorse) {
  if (change === null || change === undefined) return h("span", { class: "muted" }, "n/a");
  const worse = higherIsWorse ? change > 0 : change < 0;
  const cls = Math.abs(change) < 0.05 ? "" : worse ? "worse" : "better";
  return h("span", { class: cls }, `${change > 0 ? "+" : ""}${change.toFixed(1)}%`);
}

/** A table from a header row and data rows; cells may be nodes. Numeric columns by index. */
export function table(head, rows, numeric = []) {
  return h("table", {},
    h("thead", {}, h("tr", {}, head.map((t, i) => h("th", { class: numeric.includes(i) ? "n" : "", scope: "col" }, t)))),
    h("tbody", {}, rows.map((r) => h("tr", {}, r.map((c, i) => h("td", { class: numeric.includes(i) ? "n" : "" }, c))))));
}

/** Tabs with the ARIA pattern (arrow keys move between them). `tabs`: [{id, label}]. */
export function tabs(name, list, onSelect, selected) {
  const bar = h("div", { role: "tablist", "aria-label": name });
  const pick = (id, focus) => {
    for (const b of bar.children) {
      const on = b.dataset.id === id;
      b.setAttribute("aria-selected", on ? "true" : "false");
      b.tabIndex = on ? 0 : -1;
      if (on && focus) b.focus();
    }
    onSelect(id);
  };
  for (const t of list) {
    const b = h("button", { type: "button", role: "tab", "data-id": t.id, onclick: () => pick(t.id) }, t.label);
    b.addEventListener("keydown", (ev) => {
      const i = list.findIndex((x) => x.id === t.id);
      if (ev.key === "ArrowRight") pick(list[(i + 1) % list.length].id, true);
      if (ev.key === "ArrowLeft") pick(list[(i + list.length - 1) % list.length].id, true);
    });
    bar.append(b);
  }
  pick(selected || list[0]?.id);
  return bar;
}

export function params(hash) {
  const q = hash.indexOf("?");
  return new URLSearchParams(q >= 0 ? hash.slice(q + 1) : "");
}
