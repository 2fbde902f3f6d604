//! Who may say what on a run's topics. Brokers differ — IoT Core enforces per-thing topic
//! policies, the embedded rumqttd and a plain mosquitto enforce nothing beyond the login — so
//! herd authenticates its own messages, the same way on every broker:
//!
//! - agent → coordinator ([`seal_from_agent`]): HMAC-SHA256 with the agent's own key, which
//!   only that agent and the coordinator hold. A message about agent *i* that was not made
//!   with agent *i*'s key is refused, whatever topic it came on.
//! - coordinator → one agent ([`seal_for_agent`], the Assign: spec and data files): encrypted
//!   and authenticated for that agent alone (ChaCha20-Poly1305), so neither another agent
//!   nor another run's agent can read or forge it.
//! - coordinator → every agent ([`sign_broadcast`], Start and Stop): signed with the
//!   coordinator's Ed25519 key; agents hold only its public half, so they cannot forge one.
//!
//! Keys are derived, not stored: a coordinator's one random [`Secret`] gives each run a
//! secret, and each run secret gives each agent its [`AgentKeys`] — which the launcher hands to
//! that agent alone (stdin, or its private bootstrap object), never on a command line.

use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{self, Ed25519KeyPair, KeyPair, UnparsedPublicKey};

/// Frame kinds: the first byte of every herd payload on MQTT.
const FROM_AGENT: u8 = 1;
const BROADCAST: u8 = 2;
const FOR_AGENT: u8 = 3;
const MAC_LEN: usize = 32;
const SIG_LEN: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("no secure random numbers: {0}")]
    Random(String),
    #[error("{what}: expected {len} bytes as hex")]
    Hex { what: &'static str, len: usize },
    #[error("cannot make a signing key: {0}")]
    Signing(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("too short for a herd frame")]
    Short,
    #[error("unknown frame kind {0}")]
    Kind(u8),
    #[error("the message is not authenticated by this agent's key")]
    BadMac,
    #[error("the broadcast is not signed by this run's coordinator")]
    BadSignature,
    #[error("the message for this agent cannot be decrypted")]
    Decrypt,
    #[error("cannot encrypt")]
    Encrypt,
}

/// A value that must not show in logs (a private key, a password): `Debug` prints
/// `<redacted>`; serde passes it through unchanged.
#[derive(Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Redacted<T>(pub T);

