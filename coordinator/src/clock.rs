//! Wall-clock helpers.

use std::time::SystemTime;

pub use agent::recorder::unix_ms;

/// `20261125T213000Z`: sortable, safe in paths and topics.
pub fn stamp() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now())
        .to_string()
        .replace(['-', ':'], "")
}

/// A run's id: `{spec}-{stamp}`, and with `unique` (several runs may start in one second under
/// `herd serve`) four hex digits more. Spec names are checked to be safe in topics and paths.
pub fn run_id(spec_name: &str, unique: Option<u32>) -> String {
    match unique {
        None => format!("{spec_name}-{}", stamp()),
        Some(n) => format!(
            "{spec_name}-{}-{:04x}",
            stamp(),
            (unix_ms() as u32).wrapping_mul(2654435761).wrapping_add(n) & 0xffff
        ),
    }
}
