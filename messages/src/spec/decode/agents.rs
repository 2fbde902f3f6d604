//! `agents`: a count, or a count per region.

use std::collections::BTreeSet;

use super::fields::{nonempty_string, positive, Errs, Map};
use crate::spec::model::{Agents, RegionAgents, MAX_REGIONS};
use crate::spec::node::{Kind, Node};

pub(super) fn agents(n: &Node, path: &str, errs: &mut Errs) -> Option<Agents> {
    match &n.kind {
        Kind::Int(_) => {
            let c = positive(n, path, errs)?;
            match u32::try_from(c) {
                Ok(c) if c <= 10_000 => Some(Agents::Count(c)),
                _ => {
                    errs.at(
                        path,
                        n.pos,
                        format!("{c} agents is more than the 10000 herd supports"),
                    );
                    None
                }
            }
        }
        Kind::Seq(items) => {
            let mut out = Vec::new();
            let mut seen = BTreeSet::new();
            for (i, it) in items.iter().enumerate() {
                let p = format!("{path}[{i}]");
                let Some(mut m) = Map::new(it, &p, errs) else {
                    continue;
                };
                let region = m
                    .required("region", errs)
                    .and_then(|(n, p)| nonempty_string(n, &p, errs));
                let count = m
                    .required("count", errs)
                    .and_then(|(n, p)| positive(n, &p, errs));
                m.finish(errs, " in an agents entry");
                if let (Some(region), Some(count)) = (region, count) {
                    if !seen.insert(region.clone()) {
                        errs.at(&p, it.pos, format!("region {region:?} is listed twice"));
                    }
                    out.push(RegionAgents {
                        region,
                        count: u32::try_from(count).unwrap_or(u32::MAX),
                    });
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
            Some(Agents::Regions(out))
        }
        _ => {
            errs.expected(path, n, "a number of agents or a list of {region, count}");
            None
        }
    }
}
