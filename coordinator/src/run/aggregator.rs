//! `Aggregator`: one per run, the only writer of its results. Folds batches exactly
//! ([`super::fold`]), feeds the live view every second, and tells the supervisor when an agent's
//! batches are all in, or that one of them was rejected (logged and reported once per agent;
//! the rest are counted in `Folded::rejected`).
//!
//! Each batch it takes is journaled ([`BatchJournal`]); once a second the journal is synced and
//! what is now durable is confirmed to the supervisor, which tells the agents (`Alive`): an
//! agent keeps every batch until it is confirmed, and sends the unconfirmed ones again to a
//! coordinator that restarted. A restarted coordinator's aggregator starts from the journal
//! ([`Aggregator::replay`]), so a batch is counted once whether it arrives before the crash,
//! after it, or both.
//!
//! Its mailbox is the run's batch queue (`crate::bus::BatchQueue`): each batch comes with a
//! ticket that counts it until its handler is done, so the supervisor sees how far behind it is,
//! and batches the full queue refused are reported here as rejected (once per agent) and counted.
//!
//! For tests only, `HERD_TEST_FOLD_DELAY_MS` makes it pause that long after each batch (without
//! blocking the thread the run's other actors share): an aggregator that falls behind.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use messages::metrics::LabelStats;

use super::abort::{AbortWatch, Crossed};
use super::durable::{BatchJournal, StoredBatch};
use super::fold::{Added, Fold, Row};
use super::lag::LagMeter;
use super::protocol::{
    BatchesRejected, Confirmed, Drained, ExpectBatches, LiveRow, Started, ThresholdCrossed,
};
use crate::bus::{BatchIn, BatchQueue};
use crate::clock::unix_ms;

/// Everything the aggregator knows at the end of a run.
#[derive(Default)]
pub struct Folded {
    pub totals: BTreeMap<String, LabelStats>,
    pub by_region: BTreeMap<String, LabelStats>,
    pub rows: Vec<Row>,
    pub iterations: u64,
    pub dropped: u64,
    pub late_batches: u64,
    pub batches: HashMap<u32, u64>,
    /// Rejected batches by agent (only agents with any).
    pub rejected: HashMap<u32, u64>,
    /// Per agent, the batches it may forget (the last `Alive` says so).
    pub confirmed: Vec<u64>,
    /// The `abort_on_fail` threshold that stopped the run, if one did.
    pub crossed: Option<Crossed>,
    /// Second's end → batch folded, over every batch.
    pub intake_lag: Option<messages::summary::Lag>,
    /// Second's end → its live snapshot sent.
    pub live_lag: Option<messages::summary::Lag>,
}

/// End of run: finalize every second and hand over the results.
#[derive(Message)]
#[rtype(result = "Folded")]
pub struct Finish;

pub struct Aggregator {
    fold: Fold,
    expected: HashMap<u32, u64>,
    drained: HashSet<u32>,
    agents: u32,
    supervisor: Recipient<Drained>,
    rejected: Recipient<BatchesRejected>,
    confirmed: Recipient<Confirmed>,
    live: Recipient<LiveRow>,
    crossed_to: Recipient<ThresholdCrossed>,
    /// Thresholds that stop the run when they fail, judged each second.
    abort: AbortWatch,
    /// The load's start (unix ms), once known.
    start_at_ms: Option<u64>,
    /// The last second the live feed showed: the run's end publishes the ones after it.
    live_upto: Option<u64>,
    journal: BatchJournal,
    /// A journal write failed: logged once; those batches stay unconfirmed.
    journal_failed: bool,
    last_confirmed: Option<Vec<u64>>,
    queue: Arc<BatchQueue>,
    /// Agents whose refused batches were reported.
    overflow_reported: HashSet<u32>,
    /// `HERD_TEST_FOLD_DELAY_MS` (tests only).
    fold_delay: Option<Duration>,
    intake_lag: LagMeter,
    live_lag: LagMeter,
}

/// The test-only pause after each batch, in ms: a slow aggregator without a slow machine.
pub const TEST_FOLD_DELAY_VAR: &str = "HERD_TEST_FOLD_DELAY_MS";

/// Default for how long a second waits for stragglers before its percentiles are final
/// (`herd run --late-window`).
pub const LATE_WINDOW_S: u64 = 10;
/// The live feed shows the second that ended this long ago (agents emit 250 ms after a second).
const LIVE_LAG_S: u64 = 2;
/// At most this many unshown seconds are published when the run ends (a run whose feed showed
/// nothing does not replay its whole series).
const MAX_FINAL_LIVE_ROWS: usize = 30;

