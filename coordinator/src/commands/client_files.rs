//! The files a spec names, for `herd submit` to send with it: the spec is read as the server
//! will read it (`bundle::build` on its own folder), and every file that reading asks for is
//! kept with its path relative to the spec.

use std::cell::RefCell;
use std::path::Path;

use crate::bundle::{self, local::LocalSource, Overrides, Source, SourceError};

struct Recording {
    inner: LocalSource,
    seen: RefCell<Vec<(String, Vec<u8>)>>,
}

impl Source for Recording {
    fn origin(&self) -> &str {
        self.inner.origin()
    }

    async fn spec_text(&self, limit: u64) -> Result<String, SourceError> {
        self.inner.spec_text(limit).await
    }

    async fn file(&self, path: &str, limit: u64) -> Result<Vec<u8>, SourceError> {
        let bytes = self.inner.file(path, limit).await?;
        self.seen
            .borrow_mut()
            .push((path.to_string(), bytes.clone()));
        Ok(bytes)
    }

    async fn folder(
        &self,
        path: &str,
        limit: u64,
    ) -> Result<Option<Vec<(String, Vec<u8>)>>, SourceError> {
        let files = self.inner.folder(path, limit).await?;
        if let Some(files) = &files {
            let mut seen = self.seen.borrow_mut();
            for (rel, bytes) in files {
                seen.push((
                    format!("{}/{rel}", path.trim_end_matches('/')),
                    bytes.clone(),
                ));
            }
        }
        Ok(files)
    }
}

/// The files `spec` names, as (path relative to the spec, bytes). A spec this herd cannot read
/// names none here: the server judges it and says why.
pub async fn named_files(spec: &Path) -> Vec<(String, Vec<u8>)> {
    let rec = Recording {
        inner: LocalSource::new(spec),
        seen: RefCell::new(Vec::new()),
    };
    // The server's limits may be wider than the defaults: a spec refused here still goes.
    let _ = bundle::build(
        &rec,
        &Overrides::default(),
        &messages::spec::SpecLimits::DEFAULT,
    )
    .await;
    let mut seen = rec.seen.into_inner();
    seen.sort_by(|a, b| a.0.cmp(&b.0));
    seen.dedup_by(|a, b| a.0 == b.0);
    seen
}