impl<T> std::fmt::Debug for Redacted<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// 32 secret bytes. `Debug` never shows them: secrets end up in logs through `{:?}` otherwise.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret([u8; 32]);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl Secret {
    pub fn random() -> Result<Secret, KeyError> {
        let mut b = [0u8; 32];
        SystemRandom::new()
            .fill(&mut b)
            .map_err(|e| KeyError::Random(e.to_string()))?;
        Ok(Secret(b))
    }

    /// A secret of its own for `label`: HMAC-SHA256(self, label).
    pub fn derive(&self, label: &str) -> Secret {
        let tag = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, &self.0),
            label.as_bytes(),
        );
        let mut b = [0u8; 32];
        b.copy_from_slice(tag.as_ref());
        Secret(b)
    }

    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }

    pub fn from_hex(what: &'static str, s: &str) -> Result<Secret, KeyError> {
        Ok(Secret(unhex::<32>(what, s)?))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex<const N: usize>(what: &'static str, s: &str) -> Result<[u8; N], KeyError> {
    let s = s.trim();
    let bad = || KeyError::Hex { what, len: N };
    if s.len() != N * 2 || !s.is_ascii() {
        return Err(bad());
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(out)
}

/// Equal, in time that does not depend on where they differ.
pub fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The MQTT client id (and IoT thing name) of agent `index` of `run`.
pub fn agent_client_id(run: &str, index: u32) -> String {
    format!("herd-{run}-agent-{index}")
}

/// The inverse of [`agent_client_id`]: (run, index).
pub fn parse_agent_client_id(id: &str) -> Option<(&str, u32)> {
    let (prefix, index) = id.rsplit_once("-agent-")?;
    let run = prefix.strip_prefix("herd-")?;
    (!run.is_empty()).then_some(())?;
    Some((run, index.parse().ok()?))
}

/// One run's secret, derived from its coordinator's.
pub fn run_secret(coordinator: &Secret, run: &str) -> Secret {
    coordinator.derive(&format!("run:{run}"))
}

/// What one agent holds, and the coordinator can derive for it.
#[derive(Clone, Debug)]
pub struct AgentKeys {
    secret: Secret,
    mac: hmac::Key,
}

impl AgentKeys {
    pub fn new(secret: Secret) -> AgentKeys {
        let mac = hmac::Key::new(hmac::HMAC_SHA256, &secret.derive("mac").0);
        AgentKeys { secret, mac }
    }

    /// Agent `index`'s keys from its run's secret.
    pub fn of(run_secret: &Secret, index: u32) -> AgentKeys {
        AgentKeys::new(run_secret.derive(&format!("agent:{index}")))
    }

    pub fn secret(&self) -> &Secret {
        &self.secret
    }

    /// Its MQTT password on the embedded broker (its user name is its client id).
    pub fn mqtt_password(&self) -> String {
        self.secret.derive("mqtt").to_hex()
    }

    fn aead(&self) -> Option<LessSafeKey> {
        let k = self.secret.derive("aead");
        UnboundKey::new(&CHACHA20_POLY1305, &k.0)
            .ok()
            .map(LessSafeKey::new)
    }
}

/// The coordinator's password for its own `client_id` on the embedded broker.
pub fn coordinator_password(coordinator: &Secret, client_id: &str) -> String {
    coordinator
        .derive(&format!("coordinator:{client_id}"))
        .derive("mqtt")
        .to_hex()
}

/// The user name observers (dashboards reading `live` and `result`) log in with; their client
/// ids start with it too.
pub const OBSERVER_USER: &str = "herd-observer";

/// The observers' password on the embedded broker. Observers can read what is in clear there
/// (live snapshots, results, metric batches) but cannot make anything the coordinator or an
/// agent accepts: that takes a key they do not have.
pub fn observer_password(coordinator: &Secret) -> String {
    coordinator.derive("observer").derive("mqtt").to_hex()
}

/// Whether `client_id` may log in with `password` to a broker run by the coordinator holding
/// `coordinator`: the coordinator as itself, an agent as itself, an observer, nobody else.
pub fn login_ok(coordinator: &Secret, client_id: &str, user: &str, password: &str) -> bool {
    if user == OBSERVER_USER && client_id.starts_with(OBSERVER_USER) {
        return same(
            observer_password(coordinator).as_bytes(),
            password.as_bytes(),
        );
    }
    if user != client_id {
        return false;
    }
    let expected = if client_id.starts_with("herd-coordinator-") {
        coordinator_password(coordinator, client_id)
    } else if let Some((run, index)) = parse_agent_client_id(client_id) {
        AgentKeys::of(&run_secret(coordinator, run), index).mqtt_password()
    } else {
        return false;
    };
    same(expected.as_bytes(), password.as_bytes())
}

/// The coordinator's signing key for broadcasts.
pub struct SigningKey {
    pair: Ed25519KeyPair,
    /// Its PKCS#8 form, to keep across a restart (agents of a resumed run check the same key).
    pkcs8: Redacted<Vec<u8>>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey(public {})", self.public().to_hex())
    }
}

impl SigningKey {
    pub fn generate() -> Result<SigningKey, KeyError> {
        let rng = SystemRandom::new();
        let pkcs8 =
            Ed25519KeyPair::generate_pkcs8(&rng).map_err(|e| KeyError::Signing(e.to_string()))?;
        SigningKey::from_pkcs8(pkcs8.as_ref())
    }

    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<SigningKey, KeyError> {
        let pair =
            Ed25519KeyPair::from_pkcs8(pkcs8).map_err(|e| KeyError::Signing(e.to_string()))?;
        Ok(SigningKey {
            pair,
            pkcs8: Redacted(pkcs8.to_vec()),
        })
    }

    pub fn pkcs8(&self) -> &[u8] {
        &self.pkcs8.0
    }

    pub fn public(&self) -> PublicKey {
        let mut b = [0u8; 32];
        b.copy_from_slice(self.pair.public_key().as_ref());
        PublicKey(b)
    }
}

/// The public half of a coordinator's signing key: what agents verify broadcasts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublicKey([u8; 32]);

impl PublicKey {
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }

    pub fn from_hex(s: &str) -> Result<PublicKey, KeyError> {
        Ok(PublicKey(unhex::<32>("coordinator key", s)?))
    }
}

