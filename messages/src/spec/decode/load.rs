//! `load`: the executor and its settings (VUs, rates, stages, iterations).

use super::fields::{duration, list, positive, positive_duration, string, uint, Errs, Map};
use crate::spec::model::{Executor, Load, Stage};
use crate::spec::node::{Kind, Node};

const EXECUTORS: &[&str] = &[
    "constant-vus",
    "ramping-vus",
    "constant-arrival-rate",
    "ramping-arrival-rate",
    "per-vu-iterations",
    "shared-iterations",
];

const DEFAULT_MAX_DURATION_MS: u64 = 10 * 60 * 1000;

pub(super) fn load(n: &Node, path: &str, errs: &mut Errs) -> Option<Load> {
    let mut m = Map::new(n, path, errs)?;
    let graceful_stop_ms = m
        .get("graceful_stop")
        .map(|(n, p)| duration(n, &p, errs))
        .unwrap_or(Some(30_000));
    let (en, ep) = m.required("executor", errs)?;
    let name = string(en, &ep, errs)?;
    let ex = match name.as_str() {
        "constant-vus" => {
            let vus = m
                .required("vus", errs)
                .and_then(|(n, p)| positive(n, &p, errs));
            let d = m
                .required("duration", errs)
                .and_then(|(n, p)| positive_duration(n, &p, errs));
            (|| {
                Some(Executor::ConstantVus {
                    vus: vus?,
                    duration_ms: d?,
                })
            })()
        }
        "ramping-vus" => {
            let start = m
                .get("start_vus")
                .map(|(n, p)| uint(n, &p, errs))
                .unwrap_or(Some(0));
            let st = m
                .required("stages", errs)
                .and_then(|(n, p)| stages(n, &p, errs));
            (|| {
                Some(Executor::RampingVus {
                    start_vus: start?,
                    stages: st?,
                })
            })()
        }
        "constant-arrival-rate" => {
            let rate = m
                .required("rate", errs)
                .and_then(|(n, p)| positive(n, &p, errs));
            let tu = time_unit(&mut m, errs);
            let d = m
                .required("duration", errs)
                .and_then(|(n, p)| positive_duration(n, &p, errs));
            let (pre, max) = vu_pool(&mut m, errs);
            (|| {
                Some(Executor::ConstantArrivalRate {
                    rate: rate?,
                    time_unit_ms: tu?,
                    duration_ms: d?,
                    pre_allocated_vus: pre?,
                    max_vus: max?,
                })
            })()
        }
        "ramping-arrival-rate" => {
            let start = m
                .get("start_rate")
                .map(|(n, p)| uint(n, &p, errs))
                .unwrap_or(Some(0));
            let tu = time_unit(&mut m, errs);
            let st = m
                .required("stages", errs)
                .and_then(|(n, p)| stages(n, &p, errs));
            let (pre, max) = vu_pool(&mut m, errs);
            (|| {
                Some(Executor::RampingArrivalRate {
                    start_rate: start?,
                    time_unit_ms: tu?,
                    stages: st?,
                    pre_allocated_vus: pre?,
                    max_vus: max?,
                })
            })()
        }
        "per-vu-iterations" | "shared-iterations" => {
            let vus = m
                .get("vus")
                .map(|(n, p)| positive(n, &p, errs))
                .unwrap_or(Some(1));
            let it = m
                .get("iterations")
                .map(|(n, p)| positive(n, &p, errs))
                .unwrap_or(Some(1));
            let md = m
                .get("max_duration")
                .map(|(n, p)| positive_duration(n, &p, errs))
                .unwrap_or(Some(DEFAULT_MAX_DURATION_MS));
            (|| {
                let (vus, iterations, max_duration_ms) = (vus?, it?, md?);
                Some(if name == "per-vu-iterations" {
                    Executor::PerVuIterations {
                        vus,
                        iterations,
                        max_duration_ms,
                    }
                } else {
                    Executor::SharedIterations {
                        vus,
                        iterations,
                        max_duration_ms,
                    }
                })
            })()
        }
        other => {
            errs.at(
                &ep,
                en.pos,
                format!(
                    "{other:?} is not an executor (one of: {})",
                    EXECUTORS.join(", ")
                ),
            );
            // Don't also flag the executor's own settings as unknown.
            m.known.extend([
                "vus",
                "duration",
                "stages",
                "start_vus",
                "rate",
                "time_unit",
                "pre_allocated_vus",
                "max_vus",
                "start_rate",
                "iterations",
                "max_duration",
            ]);
            None
        }
    };
    let ctx = format!(" for executor {name}");
    m.finish(errs, &ctx);
    Some(Load {
        executor: ex?,
        graceful_stop_ms: graceful_stop_ms?,
    })
}

fn time_unit(m: &mut Map, errs: &mut Errs) -> Option<u64> {
    m.get("time_unit")
        .map(|(n, p)| positive_duration(n, &p, errs))
        .unwrap_or(Some(1000))
}

fn vu_pool(m: &mut Map, errs: &mut Errs) -> (Option<u64>, Option<u64>) {
    let pre = m
        .required("pre_allocated_vus", errs)
        .and_then(|(n, p)| positive(n, &p, errs));
    let max = match m.get("max_vus") {
        None => pre,
        Some((n, p)) => {
            let v = positive(n, &p, errs);
            if let (Some(v), Some(pre)) = (v, pre) {
                if v < pre {
                    errs.at(
                        &p,
                        n.pos,
                        format!("max_vus ({v}) must be at least pre_allocated_vus ({pre})"),
                    );
                    return (Some(pre), None);
                }
            }
            v
        }
    };
    (pre, max)
}

fn stages(n: &Node, path: &str, errs: &mut Errs) -> Option<Vec<Stage>> {
    let items = list(n, path, errs);
    if items.is_empty() {
        if matches!(n.kind, Kind::Seq(_)) {
            errs.at(path, n.pos, "needs at least one stage");
        }
        return None;
    }
    let mut out = Vec::new();
    let mut ok = true;
    for (i, s) in items.iter().enumerate() {
        let p = format!("{path}[{i}]");
        let Some(mut m) = Map::new(s, &p, errs) else {
            ok = false;
            continue;
        };
        let d = m
            .required("duration", errs)
            .and_then(|(n, p)| duration(n, &p, errs));
        let t = m
            .required("target", errs)
            .and_then(|(n, p)| uint(n, &p, errs));
        m.finish(errs, " in a stage");
        match (d, t) {
            (Some(duration_ms), Some(target)) => out.push(Stage {
                duration_ms,
                target,
            }),
            _ => ok = false,
        }
    }
    if ok && out.iter().all(|s| s.duration_ms == 0) {
        errs.at(path, n.pos, "stages add up to 0s");
        return None;
    }
    ok.then_some(out)
}
