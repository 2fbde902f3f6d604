//! The local profile's history: one SQLite file, `<state_dir>/history.sqlite3`, compiled in
//! (`rusqlite`'s bundled SQLite), so there is nothing to install or set up.
//!
//! The file says it is herd's (`PRAGMA application_id`) and which schema it holds
//! (`PRAGMA user_version`); opening applies the migrations it lacks, in one transaction each,
//! and refuses — naming the file — one that is someone else's database, not a database, or
//! from a newer herd. WAL mode: the coming API's readers do not wait on the writer.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::types::Value;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension, Row};

use super::catalog::{Baseline, Schedule, SpecEntry, SpecVersion};
use super::{
    parse_verdict, verdict_str, Accepted, Cursor, Finished, Page, RunFilter, RunRow, RunStatus,
    RunStore, StoreError, MAX_PAGE,
};

/// The file's name in the state folder.
pub const FILE: &str = "history.sqlite3";
/// "herd" in ASCII: marks the file as a herd history.
const APPLICATION_ID: i64 = 0x6865_7264;
/// How long a statement waits for another connection's lock (the API's readers, a backup).
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Each migration takes the schema from its index to the next; `user_version` is how many ran.
const MIGRATIONS: &[&str] = &[
    "
    CREATE TABLE runs (
        run_id         TEXT PRIMARY KEY,
        spec           TEXT NOT NULL,
        source         TEXT NOT NULL,
        correlation_id TEXT,
        accepted_at_ms INTEGER NOT NULL,
        agents         INTEGER NOT NULL,
        spec_text      TEXT NOT NULL,
        state          TEXT NOT NULL,
        ended_at_ms    INTEGER,
        reason         TEXT,
        verdict        TEXT,
        requests       INTEGER,
        errors         INTEGER,
        rps            REAL,
        p95_ms         REAL,
        p99_ms         REAL,
        agents_lost    INTEGER,
        results        TEXT,
        results_error  TEXT,
        summary        TEXT
    ) STRICT;
    CREATE INDEX runs_by_accepted ON runs (accepted_at_ms, run_id);
    CREATE INDEX runs_by_spec ON runs (spec, accepted_at_ms, run_id);
    CREATE INDEX runs_by_state ON runs (state, accepted_at_ms, run_id);
    CREATE INDEX runs_by_verdict ON runs (verdict, accepted_at_ms, run_id);
",
    "
    CREATE TABLE tokens (
        id             TEXT PRIMARY KEY,
        hash           BLOB NOT NULL,
        role           TEXT NOT NULL,
        name           TEXT NOT NULL,
        created_at_ms  INTEGER NOT NULL,
        revoked_at_ms  INTEGER
    ) STRICT;
",
    "
    CREATE TABLE specs (
        name           TEXT NOT NULL,
        version        INTEGER NOT NULL,
        text           TEXT NOT NULL,
        created_at_ms  INTEGER NOT NULL,
        created_by     TEXT NOT NULL,
        PRIMARY KEY (name, version)
    ) STRICT;
    CREATE TABLE baselines (
        spec           TEXT PRIMARY KEY,
        run_id         TEXT NOT NULL,
        set_at_ms      INTEGER NOT NULL,
        set_by         TEXT NOT NULL
    ) STRICT;
    CREATE TABLE schedules (
        id             TEXT PRIMARY KEY,
        name           TEXT NOT NULL,
        spec_name      TEXT,
        spec_text      TEXT,
        cron           TEXT,
        at_ms          INTEGER,
        timezone       TEXT NOT NULL,
        enabled        INTEGER NOT NULL,
        created_at_ms  INTEGER NOT NULL,
        created_by     TEXT NOT NULL,
        last_fired_ms  INTEGER,
        last_error     TEXT
    ) STRICT;
",
];

const COLUMNS: &str = "run_id, spec, source, correlation_id, accepted_at_ms, agents, spec_text, \
    state, ended_at_ms, reason, verdict, requests, errors, rps, p95_ms, p99_ms, agents_lost, \
    results, results_error, summary";

pub struct SqliteStore {
    path: PathBuf,
    conn: Mutex<Connection>,
}

