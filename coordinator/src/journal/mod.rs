//! What survives a crash, as plain files: an append-only, checksummed record [`log`], and
//! [`file`] for whole files and whole lines ([`write_atomic`], [`append_line`]). The run core
//! writes its events and accepted batches through these (`run::durable`); `serve::state` lays
//! them out per run; results, `notifications.jsonl` and the coordinator's keys are written
//! through [`file`] too — one way of writing a file whole, not one per caller.

pub mod file;
pub mod log;

pub use file::{append_line, remove, sync_folder, write_atomic, write_private, FileError, Step};
