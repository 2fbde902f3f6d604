//! The agent ↔ coordinator envelope: bincode 2, versioned, size-bounded.
//!
//! Payloads come off a broker that anyone holding credentials can publish to, so decoding must
//! refuse oversized input before allocating and must never panic on garbage.

use bincode::config::{self, Configuration, Limit, LittleEndian, Varint};
use serde::{Deserialize, Serialize};

use crate::clock::{ClockProbe, ClockSync};
use crate::metrics::MetricBatch;
use crate::policy::TargetPolicy;
use crate::spec::Spec;
use crate::split::Share;

/// 3: `Finished` carries per-check counts and the HTTP versions spoken.
/// 2: every payload travels in an authenticated frame (`transport::keys`) and `Assign`
/// carries the target policy. Still 2 with `Assign.clock`, `Ready.clock` and `Alive`: the
/// coordinator and its agents ship together (one `herd` binary, one image), so no side ever
/// speaks to a peer built without them (an older peer would refuse `Alive` as malformed, never
/// act on it).
pub const WIRE_VERSION: u16 = 3;
/// Largest accepted message. A batch is ~1 KiB per label; an Assign carries the spec and its data files.
pub const MAX_MESSAGE_BYTES: usize = 8 << 20;

type Cfg = Configuration<LittleEndian, Varint, Limit<MAX_MESSAGE_BYTES>>;

fn cfg() -> Cfg {
    config::standard().with_limit::<MAX_MESSAGE_BYTES>()
}

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("message of {0} bytes exceeds the {MAX_MESSAGE_BYTES}-byte limit")]
    TooLarge(usize),
    #[error(
        "message is wire version {found}, this herd speaks {WIRE_VERSION}: upgrade the older side"
    )]
    Version { found: u16 },
    #[error("malformed message: {0}")]
    Decode(String),
    #[error("cannot encode message: {0}")]
    Encode(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub version: u16,
    pub run_id: String,
    /// `coordinator` or `agent-<index>`.
    pub sender: String,
    /// Per sender, increasing by one per message; (sender, seq) identifies a message.
    pub seq: u64,
    /// Unix milliseconds by the coordinator's clock: the coordinator's own, an agent's once
    /// corrected by its measured offset. An agent's heartbeats before its Assign carry its own
    /// clock's reading — the A1 the offset is measured from (`crate::clock`).
    pub sent_at_ms: u64,
    pub body: Body,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[allow(clippy::large_enum_variant)]
pub enum Body {
    Assign(Assign),
    Start(Start),
    Stop(Stop),
    Alive(Alive),
    Ready(Ready),
    Heartbeat(Heartbeat),
    Finished(Finished),
    Failed(Failed),
    Metrics(MetricBatch),
}

impl Body {
    pub fn kind(&self) -> &'static str {
        match self {
            Body::Assign(_) => "Assign",
            Body::Start(_) => "Start",
            Body::Stop(_) => "Stop",
            Body::Alive(_) => "Alive",
            Body::Ready(_) => "Ready",
            Body::Heartbeat(_) => "Heartbeat",
            Body::Finished(_) => "Finished",
            Body::Failed(_) => "Failed",
            Body::Metrics(_) => "Metrics",
        }
    }
}

/// Coordinator → agent: what to run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Assign {
    pub agent: u32,
    pub region: String,
    pub spec: Spec,
    pub share: Share,
    /// Contents of the spec's data files by source name (agents may not see the spec's disk).
    pub data: Vec<DataFile>,
    /// Where this agent's load may go: checked on every URL and every connected address.
    pub policy: TargetPolicy,
    /// The times of the heartbeat this Assign answers and of the Assign itself, for the
    /// agent to measure its clock's offset (`None`: no heartbeat seen, nothing to measure).
    pub clock: Option<ClockProbe>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataFile {
    pub name: String,
    #[serde(with = "serde_bytes")]
    pub bytes: Vec<u8>,
}

/// Coordinator → agents: begin the load at this instant (unix ms, coordinator clock; each agent
/// waits for it on its clock corrected by its measured offset).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Start {
    pub at_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stop {
    pub reason: String,
}

/// Coordinator → agents, every [`ALIVE_EVERY_MS`] while the run is between its launch and its
/// end: "your coordinator is still there". An agent that hears none for its `orphan_after`
/// stops by itself (`agent::orphan`). Signed like Start and Stop.
///
/// A struct of its own so it can grow (per-agent confirmations…): build it with
/// [`Alive::new`]; fields added later keep every constructor outside this crate compiling.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Alive {
    /// Which coordinator process speaks: unix ms at which it started, so a later incarnation
    /// (a restarted coordinator) has a larger epoch. Agents order Alives by (epoch, seq).
    pub epoch: u64,
    /// Per agent (by index), the highest batch seq the coordinator holds with none missing
    /// below it: filled by the batch journal, empty until then. On the wire already so that
    /// filling it changes no layout.
    pub confirmed: Vec<u64>,
}