/// `[1][payload][HMAC]`: a message from an agent.
pub fn seal_from_agent(keys: &AgentKeys, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + payload.len() + MAC_LEN);
    out.push(FROM_AGENT);
    out.extend_from_slice(payload);
    let tag = hmac::sign(&keys.mac, payload);
    out.extend_from_slice(tag.as_ref());
    out
}

/// The payload of a message from the agent holding `keys`, once its MAC holds.
pub fn open_from_agent<'a>(keys: &AgentKeys, frame: &'a [u8]) -> Result<&'a [u8], FrameError> {
    if frame.len() < 1 + MAC_LEN {
        return Err(FrameError::Short);
    }
    if frame[0] != FROM_AGENT {
        return Err(FrameError::Kind(frame[0]));
    }
    let (payload, tag) = frame[1..].split_at(frame.len() - 1 - MAC_LEN);
    hmac::verify(&keys.mac, payload, tag).map_err(|_| FrameError::BadMac)?;
    Ok(payload)
}

/// `[2][payload][signature]`: a message for every agent of a run.
pub fn sign_broadcast(key: &SigningKey, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + payload.len() + SIG_LEN);
    out.push(BROADCAST);
    out.extend_from_slice(payload);
    out.extend_from_slice(key.pair.sign(payload).as_ref());
    out
}

/// `[3][agent][nonce][ciphertext + tag]`: a message only agent `agent` can read.
pub fn seal_for_agent(agent: u32, keys: &AgentKeys, payload: &[u8]) -> Result<Vec<u8>, FrameError> {
    let key = keys.aead().ok_or(FrameError::Encrypt)?;
    let mut nonce = [0u8; NONCE_LEN];
    SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| FrameError::Encrypt)?;
    let mut sealed = payload.to_vec();
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(agent.to_be_bytes()),
        &mut sealed,
    )
    .map_err(|_| FrameError::Encrypt)?;
    let mut out = Vec::with_capacity(1 + 4 + NONCE_LEN + sealed.len());
    out.push(FOR_AGENT);
    out.extend_from_slice(&agent.to_be_bytes());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// A control message as one agent sees it.
#[derive(Debug, PartialEq, Eq)]
pub enum Control {
    /// For every agent (signature checked).
    Broadcast(Vec<u8>),
    /// For this agent (decrypted and authenticated).
    Mine(Vec<u8>),
    /// For another agent: not opened.
    Other,
}

