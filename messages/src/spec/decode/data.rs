//! `data`: named CSV feeders and how VUs share them.

use std::collections::BTreeMap;

use super::fields::{child, nonempty_string, not_too_many, one_of, Errs, Map};
use crate::spec::limits::SpecLimits;
use crate::spec::model::{DataMode, DataSource, OnEnd};
use crate::spec::node::Node;

pub(super) fn data(
    n: &Node,
    path: &str,
    lim: &SpecLimits,
    errs: &mut Errs,
) -> BTreeMap<String, DataSource> {
    let Some(map) = Map::new(n, path, errs) else {
        return BTreeMap::new();
    };
    let (len, max) = (map.entries.len(), lim.data_sources);
    not_too_many(len, max, "data sources", "data_sources", n, path, errs);
    let mut out = BTreeMap::new();
    for (name, _, v) in map.entries {
        let p = child(path, name);
        if name.contains('.') {
            errs.at(&p, v.pos, "data source names must not contain `.`");
        }
        let Some(mut m) = Map::new(v, &p, errs) else {
            continue;
        };
        let file = m
            .required("file", errs)
            .and_then(|(n, p)| nonempty_string(n, &p, errs));
        let mode = m
            .get("mode")
            .map(|(n, p)| {
                one_of(
                    n,
                    &p,
                    errs,
                    &[("shared", DataMode::Shared), ("per-vu", DataMode::PerVu)],
                )
            })
            .unwrap_or(Some(DataMode::Shared));
        let on_end = m
            .get("on_end")
            .map(|(n, p)| {
                one_of(
                    n,
                    &p,
                    errs,
                    &[("cycle", OnEnd::Cycle), ("stop", OnEnd::Stop)],
                )
            })
            .unwrap_or(Some(OnEnd::Cycle));
        m.finish(errs, " in a data source");
        if let (Some(file), Some(mode), Some(on_end)) = (file, mode, on_end) {
            out.insert(name.clone(), DataSource { file, mode, on_end });
        }
    }
    out
}
