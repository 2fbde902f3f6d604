//! Interrupts as a stream a command reads, so that commands take their shutdown as a value
//! (tests hand them a channel) and the process exits only from `main`.

use tokio::sync::mpsc;

/// Each item is one interrupt (Ctrl-C, or SIGTERM when asked for).
pub struct Interrupts(mpsc::UnboundedReceiver<()>);

impl Interrupts {
    /// Interrupts a test (or another caller) sends itself.
    pub fn channel() -> (mpsc::UnboundedSender<()>, Interrupts) {
        let (tx, rx) = mpsc::unbounded_channel();
        (tx, Interrupts(rx))
    }

    /// This process's Ctrl-C, and SIGTERM too with `terminate` (what ECS and systemd send a
    /// service before they stop it). Must be called inside a tokio runtime.
    pub fn from_os(terminate: bool) -> Interrupts {
        let (tx, rx) = Interrupts::channel();
        let ctrl_c = tx.clone();
        tokio::spawn(async move {
            while tokio::signal::ctrl_c().await.is_ok() {
                if ctrl_c.send(()).is_err() {
                    return;
                }
            }
        });
        if terminate {
            use tokio::signal::unix::{signal, SignalKind};
            match signal(SignalKind::terminate()) {
                Ok(mut term) => {
                    tokio::spawn(async move {
                        while term.recv().await.is_some() {
                            if tx.send(()).is_err() {
                                return;
                            }
                        }
                    });
                }
                Err(e) => tracing::warn!(error = %e, "cannot listen for SIGTERM"),
            }
        }
        rx
    }

    /// The next interrupt; `false` when none can come any more.
    pub async fn next(&mut self) -> bool {
        self.0.recv().await.is_some()
    }
}
