//! Agents never outlive their coordinator or their run (issue 11, task 3): real `herd` agent
//! processes, a real broker, a real target. An agent that hears no `Alive` for `orphan_after`
//! stops gracefully (every batch sent, `Finished`) and exits; one that still hears it stops at
//! the run's planned end plus the grace. Bounded runs of seconds.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use herd_tests::{agent_pids, run_dir, spawn_run_with, start_target, wait_for_run_id};
use messages::policy::TargetPolicy;
use messages::wire::{self, Alive, Assign, Body, Envelope, Start, WIRE_VERSION};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use transport::keys::{self, AgentKeys, PublicKey, Secret, SigningKey};

fn herd() -> &'static std::path::Path {
    std::path::Path::new(env!("CARGO_BIN_EXE_herd"))
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64
}

/// What every agent said on the broker: distinct batches (requests in them) and its Finished.
#[derive(Default, Debug)]
struct Heard {
    batches: BTreeMap<String, HashSet<u64>>,
    requests: u64,
    finished: BTreeMap<String, u64>,
    ready: HashSet<String>,
    heartbeats: u64,
}

/// Listens to every agent topic of the broker on `port`; frames are read without checking
/// their MAC (the test only counts).
async fn listen(port: u16, name: &str) -> std::sync::Arc<std::sync::Mutex<Heard>> {
    let mut opts = MqttOptions::new(name, "127.0.0.1", port);
    opts.set_max_packet_size(8 << 20, 8 << 20);
    let (client, mut el) = AsyncClient::new(opts, 100);
    client
        .subscribe("herd/runs/+/agents/+/+", QoS::AtLeastOnce)
        .await
        .expect("subscribe");
    let heard = std::sync::Arc::new(std::sync::Mutex::new(Heard::default()));
    let sink = heard.clone();
    tokio::spawn(async move {
        let _client = client;
        while let Ok(ev) = el.poll().await {
            let Event::Incoming(Packet::Publish(p)) = ev else {
                continue;
            };
            let Some(inner) = p.payload.get(1..p.payload.len().saturating_sub(32)) else {
                continue;
            };
            let Ok(env) = wire::decode(inner) else {
                continue;
            };
            let mut h = sink.lock().expect("lock");
            match env.body {
                Body::Metrics(b) => {
                    let new = h.batches.entry(env.sender).or_default().insert(env.seq);
                    let requests: u64 = b.labels.iter().map(|l| l.requests).sum();
                    h.requests += if new { requests } else { 0 };
                }
                Body::Finished(f) => {
                    h.finished.insert(env.sender, f.batches_sent);
                }
                Body::Ready(_) => {
                    h.ready.insert(env.sender);
                }
                Body::Heartbeat(_) => h.heartbeats += 1,
                _ => {}
            }
        }
    });
    heard
}

