//! `Aggregator`: one per run, the only writer of its results. Folds batches exactly
//! ([`super::fold`]), feeds the live view every second, and tells the supervisor when an agent's
//! batches are all in.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use actix::prelude::*;
use messages::metrics::LabelStats;

use super::fold::{Fold, Row};
use super::protocol::{Drained, ExpectBatches, LiveRow};
use crate::bus::BatchIn;
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
    live: Recipient<LiveRow>,
}

/// Default for how long a second waits for stragglers before its percentiles are final
/// (`herd run --late-window`).
pub const LATE_WINDOW_S: u64 = 10;
/// The live feed shows the second that ended this long ago (agents emit 250 ms after a second).
const LIVE_LAG_S: u64 = 2;

impl Aggregator {
    pub fn new(
        late_window_s: u64,
        agents: u32,
        regions: Vec<String>,
        supervisor: Recipient<Drained>,
        live: Recipient<LiveRow>,
    ) -> Aggregator {
        Aggregator {
            fold: Fold::new(late_window_s, regions),
            expected: HashMap::new(),
            drained: HashSet::new(),
            agents,
            supervisor,
            live,
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
            if let Err(e) = a.fold.tick(now_s) {
                tracing::error!(error = %e, "finalizing a second failed");
            }
        });
    }
}

impl Handler<BatchIn> for Aggregator {
    type Result = ();

    fn handle(&mut self, msg: BatchIn, _ctx: &mut Context<Self>) {
        if msg.agent >= self.agents {
            tracing::warn!(
                agent = msg.agent,
                "batch from an agent this run does not have"
            );
            return;
        }
        if let Err(e) = self.fold.add(msg.agent, msg.seq, &msg.batch) {
            tracing::error!(agent = msg.agent, seq = msg.seq, error = %e, "corrupt metric batch ignored");
        }
        self.check_drained(msg.agent);
    }
}

impl Handler<ExpectBatches> for Aggregator {
    type Result = ();

    fn handle(&mut self, msg: ExpectBatches, _ctx: &mut Context<Self>) {
        self.expected.insert(msg.agent, msg.batches);
        self.check_drained(msg.agent);
    }
}

impl Handler<Finish> for Aggregator {
    type Result = MessageResult<Finish>;

    fn handle(&mut self, _msg: Finish, ctx: &mut Context<Self>) -> Self::Result {
        // The run is over after this: stop ticking once the reply is out.
        ctx.stop();
        if let Err(e) = self.fold.finish() {
            tracing::error!(error = %e, "finalizing the series failed");
        }
        let batches = (0..self.agents)
            .map(|a| (a, self.fold.batches_from(a)))
            .collect();
        MessageResult(Folded {
            totals: std::mem::take(&mut self.fold.totals),
            by_region: std::mem::take(&mut self.fold.by_region),
            rows: std::mem::take(&mut self.fold.rows),
            iterations: self.fold.iterations,
            dropped: self.fold.dropped,
            late_batches: self.fold.late_batches,
            batches,
        })
    }
}
