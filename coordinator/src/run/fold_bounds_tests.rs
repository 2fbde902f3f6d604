//! The fold against issue 10's untrusted batches: the run's window, run totals that must not
//! wrap, rejection bookkeeping, and a rejected batch leaving the fold exactly as it was.

use messages::bounds::BatchError;
use messages::metrics::{LabelStats, MetricBatch};

use super::tests::{batch, T};
use super::*;

/// `b` rejected for the reason `is`; the fold otherwise unchanged.
fn assert_rejected(f: &mut Fold, agent: u32, seq: u64, b: &MetricBatch, now: u64) -> BatchError {
    let before = f.clone();
    let err = match f.add(agent, seq, b, now) {
        Err(e) => e,
        Ok(a) => panic!("accepted as {a:?}"),
    };
    assert_eq!(f.rejected_from(agent), before.rejected_from(agent) + 1);
    let mut after = f.clone();
    after.rejections = before.rejections.clone();
    assert!(after == before, "a rejected batch changed the fold");
    err.reason
}

/// A fold with something in every part: open seconds, final rows, totals, late batches, and
/// two regions (so per-region totals are kept).
fn busy_fold() -> Fold {
    let mut f = Fold::new(2, vec!["eu".into(), "us".into()], T);
    f.add(0, 1, &batch(0, T, &[1000, 2000]), T + 1).unwrap();
    f.add(1, 1, &batch(1, T + 1, &[3000]), T + 2).unwrap();
    f.tick(T + 4);
    f.add(0, 2, &batch(0, T + 4, &[500]), T + 5).unwrap();
    assert_eq!(f.add(1, 2, &batch(1, T, &[9]), T + 5).unwrap(), Added::Late);
    f
}

