//! Tool events into the same [`Recorder`] the native engine uses, so live view, batches and the
//! exact merge are the same whatever produced the load.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use crate::recorder::{
    lock_checks, CheckBook, Checks, Labels, Recorder, RecorderHandle, Sample, SampleBuf,
};

/// The shared shape of every tool's output, so one feed turns any tool's lines into samples.
#[derive(Debug)]
pub enum Event {
    Request {
        at_ms: u64,
        label: String,
        status: u16,
        failed: bool,
        error: Option<crate::http::ErrorKind>,
        latency_us: u64,
        bytes_in: u64,
        bytes_out: u64,
    },
    BytesIn(u64),
    BytesOut(u64),
    Vus(u64),
    Iteration {
        at_ms: u64,
    },
    Check {
        /// The script's name for it (k6's `check()` keys); empty when the tool gives none.
        name: String,
        passed: bool,
    },
}

/// A tool's named checks as counts (they are not tied to a request's label).
pub(super) fn named_counts(book: &CheckBook) -> Vec<messages::wire::CheckCount> {
    book.named
        .iter()
        .map(|(name, (passed, failed))| messages::wire::CheckCount {
            label: String::new(),
            name: name.clone(),
            passed: *passed,
            failed: *failed,
        })
        .collect()
}

/// Maps tool-reported label names to the recorder's label ids as they appear.
struct LabelIds {
    ids: HashMap<String, u16>,
    names: Labels,
}

impl LabelIds {
    fn id(&mut self, name: &str) -> u16 {
        if let Some(i) = self.ids.get(name) {
            return *i;
        }
        let mut names = match self.names.write() {
            Ok(n) => n,
            Err(p) => p.into_inner(),
        };
        let i = u16::try_from(names.len()).unwrap_or(u16::MAX);
        if i < u16::MAX {
            names.push(name.to_string());
            self.ids.insert(name.to_string(), i);
        }
        i
    }
}

/// Turns events into samples. Bytes and checks that the tool reports apart from requests
/// (k6: per iteration) ride on the next request, so run totals stay exact.
pub(super) struct Feed {
    buf: SampleBuf,
    labels: LabelIds,
    handle: RecorderHandle,
    bytes_in: u64,
    bytes_out: u64,
    checks_passed: u16,
    checks_failed: u16,
    book: Checks,
}

impl Feed {
    pub(super) fn new(recorder: &Recorder) -> Feed {
        Feed {
            buf: recorder.handle().buf(),
            labels: LabelIds {
                ids: HashMap::new(),
                names: recorder.labels(),
            },
            handle: recorder.handle(),
            bytes_in: 0,
            bytes_out: 0,
            checks_passed: 0,
            checks_failed: 0,
            book: recorder.checks(),
        }
    }

    /// The second of a tool's timestamp: the tool reads this machine's clock, so it is
    /// corrected like the agent's own ([`crate::clock`]).
    fn second_of(&self, at_ms: u64) -> u64 {
        self.handle.clock.of_system_ms(at_ms) / 1000
    }

    pub(super) fn push(&mut self, e: Event) {
        match e {
            Event::Request {
                at_ms,
                label,
                status,
                failed,
                error,
                latency_us,
                bytes_in,
                bytes_out,
            } => {
                let label = self.labels.id(&label);
                let s = Sample {
                    label,
                    status,
                    error,
                    failed,
                    checks_passed: std::mem::take(&mut self.checks_passed),
                    checks_failed: std::mem::take(&mut self.checks_failed),
                    step: crate::recorder::NO_STEP,
                    failed_checks: 0,
                    latency_us,
                    bytes_in: bytes_in + std::mem::take(&mut self.bytes_in),
                    bytes_out: bytes_out + std::mem::take(&mut self.bytes_out),
                };
                self.buf.record_in(self.second_of(at_ms), s);
            }
            Event::BytesIn(b) => self.bytes_in += b,
            Event::BytesOut(b) => self.bytes_out += b,
            Event::Vus(v) => self.handle.active_vus.store(v, Ordering::Relaxed),
            Event::Iteration { at_ms } => {
                let second = self.second_of(at_ms);
                self.buf.iteration_in(second);
            }
            Event::Check { name, passed } => {
                let mut book = lock_checks(&self.book);
                // Bounded like what the coordinator keeps: past the cap, one shared name.
                let name = messages::wire::clip_text(&name, messages::wire::MAX_CHECK_NAME_BYTES);
                let key = if book.named.contains_key(&name)
                    || book.named.len() < messages::wire::MAX_CHECKS
                {
                    name
                } else {
                    messages::wire::OTHER_CHECKS.to_string()
                };
                let e = book.named.entry(key).or_default();
                if passed {
                    e.0 += 1;
                } else {
                    e.1 += 1;
                }
                drop(book);
                if passed {
                    self.checks_passed = self.checks_passed.saturating_add(1);
                } else {
                    self.checks_failed = self.checks_failed.saturating_add(1);
                }
            }
        }
    }
}
