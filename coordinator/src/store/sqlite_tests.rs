//! The SQLite history on a real file in a temp folder.

use messages::outcome::{EndState, Verdict};

use super::*;

fn accepted(run: &str, spec: &str, at_ms: u64) -> Accepted {
    Accepted {
        run_id: run.into(),
        spec: spec.into(),
        source: format!("inbox/{spec}.yaml"),
        correlation_id: None,
        accepted_at_ms: at_ms,
        agents: 2,
        spec_text: format!("name: {spec}\n"),
    }
}

fn finished(run: &str, state: EndState, verdict: Verdict) -> Finished {
    Finished {
        run_id: run.into(),
        ended_at_ms: 9_000,
        state,
        reason: (state != EndState::Completed).then(|| "why".into()),
        verdict,
        requests: 120,
        errors: 3,
        rps: 60.5,
        p95_ms: 4.25,
        p99_ms: 8.5,
        agents_lost: 1,
        results: Some("/results/x".into()),
        results_error: None,
        summary: "{\"verdict\":\"passed\"}".into(),
    }
}

fn store() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().expect("dir");
    let s = SqliteStore::open_in(dir.path()).expect("open");
    (dir, s)
}

fn ids(p: &Page) -> Vec<&str> {
    p.rows.iter().map(|r| r.accepted.run_id.as_str()).collect()
}

#[test]
fn a_run_is_kept_from_acceptance_to_its_end() {
    let (_d, s) = store();
    let a = accepted("shop-1", "shop", 1_000);
    s.record_accepted(&a).expect("accepted");
    let row = s.get("shop-1").expect("get").expect("row");
    assert_eq!(row.status, RunStatus::Running);
    assert_eq!((row.accepted, row.finished), (a.clone(), None));
    // A resumed run is recorded again: the row stays as it was.
    s.record_accepted(&accepted("shop-1", "other", 5))
        .expect("again");
    assert_eq!(s.get("shop-1").expect("get").expect("row").accepted, a);
    let f = finished("shop-1", EndState::Completed, Verdict::Passed);
    s.record_ended(&f).expect("ended");
    let row = s.get("shop-1").expect("get").expect("row");
    assert_eq!(row.status, RunStatus::Ended(EndState::Completed));
    assert_eq!(row.finished, Some(f));
    assert!(s.get("nope").expect("get").is_none());
    let e = s
        .record_ended(&finished("nope", EndState::Failed, Verdict::Failed))
        .expect_err("never accepted");
    assert!(matches!(e, StoreError::NotRecorded(_)), "{e}");
}

#[test]
fn filters_match_every_field_set_and_pages_follow_the_cursor() {
    let (_d, s) = store();
    for i in 0..7u64 {
        let spec = if i % 2 == 0 { "even" } else { "odd" };
        let run = format!("r{i}");
        s.record_accepted(&accepted(&run, spec, 1_000 * i))
            .expect("accepted");
        if i < 5 {
            let (state, verdict) = match i {
                0 | 1 => (EndState::Completed, Verdict::Passed),
                2 => (EndState::Cancelled, Verdict::Failed),
                _ => (EndState::Failed, Verdict::Failed),
            };
            s.record_ended(&finished(&run, state, verdict))
                .expect("ended");
        }
    }
    let all = |f: RunFilter| {
        let p = s.list(&f, None, MAX_PAGE).expect("list");
        assert!(p.next.is_none());
        ids(&p).into_iter().map(String::from).collect::<Vec<_>>()
    };
    assert_eq!(
        all(RunFilter::default()),
        ["r6", "r5", "r4", "r3", "r2", "r1", "r0"]
    );
    let even = RunFilter {
        spec: Some("even".into()),
        ..Default::default()
    };
    assert_eq!(all(even.clone()), ["r6", "r4", "r2", "r0"]);
    let running = RunFilter {
        status: Some(RunStatus::Running),
        ..Default::default()
    };
    assert_eq!(all(running), ["r6", "r5"]);
    let failed_even = RunFilter {
        verdict: Some(Verdict::Failed),
        ..even
    };
    assert_eq!(all(failed_even), ["r4", "r2"]);
    let cancelled = RunFilter {
        status: Some(RunStatus::Ended(EndState::Cancelled)),
        ..Default::default()
    };
    assert_eq!(all(cancelled), ["r2"]);
    let window = RunFilter {
        accepted_from_ms: Some(2_000),
        accepted_before_ms: Some(5_000),
        ..Default::default()
    };
    assert_eq!(all(window), ["r4", "r3", "r2"]);

    // Pages of 3: each starts after the last row of the one before, and the last says so.
    let mut seen = Vec::new();
    let mut after = None;
    for _ in 0..MAX_PAGE {
        let p = s
            .list(&RunFilter::default(), after.as_ref(), 3)
            .expect("page");
        assert!(p.rows.len() <= 3);
        seen.extend(ids(&p).into_iter().map(String::from));
        match p.next {
            Some(c) => after = Some(c),
            None => break,
        }
    }
    assert_eq!(seen, ["r6", "r5", "r4", "r3", "r2", "r1", "r0"]);
    // A full last page says nothing follows.
    let p = s.list(&RunFilter::default(), None, 7).expect("page");
    assert_eq!((p.rows.len(), p.next), (7, None));
}

#[test]
fn a_page_limit_out_of_range_is_refused() {
    let (_d, s) = store();
    for limit in [0, MAX_PAGE + 1] {
        let e = s
            .list(&RunFilter::default(), None, limit)
            .expect_err("refused");
        assert!(matches!(e, StoreError::Limit(l) if l == limit), "{e}");
    }
}

