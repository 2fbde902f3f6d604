//! `herd serve`'s configuration: a TOML file (`--config`, `HERD_CONFIG`) or TOML in the
//! environment (`HERD_CONFIG_TOML`, which is how the CloudFormation stack passes it), with a
//! few fields overridable one by one from the environment. Unknown keys are errors that name
//! the key and its line, like spec errors.

use std::path::{Path, PathBuf};

use messages::policy::{parse_rules, private_ranges, Access, PolicyError, TargetPolicy};
use serde::Deserialize;

mod api;
mod limits;
mod queue;
pub use api::{ApiConfig, OidcConfig, DEFAULT_MAX_STREAMS};
pub use limits::LimitsConfig;
pub use queue::{QueueConfig, SchedulesConfig, DEFAULT_MAX_ACTIVE, DEFAULT_MAX_QUEUED};

#[derive(Debug, Clone, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// Inbox folder, embedded broker, local agent processes, local results.
    #[default]
    Local,
    /// SQS intake, ECS Fargate agents, IoT Core, S3 results, SNS + EventBridge notifications.
    Aws,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeConfig {
    #[serde(default)]
    pub profile: Profile,
    /// Where run folders are written (the final location locally, a staging area on AWS).
    #[serde(default = "default_results_dir")]
    pub results_dir: PathBuf,
    /// What a restart must find again: the coordinator's keys, the broker's port, every
    /// unfinished run's journal. Default: `<results_dir>/.state`. On AWS, a durable volume (EFS).
    pub state_dir: Option<PathBuf>,
    /// The local profile's notifications file (default `<results_dir>/notifications.jsonl`). On
    /// another filesystem, a run whose results filled their disk is still announced.
    pub notifications: Option<PathBuf>,
    /// A spec file written here starts a run (local twin of the spec bucket). Optional on AWS.
    pub inbox: Option<PathBuf>,
    /// Agents per run when the spec does not say (local profile).
    pub agents: Option<u32>,
    /// Seconds a second stays open for late batches.
    #[serde(default = "default_late_window")]
    pub late_window_s: u64,
    #[serde(default)]
    pub broker: BrokerConfig,
    /// Where runs may send load (the target policy every agent enforces).
    #[serde(default)]
    pub targets: TargetsConfig,
    pub aws: Option<AwsConfig>,
    /// What one spec may ask for; each key left out keeps herd's default.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// What SIGTERM / Ctrl-C does to active runs.
    #[serde(default)]
    pub on_shutdown: OnShutdown,
    /// `[history]`: the run history in the state folder (`store`).
    #[serde(default)]
    pub history: crate::store::HistoryConfig,
    /// `[api]`: the HTTP API (`serve::api`); without it, none.
    pub api: Option<ApiConfig>,
    /// `[queue]`: how many runs go at once (`serve::queue`).
    #[serde(default)]
    pub queue: QueueConfig,
    /// `[schedules]`: the scheduler's catch-up rule (`serve::scheduler`).
    #[serde(default)]
    pub schedules: SchedulesConfig,
}

/// `on_shutdown`: what a shutdown does to the runs `herd serve` holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnShutdown {
    /// Cancel them gracefully, write their partial results, announce them (at most 60 s).
    #[default]
    Cancel,
    /// Leave them running — agents keep loading — for the next `herd serve` on the same state
    /// folder to take back (a deployment replacing the coordinator). Local agents outlive it.
    Resume,
}

