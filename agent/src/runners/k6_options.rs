//! A k6 script's own `options`, read **without running the script**: the object literal after
//! `export const options =` (or `let`/`var`, or a `const options` the script exports by name),
//! read as JSON5 — the syntax k6's examples write options in (unquoted keys, single quotes,
//! trailing commas, comments).
//!
//! Why not `k6 inspect`: under `herd serve` the coordinator reads specs from many people, and a
//! script's init code can `open()` any file the coordinator may read and put it in its options.
//! Reading a literal runs nothing; an options object built by code is refused with its line,
//! and the spec's own `load:` and `thresholds:` say what to do instead.
//!
//! [`translate`] turns the options into herd's terms: the load (one scenario, or k6's
//! shortcuts `vus`/`duration`/`iterations`/`stages`) as a `load:` section the spec decoder
//! checks like a written one, and the thresholds (on the metrics herd merges across agents)
//! as herd thresholds, `abortOnFail` included. What cannot be carried over is an error when
//! it would change what is measured or judged, and a note otherwise.

use messages::spec::ScriptScenario;
use messages::threshold::Threshold;

pub use super::k6_duration::go_duration_ms;
use super::k6_duration::ms;
pub use super::k6_thresholds::threshold;
use super::k6_thresholds::thresholds;
use serde_json::{json, Map, Value};

/// The most of a script's text the options literal may span.
pub const MAX_OPTIONS_BYTES: usize = 256 * 1024;
/// Deepest nesting of brackets in the literal (k6's own options nest 4 deep).
const MAX_DEPTH: usize = 32;
/// Longest scenario name, `exec` name, tag or env entry kept from a script.
const MAX_TEXT: usize = 256;
/// Most `env` or `tags` entries kept from a scenario.
const MAX_ENTRIES: usize = 64;

/// The options literal found in a script: the line it starts on and its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    pub line: usize,
    pub value: Value,
}

/// Finds and reads the script's `options`; `Ok(None)` when it declares none (k6 then runs one
/// iteration of one VU).
pub fn read(src: &str) -> Result<Option<Found>, String> {
    let Some(at) = declaration(src) else {
        return Ok(None);
    };
    let line = src[..at].matches('\n').count() + 1;
    let start = skip_blank(src, at);
    if !src[start..].starts_with('{') {
        return Err(format!(
            "line {line}: the script's `options` is not an object literal herd can read without \
             running the script; write it as one, or give the spec `load:` and `thresholds:`"
        ));
    }
    let end = literal_end(src, start).map_err(|why| format!("line {line}: options: {why}"))?;
    let text = &src[start..end];
    let value: Value = json5::from_str(text).map_err(|e| {
        format!(
            "line {line}: the script's `options` is not a plain literal ({}): herd reads options \
             without running the script, so values must be written out (no variables, `__ENV`, \
             function calls or template strings); or give the spec `load:` and `thresholds:`",
            first_line(&e.to_string())
        )
    })?;
    Ok(Some(Found { line, value }))
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s).trim()
}

/// Byte offset just after `options =` in the declaration the script exports: `export
/// const|let|var options =`, or `const|let|var options =` when an `export { options }` names
/// it. Comments and strings are skipped, so a commented-out declaration is not taken.
fn declaration(src: &str) -> Option<usize> {
    let exported =
        regex::Regex::new(r"^export\s+(?:const|let|var)\s+options\s*(?::\s*[A-Za-z_.]+\s*)?=")
            .ok()?;
    let local = regex::Regex::new(r"^(?:const|let|var)\s+options\s*=").ok()?;
    let named = regex::Regex::new(r"^export\s*\{[^}]*\boptions\b[^}]*\}").ok()?;
    let code = code_starts(src);
    let at = |re: &regex::Regex| {
        code.iter()
            .find_map(|&i| re.find(&src[i..]).map(|m| i + m.end()))
    };
    if let Some(i) = at(&exported) {
        return Some(i);
    }
    at(&named)?;
    at(&local)
}