/// SQLite keeps integers as i64; times and counts beyond that are clamped, not wrapped.
pub(super) fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub(super) fn uint(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

impl SqliteStore {
    /// Opens (or creates) `<state_dir>/history.sqlite3`.
    pub fn open_in(state_dir: &Path) -> Result<SqliteStore, StoreError> {
        SqliteStore::open(&state_dir.join(FILE))
    }

    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let name = path.display().to_string();
        let conn = Connection::open(path).map_err(|e| StoreError::Open {
            path: name.clone(),
            reason: e.to_string(),
        })?;
        let not_history = |e: rusqlite::Error| StoreError::NotHistory {
            path: name.clone(),
            reason: e.to_string(),
        };
        // The first read of the header: a file that is not SQLite fails here.
        let app: i64 = conn
            .query_row("PRAGMA application_id", [], |r| r.get(0))
            .map_err(not_history)?;
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(not_history)?;
        let objects: i64 = conn
            .query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))
            .map_err(not_history)?;
        let fresh = app == 0 && version == 0 && objects == 0;
        if !fresh && app != APPLICATION_ID {
            return Err(StoreError::NotHistory {
                path: name,
                reason: format!("application_id {app:#x}, {objects} schema objects"),
            });
        }
        let known = MIGRATIONS.len() as i64;
        if version > known {
            return Err(StoreError::Newer {
                path: name,
                found: version,
                known,
            });
        }
        let store = SqliteStore {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
        };
        store.with(|c| {
            c.busy_timeout(BUSY_TIMEOUT)?;
            c.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))?;
            c.execute_batch("PRAGMA synchronous = NORMAL")?;
            for (i, step) in MIGRATIONS.iter().enumerate().skip(uint(version) as usize) {
                let tx = c.transaction()?;
                tx.execute_batch(step)?;
                tx.pragma_update(None, "application_id", APPLICATION_ID)?;
                tx.pragma_update(None, "user_version", i as i64 + 1)?;
                tx.commit()?;
            }
            Ok(())
        })?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema version the file holds.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        self.with(|c| c.query_row("PRAGMA user_version", [], |r| r.get(0)))
    }

    pub(super) fn with<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        // A panic while holding the lock leaves the connection as SQLite left it: usable.
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut conn).map_err(|source| StoreError::Sql {
            path: self.path.display().to_string(),
            source,
        })
    }

    fn corrupt(&self, run_id: &str, reason: String) -> StoreError {
        StoreError::Corrupt {
            path: self.path.display().to_string(),
            run_id: run_id.to_string(),
            reason,
        }
    }

    /// A row as read: typed, or an error naming the run and the bad column.
    fn decode(&self, raw: Raw) -> Result<RunRow, StoreError> {
        let status = RunStatus::parse(&raw.state)
            .ok_or_else(|| self.corrupt(&raw.accepted.run_id, format!("state {:?}", raw.state)))?;
        let finished = match status {
            RunStatus::Queued | RunStatus::Running => None,
            RunStatus::Ended(state) => {
                let verdict = raw
                    .verdict
                    .as_deref()
                    .and_then(parse_verdict)
                    .ok_or_else(|| {
                        self.corrupt(&raw.accepted.run_id, format!("verdict {:?}", raw.verdict))
                    })?;
                Some(Finished {
                    run_id: raw.accepted.run_id.clone(),
                    ended_at_ms: uint(raw.ended_at_ms.unwrap_or(0)),
                    state,
                    reason: raw.reason,
                    verdict,
                    requests: uint(raw.requests.unwrap_or(0)),
                    errors: uint(raw.errors.unwrap_or(0)),
                    rps: raw.rps.unwrap_or(0.0),
                    p95_ms: raw.p95_ms.unwrap_or(0.0),
                    p99_ms: raw.p99_ms.unwrap_or(0.0),
                    agents_lost: u32::try_from(raw.agents_lost.unwrap_or(0)).unwrap_or(u32::MAX),
                    results: raw.results,
                    results_error: raw.results_error,
                    summary: raw.summary.unwrap_or_default(),
                })
            }
        };
        Ok(RunRow {
            accepted: raw.accepted,
            status,
            finished,
        })
    }
}

