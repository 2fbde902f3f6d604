// Line charts as SVG, drawn from plain arrays. Every text comes from data the server or a spec
// wrote, so it is set with textContent, never parsed as markup.

const NS = "http://www.w3.org/2000/svg";
const W = 560, H = 190, L = 52, R = 10, T = 10, B = 24;

function el(name, attrs = {}, text) {
  const e = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

/** A round top for the y axis: 1, 2 or 5 times a power of ten, at least `max`. */
export function niceMax(max) {
  if (!(max > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(max)));
  for (const m of [1, 2, 5, 10]) if (m * p >= max) return m * p;
  return 10 * p;
}

export function fmt(v, unit) {
  if (v === null || v === undefined || Number.isNaN(v)) return "–";
  if (unit === "%") return `${(v * 100).toFixed(v < 0.001 && v > 0 ? 3 : 2)}%`;
  if (unit === "ms") return v >= 1000 ? `${(v / 1000).toFixed(2)}s` : `${v.toFixed(v < 10 ? 2 : 1)}ms`;
  if (Math.abs(v) >= 1e6) return `${(v / 1e6).toFixed(2)}M`;
  if (Math.abs(v) >= 1e4) return `${(v / 1e3).toFixed(1)}k`;
  return Number.isInteger(v) ? String(v) : v.toFixed(Math.abs(v) < 10 ? 2 : 1);
}

/**
 * A figure with one chart. `series`: [{name, points: [[x, y], …], cls, base}] where x is seconds
 * from the start; `base` draws it dashed (a baseline overlay).
 */
export function chart(title, unit, series) {
  const fig = document.createElement("figure");
  fig.className = "chartbox";
  const cap = document.createElement("figcaption");
  cap.textContent = title;
  fig.append(cap);
  draw(fig, unit, series);
  return fig;
}

/** Redraws a chart made by `chart` with new data (the live page calls this each second). */
export function draw(fig, unit, series) {
  fig.querySelector("svg")?.remove();
  fig.querySelector(".legend")?.remove();
  let xmax = 1, ymax = 0;
  for (const s of series) for (const [x, y] of s.points) {
    if (x > xmax) xmax = x;
    if (y > ymax) ymax = y;
  }
  const top = niceMax(ymax);
  const sx = (x) => L + (x / xmax) * (W - L - R);
  const sy = (y) => T + (1 - y / top) * (H - T - B);
  const title = fig.querySelector("figcaption").textContent;
  const last = series.map((s) => `${s.name} ${fmt(s.points.length ? s.points[s.points.length - 1][1] : null, unit)}`);
  const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img",
    "aria-label": `${title}: ${series[0]?.points.length || 0} points; latest ${last.join(", ")}` });
  for (let i = 0; i <= 4; i++) {
    const y = (top * i) / 4;
    svg.append(el("line", { x1: L, x2: W - R, y1: sy(y), y2: sy(y), class: "grid" }));
    svg.append(el("text", { x: L - 5, y: sy(y) + 3, "text-anchor": "end", class: "axis" }, fmt(y, unit)));
  }
  // Whole seconds (or minutes) on the time axis, about six of them.
  const step = niceMax(xmax / 6);
  for (let x = 0; x <= xmax + 1e-9; x += step) {
    const label = xmax >= 600 ? `${+(x / 60).toFixed(1)}m` : `${+x.toFixed(1)}s`;
    svg.append(el("text", { x: sx(x), y: H - 6, "text-anchor": "middle", class: "axis" }, label));
  }
  series.forEach((s, i) => {
    if (!s.points.length) return;
    const pts = s.points.map(([x, y]) => `${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(" ");
    const line = el("polyline", { points: pts, class: `${s.cls || `s${i % 6}`}${s.base ? " base" : ""}`, "data-series": s.name, "data-points": s.points.length });
    line.append(el("title", {}, s.name));
    svg.append(line);
  });
  fig.append(svg);
  const legend = document.createElement("div");
  legend.className = "legend";
  series.forEach((s, i) => {
    const k = document.createElement("span");
    k.className = `${s.cls || `s${i % 6}`}`;
    k.textContent = s.name;
    legend.append(k);
  });
  fig.append(legend);
}