/// `[targets]`: the target policy (`messages::policy`). A rule is a host (`api.example.com`,
/// `*.example.com`), an address or CIDR (`10.1.2.0/24`, `fd00::/8`) or a URL prefix
/// (`https://api.example.com/v1/`).
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct TargetsConfig {
    /// What no rule decides: `"allow"` (default) or `"deny"` (only what `allow` lists).
    #[serde(default)]
    pub default: Access,
    #[serde(default)]
    pub allow: Vec<String>,
    /// Wins over `allow`.
    #[serde(default)]
    pub deny: Vec<String>,
    /// Deny loopback, link-local (instance metadata), private, multicast and reserved ranges
    /// unless an `allow` CIDR lists the address. Default: true on aws, false on local.
    pub deny_private: Option<bool>,
    /// Accept specs whose runner cannot enforce the policy on its script (Locust, JMeter; k6
    /// under a default deny or URL-prefix deny rules). Default: false on aws, true on local.
    pub unconfined_runners: Option<bool>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct BrokerConfig {
    /// mqtt(s)://host:port. Local: default the embedded broker. AWS: default the account's
    /// IoT Core endpoint (DescribeEndpoint `iot:Data-ATS`).
    pub url: Option<String>,
    /// The coordinator's own TLS files (CA to trust, client certificate and key).
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// The broker URL agents get, when they reach it by another address.
    pub agent_url: Option<String>,
    /// CA (PEM) agents trust for the broker; default the public roots (right for IoT Core).
    pub agent_ca: Option<PathBuf>,
    /// Connections reading agents' messages through one shared subscription (1–128; default
    /// 1, the coordinator's own connection). IoT Core delivers at most 100 messages/s to one
    /// connection and each agent sends about one a second: deploy/README.md has the numbers.
    pub intake_connections: Option<u32>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsConfig {
    /// Home region: SQS, S3, SNS, EventBridge and IoT live here.
    pub region: String,
    /// Another endpoint for every AWS API (moto, LocalStack); S3 then uses path-style URLs.
    pub endpoint_url: Option<String>,
    pub queue_url: String,
    pub spec_bucket: String,
    #[serde(default = "default_spec_prefix")]
    pub spec_prefix: String,
    pub results_bucket: String,
    #[serde(default = "default_results_prefix")]
    pub results_prefix: String,
    pub sns_topic_arn: Option<String>,
    #[serde(default = "default_bus")]
    pub event_bus: String,
    #[serde(default)]
    pub iot: IotConfig,
    /// Agent regions (up to 5): where ECS tasks of a spec region run.
    #[serde(default)]
    pub regions: Vec<RegionConfig>,
    /// Seconds a message stays invisible per extension while it is being handled.
    #[serde(default = "default_visibility")]
    pub visibility_timeout_s: i32,
    /// Who may start and cancel runs with pipeline events.
    #[serde(default)]
    pub pipeline: PipelineConfig,
    /// `[aws.scheduler]`: schedules live in EventBridge Scheduler (else the coordinator fires
    /// them itself).
    pub scheduler: Option<SchedulerConfig>,
}

/// `[aws.scheduler]`: EventBridge Scheduler sends each occurrence's `RunRequested` to the intake
/// queue, assuming `role_arn` (allowed `sqs:SendMessage` on it; its account is the pipeline
/// account the events carry, so list it in `[aws.pipeline] accounts`).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SchedulerConfig {
    pub role_arn: String,
    /// The schedule group (default `default`).
    #[serde(default = "default_group")]
    pub group: String,
    /// The intake queue's ARN; default: made from `queue_url` and `region`.
    pub queue_arn: Option<String>,
}

fn default_group() -> String {
    "default".into()
}

impl AwsConfig {
    /// The intake queue's ARN, from `[aws.scheduler] queue_arn` or the queue URL
    /// (`https://sqs.<region>.amazonaws.com/<account>/<name>`).
    pub fn queue_arn(&self) -> Option<String> {
        if let Some(a) = self.scheduler.as_ref().and_then(|s| s.queue_arn.clone()) {
            return Some(a);
        }
        let url = url::Url::parse(&self.queue_url).ok()?;
        let mut parts = url.path_segments()?;
        let (account, name) = (parts.next()?, parts.next()?);
        Some(format!("arn:aws:sqs:{}:{account}:{name}", self.region))
    }
}

/// `[aws.pipeline]`: pipeline events (`RunRequested`, `CancelRequested`) are taken only from
/// these sources *and* these accounts. `events:PutEvents` is granted widely and a source name
/// is not reserved, so without `accounts` no pipeline event is taken at all.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    #[serde(default = "default_pipeline_sources")]
    pub sources: Vec<String>,
    #[serde(default)]
    pub accounts: Vec<String>,
}

