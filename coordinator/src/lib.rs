//! herd's coordinator and the `herd` binary's commands.
//!
//! - [`cli`]: subcommands, spec loading for the terminal, exit codes.
//! - [`run_cmd`]: `herd run`, wiring broker, bus and actors for one run on this machine.
//! - Actors, one a file: [`supervisor`] (the run's state machine), [`launcher`] (agents as
//!   child processes), [`aggregator`] (exact fold of batches), [`live`] (per-second snapshot),
//!   [`results`] (files and the retained result). [`protocol`] holds messages that cross them.
//! - [`fold`]: the aggregator's state, pure. [`bus`]: the MQTT link. [`broker`]: embedded rumqttd.
//! - [`wiring`]: one run's actors started together, shared by `herd run` and `herd serve`.
//! - [`serve`]: `herd serve` — config, the `Runs` registry, the inbox; [`aws`]: SQS intake, ECS
//!   launcher, IoT credentials, S3 store; [`notifier`]: `RunCompleted`/`RunRejected` out;
//!   [`bootstrap`]: how an ECS task learns which agent it is.
//! - [`target`]: `herd target`, the built-in HTTP target for demos, tests and benchmarks.

pub mod aggregator;
pub mod aws;
pub mod bootstrap;
pub mod broker;
pub mod bus;
pub mod cli;
pub mod clock;
pub mod fold;
pub mod launcher;
pub mod live;
pub mod notifier;
pub mod protocol;
pub mod results;
pub mod run_cmd;
pub mod serve;
pub mod supervisor;
pub mod target;
pub mod wiring;
