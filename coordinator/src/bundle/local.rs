//! Specs and their files from a folder on this machine: `herd run`, `herd agent --standalone`
//! and the inbox.

use std::path::{Path, PathBuf};

use super::{PathPolicy, Source, SourceError, MAX_FILES};

pub struct LocalSource {
    spec: PathBuf,
    /// Where the files the spec names are looked up (the spec's folder).
    dir: PathBuf,
    origin: String,
    policy: PathPolicy,
}

impl LocalSource {
    /// The spec at `spec`, its files relative to its own folder.
    pub fn new(spec: &Path, policy: PathPolicy) -> LocalSource {
        let dir = spec.parent().unwrap_or(Path::new(".")).to_path_buf();
        LocalSource::with_dir(spec, dir, policy)
    }

    /// The spec at `spec`, its files relative to `dir` (the inbox moves a spec it took, but its
    /// files stay where they were written).
    pub fn with_dir(spec: &Path, dir: PathBuf, policy: PathPolicy) -> LocalSource {
        LocalSource {
            spec: spec.to_path_buf(),
            dir,
            origin: spec.display().to_string(),
            policy,
        }
    }

    /// Names the spec by where it came from rather than where it is now.
    pub fn origin_as(mut self, origin: String) -> LocalSource {
        self.origin = origin;
        self
    }

    /// `path` below the folder; under [`PathPolicy::Confined`] its real location must be too,
    /// so a symbolic link cannot reach out.
    fn resolve(&self, path: &str) -> Result<PathBuf, SourceError> {
        let p = self.dir.join(path);
        if self.policy == PathPolicy::Confined {
            let root = self
                .dir
                .canonicalize()
                .map_err(|e| SourceError::Unusable(format!("{}: {e}", self.dir.display())))?;
            let real = p
                .canonicalize()
                .map_err(|e| SourceError::Unusable(format!("{}: {e}", p.display())))?;
            if !real.starts_with(&root) {
                return Err(SourceError::Unusable(format!(
                    "{path:?} leads outside the spec's folder"
                )));
            }
        }
        Ok(p)
    }
}

fn read_limited(p: &Path, limit: u64) -> Result<Vec<u8>, SourceError> {
    use std::io::Read;
    let f = std::fs::File::open(p)
        .map_err(|e| SourceError::Unusable(format!("{}: {e}", p.display())))?;
    let mut out = Vec::new();
    f.take(limit.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| SourceError::Unusable(format!("{}: {e}", p.display())))?;
    if out.len() as u64 > limit {
        return Err(SourceError::Unusable(format!(
            "{} is larger than {limit} bytes",
            p.display()
        )));
    }
    Ok(out)
}

impl Source for LocalSource {
    fn origin(&self) -> &str {
        &self.origin
    }

    fn policy(&self) -> PathPolicy {
        self.policy
    }

    async fn spec_text(&self, limit: u64) -> Result<String, SourceError> {
        use std::io::Read;
        let io = |e: std::io::Error| SourceError::Unusable(e.to_string());
        let mut out = Vec::new();
        std::fs::File::open(&self.spec)
            .map_err(io)?
            .take(limit.saturating_add(1))
            .read_to_end(&mut out)
            .map_err(io)?;
        if out.len() as u64 > limit {
            return Err(SourceError::Unusable(format!("larger than {limit} bytes")));
        }
        String::from_utf8(out).map_err(|_| SourceError::Unusable("not UTF-8 text".into()))
    }

    async fn file(&self, path: &str, limit: u64) -> Result<Vec<u8>, SourceError> {
        read_limited(&self.resolve(path)?, limit)
    }

    async fn folder(
        &self,
        path: &str,
        limit: u64,
    ) -> Result<Option<Vec<(String, Vec<u8>)>>, SourceError> {
        let root = self.dir.join(path);
        if !root.is_dir() {
            return Ok(None);
        }
        let root = self.resolve(path)?;
        let unusable =
            |p: &Path, e: std::io::Error| SourceError::Unusable(format!("{}: {e}", p.display()));
        let mut out = Vec::new();
        let mut left = limit;
        let mut stack = vec![root.clone()];
        while let Some(dir) = stack.pop() {
            for e in std::fs::read_dir(&dir).map_err(|e| unusable(&dir, e))? {
                let e = e.map_err(|e| unusable(&dir, e))?;
                let p = e.path();
                if e.file_name().to_string_lossy().starts_with('.') {
                    continue;
                }
                let kind = e.file_type().map_err(|e| unusable(&p, e))?;
                // Links are not followed under confinement: they could lead anywhere.
                if kind.is_symlink() && self.policy == PathPolicy::Confined {
                    return Err(SourceError::Unusable(format!(
                        "{} is a symbolic link; a script folder must hold plain files",
                        p.display()
                    )));
                }
                if p.is_dir() {
                    stack.push(p);
                    continue;
                }
                if out.len() >= MAX_FILES {
                    return Err(SourceError::Unusable(format!(
                        "{path} holds more than {MAX_FILES} files"
                    )));
                }
                let bytes = read_limited(&p, left)?;
                left -= bytes.len() as u64;
                if let Ok(rel) = p.strip_prefix(&root) {
                    let rel: Vec<String> = rel
                        .components()
                        .map(|c| c.as_os_str().to_string_lossy().into_owned())
                        .collect();
                    out.push((rel.join("/"), bytes));
                }
            }
        }
        out.sort();
        Ok(Some(out))
    }
}