impl Alive {
    pub fn new(epoch: u64) -> Alive {
        Alive {
            epoch,
            confirmed: Vec::new(),
        }
    }
}

/// How often the coordinator sends [`Alive`] on a run's control topic.
pub const ALIVE_EVERY_MS: u64 = 1_000;
/// How long an agent waits without an [`Alive`] before it stops by itself (`herd agent
/// --orphan-after`).
pub const DEFAULT_ORPHAN_AFTER_S: u64 = 30;
/// How long past its planned end (start + planned duration + graceful stop) a run may go: then
/// the coordinator declares its agents overrun (`Timing::overrun_grace_ms`), and an agent stops
/// by itself even while it still hears its coordinator. One number for both sides.
pub const OVERRUN_GRACE_MS: u64 = 30_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ready {
    pub agent: u32,
    pub host: String,
    pub herd_version: String,
    /// The offset and round trip it measured from its Assign (`None`: it could not).
    pub clock: Option<ClockSync>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub agent: u32,
    pub vus: u64,
    /// Seq of the last metric batch sent.
    pub last_batch_seq: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finished {
    pub agent: u32,
    /// When the load actually started (unix ms, coordinator clock), for start skew.
    pub started_at_ms: u64,
    /// Seq of the last metric batch (for logs; the coordinator counts `batches_sent`).
    pub last_batch_seq: u64,
    pub batches_sent: u64,
    /// Batches dropped from the offline buffer while the broker was unreachable.
    pub batches_dropped: u64,
    /// The first message seen for each kind of failed request (`tls` → the certificate
    /// problem): why requests got no response, in words. At most [`MAX_ERROR_SAMPLES`], each
    /// clipped to [`MAX_ERROR_SAMPLE_BYTES`] by the agent; the coordinator clips again.
    pub error_samples: Vec<(String, String)>,
    /// Each check's passes and failures over the whole run on this agent (at most
    /// [`MAX_CHECKS`]; the coordinator sums them across agents, bounded again).
    pub checks: Vec<CheckCount>,
    /// Connections the agent opened, by the HTTP version they spoke (`h1`, `h2`); empty for
    /// framework runners, whose tools do not say.
    pub http_versions: Vec<(String, u64)>,
}

/// One check's tally: the label of the requests it checked (empty when the tool does not tie
/// checks to requests, as k6) and its name (the script's, or derived from a spec's check:
/// `json_path $.user == "ann"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckCount {
    pub label: String,
    pub name: String,
    pub passed: u64,
    pub failed: u64,
}

/// Checks an agent reports (and a run keeps) apart; the rest are summed under
/// [`OTHER_CHECKS`].
pub const MAX_CHECKS: usize = 100;
/// Longest check name or label kept, in bytes.
pub const MAX_CHECK_NAME_BYTES: usize = 160;
/// Where checks past [`MAX_CHECKS`] are counted.
pub const OTHER_CHECKS: &str = "(other checks)";

/// Checks as a coordinator takes them from one agent: at most [`MAX_CHECKS`], names clipped.
pub fn bounded_checks(checks: &[CheckCount]) -> Vec<CheckCount> {
    checks
        .iter()
        .take(MAX_CHECKS)
        .map(|c| CheckCount {
            label: clip_text(&c.label, MAX_CHECK_NAME_BYTES),
            name: clip_text(&c.name, MAX_CHECK_NAME_BYTES),
            passed: c.passed,
            failed: c.failed,
        })
        .collect()
}

/// Kinds of request failure an agent reports a sample message for.
pub const MAX_ERROR_SAMPLES: usize = 16;
/// Longest sample message, in bytes.
pub const MAX_ERROR_SAMPLE_BYTES: usize = 400;

