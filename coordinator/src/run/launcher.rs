//! `LocalLauncher`: agents as child processes of this `herd`. Any launcher handles
//! [`LaunchAgents`] and [`StopAgents`] and reports [`AgentExited`]; the ECS launcher is the other.

use std::collections::HashMap;
use std::process::Stdio;

use actix::prelude::*;
use tokio::process::Command;

use super::protocol::{AgentExited, LaunchAgents, LaunchError, StopAgents};

pub struct LocalLauncher {
    /// The `herd` binary agents run as (`herd agent …`).
    program: std::path::PathBuf,
    supervisor: Recipient<AgentExited>,
    /// Kill switches of running children.
    kills: HashMap<u32, tokio::sync::oneshot::Sender<()>>,
    /// Where agents' stderr goes (a file in the results folder).
    log_dir: std::path::PathBuf,
    /// Agents outlive this process when it exits (`on_shutdown = "resume"`: the next coordinator
    /// takes them back); otherwise they are killed with it, whatever ends it gracefully.
    outlive: bool,
    /// Agents get SIGTERM from the kernel when this process dies (`herd run`). Not under
    /// `herd serve`: a serve that crashed is restarted and takes its runs' agents back.
    die_with_parent: bool,
    /// Agents one process hosts (`herd run --agents-per-process`): a fleet of a thousand on one
    /// machine without a thousand processes. Each is still its own MQTT client with its own
    /// keys, engine and batches; they share a runtime, and a process that exits takes all its
    /// agents with it.
    per_process: u32,
}

impl LocalLauncher {
    pub fn new(
        program: std::path::PathBuf,
        supervisor: Recipient<AgentExited>,
        log_dir: std::path::PathBuf,
    ) -> LocalLauncher {
        LocalLauncher {
            program,
            supervisor,
            kills: HashMap::new(),
            log_dir,
            outlive: false,
            die_with_parent: false,
            per_process: 1,
        }
    }

    /// `k` agents to a process (at least 1; `herd agent --count` caps it).
    pub fn agents_per_process(mut self, k: u32) -> LocalLauncher {
        self.per_process = k.max(1);
        self
    }

    /// Its agents stop when this process dies however it dies (`herd run`).
    pub fn dying_with_parent(mut self) -> LocalLauncher {
        self.die_with_parent = true;
        self
    }

    /// Its agents outlive this process's graceful exit (they still stop on `StopAgents`).
    pub fn outliving(mut self) -> LocalLauncher {
        self.outlive = true;
        self
    }
}

impl Actor for LocalLauncher {
    type Context = Context<Self>;
}

impl Handler<LaunchAgents> for LocalLauncher {
    type Result = Result<(), LaunchError>;

    fn handle(&mut self, msg: LaunchAgents, _ctx: &mut Context<Self>) -> Self::Result {
        let per = self.per_process;
        let mut first = 0u32;
        while first < msg.count {
            let count = per.min(msg.count - first);
            self.spawn(&msg, first, count)?;
            first += count;
        }
        Ok(())
    }
}

impl LocalLauncher {
    /// One process hosting agents `first..first + count`.
    fn spawn(&mut self, msg: &LaunchAgents, first: u32, count: u32) -> Result<(), LaunchError> {
        let name = if count == 1 {
            format!("agent-{first}.log")
        } else {
            format!("agents-{first}-{}.log", first + count - 1)
        };
        let log_path = self.log_dir.join(name);
        let log = std::fs::File::create(&log_path)
            .map_err(|e| LaunchError(format!("agent log file {}: {e}", log_path.display())))?;
        let mut cmd = Command::new(&self.program);
        cmd.args([
            "agent",
            "--broker",
            &msg.broker,
            "--run",
            &msg.run_id,
            "--index",
            &first.to_string(),
            // Its keys come on stdin: a command line is readable by every local user.
            "--credentials-stdin",
        ]);
        if count > 1 {
            cmd.args(["--count", &count.to_string()]);
        }
        // One line per agent, in index order.
        let mut lines = String::new();
        for i in first..first + count {
            let line = msg
                .credentials
                .line_for(i)
                .ok_or_else(|| LaunchError(format!("no credentials for agent {i}")))?;
            lines.push_str(&line);
        }
        if let Some(ca) = &msg.tls.ca {
            cmd.arg("--ca").arg(ca);
        }
        if let (Some(c), Some(k)) = (&msg.tls.cert, &msg.tls.key) {
            cmd.arg("--cert").arg(c).arg("--key").arg(k);
        }
        // Own process group: a Ctrl-C in the terminal reaches `herd run`, which stops agents
        // gracefully through the broker instead of having them die mid-second.
        // An agent whose `herd run` dies without stopping it (SIGKILL, a crash) gets
        // SIGTERM and stops its load gracefully at once, instead of loading the target
        // until its orphan watchdog notices (the actix System's thread forks it).
        if self.die_with_parent {
            agent::runners::on_parent_death(&mut cmd, libc::SIGTERM);
        }
        cmd.process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .kill_on_drop(!self.outlive);
        let mut child = cmd.spawn().map_err(|e| {
            LaunchError(format!(
                "starting agent {first} ({}): {e}",
                self.program.display()
            ))
        })?;
        let (kill_tx, kill_rx) = tokio::sync::oneshot::channel::<()>();
        self.kills.insert(first, kill_tx);
        let sup = self.supervisor.clone();
        let stdin = child.stdin.take();
        tokio::spawn(async move {
            if let Some(mut stdin) = stdin {
                use tokio::io::AsyncWriteExt;
                if let Err(e) = stdin.write_all(lines.as_bytes()).await {
                    tracing::warn!(agent = first, error = %e, "cannot hand the agent its credentials");
                }
            }
            let reason = tokio::select! {
                status = child.wait() => match status {
                    Ok(s) => format!("agent process exited ({s})"),
                    Err(e) => format!("agent process lost: {e}"),
                },
                _ = kill_rx => {
                    let _ = child.kill().await;
                    "agent process killed by the coordinator".to_string()
                }
            };
            for agent in first..first + count {
                sup.do_send(AgentExited {
                    agent,
                    reason: reason.clone(),
                });
            }
        });
        Ok(())
    }
}

impl Handler<StopAgents> for LocalLauncher {
    type Result = ();

    fn handle(&mut self, _msg: StopAgents, _ctx: &mut Context<Self>) {
        for (_, k) in self.kills.drain() {
            let _ = k.send(());
        }
    }
}
