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
    assert!(section("CoordinatorService").contains("CoordinatorIotPolicy]"));
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
