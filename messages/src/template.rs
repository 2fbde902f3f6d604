//! `{{var}}` templates, parsed once when a spec is loaded so the hot path only concatenates.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Part {
    Lit(String),
    /// A variable name: a spec variable, a capture, `source.column` of a data feeder, or a builtin.
    Var(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Template {
    pub parts: Vec<Part>,
}

/// Why a template was refused. The texts are shown to users as they are.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// `at` is the byte offset of the `{{` in `src`.
    #[error("unclosed `{{{{` at byte {at} of {src:?}")]
    Unclosed { at: usize, src: String },
    #[error("empty `{{{{}}}}` in {src:?}")]
    Empty { src: String },
    #[error("`{name}` is not a variable name (letters, digits, `_`, `-`, `.`)")]
    BadName { name: String },
}

/// Variables every VU has without declaring them.
pub const BUILTINS: &[&str] = &["vu", "iteration", "agent", "run"];

/// `{{secret.NAME}}` names a secret the agent reads from its environment, so its value never
/// travels in the spec, the Assign or the results.
pub const SECRET_PREFIX: &str = "secret.";

/// The secret a template variable names, if it names one (`secret.api_token` → `api_token`).
pub fn secret_name(var: &str) -> Option<&str> {
    let name = var.strip_prefix(SECRET_PREFIX)?;
    (!name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .then_some(name)
}

/// The environment variable an agent reads secret `name` from: `HERD_SECRET_<NAME>`.
pub fn secret_env(name: &str) -> String {
    format!("HERD_SECRET_{}", name.to_ascii_uppercase())
}

impl Template {
    pub fn parse(src: &str) -> Result<Template, TemplateError> {
        let mut parts = Vec::new();
        let mut rest = src;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Lit(rest[..open].to_string()));
            }
            let after = &rest[open + 2..];
            let Some(close) = after.find("}}") else {
                return Err(TemplateError::Unclosed {
                    at: src.len() - rest.len() + open,
                    src: src.to_string(),
                });
            };
            let name = after[..close].trim();
            if name.is_empty() {
                return Err(TemplateError::Empty {
                    src: src.to_string(),
                });
            }
            if !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
            {
                return Err(TemplateError::BadName {
                    name: name.to_string(),
                });
            }
            parts.push(Part::Var(name.to_string()));
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Lit(rest.to_string()));
        }
        Ok(Template { parts })
    }

    pub fn is_static(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Lit(_)))
    }

    pub fn vars(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Var(v) => Some(v.as_str()),
            Part::Lit(_) => None,
        })
    }

    /// Renders with a lookup; unknown variables render as empty (validation rejects them first).
    pub fn render<'a>(&'a self, mut lookup: impl FnMut(&str) -> Option<&'a str>) -> String {
        let mut out = String::new();
        self.render_into(&mut out, |v| lookup(v));
        out
    }

    pub fn render_into<'a>(
        &'a self,
        out: &mut String,
        mut lookup: impl FnMut(&str) -> Option<&'a str>,
    ) {
        for p in &self.parts {
            match p {
                Part::Lit(s) => out.push_str(s),
                Part::Var(v) => out.push_str(lookup(v).unwrap_or("")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_literals_and_vars() {
        let t = Template::parse("/items/{{ id }}?u={{users.name}}").unwrap();
        assert_eq!(
            t.parts,
            vec![
                Part::Lit("/items/".into()),
                Part::Var("id".into()),
                Part::Lit("?u=".into()),
                Part::Var("users.name".into())
            ]
        );
        assert!(!t.is_static());
        assert_eq!(
            t.render(|v| if v == "id" { Some("7") } else { Some("ann") }),
            "/items/7?u=ann"
        );
    }

    #[test]
    fn unclosed_braces_are_an_error() {
        assert!(Template::parse("/a/{{id")
            .unwrap_err()
            .to_string()
            .contains("unclosed"));
        assert!(Template::parse("{{}}").is_err());
        assert!(Template::parse("{{a b}}").is_err());
    }

    /// The texts are what users see (with the spec position in front), so they are pinned here.
    #[test]
    fn error_texts_are_the_user_messages() {
        let text = |s: &str| Template::parse(s).unwrap_err().to_string();
        assert_eq!(text("/a/{{id"), r#"unclosed `{{` at byte 3 of "/a/{{id""#);
        assert_eq!(text("x{{ }}"), r#"empty `{{}}` in "x{{ }}""#);
        assert_eq!(
            text("{{a b}}"),
            "`a b` is not a variable name (letters, digits, `_`, `-`, `.`)"
        );
    }
}
