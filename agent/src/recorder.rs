//! Per-second recording without locks on the hot path.
//!
//! Each VU (and the arrival-rate dispatcher) owns a [`SampleBuf`]; it hands whole chunks to the
//! [`Recorder`] task over a channel when the wall-clock second turns, when it fills, before a VU
//! sleeps, and when it is dropped — so an aborted VU still delivers what it measured. The
//! recorder folds chunks into per-second, per-label [`LabelStats`] and emits one
//! [`MetricBatch`] per second once the second is over (plus a grace period for stragglers).
//! Samples that arrive even later go into an extra batch for their second: merged downstream,
//! never dropped.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use messages::bounds::{clip_label, MAX_VUS};
use messages::hist::clamp_latency;
use messages::metrics::{LabelStats, MetricBatch};
use tokio::sync::mpsc;

use crate::clock::{Clock, WallClock};
use crate::http::ErrorKind;

/// One request's outcome.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub label: u16,
    pub status: u16,
    pub error: Option<ErrorKind>,
    pub failed: bool,
    pub checks_passed: u16,
    pub checks_failed: u16,
    /// The native step that made the request ([`NO_STEP`] for framework runners), and which
    /// of its checks failed (bit i: check i, captures after the checks; bit 63 also stands
    /// for any past it): the per-check tally of [`CheckBook`].
    pub step: u16,
    pub failed_checks: u64,
    pub latency_us: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// [`Sample::step`] of a sample no native step made.
pub const NO_STEP: u16 = u16::MAX;

/// Each check's passes and failures over the whole run, beside the per-second batches (which
/// carry only each label's totals): the agent's `Finished` reports them by name.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CheckBook {
    /// Native steps by index: how many responses (or failures) their checks were run on, and
    /// each check's failures.
    pub steps: Vec<StepChecks>,
    /// Checks a tool names (k6's `check()`), by name: (passed, failed).
    pub named: BTreeMap<String, (u64, u64)>,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct StepChecks {
    pub evaluated: u64,
    pub failed: Vec<u64>,
}

/// Shared between the recorder (which writes it) and whoever reports the run.
pub type Checks = Arc<std::sync::Mutex<CheckBook>>;

impl CheckBook {
    fn add(&mut self, s: &Sample) {
        if s.step == NO_STEP || u32::from(s.checks_passed) + u32::from(s.checks_failed) == 0 {
            return;
        }
        let i = usize::from(s.step);
        if self.steps.len() <= i {
            self.steps.resize_with(i + 1, StepChecks::default);
        }
        let st = &mut self.steps[i];
        st.evaluated += 1;
        let mut mask = s.failed_checks;
        while mask != 0 {
            let bit = mask.trailing_zeros() as usize;
            if st.failed.len() <= bit {
                st.failed.resize(bit + 1, 0);
            }
            st.failed[bit] += 1;
            mask &= mask - 1;
        }
    }
}

/// Locks a check book, taking it over from a holder that panicked (its counts are whole:
/// every update is a few additions).
pub fn lock_checks(c: &Checks) -> std::sync::MutexGuard<'_, CheckBook> {
    match c.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

struct Chunk {
    second: u64,
    samples: Vec<Sample>,
    iterations: u64,
    dropped: u64,
}

/// Cheap to clone: what VUs need to make their own [`SampleBuf`].
#[derive(Clone)]
pub struct RecorderHandle {
    tx: mpsc::UnboundedSender<Chunk>,
    pub clock: Clock,
    /// Active VUs right now, read when a second is emitted.
    pub active_vus: Arc<AtomicU64>,
}

const CHUNK: usize = 512;

impl RecorderHandle {
    pub fn buf(&self) -> SampleBuf {
        SampleBuf {
            tx: self.tx.clone(),
            clock: self.clock,
            second: 0,
            samples: Vec::new(),
            iterations: 0,
            dropped: 0,
        }
    }
}

/// A VU's private buffer of samples for the current second.
pub struct SampleBuf {
    tx: mpsc::UnboundedSender<Chunk>,
    clock: Clock,
    second: u64,
    samples: Vec<Sample>,
    iterations: u64,
    dropped: u64,
}

