//! `SpecBundle`: a spec with every file it names, read, checked and ready to travel in an
//! Assign. One builder for every way a spec arrives — `herd run` and the inbox read a folder
//! ([`local::LocalSource`]), S3 drops read a bucket prefix (`aws::spec_source`) — so the path
//! rules, the script forms (file, folder, `.zip`) and the size limits are the same everywhere.
//!
//! Limits (a bundle over them is refused whole, with the limit named):
//! - [`MAX_SPEC_BYTES`]: the spec text.
//! - [`MAX_BUNDLE_BYTES`]: all data and script files together, so that the Assign carrying
//!   them fits the wire's [`messages::wire::MAX_MESSAGE_BYTES`].
//! - [`MAX_FILES`]: files in a script folder or zip; [`zip::MAX_RATIO`]: how far a zip entry,
//!   or the whole archive, may unpack.
//! - The spec itself is read within the [`SpecLimits`] `build` is given (the defaults for
//!   `herd run`, `herd validate` and `herd agent --standalone`; `[limits]` for `herd serve`).

pub mod local;
pub mod zip;

use messages::spec::{parse_spec_with, Spec, SpecLimits, SCRIPT_FILE};
use messages::wire::DataFile;

/// Largest spec text read.
pub const MAX_SPEC_BYTES: u64 = 1 << 20;
/// Largest total of the files a spec names (its Assign must stay under the 8 MiB wire limit).
pub const MAX_BUNDLE_BYTES: u64 = 7 << 20;
/// Most files in one script folder or zip.
pub const MAX_FILES: usize = 1_000;

/// A spec and its files, checked.
#[derive(Debug, Clone)]
pub struct SpecBundle {
    /// The spec as run (overrides applied).
    pub spec: Spec,
    /// The spec as written.
    pub text: String,
    /// Data files by source name; a script folder or zip as `@script/<path>` entries.
    pub data: Vec<DataFile>,
}

/// What a request may change in the spec it names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    pub agents: Option<u32>,
    pub target_url: Option<String>,
}

/// Why a bundle could not be made.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// The spec is invalid: every problem, each `origin:line:col: path: message`.
    #[error("{}", .0.join("\n"))]
    Invalid(Vec<String>),
    /// A file the spec names cannot be used.
    #[error("{origin}: {what}: {reason}")]
    File {
        origin: String,
        /// `data.users`, `script`, or the spec itself.
        what: String,
        reason: String,
    },
    /// Worth another try later (storage unreachable).
    #[error("{origin}: {reason}")]
    Transient { origin: String, reason: String },
}

impl BundleError {
    pub fn is_transient(&self) -> bool {
        matches!(self, BundleError::Transient { .. })
    }

    /// Every problem, one line each.
    pub fn lines(&self) -> Vec<String> {
        match self {
            BundleError::Invalid(lines) => lines.clone(),
            other => vec![other.to_string()],
        }
    }
}

/// Why a source could not give a file.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// Permanent: missing, unreadable, not allowed, too large.
    #[error("{0}")]
    Unusable(String),
    /// Worth another try later.
    #[error("{0}")]
    Transient(String),
}

/// Where a spec and its files are read from. Paths are relative to the spec's folder, `/`
/// separated, and already checked by [`check_path`]; a source also keeps what they resolve
/// to inside the folder (no links out, regular files only).
#[allow(async_fn_in_trait)]
pub trait Source {
    /// Names the spec in messages (`spec.yaml`, `inbox/a.yaml`, `s3://bucket/key`).
    fn origin(&self) -> &str;
    /// The spec text, at most `limit` bytes.
    async fn spec_text(&self, limit: u64) -> Result<String, SourceError>;
    /// One file, at most `limit` bytes.
    async fn file(&self, path: &str, limit: u64) -> Result<Vec<u8>, SourceError>;
    /// Every file below `path` as (relative path, bytes), or `None` when `path` is not a
    /// folder. At most [`MAX_FILES`] files and `limit` bytes in all.
    async fn folder(
        &self,
        path: &str,
        limit: u64,
    ) -> Result<Option<Vec<(String, Vec<u8>)>>, SourceError>;
}

/// A spec given as text (a pipeline event): it has no folder, so it may name no files.
pub struct InlineSource {
    pub text: String,
    pub origin: String,
}

impl Source for InlineSource {
    fn origin(&self) -> &str {
        &self.origin
    }

