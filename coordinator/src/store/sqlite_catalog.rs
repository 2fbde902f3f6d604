//! The `specs`, `baselines` and `schedules` tables of the SQLite history.

use rusqlite::{params, OptionalExtension, Row};

use super::catalog::{
    Baseline, Schedule, ScheduledSpec, SpecEntry, SpecVersion, When, MAX_SCHEDULES, MAX_SPECS,
    MAX_VERSIONS,
};
use super::sqlite::{int, uint, SqliteStore};
use super::StoreError;

fn version(r: &Row<'_>) -> rusqlite::Result<SpecVersion> {
    Ok(SpecVersion {
        name: r.get(0)?,
        version: u32::try_from(r.get::<_, i64>(1)?).unwrap_or(0),
        text: r.get(2)?,
        created_at_ms: uint(r.get(3)?),
        created_by: r.get(4)?,
    })
}

const SCHEDULE_COLUMNS: &str = "id, name, spec_name, spec_text, cron, at_ms, timezone, enabled, \
    created_at_ms, created_by, last_fired_ms, last_error";

fn schedule(r: &Row<'_>) -> rusqlite::Result<(Schedule, bool)> {
    let spec_name: Option<String> = r.get(2)?;
    let spec_text: Option<String> = r.get(3)?;
    let cron: Option<String> = r.get(4)?;
    let at: Option<i64> = r.get(5)?;
    let spec = match (spec_name, spec_text) {
        (Some(n), None) => Some(ScheduledSpec::Stored(n)),
        (None, Some(t)) => Some(ScheduledSpec::Inline(t)),
        _ => None,
    };
    let when = match (cron, at) {
        (Some(c), None) => Some(When::Cron(c)),
        (None, Some(a)) => Some(When::Once(uint(a))),
        _ => None,
    };
    let ok = spec.is_some() && when.is_some();
    Ok((
        Schedule {
            id: r.get(0)?,
            name: r.get(1)?,
            spec: spec.unwrap_or(ScheduledSpec::Inline(String::new())),
            when: when.unwrap_or(When::Once(0)),
            timezone: r.get(6)?,
            enabled: r.get::<_, i64>(7)? != 0,
            created_at_ms: uint(r.get(8)?),
            created_by: r.get(9)?,
            last_fired_ms: r.get::<_, Option<i64>>(10)?.map(uint),
            last_error: r.get(11)?,
        },
        ok,
    ))
}

impl SqliteStore {
    fn corrupt_schedule(&self, id: &str) -> StoreError {
        StoreError::Corrupt {
            path: self.path().display().to_string(),
            run_id: format!("schedule {id}"),
            reason: "it names neither or both of a spec and a text, a cron and an instant".into(),
        }
    }

    /// Keeps `text` as the next version of `name` — or answers the latest, unchanged, when it
    /// is the same text.
    pub(super) fn insert_spec(
        &self,
        name: &str,
        text: &str,
        by: &str,
        at_ms: u64,
    ) -> Result<SpecVersion, StoreError> {
        enum Out {
            Kept(SpecVersion),
            TooManySpecs,
            TooManyVersions,
        }
        let out = self.with(|c| {
            let tx = c.transaction()?;
            let latest = tx
                .query_row(
                    "SELECT name, version, text, created_at_ms, created_by FROM specs \
                     WHERE name = ?1 ORDER BY version DESC LIMIT 1",
                    [name],
                    version,
                )
                .optional()?;
            let next = match &latest {
                Some(v) if v.text == text => return Ok(Out::Kept(v.clone())),
                Some(v) if v.version >= MAX_VERSIONS => return Ok(Out::TooManyVersions),
                Some(v) => v.version + 1,
                None => {
                    let names: i64 =
                        tx.query_row("SELECT count(DISTINCT name) FROM specs", [], |r| r.get(0))?;
                    if names >= MAX_SPECS as i64 {
                        return Ok(Out::TooManySpecs);
                    }
                    1
                }
            };
            tx.execute(
                "INSERT INTO specs (name, version, text, created_at_ms, created_by) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![name, i64::from(next), text, int(at_ms), by],
            )?;
            tx.commit()?;
            Ok(Out::Kept(SpecVersion {
                name: name.into(),
                version: next,
                text: text.into(),
                created_at_ms: at_ms,
                created_by: by.into(),
            }))
        })?;
        match out {
            Out::Kept(v) => Ok(v),
            Out::TooManySpecs => Err(StoreError::Full(format!(
                "the history holds {MAX_SPECS} specs already"
            ))),
            Out::TooManyVersions => Err(StoreError::Full(format!(
                "spec {name} has {MAX_VERSIONS} versions already"
            ))),
        }
    }

    pub(super) fn find_spec(
        &self,
        name: &str,
        v: Option<u32>,
    ) -> Result<Option<SpecVersion>, StoreError> {
        self.with(|c| match v {
            Some(v) => c
                .query_row(
                    "SELECT name, version, text, created_at_ms, created_by FROM specs \
                     WHERE name = ?1 AND version = ?2",
                    params![name, i64::from(v)],
                    version,
                )
                .optional(),
            None => c
                .query_row(
                    "SELECT name, version, text, created_at_ms, created_by FROM specs \
                     WHERE name = ?1 ORDER BY version DESC LIMIT 1",
                    [name],
                    version,
                )
                .optional(),
        })
    }

