//! herd's coordinator and the `herd` binary's commands.
//!
//! - [`cli`]: arguments, logging, dispatch (the binary's edge); [`commands`]: `run`, `agent`,
//!   `validate`, `target`, each `run(options, interrupts) -> Exit`; [`exit`]: exit codes;
//!   [`signals`]: interrupts as a value.
//! - [`run`]: one run's core — the pure state machine, its actors (supervisor, launcher,
//!   aggregator, live feed, results) and the result built once. The same for `herd run` and
//!   `herd serve`.
//! - [`bundle`]: a spec and the files it names, read and checked once, whatever it came from.
//! - [`bus`]: the coordinator's one MQTT session, shared by every run; [`broker`]: embedded
//!   rumqttd, logins only; [`identity`]: the keys agents' messages are checked with.
//! - [`serve`]: `herd serve` — profiles, intake (inbox, SQS), the run registry, completion and
//!   notifications; [`config`]: its configuration; [`request`]: a run request; [`store`]: the
//!   run history behind one trait (SQLite in the state folder).
//! - [`report`]: `report.html`, one self-contained page of a run's results (inline SVG).
//! - [`aws`]: AWS clients — intake events, ECS launcher and bootstrap, IoT credentials, S3.
//! - [`targets`]: the target policy from the serve config or `herd run`'s flags, checked up
//!   front on a spec's URLs before it travels in every Assign.
//!
//! Modules depend one way: `cli` → `commands`/`serve` → `run`/`bundle`/`aws` → `bus` →
//! `transport` (its own crate); no module imports one that imports it back (checked by the
//! `code_shape` test).

pub mod aws;
pub mod broker;
pub mod bundle;
pub mod bus;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod config;
pub mod exit;
pub mod identity;
pub mod journal;
pub mod report;
pub mod request;
pub mod run;
pub mod serve;
pub mod signals;
pub mod store;
pub mod targets;