#[test]
fn a_rejected_batch_leaves_the_fold_exactly_as_before() {
    let mut f = busy_fold();
    let now = T + 5;
    let good = || batch(0, T + 4, &[100, 200, 300]);
    let mut attacks: Vec<(&str, MetricBatch)> = Vec::new();
    // Valid labels first, the bad one last: nothing of the first may land.
    let mut last_bad = good();
    let mut bad = good().labels[0].clone();
    bad.latency_hist[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
    last_bad.labels.push(bad);
    attacks.push(("over-declared payload after good labels", last_bad));
    let mut far = good();
    far.labels[0].latency_hist = {
        let mut s = LabelStats::default();
        s.latency.record(1 << 62).unwrap();
        s.to_wire("x").latency_hist
    };
    attacks.push(("a bucket near index 55,000", far));
    attacks.push((
        "second 0",
        MetricBatch {
            second: 0,
            ..good()
        },
    ));
    let mut overflow = good();
    overflow.labels.push(overflow.labels[0].clone());
    overflow.labels[0].checks_passed = u64::MAX;
    overflow.labels[1].checks_passed = 1;
    attacks.push(("checks that wrap", overflow));
    let mut long = good();
    long.labels[0].label = "l".repeat(2000);
    attacks.push(("a long label", long));
    let mut lying = good();
    lying.labels[0].requests += 1;
    attacks.push(("requests the histogram does not hold", lying));
    let too_many = MetricBatch {
        labels: vec![good().labels[0].clone(); messages::bounds::MAX_LABELS_PER_BATCH + 1],
        ..good()
    };
    attacks.push(("too many labels", too_many));
    for (seq, (what, b)) in (100..).zip(&attacks) {
        let reason = assert_rejected(&mut f, 0, seq, b, now);
        assert!(!reason.to_string().is_empty(), "{what}");
    }
    assert_eq!(f.rejected_from(0), attacks.len() as u64);
    assert_eq!(f.add(0, 99, &good(), now).unwrap(), Added::New);
}

#[test]
fn a_batch_for_second_zero_is_rejected_and_finish_stays_small() {
    let mut f = Fold::new(10, Vec::new(), T);
    f.add(0, 1, &batch(0, T, &[1000]), T + 1).unwrap();
    let reason = assert_rejected(&mut f, 0, 2, &batch(0, 0, &[1000]), T + 1);
    assert!(matches!(
        reason,
        BatchError::SecondOutOfWindow {
            second: 0,
            first,
            last
        } if first == T - 10 && last == T + 1 + FUTURE_MARGIN_S
    ));
    f.finish();
    assert_eq!(f.rows.len(), 1, "no hole filled back to 1970");
}

#[test]
fn the_window_runs_from_the_start_minus_the_late_window_to_a_little_past_now() {
    // Before the start is known, the run's acceptance bounds it.
    let mut f = Fold::new(10, Vec::new(), T);
    assert_rejected(&mut f, 0, 1, &batch(0, T - 11, &[1]), T);
    assert!(f.add(0, 2, &batch(0, T - 10, &[1]), T).is_ok());
    f.started((T + 30) * 1000 + 500);
    assert_rejected(&mut f, 0, 3, &batch(0, T + 19, &[1]), T + 31);
    assert!(f.add(0, 4, &batch(0, T + 20, &[1]), T + 31).is_ok());
    // A start before the acceptance (it cannot be) never widens the window.
    f.started(T * 1000);
    assert_rejected(&mut f, 0, 5, &batch(0, T + 19, &[1]), T + 31);
    // The future: a clock running ahead.
    let ahead = T + 31 + FUTURE_MARGIN_S;
    assert_rejected(&mut f, 0, 6, &batch(0, ahead + 1, &[1]), T + 31);
    assert!(f.add(0, 7, &batch(0, ahead, &[1]), T + 31).is_ok());
}

#[test]
fn counters_that_would_overflow_the_run_totals_are_rejected() {
    let mut f = Fold::new(10, Vec::new(), T);
    let mut big = batch(0, T, &[1000]);
    big.labels[0].bytes_in = u64::MAX - 10;
    big.iterations = u64::MAX - 1;
    f.add(0, 1, &big, T + 1).unwrap();
    let mut more = batch(0, T, &[1000]);
    more.labels[0].bytes_in = 11;
    more.iterations = 0;
    let reason = assert_rejected(&mut f, 0, 2, &more, T + 1);
    assert!(matches!(
        reason,
        BatchError::RunTotalOverflow {
            counter: "bytes_in"
        }
    ));
    let mut iterations = batch(0, T, &[1000]);
    iterations.iterations = 2;
    let reason = assert_rejected(&mut f, 0, 3, &iterations, T + 1);
    assert!(matches!(
        reason,
        BatchError::RunTotalOverflow {
            counter: "iterations"
        }
    ));
    f.finish();
    assert_eq!(f.total().unwrap().bytes_in, u64::MAX - 10);
}

#[test]
fn only_an_agents_first_rejection_is_reported_and_a_redelivery_counts_once() {
    let mut f = Fold::new(10, Vec::new(), T);
    let bad = batch(0, 0, &[1000]);
    let first = f.add(0, 1, &bad, T).unwrap_err();
    assert!(first.first);
    assert_eq!(
        first.to_string(),
        format!(
            "batch 1 from agent 0 rejected: second 0 is outside the run's window {}..={} (the \
             start minus the late window, to a few seconds past the coordinator's clock): is \
             the agent's clock right?",
            T - 10,
            T + 5
        )
    );
    assert!(!f.add(0, 1, &bad, T).unwrap_err().first);
    assert!(!f.add(0, 2, &bad, T).unwrap_err().first);
    assert!(f.add(1, 1, &bad, T).unwrap_err().first);
    assert_eq!(f.rejected_from(0), 2, "seq 1 twice counts once");
    assert_eq!(f.rejected_from(1), 1);
    assert_eq!(f.batches_from(0), 0, "a rejected batch is not received");
    assert_eq!(f.rejected(), &HashMap::from([(0, 2), (1, 1)]));
}

#[test]
fn labels_past_the_per_run_cap_are_counted_together_and_exactly() {
    let mut f = Fold::new(2, vec!["local".into()], T);
    let named = |name: String| {
        let mut b = batch(0, T, &[1000]);
        for l in &mut b.labels {
            l.label = name.clone();
        }
        b
    };
    for i in 0..MAX_LABELS_PER_RUN + 5 {
        f.add(0, i as u64 + 1, &named(format!("GET /item/{i}")), T + 1)
            .expect("a real batch");
    }
    f.finish();
    assert_eq!(
        f.totals.len(),
        MAX_LABELS_PER_RUN + 1,
        "the cap plus the catch-all"
    );
    assert_eq!(f.totals[OTHER_LABELS].requests, 5);
    assert_eq!(
        f.total().expect("total").requests,
        (MAX_LABELS_PER_RUN + 5) as u64,
        "every request counted"
    );
    assert!(f.totals.contains_key("GET /item/0"));
    assert!(!f
        .totals
        .contains_key(&format!("GET /item/{}", MAX_LABELS_PER_RUN)));
}
