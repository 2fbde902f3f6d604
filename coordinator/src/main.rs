//! The `herd` binary: parse arguments, hand over to the library, map the outcome to an exit code.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = coordinator::cli::Cli::parse();
    coordinator::cli::init_tracing(cli.verbose);
    // The coordinator's actors run on an actix System (one thread; agents are processes).
    if matches!(
        cli.command,
        coordinator::cli::Command::Run(_) | coordinator::cli::Command::Serve { .. }
    ) {
        let code = actix::System::new().block_on(coordinator::cli::run(cli));
        return ExitCode::from(code);
    }
    // On one core (a pinned agent, a small container) a single-threaded scheduler wastes
    // nothing on cross-thread wake-ups.
    let one_core = std::thread::available_parallelism().is_ok_and(|n| n.get() == 1);
    let mut builder = if one_core {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("herd: cannot start the async runtime: {e}");
            return ExitCode::from(coordinator::cli::EXIT_ERROR);
        }
    };
    let code = runtime.block_on(coordinator::cli::run(cli));
    ExitCode::from(code)
}
