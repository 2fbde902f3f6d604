//! The watchdog with a fake clock: silence, Alives that count and those that do not, the
//! ceiling.

use super::*;
use messages::wire::{Alive, Stop, WIRE_VERSION};

const S: Duration = Duration::from_secs(1);

fn env(run: &str, seq: u64, body: Body) -> Envelope {
    Envelope {
        version: WIRE_VERSION,
        run_id: run.into(),
        sender: "coordinator".into(),
        seq,
        sent_at_ms: 0,
        body,
    }
}

fn alive(seq: u64, epoch: u64) -> Envelope {
    env("r", seq, Body::Alive(Alive::new(epoch)))
}

#[test]
fn an_agent_that_hears_nothing_gives_up_after_orphan_after_from_its_connection() {
    let t0 = Instant::now();
    let w = Watchdog::new("r", 30 * S, t0);
    assert_eq!(w.deadline(), t0 + 30 * S);
    assert_eq!(w.check(t0 + 29 * S), None);
    assert_eq!(w.check(t0 + 30 * S), Some(GiveUp::Silent { ms: 30_000 }));
}

#[test]
fn each_alive_moves_the_silence_deadline() {
    let t0 = Instant::now();
    let mut w = Watchdog::new("r", 3 * S, t0);
    for i in 1..=10u32 {
        assert!(w.heard(&alive(u64::from(i), 7), t0 + i * S));
    }
    assert_eq!(w.check(t0 + 12 * S), None);
    assert_eq!(w.deadline(), t0 + 13 * S);
    assert_eq!(w.check(t0 + 13 * S), Some(GiveUp::Silent { ms: 3_000 }));
}

#[test]
fn only_a_newer_alive_of_this_run_counts() {
    let t0 = Instant::now();
    let mut w = Watchdog::new("r", 3 * S, t0);
    assert!(w.heard(&alive(5, 7), t0 + S));
    // Replayed, older, another run's, or not an Alive: the deadline stays.
    assert!(!w.heard(&alive(5, 7), t0 + 2 * S));
    assert!(!w.heard(&alive(4, 7), t0 + 2 * S));
    assert!(!w.heard(&alive(9, 6), t0 + 2 * S), "an older coordinator");
    assert!(!w.heard(&env("other", 9, Body::Alive(Alive::new(7))), t0 + 2 * S));
    let stop = Body::Stop(Stop { reason: "x".into() });
    assert!(!w.heard(&env("r", 9, stop), t0 + 2 * S));
    assert_eq!(w.deadline(), t0 + 4 * S);
    // A restarted coordinator (later epoch) counts from its own seq 1.
    assert!(w.heard(&alive(1, 8), t0 + 3 * S));
    assert_eq!(w.deadline(), t0 + 6 * S);
}

#[test]
fn the_ceiling_holds_even_while_alives_arrive() {
    let t0 = Instant::now();
    let mut w = Watchdog::new("r", 3 * S, t0);
    let after = ceiling_after_start_ms(10_000, 2_000);
    assert_eq!(after, 10_000 + 2_000 + OVERRUN_GRACE_MS);
    let ceiling = t0 + Duration::from_millis(after);
    w.ceiling_at(ceiling);
    let mut now = t0;
    let mut seq = 0;
    while now < ceiling {
        seq += 1;
        now += S;
        w.heard(&alive(seq, 1), now);
        if now < ceiling {
            assert_eq!(w.check(now), None, "{seq}");
        }
    }
    assert_eq!(
        w.check(ceiling),
        Some(GiveUp::PastPlannedEnd {
            grace_ms: OVERRUN_GRACE_MS
        })
    );
    // Nothing heard: the earlier of silence and ceiling is next.
    let mut quiet = Watchdog::new("r", 3 * S, t0);
    quiet.ceiling_at(t0 + S);
    assert_eq!(quiet.deadline(), t0 + S);
}

#[test]
fn reasons_say_what_happened() {
    assert_eq!(
        GiveUp::Silent { ms: 30_000 }.to_string(),
        "no Alive from the coordinator for 30s (--orphan-after): it is gone or cut off"
    );
    assert_eq!(
        GiveUp::PastPlannedEnd { grace_ms: 30_000 }.to_string(),
        "the run's planned end (start + duration + graceful stop) passed 30s ago"
    );
}

#[test]
fn a_huge_ceiling_saturates() {
    assert_eq!(ceiling_after_start_ms(u64::MAX, 5), u64::MAX);
}
