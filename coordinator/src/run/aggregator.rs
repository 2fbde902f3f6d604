//! `Aggregator`: one per run, the only writer of its results. Folds batches exactly
//! ([`super::fold`]), feeds the live view every second, and tells the supervisor when an agent's
//! batches are all in, or that one of them was rejected (logged and reported once per agent;
//! the rest are counted in `Folded::rejected`).
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

use super::fold::{Fold, Row};
use super::protocol::{BatchesRejected, Drained, ExpectBatches, LiveRow, Started};
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
    live: Recipient<LiveRow>,
    queue: Arc<BatchQueue>,
    /// Agents whose refused batches were reported.
    overflow_reported: HashSet<u32>,
    /// `HERD_TEST_FOLD_DELAY_MS` (tests only).
    fold_delay: Option<Duration>,
}

/// The test-only pause after each batch, in ms: a slow aggregator without a slow machine.
pub const TEST_FOLD_DELAY_VAR: &str = "HERD_TEST_FOLD_DELAY_MS";

/// Default for how long a second waits for stragglers before its percentiles are final
/// (`herd run --late-window`).
pub const LATE_WINDOW_S: u64 = 10;
/// The live feed shows the second that ended this long ago (agents emit 250 ms after a second).
const LIVE_LAG_S: u64 = 2;

/// Where the aggregator reports to.
pub struct AggregatorLinks {
    pub drained: Recipient<Drained>,
    pub rejected: Recipient<BatchesRejected>,
    pub live: Recipient<LiveRow>,
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
    ) -> Aggregator {
        Aggregator {
            fold: Fold::new(late_window_s, regions, accepted_at_ms / 1000),
            expected: HashMap::new(),
            drained: HashSet::new(),
            agents,
            supervisor: links.drained,
            rejected: links.rejected,
            live: links.live,
            queue: links.queue,
            overflow_reported: HashSet::new(),
            fold_delay: std::env::var(TEST_FOLD_DELAY_VAR)
                .ok()
                .and_then(|v| v.parse().ok())
                .filter(|ms| *ms > 0)
                .map(Duration::from_millis),
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
                a.live.do_send(LiveRow { row });
            }
            a.fold.tick(now_s);
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
        match self
            .fold
            .add(msg.agent, msg.seq, &msg.batch, unix_ms() / 1000)
        {
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
        self.fold.finish();
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
        })
    }
}
