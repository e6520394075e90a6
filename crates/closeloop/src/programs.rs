//! `closeloop programs ...`: work with programs files offline.

use crate::output::outln;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use closeloop_programs::Catalog;

#[derive(Args)]
pub struct ProgramsArgs {
    #[command(subcommand)]
    command: ProgramsCommand,
}

#[derive(Subcommand)]
enum ProgramsCommand {
    /// Check a programs file; print every error with its location.
    Validate {
        /// The programs YAML file.
        file: PathBuf,
    },
}

pub fn run(args: ProgramsArgs) -> ExitCode {
    match args.command {
        ProgramsCommand::Validate { file } => match Catalog::load(&file) {
            Ok(c) => {
                outln!(
                    "{}: valid: {} programs, {} workflows, version {}",
                    file.display(),
                    c.programs.len(),
                    c.workflow_count(),
                    c.version
                );
                for p in &c.programs {
                    for w in &p.workflows {
                        outln!(
                            "  {:<20} {:<32} owner {:<24} when {}",
                            p.id,
                            w.id,
                            w.owner.describe(),
                            w.when
                        );
                    }
                }
                ExitCode::SUCCESS
            }
            Err(errors) => {
                for e in &errors {
                    // A whole-file error (unreadable) is located at the file.
                    if e.location == file.display().to_string() {
                        eprintln!("{}: {}", file.display(), e.message);
                    } else {
                        eprintln!("{}: {e}", file.display());
                    }
                }
                eprintln!(
                    "{}: {} error{}",
                    file.display(),
                    errors.len(),
                    if errors.len() == 1 { "" } else { "s" }
                );
                ExitCode::from(crate::client::exit::INVALID)
            }
        },
    }
}