    async fn spec_text(&self, limit: u64) -> Result<String, SourceError> {
        if self.text.len() as u64 > limit {
            return Err(SourceError::Unusable(format!(
                "the spec is larger than {limit} bytes"
            )));
        }
        Ok(self.text.clone())
    }

    async fn file(&self, _path: &str, _limit: u64) -> Result<Vec<u8>, SourceError> {
        Err(SourceError::Unusable(
            "data files need a spec stored next to them (an S3 object or an inbox file)".into(),
        ))
    }

    async fn folder(
        &self,
        _path: &str,
        _limit: u64,
    ) -> Result<Option<Vec<(String, Vec<u8>)>>, SourceError> {
        Ok(None)
    }
}

/// Checks a path a spec names: relative, below the spec's own folder. The same rule for
/// `herd run`, the inbox and S3, so a spec that runs on a laptop runs the same in the shared
/// service — and a shared service never reads what a spec should not reach.
pub fn check_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("an empty path".into());
    }
    if path.starts_with('/') || path.starts_with('\\') || path.contains(':') {
        return Err(format!(
            "{path:?} must be a relative path below the spec's folder"
        ));
    }
    if path.split(['/', '\\']).any(|p| p == "..") {
        return Err(format!("{path:?} must not leave the spec's folder (`..`)"));
    }
    Ok(())
}

