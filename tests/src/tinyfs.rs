//! A small real filesystem for fault tests: a tmpfs of a few hundred KiB that a test fills, so
//! writes on it fail with ENOSPC as on a full disk.
//!
//! The tmpfs is mounted in a private mount namespace (`unshare -m`; `unshare -Urm`, a user
//! namespace, without root) held open by a `sleep`. Commands run inside it through `nsenter`
//! ([`TinyFs::command`]); this test process reaches it through `/proc/<holder>/root`
//! ([`TinyFs::outside`]). Nothing is mounted on the host: the mount goes away with the holder
//! and whatever was started inside it, even when a test is killed.
//!
//! [`TinyFs::mount`] gives `None` with a `SKIPPED:` line when this machine cannot mount one
//! (no `unshare`, no privilege, no user namespaces), or fails when `HERD_REQUIRE_MOUNT` is
//! set (as `.ci/run` does).
//!
//! Why a namespace rather than `mount` on the host with a guard that unmounts on drop: a test
//! killed outright (SIGKILL, a CI timeout) runs no `Drop`, and a host mount would outlive it.

use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub struct TinyFs {
    holder: Child,
    /// Whether the holder is in a user namespace of its own (entered with `nsenter -U`).
    userns: bool,
    /// The mount point, as processes inside the namespace see it.
    dir: tempfile::TempDir,
}

const SCRIPT: &str =
    "mount -t tmpfs -o size=\"$1\"k,mode=0777 herd-tinyfs \"$0\" && echo mounted && exec sleep 86400";

impl TinyFs {
    /// A tmpfs of `kib` KiB (see the module docs for when it is `None`).
    pub fn mount(kib: u64) -> Option<TinyFs> {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut why = Vec::new();
        for (flags, userns) in [(&["-m"][..], false), (&["-U", "-r", "-m"][..], true)] {
            let spawned = Command::new("unshare")
                .args(flags)
                .args(["--propagation", "private", "sh", "-c", SCRIPT])
                .arg(dir.path())
                .arg(kib.to_string())
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn();
            let mut holder = match spawned {
                Ok(c) => c,
                Err(e) => {
                    why.push(format!("unshare: {e}"));
                    break;
                }
            };
            let mut line = String::new();
            if let Some(out) = holder.stdout.take() {
                let _ = std::io::BufReader::new(out).read_line(&mut line);
            }
            if line.trim() == "mounted" {
                return Some(TinyFs {
                    holder,
                    userns,
                    dir,
                });
            }
            let mut err = String::new();
            if let Some(mut e) = holder.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            let _ = holder.kill();
            let _ = holder.wait();
            why.push(format!("unshare {}: {}", flags.join(" "), err.trim()));
        }
        let why = why.join("; ");
        assert!(
            std::env::var_os("HERD_REQUIRE_MOUNT").is_none(),
            "HERD_REQUIRE_MOUNT is set but a small tmpfs cannot be mounted: {why}"
        );
        eprintln!("SKIPPED: cannot mount a small tmpfs for the full-disk test ({why})");
        None
    }

    /// The mount point as processes started with [`TinyFs::command`] see it.
    pub fn inside(&self) -> &Path {
        self.dir.path()
    }

    /// The mount point as this process reaches it.
    pub fn outside(&self) -> PathBuf {
        let inside = self.dir.path().strip_prefix("/").unwrap_or(self.dir.path());
        PathBuf::from(format!("/proc/{}/root", self.holder.id())).join(inside)
    }

    /// `program` to be run inside the namespace, where the tmpfs is mounted.
    pub fn command(&self, program: &Path) -> tokio::process::Command {
        let mut c = tokio::process::Command::new("nsenter");
        c.arg("-t").arg(self.holder.id().to_string()).arg("-m");
        if self.userns {
            c.args(["-U", "--preserve-credentials"]);
        }
        c.arg("--").arg(program);
        c
    }

    /// Fills the tmpfs until a write fails with ENOSPC, then frees `leave_kib` KiB of it.
    /// Returns the filler (as this process sees it).
    pub fn fill(&self, leave_kib: u64) -> PathBuf {
        let path = self.outside().join(".filler");
        let mut f = std::fs::File::create(&path).expect("filler");
        let chunk = [0u8; 4096];
        let err = loop {
            if let Err(e) = f.write_all(&chunk) {
                break e;
            }
        };
        assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "filling: {err}");
        let len = f.metadata().expect("filler size").len();
        f.set_len(len.saturating_sub(leave_kib * 1024) / 4096 * 4096)
            .expect("free some");
        path
    }

    /// Free KiB on the tmpfs.
    pub fn free_kib(&self) -> u64 {
        let c = std::ffi::CString::new(self.outside().as_os_str().as_encoded_bytes())
            .expect("a path without NUL");
        // SAFETY: statvfs fills the zeroed struct we own from a NUL-terminated path.
        let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
        if unsafe { libc::statvfs(c.as_ptr(), &mut s) } != 0 {
            return 0;
        }
        s.f_bavail as u64 * s.f_frsize as u64 / 1024
    }
}

impl Drop for TinyFs {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}
