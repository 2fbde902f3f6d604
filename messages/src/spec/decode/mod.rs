//! Node tree → [`Spec`], collecting every problem with its path and position.
//!
//! One file per spec section; [`fields`] holds what they share.

mod agents;
mod data;
mod fields;
mod load;
mod runner;
mod scenario;
mod target;
mod thresholds;

use std::collections::{BTreeMap, BTreeSet};

use self::agents::agents;
use self::data::data;
use self::fields::{list, nonempty_string, not_too_many, percent, string_pairs, uint, Errs, Map};
use self::load::load;
use self::runner::runner;
use self::scenario::step;
use self::target::target;
use self::thresholds::threshold;
use super::limits::{check_name, SpecLimits};
use super::model::{Agents, Body, Engine, Load, Spec};
use super::node::{Kind, Node, Pos};
use super::SpecError;
use crate::template::{Template, BUILTINS};

pub(super) fn spec(root: &Node, lim: &SpecLimits) -> Result<Spec, SpecError> {
    let mut errs = Errs(Vec::new());
    let spec = spec_inner(root, lim, &mut errs);
    match spec {
        Some(s) if errs.0.is_empty() => Ok(s),
        _ => {
            if errs.0.is_empty() {
                errs.at("", root.pos, "the spec is empty");
            }
            Err(SpecError::Invalid(errs.0))
        }
    }
}

pub(super) fn load_only(n: &Node, lim: &SpecLimits) -> Result<Load, SpecError> {
    let mut errs = Errs(Vec::new());
    match load(n, "load", lim, &mut errs) {
        Some(l) if errs.0.is_empty() => Ok(l),
        _ => Err(SpecError::Invalid(errs.0)),
    }
}