impl Default for PipelineConfig {
    fn default() -> PipelineConfig {
        PipelineConfig {
            sources: default_pipeline_sources(),
            accounts: Vec::new(),
        }
    }
}

fn default_pipeline_sources() -> Vec<String> {
    vec![PIPELINE_SOURCE.to_string()]
}

/// The default `source` of the events deploy pipelines send to ask for runs.
pub const PIPELINE_SOURCE: &str = "herd.pipeline";

#[derive(Debug, Clone, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum CertificateSource {
    /// IoT Core makes the key pair (CreateKeysAndCertificate).
    #[default]
    Aws,
    /// Sign with our CA (`ca_cert`/`ca_key`) and RegisterCertificateWithoutCA: for a
    /// self-managed CA, and for brokers that trust only that CA.
    OwnCa,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct IotConfig {
    #[serde(default)]
    pub certificates: CertificateSource,
    pub ca_cert: Option<PathBuf>,
    pub ca_key: Option<PathBuf>,
    /// The MQTT data endpoint agents use; default DescribeEndpoint(`iot:Data-ATS`):8883.
    pub endpoint: Option<String>,
    /// Name of the coordinator's own IoT policy (made by the stack).
    #[serde(default = "default_coordinator_policy")]
    pub coordinator_policy: String,
    /// Name of the one IoT policy every agent certificate gets (`deploy/iot-agent-policy.json`,
    /// made by the stack; made by the coordinator at start where it is missing). Its policy
    /// variables (the thing's `run` and `agent` attributes) confine each agent to its own
    /// run's and its own topics, so no policy is made per run.
    #[serde(default = "default_agent_policy")]
    pub agent_policy: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionConfig {
    pub region: String,
    pub cluster: String,
    pub task_definition: String,
    #[serde(default = "default_container")]
    pub container: String,
    pub subnets: Vec<String>,
    #[serde(default)]
    pub security_groups: Vec<String>,
    #[serde(default = "yes")]
    pub assign_public_ip: bool,
}

fn default_results_dir() -> PathBuf {
    PathBuf::from("herd-results")
}
fn default_late_window() -> u64 {
    crate::run::aggregator::LATE_WINDOW_S
}
fn default_spec_prefix() -> String {
    "specs/".into()
}
fn default_results_prefix() -> String {
    "results/".into()
}
fn default_bus() -> String {
    "default".into()
}
fn default_visibility() -> i32 {
    60
}
fn default_coordinator_policy() -> String {
    "herd-coordinator".into()
}
fn default_agent_policy() -> String {
    "herd-agents".into()
}
fn default_container() -> String {
    "agent".into()
}
fn yes() -> bool {
    true
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}: cannot read: {1}")]
    Read(String, std::io::Error),
    #[error("{origin}: {message}")]
    Invalid { origin: String, message: String },
}

impl ServeConfig {
    /// The state folder: `state_dir`, else `<results_dir>/.state`.
    pub fn state_dir(&self) -> PathBuf {
        self.state_dir
            .clone()
            .unwrap_or_else(|| self.results_dir.join(".state"))
    }

