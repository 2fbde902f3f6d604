//! `report.html`: one self-contained page for a run — everything `summary.json` holds, the
//! per-second charts (inline SVG, `svg.rs`), per label and per region, and with a baseline run
//! the overlays and a delta table. No script and nothing fetched: it opens offline, from a
//! mail attachment or an S3 link, and every text a spec or a target put in it is escaped.
//!
//! Pure: it takes the documents a run folder holds (`summary.json`, `timeseries.json`) as JSON.

pub mod svg;

use std::fmt::Write as _;

use serde_json::Value;
use svg::{chart, esc, Line};

/// Labels charted one by one at most (the rest are in the tables): keeps the page small.
pub const MAX_LABEL_CHARTS: usize = 12;

const STYLE: &str = "body{font:14px/1.45 system-ui,sans-serif;margin:0 auto;max-width:980px;padding:16px;color:#1d2433}\
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #dde}\
table{border-collapse:collapse;margin:6px 0}td,th{padding:3px 10px;border-bottom:1px solid #eef;text-align:right}\
td:first-child,th:first-child{text-align:left}.badge{display:inline-block;padding:2px 10px;border-radius:10px;color:#fff;font-weight:600}\
.passed{background:#1f883d}.failed{background:#cf222e}.muted{color:#667}figure{margin:8px 0}figcaption{font-size:12px}\
svg.chart{width:100%;height:auto;background:#fbfcfe;border:1px solid #e4e8f0}.grid{stroke:#e4e8f0}.tick,.title{font-size:11px;fill:#556}\
.title{font-weight:600}polyline{fill:none;stroke-width:1.6}.key::before{content:'\\25A0 '}\
.rps{stroke:#0969da;color:#0969da}.p50{stroke:#1f883d;color:#1f883d}.p95{stroke:#bf8700;color:#bf8700}\
.p99{stroke:#cf222e;color:#cf222e}.errors{stroke:#cf222e;color:#cf222e}.vus{stroke:#8250df;color:#8250df}\
.base{stroke:#8c959f;color:#8c959f;stroke-dasharray:4 3}rect.bar{fill:#0969da}rect.bar.base{fill:#8c959f;stroke:none}.worse{color:#cf222e}.better{color:#1f883d}";

fn num(v: &Value, p: &str) -> f64 {
    v.pointer(p).and_then(Value::as_f64).unwrap_or(0.0)
}

