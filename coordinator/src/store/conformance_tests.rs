//! What every `RunStore` must do, run against each backend: the SQLite file (always) and
//! DynamoDB on moto's server (when moto is installed; CI requires it).

use messages::outcome::{EndState, Verdict};

use super::catalog::{Baseline, Schedule, ScheduledSpec, When};
use super::tokens::{generate, Role};
use super::*;

fn accepted(run: &str, spec: &str, at_ms: u64) -> Accepted {
    Accepted {
        run_id: run.into(),
        spec: spec.into(),
        source: format!("inbox/{spec}.yaml"),
        correlation_id: (run == "r1").then(|| "deploy-1".to_string()),
        accepted_at_ms: at_ms,
        agents: 2,
        spec_text: format!("name: {spec}\n"),
    }
}

fn finished(run: &str, state: EndState, verdict: Verdict, requests: u64) -> Finished {
    Finished {
        run_id: run.into(),
        ended_at_ms: 99,
        state,
        reason: (state != EndState::Completed).then(|| "why".to_string()),
        verdict,
        requests,
        errors: 1,
        rps: 12.5,
        p95_ms: 3.25,
        p99_ms: 4.5,
        agents_lost: 0,
        results: Some(format!("/results/{run}")),
        results_error: None,
        summary: "{\"total\":{}}".into(),
    }
}

pub fn runs(s: &dyn RunStore) {
    for (i, (run, spec)) in [
        ("r1", "shop"),
        ("r2", "shop"),
        ("r3", "cart"),
        ("r4", "shop"),
    ]
    .iter()
    .enumerate()
    {
        s.record_accepted(&accepted(run, spec, 1000 + i as u64 * 10))
            .expect("accepted");
    }
    // A resumed run's second acceptance changes nothing.
    s.record_accepted(&Accepted {
        agents: 9,
        ..accepted("r1", "shop", 1000)
    })
    .expect("again");
    assert_eq!(s.get("r1").expect("get").expect("r1").accepted.agents, 2);
    s.record_status("r4", RunStatus::Queued).expect("queued");
    s.record_ended(&finished("r1", EndState::Completed, Verdict::Passed, 100))
        .expect("r1 ended");
    s.record_ended(&finished("r2", EndState::Failed, Verdict::Failed, 7))
        .expect("r2 ended");
    assert!(matches!(
        s.record_ended(&finished("ghost", EndState::Failed, Verdict::Failed, 0)),
        Err(StoreError::NotRecorded(_))
    ));
    assert!(
        s.record_status("r1", RunStatus::Running).is_err(),
        "an ended run stays ended"
    );
    let r1 = s.get("r1").expect("get").expect("r1");
    assert_eq!(r1.accepted, accepted("r1", "shop", 1000));
    assert_eq!(r1.status, RunStatus::Ended(EndState::Completed));
    assert_eq!(
        r1.finished.expect("finished"),
        finished("r1", EndState::Completed, Verdict::Passed, 100)
    );
    assert!(s.get("nope").expect("get").is_none());

    let ids = |f: &RunFilter| -> Vec<String> {
        s.list(f, None, 100)
            .expect("list")
            .rows
            .iter()
            .map(|r| r.accepted.run_id.clone())
            .collect()
    };
    assert_eq!(ids(&RunFilter::default()), ["r4", "r3", "r2", "r1"]);
    let shop = RunFilter {
        spec: Some("shop".into()),
        ..Default::default()
    };
    assert_eq!(ids(&shop), ["r4", "r2", "r1"]);
    let queued = RunFilter {
        status: Some(RunStatus::Queued),
        ..Default::default()
    };
    assert_eq!(ids(&queued), ["r4"]);
    let passed = RunFilter {
        verdict: Some(Verdict::Passed),
        ..Default::default()
    };
    assert_eq!(ids(&passed), ["r1"]);
    let window = RunFilter {
        accepted_from_ms: Some(1010),
        accepted_before_ms: Some(1030),
        ..Default::default()
    };
    assert_eq!(ids(&window), ["r3", "r2"]);
    // Pages of two, then the rest.
    let p1 = s.list(&RunFilter::default(), None, 2).expect("page 1");
    assert_eq!(p1.rows.len(), 2);
    let next = p1.next.expect("more");
    s.record_accepted(&accepted("r5", "shop", 2000))
        .expect("a newer run");
    let p2 = s
        .list(&RunFilter::default(), Some(&next), 2)
        .expect("page 2");
    let p2: Vec<&str> = p2.rows.iter().map(|r| r.accepted.run_id.as_str()).collect();
    assert_eq!(p2, ["r2", "r1"], "a newer run shifts nothing");
    assert!(matches!(
        s.list(&RunFilter::default(), None, 0),
        Err(StoreError::Limit(0))
    ));

    // Pruning spares baselines.
    s.set_baseline(&Baseline {
        spec: "shop".into(),
        run_id: "r1".into(),
        set_at_ms: 5,
        set_by: "alice".into(),
    })
    .expect("baseline");
    assert_eq!(s.prune(1025).expect("prune"), 2, "r2 and r3");
    assert_eq!(ids(&RunFilter::default()), ["r5", "r4", "r1"]);
    assert_eq!(
        s.baseline("shop").expect("baseline").expect("set").run_id,
        "r1"
    );
}

