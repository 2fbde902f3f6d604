//! `thresholds`: pass/fail expressions, optionally for one step's label.

use std::collections::BTreeSet;

use super::fields::{nonempty_string, string, Errs, Map};
use crate::spec::node::{Kind, Node};
use crate::threshold::{parse_limit, Limit, Threshold};

pub(super) fn threshold(
    n: &Node,
    path: &str,
    labels: &BTreeSet<String>,
    errs: &mut Errs,
) -> Option<Threshold> {
    let (expr, epos, epath, label) = match &n.kind {
        Kind::Str(s) => (s.clone(), n.pos, path.to_string(), None),
        _ => {
            let mut m = Map::new(n, path, errs)?;
            let e = m.required("expr", errs);
            let label = m.get("label").and_then(|(ln, lp)| {
                let l = nonempty_string(ln, &lp, errs)?;
                if !labels.is_empty() && !labels.contains(&l) {
                    let known: Vec<&str> = labels.iter().map(String::as_str).collect();
                    errs.at(
                        &lp,
                        ln.pos,
                        format!("no step is labelled {l:?} (labels: {})", known.join(", ")),
                    );
                }
                Some(l)
            });
            m.finish(errs, " in a threshold");
            let (en, ep) = e?;
            (string(en, &ep, errs)?, en.pos, ep, label)
        }
    };
    match parse_limit(&expr) {
        Ok((metric, op, limit)) => Some(Threshold {
            expr,
            label,
            metric,
            op,
            value: match limit {
                Limit::Value(v) => v,
                Limit::Baseline(_) => 0.0,
            },
            baseline: match limit {
                Limit::Baseline(b) => Some(b),
                Limit::Value(_) => None,
            },
        }),
        Err(e) => {
            errs.at(&epath, epos, e.to_string());
            None
        }
    }
}
