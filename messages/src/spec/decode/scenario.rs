//! `scenario`: each step's request, checks, captures and think time.

use super::fields::{duration, list, nonempty_string, string, string_pairs, uint, Errs, Map};
use crate::spec::limits::SpecLimits;
use crate::spec::model::{Body, Capture, CaptureFrom, Check, Request, Step, Think};
use crate::spec::node::{to_json, Kind, Node, Pos};
use crate::template::Template;

const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

pub(super) fn step(n: &Node, path: &str, lim: &SpecLimits, errs: &mut Errs) -> Option<Step> {
    let mut m = Map::new(n, path, errs)?;
    let name = m
        .get("name")
        .and_then(|(n, p)| nonempty_string(n, &p, errs));
    let request = m
        .required("request", errs)
        .and_then(|(n, p)| request(n, &p, errs));
    let checks = m
        .get("checks")
        .map(|(n, p)| {
            list(n, &p, errs)
                .iter()
                .enumerate()
                .filter_map(|(i, c)| check(c, &format!("{p}[{i}]"), errs))
                .collect()
        })
        .unwrap_or_default();
    let captures = m
        .get("captures")
        .map(|(n, p)| {
            list(n, &p, errs)
                .iter()
                .enumerate()
                .filter_map(|(i, c)| capture(c, &format!("{p}[{i}]"), errs))
                .collect()
        })
        .unwrap_or_default();
    let think = m.get("think").and_then(|(n, p)| think(n, &p, lim, errs));
    m.finish(errs, " in a step");
    let request = request?;
    let name = name.unwrap_or_else(|| default_label(&request));
    Some(Step {
        name,
        request,
        checks,
        captures,
        think,
    })
}

/// `METHOD /path/template`: the template, never the rendered URL, so ids don't explode labels.
fn default_label(r: &Request) -> String {
    let path = r.url.split('?').next().unwrap_or(&r.url);
    format!("{} {}", r.method, path)
}

fn request(n: &Node, path: &str, errs: &mut Errs) -> Option<Request> {
    if let Kind::Str(s) = &n.kind {
        // Shorthand: "GET /path"
        let mut parts = s.split_whitespace();
        let (method, url) = (parts.next().unwrap_or(""), parts.next());
        let method = method.to_ascii_uppercase();
        if !METHODS.contains(&method.as_str()) || url.is_none() || parts.next().is_some() {
            errs.at(
                path,
                n.pos,
                format!("{s:?} is not `METHOD /path` (e.g. \"GET /items\")"),
            );
            return None;
        }
        let url = url.unwrap_or_default().to_string();
        check_template(&url, path, n.pos, errs);
        return Some(Request {
            method,
            url,
            headers: Vec::new(),
            query: Vec::new(),
            body: None,
        });
    }
    let mut m = Map::new(n, path, errs)?;
    let method = match m.get("method") {
        None => Some("GET".to_string()),
        Some((n, p)) => string(n, &p, errs).and_then(|s| {
            let up = s.to_ascii_uppercase();
            if METHODS.contains(&up.as_str()) {
                Some(up)
            } else {
                errs.at(
                    &p,
                    n.pos,
                    format!("{s:?} is not an HTTP method ({})", METHODS.join(", ")),
                );
                None
            }
        }),
    };
    let url = m.required("url", errs).and_then(|(n, p)| {
        let s = nonempty_string(n, &p, errs)?;
        check_template(&s, &p, n.pos, errs);
        Some(s)
    });
    let headers = m
        .get("headers")
        .map(|(n, p)| string_pairs(n, &p, errs))
        .unwrap_or_default();
    let query = m
        .get("query")
        .map(|(n, p)| string_pairs(n, &p, errs))
        .unwrap_or_default();
    let mut bodies = Vec::new();
    if let Some((n, p)) = m.get("body") {
        bodies.push((p.clone(), n.pos));
        if let Some(s) = string(n, &p, errs) {
            check_template(&s, &p, n.pos, errs);
        }
    }
    if let Some((n, p)) = m.get("json") {
        bodies.push((p, n.pos));
    }
    if let Some((n, p)) = m.get("form") {
        bodies.push((p, n.pos));
    }
    if bodies.len() > 1 {
        let (p, pos) = &bodies[1];
        errs.at(p, *pos, "give only one of `body`, `json`, `form`");
    }
    let body = if let Some((n, p)) = m.get("body") {
        string(n, &p, errs).map(Body::Raw)
    } else if let Some((n, _)) = m.get("json") {
        Some(Body::Json(to_json(n).to_string()))
    } else if let Some((n, p)) = m.get("form") {
        Some(Body::Form(string_pairs(n, &p, errs)))
    } else {
        None
    };
    m.finish(errs, " in a request");
    Some(Request {
        method: method?,
        url: url?,
        headers,
        query,
        body,
    })
}

fn check_template(s: &str, path: &str, pos: Option<Pos>, errs: &mut Errs) {
    if let Err(e) = Template::parse(s) {
        errs.at(path, pos, e.to_string());
    }
}

