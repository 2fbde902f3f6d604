//! Locust: the agent adds a small listener module next to the user's locustfile that writes
//! one JSON line per request (Locust's `request` event) — not the cumulative
//! `_stats_history.csv`, whose percentiles are cumulative. Labels are the request names,
//! status the HTTP status (0 without a response), failures Locust's own verdict.

use messages::spec::Engine;
use serde::Deserialize;

use super::{
    users_shape, Command, Entry, Event, Launch, LineError, OutputReader, Runner, RunnerError,
};

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

/// The first class in `src` that subclasses Locust's `LoadTestShape`: (line, class name).
/// Locust runs such a class instead of `-u/-r/-t`, on every agent in full — the fleet would
/// make N times the shape's load, and run for a length the coordinator cannot know — so herd
/// refuses it where the spec is read (`check_plan`).
pub fn load_test_shape(src: &str) -> Option<(usize, String)> {
    let re = regex::Regex::new(r"(?m)^[ \t]*class[ \t]+([A-Za-z_][A-Za-z0-9_]*)[ \t]*\(([^)]*)\)")
        .ok()?;
    let found = re.captures_iter(src).find_map(|c| {
        let bases = c.get(2)?.as_str();
        let shape = bases
            .split(',')
            .any(|b| b.trim().rsplit('.').next() == Some("LoadTestShape"));
        let at = c.get(0)?.start();
        shape.then(|| (src[..at].matches('\n').count() + 1, c[1].to_string()))
    });
    found
}

/// A listener line herd cannot read.
#[derive(Debug, thiserror::Error)]
pub enum LocustParseError {
    #[error("not a herd Locust line: {0}")]
    Json(serde_json::Error),
    #[error("a Locust line without a label")]
    NoLabel,
}

/// One listener line → runner events.
pub fn events(line: &str) -> Result<Vec<Event>, LocustParseError> {
    let l: Line = serde_json::from_str(line.trim()).map_err(LocustParseError::Json)?;
    if let Some(u) = l.users {
        return Ok(vec![Event::Vus(u)]);
    }
    let Some(label) = l.label else {
        return Err(LocustParseError::NoLabel);
    };
    let at_ms = (l.t * 1000.0).max(0.0) as u64;
    let error = (l.status == 0 && l.failed).then(|| match l.error.as_deref() {
        Some(e) if e.contains("Timeout") => crate::http::ErrorKind::Timeout,
        Some(e) if e.contains("SSL") || e.contains("Tls") => crate::http::ErrorKind::Tls,
        _ => crate::http::ErrorKind::Connect,
    });
    Ok(vec![Event::Request {
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

/// Locust as a [`Runner`].
pub struct Locust;

impl Runner for Locust {
    fn tool(&self) -> &'static str {
        "locust"
    }

    fn path_var(&self) -> &'static str {
        "HERD_LOCUST"
    }

    fn install_hint(&self) -> &'static str {
        "pip install locust, or set HERD_LOCUST to its path"
    }

    fn entry(&self) -> Entry {
        Entry {
            preferred: Some("locustfile.py"),
            ext: ".py",
        }
    }

    /// Locust expresses only users ramped up, then held (see [`users_shape`]); its
    /// `--exit-code-on-error 0` leaves judging failed requests to herd.
    fn command(&self, l: &Launch<'_>) -> Result<Option<Command>, RunnerError> {
        let (spec, share, dir) = (l.spec, l.share, l.dir);
        let shape = users_shape(Engine::Locust, &share.executor)?;
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
            .map_err(|e| RunnerError::Setup(format!("writing the Locust listener: {e}")))?;
        let output = dir.join("locust-out.jsonl");
        let secs = duration_ms.div_ceil(1000).max(1);
        let mut args: Vec<String> = vec![
            "-f".into(),
            format!("herd_listener.py,{}", l.script_file),
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
        Ok(Some(Command {
            program: l.program.to_path_buf(),
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

    fn reader(&self) -> Box<dyn OutputReader> {
        Box::new(Reader)
    }
}

/// Each listener line is a whole sample: nothing to remember between lines.
struct Reader;

impl OutputReader for Reader {
    fn events(&mut self, line: &str) -> Result<Vec<Event>, LineError> {
        Ok(events(line)?)
    }
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

    #[test]
    fn errors_read_as_they_always_did() {
        assert_eq!(
            events(r#"{"t": 1.0}"#).expect_err("no label").to_string(),
            "a Locust line without a label"
        );
        let e = events("garbage").expect_err("not JSON").to_string();
        assert!(
            e.starts_with("not a herd Locust line: expected value"),
            "{e}"
        );
    }
}