    /// Reads the file if given, else `HERD_CONFIG_TOML`, else the defaults (local profile),
    /// then applies single-field environment overrides and checks the whole.
    pub fn load(path: Option<&Path>) -> Result<ServeConfig, ConfigError> {
        let (origin, text) = match path {
            Some(p) => (
                p.display().to_string(),
                std::fs::read_to_string(p)
                    .map_err(|e| ConfigError::Read(p.display().to_string(), e))?,
            ),
            None => match std::env::var("HERD_CONFIG_TOML") {
                Ok(t) => ("HERD_CONFIG_TOML".to_string(), t),
                Err(_) => ("defaults".to_string(), String::new()),
            },
        };
        let mut c = ServeConfig::parse(&origin, &text)?;
        c.apply_env(|k| std::env::var(k).ok());
        c.check().map_err(|message| ConfigError::Invalid {
            origin: origin.clone(),
            message,
        })?;
        Ok(c)
    }

    pub fn parse(origin: &str, text: &str) -> Result<ServeConfig, ConfigError> {
        toml::from_str(text).map_err(|e| {
            let at = e
                .span()
                .map(|s| {
                    let line = text[..s.start.min(text.len())].matches('\n').count() + 1;
                    format!("line {line}: ")
                })
                .unwrap_or_default();
            ConfigError::Invalid {
                origin: origin.to_string(),
                message: format!("{at}{}", e.message()),
            }
        })
    }

    /// `HERD_PROFILE`, `HERD_RESULTS_DIR`, `HERD_INBOX`, `HERD_BROKER_URL`, `HERD_AWS_ENDPOINT_URL`,
    /// `HERD_QUEUE_URL`: the fields a deployment most often changes without a new file.
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) {
        if let Some(p) = get("HERD_PROFILE") {
            self.profile = match p.as_str() {
                "aws" => Profile::Aws,
                _ => Profile::Local,
            };
        }
        if let Some(d) = get("HERD_RESULTS_DIR") {
            self.results_dir = d.into();
        }
        if let Some(d) = get("HERD_STATE_DIR") {
            self.state_dir = Some(d.into());
        }
        if let Some(d) = get("HERD_INBOX") {
            self.inbox = Some(d.into());
        }
        if let Some(u) = get("HERD_BROKER_URL") {
            self.broker.url = Some(u);
        }
        if let Some(aws) = self.aws.as_mut() {
            if let Some(u) = get("HERD_AWS_ENDPOINT_URL") {
                aws.endpoint_url = Some(u);
            }
            if let Some(u) = get("HERD_QUEUE_URL") {
                aws.queue_url = u;
            }
        }
    }

    /// The target policy `[targets]` and the profile make.
    pub fn target_policy(&self) -> Result<TargetPolicy, PolicyError> {
        let t = &self.targets;
        let deny_private = t.deny_private.unwrap_or(self.profile == Profile::Aws);
        Ok(TargetPolicy {
            default: t.default,
            allow: parse_rules(&t.allow)?,
            deny: parse_rules(&t.deny)?,
            reserved: if deny_private {
                private_ranges()
            } else {
                Vec::new()
            },
        })
    }

    /// Where the local profile appends its notification lines.
    pub fn notifications_file(&self) -> PathBuf {
        self.notifications
            .clone()
            .unwrap_or_else(|| self.results_dir.join("notifications.jsonl"))
    }

    /// Whether specs whose runner cannot enforce the policy are accepted.
    pub fn unconfined_runners(&self) -> bool {
        self.targets
            .unconfined_runners
            .unwrap_or(self.profile == Profile::Local)
    }

    /// Cross-field checks serde cannot express.
    fn check(&self) -> Result<(), String> {
        self.target_policy().map_err(|e| format!("[targets] {e}"))?;
        if let Some(n) = self.broker.intake_connections {
            if !(1..=crate::bus::MAX_INTAKE).contains(&n) {
                return Err(format!(
                    "[broker] intake_connections = {n}: between 1 and {}",
                    crate::bus::MAX_INTAKE
                ));
            }
        }
        self.history.check()?;
        if self.history.dynamodb_table.is_some() && self.aws.is_none() {
            return Err(
                "[history] dynamodb_table needs the aws profile's [aws] section (region, endpoint)"
                    .into(),
            );
        }
        if let Some(api) = &self.api {
            api.check()?;
        }
        self.queue.check()?;
        match self.profile {
            Profile::Local => {
                if self.inbox.is_none() {
                    return Err("the local profile needs `inbox = \"<folder>\"`".into());
                }
            }
            Profile::Aws => {
                let Some(aws) = &self.aws else {
                    return Err("profile = \"aws\" needs an [aws] section".into());
                };
                if self.notifications.is_some() {
                    return Err(
                        "`notifications` is the local profile's file; on AWS notifications go \
                         to SNS and EventBridge"
                            .into(),
                    );
                }
                if aws.regions.is_empty() {
                    return Err("[aws] needs at least one [[aws.regions]] entry".into());
                }
                if aws.regions.len() > messages::spec::MAX_REGIONS {
                    return Err(format!(
                        "{} [[aws.regions]] given; herd runs in at most {}",
                        aws.regions.len(),
                        messages::spec::MAX_REGIONS
                    ));
                }
                for r in &aws.regions {
                    if r.subnets.is_empty() {
                        return Err(format!("[[aws.regions]] {}: `subnets` is empty", r.region));
                    }
                }
                if aws.iot.certificates == CertificateSource::OwnCa
                    && (aws.iot.ca_cert.is_none() || aws.iot.ca_key.is_none())
                {
                    return Err(
                        "[aws.iot] certificates = \"own-ca\" needs `ca_cert` and `ca_key`".into(),
                    );
                }
                if aws.visibility_timeout_s < 10 {
                    return Err("[aws] visibility_timeout_s must be at least 10".into());
                }
            }
        }
        if self.broker.cert.is_some() != self.broker.key.is_some() {
            return Err("[broker] `cert` and `key` go together".into());
        }
        self.limits.check()?;
        let max_agents = self.limits.spec_limits().agents;
        if self.agents.is_some_and(|a| a > max_agents) {
            return Err(format!(
                "agents = {} is more than [limits] agents ({max_agents})",
                self.agents.unwrap_or_default()
            ));
        }
        Ok(())
    }

    pub fn region(&self, name: &str) -> Option<&RegionConfig> {
        self.aws.as_ref()?.regions.iter().find(|r| r.region == name)
    }
}

