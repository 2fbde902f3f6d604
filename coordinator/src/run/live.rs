//! `LivePublisher`: every second, the fleet snapshot as JSON on `herd/runs/{run}/live` (schema:
//! `docs/schemas/live.schema.json`) and a line in the terminal.

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};

use actix::prelude::*;
use serde_json::json;
use transport::QoS;

use super::fold::{Row, RowStats};
use super::protocol::{LiveRow, Started};
use crate::bus::RunBus;

/// The most events a slow reader of a [`LiveTap`] may fall behind before it skips (and is told
/// so); a reader never holds up the run.
pub const TAP_BACKLOG: usize = 64;

/// What a run's in-process live feed carries: each second's snapshot, then its final result.
#[derive(Debug, Clone)]
pub enum LiveEvent {
    /// The live document (`docs/schemas/live.schema.json`), as published on MQTT.
    Snapshot(Arc<str>),
    /// The run's `RunCompleted`, as announced: the last event.
    Result(Arc<str>),
}

/// The in-process side of a run's live topic, for `herd serve`'s API (SSE streams, `/metrics`):
/// the same documents, without a broker round trip.
#[derive(Clone)]
pub struct LiveTap {
    tx: tokio::sync::broadcast::Sender<LiveEvent>,
    last: Arc<Mutex<Option<Arc<serde_json::Value>>>>,
}

impl Default for LiveTap {
    fn default() -> LiveTap {
        LiveTap {
            tx: tokio::sync::broadcast::channel(TAP_BACKLOG).0,
            last: Arc::default(),
        }
    }
}

impl LiveTap {
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<LiveEvent> {
        self.tx.subscribe()
    }

    /// The latest snapshot, if a second has been reported.
    pub fn last(&self) -> Option<Arc<serde_json::Value>> {
        self.last.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// `text` is `doc` as published: serialized once for the broker and every reader.
    fn snapshot(&self, doc: serde_json::Value, text: Arc<str>) {
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(doc));
        // No reader is not an error.
        let _ = self.tx.send(LiveEvent::Snapshot(text));
    }

    /// The run's result: the feed's last event.
    pub fn finish(&self, completed: Arc<str>) {
        let _ = self.tx.send(LiveEvent::Result(completed));
    }
}

pub struct LivePublisher {
    tap: Option<LiveTap>,
    bus: RunBus,
    run_id: String,
    planned_s: f64,
    agents: u32,
    started_ms: Option<u64>,
    tty: bool,
    quiet: bool,
    /// Open-model runs: each line says how many iterations could not start (no free VU).
    show_dropped: bool,
}

impl LivePublisher {
    pub fn showing_dropped(mut self, yes: bool) -> LivePublisher {
        self.show_dropped = yes;
        self
    }

    pub fn new(
        bus: RunBus,
        run_id: String,
        planned_s: f64,
        agents: u32,
        quiet: bool,
        tap: Option<LiveTap>,
    ) -> LivePublisher {
        LivePublisher {
            tap,
            bus,
            run_id,
            planned_s,
            agents,
            started_ms: None,
            tty: std::io::stdout().is_terminal(),
            quiet,
            show_dropped: false,
        }
    }
}

impl Actor for LivePublisher {
    type Context = Context<Self>;
}

impl Handler<Started> for LivePublisher {
    type Result = ();
    fn handle(&mut self, msg: Started, _ctx: &mut Context<Self>) {
        self.started_ms = Some(msg.at_ms);
    }
}

fn stats_json(s: &RowStats) -> serde_json::Value {
    json!({
        "requests": s.requests,
        "errors": s.errors,
        "latency_ms": { "p50": s.p50_ms, "p90": s.p90_ms, "p95": s.p95_ms, "p99": s.p99_ms, "max": s.max_ms },
    })
}

