//! `herd serve` as a child process with the local profile (inbox folder, embedded broker,
//! agents as child processes), for the process tests that drive it. Each test binary uses
//! part of it.
#![allow(dead_code)]

use std::time::Duration;

use serde_json::Value;

/// The `herd` binary cargo built for these tests.
pub fn herd() -> &'static std::path::Path {
    std::path::Path::new(env!("CARGO_BIN_EXE_herd"))
}

pub fn notifications(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// A `herd serve` child with the local profile, its inbox, results and log.
pub struct Serve {
    pub child: tokio::process::Child,
    pub work: tempfile::TempDir,
    pub inbox: std::path::PathBuf,
    pub results: std::path::PathBuf,
}

impl Serve {
    pub async fn start(env: &[(&str, &str)]) -> Serve {
        Serve::start_with(env, "").await
    }

    /// With `extra` appended to the config (TOML sections).
    pub async fn start_with(env: &[(&str, &str)], extra: &str) -> Serve {
        Serve::start_in(tempfile::tempdir().expect("temp dir"), env, extra).await
    }

    /// In `work`: a folder a previous `herd serve` left (its state, inbox and results), to
    /// restart it there.
    pub async fn start_in(work: tempfile::TempDir, env: &[(&str, &str)], extra: &str) -> Serve {
        let inbox = work.path().join("inbox");
        let results = work.path().join("results");
        let cfg = work.path().join("serve.toml");
        std::fs::write(
            &cfg,
            format!(
                "profile = \"local\"\ninbox = \"{}\"\nresults_dir = \"{}\"\nagents = 2\n{extra}",
                inbox.display(),
                results.display()
            ),
        )
        .expect("config");
        let log = std::fs::File::create(work.path().join("serve.log")).expect("log");
        let out = std::fs::File::create(work.path().join("serve.out")).expect("stdout file");
        let child = tokio::process::Command::new(herd())
            .args(["serve", "--config"])
            .arg(&cfg)
            .envs(env.iter().copied())
            .stdout(out)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("herd serve");
        herd_tests::wait_until_ready(&work.path().join("serve.log")).await;
        Serve {
            child,
            work,
            inbox,
            results,
        }
    }

    /// What `herd serve` printed on stdout (a line per run start and end).
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(self.work.path().join("serve.out")).unwrap_or_default()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.work.path().join("serve.log")).unwrap_or_default()
    }

    /// The API's base URL, from the ready line (`api http://127.0.0.1:PORT`).
    pub fn api_url(&self) -> String {
        let log = self.log();
        let at = log.find(", api ").expect("the ready line names the API") + ", api ".len();
        log[at..]
            .split_whitespace()
            .next()
            .expect("API URL")
            .to_string()
    }

    /// A new API token of `role`, made with `herd token create` on this serve's state folder
    /// while it runs.
    pub fn token(&self, role: &str) -> String {
        let out = std::process::Command::new(herd())
            .args(["token", "create", "--role", role, "--name"])
            .arg(format!("test {role}"))
            .arg("--config")
            .arg(self.work.path().join("serve.toml"))
            .output()
            .expect("herd token create");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .expect("UTF-8")
            .trim()
            .to_string()
    }

    /// The embedded broker's port, from the ready line (`broker mqtt://127.0.0.1:PORT`).
    pub fn broker_port(&self) -> u16 {
        herd_tests::broker_port_in(&self.log())
    }

    pub fn notifications(&self) -> Vec<Value> {
        notifications(&self.results.join("notifications.jsonl"))
    }

    /// Waits (bounded) until `n` notifications of `kind` arrived.
    pub async fn wait_for(&self, kind: &str, n: usize, within: Duration) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let got: Vec<Value> = self
                .notifications()
                .into_iter()
                .filter(|v| v["type"] == kind)
                .collect();
            if got.len() >= n {
                return got;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{n} {kind} expected, got {got:?}\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub fn summary(&self, run: &str) -> Value {
        let p = self.results.join(run).join("summary.json");
        serde_json::from_str(&std::fs::read_to_string(&p).expect("summary.json")).expect("JSON")
    }

    /// SIGTERM, then a clean exit. The work folder outlives the process for the caller to read.
    pub async fn stop(mut self) -> tempfile::TempDir {
        let pid = self.child.id().expect("pid") as i32;
        // SAFETY: signalling our own child.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("serve stops")
            .expect("status");
        assert!(status.success(), "{status}\n{}", self.log());
        self.work
    }
}

impl Serve {
    /// `kill -9`: no shutdown, no flush, no cleanup — a crash. The work folder stays.
    pub async fn kill9(mut self) -> tempfile::TempDir {
        let pid = self.child.id().expect("pid") as i32;
        // SAFETY: signalling our own child.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
        self.work
    }

    pub fn pid(&self) -> i32 {
        self.child.id().expect("pid") as i32
    }
}
