//! The herd contract: everything two herd processes must agree on, and nothing that does I/O.
//!
//! - [`spec`]: the user's test spec (model, parsing from YAML/JSON with positioned errors,
//!   validation, and the [`SpecLimits`] every count, rate and duration is capped by).
//! - [`template`]: `{{var}}` templates used in URLs, headers and bodies, parsed once.
//! - [`threshold`]: threshold expressions (`p95 < 500ms`) and their evaluation.
//! - [`split`]: how one spec's load is divided exactly across N agents.
//! - [`metrics`]: per-second metric batches and the exact, associative merge of their stats;
//!   [`hist`]: herd's latency histogram layout and a strict reader of its V2 bytes;
//!   [`bounds`]: what a batch may hold, checked before it is used (`MetricBatch::check`).
//! - [`wire`]: the versioned bincode envelope and every agent ↔ coordinator message body;
//!   [`clock`]: the handshake's clock probe and the offset arithmetic (one clock per run).
//! - [`topics`]: MQTT topic names.
//! - [`policy`]: the target policy: where load may go, checked on URLs and connected addresses.
//! - [`outcome`]: end states, the one `verdict()`, and the `RunCompleted`/`RunRejected`
//!   notifications; [`summary`]: `summary.json` as a typed document; [`schema`]: their JSON
//!   Schemas, generated and kept in step with `docs/schemas/`.
//!
//! Keeping this crate free of tokio and sockets is what lets the agent, the coordinator and the
//! tests share one definition of the truth and test it without a runtime.

pub mod bounds;
pub mod clock;
pub mod hist;
pub mod metrics;
pub mod near;
pub mod outcome;
pub mod policy;
pub mod schema;
pub mod spec;
pub mod split;
pub mod summary;
pub mod template;
pub mod threshold;
pub mod topics;
pub mod wire;

pub use spec::{parse_spec, parse_spec_with, Spec, SpecError, SpecIssue, SpecLimits};
