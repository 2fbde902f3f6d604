//! What a metric batch may hold, checked before anything of it is used.
//!
//! Batches come off a broker that anyone holding credentials can publish to, and from agents
//! whose clocks may be wrong. [`MetricBatch::check`] is the one definition of a usable batch,
//! shared by the coordinator's fold and the tests: every length against the bytes present,
//! every bucket against the histogram's range, every count against the others, every sum
//! against u64. A batch that fails is refused whole. The limits are far above what the agent
//! produces (each says why), and the agent clamps what it could exceed ([`clip_label`],
//! [`crate::hist::clamp_latency`]), so a real batch always passes.
//!
//! | limit | value |
//! | --- | --- |
//! | [`MAX_LABELS_PER_BATCH`] | 65,536 |
//! | [`MAX_LABEL_BYTES`] | 1,024 |
//! | [`MAX_STATUS_CODES_PER_LABEL`] | 1,024 |
//! | [`MAX_ERROR_KINDS_PER_LABEL`], [`MAX_ERROR_KIND_BYTES`] | 32, 64 |
//! | [`MAX_VUS`] | 2^32 − 1 |
//! | [`MAX_LATENCY_US`], [`MAX_BUCKET_INDEX`] (so at most 27,648 buckets a label) | 2^36 − 1 µs, 27,647 |
//!
//! The second a batch may carry depends on the run (its start, the late window, the clock), so
//! the caller passes that window in.

use std::ops::RangeInclusive;

pub use crate::hist::{HistError, MAX_BUCKET_INDEX, MAX_LATENCY_US};
use crate::metrics::{LabelBatch, MetricBatch, MetricsError, SparseLabel};

/// Labels in one batch. The recorder's label ids are `u16`, so an agent never has more than
/// 65,536 labels in a second.
pub const MAX_LABELS_PER_BATCH: usize = 65_536;

/// Bytes of a label name. Labels are step names or `METHOD /path/template`; framework tools
/// name requests themselves (k6 uses the URL), and the agent clips longer names to this
/// ([`clip_label`]), so a URL with a long query string cannot make a batch unusable.
pub const MAX_LABEL_BYTES: usize = 1024;

/// Distinct status codes of one label in one batch. hyper accepts only codes 100–999, so a
/// native label has at most 901 (with `NO_RESPONSE`); the tools report HTTP codes too.
pub const MAX_STATUS_CODES_PER_LABEL: usize = 1024;

/// Distinct error kinds of one label in one batch. The agent reports one of its seven
/// `ErrorKind` names (`connect`, `tls`, `timeout`, `io`, `protocol`, `redirect`,
/// `invalid-request`).
pub const MAX_ERROR_KINDS_PER_LABEL: usize = 32;

/// Bytes of an error kind's name: the agent's longest is 15 (`invalid-request`).
pub const MAX_ERROR_KIND_BYTES: usize = 64;

/// Active VUs one agent reports. Far above any agent; it keeps the sum over a run's agents
/// (agent indexes are `u32`) within u64.
pub const MAX_VUS: u64 = u32::MAX as u64;

/// The longest prefix of `label` that fits [`MAX_LABEL_BYTES`], cut at a character boundary.
/// The agent sends its labels through this.
pub fn clip_label(label: &str) -> &str {
    if label.len() <= MAX_LABEL_BYTES {
        return label;
    }
    let mut end = MAX_LABEL_BYTES;
    while !label.is_char_boundary(end) {
        end -= 1;
    }
    &label[..end]
}