/// Opens a control message for agent `me`.
pub fn open_control(
    frame: &[u8],
    me: u32,
    keys: &AgentKeys,
    coordinator: &PublicKey,
) -> Result<Control, FrameError> {
    match frame.first() {
        None => Err(FrameError::Short),
        Some(&BROADCAST) => {
            if frame.len() < 1 + SIG_LEN {
                return Err(FrameError::Short);
            }
            let (payload, sig) = frame[1..].split_at(frame.len() - 1 - SIG_LEN);
            UnparsedPublicKey::new(&signature::ED25519, &coordinator.0)
                .verify(payload, sig)
                .map_err(|_| FrameError::BadSignature)?;
            Ok(Control::Broadcast(payload.to_vec()))
        }
        Some(&FOR_AGENT) => {
            if frame.len() < 1 + 4 + NONCE_LEN + aead::CHACHA20_POLY1305.tag_len() {
                return Err(FrameError::Short);
            }
            let mut agent = [0u8; 4];
            agent.copy_from_slice(&frame[1..5]);
            if u32::from_be_bytes(agent) != me {
                return Ok(Control::Other);
            }
            let mut nonce = [0u8; NONCE_LEN];
            nonce.copy_from_slice(&frame[5..5 + NONCE_LEN]);
            let key = keys.aead().ok_or(FrameError::Decrypt)?;
            let mut sealed = frame[5 + NONCE_LEN..].to_vec();
            let plain = key
                .open_in_place(
                    Nonce::assume_unique_for_key(nonce),
                    Aad::from(agent),
                    &mut sealed,
                )
                .map_err(|_| FrameError::Decrypt)?;
            let n = plain.len();
            sealed.truncate(n);
            Ok(Control::Mine(sealed))
        }
        Some(&k) => Err(FrameError::Kind(k)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> (Secret, AgentKeys, AgentKeys) {
        let c = Secret::random().unwrap();
        let run = run_secret(&c, "shop-20261130T000000Z");
        (c, AgentKeys::of(&run, 0), AgentKeys::of(&run, 1))
    }

    #[test]
    fn an_agent_cannot_speak_for_another() {
        let (_, a0, a1) = keys();
        let frame = seal_from_agent(&a0, b"batch of agent 0");
        assert_eq!(open_from_agent(&a0, &frame), Ok(&b"batch of agent 0"[..]));
        assert_eq!(open_from_agent(&a1, &frame), Err(FrameError::BadMac));
        let mut tampered = frame.clone();
        tampered[3] ^= 1;
        assert_eq!(open_from_agent(&a0, &tampered), Err(FrameError::BadMac));
        assert_eq!(open_from_agent(&a0, &[1, 2]), Err(FrameError::Short));
        assert_eq!(
            open_from_agent(&a0, &frame[..frame.len() - 1]),
            Err(FrameError::BadMac)
        );
    }

    #[test]
    fn an_assign_is_readable_by_its_agent_alone() {
        let (_, a0, a1) = keys();
        let frame = seal_for_agent(0, &a0, b"spec and data").unwrap();
        let coordinator = SigningKey::generate().unwrap().public();
        assert_eq!(
            open_control(&frame, 0, &a0, &coordinator),
            Ok(Control::Mine(b"spec and data".to_vec()))
        );
        assert_eq!(
            open_control(&frame, 1, &a1, &coordinator),
            Ok(Control::Other)
        );
        // Agent 1 pretending to be agent 0 still lacks agent 0's key.
        assert_eq!(
            open_control(&frame, 0, &a1, &coordinator),
            Err(FrameError::Decrypt)
        );
        assert!(!frame.windows(4).any(|w| w == b"spec"), "not in clear");
    }

    #[test]
    fn only_the_coordinator_signs_broadcasts() {
        let (_, a0, _) = keys();
        let key = SigningKey::generate().unwrap();
        let other = SigningKey::generate().unwrap();
        let frame = sign_broadcast(&key, b"stop");
        assert_eq!(
            open_control(&frame, 0, &a0, &key.public()),
            Ok(Control::Broadcast(b"stop".to_vec()))
        );
        assert_eq!(
            open_control(&frame, 0, &a0, &other.public()),
            Err(FrameError::BadSignature)
        );
        // An agent's own (MAC'd) frame is not a control message.
        let forged = seal_from_agent(&a0, b"stop");
        assert_eq!(
            open_control(&forged, 0, &a0, &key.public()),
            Err(FrameError::Kind(1))
        );
    }

    #[test]
    fn logins_are_per_client() {
        let (c, a0, _) = keys();
        let id0 = agent_client_id("shop-20261130T000000Z", 0);
        assert!(login_ok(&c, &id0, &id0, &a0.mqtt_password()));
        let id1 = agent_client_id("shop-20261130T000000Z", 1);
        assert!(
            !login_ok(&c, &id1, &id1, &a0.mqtt_password()),
            "agent 0's password for agent 1"
        );
        assert!(!login_ok(&c, &id0, "someone", &a0.mqtt_password()));
        assert!(!login_ok(&c, &id0, &id0, ""));
        assert!(!login_ok(&c, "mosquitto_sub", "", ""));
        let coord = "herd-coordinator-x";
        assert!(login_ok(&c, coord, coord, &coordinator_password(&c, coord)));
        let other = Secret::random().unwrap();
        assert!(!login_ok(&other, &id0, &id0, &a0.mqtt_password()));
        let watcher = "herd-observer-dashboard";
        assert!(login_ok(&c, watcher, OBSERVER_USER, &observer_password(&c)));
        assert!(!login_ok(&c, watcher, OBSERVER_USER, &a0.mqtt_password()));
        assert!(
            !login_ok(&c, &id0, OBSERVER_USER, &observer_password(&c)),
            "an observer is not an agent"
        );
    }

    #[test]
    fn secrets_travel_as_hex_and_never_print() {
        let s = Secret::random().unwrap();
        assert_eq!(Secret::from_hex("s", &s.to_hex()).unwrap(), s);
        assert!(Secret::from_hex("s", "abc").is_err());
        assert_eq!(format!("{s:?}"), "Secret(<redacted>)");
        assert!(!format!("{:?}", AgentKeys::new(s.clone())).contains(&s.to_hex()));
        assert_eq!(
            parse_agent_client_id("herd-shop-2026-agent-12"),
            Some(("shop-2026", 12))
        );
        assert_eq!(parse_agent_client_id("herd--agent-1"), None);
    }
}
