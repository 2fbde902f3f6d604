//! `herd submit`, `herd runs`, `herd show`, `herd cancel`: a client of `herd serve`'s API for
//! pipelines. `submit --wait` follows the run's live stream and exits as `herd run` would (0,
//! 99 on failed thresholds, 130 cancelled, 1 failed), so a CI step gates on it.

use std::io::Write as _;
use std::time::Duration;

use anyhow::{bail, Context as _};
use messages::outcome::{EndState, RunCompleted};
use serde_json::Value;

use crate::exit::Exit;

/// Where the API is and who calls it.
#[derive(Debug, Clone)]
pub struct Server {
    /// `http(s)://host:port`, with or without `/api/v1`.
    pub url: String,
    pub token: Option<String>,
    /// Print JSON documents instead of lines for people.
    pub json: bool,
}

/// Longest SSE event accepted (a snapshot of a spec with many labels is a few KiB).
const MAX_EVENT: usize = 4 << 20;
/// How often `--wait` reconnects to a stream that broke before the result, at most.
const RECONNECTS: u32 = 30;

impl Server {
    fn base(&self) -> String {
        let u = self.url.trim_end_matches('/');
        if u.ends_with("/api/v1") {
            u.to_string()
        } else {
            format!("{u}/api/v1")
        }
    }

    fn client(&self) -> anyhow::Result<reqwest::Client> {
        reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .context("making the HTTP client")
    }

    fn req(&self, c: &reqwest::Client, m: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let r = c.request(m, format!("{}{path}", self.base()));
        match &self.token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }
}

impl Server {
    /// One JSON call: `body` (JSON text) sent if given, the answer parsed, an error answer
    /// turned into one line saying `what` failed and why.
    async fn call(
        &self,
        c: &reqwest::Client,
        method: reqwest::Method,
        path: &str,
        body: Option<String>,
        what: &str,
    ) -> anyhow::Result<Value> {
        let mut r = self.req(c, method, path);
        if let Some(b) = body {
            r = r.header("content-type", "application/json").body(b);
        }
        let resp = r
            .send()
            .await
            .with_context(|| format!("reaching {}", self.base()))?;
        json_of(what, resp).await
    }
}

/// The API's error document as one line, or the status.
async fn failure(what: &str, r: reqwest::Response) -> anyhow::Error {
    let status = r.status();
    let body = r.text().await.unwrap_or_default();
    let msg = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| {
            let e = v.get("error")?;
            let mut m = e.get("message")?.as_str()?.to_string();
            if let Some(list) = e.get("errors").and_then(Value::as_array) {
                for l in list.iter().filter_map(Value::as_str) {
                    m.push_str("\n  ");
                    m.push_str(l);
                }
            }
            Some(m)
        })
        .unwrap_or(body);
    anyhow::anyhow!("{what}: HTTP {status}: {msg}")
}

async fn json_of(what: &str, r: reqwest::Response) -> anyhow::Result<Value> {
    if !r.status().is_success() {
        return Err(failure(what, r).await);
    }
    let text = r
        .text()
        .await
        .with_context(|| format!("{what}: reading the answer"))?;
    serde_json::from_str(&text).with_context(|| format!("{what}: the answer is not JSON"))
}