fn spec_inner(root: &Node, lim: &SpecLimits, errs: &mut Errs) -> Option<Spec> {
    let mut m = Map::new(root, "", errs)?;
    if let Some((n, p)) = m.get("version") {
        if let Some(v) = uint(n, &p, errs) {
            if v != 1 {
                errs.at(
                    &p,
                    n.pos,
                    format!("spec version {v} is not supported (this herd reads version 1)"),
                );
            }
        }
    }
    let name = m.required("name", errs).and_then(|(n, p)| {
        let name = nonempty_string(n, &p, errs)?;
        if let Err(why) = check_name(&name) {
            errs.at(&p, n.pos, why);
            return None;
        }
        Some(name)
    });
    let target = m
        .required("target", errs)
        .and_then(|(n, p)| target(n, &p, lim, errs));
    let variables = m
        .get("variables")
        .map(|(n, p)| {
            string_pairs(n, &p, errs)
                .into_iter()
                .collect::<BTreeMap<_, _>>()
        })
        .unwrap_or_default();
    let data = m
        .get("data")
        .map(|(n, p)| data(n, &p, lim, errs))
        .unwrap_or_default();
    let runner = runner(&mut m, errs);
    let scenario_node = match (&runner, m.get("scenario")) {
        (Some(Some(r)), Some((n, p))) => {
            errs.at(
                &p,
                n.pos,
                format!(
                    "scenario is for herd's native engine; with engine: {} the script is the scenario",
                    r.engine.name()
                ),
            );
            None
        }
        (Some(_), got) => got,
        (None, Some(got)) => Some(got),
        (None, None) => m.required("scenario", errs),
    };
    let scenario = scenario_node.map(|(n, p)| {
        let items = list(n, &p, errs);
        if items.is_empty() && matches!(n.kind, Kind::Seq(_)) {
            errs.at(&p, n.pos, "needs at least one step");
        }
        not_too_many(items.len(), lim.steps, "steps", "steps", n, &p, errs);
        items
            .iter()
            .enumerate()
            .filter_map(|(i, s)| step(s, &format!("{p}[{i}]"), lim, errs))
            .collect::<Vec<_>>()
    });
    // A runner's scenario is its script.
    let scenario = match (scenario, &runner) {
        (None, Some(Some(_))) => Some(Vec::new()),
        (s, _) => s,
    };
    // A k6 script without `load:` brings its own (read by `bundle::build` with the script).
    let k6 = matches!(&runner, Some(Some(r)) if r.engine == Engine::K6);
    let has_thresholds = m.has("thresholds");
    let load = match m.get("load") {
        Some((n, p)) => load(n, &p, lim, errs),
        None if k6 => Some(Load::k6_default()),
        None => m
            .required("load", errs)
            .and_then(|(n, p)| load(n, &p, lim, errs)),
    };
    let load_from_script = k6 && !m.has("load");
    let runner = runner.map(|r| {
        r.map(|mut r| {
            r.load_from_script = load_from_script;
            r.thresholds_from_script = k6 && !has_thresholds;
            r
        })
    });
    let agents = match m.get("agents") {
        None => Some(Agents::Default),
        Some((n, p)) => agents(n, &p, lim, errs),
    };
    let step_names: BTreeSet<String> = scenario.iter().flatten().map(|s| s.name.clone()).collect();
    let thresholds = m
        .get("thresholds")
        .map(|(n, p)| {
            let items = list(n, &p, errs);
            let max = lim.thresholds;
            not_too_many(items.len(), max, "thresholds", "thresholds", n, &p, errs);
            items
                .iter()
                .enumerate()
                .filter_map(|(i, t)| threshold(t, &format!("{p}[{i}]"), &step_names, lim, errs))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let min_healthy_agents = m
        .get("min_healthy_agents")
        .and_then(|(n, p)| percent(n, &p, errs));
    m.finish(errs, " in the spec");

    let (name, target, scenario, load, agents) = (name?, target?, scenario?, load?, agents?);
    let spec = Spec {
        version: 1,
        name,
        target,
        variables,
        data,
        scenario,
        load,
        agents,
        thresholds,
        min_healthy_agents,
        runner: runner.flatten(),
    };
    check_templates(&spec, root, errs);
    Some(spec)
}

/// Every `{{var}}` must name something a VU will have: a variable, a capture, a data column or
/// a builtin. A typo found here saves a run that sends empty strings.
fn check_templates(spec: &Spec, root: &Node, errs: &mut Errs) {
    let mut known: BTreeSet<String> = BUILTINS.iter().map(|s| s.to_string()).collect();
    known.extend(spec.variables.keys().cloned());
    for s in &spec.scenario {
        known.extend(s.captures.iter().map(|c| c.var.clone()));
    }
    let sources: BTreeSet<&str> = spec.data.keys().map(String::as_str).collect();
    let ok = |v: &str| {
        known.contains(v)
            || crate::template::secret_name(v).is_some()
            || v.split_once('.')
                .is_some_and(|(src, col)| sources.contains(src) && !col.is_empty())
    };
    let pos_of_step = |i: usize| -> Option<Pos> {
        let Kind::Map(top) = &root.kind else {
            return None;
        };
        let (_, _, sc) = top.iter().find(|(k, _, _)| k == "scenario")?;
        match &sc.kind {
            Kind::Seq(items) => items.get(i).and_then(|n| n.pos),
            _ => None,
        }
    };
    for (i, s) in spec.scenario.iter().enumerate() {
        let r = &s.request;
        let mut texts: Vec<(String, &str)> = vec![("url".into(), r.url.as_str())];
        texts.extend(
            r.headers
                .iter()
                .map(|(k, v)| (format!("headers.{k}"), v.as_str())),
        );
        texts.extend(
            r.query
                .iter()
                .map(|(k, v)| (format!("query.{k}"), v.as_str())),
        );
        match &r.body {
            Some(Body::Raw(b)) => texts.push(("body".into(), b)),
            Some(Body::Json(b)) => texts.push(("json".into(), b)),
            Some(Body::Form(f)) => {
                texts.extend(f.iter().map(|(k, v)| (format!("form.{k}"), v.as_str())))
            }
            None => {}
        }
        for (field, text) in texts {
            let Ok(t) = Template::parse(text) else {
                continue;
            };
            for v in t.vars() {
                if !ok(v) {
                    errs.at(
                        &format!("scenario[{i}].request.{field}"),
                        pos_of_step(i),
                        format!("`{{{{{v}}}}}` is not a variable, capture, data column (source.column) or builtin ({})", BUILTINS.join(", ")),
                    );
                }
            }
        }
    }
}
