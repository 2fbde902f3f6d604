//! `herd token create|list|revoke`: API tokens, made in the history the serve config names
//! (its state folder's SQLite file, or its DynamoDB table) — the way to the first admin token,
//! with no API call (whoever can write the state folder or the table already holds the
//! service). The token goes to stdout alone, shown once; the history keeps its hash.

use anyhow::Context as _;

use crate::config::ServeConfig;
use crate::exit::Exit;
use crate::store::tokens::{generate, Role};
use crate::store::RunStore;

/// The history the serve config names (its SQLite file, or its DynamoDB table).
fn open(cfg: &ServeConfig) -> anyhow::Result<Box<dyn RunStore>> {
    crate::serve::history::open_store(cfg).context("opening the run history")
}

pub fn create(cfg: &ServeConfig, role: &str, name: &str) -> anyhow::Result<Exit> {
    let Some(role) = Role::parse(role) else {
        eprintln!("herd token: --role {role:?}: viewer, runner or admin");
        return Ok(Exit::Invalid);
    };
    let made = match generate(role, name, crate::clock::unix_ms()) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("herd token: --name: {e}");
            return Ok(Exit::Invalid);
        }
    };
    let store = open(cfg)?;
    store.create_token(&made.record)?;
    eprintln!(
        "herd token: made {} token {} ({:?}); it is shown once — keep it secret (HERD_TOKEN)",
        role, made.record.id, made.record.name
    );
    println!("{}", made.token);
    Ok(Exit::Ok)
}

pub fn list(cfg: &ServeConfig) -> anyhow::Result<Exit> {
    let store = open(cfg)?;
    println!("{:<10} {:<8} {:<10} NAME", "ID", "ROLE", "STATE");
    for t in store.tokens()? {
        let state = if t.revoked_at_ms.is_some() {
            "revoked"
        } else {
            "live"
        };
        println!("{:<10} {:<8} {:<10} {}", t.id, t.role, state, t.name);
    }
    Ok(Exit::Ok)
}

pub fn revoke(cfg: &ServeConfig, id: &str) -> anyhow::Result<Exit> {
    let store = open(cfg)?;
    if store.revoke_token(id, crate::clock::unix_ms())? {
        eprintln!("herd token: {id} revoked");
        Ok(Exit::Ok)
    } else {
        eprintln!("herd token: no live token {id:?}");
        Ok(Exit::Invalid)
    }
}
