//! `thresholds`: pass/fail expressions, optionally for one step's label.

use std::collections::BTreeSet;

use super::fields::{boolean, duration, nonempty_string, string, Errs, Map};
use crate::spec::limits::SpecLimits;
use crate::spec::node::{Kind, Node};
use crate::threshold::{parse_limit, AbortOnFail, Limit, Threshold};

pub(super) fn threshold(
    n: &Node,
    path: &str,
    labels: &BTreeSet<String>,
    lim: &SpecLimits,
    errs: &mut Errs,
) -> Option<Threshold> {
    let mut abort = None;
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
            let on = m
                .get("abort_on_fail")
                .and_then(|(n, p)| boolean(n, &p, errs))
                .unwrap_or(false);
            let delay = m
                .get("delay_abort_eval")
                .map(|(n, p)| (duration(n, &p, lim, errs), n.pos, p));
            match (on, delay) {
                (true, d) => {
                    abort = Some(AbortOnFail {
                        delay_ms: d.and_then(|(ms, _, _)| ms).unwrap_or(0),
                    })
                }
                (false, Some((_, pos, p))) => {
                    errs.at(&p, pos, "delay_abort_eval needs abort_on_fail: true")
                }
                (false, None) => {}
            }
            m.finish(errs, " in a threshold");
            let (en, ep) = e?;
            (string(en, &ep, errs)?, en.pos, ep, label)
        }
    };
    match parse_limit(&expr) {
        Ok((_, _, Limit::Baseline(_))) if abort.is_some() => {
            errs.at(
                &epath,
                epos,
                "abort_on_fail needs a fixed limit: a baseline's is known only at the end",
            );
            None
        }
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
            abort,
        }),
        Err(e) => {
            errs.at(&epath, epos, e.to_string());
            None
        }
    }
}
