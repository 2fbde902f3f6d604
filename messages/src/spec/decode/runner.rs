//! `engine`, `script` and `tool_args`: the top-level keys that hand the scenario to k6, Locust
//! or JMeter instead of herd's native engine.

use super::fields::{list, nonempty_string, string, Errs, Map};
use crate::spec::model::{Engine, Runner};
use crate::spec::node::Kind;

/// `engine`, `script`, `tool_args`. `None`: native (no engine key, or `engine: native`);
/// `Some(None)`: a runner engine whose settings were invalid (already reported).
pub(super) fn runner(m: &mut Map, errs: &mut Errs) -> Option<Option<Runner>> {
    let engine = match m.get("engine") {
        None => None,
        Some((n, p)) => match &n.kind {
            Kind::Str(s) if s == "native" => None,
            Kind::Str(s) if s == "k6" => Some(Some(Engine::K6)),
            Kind::Str(s) if s == "locust" => Some(Some(Engine::Locust)),
            Kind::Str(s) if s == "jmeter" => Some(Some(Engine::Jmeter)),
            _ => {
                errs.at(
                    &p,
                    n.pos,
                    format!(
                        "{} is not an engine (expected native, k6, locust or jmeter)",
                        n.show()
                    ),
                );
                Some(None)
            }
        },
    };
    let script = m.get("script");
    let args = m.get("tool_args");
    let Some(engine) = engine else {
        for (key, got) in [("script", &script), ("tool_args", &args)] {
            if let Some((n, p)) = got {
                errs.at(
                    p,
                    n.pos,
                    format!("{key} needs engine: k6, locust or jmeter"),
                );
            }
        }
        return None;
    };
    let script = match script {
        Some((n, p)) => nonempty_string(n, &p, errs),
        None => {
            if let Some(e) = engine {
                errs.at(
                    "script",
                    None,
                    format!(
                        "engine: {} needs `script:` (a file relative to the spec)",
                        e.name()
                    ),
                );
            }
            None
        }
    };
    let args = args
        .map(|(n, p)| {
            list(n, &p, errs)
                .iter()
                .enumerate()
                .filter_map(|(i, a)| string(a, &format!("{p}[{i}]"), errs))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    Some(match (engine, script) {
        (Some(engine), Some(script)) => Some(Runner {
            engine,
            script,
            args,
            load_from_script: false,
            thresholds_from_script: false,
            scenario: None,
            more_scenarios: Vec::new(),
            notes: Vec::new(),
        }),
        _ => None,
    })
}