#[cfg(test)]
mod stack_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use messages::spec::SpecLimits;

    #[test]
    fn aws_config_reads_and_checks() {
        let c = ServeConfig::parse(
            "t",
            r#"
profile = "aws"
[aws]
region = "us-east-1"
queue_url = "http://q"
spec_bucket = "s"
results_bucket = "r"
[[aws.regions]]
region = "us-east-1"
cluster = "herd"
task_definition = "herd-agent"
subnets = ["subnet-1"]
"#,
        )
        .expect("parses");
        assert_eq!(c.profile, Profile::Aws);
        c.check().expect("valid");
        let aws = c.aws.as_ref().expect("aws");
        assert_eq!(aws.spec_prefix, "specs/");
        assert_eq!(aws.regions[0].container, "agent");
        assert_eq!(aws.iot.certificates, CertificateSource::Aws);
    }

    #[test]
    fn unknown_keys_and_gaps_are_named() {
        let e = ServeConfig::parse("f.toml", "profile = \"aws\"\nqueues = 1\n")
            .expect_err("unknown key");
        let msg = e.to_string();
        assert!(
            msg.starts_with("f.toml: line 2: unknown field `queues`"),
            "{msg}"
        );
        let c = ServeConfig::parse("f.toml", "profile = \"aws\"\n").expect("parses");
        assert!(c.check().expect_err("no aws").contains("[aws]"));
        let c = ServeConfig::parse("f.toml", "profile = \"local\"\n").expect("parses");
        assert!(c.check().expect_err("no inbox").contains("inbox"));
    }

    #[test]
    fn targets_default_by_profile_and_read_rules() {
        let local = ServeConfig::parse("t", "inbox = \"in\"\n").expect("parses");
        let p = local.target_policy().expect("policy");
        assert!(p.is_open() && local.unconfined_runners());
        let aws = ServeConfig::parse(
            "t",
            "profile = \"aws\"\n[targets]\nallow = [\"10.1.2.0/24\"]\ndeny = [\"*.corp.example\"]\n",
        )
        .expect("parses");
        let p = aws.target_policy().expect("policy");
        assert_eq!(p.default, Access::Allow);
        assert!(!p.reserved.is_empty() && !aws.unconfined_runners());
        assert_eq!(p.allow.len() + p.deny.len(), 2);
        let strict = ServeConfig::parse(
            "t",
            "inbox = \"in\"\n[targets]\ndefault = \"deny\"\ndeny_private = true\nunconfined_runners = false\n",
        )
        .expect("parses");
        let p = strict.target_policy().expect("policy");
        assert_eq!(p.default, Access::Deny);
        assert!(!p.reserved.is_empty() && !strict.unconfined_runners());
        let bad = ServeConfig::parse("t", "inbox = \"in\"\n[targets]\nallow = [\"10.0.0.1/8\"]\n")
            .expect("parses");
        let e = bad.check().expect_err("host bits");
        assert!(e.starts_with("[targets] target rule \"10.0.0.1/8\""), "{e}");
    }

    #[test]
    fn limits_default_and_can_be_raised() {
        let c = ServeConfig::parse("t", "inbox = \"in\"\n").expect("parses");
        assert_eq!(c.limits.spec_limits(), SpecLimits::DEFAULT);
        let c = ServeConfig::parse(
            "t",
            "inbox = \"in\"\n[limits]\nvus = 500000\nduration_s = 172800\nagents = 20000\nyaml_nodes = 200000\n",
        )
        .expect("parses");
        c.check().expect("valid");
        let l = c.limits.spec_limits();
        assert_eq!(
            (l.vus, l.duration_ms, l.agents, l.yaml_nodes),
            (500_000, 172_800_000, 20_000, 200_000)
        );
        assert_eq!(l.steps, SpecLimits::DEFAULT.steps);
    }

    #[test]
    fn limits_keys_are_checked() {
        let e = ServeConfig::parse("f.toml", "inbox = \"in\"\n[limits]\nvu = 1\n")
            .expect_err("unknown key");
        assert!(
            e.to_string()
                .starts_with("f.toml: line 3: unknown field `vu`"),
            "{e}"
        );
        let bad = |t: &str| {
            ServeConfig::parse("t", &format!("inbox = \"in\"\n{t}"))
                .expect("parses")
                .check()
                .expect_err(t)
        };
        assert_eq!(
            bad("[limits]\nvus = 0\n"),
            "[limits] vus must be at least 1"
        );
        assert!(bad("[limits]\nyaml_depth = 5000\n").contains("at most 1000"));
        assert!(bad("agents = 20000\n").contains("more than [limits] agents (10000)"));
    }

    #[test]
    fn notifications_go_beside_the_results_unless_named() {
        let c = ServeConfig::parse("t", "inbox = \"in\"\nresults_dir = \"r\"\n").expect("parses");
        assert_eq!(c.notifications_file(), Path::new("r/notifications.jsonl"));
        let c = ServeConfig::parse(
            "t",
            "inbox = \"in\"\nnotifications = \"/var/log/n.jsonl\"\n",
        )
        .expect("parses");
        assert_eq!(c.notifications_file(), Path::new("/var/log/n.jsonl"));
    }

    #[test]
    fn env_overrides_win() {
        let mut c = ServeConfig::parse("t", "inbox = \"in\"\n").expect("parses");
        c.apply_env(|k| (k == "HERD_PROFILE").then(|| "aws".to_string()));
        assert_eq!(c.profile, Profile::Aws);
    }
}
