//! Specs and their files from a folder on this machine: `herd run`, `herd validate`,
//! `herd agent --standalone` and the inbox. A file a spec names must really be inside the
//! spec's folder — its resolved path, not only its spelling, so a symbolic link cannot lead
//! out — and a regular file (not `/dev/zero`, not a FIFO), read up to its size limit.

use std::path::{Path, PathBuf};

use super::{Source, SourceError, MAX_FILES};

pub struct LocalSource {
    spec: PathBuf,
    /// Where the files the spec names are looked up (the spec's folder).
    dir: PathBuf,
    origin: String,
}

impl LocalSource {
    /// The spec at `spec`, its files relative to its own folder.
    pub fn new(spec: &Path) -> LocalSource {
        // `spec.yaml` has the parent "": its folder is the current one.
        let dir = match spec.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        LocalSource::with_dir(spec, dir)
    }

    /// The spec at `spec`, its files relative to `dir` (the inbox moves a spec it took, but its
    /// files stay where they were written).
    pub fn with_dir(spec: &Path, dir: PathBuf) -> LocalSource {
        LocalSource {
            spec: spec.to_path_buf(),
            dir,
            origin: spec.display().to_string(),
        }
    }

    /// Names the spec by where it came from rather than where it is now.
    pub fn origin_as(mut self, origin: String) -> LocalSource {
        self.origin = origin;
        self
    }

    /// `path` below the folder, by its real location too: a symbolic link cannot reach out.
    fn resolve(&self, path: &str) -> Result<PathBuf, SourceError> {
        let p = self.dir.join(path);
        let root = self
            .dir
            .canonicalize()
            .map_err(|e| SourceError::Unusable(format!("{}: {e}", self.dir.display())))?;
        let real = p
            .canonicalize()
            .map_err(|e| SourceError::Unusable(format!("{path}: {e}")))?;
        if !real.starts_with(&root) {
            return Err(SourceError::Unusable(format!(
                "{path:?} leads outside the spec's folder"
            )));
        }
        Ok(real)
    }
}

/// A regular file's bytes, at most `limit` of them.
fn read_limited(p: &Path, limit: u64) -> Result<Vec<u8>, SourceError> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    // Non-blocking, so a FIFO cannot hold the read up; what it is gets checked on the open file.
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(p)
        .map_err(|e| SourceError::Unusable(format!("{}: {e}", p.display())))?;
    let meta = f
        .metadata()
        .map_err(|e| SourceError::Unusable(format!("{}: {e}", p.display())))?;
    if !meta.is_file() {
        return Err(SourceError::Unusable(format!(
            "{} is not a regular file",
            p.display()
        )));
    }
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
                // Links are not followed: they could lead anywhere.
                if kind.is_symlink() {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::{build, BundleError, Overrides};
    use messages::spec::SpecLimits;

    fn spec_with_data(dir: &Path, file: &str) -> PathBuf {
        let spec = dir.join("spec.yaml");
        std::fs::write(
            &spec,
            format!(
                "name: files\ntarget: http://127.0.0.1:1\ndata:\n  users: {{file: {file:?}}}\nscenario:\n  - request: GET /{{{{users.name}}}}\nload: {{executor: constant-vus, vus: 1, duration: 1s}}\n"
            ),
        )
        .expect("spec");
        spec
    }

    async fn refusal(dir: &Path, file: &str) -> String {
        let spec = spec_with_data(dir, file);
        match build(
            &LocalSource::new(&spec),
            &Overrides::default(),
            &SpecLimits::DEFAULT,
        )
        .await
        {
            Err(e @ BundleError::File { .. }) => e.to_string(),
            other => panic!("{file}: expected a refused file, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_spec_reaches_only_regular_files_in_its_own_folder() {
        let outside = tempfile::tempdir().expect("dir");
        std::fs::write(
            outside.path().join("secret.csv"),
            "name\ntop-secret-value\n",
        )
        .expect("w");
        let work = tempfile::tempdir().expect("dir");
        let dir = work.path().join("specs");
        std::fs::create_dir(&dir).expect("dir");
        std::fs::write(dir.join("users.csv"), "name\nada\n").expect("w");
        let ok = build(
            &LocalSource::new(&spec_with_data(&dir, "users.csv")),
            &Overrides::default(),
            &SpecLimits::DEFAULT,
        )
        .await
        .expect("a file beside the spec");
        assert_eq!(ok.data[0].bytes, b"name\nada\n");

        let e = refusal(&dir, "/etc/passwd").await;
        assert!(e.contains("relative path below the spec"), "{e}");
        let e = refusal(&dir, "../secret.csv").await;
        assert!(e.contains("must not leave the spec's folder"), "{e}");
        std::os::unix::fs::symlink(outside.path().join("secret.csv"), dir.join("link.csv"))
            .expect("symlink");
        let e = refusal(&dir, "link.csv").await;
        assert!(e.contains("leads outside the spec's folder"), "{e}");
        std::os::unix::fs::symlink("/dev/zero", dir.join("zero.csv")).expect("symlink");
        let e = refusal(&dir, "zero.csv").await;
        assert!(e.contains("leads outside"), "{e}");
        let fifo = dir.join("pipe.csv");
        let c = std::ffi::CString::new(fifo.to_string_lossy().as_bytes()).expect("path");
        // SAFETY: mkfifo on a path of our own temp dir.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = refusal(&dir, "pipe.csv").await;
        assert!(e.contains("not a regular file"), "{e}");
        std::fs::create_dir(dir.join("sub")).expect("dir");
        let e = refusal(&dir, "sub").await;
        assert!(e.contains("not a regular file"), "{e}");
        for e in [
            refusal(&dir, "../secret.csv").await,
            refusal(&dir, "link.csv").await,
        ] {
            assert!(
                !e.contains("top-secret-value"),
                "no contents in errors: {e}"
            );
        }
    }
}
