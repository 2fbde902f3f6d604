//! `Scheduler`: fires the schedules the history keeps (`store::catalog::Schedule`). Once a
//! second it reads them (at most `catalog::MAX_SCHEDULES`) and, for each that is due
//! (`serve::when`: cron in its zone or a one-time instant, with the catch-up rule), submits a
//! run request to the registry like any intake. The request's idempotency key is the schedule
//! and the occurrence, so an occurrence makes one run even if this coordinator dies between
//! submitting it and recording it fired.

use std::collections::HashSet;
use std::time::Duration;

use actix::prelude::*;

use super::history::History;
use super::registry::{Runs, Submit, Submitted};
use super::when::{due, timing, Due};
use crate::request::{RunRequest, SpecSource};
use crate::store::catalog::{Schedule, ScheduledSpec, When};

/// How often schedules are looked at.
pub const TICK: Duration = Duration::from_secs(1);

pub struct Scheduler {
    history: History,
    runs: Addr<Runs>,
    catch_up_ms: u64,
    /// Schedules whose firing is under way (a submit in flight).
    firing: HashSet<String>,
    /// A read of the schedules is under way.
    reading: bool,
}

impl Scheduler {
    pub fn new(history: History, runs: Addr<Runs>, catch_up_s: u64) -> Scheduler {
        Scheduler {
            history,
            runs,
            catch_up_ms: catch_up_s.saturating_mul(1000),
            firing: HashSet::new(),
            reading: false,
        }
    }
}

impl Actor for Scheduler {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(TICK, |act, ctx| act.look(ctx));
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct Done(String);

impl Handler<Done> for Scheduler {
    type Result = ();
    fn handle(&mut self, msg: Done, _ctx: &mut Context<Self>) {
        self.firing.remove(&msg.0);
    }
}

impl Scheduler {
    fn look(&mut self, ctx: &mut Context<Self>) {
        if self.reading {
            return;
        }
        self.reading = true;
        let history = self.history.clone();
        let catch_up_ms = self.catch_up_ms;
        let now = crate::clock::unix_ms();
        ctx.spawn(
            async move {
                match history.call(|s| s.schedules()).await {
                    Ok(list) => list
                        .into_iter()
                        .filter_map(|s| match timing(&s) {
                            Ok(t) => match due(&s, &t, now, catch_up_ms) {
                                Due::Nothing => None,
                                d => Some((s, d)),
                            },
                            Err(e) => {
                                tracing::warn!(schedule = %s.id, error = %e, "a schedule that cannot be read");
                                None
                            }
                        })
                        .collect(),
                    Err(e) => {
                        tracing::debug!(error = %e, "schedules not read");
                        Vec::new()
                    }
                }
            }
            .into_actor(self)
            .map(|due_now: Vec<(Schedule, Due)>, act, ctx| {
                act.reading = false;
                for (s, d) in due_now {
                    // One firing per schedule at a time: the next tick skips it meanwhile.
                    if !act.firing.insert(s.id.clone()) {
                        continue;
                    }
                    let (history, runs, me) = (act.history.clone(), act.runs.clone(), ctx.address());
                    actix::spawn(async move {
                        let id = s.id.clone();
                        fire(&history, &runs, s, d).await;
                        me.do_send(Done(id));
                    });
                }
            }),
        );
    }
}

/// Fires (or skips) one due occurrence, and records it.
async fn fire(history: &History, runs: &Addr<Runs>, s: Schedule, d: Due) {
    let once = matches!(s.when, When::Once(_));
    let (occ, outcome) = match d {
        Due::Nothing => return,
        Due::Skip(occ) => {
            tracing::warn!(schedule = %s.id, name = %s.name, occurrence_ms = occ, "occurrence missed by more than the catch-up window: skipped");
            (
                occ,
                Some(format!(
                    "missed the occurrence at {} (the coordinator was not running): skipped, past the catch-up window",
                    super::when::local(occ, &s.timezone)
                )),
            )
        }
        Due::Fire(occ) => (occ, submit(history, runs, &s, occ).await),
    };
    // A transient failure is retried on the next tick (until the catch-up rule skips it).
    if outcome.as_deref() == Some(TRANSIENT) {
        return;
    }
    let id = s.id.clone();
    let error = outcome.clone();
    let recorded = history
        .call(move |st| st.record_fired(&id, occ, error.as_deref(), !once))
        .await;
    if let Err(e) = recorded {
        tracing::error!(schedule = %s.id, error = %e, "could not record the schedule's firing");
    }
}

const TRANSIENT: &str = "\u{0}transient";

/// Submits the occurrence's run; answers why no run came of it, if none did.
async fn submit(history: &History, runs: &Addr<Runs>, s: &Schedule, occ: u64) -> Option<String> {
    let text = match &s.spec {
        ScheduledSpec::Inline(t) => t.clone(),
        ScheduledSpec::Stored(name) => {
            let n = name.clone();
            match history.call(move |st| st.spec(&n, None)).await {
                Ok(Some(v)) => v.text,
                Ok(None) => return Some(format!("spec {name:?} is not stored")),
                Err(_) => return Some(TRANSIENT.into()),
            }
        }
    };
    let req = RunRequest {
        idempotency_key: format!("schedule:{}:{occ}", s.id),
        spec: SpecSource::Inline(text),
        overrides: Default::default(),
        correlation_id: Some(format!("schedule:{}", s.id)),
        origin: format!("schedule:{}", s.name),
    };
    match runs.send(Submit(req)).await {
        Ok(Ok(Submitted::Started(run))) => {
            tracing::info!(schedule = %s.id, name = %s.name, %run, "schedule fired");
            None
        }
        Ok(Ok(Submitted::Duplicate(_))) => None,
        Ok(Ok(Submitted::Rejected(errors))) => {
            Some(format!("the spec was rejected: {}", errors.join("; ")))
        }
        Ok(Err(e)) => {
            tracing::warn!(schedule = %s.id, error = %e, "schedule firing will be retried");
            Some(TRANSIENT.into())
        }
        Err(_) => Some(TRANSIENT.into()),
    }
}
