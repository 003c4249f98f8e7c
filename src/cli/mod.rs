//! The command line: `astrolabe inspect SOURCE [filters] [--output table|json|dot]`,
//! `astrolabe serve [flags]`, `astrolabe snapshot export|import`.
//!
//! Exit codes: 0 success, 1 the source or the named object could not be found or read, 2 a usage
//! error (bad flag, selector, kind or object path).

mod inspect;
mod redis;
mod serve;
mod snapshot;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use inspect::InspectArgs;
pub use redis::RedisArgs;
pub use serve::ServeArgs;
pub use snapshot::{SnapshotAction, SnapshotArgs};

/// Command-line interface.
#[derive(Debug, Parser)]
#[command(
    name = "astrolabe",
    version,
    about = "A live graph of a Kubernetes cluster's resources and their relationships"
)]
pub struct Cli {
    /// Log filter (tracing EnvFilter syntax, e.g. `info` or `astrolabe=debug`); `info` for
    /// `serve` and `warn` for `inspect` when not given.
    #[arg(long, env = "ASTROLABE_LOG", global = true)]
    pub log: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load a source (a manifest file or directory, a `kubectl get -o json|yaml` dump, or the
    /// built-in demo cluster `demo[:N]`) and print its graph or part of it.
    Inspect(InspectArgs),
    /// Serve the HTTP API (v1 compatibility, v2 graph queries, health, metrics) over a source.
    Serve(Box<ServeArgs>),
    /// Back up the graph kept in Redis to a file, or restore it from one.
    Snapshot(SnapshotArgs),
}

/// A failure with the exit code it maps to.
#[derive(Debug)]
pub struct Failure {
    /// 1 (runtime) or 2 (usage).
    pub code: u8,
    /// What to tell the user.
    pub message: String,
}

impl Failure {
    pub(crate) fn usage(message: impl Into<String>) -> Failure {
        Failure {
            code: 2,
            message: message.into(),
        }
    }

    pub(crate) fn runtime(message: impl Into<String>) -> Failure {
        Failure {
            code: 1,
            message: message.into(),
        }
    }
}

/// Parses the process arguments and runs the command.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_log = match cli.command {
        Command::Serve(_) => "info",
        Command::Inspect(_) | Command::Snapshot(_) => "warn",
    };
    init_logging(cli.log.as_deref().unwrap_or(default_log));
    // rustls needs its crypto provider chosen once per process (the cluster's API, rediss://).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let result = match cli.command {
        Command::Inspect(args) => {
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            inspect::run(&args, &mut out)
        }
        Command::Serve(args) => serve::run(&args),
        Command::Snapshot(args) => {
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            snapshot::run(&args, &mut out)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            #[allow(clippy::print_stderr)]
            {
                eprintln!("error: {}", f.message);
            }
            ExitCode::from(f.code)
        }
    }
}

fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}
