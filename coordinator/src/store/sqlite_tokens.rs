//! The `tokens` table of the SQLite history: API token hashes and roles.

use rusqlite::{params, OptionalExtension, Row};

use super::sqlite::{int, uint, SqliteStore};
use super::tokens::{Role, TokenRecord, MAX_TOKENS};
use super::StoreError;

const COLUMNS: &str = "id, hash, role, name, created_at_ms, revoked_at_ms";

struct Raw {
    id: String,
    hash: Vec<u8>,
    role: String,
    name: String,
    created_at_ms: i64,
    revoked_at_ms: Option<i64>,
}

fn raw(r: &Row<'_>) -> rusqlite::Result<Raw> {
    Ok(Raw {
        id: r.get(0)?,
        hash: r.get(1)?,
        role: r.get(2)?,
        name: r.get(3)?,
        created_at_ms: r.get(4)?,
        revoked_at_ms: r.get(5)?,
    })
}

impl SqliteStore {
    fn decode_token(&self, r: Raw) -> Result<TokenRecord, StoreError> {
        let bad = |reason: String| StoreError::CorruptToken {
            path: self.path().display().to_string(),
            id: r.id.clone(),
            reason,
        };
        let role = Role::parse(&r.role).ok_or_else(|| bad(format!("role {:?}", r.role)))?;
        let hash: [u8; 32] = r
            .hash
            .as_slice()
            .try_into()
            .map_err(|_| bad(format!("hash of {} bytes", r.hash.len())))?;
        Ok(TokenRecord {
            id: r.id.clone(),
            hash,
            role,
            name: r.name.clone(),
            created_at_ms: uint(r.created_at_ms),
            revoked_at_ms: r.revoked_at_ms.map(uint),
        })
    }

    pub(super) fn insert_token(&self, t: &TokenRecord) -> Result<(), StoreError> {
        let full = self.with(|c| {
            let tx = c.transaction()?;
            let n: i64 = tx.query_row("SELECT count(*) FROM tokens", [], |r| r.get(0))?;
            if n >= MAX_TOKENS as i64 {
                return Ok(true);
            }
            tx.execute(
                "INSERT INTO tokens (id, hash, role, name, created_at_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![t.id, t.hash.as_slice(), t.role.as_str(), t.name, int(t.created_at_ms)],
            )?;
            tx.commit()?;
            Ok(false)
        })?;
        if full {
            return Err(StoreError::TooManyTokens);
        }
        Ok(())
    }

    pub(super) fn find_token(&self, id: &str) -> Result<Option<TokenRecord>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM tokens WHERE id = ?1");
        let r = self.with(|c| c.query_row(&sql, [id], raw).optional())?;
        r.map(|r| self.decode_token(r)).transpose()
    }

    pub(super) fn all_tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM tokens ORDER BY created_at_ms DESC, id LIMIT {MAX_TOKENS}"
        );
        let raws = self.with(|c| {
            let mut stmt = c.prepare(&sql)?;
            let rows = stmt.query_map([], raw)?;
            rows.collect::<rusqlite::Result<Vec<Raw>>>()
        })?;
        raws.into_iter().map(|r| self.decode_token(r)).collect()
    }

    pub(super) fn revoke(&self, id: &str, at_ms: u64) -> Result<bool, StoreError> {
        let n = self.with(|c| {
            c.execute(
                "UPDATE tokens SET revoked_at_ms = ?2 WHERE id = ?1 AND revoked_at_ms IS NULL",
                params![id, int(at_ms)],
            )
        })?;
        Ok(n > 0)
    }
}