/// Reads the spec and every file it names from `source` within `limits`, applies `overrides`
/// (checked against the same limits), and checks paths and sizes.
pub async fn build(
    source: &impl Source,
    overrides: &Overrides,
    limits: &SpecLimits,
) -> Result<SpecBundle, BundleError> {
    let origin = source.origin().to_string();
    let unusable = |what: &str, e: SourceError| match e {
        SourceError::Transient(reason) => BundleError::Transient {
            origin: origin.clone(),
            reason,
        },
        SourceError::Unusable(reason) => BundleError::File {
            origin: origin.clone(),
            what: what.to_string(),
            reason,
        },
    };
    let text = source
        .spec_text(MAX_SPEC_BYTES)
        .await
        .map_err(|e| match e {
            SourceError::Unusable(reason) => {
                BundleError::Invalid(vec![format!("{origin}: cannot read: {reason}")])
            }
            transient => unusable("spec", transient),
        })?;
    let mut spec = parse_spec_with(&text, limits).map_err(|e| {
        BundleError::Invalid(e.issues().iter().map(|i| format!("{origin}:{i}")).collect())
    })?;
    if let Some(n) = overrides.agents {
        limits.check_agents(n.into()).map_err(|why| {
            BundleError::Invalid(vec![format!("{origin}: overrides.agents: {why}")])
        })?;
        spec.agents = messages::spec::Agents::Count(n);
    }
    if let Some(u) = &overrides.target_url {
        spec.target.url = u.clone();
        spec.target.builtin = false;
    }
    let mut data = Vec::new();
    let mut budget = MAX_BUNDLE_BYTES;
    for (name, file) in spec.files() {
        let what = if name == SCRIPT_FILE {
            "script".to_string()
        } else {
            format!("data.{name}")
        };
        check_path(&file).map_err(|reason| BundleError::File {
            origin: origin.clone(),
            what: what.clone(),
            reason,
        })?;
        let too_large = || {
            BundleError::File {
            origin: origin.clone(),
            what: what.clone(),
            reason: format!(
                "the spec's files come to more than {} MiB in all (the limit, so its Assign fits a message)",
                MAX_BUNDLE_BYTES >> 20
            ),
        }
        };
        let mut entries = Vec::new();
        if name == SCRIPT_FILE {
            if let Some(files) = source
                .folder(&file, budget)
                .await
                .map_err(|e| unusable(&what, e))?
            {
                entries.extend(
                    files
                        .into_iter()
                        .map(|(rel, b)| (format!("{name}/{rel}"), b)),
                );
            } else if file.ends_with(".zip") {
                let bytes = source
                    .file(&file, budget)
                    .await
                    .map_err(|e| unusable(&what, e))?;
                let files = zip::read(&bytes, budget).map_err(|reason| BundleError::File {
                    origin: origin.clone(),
                    what: what.clone(),
                    reason: format!("{file}: {reason}"),
                })?;
                entries.extend(
                    files
                        .into_iter()
                        .map(|(rel, b)| (format!("{name}/{rel}"), b)),
                );
            }
        }
        if entries.is_empty() {
            let bytes = source
                .file(&file, budget)
                .await
                .map_err(|e| unusable(&what, e))?;
            entries.push((name.clone(), bytes));
        }
        for (name, bytes) in entries {
            budget = budget
                .checked_sub(bytes.len() as u64)
                .ok_or_else(too_large)?;
            data.push(DataFile { name, bytes });
        }
    }
    // A runner spec's load shape and plan, as its agents would judge them.
    if spec.runner.is_some() {
        let files: std::collections::BTreeMap<String, Vec<u8>> = data
            .iter()
            .map(|d| (d.name.clone(), d.bytes.clone()))
            .collect();
        // A k6 script's own options, where the spec leaves the load or thresholds to it.
        agent::runners::apply_script_options(&mut spec, &files, limits).map_err(|e| match e {
            agent::runners::RunnerError::Options(lines) => {
                BundleError::Invalid(lines.iter().map(|l| format!("{origin}: {l}")).collect())
            }
            e => BundleError::Invalid(vec![format!("{origin}: {e}")]),
        })?;
        agent::runners::check_plan(&spec, &files)
            .map_err(|e| BundleError::Invalid(vec![format!("{origin}: {e}")]))?;
    }
    // What an agent would refuse when it compiles the scenario (a `{{users.nmae}}` its CSV
    // has no column for, a bad regex) is refused here, before anything starts.
    if spec.runner.is_none() {
        let files: std::collections::BTreeMap<String, Vec<u8>> = data
            .iter()
            .map(|d| (d.name.clone(), d.bytes.clone()))
            .collect();
        // The built-in target's URL is known only once it listens.
        let placeholder;
        let checked = if spec.target.builtin && spec.target.url.is_empty() {
            let mut s = spec.clone();
            s.target.url = "http://127.0.0.1".into();
            placeholder = s;
            &placeholder
        } else {
            &spec
        };
        agent::scenario::compile::check(checked, &files)
            .map_err(|e| BundleError::Invalid(vec![format!("{origin}: {e}")]))?;
    }
    Ok(SpecBundle { spec, text, data })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inline(text: &str) -> InlineSource {
        InlineSource {
            text: text.to_string(),
            origin: "event".into(),
        }
    }

    const SPEC: &str = "name: t\ntarget: http://x\nscenario: [{request: GET /}]\nload: {executor: constant-vus, vus: 200000, duration: 1s}\n";

    #[tokio::test]
    async fn specs_are_read_within_the_limits_build_is_given() {
        let none = Overrides::default();
        let e = build(&inline(SPEC), &none, &SpecLimits::DEFAULT)
            .await
            .expect_err("over the default");
        assert_eq!(
            e.lines(),
            vec!["event:4:37: load.vus: 200000 is more than the limit of 100000 VUs (raise [limits] vus in the serve config)"]
        );
        let raised = SpecLimits {
            vus: 200_000,
            ..SpecLimits::DEFAULT
        };
        let b = build(&inline(SPEC), &none, &raised).await.expect("raised");
        assert_eq!(messages::split::max_vus(&b.spec.load.executor), 200_000);
    }

    #[tokio::test]
    async fn an_agents_override_is_checked_against_the_same_limit() {
        let ok = SPEC.replace("200000", "1");
        let over = Overrides {
            agents: Some(20_000),
            ..Overrides::default()
        };
        let e = build(&inline(&ok), &over, &SpecLimits::DEFAULT)
            .await
            .expect_err("over");
        assert_eq!(
            e.lines(),
            vec!["event: overrides.agents: 20000 is more than the limit of 10000 agents (raise [limits] agents in the serve config)"]
        );
        let raised = SpecLimits {
            agents: 20_000,
            ..SpecLimits::DEFAULT
        };
        let b = build(&inline(&ok), &over, &raised).await.expect("raised");
        assert_eq!(b.spec.agents.total(), Some(20_000));
    }

    #[test]
    fn paths_stay_below_the_spec() {
        for ok in ["users.csv", "data/users.csv", "script.zip", "a/./b.js"] {
            assert_eq!(check_path(ok), Ok(()), "{ok}");
        }
        for bad in [
            "/etc/passwd",
            "../x.csv",
            "a/../../x",
            "C:\\x",
            "\\\\host\\x",
            "",
        ] {
            assert!(check_path(bad).is_err(), "{bad}");
        }
    }
}