/// Offsets in code (not in a comment or string) where a word starts.
fn code_starts(src: &str) -> Vec<usize> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let mut prev_word = false;
    while i < b.len() {
        match skip_non_code(b, i) {
            Some(next) => {
                i = next;
                prev_word = false;
            }
            None => {
                let word = b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'$';
                if word && !prev_word {
                    out.push(i);
                }
                prev_word = word;
                i += 1;
            }
        }
    }
    out
}

/// If a comment or string starts at `i`, the offset after it (or the end of the text).
fn skip_non_code(b: &[u8], i: usize) -> Option<usize> {
    let end = b.len();
    match (b[i], b.get(i + 1)) {
        (b'/', Some(b'/')) => Some(
            b[i..]
                .iter()
                .position(|c| *c == b'\n')
                .map_or(end, |p| i + p),
        ),
        (b'/', Some(b'*')) => Some(
            b[i + 2..]
                .windows(2)
                .position(|w| w == b"*/")
                .map_or(end, |p| i + 2 + p + 2),
        ),
        (q @ (b'"' | b'\'' | b'`'), _) => {
            let mut j = i + 1;
            while j < end {
                match b[j] {
                    b'\\' => j += 2,
                    c if c == q => return Some(j + 1),
                    _ => j += 1,
                }
            }
            Some(end)
        }
        _ => None,
    }
}

fn skip_blank(src: &str, mut i: usize) -> usize {
    let b = src.as_bytes();
    while i < b.len() {
        if b[i].is_ascii_whitespace() {
            i += 1;
            continue;
        }
        match skip_non_code(b, i) {
            Some(next) if b[i] == b'/' => i = next,
            _ => break,
        }
    }
    i
}

/// The end of the bracketed literal starting at `start`, within [`MAX_OPTIONS_BYTES`] and
/// [`MAX_DEPTH`] (the JSON5 reader recurses; a deep literal must not reach it).
fn literal_end(src: &str, start: usize) -> Result<usize, String> {
    let b = src.as_bytes();
    let mut depth = 0usize;
    let mut i = start;
    while i < b.len() {
        if i - start > MAX_OPTIONS_BYTES {
            return Err(format!("longer than {} KiB", MAX_OPTIONS_BYTES >> 10));
        }
        if let Some(next) = skip_non_code(b, i) {
            i = next;
            continue;
        }
        match b[i] {
            b'{' | b'[' | b'(' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(format!("nested more than {MAX_DEPTH} deep"));
                }
            }
            b'}' | b']' | b')' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return Ok(i + 1);
                }
            }
            _ => {}
        }
        i += 1;
    }
    Err("the object is never closed".into())
}

/// The options in herd's terms.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Translated {
    /// Each scenario's `load:` section (JSON, for the spec decoder) with its settings, in the
    /// script's order; one entry without settings for k6's shortcuts; none when the script
    /// sets no load (k6's default, one iteration, stands).
    pub scenarios: Vec<(Value, Option<ScriptScenario>)>,
    pub thresholds: Vec<Threshold>,
    /// What was not carried over and does not change the numbers.
    pub notes: Vec<String>,
}

/// Translates `options`: its load when `want_load`, its thresholds when `want_thresholds`
/// (what the spec does not give itself). Every problem is collected; `Err` lists them all.
pub fn translate(
    options: &Value,
    want_load: bool,
    want_thresholds: bool,
) -> Result<Translated, Vec<String>> {
    let mut errs = Vec::new();
    let mut out = Translated::default();
    let Some(o) = options.as_object() else {
        return Err(vec!["options must be an object".into()]);
    };
    if want_load {
        if let Some((scenarios, notes)) = load(o, &mut errs) {
            out.scenarios = scenarios;
            out.notes = notes;
        }
    } else if ["scenarios", "stages", "vus", "duration", "iterations"]
        .iter()
        .any(|k| o.get(*k).is_some_and(|v| !v.is_null()))
    {
        out.notes
            .push("the spec's `load:` replaces the load the script's options set".into());
    }
    match o.get("thresholds").filter(|v| !v.is_null()) {
        Some(t) if want_thresholds => out.thresholds = thresholds(t, &mut errs),
        Some(_) => out
            .notes
            .push("the spec's `thresholds:` replace the script's own".into()),
        None => {}
    }
    for key in ["setupTimeout", "teardownTimeout"] {
        if want_load && o.contains_key(key) {
            out.notes.push(format!(
                "options.{key}: setup() and teardown() run on every agent, and the run's planned \
                 length does not include them"
            ));
        }
    }
    if errs.is_empty() {
        Ok(out)
    } else {
        Err(errs)
    }
}

