//! herd's load generator.
//!
//! - [`http`]: the native HTTP engine (hyper 1, rustls, HTTP/1.1 + HTTP/2), one client per VU.
//! - [`scenario`]: the spec's steps compiled once, and the VU that runs them.
//! - [`engine`]: one agent's share of a run end to end (compile, recorder, executor).
//! - [`executor`]: when iterations run (closed and open models).
//! - [`recorder`]: lock-free per-VU sample buffers folded into per-second metric batches.
//! - [`clock`]: the agent's one clock: this machine's, corrected by the offset to the
//!   coordinator's measured at the handshake (and a test-only skew).
//! - [`runners`]: k6, Locust and JMeter run on the user's script with this agent's share; their
//!   output read while they run into the same recorder.
//! - [`limits`]: the open-file limit raised, and a share that cannot fit refused.
//! - [`report`]: folds batches into totals and prints them (standalone mode and tests).
//! - [`link`]: the coordinated agent's side of a run over MQTT ([`transport::Session`]);
//!   [`orphan`]: when it gives up by itself (no `Alive` from its coordinator, or past the
//!   run's planned end); [`replay`]: the batches it keeps until its coordinator confirms them.
//! - [`standalone`]: one agent with the whole load, no coordinator (`herd agent --standalone`).
//!
//! Data flows one way: spec → plan → VUs → samples → recorder → batches → whoever listens.

pub mod clock;
pub mod engine;
pub mod executor;
pub mod http;
pub mod limits;
pub mod link;
pub mod orphan;
pub mod pace;
pub mod recorder;
pub mod replay;
pub mod report;
pub mod runners;
pub mod scenario;
pub mod standalone;
