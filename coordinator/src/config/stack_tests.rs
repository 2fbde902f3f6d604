//! The stack (`deploy/herd.yaml`, `deploy/agent-region.yaml`) against what herd reads and
//! what a first deployment needs: its coordinator config parses, and the template keeps the
//! ordering, retention and scoping rules issue 15 named.

use std::path::Path;

use super::*;

/// The config the stack hands its coordinator (`deploy/herd.yaml`, `HERD_CONFIG_TOML`),
/// with its `${…}` substitutions filled in, is one this herd reads.
#[test]
fn the_stacks_coordinator_config_parses() {
    let yaml =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/herd.yaml"))
            .expect("deploy/herd.yaml");
    let start = yaml
        .find("profile = \"aws\"")
        .expect("the coordinator's config");
    let end = start + yaml[start..].find("- SubnetList").expect("its end");
    let mut toml = String::new();
    for line in yaml[start..end].lines() {
        toml.push_str(line.trim_start());
        toml.push('\n');
    }
    let toml = toml
        .replace("${PublicIpToml}", "true")
        .replace("${IntakeConnections}", "16")
        .replace("${ExtraRegionConfig}", "");
    // The console's sign-in lines, as the stack renders them with ApiDomainName and
    // SignInDomainPrefix set (and nothing without).
    let at = yaml
        .find("ConsoleSignInToml: !If")
        .expect("the sign-in lines");
    let sign_in: String = yaml[at..]
        .lines()
        .map(str::trim_start)
        .skip_while(|l| !l.starts_with("login_url"))
        .take_while(|l| l.starts_with("login_") || l.starts_with("token_url"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(sign_in.lines().count(), 4, "{sign_in}");
    for (lines, login) in [(sign_in.as_str(), true), ("", false)] {
        let toml = fill_substitutions(&toml.replace("${ConsoleSignInToml}", lines));
        let c = ServeConfig::parse("deploy/herd.yaml", &toml).expect("parses");
        assert_eq!(c.profile, Profile::Aws);
        assert_eq!(
            c.on_shutdown,
            OnShutdown::Resume,
            "a deployment must not cancel runs"
        );
        let oidc = c
            .api
            .as_ref()
            .and_then(|a| a.oidc.as_ref())
            .expect("[api.oidc]");
        assert_eq!(oidc.login_url.is_some(), login);
        assert_eq!(oidc.token_url.is_some(), login);
        assert_eq!(c.broker.intake_connections, Some(16));
    }
}

/// Fresh-account deployment rules the template must keep (issue 15): the coordinator names
/// its IoT policy by the stack's reference and its service waits for it; its log group
/// outlives a rolled-back first start; only spec files start runs.
#[test]
fn the_stack_orders_and_keeps_what_a_first_deployment_needs() {
    let yaml =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/herd.yaml"))
            .expect("deploy/herd.yaml");
    // A resource: its header line and every line indented deeper than it.
    let section = |name: &str| {
        let at = yaml.find(&format!("\n  {name}:\n")).expect(name);
        yaml[at + 1..]
            .lines()
            .enumerate()
            .take_while(|(i, l)| *i == 0 || l.is_empty() || l.starts_with("   "))
            .map(|(_, l)| format!("{l}\n"))
            .collect::<String>()
    };
    assert!(yaml.contains("coordinator_policy = \"${CoordinatorIotPolicy}\""));
    assert!(section("CoordinatorService").contains("CoordinatorIotPolicy, AgentIotPolicy]"));
    let logs = section("CoordinatorLogGroup");
    assert!(
        logs.contains("DeletionPolicy: Retain") && logs.contains("UpdateReplacePolicy: Retain")
    );
    // Agents are launched by task family, so a new image's revision does not break RunTask.
    let region = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/agent-region.yaml"),
    )
    .expect("deploy/agent-region.yaml");
    for t in [&yaml, &region] {
        assert!(t.contains("task_definition = \"herd-agent\""));
        assert!(!t.contains("task_definition = \"${AgentTaskDefinition}\""));
    }
    let rule = section("SpecDroppedRule");
    assert!(rule.contains("wildcard: \"specs/*.yaml\"") && !rule.contains("prefix: specs/"));
    assert!(!std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/iot-agent-policy.json")
    )
    .expect("agent policy")
    .contains("arn:aws:"));
}