/// `herd submit SPEC`: starts a run; with `wait`, follows it to its end.
pub async fn submit(
    s: &Server,
    spec: &std::path::Path,
    wait: bool,
    idempotency_key: Option<String>,
) -> anyhow::Result<Exit> {
    let text =
        std::fs::read_to_string(spec).with_context(|| format!("reading {}", spec.display()))?;
    let c = s.client()?;
    // The files the spec names go with it (multipart), paths relative to the spec.
    let files = super::client_files::named_files(spec).await;
    let mut r = s.req(&c, reqwest::Method::POST, "/runs");
    r = if files.is_empty() {
        r.header("content-type", "application/yaml").body(text)
    } else {
        let mut form = reqwest::multipart::Form::new().text("spec", text);
        for (path, bytes) in files {
            form = form.part(
                "file",
                reqwest::multipart::Part::bytes(bytes).file_name(path),
            );
        }
        r.multipart(form)
    };
    if let Some(k) = idempotency_key {
        r = r.header("Idempotency-Key", k);
    }
    let resp = r
        .send()
        .await
        .with_context(|| format!("reaching {}", s.base()))?;
    if resp.status() == reqwest::StatusCode::UNPROCESSABLE_ENTITY {
        eprintln!(
            "herd submit: {}",
            failure(&spec.display().to_string(), resp).await
        );
        return Ok(Exit::Invalid);
    }
    let v = json_of("submitting the run", resp).await?;
    let Some(run_id) = v.get("run_id").and_then(Value::as_str).map(str::to_string) else {
        bail!("the server had seen this request before and rejected it then");
    };
    if s.json {
        println!("{v}");
    } else {
        eprintln!("herd submit: run {run_id}");
    }
    if !wait {
        if !s.json {
            println!("{run_id}");
        }
        return Ok(Exit::Ok);
    }
    follow(s, &c, &run_id).await
}