/// The scenarios (load and settings) and notes.
type Loaded = (Vec<(Value, Option<ScriptScenario>)>, Vec<String>);

/// Most scenarios a script may declare.
const MAX_SCENARIOS: usize = 16;

fn load(o: &Map<String, Value>, errs: &mut Vec<String>) -> Option<Loaded> {
    let shortcuts: Vec<&str> = ["vus", "duration", "iterations", "stages"]
        .into_iter()
        .filter(|k| o.get(*k).is_some_and(|v| !v.is_null()))
        .collect();
    if let Some(sc) = o.get("scenarios").filter(|v| !v.is_null()) {
        if !shortcuts.is_empty() {
            errs.push(format!(
                "options sets both scenarios and {}: k6 uses only one of them; keep one",
                shortcuts.join(", ")
            ));
            return None;
        }
        let Some(map) = sc.as_object() else {
            errs.push("options.scenarios must be an object of named scenarios".into());
            return None;
        };
        if map.len() > MAX_SCENARIOS {
            errs.push(format!(
                "options.scenarios declares {} scenarios, more than the {MAX_SCENARIOS} herd runs",
                map.len()
            ));
            return None;
        }
        let mut out = Vec::new();
        let mut notes = Vec::new();
        for (name, s) in map {
            if let Some((load, sc, n)) = scenario(name, s, errs) {
                out.push((load, Some(sc)));
                notes.extend(n);
            }
        }
        return Some((out, notes));
    }
    let vus = match o.get("vus").filter(|v| !v.is_null()) {
        Some(v) => Some(count(v, "options.vus", errs)?),
        None => None,
    };
    let gs = json!("30s");
    let load = if let Some(st) = o.get("stages").filter(|v| !v.is_null()) {
        if o.get("iterations").is_some_and(|v| !v.is_null()) {
            errs.push("options sets both stages and iterations: keep one".into());
            return None;
        }
        json!({"executor": "ramping-vus", "start_vus": vus.unwrap_or(1), "stages": stages(st, "options.stages", errs)?, "graceful_stop": gs})
    } else if let Some(it) = o.get("iterations").filter(|v| !v.is_null()) {
        let iterations = count(it, "options.iterations", errs)?;
        let max = match o.get("duration").filter(|v| !v.is_null()) {
            Some(d) => ms(d, "options.duration", errs)?,
            None => 600_000,
        };
        json!({"executor": "shared-iterations", "vus": vus.unwrap_or(1), "iterations": iterations, "max_duration": format!("{max}ms"), "graceful_stop": gs})
    } else if let Some(d) = o.get("duration").filter(|v| !v.is_null()) {
        let d = ms(d, "options.duration", errs)?;
        if d == 0 {
            errs.push("options.duration 0 runs until stopped: herd runs need an end".into());
            return None;
        }
        json!({"executor": "constant-vus", "vus": vus.unwrap_or(1), "duration": format!("{d}ms"), "graceful_stop": gs})
    } else if vus.is_some() {
        errs.push("options.vus needs duration, iterations or stages beside it".into());
        return None;
    } else {
        return Some((Vec::new(), Vec::new()));
    };
    Some((vec![(load, None)], Vec::new()))
}

