//! The shape the code keeps, checked: small files, no exits outside `main`, and modules that
//! depend one way. Each is a habit that slips without a test that fails.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const CRATES: [&str; 5] = [
    "messages",
    "transport",
    "agent",
    "coordinator",
    "demo-target",
];
/// Longest source file, in lines.
const MAX_LINES: usize = 700;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn sources(krate: &str) -> Vec<PathBuf> {
    let mut files = Vec::new();
    rust_files(&root().join(krate).join("src"), &mut files);
    files.sort();
    assert!(!files.is_empty(), "no sources in {krate}/src");
    files
}

#[test]
fn no_source_file_is_longer_than_the_limit() {
    let mut long = Vec::new();
    for krate in CRATES {
        for f in sources(krate) {
            let n = std::fs::read_to_string(&f).expect("source").lines().count();
            if n > MAX_LINES {
                long.push(format!("{} ({n} lines)", f.display()));
            }
        }
    }
    assert!(long.is_empty(), "longer than {MAX_LINES} lines: {long:#?}");
}

#[test]
fn only_main_exits_the_process() {
    let mut found = Vec::new();
    for krate in CRATES {
        for f in sources(krate) {
            let text = std::fs::read_to_string(&f).expect("source");
            if text.contains("process::exit(") && !f.ends_with("coordinator/src/main.rs") {
                found.push(f.display().to_string());
            }
        }
    }
    assert!(found.is_empty(), "process::exit outside main.rs: {found:?}");
}

/// The module path of a source file (`src/run/mod.rs` → `run`), or None for binaries and
/// test-only files.
fn module_of(src: &Path, file: &Path) -> Option<Vec<String>> {
    let rel = file.strip_prefix(src).ok()?;
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let last = parts.pop()?;
    if last == "main.rs" || last.ends_with("tests.rs") || parts.iter().any(|p| p == "tests") {
        return None;
    }
    match last.as_str() {
        "lib.rs" | "mod.rs" => {}
        name => parts.push(name.trim_end_matches(".rs").to_string()),
    }
    Some(parts)
}

