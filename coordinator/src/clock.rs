//! Wall-clock helpers.

use std::time::SystemTime;

pub use agent::clock::unix_ms;

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

/// When a run id was made (its `stamp`), in unix seconds: the sweeper leaves young runs alone.
pub fn run_started_s(run_id: &str) -> Option<u64> {
    run_id.split('-').find_map(|part| {
        let b = part.as_bytes();
        if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
            return None;
        }
        let text = format!(
            "{}-{}-{}T{}:{}:{}Z",
            &part[0..4],
            &part[4..6],
            &part[6..8],
            &part[9..11],
            &part[11..13],
            &part[13..15]
        );
        let t = humantime::parse_rfc3339(&text).ok()?;
        t.duration_since(SystemTime::UNIX_EPOCH)
            .ok()
            .map(|d| d.as_secs())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_id_tells_when_it_was_made() {
        let id = run_id("shop", Some(7));
        let made = run_started_s(&id).expect("a stamp");
        assert!(made.abs_diff(unix_ms() / 1000) <= 2, "{id}");
        assert_eq!(run_started_s("shop-19700101T000010Z-ab12"), Some(10));
        assert_eq!(run_started_s("shop-x"), None);
    }
}
