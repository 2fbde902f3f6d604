//! Interrupts as a stream a command reads, so that commands take their shutdown as a value
//! (tests hand them a channel) and the process exits only from `main`.

use tokio::sync::mpsc;

/// Which signal asked to stop: a command that ends because of it exits with 128 + its number,
/// as a shell reports a process the signal ended (what CI runners and `timeout` look for).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Ctrl-C (SIGINT).
    Interrupt,
    /// SIGTERM: what `timeout`, CI cancellation, ECS and systemd send.
    Terminate,
    /// SIGHUP: the terminal went away (an SSH session closed).
    HangUp,
}

impl Signal {
    pub fn name(self) -> &'static str {
        match self {
            Signal::Interrupt => "Ctrl-C",
            Signal::Terminate => "SIGTERM",
            Signal::HangUp => "SIGHUP",
        }
    }
}

/// Each item is one interrupt.
pub struct Interrupts(mpsc::UnboundedReceiver<Signal>);

impl Interrupts {
    /// Interrupts a test (or another caller) sends itself.
    pub fn channel() -> (mpsc::UnboundedSender<Signal>, Interrupts) {
        let (tx, rx) = mpsc::unbounded_channel();
        (tx, Interrupts(rx))
    }

    /// This process's Ctrl-C, and SIGTERM too with `terminate` (what ECS and systemd send a
    /// service before they stop it). Must be called inside a tokio runtime.
    pub fn from_os(terminate: bool) -> Interrupts {
        let mut kinds = vec![Signal::Interrupt];
        if terminate {
            kinds.push(Signal::Terminate);
        }
        Interrupts::of(&kinds)
    }

    /// Ctrl-C, SIGTERM and SIGHUP: a command that stops the same graceful way for all three.
    pub fn from_os_all() -> Interrupts {
        Interrupts::of(&[Signal::Interrupt, Signal::Terminate, Signal::HangUp])
    }

    fn of(kinds: &[Signal]) -> Interrupts {
        use tokio::signal::unix::{signal, SignalKind};
        let (tx, rx) = Interrupts::channel();
        for &k in kinds {
            let kind = match k {
                Signal::Interrupt => SignalKind::interrupt(),
                Signal::Terminate => SignalKind::terminate(),
                Signal::HangUp => SignalKind::hangup(),
            };
            match signal(kind) {
                Ok(mut s) => {
                    let tx = tx.clone();
                    tokio::spawn(async move {
                        while s.recv().await.is_some() {
                            if tx.send(k).is_err() {
                                return;
                            }
                        }
                    });
                }
                Err(e) => tracing::warn!(signal = k.name(), error = %e, "cannot listen for it"),
            }
        }
        rx
    }

    /// The next interrupt; `false` when none can come any more.
    pub async fn next(&mut self) -> bool {
        self.0.recv().await.is_some()
    }

    /// The next interrupt and which it was; None when none can come any more.
    pub async fn next_signal(&mut self) -> Option<Signal> {
        self.0.recv().await
    }
}