impl SampleBuf {
    fn roll(&mut self, at: Instant) {
        let s = self.clock.second(at);
        if s != self.second {
            self.flush();
            self.second = s;
        }
    }

    pub fn record(&mut self, at: Instant, sample: Sample) {
        self.roll(at);
        if self.samples.capacity() == 0 {
            self.samples.reserve(CHUNK);
        }
        self.samples.push(sample);
        if self.samples.len() >= CHUNK {
            self.flush();
        }
    }

    /// Records a sample that happened in unix second `second` (framework runners, whose tools
    /// timestamp their own samples).
    pub fn record_in(&mut self, second: u64, sample: Sample) {
        if second != self.second {
            self.flush();
            self.second = second;
        }
        self.samples.push(sample);
        if self.samples.len() >= CHUNK {
            self.flush();
        }
    }

    /// An iteration that ended in unix second `second`.
    pub fn iteration_in(&mut self, second: u64) {
        if second != self.second {
            self.flush();
            self.second = second;
        }
        self.iterations += 1;
    }

    pub fn iteration_done(&mut self, at: Instant) {
        self.roll(at);
        self.iterations += 1;
    }

    pub fn dropped(&mut self, at: Instant, n: u64) {
        self.roll(at);
        self.dropped += n;
    }

    pub fn flush(&mut self) {
        if self.samples.is_empty() && self.iterations == 0 && self.dropped == 0 {
            return;
        }
        let chunk = Chunk {
            second: self.second,
            samples: std::mem::take(&mut self.samples),
            iterations: std::mem::take(&mut self.iterations),
            dropped: std::mem::take(&mut self.dropped),
        };
        // The recorder outlives every buffer; if it is gone the run is being torn down.
        if self.tx.send(chunk).is_err() {
            tracing::warn!("recorder gone: samples of a VU could not be delivered");
        }
    }
}

impl Drop for SampleBuf {
    fn drop(&mut self) {
        self.flush();
    }
}

#[derive(Default)]
struct Second {
    labels: Vec<Option<LabelStats>>,
    iterations: u64,
    dropped: u64,
}

/// Label names by id. Fixed for the native engine; framework runners add labels as the tool
/// reports them.
pub type Labels = Arc<std::sync::RwLock<Vec<String>>>;

pub struct Recorder {
    rx: mpsc::UnboundedReceiver<Chunk>,
    handle: RecorderHandle,
    labels: Labels,
    checks: Checks,
    agent: u32,
    grace: Duration,
    out: mpsc::UnboundedSender<MetricBatch>,
}

impl Recorder {
    /// A recorder for `labels` (index = label id) that sends finished seconds to `out`, its
    /// seconds read from `clock` (as it is now: corrected, in a coordinated agent).
    pub fn new(
        agent: u32,
        labels: Vec<String>,
        clock: &WallClock,
        out: mpsc::UnboundedSender<MetricBatch>,
    ) -> Recorder {
        let (tx, rx) = mpsc::unbounded_channel();
        Recorder {
            rx,
            handle: RecorderHandle {
                tx,
                clock: Clock::new(clock),
                active_vus: Arc::new(AtomicU64::new(0)),
            },
            labels: Arc::new(std::sync::RwLock::new(labels)),
            checks: Checks::default(),
            agent,
            grace: Duration::from_millis(250),
            out,
        }
    }

    pub fn handle(&self) -> RecorderHandle {
        self.handle.clone()
    }

    /// The label table, for runners that learn labels as they go.
    pub fn labels(&self) -> Labels {
        self.labels.clone()
    }

    /// The run's per-check tally, complete once [`Recorder::run`] has returned.
    pub fn checks(&self) -> Checks {
        self.checks.clone()
    }