/// Follows `/runs/{id}/live` to the result, reconnecting (bounded) when the stream breaks.
async fn follow(s: &Server, c: &reqwest::Client, run_id: &str) -> anyhow::Result<Exit> {
    let mut attempts = 0;
    loop {
        match stream_once(s, c, run_id).await {
            Ok(Some(done)) => return Ok(done),
            Ok(None) | Err(_) if attempts < RECONNECTS => {
                attempts += 1;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Ok(None) => bail!("the live stream of run {run_id} kept ending before its result"),
            Err(e) => return Err(e),
        }
    }
}

/// One connection to the live stream: the run's exit once its result arrives, or None if the
/// stream ended first.
async fn stream_once(
    s: &Server,
    c: &reqwest::Client,
    run_id: &str,
) -> anyhow::Result<Option<Exit>> {
    let mut resp = s
        .req(c, reqwest::Method::GET, &format!("/runs/{run_id}/live"))
        .send()
        .await
        .with_context(|| format!("reaching {}", s.base()))?;
    if !resp.status().is_success() {
        return Err(failure("following the run", resp).await);
    }
    let mut buf: Vec<u8> = Vec::new();
    while let Some(chunk) = resp.chunk().await.context("reading the live stream")? {
        buf.extend_from_slice(&chunk);
        while let Some(end) = buf.windows(2).position(|w| w == b"\n\n") {
            let event: Vec<u8> = buf.drain(..end + 2).collect();
            if let Some(exit) = on_event(s, &String::from_utf8_lossy(&event))? {
                return Ok(Some(exit));
            }
        }
        if buf.len() > MAX_EVENT {
            bail!("the live stream sent an event over {MAX_EVENT} bytes");
        }
    }
    Ok(None)
}

fn on_event(s: &Server, event: &str) -> anyhow::Result<Option<Exit>> {
    let mut kind = "message";
    let mut data = String::new();
    for line in event.lines() {
        if let Some(k) = line.strip_prefix("event:") {
            kind = k.trim();
        } else if let Some(d) = line.strip_prefix("data:") {
            data.push_str(d.trim_start());
        }
    }
    match kind {
        "snapshot" => {
            if s.json {
                println!("{{\"snapshot\":{data}}}");
            } else if let Ok(v) = serde_json::from_str::<Value>(&data) {
                println!("{}", live_line(&v));
            }
            let _ = std::io::stdout().flush();
            Ok(None)
        }
        "lagged" => {
            eprintln!("herd submit: this stream fell behind and skipped {data}");
            Ok(None)
        }
        "result" => {
            let done: RunCompleted = serde_json::from_str(&data)
                .with_context(|| format!("the run's result is not a RunCompleted: {data}"))?;
            if s.json {
                println!("{{\"result\":{data}}}");
            } else {
                println!("{}", result_line(&done));
            }
            Ok(Some(Exit::of_run(
                done.state,
                done.verdict,
                done.results.is_some(),
            )))
        }
        _ => Ok(None),
    }
}

fn f(v: &Value, p: &str) -> f64 {
    v.pointer(p).and_then(Value::as_f64).unwrap_or(0.0)
}

/// The same line `herd run` prints each second.
fn live_line(v: &Value) -> String {
    format!(
        "{:>5.0}s/{:.0}s  vus {:>5}  rps {:>8}  p50 {:>8.2}ms  p95 {:>8.2}ms  p99 {:>8.2}ms  errors {:>5.2}%  agents {}/{}",
        f(v, "/elapsed_s"),
        f(v, "/planned_s"),
        f(v, "/vus"),
        f(v, "/rps"),
        f(v, "/latency_ms/p50"),
        f(v, "/latency_ms/p95"),
        f(v, "/latency_ms/p99"),
        100.0 * f(v, "/error_rate"),
        f(v, "/agents/reporting"),
        f(v, "/agents/total"),
    )
}

fn result_line(d: &RunCompleted) -> String {
    let state = match d.state {
        EndState::Completed => "completed",
        EndState::Failed => "failed",
        EndState::Cancelled => "cancelled",
    };
    let mut line = format!(
        "run {} {state}, thresholds {}: {} requests, {} errors, {:.1} rps, p95 {:.2} ms, p99 {:.2} ms",
        d.run_id,
        crate::store::verdict_str(d.verdict),
        d.requests,
        d.errors,
        d.rps,
        d.p95_ms,
        d.p99_ms
    );
    if let Some(r) = &d.reason {
        line.push_str(&format!(" ({r})"));
    }
    if let Some(r) = &d.results {
        line.push_str(&format!("\nresults: {r}"));
    }
    line
}

/// `herd runs`: the history, newest first.
pub async fn runs(s: &Server, query: &[(&str, String)]) -> anyhow::Result<Exit> {
    let c = s.client()?;
    let mut url = url::Url::parse(&format!("{}/runs", s.base()))
        .with_context(|| format!("--server {}", s.url))?;
    for (k, v) in query {
        url.query_pairs_mut().append_pair(k, v);
    }
    let path = format!("/runs?{}", url.query().unwrap_or_default());
    let v = s
        .call(&c, reqwest::Method::GET, &path, None, "listing runs")
        .await?;
    if s.json {
        println!("{v}");
        return Ok(Exit::Ok);
    }
    let rows = v
        .get("runs")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    println!(
        "{:<40} {:<20} {:<10} {:<8} {:>10} {:>10}",
        "RUN", "SPEC", "STATUS", "VERDICT", "REQUESTS", "P95 MS"
    );
    for r in rows {
        let t = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("-").to_string();
        let n = |k: &str| {
            r.get(k)
                .and_then(Value::as_f64)
                .map_or("-".into(), |x| format!("{x:.0}"))
        };
        let p = |k: &str| {
            r.get(k)
                .and_then(Value::as_f64)
                .map_or("-".into(), |x| format!("{x:.2}"))
        };
        println!(
            "{:<40} {:<20} {:<10} {:<8} {:>10} {:>10}",
            t("run_id"),
            t("spec"),
            t("status"),
            t("verdict"),
            n("requests"),
            p("p95_ms")
        );
    }
    if let Some(next) = v.get("next").and_then(Value::as_str) {
        println!("more: --cursor {next}");
    }
    Ok(Exit::Ok)
}

/// `herd show RUN`.
pub async fn show(s: &Server, run_id: &str) -> anyhow::Result<Exit> {
    let c = s.client()?;
    let mut v = s
        .call(
            &c,
            reqwest::Method::GET,
            &format!("/runs/{run_id}"),
            None,
            "reading the run",
        )
        .await?;
    if s.json {
        println!("{v}");
        return Ok(Exit::Ok);
    }
    if let Some(o) = v.as_object_mut() {
        o.remove("spec_text");
        o.remove("summary");
    }
    println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    Ok(Exit::Ok)
}

/// `herd cancel RUN`.
pub async fn cancel(s: &Server, run_id: &str, reason: Option<String>) -> anyhow::Result<Exit> {
    let c = s.client()?;
    let body = serde_json::json!({ "reason": reason });
    let v = s
        .call(
            &c,
            reqwest::Method::POST,
            &format!("/runs/{run_id}/cancel"),
            Some(body.to_string()),
            "cancelling the run",
        )
        .await?;
    if s.json {
        println!("{v}");
    } else {
        println!("run {run_id}: cancelling");
    }
    Ok(Exit::Ok)
}

/// `herd schedule add`: one of `spec` (stored) and `file` (inline); one of `cron` and `at`.
pub struct NewSchedule {
    pub name: String,
    pub spec: Option<String>,
    pub file: Option<std::path::PathBuf>,
    pub cron: Option<String>,
    pub at: Option<String>,
    pub timezone: Option<String>,
}

pub async fn schedule_add(s: &Server, n: NewSchedule) -> anyhow::Result<Exit> {
    let spec_text = match &n.file {
        Some(f) => {
            Some(std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?)
        }
        None => None,
    };
    let body = serde_json::json!({
        "name": n.name, "spec": n.spec, "spec_text": spec_text, "cron": n.cron, "at": n.at,
        "timezone": n.timezone,
    });
    // Absent rather than null: the API refuses what it does not know, and null is a value.
    let body: serde_json::Map<String, Value> = body
        .as_object()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|(_, v)| !v.is_null())
        .collect();
    let c = s.client()?;
    let v = s
        .call(
            &c,
            reqwest::Method::POST,
            "/schedules",
            Some(Value::Object(body).to_string()),
            "making the schedule",
        )
        .await?;
    if s.json {
        println!("{v}");
    } else {
        println!("{}", v["id"].as_str().unwrap_or_default());
        for f in v["next_fires"].as_array().into_iter().flatten() {
            eprintln!("  fires {}", f.as_str().unwrap_or_default());
        }
    }
    Ok(Exit::Ok)
}

