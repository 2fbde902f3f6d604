//! Shared helpers for herd's cross-crate integration tests: a real target on 127.0.0.1, specs
//! from YAML text, and the standalone engine run in-process.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use coordinator::target::{Target, TargetConfig};
use messages::spec::{parse_spec, Spec};
use tokio::sync::watch;

pub async fn start_target() -> Target {
    start_target_with(false).await
}

pub async fn start_target_with(tls: bool) -> Target {
    Target::start(TargetConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        tls,
        base_delay: None,
    })
    .await
    .expect("the test target binds a loopback port")
}

/// Parses `yaml` with `{url}` replaced by the target's URL.
pub fn spec(yaml: &str, url: &str) -> Spec {
    let text = yaml.replace("{url}", url);
    match parse_spec(&text) {
        Ok(s) => s,
        Err(e) => panic!("test spec is invalid:\n{e}\n---\n{text}"),
    }
}

/// Runs `spec` with the whole load in this process and returns the outcome.
pub async fn run(spec: &Spec, data: &BTreeMap<String, Vec<u8>>) -> agent::standalone::Outcome {
    let (_stop_tx, stop_rx) = watch::channel(false);
    let mut sink = std::io::sink();
    agent::standalone::run(spec, data, stop_rx, &mut sink, true)
        .await
        .expect("the standalone run completes")
}

/// Path of the `herd` binary, built (once per test process) so it is never stale or missing:
/// `cargo test` does not build another package's binaries for this crate's tests.
pub fn herd_bin() -> std::path::PathBuf {
    static BUILT: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
            let status = std::process::Command::new(cargo)
                .args([
                    "build",
                    "--quiet",
                    "-p",
                    "herd-coordinator",
                    "--bin",
                    "herd",
                ])
                .status()
                .expect("running cargo build for the herd binary");
            assert!(status.success(), "building the herd binary failed");
            // tests/ is a workspace member; the binary sits in the shared target dir.
            let mut p = std::env::current_exe().expect("test binary path");
            p.pop();
            if p.ends_with("deps") {
                p.pop();
            }
            p.join("herd")
        })
        .clone()
}
