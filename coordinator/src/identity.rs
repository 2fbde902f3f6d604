//! The coordinator's keys, made once per process: a random secret every run's and every
//! agent's keys derive from, and the Ed25519 key that signs broadcasts. Nothing of them is
//! written anywhere; agents get only their own keys and the public half of the signing key.
//! Its epoch (when this process made or loaded it) tells agents which coordinator incarnation
//! speaks (`Alive`): the keys may persist across restarts, the epoch never does.

use transport::keys::{run_secret, AgentKeys, KeyError, PublicKey, Secret, SigningKey};

#[derive(Debug)]
pub struct Identity {
    secret: Secret,
    signing: SigningKey,
    epoch: u64,
}

/// Why an identity could not be kept or read back.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("{path}: {reason}")]
    File { path: String, reason: String },
    /// The identity could not be kept (it names the file and the cause).
    #[error(transparent)]
    Write(#[from] crate::journal::FileError),
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Stored {
    secret: String,
    signing_pkcs8: String,
}

impl Identity {
    pub fn new() -> Result<Identity, KeyError> {
        Ok(Identity {
            secret: Secret::random()?,
            signing: SigningKey::generate()?,
            epoch: crate::clock::unix_ms(),
        })
    }

    /// The identity kept at `path` (owner-only), made and kept there the first time: a
    /// restarted coordinator must derive the same agent keys and sign with the same key, or
    /// the agents of the runs it resumes would refuse it.
    pub fn load_or_create(path: &std::path::Path) -> Result<Identity, IdentityError> {
        let file = |reason: String| IdentityError::File {
            path: path.display().to_string(),
            reason,
        };
        if path.exists() {
            let text = std::fs::read_to_string(path).map_err(|e| file(e.to_string()))?;
            let s: Stored = serde_json::from_str(&text).map_err(|e| file(e.to_string()))?;
            let pkcs8 = hex_bytes(&s.signing_pkcs8).ok_or_else(|| file("not hex".into()))?;
            return Ok(Identity {
                secret: Secret::from_hex("secret", &s.secret)?,
                signing: SigningKey::from_pkcs8(&pkcs8)?,
                // The keys persist; the epoch is this process's: a restart is newer.
                epoch: crate::clock::unix_ms(),
            });
        }
        let id = Identity::new()?;
        let stored = Stored {
            secret: id.secret.to_hex(),
            signing_pkcs8: id
                .signing
                .pkcs8()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
        };
        let text = serde_json::to_vec(&stored).map_err(|e| file(e.to_string()))?;
        crate::journal::write_private(path, &text)?;
        Ok(id)
    }

    pub fn secret(&self) -> &Secret {
        &self.secret
    }

    pub fn signing(&self) -> &SigningKey {
        &self.signing
    }

    pub fn public(&self) -> PublicKey {
        self.signing.public()
    }

    /// `herd serve`'s MQTT client id: the same after every restart with this identity, so the
    /// broker keeps its persistent session, and distinct between coordinators that do not share
    /// a state folder.
    pub fn serve_client_id(&self) -> String {
        let hex = self.public().to_hex();
        format!("herd-coordinator-serve-{}", &hex[..hex.len().min(12)])
    }

    /// When this coordinator process made its keys (unix ms): a restarted one has a later
    /// epoch. Sent in every `Alive`.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Writes the observers' login for the embedded broker to `<dir>/.broker-observer`
    /// (owner-only), for dashboards and scripts that read `live` and `result` there.
    pub fn write_observer_login(
        &self,
        dir: &std::path::Path,
    ) -> std::io::Result<std::path::PathBuf> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let path = dir.join(".broker-observer");
        let text = format!(
            "{{\"user\":\"{}\",\"password\":\"{}\"}}\n",
            transport::keys::OBSERVER_USER,
            transport::keys::observer_password(&self.secret)
        );
        let _ = std::fs::remove_file(&path);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        f.write_all(text.as_bytes())?;
        Ok(path)
    }

    /// Every agent's keys for `run`.
    pub fn agent_keys(&self, run: &str, agents: u32) -> Vec<AgentKeys> {
        let run = run_secret(&self.secret, run);
        (0..agents).map(|i| AgentKeys::of(&run, i)).collect()
    }
}

fn hex_bytes(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    if s.len() % 2 != 0 || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_identity_comes_back_the_same() {
        let dir = tempfile::tempdir().expect("dir");
        let p = dir.path().join("identity.json");
        let a = Identity::load_or_create(&p).expect("made");
        let b = Identity::load_or_create(&p).expect("read back");
        assert_eq!(a.secret(), b.secret());
        assert_eq!(a.public(), b.public());
        assert_eq!(
            a.agent_keys("r", 1)[0].mqtt_password(),
            b.agent_keys("r", 1)[0].mqtt_password()
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&p).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "owner-only");
        std::fs::write(&p, "{}").expect("damage");
        assert!(
            Identity::load_or_create(&p).is_err(),
            "a damaged file is an error, not a new key"
        );
    }
}
