//! The registry's side of the run queue (`serve::queue`): a run accepted over the caps waits,
//! as `queued` in the history and on the board; a run's end makes room for the first that fits;
//! a queued run cancelled ends at once, announced as cancelled, never having loaded anything.

use std::sync::Arc;

use actix::prelude::*;

use super::super::completion::{complete, Ended, Origin, PlanInfo};
use super::super::queue::Waiting;
use super::super::state::RunRecord;
use super::{CancelRuns, Runs};
use crate::run::live::LiveTap;
use crate::run::RunPlan;
use crate::store::RunStatus;

/// What a waiting run needs to start.
pub struct Queued {
    record: RunRecord,
    journal: std::path::PathBuf,
    tap: LiveTap,
}

impl Runs {
    /// An accepted run starts now, or waits for room. `started`: a resumed run that had
    /// started before the restart (it goes on whatever the caps).
    pub(super) fn admit(
        &mut self,
        record: RunRecord,
        journal: std::path::PathBuf,
        resumed: bool,
        started: bool,
        ctx: &mut Context<Self>,
    ) {
        let tap = self.enter(&record, resumed);
        let spec = record.spec.name.clone();
        if started || !self.queue.must_wait(&spec, &self.going) {
            if resumed {
                self.history.status(&record.run_id, RunStatus::Running);
            }
            self.launch(record, journal, tap, ctx);
            return;
        }
        let run_id = record.run_id.clone();
        tracing::info!(run = %run_id, %spec, going = self.going.len(), waiting = self.queue.len(), "run queued: the [queue] caps are reached");
        self.history.status(&run_id, RunStatus::Queued);
        self.board.set_queued(&run_id, true);
        let waiting = Waiting {
            run_id,
            spec,
            item: Queued {
                record,
                journal,
                tap,
            },
        };
        if let Err(full) = self.queue.push(waiting) {
            // Only a restart can bring more runs than the queue holds (new ones are refused
            // before acceptance): they were accepted, so they run.
            tracing::warn!(error = %full, "a taken-back run starts over the caps");
        }
    }

    /// Starts every waiting run the caps now have room for, first come first served.
    pub(super) fn start_waiting(&mut self, ctx: &mut Context<Self>) {
        while let Some(w) = self.queue.next(&self.going) {
            tracing::info!(run = %w.run_id, "a queued run starts");
            self.history.status(&w.run_id, RunStatus::Running);
            self.board.set_queued(&w.run_id, false);
            let Queued {
                record,
                journal,
                tap,
            } = w.item;
            self.launch(record, journal, tap, ctx);
        }
    }

    /// Cancels the waiting runs `msg` names; answers how many.
    pub(super) fn cancel_queued(&mut self, msg: &CancelRuns, ctx: &mut Context<Self>) -> usize {
        let hits: Vec<String> = self
            .queue
            .ids()
            .filter(|id| msg.run_id.as_deref() == Some(*id))
            .map(str::to_string)
            .collect();
        let by_correlation: Vec<String> = match &msg.correlation_id {
            Some(c) => self
                .queue_correlations()
                .into_iter()
                .filter(|(_, cid)| cid.as_deref() == Some(c.as_str()))
                .map(|(id, _)| id)
                .collect(),
            None => Vec::new(),
        };
        let mut n = 0;
        for id in hits.into_iter().chain(by_correlation) {
            let Some(w) = self.queue.remove(&id) else {
                continue;
            };
            n += 1;
            tracing::info!(run = %id, reason = %msg.reason, "queued run cancelled");
            let r = w.item.record;
            let origin = Origin {
                source: r.source.clone(),
                correlation_id: r.correlation_id.clone(),
            };
            let bundle = crate::bundle::SpecBundle {
                spec: r.spec,
                text: r.spec_text,
                data: Vec::new(),
            };
            let plan = RunPlan::new(id.clone(), bundle, r.agents, r.dir);
            let info = Arc::new(PlanInfo {
                run_id: id.clone(),
                spec: plan.spec.clone(),
                regions: plan.regions.clone(),
                dir: plan.dir.clone(),
            });
            self.completing.insert(id.clone());
            ctx.spawn(
                complete(
                    self.env.clone(),
                    Ended {
                        plan: info,
                        origin,
                        outcome: None,
                        why_no_outcome: format!("{} (while queued)", msg.reason),
                        cancelled: true,
                    },
                )
                .into_actor(self)
                .map(move |announced, act, _| act.completed(&id, announced)),
            );
        }
        n
    }

    fn queue_correlations(&self) -> Vec<(String, Option<String>)> {
        self.queue
            .ids()
            .map(|id| (id.to_string(), self.queued_correlation(id)))
            .collect()
    }

    fn queued_correlation(&self, id: &str) -> Option<String> {
        self.queue
            .peek(id)
            .and_then(|q| q.record.correlation_id.clone())
    }
}
