//! Node tree → [`Spec`], collecting every problem with its path and position.

use std::collections::{BTreeMap, BTreeSet};

use super::node::{to_json, Kind, Node, Pos};
use super::*;
use crate::template::{Template, BUILTINS};
use crate::threshold::{parse_expr, Threshold};

struct Errs(Vec<SpecIssue>);

impl Errs {
    fn at(&mut self, path: &str, pos: Option<Pos>, msg: impl Into<String>) {
        self.0.push(SpecIssue {
            path: path.to_string(),
            line: pos.map(|p| p.line).filter(|l| *l > 0),
            col: pos.map(|p| p.col).filter(|l| *l > 0),
            message: msg.into(),
        });
    }
    fn expected(&mut self, path: &str, n: &Node, what: &str) {
        self.at(
            path,
            n.pos,
            format!("expected {what}, found {}", n.describe()),
        );
    }
}

fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// A mapping being decoded: remembers which keys were asked for so the rest are reported.
struct Map<'a> {
    entries: &'a [(String, Pos, Node)],
    path: String,
    pos: Option<Pos>,
    known: Vec<&'static str>,
}

impl<'a> Map<'a> {
    fn new(n: &'a Node, path: &str, errs: &mut Errs) -> Option<Map<'a>> {
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

    fn get(&mut self, key: &'static str) -> Option<(&'a Node, String)> {
        self.known.push(key);
        self.entries
            .iter()
            .find(|(k, _, _)| k == key)
            .map(|(_, _, v)| (v, child(&self.path, key)))
    }

    fn has(&self, key: &str) -> bool {
        self.entries.iter().any(|(k, _, _)| k == key)
    }

    fn required(&mut self, key: &'static str, errs: &mut Errs) -> Option<(&'a Node, String)> {
        let got = self.get(key);
        if got.is_none() {
            let p = self.path.clone();
            errs.at(&child(&p, key), self.pos, "is required");
        }
        got
    }

    /// Reports keys nobody asked for; `context` names what they are not settings of.
    fn finish(self, errs: &mut Errs, context: &str) {
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

fn closest<'k>(word: &str, known: &[&'k str]) -> Option<&'k str> {
    known
        .iter()
        .map(|k| (edit_distance(word, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min()
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let v = (prev[j] + usize::from(ca != *cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
            cur.push(v);
        }
        prev = cur;
    }
    prev[b.len()]
}

// ---- scalars ---------------------------------------------------------------------------

fn string(n: &Node, path: &str, errs: &mut Errs) -> Option<String> {
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

fn nonempty_string(n: &Node, path: &str, errs: &mut Errs) -> Option<String> {
    let s = string(n, path, errs)?;
    if s.trim().is_empty() {
        errs.at(path, n.pos, "must not be empty");
        return None;
    }
    Some(s)
}

fn uint(n: &Node, path: &str, errs: &mut Errs) -> Option<u64> {
    match &n.kind {
        Kind::Int(i) if *i >= 0 => Some(*i as u64),
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

fn positive(n: &Node, path: &str, errs: &mut Errs) -> Option<u64> {
    let v = uint(n, path, errs)?;
    if v == 0 {
        errs.at(path, n.pos, "must be at least 1");
        return None;
    }
    Some(v)
}

/// `engine`, `script`, `tool_args`. `None`: native (no engine key, or `engine: native`);
/// `Some(None)`: a runner engine whose settings were invalid (already reported).
fn runner(m: &mut Map, errs: &mut Errs) -> Option<Option<Runner>> {
    let engine = match m.get("engine") {
        None => None,
        Some((n, p)) => match &n.kind {
            Kind::Str(s) if s == "native" => None,
            Kind::Str(s) if s == "k6" => Some(Some(Engine::K6)),
            Kind::Str(s) if s == "locust" => Some(Some(Engine::Locust)),
            Kind::Str(s) if s == "jmeter" => Some(Some(Engine::Jmeter)),
            _ => {
                errs.at(
                    &p,
                    n.pos,
                    format!(
                        "{} is not an engine (expected native, k6, locust or jmeter)",
                        n.show()
                    ),
                );
                Some(None)
            }
        },
    };
    let script = m.get("script");
    let args = m.get("tool_args");
    let Some(engine) = engine else {
        for (key, got) in [("script", &script), ("tool_args", &args)] {
            if let Some((n, p)) = got {
                errs.at(
                    p,
                    n.pos,
                    format!("{key} needs engine: k6, locust or jmeter"),
                );
            }
        }
        return None;
    };
    let script = match script {
        Some((n, p)) => nonempty_string(n, &p, errs),
        None => {
            if let Some(e) = engine {
                errs.at(
                    "script",
                    None,
                    format!(
                        "engine: {} needs `script:` (a file relative to the spec)",
                        e.name()
                    ),
                );
            }
            None
        }
    };
    let args = args
        .map(|(n, p)| {
            list(n, &p, errs)
                .iter()
                .enumerate()
                .filter_map(|(i, a)| string(a, &format!("{p}[{i}]"), errs))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    Some(match (engine, script) {
        (Some(engine), Some(script)) => Some(Runner {
            engine,
            script,
            args,
        }),
        _ => None,
    })
}

/// A share of a whole as a percent: `80%` or `80`, from 1 to 100.
fn percent(n: &Node, path: &str, errs: &mut Errs) -> Option<u32> {
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

fn boolean(n: &Node, path: &str, errs: &mut Errs) -> Option<bool> {
    match n.kind {
        Kind::Bool(b) => Some(b),
        _ => {
            errs.at(path, n.pos, format!("{} is not true or false", n.show()));
            None
        }
    }
}

fn duration(n: &Node, path: &str, errs: &mut Errs) -> Option<u64> {
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
    match &n.kind {
        Kind::Int(0) => Some(0),
        Kind::Str(s) => match humantime::parse_duration(s.trim()) {
            Ok(d) => Some(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            Err(_) => {
                bad(errs);
                None
            }
        },
        _ => {
            bad(errs);
            None
        }
    }
}

fn positive_duration(n: &Node, path: &str, errs: &mut Errs) -> Option<u64> {
    let d = duration(n, path, errs)?;
    if d == 0 {
        errs.at(path, n.pos, "must be longer than 0s");
        return None;
    }
    Some(d)
}

fn string_pairs(n: &Node, path: &str, errs: &mut Errs) -> Vec<(String, String)> {
    let Some(map) = Map::new(n, path, errs) else {
        return Vec::new();
    };
    map.entries
        .iter()
        .filter_map(|(k, _, v)| Some((k.clone(), string(v, &child(path, k), errs)?)))
        .collect()
}

fn list<'a>(n: &'a Node, path: &str, errs: &mut Errs) -> &'a [Node] {
    match &n.kind {
        Kind::Seq(items) => items,
        _ => {
            errs.expected(path, n, "a list");
            &[]
        }
    }
}

fn one_of<T: Copy>(n: &Node, path: &str, errs: &mut Errs, options: &[(&str, T)]) -> Option<T> {
    let s = string(n, path, errs)?;
    if let Some((_, v)) = options.iter().find(|(name, _)| *name == s) {
        return Some(*v);
    }
    let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
    errs.at(
        path,
        n.pos,
        format!("{s:?} is not one of: {}", names.join(", ")),
    );
    None
}

// ---- the spec ------------------------------------------------------------------------------

pub(super) fn spec(root: &Node) -> Result<Spec, SpecError> {
    let mut errs = Errs(Vec::new());
    let spec = spec_inner(root, &mut errs);
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

fn spec_inner(root: &Node, errs: &mut Errs) -> Option<Spec> {
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
    let name = m
        .required("name", errs)
        .and_then(|(n, p)| nonempty_string(n, &p, errs));
    if let Some(name) = &name {
        if name.contains('/') || name.chars().any(char::is_control) {
            let (n, p) = m.get("name")?;
            errs.at(
                &p,
                n.pos,
                "must not contain `/` or control characters (it names result folders)",
            );
        }
    }
    let target = m
        .required("target", errs)
        .and_then(|(n, p)| target(n, &p, errs));
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
        .map(|(n, p)| data(n, &p, errs))
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
        items
            .iter()
            .enumerate()
            .filter_map(|(i, s)| step(s, &format!("{p}[{i}]"), errs))
            .collect::<Vec<_>>()
    });
    // A runner's scenario is its script.
    let scenario = match (scenario, &runner) {
        (None, Some(Some(_))) => Some(Vec::new()),
        (s, _) => s,
    };
    let load = m
        .required("load", errs)
        .and_then(|(n, p)| load(n, &p, errs));
    let agents = match m.get("agents") {
        None => Some(Agents::Default),
        Some((n, p)) => agents(n, &p, errs),
    };
    let step_names: BTreeSet<String> = scenario.iter().flatten().map(|s| s.name.clone()).collect();
    let thresholds = m
        .get("thresholds")
        .map(|(n, p)| {
            list(n, &p, errs)
                .iter()
                .enumerate()
                .filter_map(|(i, t)| threshold(t, &format!("{p}[{i}]"), &step_names, errs))
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

fn target(n: &Node, path: &str, errs: &mut Errs) -> Option<Target> {
    if let Kind::Str(_) = n.kind {
        let url = base_url(n, path, errs)?;
        return Some(Target {
            url,
            headers: Vec::new(),
            http: HttpOptions::default(),
            builtin: false,
        });
    }
    let mut m = Map::new(n, path, errs)?;
    let builtin = m
        .get("builtin")
        .and_then(|(n, p)| boolean(n, &p, errs))
        .unwrap_or(false);
    let url = match m.get("url") {
        Some((n, p)) => base_url(n, &p, errs),
        None if builtin => Some(String::new()),
        None => {
            errs.at(
                &child(path, "url"),
                n.pos,
                "is required (or set `builtin: true` to start herd's own target)",
            );
            None
        }
    };
    if builtin && m.has("url") {
        errs.at(
            &child(path, "builtin"),
            n.pos,
            "`builtin: true` starts herd's own target and sets the URL; remove `url`",
        );
    }
    let headers = m
        .get("headers")
        .map(|(n, p)| string_pairs(n, &p, errs))
        .unwrap_or_default();
    let http = m
        .get("http")
        .map(|(n, p)| http_options(n, &p, errs))
        .unwrap_or_default();
    m.finish(errs, " in target");
    Some(Target {
        url: url?,
        headers,
        http,
        builtin,
    })
}

fn base_url(n: &Node, path: &str, errs: &mut Errs) -> Option<String> {
    let s = nonempty_string(n, path, errs)?;
    match url::Url::parse(&s) {
        Ok(u) if (u.scheme() == "http" || u.scheme() == "https") && u.host().is_some() => {
            Some(s.trim_end_matches('/').to_string())
        }
        Ok(u) => {
            errs.at(
                path,
                n.pos,
                format!(
                    "{s:?} must be an http:// or https:// URL with a host (scheme is {:?})",
                    u.scheme()
                ),
            );
            None
        }
        Err(e) => {
            errs.at(path, n.pos, format!("{s:?} is not a URL: {e}"));
            None
        }
    }
}

fn http_options(n: &Node, path: &str, errs: &mut Errs) -> HttpOptions {
    let mut o = HttpOptions::default();
    let Some(mut m) = Map::new(n, path, errs) else {
        return o;
    };
    if let Some((n, p)) = m.get("version") {
        let v = one_of(
            n,
            &p,
            errs,
            &[
                ("auto", HttpVersion::Auto),
                ("http1", HttpVersion::Http1),
                ("http2", HttpVersion::Http2),
                ("h2c", HttpVersion::H2c),
            ],
        );
        o.version = v.unwrap_or(o.version);
    }
    if let Some(v) = m
        .get("timeout")
        .and_then(|(n, p)| positive_duration(n, &p, errs))
    {
        o.timeout_ms = v;
    }
    if let Some(v) = m
        .get("connect_timeout")
        .and_then(|(n, p)| positive_duration(n, &p, errs))
    {
        o.connect_timeout_ms = v;
    }
    if let Some(v) = m.get("redirects").and_then(|(n, p)| uint(n, &p, errs)) {
        o.max_redirects = u32::try_from(v).unwrap_or(u32::MAX);
    }
    if let Some(v) = m.get("insecure").and_then(|(n, p)| boolean(n, &p, errs)) {
        o.insecure = v;
    }
    if let Some(v) = m.get("cookies").and_then(|(n, p)| boolean(n, &p, errs)) {
        o.cookies = v;
    }
    m.finish(errs, " in target.http");
    o
}

fn data(n: &Node, path: &str, errs: &mut Errs) -> BTreeMap<String, DataSource> {
    let Some(map) = Map::new(n, path, errs) else {
        return BTreeMap::new();
    };
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

const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

fn step(n: &Node, path: &str, errs: &mut Errs) -> Option<Step> {
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
    let think = m.get("think").and_then(|(n, p)| think(n, &p, errs));
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
        errs.at(path, pos, e);
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

fn think(n: &Node, path: &str, errs: &mut Errs) -> Option<Think> {
    if let Kind::Map(_) = n.kind {
        let mut m = Map::new(n, path, errs)?;
        let min = m
            .required("min", errs)
            .and_then(|(n, p)| duration(n, &p, errs));
        let max = m
            .required("max", errs)
            .and_then(|(n, p)| duration(n, &p, errs));
        m.finish(errs, " in think");
        let (min_ms, max_ms) = (min?, max?);
        if min_ms > max_ms {
            errs.at(path, n.pos, "min must not be greater than max");
            return None;
        }
        return Some(Think::Range { min_ms, max_ms });
    }
    duration(n, path, errs).map(|ms| Think::Fixed { ms })
}

const EXECUTORS: &[&str] = &[
    "constant-vus",
    "ramping-vus",
    "constant-arrival-rate",
    "ramping-arrival-rate",
    "per-vu-iterations",
    "shared-iterations",
];

const DEFAULT_MAX_DURATION_MS: u64 = 10 * 60 * 1000;

fn load(n: &Node, path: &str, errs: &mut Errs) -> Option<Load> {
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

use super::model::MAX_REGIONS;

fn agents(n: &Node, path: &str, errs: &mut Errs) -> Option<Agents> {
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

fn threshold(
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
    match parse_expr(&expr) {
        Ok((metric, op, value)) => Some(Threshold {
            expr,
            label,
            metric,
            op,
            value,
        }),
        Err(e) => {
            errs.at(&epath, epos, e);
            None
        }
    }
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
