//! A small evaluator of IoT policies, enough to show what the agent policy lets one agent do:
//! Allow/Deny statements, `*` in resources, and the policy variables herd uses
//! (`${iot:Connection.Thing.ThingName}`, `${iot:Connection.Thing.Attributes[…]}`) filled in
//! for the connected thing, as IoT Core does. Test-only: IoT Core is the authority; this
//! keeps the policy file from drifting open unnoticed.

use std::collections::BTreeMap;

use serde_json::Value;

use super::{agent_client_id, agent_policy, AGENT_ATTRIBUTE, RUN_ATTRIBUTE};

/// The connected thing, as IoT Core knows it (attached to its certificate).
struct Thing {
    name: String,
    attributes: BTreeMap<String, String>,
}

fn list(v: &Value) -> Vec<&str> {
    match v {
        Value::String(s) => vec![s.as_str()],
        Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// `*` matches any run of characters (IoT resource ARNs; `+`/`#` are literal there).
fn glob(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((head, rest)) => {
            let Some(tail) = text.strip_prefix(head) else {
                return false;
            };
            (0..=tail.len()).any(|i| tail.is_char_boundary(i) && glob(rest, &tail[i..]))
        }
    }
}

fn substitute(resource: &str, thing: &Thing) -> String {
    let mut out = resource.replace("${iot:Connection.Thing.ThingName}", &thing.name);
    while let Some(start) = out.find("${iot:Connection.Thing.Attributes[") {
        let Some(end) = out[start..].find("]}") else {
            break;
        };
        let name = &out[start + "${iot:Connection.Thing.Attributes[".len()..start + end];
        // An attribute the thing lacks matches nothing (IoT Core leaves no value either).
        let value = thing
            .attributes
            .get(name)
            .cloned()
            .unwrap_or_else(|| "\u{0}".into());
        out.replace_range(start..start + end + 2, &value);
    }
    out
}

/// Whether `doc` allows `action` on `resource` for a connection of `thing`.
fn allows(doc: &Value, thing: &Thing, action: &str, resource: &str) -> bool {
    let mut allowed = false;
    for st in doc["Statement"].as_array().into_iter().flatten() {
        let acts = list(&st["Action"]);
        if !acts.iter().any(|a| glob(a, action)) {
            continue;
        }
        let hit = list(&st["Resource"])
            .iter()
            .any(|r| glob(&substitute(r, thing), resource));
        if !hit {
            continue;
        }
        match st["Effect"].as_str() {
            Some("Deny") => return false,
            Some("Allow") => allowed = true,
            _ => {}
        }
    }
    allowed
}

const REGION: &str = "eu-west-1";
const ACCOUNT: &str = "123456789012";

fn arn(kind: &str, rest: &str) -> String {
    format!("arn:aws:iot:{REGION}:{ACCOUNT}:{kind}/{rest}")
}

fn agent(run: &str, i: u32) -> Thing {
    Thing {
        name: agent_client_id(run, i),
        attributes: BTreeMap::from([
            (AGENT_ATTRIBUTE.to_string(), i.to_string()),
            (RUN_ATTRIBUTE.to_string(), run.to_string()),
        ]),
    }
}

#[test]
fn an_agent_may_publish_only_on_its_own_topics_and_read_only_its_runs_control() {
    let doc: Value = serde_json::from_str(&agent_policy(REGION, ACCOUNT)).expect("policy JSON");
    let me = agent("shop-1", 1);
    let can = |action: &str, kind: &str, rest: &str| allows(&doc, &me, action, &arn(kind, rest));
    assert!(can("iot:Connect", "client", "herd-shop-1-agent-1"));
    assert!(
        !can("iot:Connect", "client", "herd-shop-1-agent-0"),
        "as a peer"
    );
    assert!(!can("iot:Connect", "client", "herd-coordinator-x"));
    for kind in ["status", "metrics"] {
        assert!(can(
            "iot:Publish",
            "topic",
            &format!("herd/runs/shop-1/agents/1/{kind}")
        ));
        assert!(
            !can(
                "iot:Publish",
                "topic",
                &format!("herd/runs/shop-1/agents/0/{kind}")
            ),
            "a peer's {kind}"
        );
        assert!(
            !can(
                "iot:Publish",
                "topic",
                &format!("herd/runs/shop-2/agents/1/{kind}")
            ),
            "another run's {kind}"
        );
    }
    assert!(
        !can("iot:Publish", "topic", "herd/runs/shop-1/control"),
        "as the coordinator"
    );
    assert!(!can("iot:Publish", "topic", "herd/runs/shop-1/result"));
    assert!(!can(
        "iot:Publish",
        "topic",
        "herd/runs/shop-1/agents/1/anything"
    ));
    assert!(can(
        "iot:Subscribe",
        "topicfilter",
        "herd/runs/shop-1/control"
    ));
    assert!(!can(
        "iot:Subscribe",
        "topicfilter",
        "herd/runs/shop-1/agents/+/metrics"
    ));
    assert!(!can("iot:Subscribe", "topicfilter", "herd/runs/+/control"));
    assert!(!can(
        "iot:Subscribe",
        "topicfilter",
        "herd/runs/shop-2/control"
    ));
    assert!(can("iot:Receive", "topic", "herd/runs/shop-1/control"));
    // Its own Assign topic, and no peer's.
    assert!(can(
        "iot:Subscribe",
        "topicfilter",
        "herd/runs/shop-1/control/1"
    ));
    assert!(can("iot:Receive", "topic", "herd/runs/shop-1/control/1"));
    assert!(!can("iot:Receive", "topic", "herd/runs/shop-1/control/0"));
    assert!(!can(
        "iot:Subscribe",
        "topicfilter",
        "herd/runs/shop-1/control/+"
    ));
    assert!(!can("iot:Publish", "topic", "herd/runs/shop-1/control/1"));
    assert!(!can(
        "iot:Receive",
        "topic",
        "herd/runs/shop-1/agents/0/metrics"
    ));
    assert!(!can("iot:Receive", "topic", "herd/runs/shop-2/control"));
    // A thing without the attributes (made by someone else) publishes nowhere.
    let stranger = Thing {
        name: agent_client_id("shop-1", 1),
        attributes: BTreeMap::new(),
    };
    assert!(!allows(
        &doc,
        &stranger,
        "iot:Publish",
        &arn("topic", "herd/runs/shop-1/agents/1/metrics")
    ));
    // One static policy for every run: an agent of another run is confined to that run.
    let other = agent("shop-2", 1);
    let other_can =
        |action: &str, kind: &str, rest: &str| allows(&doc, &other, action, &arn(kind, rest));
    assert!(other_can(
        "iot:Publish",
        "topic",
        "herd/runs/shop-2/agents/1/metrics"
    ));
    assert!(!other_can(
        "iot:Publish",
        "topic",
        "herd/runs/shop-1/agents/1/metrics"
    ));
    assert!(other_can(
        "iot:Receive",
        "topic",
        "herd/runs/shop-2/control"
    ));
    assert!(!other_can(
        "iot:Receive",
        "topic",
        "herd/runs/shop-1/control"
    ));
}

#[test]
fn the_simulator_matches_as_iot_core_does() {
    assert!(glob("a/*/c", "a/b/c"));
    assert!(glob("a/*", "a/b/c"));
    assert!(!glob("a/*/c", "a/b/d"));
    assert!(glob("*", ""));
    assert!(!glob(
        "herd/runs/r/agents/1/status",
        "herd/runs/r/agents/1/status2"
    ));
}
