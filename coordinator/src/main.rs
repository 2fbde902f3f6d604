//! The `herd` binary: parse arguments, hand over to the library, exit with its answer. The only
//! place the process exits.

use std::process::ExitCode;

use clap::Parser;
use coordinator::cli::{dispatch, init_tracing, Cli, Command};
use coordinator::exit::Exit;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.verbose);
    let program = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("herd: cannot find this program's own path (agents run as it): {e}");
            return Exit::Error.into();
        }
    };
    // The coordinator's actors run on an actix System (one thread; agents are processes).
    if matches!(cli.command, Command::Run(_) | Command::Serve { .. }) {
        return actix::System::new().block_on(dispatch(cli, program)).into();
    }
    // On one core (a pinned agent, a small container) a single-threaded scheduler wastes
    // nothing on cross-thread wake-ups.
    let one_core = std::thread::available_parallelism().is_ok_and(|n| n.get() == 1);
    let mut builder = if one_core {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    match builder.enable_all().build() {
        Ok(rt) => rt.block_on(dispatch(cli, program)).into(),
        Err(e) => {
            eprintln!("herd: cannot start the async runtime: {e}");
            Exit::Error.into()
        }
    }
}