fn text(v: &Value, p: &str) -> String {
    match v.pointer(p) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// One value a second from the series, 0 for seconds no batch reported.
fn per_second(series: &[Value], pointer: &str) -> Vec<f64> {
    let Some(first) = series
        .first()
        .and_then(|r| r.get("second"))
        .and_then(Value::as_u64)
    else {
        return Vec::new();
    };
    let last = series
        .last()
        .and_then(|r| r.get("second"))
        .and_then(Value::as_u64)
        .unwrap_or(first);
    // Bounded: a series is at most the run's length, itself capped by the spec limits.
    let len = usize::try_from(last.saturating_sub(first) + 1)
        .unwrap_or(0)
        .min(7 * 86_400);
    let mut out = vec![0.0; len];
    for r in series {
        let Some(s) = r.get("second").and_then(Value::as_u64) else {
            continue;
        };
        if let Some(slot) = usize::try_from(s - first).ok().and_then(|i| out.get_mut(i)) {
            *slot = r.pointer(pointer).and_then(Value::as_f64).unwrap_or(0.0);
        }
    }
    out
}

fn errors_per_second(series: &[Value], stats: &str) -> Vec<f64> {
    per_second(series, &format!("{stats}/errors"))
}

fn stats_row(name: &str, s: &Value) -> String {
    let req = num(s, "/requests");
    let err = num(s, "/errors");
    format!(
        "<tr><td>{}</td><td>{:.0}</td><td>{:.0}</td><td>{:.2}%</td><td>{:.1}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td></tr>",
        esc(name),
        req,
        err,
        if req > 0.0 { 100.0 * err / req } else { 0.0 },
        num(s, "/rps"),
        num(s, "/latency_ms/p50"),
        num(s, "/latency_ms/p90"),
        num(s, "/latency_ms/p95"),
        num(s, "/latency_ms/p99"),
        num(s, "/latency_ms/max"),
    )
}

const STATS_HEAD: &str = "<tr><th></th><th>requests</th><th>errors</th><th>error rate</th><th>rps</th><th>p50 ms</th><th>p90 ms</th><th>p95 ms</th><th>p99 ms</th><th>max ms</th></tr>";

/// `this` against `base`: the change in %, coloured by whether it is worse (`higher_is_worse`).
fn delta(this: f64, base: f64, higher_is_worse: bool) -> String {
    if base == 0.0 {
        return "<td class=\"muted\">—</td>".into();
    }
    let pct = (this - base) / base * 100.0;
    let worse = if higher_is_worse {
        pct > 0.0
    } else {
        pct < 0.0
    };
    let class = if pct.abs() < 0.05 {
        "muted"
    } else if worse {
        "worse"
    } else {
        "better"
    };
    format!("<td class=\"{class}\">{pct:+.1}%</td>")
}

fn delta_row(name: &str, this: &Value, base: &Value) -> String {
    let rate = |s: &Value| {
        let r = num(s, "/requests");
        if r > 0.0 {
            num(s, "/errors") / r
        } else {
            0.0
        }
    };
    format!(
        "<tr><td>{}</td>{}{}{}{}{}</tr>",
        esc(name),
        delta(num(this, "/rps"), num(base, "/rps"), false),
        delta(
            num(this, "/latency_ms/p50"),
            num(base, "/latency_ms/p50"),
            true
        ),
        delta(
            num(this, "/latency_ms/p95"),
            num(base, "/latency_ms/p95"),
            true
        ),
        delta(
            num(this, "/latency_ms/p99"),
            num(base, "/latency_ms/p99"),
            true
        ),
        delta(rate(this), rate(base), true),
    )
}

/// A run as read from its folder.
pub struct RunDocs<'a> {
    pub summary: &'a Value,
    pub series: &'a [Value],
}

