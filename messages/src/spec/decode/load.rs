//! `load`: the executor and its settings (VUs, rates, stages, iterations).

use super::fields::{
    duration, list, not_too_many, positive, positive_duration, string, uint, within, Errs, Map,
};
use crate::spec::limits::{over, show_ms, SpecLimits};
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

pub(super) fn load(n: &Node, path: &str, lim: &SpecLimits, errs: &mut Errs) -> Option<Load> {
    let mut m = Map::new(n, path, errs)?;
    let graceful_stop_ms = m
        .get("graceful_stop")
        .map(|(n, p)| duration(n, &p, lim, errs))
        .unwrap_or(Some(30_000.min(lim.duration_ms)));
    let (en, ep) = m.required("executor", errs)?;
    let name = string(en, &ep, errs)?;
    let vus = |n: &Node, p: &str, errs: &mut Errs| {
        let v = positive(n, p, errs)?;
        within(v, lim.vus, "VUs", "vus", n, p, errs)
    };
    let ex = match name.as_str() {
        "constant-vus" => {
            let vus = m.required("vus", errs).and_then(|(n, p)| vus(n, &p, errs));
            let d = m
                .required("duration", errs)
                .and_then(|(n, p)| positive_duration(n, &p, lim, errs));
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
                .map(|(n, p)| {
                    let v = uint(n, &p, errs)?;
                    within(v, lim.vus, "VUs", "vus", n, &p, errs)
                })
                .unwrap_or(Some(0));
            let st = m.required("stages", errs).and_then(|(n, p)| {
                stages(n, &p, lim, errs, &|v, n, p, errs| {
                    within(v, lim.vus, "VUs", "vus", n, p, errs)
                })
            });
            (|| {
                Some(Executor::RampingVus {
                    start_vus: start?,
                    stages: st?,
                })
            })()
        }
        "constant-arrival-rate" => {
            let rate = m.required("rate", errs);
            let tu = time_unit(&mut m, lim, errs);
            let rate = rate.and_then(|(n, p)| {
                let v = positive(n, &p, errs)?;
                rate_within(v, tu, lim, n, &p, errs)
            });
            let d = m
                .required("duration", errs)
                .and_then(|(n, p)| positive_duration(n, &p, lim, errs));
            let (pre, max) = vu_pool(&mut m, lim, errs);
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
            let start = m.get("start_rate");
            let tu = time_unit(&mut m, lim, errs);
            let start = start
                .map(|(n, p)| {
                    let v = uint(n, &p, errs)?;
                    rate_within(v, tu, lim, n, &p, errs)
                })
                .unwrap_or(Some(0));
            let st = m.required("stages", errs).and_then(|(n, p)| {
                stages(n, &p, lim, errs, &|v, n, p, errs| {
                    rate_within(v, tu, lim, n, p, errs)
                })
            });
            let (pre, max) = vu_pool(&mut m, lim, errs);
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
                .map(|(n, p)| vus(n, &p, errs))
                .unwrap_or(Some(1));
            let it_at = m.get("iterations");
            let it = it_at
                .as_ref()
                .map(|(n, p)| {
                    let v = positive(n, p, errs)?;
                    within(v, lim.iterations, "iterations", "iterations", n, p, errs)
                })
                .unwrap_or(Some(1));
            let md = m
                .get("max_duration")
                .map(|(n, p)| positive_duration(n, &p, lim, errs))
                .unwrap_or(Some(DEFAULT_MAX_DURATION_MS.min(lim.duration_ms)));
            let per_vu = name == "per-vu-iterations";
            if let (true, Some(v), Some(i), Some((n, p))) = (per_vu, vus, it, &it_at) {
                // Every VU runs all its iterations: the run's total is the product.
                let total = u128::from(v) * u128::from(i);
                if total > u128::from(lim.iterations) {
                    errs.at(
                        p,
                        n.pos,
                        over(
                            format!("{v} VUs × {i} iterations each ({total})"),
                            &format!("{} iterations", lim.iterations),
                            "iterations",
                        ),
                    );
                }
            }
            (|| {
                let (vus, iterations, max_duration_ms) = (vus?, it?, md?);
                Some(if per_vu {
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
                    "{other:?} is not an executor{} (one of: {})",
                    crate::near::closest(other, EXECUTORS)
                        .map(|e| format!(" — did you mean {e:?}?"))
                        .unwrap_or_default(),
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

fn time_unit(m: &mut Map, lim: &SpecLimits, errs: &mut Errs) -> Option<u64> {
    m.get("time_unit")
        .map(|(n, p)| positive_duration(n, &p, lim, errs))
        .unwrap_or(Some(1000))
}

/// `rate` iterations per `time_unit_ms` (when that is known) at most `lim.rate_per_s` per
/// second. Compared in u128 (`rate·1000 ≤ max·time_unit`), so no value overflows.
fn rate_within(
    rate: u64,
    time_unit_ms: Option<u64>,
    lim: &SpecLimits,
    n: &Node,
    path: &str,
    errs: &mut Errs,
) -> Option<u64> {
    let Some(tu) = time_unit_ms.filter(|t| *t > 0) else {
        return Some(rate);
    };
    let milli = u128::from(rate) * 1000;
    if milli <= u128::from(lim.rate_per_s) * u128::from(tu) {
        return Some(rate);
    }
    let value = if tu == 1000 {
        rate.to_string()
    } else {
        format!(
            "{rate} per {} ({} per second)",
            show_ms(tu),
            milli / u128::from(tu)
        )
    };
    let limit = format!("{} iterations per second", lim.rate_per_s);
    errs.at(path, n.pos, over(value, &limit, "rate_per_s"));
    None
}

fn vu_pool(m: &mut Map, lim: &SpecLimits, errs: &mut Errs) -> (Option<u64>, Option<u64>) {
    let vus = |n: &Node, p: &str, errs: &mut Errs| {
        let v = positive(n, p, errs)?;
        within(v, lim.vus, "VUs", "vus", n, p, errs)
    };
    let pre = m
        .required("pre_allocated_vus", errs)
        .and_then(|(n, p)| vus(n, &p, errs));
    let max = match m.get("max_vus") {
        None => pre,
        Some((n, p)) => {
            let v = vus(n, &p, errs);
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

/// Checks a stage's target against its executor's limit (VUs or a rate).
type TargetCheck<'a> = dyn Fn(u64, &Node, &str, &mut Errs) -> Option<u64> + 'a;

fn stages(
    n: &Node,
    path: &str,
    lim: &SpecLimits,
    errs: &mut Errs,
    target_within: &TargetCheck,
) -> Option<Vec<Stage>> {
    let items = list(n, path, errs);
    if items.is_empty() {
        if matches!(n.kind, Kind::Seq(_)) {
            errs.at(path, n.pos, "needs at least one stage");
        }
        return None;
    }
    not_too_many(items.len(), lim.stages, "stages", "stages", n, path, errs);
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
            .and_then(|(n, p)| duration(n, &p, lim, errs));
        let t = m.required("target", errs).and_then(|(n, p)| {
            let v = uint(n, &p, errs)?;
            target_within(v, n, &p, errs)
        });
        m.finish(errs, " in a stage");
        match (d, t) {
            (Some(duration_ms), Some(target)) => out.push(Stage {
                duration_ms,
                target,
            }),
            _ => ok = false,
        }
    }
    if !ok {
        return None;
    }
    // The planned length: summed with a check, each stage being within the limit already.
    match out
        .iter()
        .try_fold(0u64, |sum, s| sum.checked_add(s.duration_ms))
    {
        Some(0) => {
            errs.at(path, n.pos, "stages add up to 0s");
            None
        }
        Some(total) if total > lim.duration_ms => {
            errs.at(
                path,
                n.pos,
                over(
                    format!("the stages' total, {},", show_ms(total)),
                    &show_ms(lim.duration_ms),
                    "duration_s",
                ),
            );
            None
        }
        Some(_) => Some(out),
        None => {
            errs.at(
                path,
                n.pos,
                format!(
                    "the stages add up to more than {} (past what herd can count); the limit is {} (raise [limits] duration_s in the serve config)",
                    show_ms(u64::MAX),
                    show_ms(lim.duration_ms)
                ),
            );
            None
        }
    }
}