/// The live snapshot document (see `docs/schemas/live.schema.json`).
pub fn live_json(
    run_id: &str,
    row: &Row,
    elapsed_s: f64,
    planned_s: f64,
    agents_total: u32,
) -> serde_json::Value {
    let t = &row.total;
    let errors_by_status: serde_json::Map<String, serde_json::Value> = t
        .status
        .iter()
        .filter(|(code, _)| **code == 0 || **code >= 400)
        .map(|(code, n)| (code.to_string(), json!(n)))
        .collect();
    json!({
        "run": run_id,
        "second": row.second,
        "elapsed_s": elapsed_s,
        "planned_s": planned_s,
        "vus": row.vus,
        "rps": t.requests,
        "errors": t.errors,
        "error_rate": if t.requests > 0 { t.errors as f64 / t.requests as f64 } else { 0.0 },
        "errors_by_status": errors_by_status,
        "latency_ms": { "p50": t.p50_ms, "p90": t.p90_ms, "p95": t.p95_ms, "p99": t.p99_ms, "max": t.max_ms },
        "iterations": row.iterations,
        "dropped_iterations": row.dropped_iterations,
        "labels": row.labels.iter().map(|(k, v)| (k.clone(), stats_json(v))).collect::<serde_json::Map<_, _>>(),
        "regions": row.regions.iter().map(|(k, v)| (k.clone(), stats_json(v))).collect::<serde_json::Map<_, _>>(),
        "agents": { "reporting": row.agents, "total": agents_total },
    })
}

impl Handler<LiveRow> for LivePublisher {
    type Result = ();

    fn handle(&mut self, msg: LiveRow, _ctx: &mut Context<Self>) {
        let row = &msg.row;
        let elapsed_s = self
            .started_ms
            .map(|s| ((row.second + 1) * 1000).saturating_sub(s) as f64 / 1000.0)
            .unwrap_or(0.0);
        let doc = live_json(&self.run_id, row, elapsed_s, self.planned_s, self.agents);
        let text: Arc<str> = doc.to_string().into();
        self.bus.publish(
            messages::topics::live(&self.run_id),
            text.as_bytes().to_vec(),
            QoS::AtMostOnce,
            false,
        );
        if let Some(tap) = &self.tap {
            tap.snapshot(doc, text);
        }
        if self.quiet {
            return;
        }
        let t = &row.total;
        let err = if t.requests > 0 {
            100.0 * t.errors as f64 / t.requests as f64
        } else {
            0.0
        };
        let dropped = if self.show_dropped {
            format!("  dropped {:>6}", row.dropped_iterations)
        } else {
            String::new()
        };
        let line = format!(
            "{:>5.0}s/{:.0}s  vus {:>5}  rps {:>8}  p50 {:>8.2}ms  p95 {:>8.2}ms  p99 {:>8.2}ms  errors {:>5.2}%{dropped}  agents {}/{}",
            elapsed_s, self.planned_s, row.vus, t.requests, t.p50_ms, t.p95_ms, t.p99_ms, err, row.agents, self.agents
        );
        let mut out = std::io::stdout();
        if self.tty {
            // Bold elapsed time on a terminal; plain lines when piped or logged.
            let _ = writeln!(
                out,
                "\x1b[1m{}\x1b[0m{}",
                &line[..8.min(line.len())],
                &line[8.min(line.len())..]
            );
        } else {
            let _ = writeln!(out, "{line}");
        }
        let _ = out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn keys(v: &serde_json::Value) -> BTreeSet<String> {
        v.as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// The published document and docs/schemas/live.schema.json must not drift apart.
    #[test]
    fn live_json_matches_the_committed_schema() {
        let schema: serde_json::Value =
            serde_json::from_str(include_str!("../../../docs/schemas/live.schema.json")).unwrap();
        let mut total = messages::metrics::LabelStats {
            requests: 3,
            ..Default::default()
        };
        total.latency.record(1500).unwrap();
        let stats = RowStats::of(&total, 1.0);
        let row = Row {
            second: 1,
            total: stats.clone(),
            labels: [("GET /".to_string(), stats.clone())].into_iter().collect(),
            regions: [("eu-west-1".to_string(), stats)].into_iter().collect(),
            vus: 2,
            iterations: 3,
            dropped_iterations: 0,
            agents: 1,
        };
        let doc = live_json("r", &row, 1.0, 10.0, 2);
        let props = keys(&schema["properties"]);
        assert_eq!(keys(&doc), props);
        let required: BTreeSet<String> = schema["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        assert_eq!(required, props);
        assert_eq!(
            keys(&doc["latency_ms"]),
            keys(&schema["$defs"]["latency"]["properties"])
        );
        assert_eq!(
            keys(&doc["agents"]),
            keys(&schema["properties"]["agents"]["properties"])
        );
        let label_schema = &schema["properties"]["labels"]["additionalProperties"]["properties"];
        assert_eq!(keys(&doc["labels"]["GET /"]), keys(label_schema));
        assert_eq!(doc["latency_ms"]["max"], 1.5);
    }
}