fn check(n: &Node, path: &str, errs: &mut Errs) -> Option<Check> {
    let mut m = Map::new(n, path, errs)?;
    let kinds = [
        "status",
        "header",
        "body_contains",
        "body_regex",
        "json_path",
    ];
    let given: Vec<&str> = kinds.iter().copied().filter(|k| m.has(k)).collect();
    if given.len() != 1 {
        errs.at(
            path,
            n.pos,
            format!(
                "a check needs exactly one of: {} (found {})",
                kinds.join(", "),
                if given.is_empty() {
                    "none".to_string()
                } else {
                    given.join(", ")
                }
            ),
        );
    }
    let mut out = None;
    if let Some((n, p)) = m.get("status") {
        let codes: Vec<&Node> = match &n.kind {
            Kind::Seq(items) => items.iter().collect(),
            _ => vec![n],
        };
        let mut ok = Vec::new();
        for (i, c) in codes.iter().enumerate() {
            let cp = if matches!(n.kind, Kind::Seq(_)) {
                format!("{p}[{i}]")
            } else {
                p.clone()
            };
            match uint(c, &cp, errs) {
                Some(v) if (100..=599).contains(&v) => ok.push(v as u16),
                Some(v) => errs.at(&cp, c.pos, format!("{v} is not an HTTP status (100-599)")),
                None => {}
            }
        }
        out = Some(Check::Status(ok));
    }
    if let Some((n, p)) = m.get("header") {
        out = match &n.kind {
            Kind::Str(s) => Some(Check::Header {
                name: s.clone(),
                contains: None,
            }),
            _ => {
                let mut hm = Map::new(n, &p, errs)?;
                let name = hm
                    .required("name", errs)
                    .and_then(|(n, p)| nonempty_string(n, &p, errs));
                let contains = hm.get("contains").and_then(|(n, p)| string(n, &p, errs));
                hm.finish(errs, " in a header check");
                Some(Check::Header {
                    name: name?,
                    contains,
                })
            }
        };
    }
    if let Some((n, p)) = m.get("body_contains") {
        out = nonempty_string(n, &p, errs).map(Check::BodyContains);
    }
    if let Some((n, p)) = m.get("body_regex") {
        out = regex_string(n, &p, errs).map(Check::BodyRegex);
    }
    if let Some((n, p)) = m.get("json_path") {
        out = match &n.kind {
            Kind::Str(_) => {
                json_path(n, &p, errs).map(|path| Check::JsonPath { path, equals: None })
            }
            _ => {
                let mut jm = Map::new(n, &p, errs)?;
                let path = jm
                    .required("path", errs)
                    .and_then(|(n, p)| json_path(n, &p, errs));
                let equals = jm.get("equals").map(|(n, _)| to_json(n).to_string());
                jm.finish(errs, " in a json_path check");
                path.map(|path| Check::JsonPath { path, equals })
            }
        };
    }
    m.finish(errs, " in a check");
    if given.len() == 1 {
        out
    } else {
        None
    }
}

fn regex_string(n: &Node, path: &str, errs: &mut Errs) -> Option<String> {
    let s = nonempty_string(n, path, errs)?;
    match regex::Regex::new(&s) {
        Ok(_) => Some(s),
        Err(e) => {
            errs.at(path, n.pos, format!("{s:?} is not a valid regex: {e}"));
            None
        }
    }
}

fn json_path(n: &Node, path: &str, errs: &mut Errs) -> Option<String> {
    let s = nonempty_string(n, path, errs)?;
    match serde_json_path::JsonPath::parse(&s) {
        Ok(_) => Some(s),
        Err(e) => {
            errs.at(
                path,
                n.pos,
                format!("{s:?} is not a JSONPath (e.g. \"$.token\"): {e}"),
            );
            None
        }
    }
}

fn capture(n: &Node, path: &str, errs: &mut Errs) -> Option<Capture> {
    let mut m = Map::new(n, path, errs)?;
    let var = m.required("var", errs).and_then(|(n, p)| {
        let s = nonempty_string(n, &p, errs)?;
        if !s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            errs.at(
                &p,
                n.pos,
                format!("{s:?} is not a variable name (letters, digits, `_`, `-`)"),
            );
            return None;
        }
        Some(s)
    });
    let kinds = ["json_path", "regex", "header"];
    let given: Vec<&str> = kinds.iter().copied().filter(|k| m.has(k)).collect();
    if given.len() != 1 {
        errs.at(
            path,
            n.pos,
            format!("a capture needs exactly one of: {}", kinds.join(", ")),
        );
    }
    let mut from = None;
    if let Some((n, p)) = m.get("json_path") {
        from = json_path(n, &p, errs).map(CaptureFrom::JsonPath);
    }
    if let Some((n, p)) = m.get("regex") {
        from = regex_string(n, &p, errs).map(CaptureFrom::Regex);
    }
    if let Some((n, p)) = m.get("header") {
        from = nonempty_string(n, &p, errs).map(CaptureFrom::Header);
    }
    m.finish(errs, " in a capture");
    if given.len() != 1 {
        return None;
    }
    Some(Capture {
        var: var?,
        from: from?,
    })
}

fn think(n: &Node, path: &str, lim: &SpecLimits, errs: &mut Errs) -> Option<Think> {
    if let Kind::Map(_) = n.kind {
        let mut m = Map::new(n, path, errs)?;
        let min = m
            .required("min", errs)
            .and_then(|(n, p)| duration(n, &p, lim, errs));
        let max = m
            .required("max", errs)
            .and_then(|(n, p)| duration(n, &p, lim, errs));
        m.finish(errs, " in think");
        let (min_ms, max_ms) = (min?, max?);
        if min_ms > max_ms {
            errs.at(path, n.pos, "min must not be greater than max");
            return None;
        }
        return Some(Think::Range { min_ms, max_ms });
    }
    duration(n, path, lim, errs).map(|ms| Think::Fixed { ms })
}
