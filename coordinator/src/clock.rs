//! Wall-clock helpers.

use std::time::SystemTime;

pub use agent::recorder::unix_ms;

/// `20261125T213000Z`: sortable, safe in paths and topics.
pub fn stamp() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now())
        .to_string()
        .replace(['-', ':'], "")
}
