//! API tokens: what a caller of `herd serve`'s API presents, and what the history keeps of it.
//!
//! A token is `herd_<id>_<secret>`: the id (8 lowercase hex digits) finds its record without
//! scanning, the secret (32 random bytes, 64 hex digits) proves it. Only the SHA-256 of the
//! whole token is kept, so a copy of the history file lets no one call the API; the token is
//! shown once, when it is made. A slow password hash buys nothing here: 256 random bits cannot
//! be guessed, and a fast check keeps every request cheap.

use std::fmt;

use rand::RngCore;

/// The most tokens the history holds (live and revoked): listing them is one page.
pub const MAX_TOKENS: usize = 1000;
/// The longest name a token may be given.
pub const MAX_NAME: usize = 100;

const PREFIX: &str = "herd_";
const ID_HEX: usize = 8;
const SECRET_HEX: usize = 64;

/// What a caller may do; each role includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Reads runs, results, live streams, specs, schedules.
    Viewer,
    /// Also starts and cancels runs and stores specs.
    Runner,
    /// Also manages schedules, baselines and tokens.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Runner => "runner",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "viewer" => Some(Role::Viewer),
            "runner" => Some(Role::Runner),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A token as the history keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub id: String,
    /// SHA-256 of the whole token.
    pub hash: [u8; 32],
    pub role: Role,
    pub name: String,
    pub created_at_ms: u64,
    pub revoked_at_ms: Option<u64>,
}

/// A token just made: the secret (shown once) and its record.
pub struct NewToken {
    pub token: String,
    pub record: TokenRecord,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("token name must be 1 to {MAX_NAME} printable characters")]
    Name,
    #[error("not a herd token (expected herd_<8 hex>_<64 hex>)")]
    Malformed,
}

pub fn hash(token: &str) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Makes a token with a fresh id and secret from the OS's generator.
pub fn generate(role: Role, name: &str, now_ms: u64) -> Result<NewToken, TokenError> {
    if name.is_empty() || name.chars().count() > MAX_NAME || name.chars().any(char::is_control) {
        return Err(TokenError::Name);
    }
    let mut rng = rand::rng();
    let mut id = [0u8; ID_HEX / 2];
    let mut secret = [0u8; SECRET_HEX / 2];
    rng.fill_bytes(&mut id);
    rng.fill_bytes(&mut secret);
    let id = hex(&id);
    let token = format!("{PREFIX}{id}_{}", hex(&secret));
    Ok(NewToken {
        record: TokenRecord {
            id,
            hash: hash(&token),
            role,
            name: name.to_string(),
            created_at_ms: now_ms,
            revoked_at_ms: None,
        },
        token,
    })
}

/// The id of a well-formed token (to look its record up), without trusting anything else in it.
pub fn id_of(token: &str) -> Result<&str, TokenError> {
    let rest = token.strip_prefix(PREFIX).ok_or(TokenError::Malformed)?;
    let (id, secret) = rest.split_once('_').ok_or(TokenError::Malformed)?;
    let is_hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    if !is_hex(id, ID_HEX) || !is_hex(secret, SECRET_HEX) {
        return Err(TokenError::Malformed);
    }
    Ok(id)
}

impl TokenRecord {
    /// Whether `token` is this record's and still valid. Compares every byte whatever differs,
    /// so the time taken says nothing of how close a guess was.
    pub fn admits(&self, token: &str) -> bool {
        let h = hash(token);
        let diff = self
            .hash
            .iter()
            .zip(h.iter())
            .fold(0u8, |d, (a, b)| d | (a ^ b));
        diff == 0 && self.revoked_at_ms.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_admitted_by_its_record_only_until_revoked() {
        let t = generate(Role::Runner, "ci", 1).unwrap();
        assert_eq!(id_of(&t.token).unwrap(), t.record.id);
        assert!(t.record.admits(&t.token));
        let other = generate(Role::Runner, "ci", 1).unwrap();
        assert!(!t.record.admits(&other.token));
        let mut revoked = t.record.clone();
        revoked.revoked_at_ms = Some(2);
        assert!(!revoked.admits(&t.token));
    }

    #[test]
    fn malformed_tokens_and_names_are_refused() {
        for bad in [
            "",
            "herd_",
            "herd_1234567_",
            "Bearer x",
            "herd_1234567g_0000000000000000000000000000000000000000000000000000000000000000",
            "herd_12345678_000000000000000000000000000000000000000000000000000000000000000",
        ] {
            assert_eq!(id_of(bad), Err(TokenError::Malformed), "{bad:?}");
        }
        assert!(generate(Role::Admin, "", 0).is_err());
        assert!(generate(Role::Admin, "a\nb", 0).is_err());
        assert!(generate(Role::Admin, &"x".repeat(MAX_NAME + 1), 0).is_err());
    }

    #[test]
    fn roles_order_and_parse() {
        assert!(Role::Viewer < Role::Runner && Role::Runner < Role::Admin);
        for r in [Role::Viewer, Role::Runner, Role::Admin] {
            assert_eq!(Role::parse(r.as_str()), Some(r));
        }
        assert_eq!(Role::parse("root"), None);
    }
}
