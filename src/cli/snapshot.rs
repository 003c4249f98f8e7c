//! `astrolabe snapshot export|import`: backups of the graph kept in Redis, as one file.
//!
//! `export` reads what a restart would restore (the current snapshot and the log after it) and
//! writes it to a file (checksummed, versioned; written beside the target and renamed into place).
//! `import` writes a file into Redis as a new snapshot generation and switches to it; older
//! generations are removed only after the switch. Import into a prefix no running server writes to
//! (a restore before start): a running server's next snapshot would supersede it.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::Failure;
use super::redis::RedisArgs;
use crate::persistence;

/// Arguments of `snapshot`.
#[derive(Debug, Args)]
pub struct SnapshotArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: SnapshotAction,
}

/// Backup actions.
#[derive(Debug, Subcommand)]
pub enum SnapshotAction {
    /// Write the graph stored in Redis to a file.
    Export {
        /// The file to write.
        #[arg(long, short)]
        out: PathBuf,
        /// Where the graph is kept.
        #[command(flatten)]
        redis: RedisArgs,
    },
    /// Write a snapshot file into Redis as the current generation.
    Import {
        /// The file to read.
        #[arg(long, short)]
        file: PathBuf,
        /// Where the graph is kept.
        #[command(flatten)]
        redis: RedisArgs,
    },
}

pub(super) fn run(args: &SnapshotArgs, out: &mut impl std::io::Write) -> Result<(), Failure> {
    let line = |out: &mut dyn std::io::Write, s: String| {
        writeln!(out, "{s}").map_err(|e| Failure::runtime(format!("writing output: {e}")))
    };
    match &args.action {
        SnapshotAction::Export { out: path, redis } => {
            let n = persistence::export(&redis.config(), path)
                .map_err(|e| Failure::runtime(format!("export from {}: {e}", redis.describe())))?;
            line(out, format!("exported {n} objects to {}", path.display()))
        }
        SnapshotAction::Import { file, redis } => {
            let r = persistence::import(&redis.config(), file)
                .map_err(|e| Failure::runtime(format!("import into {}: {e}", redis.describe())))?;
            line(
                out,
                format!(
                    "imported {} objects as generation {} ({} bytes) in {:.1?}",
                    r.objects, r.generation, r.bytes, r.duration
                ),
            )
        }
    }
}
