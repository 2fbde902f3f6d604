//! What every section shares: the error list, the mapping reader that reports unknown keys,
//! and the scalar readers (strings, numbers, durations, percents, lists, choices).

use std::collections::BTreeSet;

use crate::spec::limits::{over, show_ms, SpecLimits};
use crate::spec::node::{Kind, Node, Pos};
use crate::spec::SpecIssue;

pub(super) struct Errs(pub(super) Vec<SpecIssue>);

impl Errs {
    pub(super) fn at(&mut self, path: &str, pos: Option<Pos>, msg: impl Into<String>) {
        self.0.push(SpecIssue {
            path: path.to_string(),
            line: pos.map(|p| p.line).filter(|l| *l > 0),
            col: pos.map(|p| p.col).filter(|l| *l > 0),
            message: msg.into(),
        });
    }
    pub(super) fn expected(&mut self, path: &str, n: &Node, what: &str) {
        self.at(
            path,
            n.pos,
            format!("expected {what}, found {}", n.describe()),
        );
    }
}

pub(super) fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// A mapping being decoded: remembers which keys were asked for so the rest are reported.
pub(super) struct Map<'a> {
    pub(super) entries: &'a [(String, Pos, Node)],
    path: String,
    pos: Option<Pos>,
    pub(super) known: Vec<&'static str>,
}