/// What is wrong with one label of a batch.
#[derive(Debug, thiserror::Error)]
pub enum LabelError {
    #[error("its name is {bytes} bytes, more than {MAX_LABEL_BYTES}")]
    NameTooLong { bytes: usize },
    #[error("{count} status codes, more than {MAX_STATUS_CODES_PER_LABEL}")]
    TooManyStatusCodes { count: usize },
    #[error("{count} error kinds, more than {MAX_ERROR_KINDS_PER_LABEL}")]
    TooManyErrorKinds { count: usize },
    #[error("an error kind's name is {bytes} bytes, more than {MAX_ERROR_KIND_BYTES}")]
    ErrorKindTooLong { bytes: usize },
    #[error("{errors} errors out of {requests} requests")]
    MoreErrorsThanRequests { errors: u64, requests: u64 },
    #[error("its status counts add up to {sum}, its requests to {requests}")]
    StatusCountMismatch { sum: u64, requests: u64 },
    #[error("its error kinds count {sum} requests, more than its {requests}")]
    MoreErrorKindsThanRequests { sum: u64, requests: u64 },
    #[error("its {what} add up to more than u64 holds")]
    Overflow { what: &'static str },
    #[error("latency histogram: {0}")]
    Histogram(HistError),
    #[error("its latency histogram holds {count} requests, its counters {requests}")]
    HistogramCountMismatch { count: u64, requests: u64 },
}

/// Why a batch is refused. Says where: the label by position and name.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("{count} labels, more than {MAX_LABELS_PER_BATCH}")]
    TooManyLabels { count: usize },
    #[error(
        "second {second} is outside the run's window {first}..={last} (the start minus the late \
         window, to a few seconds past the coordinator's clock): is the agent's clock right?"
    )]
    SecondOutOfWindow { second: u64, first: u64, last: u64 },
    #[error("{vus} VUs, more than {MAX_VUS}")]
    TooManyVus { vus: u64 },
    #[error("label #{index} `{label}`: {source}")]
    Label {
        index: usize,
        /// The name, shortened for messages.
        label: String,
        source: LabelError,
    },
    #[error("its {counter} add up to more than u64 holds")]
    Overflow { counter: &'static str },
    #[error("it would take the run's total of {counter} past what u64 holds")]
    RunTotalOverflow { counter: &'static str },
}

/// The counters of a batch (all labels together) or of a run: what must never wrap.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub requests: u64,
    pub errors: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub checks_passed: u64,
    pub checks_failed: u64,
    pub iterations: u64,
    pub dropped_iterations: u64,
}

impl Counters {
    /// `self + other`, or the name of the first counter that would overflow.
    ///
    /// Every other count the fold keeps is bounded by one of these: a status code's or error
    /// kind's count, and a histogram's, by `requests`. So when a run's `Counters` cannot
    /// overflow, nothing it holds can.
    pub fn checked_add(&self, o: &Counters) -> Result<Counters, &'static str> {
        let sum = |a: u64, b: u64, name: &'static str| a.checked_add(b).ok_or(name);
        Ok(Counters {
            requests: sum(self.requests, o.requests, "requests")?,
            errors: sum(self.errors, o.errors, "errors")?,
            bytes_in: sum(self.bytes_in, o.bytes_in, "bytes_in")?,
            bytes_out: sum(self.bytes_out, o.bytes_out, "bytes_out")?,
            checks_passed: sum(self.checks_passed, o.checks_passed, "checks_passed")?,
            checks_failed: sum(self.checks_failed, o.checks_failed, "checks_failed")?,
            iterations: sum(self.iterations, o.iterations, "iterations")?,
            dropped_iterations: sum(
                self.dropped_iterations,
                o.dropped_iterations,
                "dropped_iterations",
            )?,
        })
    }

    fn of_label(lb: &LabelBatch) -> Counters {
        Counters {
            requests: lb.requests,
            errors: lb.errors,
            bytes_in: lb.bytes_in,
            bytes_out: lb.bytes_out,
            checks_passed: lb.checks_passed,
            checks_failed: lb.checks_failed,
            iterations: 0,
            dropped_iterations: 0,
        }
    }
}

/// A batch that passed [`MetricBatch::check`]: its labels decoded, its sums known.
#[derive(Debug, Clone)]
pub struct CheckedBatch {
    pub second: u64,
    pub labels: Vec<SparseLabel>,
    pub vus: u64,
    pub iterations: u64,
    pub dropped_iterations: u64,
    /// Every label's counters added up, with the batch's iterations.
    pub sums: Counters,
}

