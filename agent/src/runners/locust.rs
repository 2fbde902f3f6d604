//! Locust: the agent adds a small listener module next to the user's locustfile that writes
//! one JSON line per request (Locust's `request` event) — not the cumulative
//! `_stats_history.csv`, whose percentiles are cumulative. Labels are the request names,
//! status the HTTP status (0 without a response), failures Locust's own verdict.

use serde::Deserialize;

/// The listener module, written beside the user's locustfile.
pub const LISTENER: &str = include_str!("locust_listener.py");

#[derive(Deserialize)]
struct Line {
    t: f64,
    #[serde(default)]
    label: Option<String>,
    #[serde(default)]
    status: u16,
    #[serde(default)]
    ms: f64,
    #[serde(default)]
    bytes: u64,
    #[serde(default)]
    failed: bool,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    users: Option<u64>,
}

/// One listener line → runner events.
pub fn events(line: &str) -> Result<Vec<super::Event>, String> {
    let l: Line =
        serde_json::from_str(line.trim()).map_err(|e| format!("not a herd Locust line: {e}"))?;
    if let Some(u) = l.users {
        return Ok(vec![super::Event::Vus(u)]);
    }
    let Some(label) = l.label else {
        return Err("a Locust line without a label".into());
    };
    let at_ms = (l.t * 1000.0).max(0.0) as u64;
    let error = (l.status == 0 && l.failed).then(|| match l.error.as_deref() {
        Some(e) if e.contains("Timeout") => crate::http::ErrorKind::Timeout,
        Some(e) if e.contains("SSL") || e.contains("Tls") => crate::http::ErrorKind::Tls,
        _ => crate::http::ErrorKind::Connect,
    });
    Ok(vec![super::Event::Request {
        at_ms,
        label,
        status: l.status,
        failed: l.failed,
        error,
        latency_us: (l.ms.max(0.0) * 1000.0).round() as u64,
        bytes_in: l.bytes,
        bytes_out: 0,
    }])
}

/// The Locust command for this agent's share (users ramped up, then held: see
/// [`super::users_shape`]), or `None` when the share has no users.
pub fn command(
    spec: &messages::spec::Spec,
    share: &messages::split::Share,
    program: &std::path::Path,
    dir: &std::path::Path,
    script_file: &str,
) -> Result<Option<super::Command>, super::RunnerError> {
    let shape = super::users_shape(messages::spec::Engine::Locust, &share.executor)?;
    let (vus, duration_ms) = (shape.users, shape.total_ms);
    // Locust spawns `-r` users per second: the whole share over the ramp, or at once.
    let rate = if shape.ramp_ms == 0 {
        vus as f64
    } else {
        (vus as f64 * 1000.0 / shape.ramp_ms as f64).max(0.01)
    };
    if vus == 0 {
        return Ok(None);
    }
    std::fs::write(dir.join("herd_listener.py"), LISTENER)
        .map_err(|e| super::RunnerError::Setup(format!("writing the Locust listener: {e}")))?;
    let output = dir.join("locust-out.jsonl");
    let secs = duration_ms.div_ceil(1000).max(1);
    let mut args: Vec<String> = vec![
        "-f".into(),
        format!("herd_listener.py,{script_file}"),
        "--headless".into(),
        "--only-summary".into(),
        "-u".into(),
        vus.to_string(),
        "-r".into(),
        format!("{rate}"),
        "-t".into(),
        format!("{secs}s"),
        "--stop-timeout".into(),
        format!("{}", spec.load.graceful_stop_ms.div_ceil(1000).max(1)),
        "--host".into(),
        spec.target.url.clone(),
        "--exit-code-on-error".into(),
        "0".into(),
    ];
    args.extend(
        spec.runner
            .as_ref()
            .map(|r| r.args.clone())
            .unwrap_or_default(),
    );
    Ok(Some(super::Command {
        program: program.to_path_buf(),
        args,
        env: vec![
            ("HERD_LOCUST_OUT".into(), output.display().to_string()),
            ("HERD_TARGET".into(), spec.target.url.clone()),
            ("HERD_AGENT".into(), share.index.to_string()),
            ("HERD_AGENTS".into(), share.count.to_string()),
        ],
        output,
        cwd: dir.to_path_buf(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listener_lines_become_events() {
        let e = events(r#"{"t": 1795649000.25, "label": "item", "status": 200, "ms": 1.5, "bytes": 70, "failed": false, "error": null}"#).expect("line");
        match &e[0] {
            super::super::Event::Request {
                at_ms,
                label,
                status,
                latency_us,
                bytes_in,
                ..
            } => {
                assert_eq!(
                    (*at_ms, label.as_str(), *status, *latency_us, *bytes_in),
                    (1795649000250, "item", 200, 1500, 70)
                );
            }
            _ => panic!("not a request"),
        }
        assert!(matches!(
            events(r#"{"t": 1.0, "users": 3}"#).expect("users")[0],
            super::super::Event::Vus(3)
        ));
        assert!(events("garbage").is_err());
    }
}
