//! A virtual user: its connection, cookies, variables and data cursor, running iterations.

use std::sync::Arc;
use std::time::{Duration, Instant};

use messages::spec::Think;
use rand::{Rng, SeedableRng};

use super::checks::evaluate;
use super::compile::{build_request, Builtin, CPart, CTemplate, Plan, PlanView};
use crate::http::{Client, HttpConfig};
use crate::recorder::{Sample, SampleBuf};

pub enum Outcome {
    Done,
    /// A data feeder with `on_end: stop` ran out: this VU has nothing more to do.
    DataExhausted,
}

pub struct Vu {
    /// Global, 1-based: unique across the fleet.
    pub number: u64,
    pub iteration: u64,
    plan: Arc<Plan>,
    client: Client,
    captures: Vec<Option<String>>,
    rows: Vec<usize>,
    cursors: Vec<u64>,
    pub buf: SampleBuf,
    rng: rand::rngs::SmallRng,
}

struct RenderCtx<'a> {
    plan: &'a Plan,
    captures: &'a [Option<String>],
    rows: &'a [usize],
    number: u64,
    iteration: u64,
}

impl RenderCtx<'_> {
    fn render(&self, t: &CTemplate, out: &mut String, json: bool) {
        for p in &t.parts {
            let mut push = |s: &str| {
                if json {
                    // The value lands inside a JSON string literal: escape it as one.
                    let quoted = serde_json::Value::String(s.to_string()).to_string();
                    out.push_str(&quoted[1..quoted.len() - 1]);
                } else {
                    out.push_str(s);
                }
            };
            match p {
                CPart::Lit(s) => out.push_str(s),
                CPart::Var(i) => push(self.plan.variables.get(*i).map_or("", String::as_str)),
                CPart::Capture(i) => push(
                    self.captures
                        .get(*i)
                        .and_then(|c| c.as_deref())
                        .unwrap_or(""),
                ),
                CPart::Data { source, column } => {
                    let v = self
                        .rows
                        .get(*source)
                        .and_then(|r| self.plan.feeders.get(*source)?.rows.get(*r)?.get(*column));
                    push(v.map_or("", String::as_str))
                }
                CPart::Builtin(b) => match b {
                    Builtin::Vu => push(&self.number.to_string()),
                    Builtin::Iteration => push(&self.iteration.to_string()),
                    Builtin::Agent => push(&self.plan.agent.to_string()),
                    Builtin::Run => push(&self.plan.run_id),
                },
            }
        }
    }
}

impl Vu {
    pub fn new(number: u64, plan: Arc<Plan>, http: Arc<HttpConfig>, buf: SampleBuf) -> Vu {
        let feeders = plan.feeders.len();
        Vu {
            number,
            iteration: 0,
            captures: vec![None; plan.capture_slots],
            rows: vec![0; feeders],
            cursors: vec![0; feeders],
            client: Client::new(http),
            plan,
            buf,
            rng: rand::rngs::SmallRng::seed_from_u64(number),
        }
    }

    /// Runs the scenario once. `lag` is how late the iteration started against its intended
    /// start (open model); it is added to every request's latency so a slow system cannot hide
    /// behind the requests it prevented (coordinated omission).
    pub async fn iteration(&mut self, lag: Duration) -> Outcome {
        for (i, f) in self.plan.feeders.iter().enumerate() {
            match f.next_row(&mut self.cursors[i], self.number - 1) {
                Some(r) => self.rows[i] = r,
                None => return Outcome::DataExhausted,
            }
        }
        let plan = self.plan.clone();
        for (i, step) in plan.steps.iter().enumerate() {
            // Steps are capped far below u16 (the spec's `steps` limit).
            let step_index = u16::try_from(i).unwrap_or(crate::recorder::NO_STEP);
            let rendered;
            let req = match &step.prebuilt {
                Some(r) => Ok(r),
                None => {
                    let ctx = RenderCtx {
                        plan: &plan,
                        captures: &self.captures,
                        rows: &self.rows,
                        number: self.number,
                        iteration: self.iteration,
                    };
                    let view = PlanView {
                        base_origin: &plan.base_origin,
                        base_path: &plan.base_path,
                        base_verdict: &plan.base_verdict,
                        policy: &plan.policy,
                        default_headers: &plan.default_headers,
                    };
                    rendered =
                        build_request(&view, step, &mut |t, out, json| ctx.render(t, out, json));
                    rendered.as_ref().map_err(Clone::clone)
                }
            };
            let started = Instant::now();
            let result = match req {
                Ok(req) => self.client.send(req, step.keep_body).await,
                Err(e) => Err(e),
            };
            let ended = Instant::now();
            let latency = ended - started + lag;
            let sample = match &result {
                Ok(resp) => {
                    let tally = evaluate(step, resp, &mut self.captures);
                    let failed = match &step.expect_status {
                        Some(codes) => !codes.contains(&resp.status),
                        None => resp.status >= 400,
                    };
                    Sample {
                        label: step.label,
                        status: resp.status,
                        error: None,
                        failed,
                        checks_passed: tally.passed,
                        checks_failed: tally.failed,
                        step: step_index,
                        failed_checks: tally.failed_mask,
                        latency_us: latency.as_micros() as u64,
                        bytes_in: resp.bytes_in,
                        bytes_out: resp.bytes_out,
                    }
                }
                Err(e) => {
                    for (slot, _, _) in &step.captures {
                        if let Some(s) = self.captures.get_mut(*slot) {
                            *s = None;
                        }
                    }
                    tracing::debug!(step = %step.name, error = %e, "request failed");
                    crate::http::note_error(e);
                    Sample {
                        label: step.label,
                        status: messages::metrics::NO_RESPONSE,
                        error: Some(e.kind),
                        failed: true,
                        checks_passed: 0,
                        checks_failed: (step.checks.len() + step.captures.len()) as u16,
                        step: step_index,
                        failed_checks: super::checks::all_failed(
                            step.checks.len() + step.captures.len(),
                        ),
                        latency_us: latency.as_micros() as u64,
                        bytes_in: 0,
                        bytes_out: 0,
                    }
                }
            };
            self.buf.record(ended, sample);
            if let Some(think) = step.think {
                let d = match think {
                    Think::Fixed { ms } => Duration::from_millis(ms),
                    Think::Range { min_ms, max_ms } => {
                        Duration::from_millis(self.rng.random_range(min_ms..=max_ms))
                    }
                };
                // Don't sit on samples while sleeping: the recorder wants them this second.
                self.buf.flush();
                tokio::time::sleep(d).await;
            }
        }
        self.iteration += 1;
        self.buf.iteration_done(Instant::now());
        Outcome::Done
    }
}