impl MetricBatch {
    /// Checks everything in the batch and decodes its labels; `seconds` is the window its
    /// `second` must fall in. Allocates nothing a length in the batch asks for: only what the
    /// bytes present hold.
    pub fn check(&self, seconds: RangeInclusive<u64>) -> Result<CheckedBatch, BatchError> {
        if self.labels.len() > MAX_LABELS_PER_BATCH {
            return Err(BatchError::TooManyLabels {
                count: self.labels.len(),
            });
        }
        if !seconds.contains(&self.second) {
            return Err(BatchError::SecondOutOfWindow {
                second: self.second,
                first: *seconds.start(),
                last: *seconds.end(),
            });
        }
        if self.vus > MAX_VUS {
            return Err(BatchError::TooManyVus { vus: self.vus });
        }
        let mut sums = Counters {
            iterations: self.iterations,
            dropped_iterations: self.dropped_iterations,
            ..Counters::default()
        };
        let mut labels = Vec::with_capacity(self.labels.len());
        for (index, lb) in self.labels.iter().enumerate() {
            let l = check_label(lb).map_err(|source| BatchError::Label {
                index,
                label: shown(&lb.label),
                source,
            })?;
            sums = sums
                .checked_add(&Counters::of_label(lb))
                .map_err(|counter| BatchError::Overflow { counter })?;
            labels.push(l);
        }
        Ok(CheckedBatch {
            second: self.second,
            labels,
            vus: self.vus,
            iterations: self.iterations,
            dropped_iterations: self.dropped_iterations,
            sums,
        })
    }
}

/// One label: its lengths, its counts against each other (as the recorder makes them: one
/// status and one histogram value per request, at most one error and one error kind), then its
/// histogram read strictly.
pub fn check_label(lb: &LabelBatch) -> Result<SparseLabel, LabelError> {
    if lb.label.len() > MAX_LABEL_BYTES {
        return Err(LabelError::NameTooLong {
            bytes: lb.label.len(),
        });
    }
    if lb.status.len() > MAX_STATUS_CODES_PER_LABEL {
        return Err(LabelError::TooManyStatusCodes {
            count: lb.status.len(),
        });
    }
    if lb.error_kinds.len() > MAX_ERROR_KINDS_PER_LABEL {
        return Err(LabelError::TooManyErrorKinds {
            count: lb.error_kinds.len(),
        });
    }
    if let Some((k, _)) = lb
        .error_kinds
        .iter()
        .find(|(k, _)| k.len() > MAX_ERROR_KIND_BYTES)
    {
        return Err(LabelError::ErrorKindTooLong { bytes: k.len() });
    }
    let requests = lb.requests;
    if lb.errors > requests {
        return Err(LabelError::MoreErrorsThanRequests {
            errors: lb.errors,
            requests,
        });
    }
    let status = sum(lb.status.iter().map(|(_, n)| *n), "status counts")?;
    if status != requests {
        return Err(LabelError::StatusCountMismatch {
            sum: status,
            requests,
        });
    }
    let kinds = sum(lb.error_kinds.iter().map(|(_, n)| *n), "error kind counts")?;
    if kinds > requests {
        return Err(LabelError::MoreErrorKindsThanRequests {
            sum: kinds,
            requests,
        });
    }
    let l = SparseLabel::decode(lb).map_err(|e| match e {
        MetricsError::BadHistogram { reason, .. } => LabelError::Histogram(reason),
        MetricsError::Merge(_) => LabelError::Overflow { what: "buckets" },
    })?;
    if l.count() != requests {
        return Err(LabelError::HistogramCountMismatch {
            count: l.count(),
            requests,
        });
    }
    Ok(l)
}

fn sum(mut counts: impl Iterator<Item = u64>, what: &'static str) -> Result<u64, LabelError> {
    counts.try_fold(0u64, |a, n| {
        a.checked_add(n).ok_or(LabelError::Overflow { what })
    })
}

/// A label name as error messages show it: at most 80 characters.
fn shown(label: &str) -> String {
    match label.char_indices().nth(80) {
        Some((i, _)) => format!("{}…", &label[..i]),
        None => label.to_string(),
    }
}

#[cfg(test)]
#[path = "bounds_tests.rs"]
mod tests;