/// The report of `run`, against `baseline` if given.
pub fn render(run: &RunDocs<'_>, baseline: Option<&RunDocs<'_>>) -> String {
    let s = run.summary;
    let verdict = text(s, "/verdict");
    let mut h = String::with_capacity(64 << 10);
    let _ = write!(
        h,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\"><title>herd · {} · {}</title><style>{STYLE}</style></head><body>",
        esc(&text(s, "/spec")),
        esc(&text(s, "/run"))
    );
    let _ = write!(
        h,
        "<h1>{} <span class=\"badge {}\">{}</span></h1><p class=\"muted\">run {} · {} · {:.1} s · {} agent(s), {} lost{}</p>",
        esc(&text(s, "/spec")),
        if verdict == "passed" { "passed" } else { "failed" },
        esc(&verdict),
        esc(&text(s, "/run")),
        esc(&text(s, "/state")),
        num(s, "/duration_s"),
        s.get("agents").and_then(Value::as_array).map_or(0, Vec::len),
        num(s, "/agents_lost"),
        match text(s, "/reason") {
            r if r.is_empty() => String::new(),
            r => format!(" · {}", esc(&r)),
        }
    );
    // Thresholds.
    if let Some(ts) = s
        .get("thresholds")
        .and_then(Value::as_array)
        .filter(|t| !t.is_empty())
    {
        h.push_str("<h2>Thresholds</h2><table><tr><th>threshold</th><th>label</th><th>observed</th><th>limit</th><th></th><th>why</th></tr>");
        for t in ts {
            let ok = t.get("passed").and_then(Value::as_bool).unwrap_or(false);
            let limit = match (
                text(t, "/limit_display"),
                t.get("limit").and_then(Value::as_f64),
            ) {
                (d, _) if !d.is_empty() => esc(&d),
                (_, Some(l)) => format!("{l:.3}"),
                (_, None) => String::new(),
            };
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{limit}</td><td><span class=\"badge {}\">{}</span></td><td style=\"text-align:left\">{}</td></tr>",
                esc(&text(t, "/expr")),
                esc(&text(t, "/label")),
                match text(t, "/observed_display") {
                    d if d.is_empty() => format!("{:.3}", num(t, "/observed")),
                    d => esc(&d),
                },
                if ok { "passed" } else { "failed" },
                if ok { "passed" } else { "failed" },
                esc(&text(t, "/reason")),
            );
        }
        h.push_str("</table>");
    }
    // Checks, each by name.
    if let Some(cs) = s
        .get("checks")
        .and_then(Value::as_array)
        .filter(|c| !c.is_empty())
    {
        h.push_str("<h2>Checks</h2><table><tr><th>label</th><th>check</th><th>passed</th><th>failed</th><th></th></tr>");
        for c in cs {
            let failed = num(c, "/failed");
            let _ = write!(
                h,
                "<tr><td>{}</td><td style=\"text-align:left\">{}</td><td>{:.0}</td><td>{failed:.0}</td><td><span class=\"badge {}\">{}</span></td></tr>",
                esc(&text(c, "/label")),
                esc(&text(c, "/name")),
                num(c, "/passed"),
                if failed > 0.0 { "failed" } else { "passed" },
                if failed > 0.0 { "failing" } else { "passing" },
            );
        }
        h.push_str("</table>");
    }
    // Totals and labels.
    h.push_str("<h2>Totals</h2><table>");
    h.push_str(STATS_HEAD);
    h.push_str(&stats_row("all requests", &s["total"]));
    let labels: Vec<(&String, &Value)> = s
        .get("labels")
        .and_then(Value::as_object)
        .map(|m| m.iter().collect())
        .unwrap_or_default();
    for (name, l) in &labels {
        h.push_str(&stats_row(name, l));
    }
    h.push_str("</table>");
    if let Some(status) = s.pointer("/total/status").and_then(Value::as_object) {
        h.push_str("<p>status codes: ");
        for (code, n) in status {
            let _ = write!(h, "<b>{}</b> {} · ", esc(code), esc(&n.to_string()));
        }
        h.push_str("</p>");
    }
    // The latency distribution, all requests and each label (charted ones), against the
    // baseline's when there is one.
    h.push_str("<h2>Latency distribution</h2>");
    let ladder_of = |stats: &Value| -> Vec<(&'static str, f64)> {
        ["min", "p50", "p90", "p95", "p99", "max"]
            .into_iter()
            .map(|k| (k, num(stats, &format!("/latency_ms/{k}"))))
            .collect()
    };
    let base_summary = baseline.map(|b| b.summary);
    let all = ladder_of(&s["total"]);
    let base_all = base_summary.map(|b| ladder_of(&b["total"]));
    h.push_str(&svg::ladder("All requests", &all, base_all.as_deref()));
    for (name, stats) in labels.iter().take(MAX_LABEL_CHARTS) {
        let this = ladder_of(stats);
        let base = base_summary
            .and_then(|b| b.get("labels"))
            .and_then(|l| l.get(name.as_str()))
            .map(&ladder_of);
        h.push_str(&svg::ladder(name, &this, base.as_deref()));
    }
    // Charts.
    let series = run.series;
    let seconds = per_second(series, "/total/requests").len();
    h.push_str("<h2>Per second</h2>");
    let base_series = baseline.map(|b| b.series).filter(|s| !s.is_empty());
    let mut rps = vec![Line {
        name: "requests/s",
        class: "rps",
        values: per_second(series, "/total/requests"),
    }];
    if let Some(bs) = base_series {
        rps.push(Line {
            name: "baseline requests/s",
            class: "base",
            values: per_second(bs, "/total/requests"),
        });
    }
    h.push_str(&chart("Requests per second", "req/s", seconds, &rps));
    let mut lat = vec![
        Line {
            name: "p50",
            class: "p50",
            values: per_second(series, "/total/p50_ms"),
        },
        Line {
            name: "p95",
            class: "p95",
            values: per_second(series, "/total/p95_ms"),
        },
        Line {
            name: "p99",
            class: "p99",
            values: per_second(series, "/total/p99_ms"),
        },
    ];
    if let Some(bs) = base_series {
        lat.push(Line {
            name: "baseline p95",
            class: "base",
            values: per_second(bs, "/total/p95_ms"),
        });
    }
    h.push_str(&chart("Latency", "ms", seconds, &lat));
    h.push_str(&chart(
        "Errors per second",
        "err/s",
        seconds,
        &[Line {
            name: "errors/s",
            class: "errors",
            values: errors_per_second(series, "/total"),
        }],
    ));
    h.push_str(&chart(
        "Virtual users",
        "VUs",
        seconds,
        &[Line {
            name: "VUs",
            class: "vus",
            values: per_second(series, "/vus"),
        }],
    ));
    for (name, _) in labels.iter().take(MAX_LABEL_CHARTS) {
        let key = name.replace('~', "~0").replace('/', "~1");
        let p = |q: &str| per_second(series, &format!("/labels/{key}/{q}"));
        h.push_str(&chart(
            &format!("{name}: latency"),
            "ms",
            seconds,
            &[
                Line {
                    name: "p50",
                    class: "p50",
                    values: p("p50_ms"),
                },
                Line {
                    name: "p95",
                    class: "p95",
                    values: p("p95_ms"),
                },
                Line {
                    name: "p99",
                    class: "p99",
                    values: p("p99_ms"),
                },
            ],
        ));
    }
    // Against the baseline.
    if let Some(b) = baseline {
        let _ = write!(
            h,
            "<h2>Against the baseline</h2><p class=\"muted\">baseline run {}</p><table><tr><th></th><th>rps</th><th>p50</th><th>p95</th><th>p99</th><th>error rate</th></tr>",
            esc(&text(b.summary, "/run"))
        );
        h.push_str(&delta_row("all requests", &s["total"], &b.summary["total"]));
        for (name, l) in &labels {
            if let Some(bl) = b.summary.get("labels").and_then(|m| m.get(name.as_str())) {
                h.push_str(&delta_row(name, l, bl));
            }
        }
        h.push_str("</table>");
    }
    // Regions and agents.
    if let Some(regions) = s
        .get("regions")
        .and_then(Value::as_object)
        .filter(|r| r.len() > 1)
    {
        h.push_str("<h2>Regions</h2><table>");
        h.push_str(STATS_HEAD);
        for (name, r) in regions {
            h.push_str(&stats_row(name, r));
        }
        h.push_str("</table>");
    }
    if let Some(agents) = s.get("agents").and_then(Value::as_array) {
        h.push_str("<h2>Agents</h2><table><tr><th>agent</th><th>region</th><th>state</th><th>batches</th><th>rejected</th><th>clock offset ms</th><th>reason</th></tr>");
        for a in agents {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.0}</td><td>{:.0}</td><td>{:.0}</td><td>{}</td></tr>",
                esc(&text(a, "/index")),
                esc(&text(a, "/region")),
                esc(&text(a, "/state")),
                num(a, "/batches_received"),
                num(a, "/rejected_batches"),
                num(a, "/clock_offset_ms"),
                esc(&text(a, "/reason"))
            );
        }
        h.push_str("</table>");
    }
    h.push_str("<p class=\"muted\">herd report · everything on this page is in the run's summary.json and timeseries.json</p></body></html>");
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn docs(requests_per_s: u64, p95: f64, seconds: u64) -> (Value, Vec<Value>) {
        let series: Vec<Value> = (0..seconds)
            .map(|i| {
                json!({"second": 1_000 + i, "vus": 4, "total": {"requests": requests_per_s, "errors": 0,
                       "p50_ms": 1.0, "p95_ms": p95, "p99_ms": p95 * 2.0},
                       "labels": {"GET /<script>": {"requests": requests_per_s, "p50_ms": 1.0, "p95_ms": p95, "p99_ms": p95}}})
            })
            .collect();
        let summary = json!({"run": "r-1", "spec": "shop", "state": "completed", "verdict": "passed",
            "duration_s": seconds, "agents_lost": 0,
            "total": {"requests": requests_per_s * seconds, "errors": 0, "rps": requests_per_s,
                      "latency_ms": {"p50": 1.0, "p95": p95, "p99": p95 * 2.0}, "status": {"200": requests_per_s * seconds}},
            "labels": {"GET /<script>": {"requests": requests_per_s * seconds, "rps": requests_per_s, "latency_ms": {"p95": p95}}},
            "thresholds": [{"expr": "p95 < 500ms", "label": null, "observed": p95, "passed": true}],
            "checks": [{"label": "GET /<script>", "name": "body contains \"<b>\"", "passed": 3, "failed": 1}],
            "agents": [{"index": 0, "region": "local", "state": "finished", "batches_received": 3}]});
        (summary, series)
    }

    #[test]
    fn a_report_holds_the_summary_charts_and_escapes_what_the_spec_wrote() {
        let (s, series) = docs(100, 12.0, 30);
        let html = render(
            &RunDocs {
                summary: &s,
                series: &series,
            },
            None,
        );
        assert!(html.starts_with("<!doctype html>"));
        assert!(html.contains("p95 &lt; 500ms"));
        assert!(
            html.contains("<td style=\"text-align:left\">body contains &quot;&lt;b&gt;&quot;</td><td>3</td><td>1</td>"),
            "each check by name, escaped"
        );
        assert!(
            !html.contains("<script"),
            "no script at all, and labels escaped"
        );
        assert!(
            !html.contains("http://") && !html.contains("https://"),
            "nothing fetched"
        );
        // The distribution (all, and the one label), then requests, latency, errors, VUs, and
        // the one label's latency.
        assert_eq!(html.matches("<svg").count(), 7);
        assert_eq!(html.matches("<svg class=\"chart ladder\"").count(), 2);
        assert_eq!(
            html.matches("<rect class=\"bar\"").count(),
            12,
            "six points each"
        );
        let rps_line = html.split("class=\"rps\" points=\"").nth(1).unwrap();
        let points = rps_line.split('"').next().unwrap().split(' ').count();
        assert_eq!(points, 30, "one point a second");
    }

    #[test]
    fn against_a_baseline_the_deltas_say_what_got_worse() {
        let (s, series) = docs(100, 12.0, 10);
        let (b, bseries) = docs(100, 10.0, 10);
        let html = render(
            &RunDocs {
                summary: &s,
                series: &series,
            },
            Some(&RunDocs {
                summary: &b,
                series: &bseries,
            }),
        );
        assert!(html.contains("Against the baseline"));
        assert!(
            html.contains("<td class=\"worse\">+20.0%</td>"),
            "p95 12 against 10"
        );
        assert!(html.contains("baseline p95"));
    }

    #[test]
    fn an_hour_long_run_stays_under_300_kb() {
        let (s, series) = docs(1000, 20.0, 3600);
        let html = render(
            &RunDocs {
                summary: &s,
                series: &series,
            },
            Some(&RunDocs {
                summary: &s,
                series: &series,
            }),
        );
        assert!(html.len() < 300 << 10, "{} bytes", html.len());
    }
}