/// Where the aggregator reports to.
pub struct AggregatorLinks {
    pub drained: Recipient<Drained>,
    pub rejected: Recipient<BatchesRejected>,
    pub confirmed: Recipient<Confirmed>,
    pub live: Recipient<LiveRow>,
    /// Told when an `abort_on_fail` threshold fails.
    pub crossed: Recipient<ThresholdCrossed>,
    /// The bus's hand-over to this aggregator (the same `Arc` as in its `Route`).
    pub queue: Arc<BatchQueue>,
}

impl Aggregator {
    /// `accepted_at_ms`: when the run was accepted, the earliest second a batch may carry
    /// (minus the late window) until `Started` gives the start.
    pub fn new(
        late_window_s: u64,
        agents: u32,
        regions: Vec<String>,
        accepted_at_ms: u64,
        links: AggregatorLinks,
        journal: BatchJournal,
    ) -> Aggregator {
        Aggregator {
            fold: Fold::new(late_window_s, regions, accepted_at_ms / 1000),
            expected: HashMap::new(),
            drained: HashSet::new(),
            agents,
            supervisor: links.drained,
            rejected: links.rejected,
            confirmed: links.confirmed,
            live: links.live,
            crossed_to: links.crossed,
            abort: AbortWatch::default(),
            start_at_ms: None,
            live_upto: None,
            journal,
            journal_failed: false,
            last_confirmed: None,
            queue: links.queue,
            overflow_reported: HashSet::new(),
            intake_lag: LagMeter::default(),
            live_lag: LagMeter::default(),
            fold_delay: std::env::var(TEST_FOLD_DELAY_VAR)
                .ok()
                .and_then(|v| v.parse().ok())
                .filter(|ms| *ms > 0)
                .map(Duration::from_millis),
        }
    }

    /// Folds what the journal kept, as it was folded before the restart: the load's start
    /// first, then each batch at the second it arrived (the fold's clock stepped to it, so a
    /// batch late then is late now). Rejections count again; none is reported again.
    pub fn replay(&mut self, start_at_ms: Option<u64>, batches: Vec<StoredBatch>) {
        if let Some(at) = start_at_ms {
            self.fold.started(at);
            self.start_at_ms = Some(at);
        }
        for b in batches {
            self.fold.tick(b.now_s);
            let _ = self.fold.add(b.agent, b.seq, &b.batch, b.now_s);
        }
    }

    /// Watches the spec's `abort_on_fail` thresholds.
    pub fn watching(mut self, thresholds: &[messages::threshold::Threshold]) -> Aggregator {
        self.abort = AbortWatch::new(thresholds);
        self
    }

    /// Judges the `abort_on_fail` thresholds on everything folded so far (once a second).
    fn judge_aborts(&mut self, now_ms: u64) {
        let Some(start) = self.start_at_ms.filter(|s| now_ms > *s) else {
            return;
        };
        if self.abort.is_idle() {
            return;
        }
        // The open seconds too: totals alone lag by the late window.
        let labels = self.fold.so_far();
        let crossed = self.abort.judge(
            now_ms - start,
            &labels,
            || messages::metrics::total_of(labels.values()).ok(),
            self.fold.dropped,
        );
        if let Some(c) = crossed.cloned() {
            let reason = self
                .abort
                .threshold(c.index)
                .map(|t| c.reason(t))
                .unwrap_or_default();
            tracing::warn!(%reason, "stopping the run");
            self.crossed_to.do_send(ThresholdCrossed { reason });
        }
    }

    fn journal(&mut self, stored: StoredBatch) {
        if let Err(e) = self.journal.record(&stored) {
            if !std::mem::replace(&mut self.journal_failed, true) {
                tracing::error!(error = %e, "a batch could not be journaled: it stays unconfirmed, its agent keeps it");
            }
        }
    }

    /// Makes the journal durable and tells the supervisor what that confirms, when it changed.
    fn confirm(&mut self) {
        if let Err(e) = self.journal.sync() {
            if !std::mem::replace(&mut self.journal_failed, true) {
                tracing::error!(error = %e, "the batch journal could not be synced: nothing new is confirmed");
            }
            return;
        }
        let through = self.journal.confirmed(self.agents);
        if self.last_confirmed.as_ref() != Some(&through) {
            self.last_confirmed = Some(through.clone());
            self.confirmed.do_send(Confirmed { through });
        }
    }

    /// Batches of `agent` the full queue refused never reach the fold: its results are not
    /// exact, said once (as for a rejected batch), and its drain deadline will say it too.
    fn report_overflow(&mut self, agent: u32) {
        let n = self.queue.overflowed(agent);
        if n > 0 && self.overflow_reported.insert(agent) {
            self.rejected.do_send(BatchesRejected {
                agent,
                reason: format!(
                    "{n} batch(es) refused: the coordinator's batch queue was full (the \
                     aggregator fell behind)"
                ),
            });
        }
    }

