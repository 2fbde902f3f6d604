//! `agents`: a count, or a count per region.

use std::collections::BTreeSet;

use super::fields::{nonempty_string, positive, within, Errs, Map};
use crate::spec::limits::{over, SpecLimits};
use crate::spec::model::{Agents, RegionAgents, MAX_REGIONS};
use crate::spec::node::{Kind, Node};

pub(super) fn agents(n: &Node, path: &str, lim: &SpecLimits, errs: &mut Errs) -> Option<Agents> {
    let max = u64::from(lim.agents);
    // Within `lim.agents`, which is a u32, so the conversion cannot fail.
    let count = |n: &Node, p: &str, errs: &mut Errs| {
        let c = positive(n, p, errs)?;
        let c = within(c, max, "agents", "agents", n, p, errs)?;
        u32::try_from(c).ok()
    };
    match &n.kind {
        Kind::Int(_) => count(n, path, errs).map(Agents::Count),
        Kind::Seq(items) => {
            let mut out = Vec::new();
            let mut seen = BTreeSet::new();
            let mut all_read = true;
            for (i, it) in items.iter().enumerate() {
                let p = format!("{path}[{i}]");
                let Some(mut m) = Map::new(it, &p, errs) else {
                    all_read = false;
                    continue;
                };
                let region = m
                    .required("region", errs)
                    .and_then(|(n, p)| nonempty_string(n, &p, errs));
                let c = m
                    .required("count", errs)
                    .and_then(|(n, p)| count(n, &p, errs));
                m.finish(errs, " in an agents entry");
                if let (Some(region), Some(count)) = (region, c) {
                    if !seen.insert(region.clone()) {
                        errs.at(&p, it.pos, format!("region {region:?} is listed twice"));
                    }
                    out.push(RegionAgents { region, count });
                } else {
                    all_read = false;
                }
            }
            if items.is_empty() {
                errs.at(path, n.pos, "needs at least one region");
                return None;
            }
            if seen.len() > MAX_REGIONS {
                errs.at(
                    path,
                    n.pos,
                    format!(
                        "{} regions given; herd runs in at most {MAX_REGIONS}",
                        seen.len()
                    ),
                );
            }
            // Each count is within the limit; their sum must be too (summed in u64: no wrap).
            let total: u64 = out.iter().map(|r| u64::from(r.count)).sum();
            if total > max {
                errs.at(
                    path,
                    n.pos,
                    over(
                        format!("the regions' total, {total} agents,"),
                        &format!("{max} agents"),
                        "agents",
                    ),
                );
                return None;
            }
            all_read.then_some(Agents::Regions(out))
        }
        _ => {
            errs.expected(path, n, "a number of agents or a list of {region, count}");
            None
        }
    }
}