pub fn catalog(s: &dyn RunStore) {
    let v1 = s.put_spec("shop", "name: shop\n", "ci", 1).expect("v1");
    assert_eq!(v1.version, 1);
    assert_eq!(
        s.put_spec("shop", "name: shop\n", "ci", 2).expect("same"),
        v1
    );
    let v2 = s
        .put_spec("shop", "name: shop\n#2\n", "bob", 3)
        .expect("v2");
    assert_eq!(v2.version, 2);
    assert_eq!(s.spec("shop", None).expect("latest"), Some(v2.clone()));
    assert_eq!(s.spec("shop", Some(1)).expect("v1"), Some(v1));
    assert_eq!(s.spec("shop", Some(7)).expect("none"), None);
    let vs: Vec<u32> = s
        .spec_versions("shop")
        .expect("versions")
        .iter()
        .map(|v| v.version)
        .collect();
    assert_eq!(vs, [2, 1]);
    s.put_spec("cart", "name: cart\n", "ci", 4).expect("cart");
    let all = s.specs().expect("specs");
    let names: Vec<(&str, u32)> = all.iter().map(|e| (e.name.as_str(), e.latest)).collect();
    assert_eq!(names, [("cart", 1), ("shop", 2)]);

    let daily = Schedule {
        id: "s1".into(),
        name: "mornings".into(),
        spec: ScheduledSpec::Stored("shop".into()),
        when: When::Cron("0 9 * * MON-FRI".into()),
        timezone: "Europe/Paris".into(),
        enabled: true,
        created_at_ms: 1,
        created_by: "admin".into(),
        last_fired_ms: None,
        last_error: None,
    };
    let once = Schedule {
        id: "s2".into(),
        spec: ScheduledSpec::Inline("name: x\n".into()),
        when: When::Once(5_000),
        created_at_ms: 2,
        ..daily.clone()
    };
    s.add_schedule(&daily).expect("daily");
    s.add_schedule(&once).expect("once");
    assert_eq!(s.schedules().expect("list"), [daily.clone(), once]);
    s.record_fired("s2", 5_000, Some("rejected"), false)
        .expect("fired");
    s.record_fired("s1", 6_000, None, true).expect("fired");
    assert!(s.set_schedule_enabled("s1", false).expect("off"));
    assert!(!s.set_schedule_enabled("zz", false).expect("none"));
    let after = s.schedules().expect("list");
    assert_eq!(after[0].last_fired_ms, Some(6_000));
    assert!(!after[0].enabled);
    assert_eq!(after[1].last_error.as_deref(), Some("rejected"));
    assert!(s.remove_schedule("s1").expect("rm"));
    assert!(!s.remove_schedule("s1").expect("again"));

    let t = generate(Role::Runner, "pipeline", 10).expect("token");
    s.create_token(&t.record).expect("create");
    let found = s.token(&t.record.id).expect("get").expect("found");
    assert!(found.admits(&t.token));
    assert_eq!(found, t.record);
    assert!(s.token("ffffffff").expect("get").is_none());
    assert!(s.revoke_token(&t.record.id, 20).expect("revoke"));
    assert!(!s.revoke_token(&t.record.id, 21).expect("again"));
    assert!(!s
        .token(&t.record.id)
        .expect("get")
        .expect("found")
        .admits(&t.token));
    assert_eq!(s.tokens().expect("list").len(), 1);
}

#[test]
fn sqlite_keeps_what_every_store_must() {
    let dir = tempfile::tempdir().expect("dir");
    let s = SqliteStore::open_in(dir.path()).expect("open");
    runs(&s);
    catalog(&s);
}

#[test]
fn dynamodb_keeps_what_every_store_must() {
    let Some(moto) = herd_tests::aws::start_moto() else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(herd_tests::aws::create_history_table(
        &moto.url,
        "herd-history",
    ));
    drop(rt);
    // SAFETY: tests in this binary that read AWS credentials all want these fakes.
    unsafe {
        std::env::set_var("AWS_ACCESS_KEY_ID", "test");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "test");
        std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
    }
    let s = DynamoStore::connect("herd-history", "us-east-1", Some(&moto.url)).expect("connect");
    runs(&s);
    catalog(&s);
    let missing = DynamoStore::connect("no-such-table", "us-east-1", Some(&moto.url));
    let e = missing.err().expect("refused");
    assert!(e.to_string().contains("no-such-table"), "{e}");
}
