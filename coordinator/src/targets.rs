//! The target policy on the coordinator's side: built from `herd serve`'s `[targets]` or
//! `herd run`'s `--allow-target`/`--deny-target`, checked up front on what a spec names, and
//! handed to every agent in its Assign (where it is enforced on every request, redirect hop
//! and connected address: `messages::policy`, `agent::http`).
//!
//! Up front, without DNS: the spec's `target.url` (or the `target_url` override that replaced
//! it) and its absolute step URLs with nothing templated. A name is not resolved here — the
//! coordinator may not see the DNS the agents see — so a name that resolves to a denied
//! address is refused by the agents, as is any templated URL once rendered.

use messages::policy::{Access, Denied, TargetPolicy, TargetRule};
use messages::spec::Spec;
use url::Url;

/// Where the spec's target URL came from, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetFrom {
    Spec,
    /// The pipeline's (or `--target-url`'s) `target_url` override.
    Override,
}

/// What the policy refuses in `spec` before any agent starts, one line each. `unconfined_runners`
/// accepts a script runner that cannot enforce the whole policy (Locust, JMeter, and k6 under a
/// default deny or URL-prefix deny rules); otherwise such a spec is refused with the reason.
pub fn check_spec(
    spec: &Spec,
    target_from: TargetFrom,
    policy: &TargetPolicy,
    unconfined_runners: bool,
) -> Result<(), Vec<String>> {
    let mut errors = Vec::new();
    let what = match target_from {
        TargetFrom::Spec => "target.url",
        TargetFrom::Override => "the target_url override",
    };
    if !spec.target.builtin && !spec.target.url.is_empty() {
        if let Some(why) = refused(policy, &spec.target.url) {
            errors.push(format!("{what} {}: {why}", spec.target.url));
        }
    }
    for step in &spec.scenario {
        let url = &step.request.url;
        let absolute = url.starts_with("http://") || url.starts_with("https://");
        if absolute && !url.contains("{{") {
            if let Some(why) = refused(policy, url) {
                errors.push(format!("step `{}`: URL {url}: {why}", step.name));
            }
        }
    }
    if let (Some(r), false) = (&spec.runner, unconfined_runners) {
        let tool = agent::runners::runner(r.engine);
        for gap in tool.unconfined(policy) {
            errors.push(format!(
                "engine {}: the target policy cannot be enforced on its script ({gap}); \
                 an operator may accept that with `[targets] unconfined_runners = true`",
                r.engine.name()
            ));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// `herd run` and `herd agent --standalone`: the built-in target they started stays reachable
/// under an allow list (`--allow-target`), by a prefix rule naming exactly its origin. A deny
/// rule still wins over it.
pub fn allow_builtin(policy: &mut TargetPolicy, url: &str) {
    if policy.default == Access::Allow {
        return;
    }
    match format!("{}/", url.trim_end_matches('/')).parse::<TargetRule>() {
        Ok(rule) => policy.allow.push(rule),
        Err(e) => tracing::warn!(error = %e, "the built-in target's URL is not a rule"),
    }
}

/// `herd run` and `herd agent --standalone` do not refuse a spec (the user's own machine, the
/// user's own policy): what a shared service would refuse is printed as a warning, and the
/// agents refuse the requests.
pub fn warn_up_front(spec: &Spec, policy: &TargetPolicy) {
    if let Err(lines) = check_spec(spec, TargetFrom::Spec, policy, false) {
        for l in lines {
            eprintln!("herd: warning: {l}");
        }
    }
}

/// Why `policy` refuses the URL `text`, if it does (an unparsable URL is the spec checker's
/// business, not the policy's).
pub fn refused(policy: &TargetPolicy, text: &str) -> Option<Denied> {
    let url = Url::parse(text).ok()?;
    policy.check_url(&url).err()
}

#[cfg(test)]
mod tests {
    use super::*;
    use messages::policy::{parse_rules, private_ranges};

    fn spec(yaml: &str) -> Spec {
        messages::parse_spec(yaml).expect("test spec parses")
    }

    fn aws() -> TargetPolicy {
        TargetPolicy {
            reserved: private_ranges(),
            ..TargetPolicy::default()
        }
    }

    #[test]
    fn a_spec_whose_target_is_denied_is_refused_with_the_url_and_the_rule() {
        let s = spec("name: a\ntarget: http://169.254.169.254/latest/meta-data/\nscenario: [{request: GET /}]\nload: {executor: constant-vus, vus: 1, duration: 1s}\n");
        let errors = check_spec(&s, TargetFrom::Spec, &aws(), false).expect_err("metadata");
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].starts_with("target.url http://169.254.169.254/latest/meta-data: 169.254.169.254 is in the reserved range 169.254.0.0/16"),
            "{errors:?}"
        );
        let errors = check_spec(&s, TargetFrom::Override, &aws(), false).expect_err("override too");
        assert!(
            errors[0].starts_with("the target_url override http://169.254.169.254/"),
            "{errors:?}"
        );
        // The operator can list the address; and `herd run`'s default allows everything.
        let widened = TargetPolicy {
            allow: parse_rules(&["169.254.169.254"]).expect("rule"),
            ..aws()
        };
        assert_eq!(check_spec(&s, TargetFrom::Spec, &widened, false), Ok(()));
        assert_eq!(
            check_spec(&s, TargetFrom::Spec, &TargetPolicy::allow_all(), false),
            Ok(())
        );
    }

    #[test]
    fn absolute_static_step_urls_are_checked_and_templated_ones_left_to_the_agent() {
        let s = spec("name: a\ntarget: https://api.example.com\nscenario:\n  - request: GET /ok\n  - request: GET http://10.0.0.5/admin\n  - request: GET http://10.0.0.{{vu}}/x\n  - request: GET http://[::ffff:127.0.0.1]:8080/\nload: {executor: constant-vus, vus: 1, duration: 1s}\n");
        let errors = check_spec(&s, TargetFrom::Spec, &aws(), false).expect_err("private");
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0]
            .contains("URL http://10.0.0.5/admin: 10.0.0.5 is in the reserved range 10.0.0.0/8"));
        assert!(errors[1].contains("127.0.0.1 is in the reserved range 127.0.0.0/8"));
    }

    #[test]
    fn runners_the_policy_cannot_confine_are_refused_unless_accepted() {
        let locust = spec("name: a\ntarget: https://api.example.com\nengine: locust\nscript: locustfile.py\nload: {executor: constant-vus, vus: 1, duration: 1s}\n");
        let errors = check_spec(&locust, TargetFrom::Spec, &aws(), false).expect_err("locust");
        assert!(errors[0].starts_with("engine locust: the target policy cannot be enforced"));
        assert_eq!(check_spec(&locust, TargetFrom::Spec, &aws(), true), Ok(()));
        // An open policy has nothing to enforce.
        assert_eq!(
            check_spec(&locust, TargetFrom::Spec, &TargetPolicy::allow_all(), false),
            Ok(())
        );
        // k6 takes the reserved ranges as --blacklist-ip: confined.
        let k6 = spec("name: a\ntarget: https://api.example.com\nengine: k6\nscript: main.js\nload: {executor: constant-vus, vus: 1, duration: 1s}\n");
        assert_eq!(check_spec(&k6, TargetFrom::Spec, &aws(), false), Ok(()));
        let allow_list = TargetPolicy::from_flags(&["api.example.com"], &[]).expect("flags");
        assert!(check_spec(&k6, TargetFrom::Spec, &allow_list, false).is_err());
    }

    #[test]
    fn the_builtin_target_stays_reachable_under_an_allow_list_but_not_a_deny_rule() {
        let url = "http://127.0.0.1:40123";
        let mut open = TargetPolicy::allow_all();
        allow_builtin(&mut open, url);
        assert_eq!(open, TargetPolicy::allow_all());
        let mut list = TargetPolicy::from_flags(&["api.example.com"], &[]).expect("flags");
        allow_builtin(&mut list, url);
        assert_eq!(refused(&list, "http://127.0.0.1:40123/fast"), None);
        assert!(refused(&list, "http://127.0.0.1:40124/fast").is_some());
        let mut denied =
            TargetPolicy::from_flags(&["api.example.com"], &["127.0.0.1/32"]).expect("flags");
        allow_builtin(&mut denied, url);
        assert!(refused(&denied, "http://127.0.0.1:40123/fast").is_some());
    }
}
