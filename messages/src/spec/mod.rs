//! The user's spec: model ([`model`]), a position-keeping YAML tree ([`node`]) and the decoder
//! that turns one into the other while collecting every problem ([`decode`]).

mod decode;
pub mod model;
pub mod node;

use std::fmt;

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
/// are kept; JSON that YAML cannot read falls back to a JSON parser).
pub fn parse_spec(src: &str) -> Result<Spec, SpecError> {
    let root = match node::parse_yaml(src) {
        Ok(n) => n,
        Err(yaml_err) => match serde_json::from_str::<serde_json::Value>(src) {
            Ok(v) => node::from_json(&v),
            Err(_) => {
                return Err(SpecError::Syntax {
                    line: yaml_err.pos.line,
                    col: yaml_err.pos.col,
                    message: yaml_err.message,
                })
            }
        },
    };
    decode::spec(&root)
}

#[cfg(test)]
mod tests;
