//! herd's coordinator and the `herd` binary's commands.
//!
//! - [`cli`]: subcommands, spec loading for the terminal, exit codes.
//! - [`target`]: `herd target`, the built-in HTTP target for demos, tests and benchmarks.

pub mod cli;
pub mod target;
