//! Shared helpers for herd's cross-crate integration tests: a real target on 127.0.0.1, specs
//! from YAML text, and the standalone engine run in-process. [`aws`]: moto and the ECS harness.
//! [`tinyfs`]: a small tmpfs, in a mount namespace of its own, for full-disk tests.

pub mod aws;
pub mod throttle;
pub mod tinyfs;

use std::collections::BTreeMap;
use std::net::SocketAddr;

use demo_target::{Target, TargetConfig};
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
    run_with(spec, data, &agent::engine::NetConfig::default()).await
}

/// [`run`] under a target policy (or other [`agent::engine::NetConfig`]).
pub async fn run_with(
    spec: &Spec,
    data: &BTreeMap<String, Vec<u8>>,
    net: &agent::engine::NetConfig,
) -> agent::standalone::Outcome {
    let (_stop_tx, stop_rx) = watch::channel(false);
    let mut sink = std::io::sink();
    agent::standalone::run(spec, data, net, stop_rx, &mut sink, true)
        .await
        .expect("the standalone run completes")
}

/// A `herd run` child process with its results folder.
pub struct HerdRun {
    pub child: tokio::process::Child,
    pub results: tempfile::TempDir,
    _spec_dir: tempfile::TempDir,
}

/// Starts `herd run` (the binary at `herd`) on `yaml` (with `{url}` replaced) with `args`,
/// results in a temp folder.
pub fn spawn_run(herd: &std::path::Path, yaml: &str, url: &str, args: &[&str]) -> HerdRun {
    spawn_run_with(herd, yaml, url, &[], args, &[])
}

/// Like [`spawn_run`], with files next to the spec (scripts, data; `name` may hold folders)
/// and extra env vars.
pub fn spawn_run_with(
    herd: &std::path::Path,
    yaml: &str,
    url: &str,
    files: &[(&str, &[u8])],
    args: &[&str],
    env: &[(&str, &str)],
) -> HerdRun {
    let spec_dir = tempfile::tempdir().expect("temp dir");
    let results = tempfile::tempdir().expect("temp dir");
    let path = spec_dir.path().join("spec.yaml");
    std::fs::write(&path, yaml.replace("{url}", url)).expect("write spec");
    for (name, bytes) in files {
        let p = spec_dir.path().join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("folder for a file");
        }
        std::fs::write(p, bytes).expect("write file");
    }
    let child = tokio::process::Command::new(herd)
        .arg("run")
        .arg(&path)
        .arg("--results-dir")
        .arg(results.path())
        .args(args)
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn herd run");
    HerdRun {
        child,
        results,
        _spec_dir: spec_dir,
    }
}

/// `name` in the first PATH folder that has it.
pub fn on_path(name: &str) -> Option<std::path::PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The tool's path if installed, else None with a SKIPPED line (or a failure when CI set
/// `HERD_REQUIRE_RUNNERS=1` after installing them).
pub fn tool(name: &str) -> Option<std::path::PathBuf> {
    let var = format!("HERD_{}", name.to_uppercase());
    if let Ok(p) = std::env::var(&var) {
        return Some(p.into());
    }
    let found = on_path(name);
    if found.is_none() {
        assert!(
            std::env::var("HERD_REQUIRE_RUNNERS").is_err(),
            "{name} is required but not found on PATH"
        );
        eprintln!("SKIPPED: {name} is not installed");
    }
    found
}

impl HerdRun {
    /// Waits (bounded) and returns (exit code, stdout, stderr).
    pub async fn finish(self) -> (Option<i32>, String, String, tempfile::TempDir) {
        let out = tokio::time::timeout(
            std::time::Duration::from_secs(120),
            self.child.wait_with_output(),
        )
        .await
        .expect("herd run finished within 120 s")
        .expect("herd run output");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
            self.results,
        )
    }
}

