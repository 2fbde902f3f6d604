//! The `herd` binary: parse arguments, hand over to the library, map the outcome to an exit code.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = coordinator::cli::Cli::parse();
    coordinator::cli::init_tracing(cli.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("herd: cannot start the async runtime: {e}");
            return ExitCode::from(coordinator::cli::EXIT_ERROR);
        }
    };
    let code = runtime.block_on(coordinator::cli::run(cli));
    ExitCode::from(code)
}