pub async fn schedule_list(s: &Server) -> anyhow::Result<Exit> {
    let c = s.client()?;
    let v = s
        .call(
            &c,
            reqwest::Method::GET,
            "/schedules",
            None,
            "listing schedules",
        )
        .await?;
    if s.json {
        println!("{v}");
        return Ok(Exit::Ok);
    }
    println!(
        "{:<16} {:<24} {:<20} {:<8} NEXT",
        "ID", "NAME", "WHEN", "ENABLED"
    );
    for r in v.as_array().into_iter().flatten() {
        let when = r["cron"]
            .as_str()
            .map(|c| format!("{c} {}", r["timezone"].as_str().unwrap_or_default()))
            .unwrap_or_else(|| "once".into());
        println!(
            "{:<16} {:<24} {:<20} {:<8} {}",
            r["id"].as_str().unwrap_or_default(),
            r["name"].as_str().unwrap_or_default(),
            when,
            r["enabled"],
            r["next_fires"][0].as_str().unwrap_or("-")
        );
    }
    Ok(Exit::Ok)
}

pub async fn schedule_rm(s: &Server, id: &str) -> anyhow::Result<Exit> {
    let c = s.client()?;
    let r = s
        .req(&c, reqwest::Method::DELETE, &format!("/schedules/{id}"))
        .send()
        .await
        .with_context(|| format!("reaching {}", s.base()))?;
    if !r.status().is_success() {
        return Err(failure("removing the schedule", r).await);
    }
    eprintln!("schedule {id} removed");
    Ok(Exit::Ok)
}

/// `herd baseline set RUN`: the run becomes its spec's baseline.
pub async fn baseline_set(s: &Server, run_id: &str) -> anyhow::Result<Exit> {
    let c = s.client()?;
    let run = s
        .call(
            &c,
            reqwest::Method::GET,
            &format!("/runs/{run_id}"),
            None,
            "reading the run",
        )
        .await?;
    let spec = run["spec"].as_str().context("the run names no spec")?;
    let v = s
        .call(
            &c,
            reqwest::Method::PUT,
            &format!("/specs/{spec}/baseline"),
            Some(serde_json::json!({ "run": run_id }).to_string()),
            "setting the baseline",
        )
        .await?;
    if s.json {
        println!("{v}");
    } else {
        println!("run {run_id} is the baseline of spec {spec}");
    }
    Ok(Exit::Ok)
}