/// Waits (bounded: 10 s) until `herd serve`'s log at `log` says it is ready; the log's text.
pub async fn wait_until_ready(log: &std::path::Path) -> String {
    let read = || std::fs::read_to_string(log).unwrap_or_default();
    for _ in 0..200 {
        if read().contains("herd serve: ready") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let text = read();
    assert!(text.contains("herd serve: ready"), "{text}");
    text
}

/// The embedded broker's port, from `herd serve`'s ready line (`broker mqtt://127.0.0.1:PORT`).
pub fn broker_port_in(log: &str) -> u16 {
    const AT: &str = "broker mqtt://127.0.0.1:";
    let at = log.find(AT).expect("broker in the ready line");
    log[at + AT.len()..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|p| p.parse().ok())
        .expect("broker port")
}

/// Everything published on `herd/runs/+/result` of the embedded broker on `port`, as (topic,
/// document), seen as an observer with the login `herd` wrote to `login` (`.broker-observer`).
/// Subscribed before it returns; the watcher ends with the test's runtime.
pub async fn watch_results(
    port: u16,
    login: &std::path::Path,
    client_id: &str,
) -> tokio::sync::mpsc::UnboundedReceiver<(String, serde_json::Value)> {
    let login: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(login).expect("observer login"))
            .expect("JSON");
    let mut opts = rumqttc::MqttOptions::new(client_id, "127.0.0.1", port);
    opts.set_max_packet_size(1 << 24, 1 << 24);
    opts.set_credentials(
        login["user"].as_str().expect("user"),
        login["password"].as_str().expect("password"),
    );
    let (client, mut events) = rumqttc::AsyncClient::new(opts, 10);
    client
        .subscribe("herd/runs/+/result", rumqttc::QoS::AtLeastOnce)
        .await
        .expect("subscribe");
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let _client = client;
        while let Ok(ev) = events.poll().await {
            if let rumqttc::Event::Incoming(rumqttc::Packet::Publish(p)) = ev {
                if let Ok(v) = serde_json::from_slice(&p.payload) {
                    if tx.send((p.topic.clone(), v)).is_err() {
                        break;
                    }
                }
            }
        }
    });
    rx
}

/// The run folder inside a results dir (there is exactly one per test).
pub fn run_dir(results: &std::path::Path) -> std::path::PathBuf {
    let mut dirs: Vec<_> = std::fs::read_dir(results)
        .expect("results dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(
        dirs.len(),
        1,
        "expected one run folder in {}",
        results.display()
    );
    dirs.remove(0)
}

/// The id of the run `herd run` is making in `results`: the name of its folder, once it
/// appears (within 10 s).
pub async fn wait_for_run_id(results: &std::path::Path) -> String {
    for _ in 0..200 {
        // The run's folder (hidden files such as the observer login are not runs).
        let found = std::fs::read_dir(results).ok().and_then(|d| {
            d.flatten()
                .find(|e| e.path().is_dir() && !e.file_name().to_string_lossy().starts_with('.'))
        });
        if let Some(e) = found {
            return e.file_name().to_string_lossy().into_owned();
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("no run folder appeared");
}

pub fn summary(results: &std::path::Path) -> serde_json::Value {
    let p = run_dir(results).join("summary.json");
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).expect("summary.json is JSON")
}

/// Pids of live `herd agent` processes whose command line mentions `needle`.
pub fn agent_pids(needle: &str) -> Vec<(i32, String)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in entries.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        // Zombies have an empty command line; they are not running.
        if cmd.contains(" agent --broker ") && cmd.contains(needle) {
            out.push((pid, cmd));
        }
    }
    out
}

