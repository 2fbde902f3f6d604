//! Files that are whole or absent, never torn — herd's one implementation of that, used for
//! result files, `notifications.jsonl`, the serve state folder and the coordinator's keys.
//! [`write_atomic`] (and [`write_private`], owner-only): a temp file in the same folder,
//! fsync'd, renamed over the final name, the folder fsync'd — a reader sees the old file or the
//! new one, and after a crash or a full disk never half of one. [`append_line`]: one whole
//! line, fsync'd, or nothing. A full disk, an I/O error or a permission problem is a
//! [`FileError`] naming the file, the step and the cause.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// What was being done to a file when it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    CreateFolder,
    CreateTemp,
    Open,
    Write,
    Sync,
    Rename,
    Remove,
    SyncFolder,
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Step::CreateFolder => "creating the folder",
            Step::CreateTemp => "creating a temp file for",
            Step::Open => "opening",
            Step::Write => "writing",
            Step::Sync => "syncing",
            Step::Rename => "renaming into place",
            Step::Remove => "removing",
            Step::SyncFolder => "syncing the folder entry of",
        })
    }
}

/// A file could not be written whole: which file (its final name), at which step, and why.
#[derive(Debug, thiserror::Error)]
#[error("{step} {}: {source}", path.display())]
pub struct FileError {
    pub path: PathBuf,
    pub step: Step,
    #[source]
    pub source: io::Error,
}

impl FileError {
    pub fn at(path: &Path, step: Step) -> impl FnOnce(io::Error) -> FileError + '_ {
        move |source| FileError {
            path: path.to_path_buf(),
            step,
            source,
        }
    }
}

fn folder_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Makes `dir`'s entries (a file created, renamed or removed in it) durable.
pub fn sync_folder(dir: &Path) -> io::Result<()> {
    match File::open(dir)?.sync_all() {
        // A few filesystems cannot sync a folder; there is nothing more to do on them.
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(()),
        r => r,
    }
}

/// Writes `bytes` to `path` atomically: to a temp file beside it (`.<name>.<random>.tmp`),
/// fsync'd, renamed over `path`, then the folder fsync'd. On any failure the temp file is
/// removed and `path` is untouched: it keeps its old content, or stays absent. The file is
/// created as `fs::write` would (0666 less the umask), not with tempfile's 0600, so results
/// stay readable by whoever reads them today.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), FileError> {
    write_atomic_with(path, 0o666, |f| f.write_all(bytes))
}

/// [`write_atomic`] for a secret (the coordinator's keys): owner-only (0600) from the moment
/// the temp file exists, so no other user can open it even before the rename.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), FileError> {
    write_atomic_with(path, 0o600, |f| f.write_all(bytes))
}

/// [`write_atomic`] with the file mode and the writing step given (tests inject a failing one).
fn write_atomic_with(
    path: &Path,
    mode: u32,
    fill: impl FnOnce(&mut File) -> io::Result<()>,
) -> Result<(), FileError> {
    let dir = folder_of(path);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // A random name: two writers of the same file never share a temp file.
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .permissions(std::fs::Permissions::from_mode(mode))
        .tempfile_in(dir)
        .map_err(FileError::at(path, Step::CreateTemp))?;
    // Each `?` below drops `tmp`, which removes the temp file.
    fill(tmp.as_file_mut()).map_err(FileError::at(path, Step::Write))?;
    tmp.as_file()
        .sync_all()
        .map_err(FileError::at(path, Step::Sync))?;
    tmp.persist(path)
        .map_err(|e| FileError::at(path, Step::Rename)(e.error))?;
    sync_folder(dir).map_err(FileError::at(path, Step::SyncFolder))
}

/// Removes `path` if it is there, durably.
pub fn remove(path: &Path) -> Result<(), FileError> {
    match std::fs::remove_file(path) {
        Ok(()) => sync_folder(folder_of(path)).map_err(FileError::at(path, Step::SyncFolder)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(FileError::at(path, Step::Remove)(e)),
    }
}

/// Appends `line` and a newline to `path` (created if missing) in one write, then fsyncs: the
/// file gains the whole line or nothing. A write or sync that fails is cut back off, so the
/// next line does not join a torn one; a last line left unterminated (a crash) is closed first.
pub fn append_line(path: &Path, line: &str) -> Result<(), FileError> {
    append_line_with(path, line, |f, bytes| f.write_all(bytes))
}

/// [`append_line`] with the writing step given (tests inject a failing one).
fn append_line_with(
    path: &Path,
    line: &str,
    write: impl FnOnce(&mut File, &[u8]) -> io::Result<()>,
) -> Result<(), FileError> {
    let open = |create| {
        OpenOptions::new()
            .read(true)
            .append(true)
            .create(create)
            .open(path)
    };
    let (mut f, created) = match open(false) {
        Ok(f) => (f, false),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            (open(true).map_err(FileError::at(path, Step::Open))?, true)
        }
        Err(e) => return Err(FileError::at(path, Step::Open)(e)),
    };
    let len = f.metadata().map_err(FileError::at(path, Step::Open))?.len();
    let mut text = String::with_capacity(line.len() + 2);
    if len > 0 {
        let mut last = [0u8; 1];
        f.read_exact_at(&mut last, len - 1)
            .map_err(FileError::at(path, Step::Open))?;
        if last[0] != b'\n' {
            text.push('\n');
        }
    }
    text.push_str(line);
    text.push('\n');
    let done = write(&mut f, text.as_bytes())
        .map_err(FileError::at(path, Step::Write))
        .and_then(|()| f.sync_data().map_err(FileError::at(path, Step::Sync)));
    if let Err(e) = done {
        // Best effort: if even this fails, the next append closes the torn line.
        let _ = f.set_len(len).and_then(|()| f.sync_data());
        return Err(e);
    }
    if created {
        sync_folder(folder_of(path)).map_err(FileError::at(path, Step::SyncFolder))?;
    }
    Ok(())
}

#[cfg(test)]
#[path = "file_tests.rs"]
pub(crate) mod tests;