    fn check_drained(&mut self, agent: u32) {
        if let Some(n) = self.expected.get(&agent) {
            if self.fold.batches_from(agent) >= *n && self.drained.insert(agent) {
                self.supervisor.do_send(Drained { agent });
            }
        }
    }
}

impl Actor for Aggregator {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(Duration::from_secs(1), |a, _| {
            let now_s = unix_ms() / 1000;
            if let Some(row) = a.fold.peek(now_s.saturating_sub(LIVE_LAG_S)) {
                a.live_upto = Some(row.second);
                a.live_lag
                    .record(row.second.saturating_add(1).saturating_mul(1000), unix_ms());
                a.live.do_send(LiveRow { row });
            }
            a.fold.tick(now_s);
            a.judge_aborts(unix_ms());
            a.confirm();
        });
    }
}

impl Handler<BatchIn> for Aggregator {
    type Result = ();

    fn handle(&mut self, msg: BatchIn, ctx: &mut Context<Self>) {
        if let Some(d) = self.fold_delay {
            // The mailbox waits; the thread (and the supervisor on it) does not.
            ctx.wait(actix::clock::sleep(d).into_actor(self));
        }
        self.report_overflow(msg.agent);
        if msg.agent >= self.agents {
            tracing::warn!(
                agent = msg.agent,
                "batch from an agent this run does not have"
            );
            return;
        }
        let now_ms = unix_ms();
        let now_s = now_ms / 1000;
        let added = self.fold.add(msg.agent, msg.seq, &msg.batch, now_s);
        if matches!(added, Ok(Added::New | Added::Late)) {
            let due = msg.batch.second.saturating_add(1).saturating_mul(1000);
            self.intake_lag.record(due, now_ms);
        }
        if !matches!(added, Ok(Added::Duplicate)) {
            self.journal(StoredBatch {
                now_s,
                agent: msg.agent,
                seq: msg.seq,
                batch: msg.batch,
            });
        }
        match added {
            Ok(_) => self.check_drained(msg.agent),
            Err(e) if e.first => {
                tracing::warn!(
                    agent = e.agent,
                    seq = e.seq,
                    reason = %e.reason,
                    "metric batch rejected whole: this agent's results are not exact and it will \
                     not be drained; its further rejected batches are only counted \
                     (rejected_batches in summary.json)"
                );
                self.rejected.do_send(BatchesRejected {
                    agent: e.agent,
                    reason: format!("batch {}: {}", e.seq, e.reason),
                });
            }
            Err(_) => {}
        }
    }
}

impl Handler<Started> for Aggregator {
    type Result = ();

    fn handle(&mut self, msg: Started, _ctx: &mut Context<Self>) {
        self.fold.started(msg.at_ms);
        self.start_at_ms = Some(msg.at_ms);
    }
}

impl Handler<ExpectBatches> for Aggregator {
    type Result = ();

    fn handle(&mut self, msg: ExpectBatches, _ctx: &mut Context<Self>) {
        self.expected.insert(msg.agent, msg.batches);
        self.report_overflow(msg.agent);
        self.check_drained(msg.agent);
    }
}

impl Handler<Finish> for Aggregator {
    type Result = MessageResult<Finish>;

    fn handle(&mut self, _msg: Finish, ctx: &mut Context<Self>) -> Self::Result {
        // The run is over after this: stop ticking once the reply is out.
        ctx.stop();
        self.confirm();
        self.fold.finish();
        // The seconds the feed had not shown yet (it lags by LIVE_LAG_S), final now: the live
        // view and the stream end with the run's last second, not two before it.
        let unseen: Vec<&Row> = self
            .fold
            .rows
            .iter()
            .filter(|r| self.live_upto.is_none_or(|u| r.second > u))
            .collect();
        for r in unseen
            .iter()
            .skip(unseen.len().saturating_sub(MAX_FINAL_LIVE_ROWS))
        {
            self.live.do_send(LiveRow { row: (*r).clone() });
        }
        let batches = (0..self.agents)
            .map(|a| (a, self.fold.batches_from(a)))
            .collect();
        // Refused by the full queue: as rejected as a batch the fold refused.
        let mut rejected = self.fold.rejected().clone();
        for a in 0..self.agents {
            let n = self.queue.overflowed(a);
            if n > 0 {
                *rejected.entry(a).or_default() += n;
            }
        }
        MessageResult(Folded {
            totals: std::mem::take(&mut self.fold.totals),
            by_region: std::mem::take(&mut self.fold.by_region),
            rows: std::mem::take(&mut self.fold.rows),
            iterations: self.fold.iterations,
            dropped: self.fold.dropped,
            late_batches: self.fold.late_batches,
            batches,
            rejected,
            confirmed: self.journal.confirmed(self.agents),
            crossed: self.abort.crossed().cloned(),
            intake_lag: self.intake_lag.lag(),
            live_lag: self.live_lag.lag(),
        })
    }
}