    /// Runs until every handle and buffer is dropped, then emits what is left.
    pub async fn run(self) {
        let Recorder {
            mut rx,
            handle,
            labels,
            checks,
            agent,
            grace,
            out,
        } = self;
        let clock = handle.clock;
        let active = handle.active_vus.clone();
        // Our own copy of the sender would keep the channel open forever.
        drop(handle);
        let mut open: BTreeMap<u64, Second> = BTreeMap::new();
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let emit = |second: u64, s: Second, out: &mpsc::UnboundedSender<MetricBatch>| {
            let labels = match labels.read() {
                Ok(l) => l,
                Err(poisoned) => poisoned.into_inner(),
            };
            let batch = MetricBatch {
                agent,
                second,
                labels: s
                    .labels
                    .iter()
                    .enumerate()
                    .filter_map(|(i, l)| {
                        Some(
                            l.as_ref()?
                                .to_wire(clip_label(labels.get(i).map_or("?", String::as_str))),
                        )
                    })
                    .collect(),
                vus: active.load(Ordering::Relaxed).min(MAX_VUS),
                iterations: s.iterations,
                dropped_iterations: s.dropped,
            };
            if out.send(batch).is_err() {
                tracing::warn!(second, "metrics consumer gone: a batch was not delivered");
            }
        };
        // Seconds before `next` were emitted; from the first sample on, every second gets a
        // batch (empty ones too) so downstream series have no holes.
        let mut next: Option<u64> = None;
        loop {
            tokio::select! {
                chunk = rx.recv() => match chunk {
                    Some(c) => {
                        next.get_or_insert(c.second);
                        {
                            let mut book = lock_checks(&checks);
                            for s in &c.samples {
                                book.add(s);
                            }
                        }
                        fold(open.entry(c.second).or_default(), c);
                    }
                    None => break,
                },
                _ = tick.tick() => {
                    let now_ms = clock.unix_ms(Instant::now());
                    let limit = now_ms.saturating_sub(grace.as_millis() as u64) / 1000;
                    let Some(n) = next else { continue };
                    let late: Vec<u64> = open.range(..n).map(|(s, _)| *s).collect();
                    for s in late {
                        if let Some(sec) = open.remove(&s) {
                            emit(s, sec, &out);
                        }
                    }
                    for s in n..limit {
                        emit(s, open.remove(&s).unwrap_or_default(), &out);
                    }
                    next = Some(n.max(limit));
                }
            }
        }
        let last = open.keys().next_back().copied();
        for (s, sec) in open
            .range(..next.unwrap_or(0))
            .map(|(s, _)| *s)
            .collect::<Vec<_>>()
            .into_iter()
            .filter_map(|s| Some((s, open.remove(&s)?)))
        {
            emit(s, sec, &out);
        }
        if let (Some(n), Some(last)) = (next, last) {
            for s in n..=last {
                emit(s, open.remove(&s).unwrap_or_default(), &out);
            }
        }
    }
}

fn fold(sec: &mut Second, c: Chunk) {
    sec.iterations += c.iterations;
    sec.dropped += c.dropped;
    for s in c.samples {
        let i = usize::from(s.label);
        if sec.labels.len() <= i {
            sec.labels.resize_with(i + 1, || None);
        }
        let st = sec.labels[i].get_or_insert_with(LabelStats::default);
        st.requests += 1;
        if s.failed {
            st.errors += 1;
        }
        *st.status.entry(s.status).or_default() += 1;
        if let Some(k) = s.error {
            *st.error_kinds.entry(k.as_str().to_string()).or_default() += 1;
        }
        record_latency(&mut st.latency, s.latency_us);
        st.bytes_in += s.bytes_in;
        st.bytes_out += s.bytes_out;
        st.checks_passed += u64::from(s.checks_passed);
        st.checks_failed += u64::from(s.checks_failed);
    }
}

/// Records into an auto-resizing histogram; `saturating_record` would clamp to the current
/// range instead of growing it. Latencies are clamped to what the coordinator accepts
/// (`messages::hist::MAX_LATENCY_US`, ~19 h), as label names are clipped when a batch is made
/// (`messages::bounds`): a batch this recorder makes always passes `MetricBatch::check`.
fn record_latency(h: &mut hdrhistogram::Histogram<u64>, us: u64) {
    let v = clamp_latency(us);
    if h.record(v).is_err() {
        h.saturating_record(v);
    }
}
