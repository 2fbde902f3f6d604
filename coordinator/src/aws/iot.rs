//! IoT Core credentials. Each agent gets its own thing (`herd-<run>-agent-<i>`, which is also
//! its MQTT client id, with attributes `run` and `agent`) and certificate, under the one static
//! agent policy (`[aws.iot] agent_policy`, `deploy/iot-agent-policy.json`) whose policy
//! variables let a certificate connect only as the thing attached to it and publish or
//! subscribe only on that thing's run's and its own topics. No policy is made per run, so the
//! coordinator needs no right to make or delete policies. Things and certificates are made at
//! launch and deactivated and deleted at run end.
//!
//! Certificates come from IoT Core (CreateKeysAndCertificate) or are signed here by our own CA
//! and registered (RegisterCertificateWithoutCA): the second suits a self-managed CA and any
//! broker that trusts only that CA — which is how the tests stand mosquitto in for IoT Core.

use aws_sdk_iot::types::CertificateStatus;
use aws_sdk_iot::Client;
use futures::StreamExt;
use transport::keys::Redacted;

use super::err_text;
use crate::config::CertificateSource;

#[derive(Debug, thiserror::Error)]
#[error("IoT {call}: {message}")]
pub struct IotError {
    pub call: &'static str,
    pub message: String,
}

fn iot_err(call: &'static str) -> impl Fn(&dyn std::error::Error) -> IotError {
    move |e| IotError {
        call,
        message: {
            let mut s = e.to_string();
            let mut src = e.source();
            while let Some(x) = src {
                s.push_str(": ");
                s.push_str(&x.to_string());
                src = x.source();
            }
            s
        },
    }
}

/// One agent's identity on the broker.
#[derive(Debug, Clone)]
pub struct Credential {
    /// Thing name and MQTT client id (empty for the coordinator, which has no thing).
    pub thing: String,
    pub cert_id: String,
    pub cert_arn: String,
    pub cert_pem: String,
    pub key_pem: Redacted<String>,
}

#[derive(Debug, Clone, Default)]
pub struct RunCredentials {
    pub policy: String,
    pub agents: Vec<Credential>,
}

#[derive(Clone)]
pub struct Iot {
    client: Client,
    region: String,
    source: CertificateSource,
    /// Our CA (certificate PEM, key PEM) for [`CertificateSource::OwnCa`].
    ca: Option<(String, String)>,
    /// The static policy every agent certificate gets.
    agent_policy: String,
    /// Set once the agent policy is known to exist.
    policy_ready: std::sync::Arc<tokio::sync::OnceCell<()>>,
}

pub use transport::keys::agent_client_id;

/// The thing attribute that holds an agent's index: the policy lets a thing publish only on
/// `agents/${iot:Connection.Thing.Attributes[agent]}/…`, its own topics.
pub const AGENT_ATTRIBUTE: &str = "agent";
/// The thing attribute that holds its run: `herd/runs/${iot:Connection.Thing.Attributes[run]}/…`.
pub const RUN_ATTRIBUTE: &str = "run";

/// The template of a run's agent policy: the file in `deploy/` is the one herd uses.
pub const AGENT_POLICY_TEMPLATE: &str = include_str!("../../../deploy/iot-agent-policy.json");

/// The agents' policy: connect only as a thing attached to the certificate (each agent has
/// its own), publish only on its own status and metrics topics (the thing's `agent` and `run`
/// attributes), subscribe to and receive only its run's control topic.
pub fn agent_policy(region: &str, account: &str) -> String {
    AGENT_POLICY_TEMPLATE
        .replace("${Partition}", partition_of(region))
        .replace("${Region}", region)
        .replace("${Account}", account)
}

/// The ARN partition of `region`: China and GovCloud regions are not `arn:aws:`.
pub fn partition_of(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else if region.starts_with("us-iso-") {
        "aws-iso"
    } else if region.starts_with("us-isob-") {
        "aws-iso-b"
    } else {
        "aws"
    }
}

/// Tries of DeleteCertificate while a detach is still settling (200 ms doubling: ≈ 6 s).
const DELETE_ATTEMPTS: u32 = 6;

/// IoT calls in flight at once when making or removing a run's credentials.
const PARALLEL: usize = 8;

impl Iot {
    pub fn new(
        client: Client,
        region: String,
        source: CertificateSource,
        ca: Option<(String, String)>,
        agent_policy: String,
    ) -> Iot {
        Iot {
            client,
            region,
            source,
            ca,
            agent_policy,
            policy_ready: Default::default(),
        }
    }