/// One named scenario: its load for herd, the rest kept for k6.
fn scenario(
    name: &str,
    s: &Value,
    errs: &mut Vec<String>,
) -> Option<(Value, ScriptScenario, Vec<String>)> {
    let at = format!("options.scenarios.{name}");
    let Some(s) = s.as_object() else {
        errs.push(format!("{at} must be an object"));
        return None;
    };
    let mut notes = Vec::new();
    let executor = match s.get("executor").and_then(Value::as_str) {
        Some(e) => e,
        None => {
            errs.push(format!("{at}.executor is required"));
            return None;
        }
    };
    let start_ms = match s.get("startTime").filter(|v| !v.is_null()) {
        Some(st) => ms(st, &format!("{at}.startTime"), errs)?,
        None => 0,
    };
    let gs = match s.get("gracefulStop").filter(|v| !v.is_null()) {
        Some(v) => ms(v, &format!("{at}.gracefulStop"), errs)?,
        None => 30_000,
    };
    let get = |k: &str| s.get(k).filter(|v| !v.is_null());
    let num = |k: &str, default: u64, errs: &mut Vec<String>| match get(k) {
        Some(v) => count(v, &format!("{at}.{k}"), errs),
        None => Some(default),
    };
    let dur = |k: &str, default: Option<u64>, errs: &mut Vec<String>| match get(k) {
        Some(v) => ms(v, &format!("{at}.{k}"), errs).map(|d| format!("{d}ms")),
        None => match default {
            Some(d) => Some(format!("{d}ms")),
            None => {
                errs.push(format!("{at}.{k} is required for {executor}"));
                None
            }
        },
    };
    let mut known = vec![
        "executor",
        "startTime",
        "gracefulStop",
        "exec",
        "env",
        "tags",
        "options",
    ];
    let gs = format!("{gs}ms");
    let load = match executor {
        "constant-vus" => {
            known.extend(["vus", "duration"]);
            json!({"executor": executor, "vus": num("vus", 1, errs)?, "duration": dur("duration", None, errs)?, "graceful_stop": gs})
        }
        "ramping-vus" => {
            known.extend(["startVUs", "stages", "gracefulRampDown"]);
            if get("gracefulRampDown").is_some() {
                notes.push(format!(
                    "{at}.gracefulRampDown: herd gives ramped-down VUs the gracefulStop ({gs})"
                ));
            }
            let st = match get("stages") {
                Some(st) => stages(st, &format!("{at}.stages"), errs)?,
                None => {
                    errs.push(format!("{at}.stages is required for {executor}"));
                    return None;
                }
            };
            json!({"executor": executor, "start_vus": num("startVUs", 1, errs)?, "stages": st, "graceful_stop": gs})
        }
        "constant-arrival-rate" | "ramping-arrival-rate" => {
            known.extend(["timeUnit", "preAllocatedVUs", "maxVUs"]);
            let mut l = json!({"executor": executor, "time_unit": dur("timeUnit", Some(1000), errs)?,
                "pre_allocated_vus": num("preAllocatedVUs", 1, errs)?, "graceful_stop": gs});
            if let Some(m) = get("maxVUs") {
                l["max_vus"] = json!(count(m, &format!("{at}.maxVUs"), errs)?);
            }
            if executor == "constant-arrival-rate" {
                known.extend(["rate", "duration"]);
                let rate = match get("rate") {
                    Some(r) => count(r, &format!("{at}.rate"), errs)?,
                    None => {
                        errs.push(format!("{at}.rate is required for {executor}"));
                        return None;
                    }
                };
                l["rate"] = json!(rate);
                l["duration"] = json!(dur("duration", None, errs)?);
            } else {
                known.extend(["startRate", "stages"]);
                l["start_rate"] = json!(num("startRate", 0, errs)?);
                l["stages"] = match get("stages") {
                    Some(st) => stages(st, &format!("{at}.stages"), errs)?,
                    None => {
                        errs.push(format!("{at}.stages is required for {executor}"));
                        return None;
                    }
                };
            }
            l
        }
        "per-vu-iterations" | "shared-iterations" => {
            known.extend(["vus", "iterations", "maxDuration"]);
            json!({"executor": executor, "vus": num("vus", 1, errs)?, "iterations": num("iterations", 1, errs)?,
                   "max_duration": dur("maxDuration", Some(600_000), errs)?, "graceful_stop": gs})
        }
        other => {
            errs.push(format!(
                "{at}.executor {other:?}: herd runs constant-vus, ramping-vus, \
                 constant-arrival-rate, ramping-arrival-rate, per-vu-iterations and \
                 shared-iterations"
            ));
            return None;
        }
    };
    for k in s.keys() {
        if !known.contains(&k.as_str()) {
            errs.push(format!("{at}.{k} is not a setting of {executor}"));
        }
    }
    if get("options").is_some() {
        notes.push(format!(
            "{at}.options (browser settings) is passed to k6 as written"
        ));
    }
    let text = |v: &Value, what: &str, errs: &mut Vec<String>| -> Option<String> {
        let t = match v {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            _ => {
                errs.push(format!("{what} must be a string"));
                return None;
            }
        };
        if t.len() > MAX_TEXT {
            errs.push(format!("{what} is longer than {MAX_TEXT} bytes"));
            return None;
        }
        Some(t)
    };
    let pairs = |k: &str, errs: &mut Vec<String>| -> Option<Vec<(String, String)>> {
        let Some(v) = get(k) else {
            return Some(Vec::new());
        };
        let Some(m) = v.as_object() else {
            errs.push(format!("{at}.{k} must be an object"));
            return None;
        };
        if m.len() > MAX_ENTRIES {
            errs.push(format!("{at}.{k} has more than {MAX_ENTRIES} entries"));
            return None;
        }
        m.iter()
            .map(|(key, v)| {
                let what = format!("{at}.{k}.{key}");
                if key.len() > MAX_TEXT {
                    errs.push(format!("{what}: name longer than {MAX_TEXT} bytes"));
                    return None;
                }
                Some((key.clone(), text(v, &what, errs)?))
            })
            .collect()
    };
    let exec = match get("exec") {
        Some(v) => {
            let e = text(v, &format!("{at}.exec"), errs)?;
            if e.is_empty()
                || !e
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
            {
                errs.push(format!("{at}.exec {e:?} is not a function name"));
                return None;
            }
            Some(e)
        }
        None => None,
    };
    if name.len() > MAX_TEXT || name.is_empty() {
        errs.push(format!(
            "scenario name {name:?} must be 1 to {MAX_TEXT} bytes"
        ));
        return None;
    }
    let scenario = ScriptScenario {
        name: name.to_string(),
        exec,
        env: pairs("env", errs)?,
        tags: pairs("tags", errs)?,
        start_ms,
    };
    Some((load, scenario, notes))
}

fn stages(v: &Value, at: &str, errs: &mut Vec<String>) -> Option<Value> {
    let Some(list) = v.as_array() else {
        errs.push(format!("{at} must be a list"));
        return None;
    };
    let mut out = Vec::with_capacity(list.len());
    for (i, st) in list.iter().enumerate() {
        let here = format!("{at}[{i}]");
        let (Some(d), Some(t)) = (st.get("duration"), st.get("target")) else {
            errs.push(format!("{here} needs duration and target"));
            return None;
        };
        let d = ms(d, &format!("{here}.duration"), errs)?;
        let t = count(t, &format!("{here}.target"), errs)?;
        out.push(json!({"duration": format!("{d}ms"), "target": t}));
    }
    Some(Value::Array(out))
}

/// A whole, non-negative number (k6 reads VUs, rates and iterations as integers).
fn count(v: &Value, at: &str, errs: &mut Vec<String>) -> Option<u64> {
    match v.as_u64() {
        Some(n) => Some(n),
        None => {
            errs.push(format!("{at}: {v} is not a whole number of at least 0"));
            None
        }
    }
}

#[cfg(test)]
#[path = "k6_options_tests.rs"]
mod tests;