/// `s` cut to at most `max` bytes, on a character boundary.
pub fn clip_text(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// The most an agent puts in one metrics message: AWS IoT Core refuses messages over 128 KB,
/// and the envelope and its authenticating frame need a little room besides.
pub const MAX_BATCH_PAYLOAD_BYTES: usize = 100 * 1024;

/// Bytes of a [`MetricBatch`] without its labels, with room for the labels' count.
const BATCH_HEADER_BYTES: usize = 64;

fn encoded_len<T: Serialize>(v: &T) -> usize {
    bincode::serde::encode_to_vec(v, cfg()).map_or(usize::MAX, |b| b.len())
}

/// `b` as one or more batches of the same agent and second whose encodings each stay within
/// `max` bytes, split between labels (a label's histogram is never cut). The parts add up to
/// `b` exactly: each carries the second's VUs (a level, kept as the latest), and the first
/// alone its iterations and dropped iterations (counts, added). A single label larger than
/// `max` goes alone in its part. The coordinator folds parts like any batches of one second.
pub fn split_batch(b: MetricBatch, max: usize) -> Vec<MetricBatch> {
    if encoded_len(&b) <= max {
        return vec![b];
    }
    let MetricBatch {
        agent,
        second,
        labels,
        vus,
        iterations,
        dropped_iterations,
    } = b;
    let mut parts: Vec<Vec<crate::metrics::LabelBatch>> = Vec::new();
    let mut current = Vec::new();
    let mut size = BATCH_HEADER_BYTES;
    for l in labels {
        let n = encoded_len(&l);
        if !current.is_empty() && size.saturating_add(n) > max {
            parts.push(std::mem::take(&mut current));
            size = BATCH_HEADER_BYTES;
        }
        size = size.saturating_add(n);
        current.push(l);
    }
    if !current.is_empty() || parts.is_empty() {
        parts.push(current);
    }
    parts
        .into_iter()
        .enumerate()
        .map(|(i, labels)| MetricBatch {
            agent,
            second,
            labels,
            vus,
            iterations: if i == 0 { iterations } else { 0 },
            dropped_iterations: if i == 0 { dropped_iterations } else { 0 },
        })
        .collect()
}

/// Samples as a coordinator keeps them: bounded in number and size whatever an agent sent.
pub fn bounded_samples(samples: &[(String, String)]) -> Vec<(String, String)> {
    samples
        .iter()
        .take(MAX_ERROR_SAMPLES)
        .map(|(k, m)| (clip_text(k, 32), clip_text(m, MAX_ERROR_SAMPLE_BYTES)))
        .collect()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failed {
    pub agent: u32,
    pub reason: String,
}

pub fn encode(env: &Envelope) -> Result<Vec<u8>, WireError> {
    let bytes =
        bincode::serde::encode_to_vec(env, cfg()).map_err(|e| WireError::Encode(e.to_string()))?;
    if bytes.len() > MAX_MESSAGE_BYTES {
        return Err(WireError::TooLarge(bytes.len()));
    }
    Ok(bytes)
}

pub fn decode(bytes: &[u8]) -> Result<Envelope, WireError> {
    if bytes.len() > MAX_MESSAGE_BYTES {
        return Err(WireError::TooLarge(bytes.len()));
    }
    // The version leads the envelope so a newer layout is reported as such, not as garbage.
    let (found, _): (u16, usize) = bincode::serde::decode_from_slice(bytes, cfg())
        .map_err(|e| WireError::Decode(e.to_string()))?;
    if found != WIRE_VERSION {
        return Err(WireError::Version { found });
    }
    let (env, used): (Envelope, usize) = bincode::serde::decode_from_slice(bytes, cfg())
        .map_err(|e| WireError::Decode(e.to_string()))?;
    if used != bytes.len() {
        return Err(WireError::Decode(format!(
            "{} trailing bytes after the message",
            bytes.len() - used
        )));
    }
    Ok(env)
}

#[cfg(test)]
mod tests {
    /// A second with thousands of labels (a k6 script naming every URL) goes out as several
    /// messages, each within what IoT Core accepts, and they add up to the second exactly.
    #[test]
    fn a_batch_too_large_for_one_message_is_split_between_labels_and_adds_up() {
        use super::*;
        use crate::metrics::LabelStats;
        let mut labels = Vec::new();
        for i in 0..3000u64 {
            let mut s = LabelStats::default();
            for v in 0..20 {
                s.latency
                    .record(1_000 + i * 37 + v * 1_009)
                    .expect("record");
            }
            s.requests = 20;
            s.errors = i % 3;
            *s.status.entry(200).or_default() += 20;
            labels.push(s.to_wire(&format!("GET /items/{i}")));
        }
        let whole = MetricBatch {
            agent: 3,
            second: 1_700_000_000,
            labels,
            vus: 40,
            iterations: 777,
            dropped_iterations: 5,
        };
        assert!(
            encoded_len(&whole) > MAX_BATCH_PAYLOAD_BYTES,
            "the test needs a large batch"
        );
        let parts = split_batch(whole.clone(), MAX_BATCH_PAYLOAD_BYTES);
        assert!(parts.len() > 1);
        for p in &parts {
            assert!(
                encoded_len(p) <= MAX_BATCH_PAYLOAD_BYTES,
                "{}",
                encoded_len(p)
            );
            assert_eq!((p.agent, p.second, p.vus), (3, 1_700_000_000, 40));
            let env = Envelope {
                version: WIRE_VERSION,
                run_id: "shop-20261201T000000Z-ab12".into(),
                sender: "agent-3".into(),
                seq: u64::MAX,
                sent_at_ms: u64::MAX,
                body: Body::Metrics(p.clone()),
            };
            assert!(
                encode(&env).expect("encodes").len() < 128 * 1024,
                "fits IoT Core"
            );
        }
        assert_eq!(parts.iter().map(|p| p.iterations).sum::<u64>(), 777);
        assert_eq!(parts.iter().map(|p| p.dropped_iterations).sum::<u64>(), 5);
        let (mut a, mut b) = (
            std::collections::BTreeMap::new(),
            std::collections::BTreeMap::new(),
        );
        whole.fold_into(&mut a).expect("fold");
        for p in &parts {
            p.fold_into(&mut b).expect("fold");
        }
        assert_eq!(a, b, "every label, histogram and count, once");
        // A batch that fits is left as it is.
        let small = MetricBatch {
            labels: whole.labels[..3].to_vec(),
            ..whole
        };
        assert_eq!(
            split_batch(small.clone(), MAX_BATCH_PAYLOAD_BYTES),
            vec![small]
        );
    }

    /// An agent's Finished is outside input: however many and however long the samples it
    /// sends, the coordinator keeps at most 16, each clipped on a character boundary.
    #[test]
    fn hostile_error_samples_are_kept_bounded() {
        let huge: Vec<(String, String)> = (0..1_000)
            .map(|i| (format!("kind-{i}-{}", "k".repeat(100)), "é".repeat(10_000)))
            .collect();
        let kept = super::bounded_samples(&huge);
        assert_eq!(kept.len(), super::MAX_ERROR_SAMPLES);
        for (k, m) in &kept {
            assert!(k.len() <= 32 + '…'.len_utf8(), "{k}");
            assert!(m.len() <= super::MAX_ERROR_SAMPLE_BYTES + '…'.len_utf8());
            assert!(m.ends_with('…'));
        }
    }

    use super::*;
    use crate::metrics::LabelStats;
    use proptest::prelude::*;

    fn env(body: Body) -> Envelope {
        Envelope {
            version: WIRE_VERSION,
            run_id: "run-1".into(),
            sender: "agent-0".into(),
            seq: 7,
            sent_at_ms: 1_700_000_000_000,
            body,
        }
    }

    #[test]
    fn metric_batch_round_trips() {
        let mut s = LabelStats {
            requests: 3,
            ..Default::default()
        };
        s.latency.record(1234).unwrap();
        let batch = MetricBatch {
            agent: 1,
            second: 1_700_000_000,
            labels: vec![s.to_wire("GET /")],
            vus: 5,
            iterations: 3,
            dropped_iterations: 0,
        };
        let e = env(Body::Metrics(batch));
        assert_eq!(decode(&encode(&e).unwrap()).unwrap(), e);
    }

    #[test]
    fn alive_round_trips() {
        let e = Envelope {
            sender: "coordinator".into(),
            ..env(Body::Alive(Alive::new(1_700_000_000_123)))
        };
        assert_eq!(decode(&encode(&e).unwrap()).unwrap(), e);
    }

    #[test]
    fn ready_carries_a_negative_clock_offset() {
        let e = env(Body::Ready(Ready {
            agent: 1,
            host: "h".into(),
            herd_version: "0".into(),
            clock: Some(ClockSync {
                offset_ms: -5_000,
                round_trip_ms: 3,
            }),
        }));
        assert_eq!(decode(&encode(&e).unwrap()).unwrap(), e);
    }

    #[test]
    fn other_versions_are_named() {
        let mut e = env(Body::Stop(Stop { reason: "x".into() }));
        e.version = 9;
        let bytes = encode(&e).unwrap();
        assert!(matches!(
            decode(&bytes),
            Err(WireError::Version { found: 9 })
        ));
    }

    #[test]
    fn oversized_input_is_refused_before_decoding() {
        let big = vec![0u8; MAX_MESSAGE_BYTES + 1];
        assert!(matches!(decode(&big), Err(WireError::TooLarge(_))));
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn mutated_messages_never_panic(flip in 0usize..200, val in any::<u8>()) {
            let mut s = LabelStats::default();
            s.latency.record(999).unwrap();
            let e = env(Body::Metrics(MetricBatch { agent: 0, second: 1, labels: vec![s.to_wire("a")], vus: 1, iterations: 1, dropped_iterations: 0 }));
            let mut bytes = encode(&e).unwrap();
            let i = flip % bytes.len();
            bytes[i] = val;
            if let Ok(Envelope { body: Body::Metrics(b), .. }) = decode(&bytes) {
                for l in &b.labels { let _ = l.to_stats(); }
            }
        }
    }
}