/// A real mosquitto on a free loopback port, configured not to drop queued QoS 1 messages.
pub struct Mosquitto {
    pub port: u16,
    child: std::process::Child,
    exe: std::path::PathBuf,
    conf: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Mosquitto {
    /// Stops the broker (SIGTERM: with persistence on it saves its sessions and queued
    /// messages), waits `down`, and starts it again on the same port with the same config.
    pub fn restart(&mut self, down: std::time::Duration) {
        // SAFETY: signalling the broker this value owns.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
        std::thread::sleep(down);
        self.child = std::process::Command::new(&self.exe)
            .arg("-c")
            .arg(&self.conf)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("restart mosquitto");
        wait_listening(self.port);
    }
}

fn wait_listening(port: u16) {
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("mosquitto did not listen on {port}");
}

/// Mosquitto keeping its state on disk (saved when it stops): what a restart brings back —
/// persistent sessions' subscriptions and the QoS 1 messages queued for them.
pub fn start_mosquitto_persistent() -> Option<Mosquitto> {
    start_mosquitto_with("persistence true\npersistence_location {dir}/\nautosave_interval 1\n")
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts mosquitto, or returns None when it is not installed (CI installs it and sets
/// HERD_REQUIRE_MOSQUITTO=1, which turns a missing mosquitto into a failure).
pub fn start_mosquitto() -> Option<Mosquitto> {
    start_mosquitto_with("")
}

/// Test PKI: a CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files.
pub struct Pki {
    pub dir: tempfile::TempDir,
    pub ca: std::path::PathBuf,
    pub ca_key: std::path::PathBuf,
    pub server_cert: std::path::PathBuf,
    pub server_key: std::path::PathBuf,
    pub client_cert: std::path::PathBuf,
    pub client_key: std::path::PathBuf,
}

pub fn make_pki() -> Pki {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "herd test CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("CA key"))
        .expect("CA cert");
    let leaf = |names: Vec<String>, cn: &str| {
        let key = KeyPair::generate().expect("key");
        let mut p = CertificateParams::new(names).expect("params");
        p.distinguished_name.push(DnType::CommonName, cn);
        let cert = p.signed_by(&key, &ca).expect("sign");
        (cert.pem(), key.serialize_pem())
    };
    let (server_pem, server_key_pem) =
        leaf(vec!["127.0.0.1".into(), "localhost".into()], "localhost");
    let (client_pem, client_key_pem) = leaf(vec![], "herd-agent");
    let w = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).expect("write PEM");
        p
    };
    Pki {
        ca: w("ca.pem", &ca.pem()),
        ca_key: w("ca.key", &ca.key().serialize_pem()),
        server_cert: w("server.pem", &server_pem),
        server_key: w("server.key", &server_key_pem),
        client_cert: w("client.pem", &client_pem),
        client_key: w("client.key", &client_key_pem),
        dir,
    }
}

/// mosquitto over TLS that requires a client certificate signed by the test CA.
pub fn start_mosquitto_tls(pki: &Pki) -> Option<Mosquitto> {
    start_mosquitto_with(&format!(
        "cafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate true\nuse_identity_as_username true\n",
        pki.ca.display(),
        pki.server_cert.display(),
        pki.server_key.display()
    ))
}

fn start_mosquitto_with(extra: &str) -> Option<Mosquitto> {
    let exe = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists());
    let Some(exe) = exe else {
        assert!(
            std::env::var("HERD_REQUIRE_MOSQUITTO").is_err(),
            "mosquitto is required but not installed"
        );
        eprintln!("SKIPPED: mosquitto is not installed (apt-get install mosquitto)");
        return None;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let dir = tempfile::tempdir().ok()?;
    let conf = dir.path().join("mosquitto.conf");
    // `extra` comes last: a later line wins (persistence). `{dir}` in it: the broker's folder.
    let extra = extra.replace("{dir}", &dir.path().display().to_string());
    std::fs::write(&conf, format!("listener {port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\npersistence false\n{extra}")).ok()?;
    let child = std::process::Command::new(exe)
        .arg("-c")
        .arg(&conf)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start mosquitto");
    // Owned at once, so Drop kills and reaps it whatever happens next.
    let m = Mosquitto {
        port,
        child,
        exe: exe.into(),
        conf,
        _dir: dir,
    };
    wait_listening(port);
    Some(m)
}

/// A TCP proxy on a loopback port that the test can cut (every connection dropped, new ones
/// refused) and restore: a network blip between agents and their broker.
pub struct Proxy {
    pub port: u16,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
    conns: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Proxy {
    pub async fn start(upstream: u16) -> Proxy {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy");
        let port = listener.local_addr().expect("proxy addr").port();
        let cut = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let conns = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (c, cs) = (cut.clone(), conns.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut down, _)) = listener.accept().await {
                if c.load(Ordering::SeqCst) {
                    continue; // dropped: refused while cut
                }
                let task = tokio::spawn(async move {
                    if let Ok(mut up) =
                        tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                    {
                        let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
                    }
                });
                cs.lock().expect("proxy lock").push(task.abort_handle());
            }
        });
        Proxy {
            port,
            cut,
            conns,
            accept,
        }
    }

    pub fn cut(&self) {
        self.cut.store(true, std::sync::atomic::Ordering::SeqCst);
        for c in self.conns.lock().expect("proxy lock").drain(..) {
            c.abort();
        }
    }

    pub fn restore(&self) {
        self.cut.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}