    /// Every version of `name`, newest first, without their texts.
    pub(super) fn versions_of(&self, name: &str) -> Result<Vec<SpecVersion>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT name, version, '', created_at_ms, created_by FROM specs \
                 WHERE name = ?1 ORDER BY version DESC LIMIT {MAX_VERSIONS}"
            ))?;
            let rows = stmt.query_map([name], version)?;
            rows.collect()
        })
    }

    pub(super) fn all_specs(&self) -> Result<Vec<SpecEntry>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT s.name, max(s.version), max(s.created_at_ms), b.run_id FROM specs s \
                 LEFT JOIN baselines b ON b.spec = s.name GROUP BY s.name ORDER BY s.name \
                 LIMIT {MAX_SPECS}"
            ))?;
            let rows = stmt.query_map([], |r| {
                Ok(SpecEntry {
                    name: r.get(0)?,
                    latest: u32::try_from(r.get::<_, i64>(1)?).unwrap_or(0),
                    updated_at_ms: uint(r.get(2)?),
                    baseline: r.get(3)?,
                })
            })?;
            rows.collect()
        })
    }

    pub(super) fn upsert_baseline(&self, b: &Baseline) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO baselines (spec, run_id, set_at_ms, set_by) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (spec) DO UPDATE SET run_id = ?2, set_at_ms = ?3, set_by = ?4",
                params![b.spec, b.run_id, int(b.set_at_ms), b.set_by],
            )
        })?;
        Ok(())
    }

    pub(super) fn find_baseline(&self, spec: &str) -> Result<Option<Baseline>, StoreError> {
        self.with(|c| {
            c.query_row(
                "SELECT spec, run_id, set_at_ms, set_by FROM baselines WHERE spec = ?1",
                [spec],
                |r| {
                    Ok(Baseline {
                        spec: r.get(0)?,
                        run_id: r.get(1)?,
                        set_at_ms: uint(r.get(2)?),
                        set_by: r.get(3)?,
                    })
                },
            )
            .optional()
        })
    }

    pub(super) fn insert_schedule(&self, s: &Schedule) -> Result<(), StoreError> {
        let (spec_name, spec_text) = match &s.spec {
            ScheduledSpec::Stored(n) => (Some(n.as_str()), None),
            ScheduledSpec::Inline(t) => (None, Some(t.as_str())),
        };
        let (cron, at) = match &s.when {
            When::Cron(c) => (Some(c.as_str()), None),
            When::Once(a) => (None, Some(int(*a))),
        };
        let full = self.with(|c| {
            let tx = c.transaction()?;
            let n: i64 = tx.query_row("SELECT count(*) FROM schedules", [], |r| r.get(0))?;
            if n >= MAX_SCHEDULES as i64 {
                return Ok(true);
            }
            tx.execute(
                &format!(
                    "INSERT INTO schedules ({SCHEDULE_COLUMNS}) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
                ),
                params![
                    s.id,
                    s.name,
                    spec_name,
                    spec_text,
                    cron,
                    at,
                    s.timezone,
                    i64::from(s.enabled),
                    int(s.created_at_ms),
                    s.created_by,
                    s.last_fired_ms.map(int),
                    s.last_error,
                ],
            )?;
            tx.commit()?;
            Ok(false)
        })?;
        if full {
            return Err(StoreError::Full(format!(
                "the history holds {MAX_SCHEDULES} schedules already"
            )));
        }
        Ok(())
    }

    pub(super) fn all_schedules(&self) -> Result<Vec<Schedule>, StoreError> {
        let rows = self.with(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {SCHEDULE_COLUMNS} FROM schedules ORDER BY created_at_ms, id \
                 LIMIT {MAX_SCHEDULES}"
            ))?;
            let rows = stmt.query_map([], schedule)?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })?;
        rows.into_iter()
            .map(|(s, ok)| {
                if ok {
                    Ok(s)
                } else {
                    Err(self.corrupt_schedule(&s.id))
                }
            })
            .collect()
    }

    pub(super) fn drop_schedule(&self, id: &str) -> Result<bool, StoreError> {
        let n = self.with(|c| c.execute("DELETE FROM schedules WHERE id = ?1", [id]))?;
        Ok(n > 0)
    }

    pub(super) fn enable_schedule(&self, id: &str, enabled: bool) -> Result<bool, StoreError> {
        let n = self.with(|c| {
            c.execute(
                "UPDATE schedules SET enabled = ?2 WHERE id = ?1",
                params![id, i64::from(enabled)],
            )
        })?;
        Ok(n > 0)
    }

    pub(super) fn fired(
        &self,
        id: &str,
        at_ms: u64,
        error: Option<&str>,
        still_enabled: bool,
    ) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "UPDATE schedules SET last_fired_ms = ?2, last_error = ?3, enabled = ?4 \
                 WHERE id = ?1",
                params![id, int(at_ms), error, i64::from(still_enabled)],
            )
        })?;
        Ok(())
    }
}