/// Code without comments and without a trailing `#[cfg(test)]` module.
fn code_of(text: &str) -> String {
    let cut = text.find("#[cfg(test)]\nmod ").unwrap_or(text.len());
    text[..cut]
        .lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `a::{b, c::{d, e}}` → `a::b`, `a::c::d`, `a::c::e`.
fn expand(tree: &str) -> Vec<String> {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else {
        return vec![tree.to_string()];
    };
    let prefix = &tree[..open];
    let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts
        .into_iter()
        .filter(|p| !p.trim().is_empty())
        .flat_map(|p| expand(p).into_iter().map(move |x| format!("{prefix}{x}")))
        .collect()
}

/// Every module path `file` (module `me`) refers to, resolved to absolute segments.
fn references(code: &str, me: &[String], children: &BTreeSet<String>) -> Vec<Vec<String>> {
    let ident = |s: &str| {
        s.chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
            && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    let resolve = |path: &str| -> Option<Vec<String>> {
        let segs: Vec<&str> = path
            .split("::")
            .map(|s| s.trim().trim_start_matches("r#"))
            .collect();
        let (mut out, rest): (Vec<String>, &[&str]) = match segs.first()? {
            &"crate" => (Vec::new(), &segs[1..]),
            &"self" => (me.to_vec(), &segs[1..]),
            &"super" => {
                let mut base = me.to_vec();
                let mut i = 0;
                while segs.get(i) == Some(&"super") {
                    base.pop();
                    i += 1;
                }
                (base, &segs[i..])
            }
            first if children.contains(*first) => (me.to_vec(), &segs[..]),
            _ => return None,
        };
        for s in rest {
            if !ident(s) {
                break;
            }
            out.push(s.to_string());
        }
        Some(out)
    };
    let mut refs = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("use ") {
        let before = rest[..i].chars().last();
        rest = &rest[i + 4..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let end = rest.find(';').unwrap_or(rest.len());
        for p in expand(&rest[..end].replace('\n', " ")) {
            let p = p.split(" as ").next().unwrap_or("").trim().to_string();
            if let Some(r) = resolve(&p) {
                refs.push(r);
            }
        }
    }
    for token in code.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':')) {
        if token.starts_with("crate::") || token.starts_with("super::") {
            if let Some(r) = resolve(token.trim_end_matches(':')) {
                refs.push(r);
            }
        }
    }
    refs
}

/// Cycles among sibling modules: `a` (or anything inside it) uses `b` and `b` uses `a`.
fn sibling_cycles(krate: &str) -> Vec<String> {
    let src = root().join(krate).join("src");
    let mut modules: BTreeMap<Vec<String>, String> = BTreeMap::new();
    for f in sources(krate) {
        if let Some(m) = module_of(&src, &f) {
            let text = std::fs::read_to_string(&f).expect("source");
            modules.insert(m, code_of(&text));
        }
    }
    // (parent, from child, to child) for every reference that crosses between siblings.
    let mut edges: BTreeMap<Vec<String>, BTreeSet<(String, String)>> = BTreeMap::new();
    for (me, code) in &modules {
        let children: BTreeSet<String> = modules
            .keys()
            .filter(|k| k.len() == me.len() + 1 && k.starts_with(me))
            .map(|k| k[me.len()].clone())
            .collect();
        for r in references(code, me, &children) {
            let k = me.iter().zip(&r).take_while(|(a, b)| a == b).count();
            if k < me.len() && k < r.len() && modules.contains_key(&r[..=k]) {
                edges
                    .entry(me[..k].to_vec())
                    .or_default()
                    .insert((me[k].clone(), r[k].clone()));
            }
        }
    }
    let mut cycles = Vec::new();
    for (parent, e) in &edges {
        for (a, b) in e {
            // a → b, and b reaches a again through siblings.
            let mut seen = BTreeSet::new();
            let mut stack = vec![b.clone()];
            while let Some(n) = stack.pop() {
                if n == *a {
                    cycles.push(format!(
                        "{krate}: {}{a} ↔ {b}",
                        if parent.is_empty() {
                            String::new()
                        } else {
                            format!("{}::", parent.join("::"))
                        }
                    ));
                    break;
                }
                if seen.insert(n.clone()) {
                    stack.extend(e.iter().filter(|(x, _)| *x == n).map(|(_, y)| y.clone()));
                }
            }
        }
    }
    cycles.sort();
    cycles.dedup();
    cycles
}

#[test]
fn modules_depend_one_way() {
    let cycles: Vec<String> = CRATES.iter().flat_map(|k| sibling_cycles(k)).collect();
    assert!(
        cycles.is_empty(),
        "modules that import each other: {cycles:#?}"
    );
}

/// What the cycle check reads: grouped `use`, `super::`, and paths inline in code, each to its
/// module segments (types end the path).
#[test]
fn references_resolve_grouped_super_and_inline_paths() {
    let me = vec!["serve".to_string()];
    let refs = references(
        "use crate::aws::{events::Intent, store};\nuse super::run::x;\nfn f() { crate::aws::err_text(); }",
        &me,
        &BTreeSet::new(),
    );
    assert!(refs.contains(&vec!["aws".to_string(), "events".to_string()]));
    assert!(refs.contains(&vec!["aws".to_string(), "store".to_string()]));
    assert!(refs.contains(&vec!["run".to_string(), "x".to_string()]));
    assert!(refs.contains(&vec!["aws".to_string(), "err_text".to_string()]));
}

/// Every test SECURITY.md names as the proof of a defence exists: the threat model cannot point
/// at a test that was renamed or deleted.
#[test]
fn every_test_the_threat_model_names_exists() {
    let model = std::fs::read_to_string(root().join("SECURITY.md")).expect("SECURITY.md");
    let mut code = String::new();
    for dir in [
        "messages",
        "transport",
        "agent",
        "coordinator",
        "demo-target",
        "tests",
    ] {
        let mut files = Vec::new();
        rust_files(&root().join(dir), &mut files);
        for f in files {
            code.push_str(&std::fs::read_to_string(&f).unwrap_or_default());
        }
    }
    let mut missing = Vec::new();
    for row in model.lines().filter(|l| l.starts_with("| ")) {
        let Some(last) = row.trim_end_matches('|').rsplit('|').next() else {
            continue;
        };
        for name in last.split('`').skip(1).step_by(2) {
            let is_test_name = name.matches('_').count() >= 3
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if is_test_name && !code.contains(&format!("fn {name}(")) {
                missing.push(name.to_string());
            }
        }
    }
    assert!(
        missing.is_empty(),
        "SECURITY.md names tests that do not exist: {missing:?}"
    );
}
