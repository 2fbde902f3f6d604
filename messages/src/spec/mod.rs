//! The user's spec: model ([`model`]), a position-keeping YAML tree ([`node`]) and the decoder
//! that turns one into the other while collecting every problem ([`decode`]).

mod decode;
pub mod limits;
pub mod lint;
pub mod model;
pub mod node;

use std::fmt;

pub use limits::{check_name, SpecLimits, MAX_NAME_LEN};
pub use model::*;

/// One problem in a spec, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecIssue {
    /// Dotted path, e.g. `load.stages[2].duration`; empty for the document itself.
    pub path: String,
    /// 1-based line and column when the source had positions.
    pub line: Option<usize>,
    pub col: Option<usize>,
    pub message: String,
}

impl fmt::Display for SpecIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let (Some(l), Some(c)) = (self.line, self.col) {
            write!(f, "{l}:{c}: ")?;
        }
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// The text is not YAML/JSON.
    #[error("{line}:{col}: not valid YAML/JSON: {message}")]
    Syntax {
        line: usize,
        col: usize,
        message: String,
    },
    /// The text is a document, but not a valid spec. Holds every problem found.
    #[error("{}", .0.iter().map(|i| i.to_string()).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<SpecIssue>),
}

impl SpecError {
    pub fn issues(&self) -> Vec<SpecIssue> {
        match self {
            SpecError::Syntax { line, col, message } => vec![SpecIssue {
                path: String::new(),
                line: Some(*line),
                col: Some(*col),
                message: format!("not valid YAML/JSON: {message}"),
            }],
            SpecError::Invalid(v) => v.clone(),
        }
    }
}

/// Parses and validates a spec written in YAML or JSON (JSON is read as YAML 1.2 so positions
/// are kept; JSON that YAML cannot read falls back to a JSON parser), within the default
/// [`SpecLimits`].
pub fn parse_spec(src: &str) -> Result<Spec, SpecError> {
    parse_spec_with(src, &SpecLimits::DEFAULT)
}

/// [`parse_spec`] within `limits` (`herd serve`'s `[limits]`).
pub fn parse_spec_with(src: &str, limits: &SpecLimits) -> Result<Spec, SpecError> {
    let root = match node::parse_yaml(src, limits) {
        Ok(n) => n,
        Err(e @ node::ReadError::Limit { .. }) => return Err(e.into()),
        Err(yaml_err) => match serde_json::from_str::<serde_json::Value>(src) {
            Ok(v) => node::from_json(&v, limits)?,
            Err(_) => return Err(yaml_err.into()),
        },
    };
    decode::spec(&root, limits)
}

/// A `load:` section given as JSON (what `bundle::build` makes of a k6 script's options),
/// checked exactly like one written in a spec, within `limits`. Issues name their path below
/// `load`.
pub fn decode_load(v: &serde_json::Value, limits: &SpecLimits) -> Result<Load, SpecError> {
    let n = node::from_json(v, limits)?;
    decode::load_only(&n, limits)
}

/// The spec as it ran, as a spec (`spec.json` in a run's folder): `src` as JSON, with the target
/// URL herd resolved (the built-in target's address, an override). `herd validate` accepts it.
/// `None` when `src` cannot be read within `limits` (it then never became a run).
pub fn as_run(src: &str, spec: &Spec, limits: &SpecLimits) -> Option<serde_json::Value> {
    use serde_json::Value;
    let mut doc = match node::parse_yaml(src, limits) {
        Ok(n) => to_json(&n),
        Err(_) => serde_json::from_str::<Value>(src).ok()?,
    };
    let url = Value::String(spec.target.url.clone());
    match doc.get_mut("target") {
        Some(Value::Object(t)) => {
            t.remove("builtin");
            t.insert("url".into(), url);
        }
        Some(t) => *t = url,
        None => {}
    }
    Some(doc)
}

fn to_json(n: &node::Node) -> serde_json::Value {
    use serde_json::Value;
    match &n.kind {
        node::Kind::Null => Value::Null,
        node::Kind::Bool(b) => Value::Bool(*b),
        node::Kind::Int(i) => Value::from(*i),
        node::Kind::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
        node::Kind::Str(s) => Value::String(s.clone()),
        node::Kind::Seq(items) => Value::Array(items.iter().map(to_json).collect()),
        node::Kind::Map(entries) => Value::Object(
            entries
                .iter()
                .map(|(k, _, v)| (k.clone(), to_json(v)))
                .collect(),
        ),
    }
}

impl From<node::ReadError> for SpecError {
    fn from(e: node::ReadError) -> SpecError {
        match e {
            node::ReadError::Syntax { pos, message } => SpecError::Syntax {
                line: pos.line,
                col: pos.col,
                message,
            },
            // Over a limit is not a syntax error: an issue like the decoder's.
            node::ReadError::Limit { pos, message } => SpecError::Invalid(vec![SpecIssue {
                path: String::new(),
                line: pos.map(|p| p.line),
                col: pos.map(|p| p.col),
                message,
            }]),
        }
    }
}

#[cfg(test)]
mod limits_tests;
#[cfg(test)]
mod tests;