/// A row as SQLite holds it, before its text columns are checked.
struct Raw {
    accepted: Accepted,
    state: String,
    ended_at_ms: Option<i64>,
    reason: Option<String>,
    verdict: Option<String>,
    requests: Option<i64>,
    errors: Option<i64>,
    rps: Option<f64>,
    p95_ms: Option<f64>,
    p99_ms: Option<f64>,
    agents_lost: Option<i64>,
    results: Option<String>,
    results_error: Option<String>,
    summary: Option<String>,
}

fn raw(r: &Row<'_>) -> rusqlite::Result<Raw> {
    Ok(Raw {
        accepted: Accepted {
            run_id: r.get(0)?,
            spec: r.get(1)?,
            source: r.get(2)?,
            correlation_id: r.get(3)?,
            accepted_at_ms: uint(r.get(4)?),
            agents: u32::try_from(r.get::<_, i64>(5)?).unwrap_or(u32::MAX),
            spec_text: r.get(6)?,
        },
        state: r.get(7)?,
        ended_at_ms: r.get(8)?,
        reason: r.get(9)?,
        verdict: r.get(10)?,
        requests: r.get(11)?,
        errors: r.get(12)?,
        rps: r.get(13)?,
        p95_ms: r.get(14)?,
        p99_ms: r.get(15)?,
        agents_lost: r.get(16)?,
        results: r.get(17)?,
        results_error: r.get(18)?,
        summary: r.get(19)?,
    })
}