    /// Makes sure the agent policy exists: the stack makes it (and grants the coordinator only
    /// GetPolicy on it); a coordinator set up by hand makes it here from
    /// `deploy/iot-agent-policy.json` when it is missing, once.
    pub async fn ensure_agent_policy(&self) -> Result<(), IotError> {
        self.policy_ready
            .get_or_try_init(|| async {
                match self
                    .client
                    .get_policy()
                    .policy_name(&self.agent_policy)
                    .send()
                    .await
                {
                    Ok(_) => return Ok(()),
                    Err(e)
                        if e.as_service_error()
                            .is_some_and(|s| s.is_resource_not_found_exception()) => {}
                    Err(e) => return Err(iot_err("GetPolicy")(&e)),
                }
                tracing::info!(policy = %self.agent_policy, "making the agents' IoT policy");
                self.client
                    .create_policy()
                    .policy_name(&self.agent_policy)
                    .policy_document(agent_policy(&self.region, "*"))
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| iot_err("CreatePolicy")(&e))
            })
            .await
            .map(|_| ())
    }

    /// `mqtts://<account endpoint>:8883`.
    pub async fn endpoint(&self) -> Result<String, IotError> {
        let out = self
            .client
            .describe_endpoint()
            .endpoint_type("iot:Data-ATS")
            .send()
            .await
            .map_err(|e| iot_err("DescribeEndpoint")(&e))?;
        let host = out.endpoint_address().ok_or(IotError {
            call: "DescribeEndpoint",
            message: "no endpoint address in the answer".into(),
        })?;
        Ok(format!("mqtts://{host}:8883"))
    }

    async fn certificate(&self, cn: &str) -> Result<Credential, IotError> {
        match (&self.source, &self.ca) {
            (CertificateSource::OwnCa, Some((ca_pem, ca_key))) => {
                let (cert_pem, key_pem) = sign_with_ca(ca_pem, ca_key, cn)?;
                let out = self
                    .client
                    .register_certificate_without_ca()
                    .certificate_pem(&cert_pem)
                    .status(CertificateStatus::Active)
                    .send()
                    .await
                    .map_err(|e| iot_err("RegisterCertificateWithoutCA")(&e))?;
                Ok(Credential {
                    thing: String::new(),
                    cert_id: out.certificate_id().unwrap_or_default().to_string(),
                    cert_arn: out.certificate_arn().unwrap_or_default().to_string(),
                    cert_pem,
                    key_pem: Redacted(key_pem),
                })
            }
            (CertificateSource::OwnCa, None) => Err(IotError {
                call: "RegisterCertificateWithoutCA",
                message: "own-ca certificates need ca_cert and ca_key".into(),
            }),
            (CertificateSource::Aws, _) => {
                let out = self
                    .client
                    .create_keys_and_certificate()
                    .set_as_active(true)
                    .send()
                    .await
                    .map_err(|e| iot_err("CreateKeysAndCertificate")(&e))?;
                Ok(Credential {
                    thing: String::new(),
                    cert_id: out.certificate_id().unwrap_or_default().to_string(),
                    cert_arn: out.certificate_arn().unwrap_or_default().to_string(),
                    cert_pem: out.certificate_pem().unwrap_or_default().to_string(),
                    key_pem: Redacted(
                        out.key_pair()
                            .and_then(|k| k.private_key())
                            .unwrap_or_default()
                            .to_string(),
                    ),
                })
            }
        }
    }

    /// Things and certificates for `count` agents of `run`, under the agent policy. On error,
    /// whatever was made is removed again before the error is returned.
    pub async fn issue_run(&self, run: &str, count: u32) -> Result<RunCredentials, IotError> {
        self.ensure_agent_policy().await?;
        let policy = self.agent_policy.clone();
        let made: Vec<Result<Credential, (Option<Credential>, IotError)>> =
            futures::stream::iter(0..count)
                .map(|i| self.issue_agent(run, i, &policy))
                .buffered(PARALLEL)
                .collect()
                .await;
        let mut creds = RunCredentials {
            policy,
            agents: Vec::new(),
        };
        let mut first_err = None;
        for r in made {
            match r {
                Ok(c) => creds.agents.push(c),
                Err((partial, e)) => {
                    creds.agents.extend(partial);
                    first_err.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_err {
            self.revoke_run(&creds).await;
            return Err(e);
        }
        Ok(creds)
    }

    async fn issue_agent(
        &self,
        run: &str,
        i: u32,
        policy: &str,
    ) -> Result<Credential, (Option<Credential>, IotError)> {
        let thing = agent_client_id(run, i);
        let mut c = self.certificate(&thing).await.map_err(|e| (None, e))?;
        c.thing = thing.clone();
        let step = async {
            self.client
                .create_thing()
                .thing_name(&thing)
                .attribute_payload(
                    aws_sdk_iot::types::AttributePayload::builder()
                        .attributes(AGENT_ATTRIBUTE, i.to_string())
                        .attributes(RUN_ATTRIBUTE, run)
                        .build(),
                )
                .send()
                .await
                .map_err(|e| iot_err("CreateThing")(&e))?;
            self.client
                .attach_thing_principal()
                .thing_name(&thing)
                .principal(&c.cert_arn)
                .send()
                .await
                .map_err(|e| iot_err("AttachThingPrincipal")(&e))?;
            self.client
                .attach_policy()
                .policy_name(policy)
                .target(&c.cert_arn)
                .send()
                .await
                .map_err(|e| iot_err("AttachPolicy")(&e))?;
            Ok::<(), IotError>(())
        };
        match step.await {
            Ok(()) => Ok(c),
            Err(e) => Err((Some(c), e)),
        }
    }

    /// Removes the things and certificates of every run `keep` does not name: runs whose
    /// coordinator died mid-run, or whose cleanup failed part-way. A run's artefacts are found
    /// by name (things `herd-<run>-agent-<i>`); the agent policy is only detached from their
    /// certificates. Returns how many things went.
    pub async fn sweep(&self, keep: impl Fn(&str) -> bool) -> Result<usize, IotError> {
        let mut removed = 0;
        let mut things = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .client
                .list_things()
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| iot_err("ListThings")(&e))?;
            things.extend(
                page.things()
                    .iter()
                    .filter_map(|t| t.thing_name().map(str::to_string)),
            );
            token = page.next_token().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        for thing in things {
            let Some((run, _)) = transport::keys::parse_agent_client_id(&thing) else {
                continue;
            };
            if keep(run) {
                continue;
            }
            let principals = self
                .client
                .list_thing_principals()
                .thing_name(&thing)
                .send()
                .await
                .map_err(|e| iot_err("ListThingPrincipals")(&e))?;
            let certs: Vec<String> = principals.principals().to_vec();
            if certs.is_empty() {
                if let Err(e) = self.client.delete_thing().thing_name(&thing).send().await {
                    tracing::warn!(%thing, error = %err_text(&e), "IoT DeleteThing failed");
                }
            }
            for cert_arn in certs {
                let cert_id = cert_arn.rsplit('/').next().unwrap_or_default().to_string();
                let c = Credential {
                    thing: thing.clone(),
                    cert_id,
                    cert_arn,
                    cert_pem: String::new(),
                    key_pem: Redacted(String::new()),
                };
                self.revoke(&c, Some(&self.agent_policy)).await;
            }
            tracing::info!(%thing, %run, "swept an abandoned agent identity");
            removed += 1;
        }
        Ok(removed)
    }

    /// Detaches, deactivates and deletes everything [`Iot::issue_run`] made. Best effort: each
    /// failure is logged and the rest still goes.
    pub async fn revoke_run(&self, creds: &RunCredentials) {
        futures::stream::iter(creds.agents.iter())
            .map(|c| self.revoke(c, Some(&creds.policy)))
            .buffer_unordered(PARALLEL)
            .collect::<Vec<()>>()
            .await;
    }

    async fn revoke(&self, c: &Credential, policy: Option<&str>) {
        let warn = |call: &str, e: &dyn std::error::Error| tracing::warn!(thing = %c.thing, cert = %c.cert_id, call, error = %e, "IoT cleanup step failed");
        if let Some(p) = policy {
            if let Err(e) = self
                .client
                .detach_policy()
                .policy_name(p)
                .target(&c.cert_arn)
                .send()
                .await
            {
                warn("DetachPolicy", &e);
            }
        }
        if !c.thing.is_empty() {
            if let Err(e) = self
                .client
                .detach_thing_principal()
                .thing_name(&c.thing)
                .principal(&c.cert_arn)
                .send()
                .await
            {
                warn("DetachThingPrincipal", &e);
            }
        }
        if let Err(e) = self
            .client
            .update_certificate()
            .certificate_id(&c.cert_id)
            .new_status(CertificateStatus::Inactive)
            .send()
            .await
        {
            warn("UpdateCertificate", &e);
        }
        // DetachThingPrincipal is asynchronous: until IoT has finished it, DeleteCertificate
        // answers DeleteConflict. Retried with backoff (≈ 6 s in all) rather than leaving an
        // inactive certificate behind.
        let mut wait = std::time::Duration::from_millis(200);
        for attempt in 1..=DELETE_ATTEMPTS {
            match self
                .client
                .delete_certificate()
                .certificate_id(&c.cert_id)
                .send()
                .await
            {
                Ok(_) => break,
                Err(e)
                    if attempt < DELETE_ATTEMPTS
                        && e.as_service_error()
                            .is_some_and(|s| s.is_delete_conflict_exception()) =>
                {
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                }
                Err(e) => {
                    warn("DeleteCertificate", &e);
                    break;
                }
            }
        }
        if !c.thing.is_empty() {
            if let Err(e) = self.client.delete_thing().thing_name(&c.thing).send().await {
                warn("DeleteThing", &e);
            }
        }
    }

    /// The coordinator's own certificate, under the stack's coordinator policy.
    pub async fn issue_coordinator(&self, policy: &str, id: &str) -> Result<Credential, IotError> {
        let c = self.certificate(id).await?;
        self.client
            .attach_policy()
            .policy_name(policy)
            .target(&c.cert_arn)
            .send()
            .await
            .map_err(|e| iot_err("AttachPolicy")(&e))?;
        Ok(c)
    }

    pub async fn revoke_coordinator(&self, c: &Credential, policy: &str) {
        self.revoke(c, Some(policy)).await;
    }
}

/// A client certificate for `cn`, signed by our CA. EC P-256: IoT Core accepts it and it is
/// cheap to make by the hundred.
fn sign_with_ca(ca_pem: &str, ca_key: &str, cn: &str) -> Result<(String, String), IotError> {
    let e = |m: String| IotError {
        call: "sign certificate",
        message: m,
    };
    let ca_key = rcgen::KeyPair::from_pem(ca_key).map_err(|x| e(format!("CA key: {x}")))?;
    let issuer = rcgen::Issuer::from_ca_cert_pem(ca_pem, ca_key)
        .map_err(|x| e(format!("CA certificate: {x}")))?;
    let key = rcgen::KeyPair::generate().map_err(|x| e(format!("key: {x}")))?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())
        .map_err(|x| e(format!("params: {x}")))?;
    // X.509 caps a common name at 64 characters (RFC 5280 ub-common-name) and a thing name
    // may be longer; the CN only labels the certificate (the policy checks the thing).
    let cn: String = cn.chars().take(64).collect();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(|x| e(format!("signing: {x}")))?;
    Ok((cert.pem(), key.serialize_pem()))
}

