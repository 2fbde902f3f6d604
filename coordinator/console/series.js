// One shape for a run's seconds, whether they come live (SSE snapshots, live.schema.json) or
// from the finished run's timeseries.json, so the run and compare pages draw both alike.

/** A point: {t, rps, errors, p50, p95, p99, vus, reporting, total, status: {code: n},
 *  labels: {name: {rps, errors, p50, p95, p99}}, regions: {name: {…same}}}. */
export function fromSnapshot(s) {
  const lat = (l) => ({ p50: l.p50, p95: l.p95, p99: l.p99 });
  const part = (x) => ({ rps: x.requests, errors: x.errors, ...lat(x.latency_ms) });
  return {
    t: s.elapsed_s,
    rps: s.rps,
    errors: s.errors,
    ...lat(s.latency_ms),
    vus: s.vus,
    dropped: s.dropped_iterations,
    reporting: s.agents.reporting,
    total: s.agents.total,
    status: s.errors_by_status || {},
    labels: Object.fromEntries(Object.entries(s.labels || {}).map(([k, v]) => [k, part(v)])),
    regions: Object.fromEntries(Object.entries(s.regions || {}).map(([k, v]) => [k, part(v)])),
  };
}

const failing = (code) => code === "0" || Number(code) >= 400;

function stats(x) {
  return { rps: x.requests, errors: x.errors, p50: x.p50_ms, p95: x.p95_ms, p99: x.p99_ms };
}

/** timeseries.json rows; `agents` is the run's agent count (a row says who reported). */
export function fromRows(rows, agents) {
  if (!rows.length) return [];
  const first = rows[0].second;
  return rows.map((r) => ({
    t: r.second - first + 1,
    ...stats(r.total),
    vus: r.vus,
    dropped: r.dropped_iterations,
    reporting: r.agents,
    total: agents,
    status: Object.fromEntries(Object.entries(r.total.status || {}).filter(([c]) => failing(c))),
    labels: Object.fromEntries(Object.entries(r.labels || {}).map(([k, v]) => [k, stats(v)])),
    regions: Object.fromEntries(Object.entries(r.regions || {}).map(([k, v]) => [k, stats(v)])),
  }));
}

/** [[t, value]] for `pick(point)`, skipping seconds where it is undefined. */
export function line(points, pick) {
  const out = [];
  for (const p of points) {
    const v = pick(p);
    if (v !== undefined && v !== null) out.push([p.t, v]);
  }
  return out;
}

/** Every key seen under `field` (labels, regions, statuses) across the points. */
export function keys(points, field) {
  const seen = new Set();
  for (const p of points) for (const k of Object.keys(p[field] || {})) seen.add(k);
  return [...seen].sort();
}