impl RunStore for SqliteStore {
    fn record_accepted(&self, run: &Accepted) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO runs (run_id, spec, source, correlation_id, accepted_at_ms, agents, \
                 spec_text, state) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'running') \
                 ON CONFLICT (run_id) DO NOTHING",
                params![
                    run.run_id,
                    run.spec,
                    run.source,
                    run.correlation_id,
                    int(run.accepted_at_ms),
                    i64::from(run.agents),
                    run.spec_text,
                ],
            )
        })?;
        Ok(())
    }

    fn record_ended(&self, run: &Finished) -> Result<(), StoreError> {
        let changed = self.with(|c| {
            c.execute(
                "UPDATE runs SET state = ?2, ended_at_ms = ?3, reason = ?4, verdict = ?5, \
                 requests = ?6, errors = ?7, rps = ?8, p95_ms = ?9, p99_ms = ?10, \
                 agents_lost = ?11, results = ?12, results_error = ?13, summary = ?14 \
                 WHERE run_id = ?1",
                params![
                    run.run_id,
                    run.state.as_str(),
                    int(run.ended_at_ms),
                    run.reason,
                    verdict_str(run.verdict),
                    int(run.requests),
                    int(run.errors),
                    run.rps,
                    run.p95_ms,
                    run.p99_ms,
                    i64::from(run.agents_lost),
                    run.results,
                    run.results_error,
                    run.summary,
                ],
            )
        })?;
        if changed == 0 {
            return Err(StoreError::NotRecorded(run.run_id.clone()));
        }
        Ok(())
    }

    fn record_status(&self, run_id: &str, status: RunStatus) -> Result<(), StoreError> {
        let changed = self.with(|c| {
            c.execute(
                "UPDATE runs SET state = ?2 WHERE run_id = ?1 AND state IN ('queued', 'running')",
                params![run_id, status.as_str()],
            )
        })?;
        if changed == 0 {
            return Err(StoreError::NotRecorded(run_id.to_string()));
        }
        Ok(())
    }

    fn get(&self, run_id: &str) -> Result<Option<RunRow>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM runs WHERE run_id = ?1");
        let raw = self.with(|c| c.query_row(&sql, [run_id], raw).optional())?;
        raw.map(|r| self.decode(r)).transpose()
    }

    fn list(
        &self,
        filter: &RunFilter,
        after: Option<&Cursor>,
        limit: u32,
    ) -> Result<Page, StoreError> {
        if limit == 0 || limit > MAX_PAGE {
            return Err(StoreError::Limit(limit));
        }
        let mut clauses: Vec<&str> = Vec::new();
        let mut args: Vec<Value> = Vec::new();
        if let Some(spec) = &filter.spec {
            clauses.push("spec = ?");
            args.push(Value::Text(spec.clone()));
        }
        if let Some(status) = filter.status {
            clauses.push("state = ?");
            args.push(Value::Text(status.as_str().into()));
        }
        if let Some(v) = filter.verdict {
            clauses.push("verdict = ?");
            args.push(Value::Text(verdict_str(v).into()));
        }
        if let Some(from) = filter.accepted_from_ms {
            clauses.push("accepted_at_ms >= ?");
            args.push(Value::Integer(int(from)));
        }
        if let Some(before) = filter.accepted_before_ms {
            clauses.push("accepted_at_ms < ?");
            args.push(Value::Integer(int(before)));
        }
        if let Some(c) = after {
            clauses.push("(accepted_at_ms, run_id) < (?, ?)");
            args.push(Value::Integer(int(c.accepted_at_ms)));
            args.push(Value::Text(c.run_id.clone()));
        }
        let filter_sql = if clauses.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", clauses.join(" AND "))
        };
        // One row past the page says whether another page follows.
        args.push(Value::Integer(i64::from(limit) + 1));
        let sql = format!(
            "SELECT {COLUMNS} FROM runs {filter_sql} \
             ORDER BY accepted_at_ms DESC, run_id DESC LIMIT ?"
        );
        let raws = self.with(|c| {
            let mut stmt = c.prepare(&sql)?;
            let rows = stmt.query_map(params_from_iter(args), raw)?;
            rows.collect::<rusqlite::Result<Vec<Raw>>>()
        })?;
        let mut rows = raws
            .into_iter()
            .map(|r| self.decode(r))
            .collect::<Result<Vec<_>, _>>()?;
        let more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let next = more.then(|| rows.last()).flatten().map(|r| Cursor {
            accepted_at_ms: r.accepted.accepted_at_ms,
            run_id: r.accepted.run_id.clone(),
        });
        Ok(Page { rows, next })
    }

    fn prune(&self, cutoff_ms: u64) -> Result<u64, StoreError> {
        let n = self.with(|c| {
            c.execute(
                // A baseline is kept whatever its age: later runs are compared with it.
                "DELETE FROM runs WHERE accepted_at_ms < ?1 \
                 AND run_id NOT IN (SELECT run_id FROM baselines)",
                [int(cutoff_ms)],
            )
        })?;
        Ok(n as u64)
    }

    fn put_spec(
        &self,
        name: &str,
        text: &str,
        by: &str,
        at_ms: u64,
    ) -> Result<SpecVersion, StoreError> {
        self.insert_spec(name, text, by, at_ms)
    }
    fn spec(&self, name: &str, version: Option<u32>) -> Result<Option<SpecVersion>, StoreError> {
        self.find_spec(name, version)
    }
    fn spec_versions(&self, name: &str) -> Result<Vec<SpecVersion>, StoreError> {
        self.versions_of(name)
    }
    fn specs(&self) -> Result<Vec<SpecEntry>, StoreError> {
        self.all_specs()
    }
    fn set_baseline(&self, b: &Baseline) -> Result<(), StoreError> {
        self.upsert_baseline(b)
    }
    fn baseline(&self, spec: &str) -> Result<Option<Baseline>, StoreError> {
        self.find_baseline(spec)
    }
    fn add_schedule(&self, s: &Schedule) -> Result<(), StoreError> {
        self.insert_schedule(s)
    }
    fn schedules(&self) -> Result<Vec<Schedule>, StoreError> {
        self.all_schedules()
    }
    fn remove_schedule(&self, id: &str) -> Result<bool, StoreError> {
        self.drop_schedule(id)
    }
    fn set_schedule_enabled(&self, id: &str, enabled: bool) -> Result<bool, StoreError> {
        self.enable_schedule(id, enabled)
    }
    fn record_fired(
        &self,
        id: &str,
        at_ms: u64,
        error: Option<&str>,
        still_enabled: bool,
    ) -> Result<(), StoreError> {
        self.fired(id, at_ms, error, still_enabled)
    }

    fn create_token(&self, token: &super::TokenRecord) -> Result<(), StoreError> {
        self.insert_token(token)
    }
    fn token(&self, id: &str) -> Result<Option<super::TokenRecord>, StoreError> {
        self.find_token(id)
    }
    fn tokens(&self) -> Result<Vec<super::TokenRecord>, StoreError> {
        self.all_tokens()
    }
    fn revoke_token(&self, id: &str, at_ms: u64) -> Result<bool, StoreError> {
        self.revoke(id, at_ms)
    }
}