/// Waits (up to `within`) until no agent process of the run is left; how long it took.
async fn agents_gone(run_id: &str, within: Duration) -> Option<Duration> {
    let begun = Instant::now();
    while begun.elapsed() < within {
        if agent_pids(run_id).is_empty() {
            return Some(begun.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_of_a_frozen_coordinator_stop_gracefully_send_everything_and_exit() {
    let t = start_target().await;
    // An external broker: the embedded one would freeze with the coordinator.
    let addr = coordinator::broker::start(0, None).expect("broker");
    let heard = listen(addr.port(), "orphan-listener").await;
    let broker = format!("mqtt://127.0.0.1:{}", addr.port());
    let spec = "name: orphans\ntarget: {url}\nscenario: [{request: GET /fast}]\nload: {executor: constant-vus, vus: 4, duration: 60s, graceful_stop: 5s}\n";
    let run = spawn_run_with(
        herd(),
        spec,
        &t.url(),
        &[],
        &["--agents", "2", "--quiet", "--broker", &broker],
        // `herd run`'s agents inherit its environment.
        &[("HERD_ORPHAN_AFTER_S", "3")],
    );
    let run_id = wait_for_run_id(run.results.path()).await;
    let loading = Instant::now();
    while heard.lock().expect("lock").batches.len() < 2 {
        assert!(loading.elapsed() < Duration::from_secs(30), "no load");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(agent_pids(&run_id).len(), 2, "both agents run");
    let pid = run.child.id().expect("herd run pid") as i32;
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let gone = agents_gone(&run_id, Duration::from_secs(25)).await;
    let dir = run_dir(run.results.path());
    let logs: Vec<String> = (0..2)
        .map(|i| std::fs::read_to_string(dir.join(format!("agent-{i}.log"))).unwrap_or_default())
        .collect();
    // SAFETY: as above; the frozen coordinator is killed (a stopped process takes SIGKILL).
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let took = gone.unwrap_or_else(|| panic!("agents still running: {logs:#?}"));
    eprintln!("agents left {took:?} after the coordinator froze (orphan_after 3 s)");
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(15),
        "agents left {took:?} after the coordinator froze (orphan_after 3 s)"
    );
    for log in &logs {
        assert!(
            log.contains("stopped by itself: no Alive from the coordinator for 3s"),
            "{log}"
        );
    }
    // Graceful: each agent's Finished counts every batch it sent, and those batches hold
    // every request the target served.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let h = heard.lock().expect("lock");
    assert_eq!(h.finished.len(), 2, "{h:?}");
    for (agent, sent) in &h.finished {
        assert_eq!(
            h.batches.get(agent).map(HashSet::len),
            Some(*sent as usize),
            "{agent}"
        );
    }
    assert_eq!(
        h.requests,
        t.stats().requests,
        "every request measured and sent"
    );
}

/// A fake coordinator on an open broker: it seals and signs as a real one does.
struct FakeCoordinator {
    client: AsyncClient,
    run: String,
    agent: AgentKeys,
    signing: SigningKey,
    seq: std::sync::atomic::AtomicU64,
}

impl FakeCoordinator {
    async fn send(&self, body: Body) {
        let seq = self.seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let assign = matches!(body, Body::Assign(_));
        let bytes = wire::encode(&Envelope {
            version: WIRE_VERSION,
            run_id: self.run.clone(),
            sender: "coordinator".into(),
            seq,
            sent_at_ms: now_ms(),
            body,
        })
        .expect("encode");
        let frame = if assign {
            keys::seal_for_agent(0, &self.agent, &bytes).expect("seal")
        } else {
            keys::sign_broadcast(&self.signing, &bytes)
        };
        self.client
            .publish(
                messages::topics::control(&self.run),
                QoS::AtLeastOnce,
                false,
                frame,
            )
            .await
            .expect("publish");
    }
}

/// The agent exited 1 saying it stopped by itself because of `why`, `took` within `bounds`.
fn stopped_by_itself(
    out: &std::process::Output,
    why: &str,
    took: Duration,
    bounds: std::ops::Range<Duration>,
) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("stopped by itself: {why}")),
        "{stderr}"
    );
    assert!(bounds.contains(&took), "{took:?} not in {bounds:?}");
}

/// `herd agent` as agent 0 of `run` with its keys in the environment.
fn spawn_agent(
    port: u16,
    run: &str,
    secret: &Secret,
    coordinator: &PublicKey,
    orphan_after_s: &str,
) -> tokio::process::Child {
    tokio::process::Command::new(herd())
        .args(["agent", "--broker", &format!("mqtt://127.0.0.1:{port}")])
        .args(["--run", run, "--index", "0"])
        .env("HERD_AGENT_SECRET", secret.to_hex())
        .env("HERD_COORDINATOR_KEY", coordinator.to_hex())
        .env("HERD_ORPHAN_AFTER_S", orphan_after_s)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn herd agent")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_that_never_hears_its_coordinator_leaves_before_the_start() {
    let addr = coordinator::broker::start(0, None).expect("broker");
    let heard = listen(addr.port(), "lonely-listener").await;
    let secret = Secret::random().expect("secret");
    let signing = SigningKey::generate().expect("key");
    let begun = Instant::now();
    let child = spawn_agent(addr.port(), "lonely", &secret, &signing.public(), "2");
    let out = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .expect("the agent left within 20 s")
        .expect("output");
    let took = begun.elapsed();
    stopped_by_itself(
        &out,
        "no Alive from the coordinator for 2s",
        took,
        Duration::from_secs(2)..Duration::from_secs(10),
    );
    let h = heard.lock().expect("lock");
    assert!(h.heartbeats > 0, "it was connected and announced itself");
    assert!(h.ready.is_empty() && h.finished.is_empty(), "{h:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_stops_at_the_planned_end_plus_grace_while_its_coordinator_is_alive() {
    let t = start_target().await;
    let addr = coordinator::broker::start(0, None).expect("broker");
    let heard = listen(addr.port(), "ceiling-listener").await;
    let run = "ceiling".to_string();
    let secret = Secret::random().expect("secret");
    let signing = SigningKey::generate().expect("key");
    let public = signing.public();
    let mut opts = MqttOptions::new("fake-coordinator", "127.0.0.1", addr.port());
    opts.set_max_packet_size(8 << 20, 8 << 20);
    let (client, mut el) = AsyncClient::new(opts, 100);
    tokio::spawn(async move { while el.poll().await.is_ok() {} });
    let coord = std::sync::Arc::new(FakeCoordinator {
        client,
        run: run.clone(),
        agent: AgentKeys::new(secret.clone()),
        signing,
        seq: Default::default(),
    });
    // Alive twice a second for the whole test: the agent is never orphaned.
    let alive = {
        let c = coord.clone();
        tokio::spawn(async move {
            loop {
                c.send(Body::Alive(Alive::new(1))).await;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    };
    let child = spawn_agent(addr.port(), &run, &secret, &public, "3");
    let begun = Instant::now();
    while heard.lock().expect("lock").heartbeats == 0 {
        assert!(begun.elapsed() < Duration::from_secs(20), "no heartbeat");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let text = "name: ceiling\ntarget: {url}\nscenario: [{request: GET /fast}]\nload: {executor: constant-vus, vus: 2, duration: 60s, graceful_stop: 1s}\n"
        .replace("{url}", &t.url());
    let spec = messages::parse_spec(&text).expect("spec");
    let share = messages::split::split(&spec.load.executor, 1).remove(0);
    coord
        .send(Body::Assign(Assign {
            agent: 0,
            region: "local".into(),
            spec,
            share,
            data: Vec::new(),
            policy: TargetPolicy::allow_all(),
            // No probe: the agent keeps its own clock, which is the fake coordinator's.
            clock: None,
        }))
        .await;
    while heard.lock().expect("lock").ready.is_empty() {
        assert!(begun.elapsed() < Duration::from_secs(20), "not Ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A start that lies in the past: planned 60 s + graceful stop 1 s + grace 30 s after it
    // is 4 s from now, so the load runs about 4 s and then stops by itself.
    let ceiling_in = 4_000;
    let at_ms = now_ms() + ceiling_in - (60_000 + 1_000 + wire::OVERRUN_GRACE_MS);
    coord.send(Body::Start(Start { at_ms })).await;
    let started = Instant::now();
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("the agent left within 30 s")
        .expect("output");
    let took = started.elapsed();
    alive.abort();
    eprintln!("the agent left {took:?} after a Start that put the ceiling 4 s ahead");
    stopped_by_itself(
        &out,
        "the run's planned end",
        took,
        Duration::from_millis(3_500)..Duration::from_secs(15),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let h = heard.lock().expect("lock");
    let sent = h.finished.get("agent-0").copied().expect("a Finished");
    assert_eq!(
        h.batches.get("agent-0").map(HashSet::len),
        Some(sent as usize)
    );
    assert!(h.requests > 0);
    assert_eq!(h.requests, t.stats().requests, "stopped gracefully");
}