#[test]
fn prune_removes_runs_accepted_before_the_cutoff() {
    let (_d, s) = store();
    for (run, at) in [("old", 1_000), ("edge", 2_000), ("new", 3_000)] {
        s.record_accepted(&accepted(run, "s", at))
            .expect("accepted");
    }
    assert_eq!(s.prune(2_000).expect("prune"), 1);
    let p = s.list(&RunFilter::default(), None, 10).expect("list");
    assert_eq!(ids(&p), ["new", "edge"]);
    let c = HistoryConfig::default();
    assert_eq!(
        c.retention(),
        Some(std::time::Duration::from_secs(90 * 86_400))
    );
    let forever = HistoryConfig {
        retention_days: 0,
        ..Default::default()
    };
    assert_eq!(forever.retention(), None);
    assert!(HistoryConfig {
        retention_days: MAX_RETENTION_DAYS + 1,
        ..Default::default()
    }
    .check()
    .is_err());
}

#[test]
fn rows_survive_a_reopen_and_an_empty_file_is_migrated() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join(sqlite::FILE);
    std::fs::write(&path, b"").expect("empty file");
    {
        let s = SqliteStore::open(&path).expect("an empty file is a new history");
        assert_eq!(s.schema_version().expect("version"), 3);
        s.record_accepted(&accepted("kept", "s", 1))
            .expect("accepted");
    }
    let s = SqliteStore::open(&path).expect("reopen");
    assert_eq!(s.schema_version().expect("version"), 3);
    assert!(s.get("kept").expect("get").is_some());
}

#[test]
fn a_file_that_is_not_a_herd_history_is_refused_by_name() {
    let dir = tempfile::tempdir().expect("dir");
    let text = dir.path().join("notes.sqlite3");
    std::fs::write(
        &text,
        "these are not the rows you are looking for\n".repeat(200),
    )
    .expect("file");
    let e = SqliteStore::open(&text).err().expect("refused");
    assert!(matches!(e, StoreError::NotHistory { .. }), "{e}");
    assert!(e.to_string().contains("notes.sqlite3"), "{e}");

    // Someone else's SQLite database.
    let other = dir.path().join("other.sqlite3");
    let c = rusqlite::Connection::open(&other).expect("sqlite");
    c.execute_batch("CREATE TABLE t (x)").expect("table");
    drop(c);
    let e = SqliteStore::open(&other).err().expect("refused");
    assert!(matches!(e, StoreError::NotHistory { .. }), "{e}");
    assert!(e.to_string().contains("other.sqlite3"), "{e}");

    // A history from a newer herd.
    let newer = dir.path().join("newer.sqlite3");
    drop(SqliteStore::open(&newer).expect("new"));
    let c = rusqlite::Connection::open(&newer).expect("sqlite");
    c.pragma_update(None, "user_version", 99).expect("version");
    drop(c);
    let e = SqliteStore::open(&newer).err().expect("refused");
    assert!(matches!(e, StoreError::Newer { found: 99, .. }), "{e}");
    assert!(e.to_string().contains("newer.sqlite3"), "{e}");
}

#[test]
fn a_history_of_schema_1_gains_the_later_tables_and_keeps_its_runs() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join(sqlite::FILE);
    {
        let s = SqliteStore::open(&path).expect("new");
        s.record_accepted(&accepted("old", "s", 1))
            .expect("accepted");
    }
    // What herd wrote before tokens existed.
    let c = rusqlite::Connection::open(&path).expect("sqlite");
    c.execute_batch(
        "DROP TABLE tokens; DROP TABLE specs; DROP TABLE baselines; DROP TABLE schedules",
    )
    .expect("drop");
    c.pragma_update(None, "user_version", 1).expect("version");
    drop(c);
    let s = SqliteStore::open(&path).expect("migrated");
    assert_eq!(s.schema_version().expect("version"), 3);
    assert!(s.get("old").expect("get").is_some());
    assert!(s.tokens().expect("tokens").is_empty());
    assert!(s.specs().expect("specs").is_empty());
    assert!(s.schedules().expect("schedules").is_empty());
}

#[test]
fn tokens_are_kept_hashed_found_by_id_revoked_and_capped() {
    use super::tokens::{generate, Role, MAX_TOKENS};
    let dir = tempfile::tempdir().expect("dir");
    let s = SqliteStore::open_in(dir.path()).expect("open");
    let t = generate(Role::Runner, "pipeline", 10).expect("token");
    s.create_token(&t.record).expect("create");
    let raw = std::fs::read(dir.path().join(sqlite::FILE)).expect("file");
    assert!(
        !raw.windows(t.token.len()).any(|w| w == t.token.as_bytes()),
        "the token itself is never written"
    );
    let found = s.token(&t.record.id).expect("get").expect("found");
    assert!(found.admits(&t.token));
    assert_eq!(found.role, Role::Runner);
    assert!(s.token("00000000").expect("get").is_none());
    assert!(s.revoke_token(&t.record.id, 20).expect("revoke"));
    assert!(
        !s.revoke_token(&t.record.id, 21).expect("again"),
        "revoked once"
    );
    let found = s.token(&t.record.id).expect("get").expect("found");
    assert_eq!(found.revoked_at_ms, Some(20));
    assert!(!found.admits(&t.token));
    for i in 1..MAX_TOKENS {
        let t = generate(Role::Viewer, "v", i as u64).expect("token");
        s.create_token(&t.record).expect("create");
    }
    assert_eq!(s.tokens().expect("list").len(), MAX_TOKENS);
    let over = generate(Role::Viewer, "v", 0).expect("token");
    assert!(matches!(
        s.create_token(&over.record),
        Err(StoreError::TooManyTokens)
    ));
}