impl<'a> Map<'a> {
    pub(super) fn new(n: &'a Node, path: &str, errs: &mut Errs) -> Option<Map<'a>> {
        match &n.kind {
            Kind::Map(entries) => {
                let mut seen = BTreeSet::new();
                for (k, kpos, _) in entries {
                    if !seen.insert(k.as_str()) {
                        errs.at(&child(path, k), Some(*kpos), "duplicate key");
                    }
                }
                Some(Map {
                    entries,
                    path: path.to_string(),
                    pos: n.pos,
                    known: Vec::new(),
                })
            }
            _ => {
                errs.expected(path, n, "a mapping");
                None
            }
        }
    }

    pub(super) fn get(&mut self, key: &'static str) -> Option<(&'a Node, String)> {
        self.known.push(key);
        self.entries
            .iter()
            .find(|(k, _, _)| k == key)
            .map(|(_, _, v)| (v, child(&self.path, key)))
    }

    pub(super) fn has(&self, key: &str) -> bool {
        self.entries.iter().any(|(k, _, _)| k == key)
    }

    pub(super) fn required(
        &mut self,
        key: &'static str,
        errs: &mut Errs,
    ) -> Option<(&'a Node, String)> {
        let got = self.get(key);
        if got.is_none() {
            let p = self.path.clone();
            errs.at(&child(&p, key), self.pos, "is required");
        }
        got
    }

    /// Reports keys nobody asked for; `context` names what they are not settings of.
    pub(super) fn finish(self, errs: &mut Errs, context: &str) {
        for (k, kpos, _) in self.entries {
            if self.known.contains(&k.as_str()) {
                continue;
            }
            let mut msg = format!("unknown field `{k}`{context}");
            if let Some(near) = closest(k, &self.known) {
                msg.push_str(&format!(" (did you mean `{near}`?)"));
            } else if !self.known.is_empty() {
                msg.push_str(&format!(" (expected one of: {})", self.known.join(", ")));
            }
            errs.at(&child(&self.path, k), Some(*kpos), msg);
        }
    }
}

pub(super) use crate::near::closest;

// ---- scalars ---------------------------------------------------------------------------

pub(super) fn string(n: &Node, path: &str, errs: &mut Errs) -> Option<String> {
    match &n.kind {
        Kind::Str(s) => Some(s.clone()),
        Kind::Int(i) => Some(i.to_string()),
        Kind::Float(f) => Some(f.to_string()),
        Kind::Bool(b) => Some(b.to_string()),
        _ => {
            errs.expected(path, n, "a string");
            None
        }
    }
}

pub(super) fn nonempty_string(n: &Node, path: &str, errs: &mut Errs) -> Option<String> {
    let s = string(n, path, errs)?;
    if s.trim().is_empty() {
        errs.at(path, n.pos, "must not be empty");
        return None;
    }
    Some(s)
}

pub(super) fn uint(n: &Node, path: &str, errs: &mut Errs) -> Option<u64> {
    match &n.kind {
        Kind::Int(i) if *i >= 0 => Some(*i as u64),
        // YAML reads whole numbers past i64 as floats.
        Kind::Float(f) if *f >= 9_223_372_036_854_775_808.0 && f.fract() == 0.0 => {
            errs.at(
                path,
                n.pos,
                format!("{} is far too large a number here", n.show()),
            );
            None
        }
        Kind::Int(i) => {
            errs.at(
                path,
                n.pos,
                format!("{i} is negative; expected a whole number >= 0"),
            );
            None
        }
        _ => {
            errs.at(path, n.pos, format!("{} is not a whole number", n.show()));
            None
        }
    }
}

pub(super) fn positive(n: &Node, path: &str, errs: &mut Errs) -> Option<u64> {
    let v = uint(n, path, errs)?;
    if v == 0 {
        errs.at(path, n.pos, "must be at least 1");
        return None;
    }
    Some(v)
}

/// A share of a whole as a percent: `80%` or `80`, from 1 to 100.
pub(super) fn percent(n: &Node, path: &str, errs: &mut Errs) -> Option<u32> {
    let v = match &n.kind {
        Kind::Int(i) => Some(*i as f64),
        Kind::Float(f) => Some(*f),
        Kind::Str(s) => s
            .trim()
            .strip_suffix('%')
            .and_then(|x| x.trim().parse::<f64>().ok()),
        _ => None,
    };
    match v {
        Some(v) if (1.0..=100.0).contains(&v) && v.fract() == 0.0 => Some(v as u32),
        _ => {
            errs.at(
                path,
                n.pos,
                format!(
                    "{} is not a percent from 1% to 100% (write e.g. 80%)",
                    n.show()
                ),
            );
            None
        }
    }
}

pub(super) fn boolean(n: &Node, path: &str, errs: &mut Errs) -> Option<bool> {
    match n.kind {
        Kind::Bool(b) => Some(b),
        _ => {
            errs.at(path, n.pos, format!("{} is not true or false", n.show()));
            None
        }
    }
}

/// A duration of at most `lim.duration_ms`, in milliseconds.
pub(super) fn duration(n: &Node, path: &str, lim: &SpecLimits, errs: &mut Errs) -> Option<u64> {
    let bad = |errs: &mut Errs| {
        errs.at(
            path,
            n.pos,
            format!(
                "{} is not a duration (write e.g. \"30s\", \"1m30s\", \"500ms\")",
                n.show()
            ),
        )
    };
    let ms = match &n.kind {
        Kind::Int(0) => 0,
        Kind::Str(s) if calendar_unit(s).is_some() => {
            let unit = calendar_unit(s).unwrap_or_default();
            errs.at(
                path,
                n.pos,
                format!(
                    "{:?}: `{unit}` is a calendar {} here, not a load length{}",
                    s.trim(),
                    if unit.starts_with('y') {
                        "year"
                    } else {
                        "month"
                    },
                    if unit == "M" {
                        " — minutes are `m`"
                    } else {
                        ""
                    }
                ),
            );
            return None;
        }
        Kind::Str(s) => match humantime::parse_duration(s.trim()) {
            Ok(d) => u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
            Err(_) => {
                bad(errs);
                return None;
            }
        },
        _ => {
            bad(errs);
            return None;
        }
    };
    duration_within(ms, lim, n, path, errs)
}

/// A month or year unit in a duration (`1M` is a month to humantime, where `1m` is a minute):
/// refused, as nobody means a load of a month.
fn calendar_unit(s: &str) -> Option<&str> {
    s.split(|c: char| !c.is_ascii_alphabetic())
        .find(|u| matches!(*u, "M" | "month" | "months" | "y" | "year" | "years"))
}

/// `ms` when it is at most `lim.duration_ms`.
fn duration_within(
    ms: u64,
    lim: &SpecLimits,
    n: &Node,
    path: &str,
    errs: &mut Errs,
) -> Option<u64> {
    if ms > lim.duration_ms {
        errs.at(
            path,
            n.pos,
            over(show_ms(ms), &show_ms(lim.duration_ms), "duration_s"),
        );
        return None;
    }
    Some(ms)
}

pub(super) fn positive_duration(
    n: &Node,
    path: &str,
    lim: &SpecLimits,
    errs: &mut Errs,
) -> Option<u64> {
    let d = duration(n, path, lim, errs)?;
    if d == 0 {
        errs.at(path, n.pos, "must be longer than 0s");
        return None;
    }
    Some(d)
}

/// `v` when it is at most `max` `unit`s; otherwise an issue naming the limit and the `[limits]`
/// `key` that raises it.
pub(super) fn within(
    v: u64,
    max: u64,
    unit: &str,
    key: &str,
    n: &Node,
    path: &str,
    errs: &mut Errs,
) -> Option<u64> {
    if v > max {
        errs.at(path, n.pos, over(v, &format!("{max} {unit}"), key));
        return None;
    }
    Some(v)
}

/// Reports a list longer than `max` (its items are still read, so every problem shows).
pub(super) fn not_too_many(
    len: usize,
    max: usize,
    unit: &str,
    key: &str,
    n: &Node,
    path: &str,
    errs: &mut Errs,
) {
    if len > max {
        errs.at(
            path,
            n.pos,
            over(format!("{len} {unit}"), &max.to_string(), key),
        );
    }
}

pub(super) fn string_pairs(n: &Node, path: &str, errs: &mut Errs) -> Vec<(String, String)> {
    let Some(map) = Map::new(n, path, errs) else {
        return Vec::new();
    };
    map.entries
        .iter()
        .filter_map(|(k, _, v)| Some((k.clone(), string(v, &child(path, k), errs)?)))
        .collect()
}

pub(super) fn list<'a>(n: &'a Node, path: &str, errs: &mut Errs) -> &'a [Node] {
    match &n.kind {
        Kind::Seq(items) => items,
        _ => {
            errs.expected(path, n, "a list");
            &[]
        }
    }
}

pub(super) fn one_of<T: Copy>(
    n: &Node,
    path: &str,
    errs: &mut Errs,
    options: &[(&str, T)],
) -> Option<T> {
    let s = string(n, path, errs)?;
    if let Some((_, v)) = options.iter().find(|(name, _)| *name == s) {
        return Some(*v);
    }
    let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
    let hint = closest(&s, &names)
        .map(|near| format!(" (did you mean {near:?}?)"))
        .unwrap_or_default();
    errs.at(
        path,
        n.pos,
        format!("{s:?} is not one of: {}{hint}", names.join(", ")),
    );
    None
}
