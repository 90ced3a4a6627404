//! The `jwt-revoker` binary: parse the command line and run the subcommand.

use clap::Parser;
use jwt_revoker::cli::{Cli, Command, client, serve};
use std::process::ExitCode;

// mimalloc: fewer, cheaper allocations on the Check path (response building, prost encoding)
// and far less heap fragmentation after loading a large revocation snapshot than glibc malloc.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result: anyhow::Result<()> = match cli.command {
        Command::Serve(args) => serve::run(args).await.map_err(Into::into),
        Command::Revoke(args) => client::revoke(args).await.map_err(Into::into),
        Command::Unrevoke(args) => client::unrevoke(args).await.map_err(Into::into),
        Command::Get(args) => client::get(args).await.map_err(Into::into),
        Command::List(args) => client::list(args).await.map_err(Into::into),
        Command::Status(args) => client::status(args).await.map_err(Into::into),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