/// Every other `${Name}` becomes a plain word.
fn fill_substitutions(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        match rest[i..].find('}') {
            Some(j) => {
                out.push('x');
                rest = &rest[i + j + 1..];
            }
            None => {
                rest = &rest[i..];
                break;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The stack's IAM as CloudFormation renders it (intrinsic tags dropped, their values kept),
/// checked against least privilege (issue 15): no role may make or delete IoT policies or
/// register certificates, tag tasks it never tags, or hold a wildcard beyond the account-level
/// calls that support no resource; IoT things only `herd-*`; the one agent policy is the
/// file herd tests; bootstrap objects are denied to every principal but the two roles.
#[test]
fn the_stacks_iam_is_least_privilege() {
    use yaml_rust2::{Yaml, YamlLoader};
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/herd.yaml"))
            .expect("deploy/herd.yaml");
    let docs = YamlLoader::load_from_str(&text).expect("the template is YAML");
    let res = &docs[0]["Resources"];
    let strings = |y: &Yaml| -> Vec<String> {
        match y {
            Yaml::String(s) => vec![s.clone()],
            Yaml::Array(a) => a
                .iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect(),
            _ => Vec::new(),
        }
    };
    let resources = res.as_hash().expect("Resources");
    // (role, statement) for every inline policy of every role.
    let mut statements: Vec<(String, &Yaml)> = Vec::new();
    for (name, r) in resources {
        if r["Type"].as_str() != Some("AWS::IAM::Role") {
            continue;
        }
        for p in r["Properties"]["Policies"].as_vec().into_iter().flatten() {
            for st in p["PolicyDocument"]["Statement"]
                .as_vec()
                .into_iter()
                .flatten()
            {
                statements.push((name.as_str().unwrap_or("?").to_string(), st));
            }
        }
    }
    assert!(statements.len() > 10, "the roles' statements were found");
    // Calls that support no resource-level permission, and so may have `Resource: "*"`.
    let account_level = [
        "iot:DescribeEndpoint",
        "iot:CreateKeysAndCertificate",
        "iot:ListThings",
    ];
    for (role, st) in &statements {
        let actions = strings(&st["Action"]);
        let resource = strings(&st["Resource"]);
        for a in &actions {
            assert!(
                ![
                    "iot:CreatePolicy",
                    "iot:DeletePolicy",
                    "iot:RegisterCertificateWithoutCA",
                    "ecs:TagResource",
                    "*",
                ]
                .contains(&a.as_str())
                    && !a.ends_with(":*"),
                "{role} may {a}"
            );
        }
        if st["Effect"].as_str() == Some("Allow") && resource.iter().any(|r| r == "*") {
            for a in &actions {
                assert!(
                    account_level.contains(&a.as_str()),
                    "{role}: {a} on every resource"
                );
            }
        }
        if actions.iter().any(|a| {
            [
                "iot:CreateThing",
                "iot:DeleteThing",
                "iot:ListThingPrincipals",
            ]
            .contains(&a.as_str())
        }) {
            assert!(
                resource.iter().all(|r| r.ends_with(":thing/herd-*")),
                "{role}: things beyond herd's: {resource:?}"
            );
        }
        if actions
            .iter()
            .any(|a| a.contains("Certificate") || a.contains("Principal") || a.ends_with("Policy"))
        {
            for r in &resource {
                assert!(
                    r == "*"
                        || r.ends_with(":cert/*")
                        || r.ends_with(":thing/herd-*")
                        || r.ends_with(":policy/${AgentIotPolicy}"),
                    "{role}: {actions:?} on {r}"
                );
            }
        }
    }
    // The agent policy in the stack is the file herd's tests check (policy_sim.rs).
    let normalise = |s: &str| {
        s.replace("${AWS::Partition}", "${Partition}")
            .replace("${AWS::Region}", "${Region}")
            .replace("${AWS::AccountId}", "${Account}")
            .replace("${!", "${")
    };
    let stack_policy = &res["AgentIotPolicy"]["Properties"]["PolicyDocument"]["Statement"];
    let file: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/iot-agent-policy.json"),
        )
        .expect("agent policy"),
    )
    .expect("JSON");
    let file_statements = file["Statement"].as_array().expect("statements");
    let stack_statements = stack_policy.as_vec().expect("the stack's agent policy");
    assert_eq!(stack_statements.len(), file_statements.len());
    for (s, f) in stack_statements.iter().zip(file_statements) {
        let sid = s["Sid"].as_str().unwrap_or_default();
        assert_eq!(Some(sid), f["Sid"].as_str());
        assert_eq!(
            strings(&s["Action"]),
            vec![f["Action"].as_str().unwrap_or_default().to_string()],
            "{sid}"
        );
        let file_resources: Vec<String> = match &f["Resource"] {
            serde_json::Value::String(r) => vec![r.clone()],
            serde_json::Value::Array(a) => a
                .iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect(),
            _ => Vec::new(),
        };
        let stack_resources: Vec<String> = strings(&s["Resource"])
            .iter()
            .map(|r| normalise(r))
            .collect();
        assert_eq!(stack_resources, file_resources, "{sid}");
    }
    assert!(text.contains("agent_policy = \"${AgentIotPolicy}\""));
    // Bootstrap objects (agents' private keys): denied to all but the two roles.
    let bucket = &res["ResultsBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"];
    let deny = bucket
        .as_vec()
        .into_iter()
        .flatten()
        .find(|st| st["Sid"].as_str() == Some("BootstrapOnlyForHerdRoles"))
        .expect("the bootstrap deny");
    assert_eq!(deny["Effect"].as_str(), Some("Deny"));
    assert_eq!(
        strings(&deny["Resource"]),
        vec!["${ResultsBucket.Arn}/_agents/*".to_string()]
    );
    assert_eq!(
        strings(&deny["Condition"]["ArnNotEquals"]["aws:PrincipalArn"]),
        vec![
            "CoordinatorTaskRole.Arn".to_string(),
            "AgentTaskRole.Arn".to_string()
        ]
    );
}