#[cfg(test)]
#[path = "policy_sim.rs"]
mod policy_sim;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_names_only_the_things_runs_topics() {
        let p: serde_json::Value =
            serde_json::from_str(&agent_policy("eu-west-1", "*")).expect("JSON");
        let text = p.to_string();
        assert!(text.contains(
            "arn:aws:iot:eu-west-1:*:topic/herd/runs/${iot:Connection.Thing.Attributes[run]}/agents/${iot:Connection.Thing.Attributes[agent]}/metrics"
        ));
        assert!(text.contains("client/${iot:Connection.Thing.ThingName}"));
        assert!(!text.contains("${Run}") && !text.contains("${Region}"));
        assert!(!text.contains("${Partition}"));
        assert!(agent_policy("cn-north-1", "*").contains("arn:aws-cn:iot:cn-north-1:"));
        assert!(agent_policy("us-gov-west-1", "*").contains("arn:aws-us-gov:iot:"));
        assert!(agent_policy("eu-west-1", "*").contains("arn:aws:iot:eu-west-1:"));
    }

    #[test]
    fn the_longest_spec_name_still_makes_valid_thing_and_policy_names() {
        let name = "n".repeat(messages::spec::MAX_NAME_LEN);
        messages::spec::check_name(&name).expect("a valid spec name");
        let run = crate::clock::run_id(&name, Some(u32::MAX));
        // CreateThing: [a-zA-Z0-9:_-]+, at most 128; the MQTT client id is the same string.
        let thing = agent_client_id(&run, u32::MAX);
        assert!(thing.len() <= 128, "{} characters: {thing}", thing.len());
        assert!(
            thing
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '_' | '-')),
            "{thing}"
        );
        // A thing attribute's value (the `run` attribute): [a-zA-Z0-9_.,@/:#=\[\]-]*, at
        // most 800.
        assert!(run.len() <= 800, "{run}");
        assert!(
            run.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.,@/:#=[]-".contains(c)),
            "{run}"
        );
    }

    #[test]
    fn own_ca_certificates_chain_to_the_ca() {
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(rcgen::DnType::CommonName, "test CA");
        let key = rcgen::KeyPair::generate().expect("key");
        let ca_pem = ca.self_signed(&key).expect("CA").pem();
        let (cert, k) =
            sign_with_ca(&ca_pem, &key.serialize_pem(), "herd-r-agent-0").expect("signed");
        assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(k.contains("PRIVATE KEY"));
        assert!(sign_with_ca(&ca_pem, "not a key", "x").is_err());
    }
}
