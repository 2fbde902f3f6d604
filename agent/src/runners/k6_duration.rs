//! Durations as k6 reads them (Go's `time.ParseDuration`, or a number of milliseconds).

use serde_json::Value;

/// A k6 duration: a number of milliseconds, or Go's duration syntax (`1m30s`, `1.5s`, `500ms`,
/// `2h`), in milliseconds (rounded up, so a sub-millisecond duration is not 0).
pub(super) fn ms(v: &Value, at: &str, errs: &mut Vec<String>) -> Option<u64> {
    let r = match v {
        Value::Number(n) => n
            .as_f64()
            .filter(|f| f.is_finite() && *f >= 0.0 && *f < 1e15)
            .map(|f| f.ceil() as u64)
            .ok_or_else(|| format!("{n} is not a duration")),
        Value::String(s) => go_duration_ms(s),
        other => Err(format!("{other} is not a duration")),
    };
    r.map_err(|e| errs.push(format!("{at}: {e}"))).ok()
}

/// Go's `time.ParseDuration`, as k6 reads durations, without a sign.
pub fn go_duration_ms(s: &str) -> Result<u64, String> {
    let bad = || format!("{s:?} is not a duration (e.g. 30s, 1m30s, 500ms)");
    let t = s.trim();
    if t == "0" {
        return Ok(0);
    }
    if t.is_empty() || t.len() > 64 {
        return Err(bad());
    }
    let mut total_us: f64 = 0.0;
    let mut rest = t;
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let num: f64 = rest[..n].parse().map_err(|_| bad())?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let per_us = match &rest[..u] {
            "ns" => 0.001,
            "us" | "µs" | "μs" => 1.0,
            "ms" => 1_000.0,
            "s" => 1_000_000.0,
            "m" => 60_000_000.0,
            "h" => 3_600_000_000.0,
            _ => return Err(bad()),
        };
        total_us += num * per_us;
        rest = &rest[u..];
    }
    if !total_us.is_finite() || total_us >= 1e18 {
        return Err(bad());
    }
    Ok((total_us / 1000.0).ceil() as u64)
}
