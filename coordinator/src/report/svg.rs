//! Line charts as inline SVG: no script, no library, nothing fetched — a report opens offline
//! and a hostile label can only ever be text.

use std::fmt::Write as _;

/// Points per line at most: a long run is bucketed (each bucket keeps its largest value, so
/// a spike survives) to keep the page small.
pub const MAX_POINTS: usize = 600;

const W: f64 = 760.0;
const H: f64 = 220.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 28.0;
const BOTTOM: f64 = 28.0;

/// Text made safe for HTML and SVG.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// One line: its name, its CSS class (colour, dashes) and its values, one a second.
pub struct Line<'a> {
    pub name: &'a str,
    pub class: &'a str,
    pub values: Vec<f64>,
}

/// The largest value of each of at most [`MAX_POINTS`] buckets, with the bucket's first index.
pub fn downsample(values: &[f64]) -> Vec<(usize, f64)> {
    if values.len() <= MAX_POINTS {
        return values.iter().copied().enumerate().collect();
    }
    let per = values.len().div_ceil(MAX_POINTS);
    values
        .chunks(per)
        .enumerate()
        .map(|(i, c)| {
            let max = c.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            (i * per, if max.is_finite() { max } else { 0.0 })
        })
        .collect()
}

fn nice_max(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let mag = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if v <= m * mag {
            return m * mag;
        }
    }
    10.0 * mag
}

fn fmt_num(v: f64) -> String {
    if v >= 10.0 {
        format!("{:.0}", v)
    } else {
        format!("{:.2}", v)
    }
}

/// A chart of `lines` over `seconds` seconds (the x axis, from 0), `unit` on the y axis.
/// Five horizontal grid lines from 0 to `ymax`, each with its value; `y` places a value.
fn grid(s: &mut String, ymax: f64, y: impl Fn(f64) -> f64) {
    for k in 0..=4 {
        let v = ymax * f64::from(k) / 4.0;
        let yy = y(v);
        let _ = write!(
            s,
            r#"<line class="grid" x1="{LEFT}" x2="{x2}" y1="{yy:.1}" y2="{yy:.1}"/><text class="tick" x="{tx}" y="{ty:.1}" text-anchor="end">{}</text>"#,
            esc(&fmt_num(v)),
            x2 = W - RIGHT,
            tx = LEFT - 6.0,
            ty = yy + 4.0
        );
    }
}

/// The latency distribution of one set of stats: a bar per point of its ladder (min, p50, p90,
/// p95, p99, max, in ms), and the baseline's beside each when given. From the merged
/// histograms' percentiles in `summary.json`.
pub fn ladder(title: &str, this: &[(&str, f64)], base: Option<&[(&str, f64)]>) -> String {
    let ymax = nice_max(
        this.iter()
            .chain(base.unwrap_or_default())
            .map(|(_, v)| *v)
            .filter(|v| v.is_finite())
            .fold(0.0, f64::max),
    );
    let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
    let slot = pw / this.len().max(1) as f64;
    let bar = if base.is_some() {
        slot * 0.36
    } else {
        slot * 0.6
    };
    let y = |v: f64| TOP + ph * (1.0 - (v.max(0.0) / ymax).min(1.0));
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<figure><svg class="chart ladder" viewBox="0 0 {W} {H}" role="img" aria-label="{t}"><title>{t}</title><text class="title" x="{LEFT}" y="16">{t}</text>"#,
        t = esc(title)
    );
    grid(&mut s, ymax, y);
    for (i, (name, v)) in this.iter().enumerate() {
        let x0 =
            LEFT + slot * i as f64 + (slot - bar * if base.is_some() { 2.0 } else { 1.0 }) / 2.0;
        let mut put = |x: f64, v: f64, class: &str, who: &str| {
            let top = y(v);
            let _ = write!(
                s,
                r#"<rect class="{class}" x="{x:.1}" y="{top:.1}" width="{bar:.1}" height="{h:.1}"><title>{} {}: {} ms</title></rect>"#,
                esc(who),
                esc(name),
                esc(&fmt_num(v)),
                h = (TOP + ph - top).max(0.0)
            );
        };
        put(x0, *v, "bar", "this run");
        if let Some((_, b)) = base.and_then(|b| b.get(i)) {
            put(x0 + bar, *b, "bar base", "baseline");
        }
        let _ = write!(
            s,
            r#"<text class="tick" x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            LEFT + slot * (i as f64 + 0.5),
            H - 8.0,
            esc(name)
        );
    }
    s.push_str("</svg><figcaption>ms");
    if base.is_some() {
        s.push_str(r#" · <span class="key base">baseline</span>"#);
    }
    s.push_str("</figcaption></figure>");
    s
}

pub fn chart(title: &str, unit: &str, seconds: usize, lines: &[Line<'_>]) -> String {
    let ymax = nice_max(
        lines
            .iter()
            .flat_map(|l| l.values.iter().copied())
            .filter(|v| v.is_finite())
            .fold(0.0, f64::max),
    );
    let xspan = seconds.saturating_sub(1).max(1) as f64;
    let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
    let x = |i: usize| LEFT + pw * (i as f64 / xspan);
    let y = |v: f64| TOP + ph * (1.0 - (v.max(0.0) / ymax).min(1.0));
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<figure><svg class="chart" viewBox="0 0 {W} {H}" role="img" aria-label="{t}"><title>{t}</title>"#,
        t = esc(title)
    );
    let _ = write!(
        s,
        r#"<text class="title" x="{LEFT}" y="16">{}</text>"#,
        esc(title)
    );
    grid(&mut s, ymax, y);
    let _ = write!(
        s,
        r#"<text class="tick" x="{LEFT}" y="{by}">0 s</text><text class="tick" x="{ex}" y="{by}" text-anchor="end">{seconds} s</text><text class="tick" x="4" y="{uy}">{}</text>"#,
        esc(unit),
        by = H - 8.0,
        ex = W - RIGHT,
        uy = TOP - 8.0
    );
    for l in lines {
        let pts: Vec<String> = downsample(&l.values)
            .into_iter()
            .map(|(i, v)| format!("{:.1},{:.1}", x(i), y(v)))
            .collect();
        let _ = write!(
            s,
            r#"<polyline class="{}" points="{}"><title>{}</title></polyline>"#,
            esc(l.class),
            pts.join(" "),
            esc(l.name)
        );
    }
    s.push_str("</svg><figcaption>");
    for l in lines {
        let _ = write!(
            s,
            r#"<span class="key {}">{}</span> "#,
            esc(l.class),
            esc(l.name)
        );
    }
    s.push_str("</figcaption></figure>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_series_is_bucketed_keeping_each_buckets_peak() {
        let mut v = vec![1.0; 3600];
        v[1234] = 99.0;
        let d = downsample(&v);
        assert!(d.len() <= MAX_POINTS);
        assert!(d.iter().any(|(_, y)| *y == 99.0), "the spike survives");
        assert_eq!(downsample(&[1.0, 2.0]), vec![(0, 1.0), (1, 2.0)]);
    }

    #[test]
    fn text_in_a_chart_is_escaped() {
        let c = chart(
            "<script>alert(1)</script>",
            "ms",
            3,
            &[Line {
                name: "\"><img src=x onerror=alert(1)>",
                class: "p95",
                values: vec![1.0, 2.0, 3.0],
            }],
        );
        assert!(!c.contains("<script>") && !c.contains("<img"), "{c}");
        assert!(c.contains("&lt;script&gt;"));
        assert_eq!(c.matches("<polyline").count(), 1);
    }
}
