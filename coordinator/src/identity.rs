//! The coordinator's keys, made once per process: a random secret every run's and every
//! agent's keys derive from, and the Ed25519 key that signs broadcasts. Nothing of them is
//! written anywhere; agents get only their own keys and the public half of the signing key.

use transport::keys::{run_secret, AgentKeys, KeyError, PublicKey, Secret, SigningKey};

#[derive(Debug)]
pub struct Identity {
    secret: Secret,
    signing: SigningKey,
}

impl Identity {
    pub fn new() -> Result<Identity, KeyError> {
        Ok(Identity {
            secret: Secret::random()?,
            signing: SigningKey::generate()?,
        })
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
