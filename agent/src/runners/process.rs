//! One tool process, tool-agnostic: start it, tail its output file while it runs, stop it
//! gracefully on Stop (SIGINT, then SIGTERM, then SIGKILL) and still read what it wrote, and
//! bring back its exit status and last printed lines when it fails.

use std::collections::VecDeque;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::watch;

use super::feed::Feed;
use super::{Command, Runner, RunnerError};

/// How many of the tool's last stdout/stderr lines a failure carries: enough for a stack
/// trace's head, short enough for a run result.
const LAST_LINES: usize = 20;

/// The last lines the tool printed, kept for the run result when it fails.
#[derive(Clone, Default)]
struct LastLines(Arc<Mutex<VecDeque<String>>>);

impl LastLines {
    /// Reads `stream` to its end in the background; the pipe must be drained anyway, or a
    /// chatty tool blocks on a full pipe.
    fn collect(&self, stream: Box<dyn AsyncRead + Unpin + Send>) {
        let last = self.0.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stream).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                if let Ok(mut t) = last.lock() {
                    if t.len() >= LAST_LINES {
                        t.pop_front();
                    }
                    t.push_back(l);
                }
            }
        });
    }

    fn text(&self) -> String {
        self.0
            .lock()
            .map(|t| t.iter().cloned().collect::<Vec<_>>().join("\n"))
            .unwrap_or_default()
    }
}

/// Signals the tool's whole process group: the tool leads its own group, so what it started
/// (JMeter's `java` under its launcher script, Locust's workers) gets the signal too.
fn signal(pid: Option<u32>, sig: i32) {
    if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
        // SAFETY: signalling the process group of the tool this agent started.
        unsafe {
            libc::kill(-pid, sig);
        }
    }
}

/// Kills the tool's process group when dropped: however `drive` ends — done, failed, or this
/// agent's task dropped — nothing the tool started keeps loading the target.
struct GroupGuard(Option<u32>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        signal(self.0, libc::SIGKILL);
    }
}

/// `signal` from the kernel to the child `cmd` starts if this process dies without stopping
/// it (SIGKILL, a crash): a tool outliving its agent, or an agent outliving `herd run`, would
/// keep loading with nobody counting. (Linux; elsewhere nothing.) The signal follows the
/// thread that forked: callers spawn from a thread that lives as long as the process.
pub fn on_parent_death(cmd: &mut tokio::process::Command, signal: i32) {
    #[cfg(target_os = "linux")]
    {
        let parent = std::process::id() as libc::pid_t;
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, signal) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The parent died before the prctl took: nobody will send the signal.
                if libc::getppid() != parent {
                    libc::kill(libc::getpid(), signal);
                }
                Ok(())
            });
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (cmd, signal);
}

/// Runs `cmd` to its end, feeding every line of its output file to `feed` through the
/// runner's reader.
pub(super) async fn drive(
    runner: &dyn Runner,
    cmd: Command,
    graceful_stop_ms: u64,
    stop: &mut watch::Receiver<bool>,
    feed: &mut Feed,
) -> Result<(), RunnerError> {
    let tool = runner.tool();
    let mut command = tokio::process::Command::new(&cmd.program);
    command
        .args(&cmd.args)
        .envs(cmd.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .current_dir(&cmd.cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    on_parent_death(&mut command, libc::SIGKILL);
    let mut child = command
        .spawn()
        .map_err(|e| RunnerError::Setup(format!("starting {}: {e}", cmd.program.display())))?;
    let pid = child.id();
    let _group = GroupGuard(pid);
    let last = LastLines::default();
    if let Some(s) = child.stdout.take() {
        last.collect(Box::new(s));
    }
    if let Some(s) = child.stderr.take() {
        last.collect(Box::new(s));
    }
    // The tool creates its output file (JMeter writes the CSV header only into a file it
    // created): wait for it, or for the tool to end without one.
    let mut early_status = None;
    let file = loop {
        match tokio::fs::File::open(&cmd.output).await {
            Ok(f) => break Some(f),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(RunnerError::Setup(format!("{}: {e}", cmd.output.display()))),
        }
        if let Some(s) = child
            .try_wait()
            .map_err(|e| RunnerError::Setup(format!("waiting for {tool}: {e}")))?
        {
            early_status = Some(s);
            break None;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
            _ = stop.changed() => {
                if *stop.borrow() {
                    signal(pid, libc::SIGINT);
                }
            }
        }
    };
    let Some(file) = file else {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let status = early_status.map_or("an unknown status".to_string(), |s| s.to_string());
        let tail = last.text();
        if *stop.borrow() {
            return Ok(());
        }
        return Err(RunnerError::Failed {
            tool,
            status: format!("{status} before writing any sample"),
            tail,
        });
    };
    let mut reader = BufReader::new(file);
    let mut pending = String::new();
    let mut status = None;
    let mut stopping: Option<Instant> = None;

    let mut term_sent = false;
    let mut kill_sent = false;
    let mut bad_lines = 0u64;
    let mut lines = runner.reader();
    let grace = Duration::from_millis(graceful_stop_ms) + Duration::from_secs(5);
    loop {
        // Read everything written so far.
        let mut chunk = String::new();
        let n = reader
            .read_line(&mut chunk)
            .await
            .map_err(|e| RunnerError::Setup(format!("reading {}: {e}", cmd.output.display())))?;
        if n > 0 {
            pending.push_str(&chunk);
            if pending.ends_with('\n') {
                let line = std::mem::take(&mut pending);
                match lines.events(&line) {
                    Ok(events) => events.into_iter().for_each(|e| feed.push(e)),
                    Err(e) => {
                        bad_lines += 1;
                        if bad_lines <= 3 {
                            tracing::warn!(tool, error = %e, "skipping an output line herd cannot read");
                        }
                    }
                }
            }
            continue;
        }
        if status.is_some() {
            // The tool is gone and its file is read to the end.
            break;
        }
        tokio::select! {
            s = child.wait() => {
                status = Some(s.map_err(|e| RunnerError::Setup(format!("waiting for {tool}: {e}")))?);
            }
            _ = stop.changed(), if stopping.is_none() => {
                if *stop.borrow() {
                    // k6 cannot pause constant-vus and the like once started, so a stop is
                    // SIGINT: in-flight requests (at most one per VU) are interrupted.
                    tracing::info!(tool, "stopping the tool gracefully (SIGINT)");
                    signal(pid, libc::SIGINT);
                    stopping = Some(Instant::now());
                }
            }
            _ = tokio::time::sleep(Duration::from_millis(50)) => {
                if let Some(since) = stopping {
                    if !term_sent && since.elapsed() > grace {
                        tracing::warn!(tool, "still running after the graceful stop: SIGTERM");
                        signal(pid, libc::SIGTERM);
                        term_sent = true;
                    } else if !kill_sent && since.elapsed() > grace + Duration::from_secs(5) {
                        let _ = child.start_kill();
                        kill_sent = true;
                    }
                }
            }
        }
    }
    if bad_lines > 0 {
        tracing::warn!(tool, bad_lines, "output lines skipped");
    }
    // Drain stdout/stderr readers a moment so the tail is complete.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let status = status.ok_or_else(|| RunnerError::Setup(format!("{tool} status unknown")))?;
    let ok = status.success() || runner.ok_exit(status.code());
    if ok || stopping.is_some() {
        return Ok(());
    }
    Err(RunnerError::Failed {
        tool,
        status: status.to_string(),
        tail: last.text(),
    })
}
