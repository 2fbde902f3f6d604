//! `herd`'s exit codes: what a pipeline reads of a run.

use messages::outcome::{EndState, Verdict};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// All thresholds passed (or there were none); `validate`: the spec is valid.
    Ok,
    /// The run could not be carried out (I/O, broker, agents…) or failed.
    Error,
    /// The spec or the command line is invalid.
    Invalid,
    /// The run completed and at least one threshold failed (k6 uses the same code).
    Thresholds,
    /// Cancelled by Ctrl-C (or through the API).
    Cancelled,
    /// Stopped gracefully on SIGTERM: 128 + 15, as a shell reports it.
    Terminated,
    /// Stopped gracefully on SIGHUP: 128 + 1.
    HungUp,
}

impl Exit {
    pub fn code(self) -> u8 {
        match self {
            Exit::Ok => 0,
            Exit::Error => 1,
            Exit::Invalid => 2,
            Exit::Thresholds => 99,
            Exit::Cancelled => 130,
            Exit::Terminated => 143,
            Exit::HungUp => 129,
        }
    }

    /// The exit of a command that `signal` stopped.
    pub fn of_signal(signal: crate::signals::Signal) -> Exit {
        match signal {
            crate::signals::Signal::Interrupt => Exit::Cancelled,
            crate::signals::Signal::Terminate => Exit::Terminated,
            crate::signals::Signal::HangUp => Exit::HungUp,
        }
    }

    /// A coordinated run's exit: its end state first, then whether its results were written,
    /// then its verdict.
    pub fn of_run(state: EndState, verdict: Verdict, results_written: bool) -> Exit {
        match (state, verdict) {
            (EndState::Cancelled, _) => Exit::Cancelled,
            (EndState::Failed, _) => Exit::Error,
            _ if !results_written => Exit::Error,
            (EndState::Completed, Verdict::Passed) => Exit::Ok,
            (EndState::Completed, Verdict::Failed) => Exit::Thresholds,
        }
    }
}

impl From<Exit> for std::process::ExitCode {
    fn from(e: Exit) -> std::process::ExitCode {
        std::process::ExitCode::from(e.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_exits_by_state_then_results_then_verdict() {
        use EndState::*;
        assert_eq!(Exit::of_run(Completed, Verdict::Passed, true), Exit::Ok);
        assert_eq!(
            Exit::of_run(Completed, Verdict::Failed, true),
            Exit::Thresholds
        );
        assert_eq!(Exit::of_run(Completed, Verdict::Passed, false), Exit::Error);
        assert_eq!(Exit::of_run(Failed, Verdict::Failed, true), Exit::Error);
        assert_eq!(
            Exit::of_run(Cancelled, Verdict::Failed, true),
            Exit::Cancelled
        );
        assert_eq!(Exit::Thresholds.code(), 99);
        assert_eq!(Exit::Cancelled.code(), 130);
        use crate::signals::Signal;
        assert_eq!(Exit::of_signal(Signal::Terminate).code(), 143);
        assert_eq!(Exit::of_signal(Signal::HangUp).code(), 129);
        assert_eq!(Exit::of_signal(Signal::Interrupt).code(), 130);
    }
}
