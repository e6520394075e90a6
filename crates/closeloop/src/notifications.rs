//! `closeloop notifications`: the notification role's offline checks.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use crate::client::exit;
use crate::output::outln;

#[derive(Args)]
pub struct NotificationsArgs {
    #[command(subcommand)]
    command: NotificationsCommand,
}

#[derive(Subcommand)]
enum NotificationsCommand {
    /// Compile the notification templates (the shipped ones, overridden by
    /// DIR's) and render each for every notification kind, as the role does
    /// at start: exit 0 when all render, 3 with the first error (its file,
    /// line and kind).
    CheckTemplates {
        /// The template directory `serve --templates` would use.
        #[arg(long, env = "CLOSELOOP_TEMPLATES")]
        templates: Option<PathBuf>,
    },
}

pub fn run(args: NotificationsArgs) -> ExitCode {
    match args.command {
        NotificationsCommand::CheckTemplates { templates } => {
            match closeloop_notification::templates::Templates::load(templates.as_deref()) {
                Ok(_) => {
                    outln!(
                        "templates ok: {} for {} notification kinds ({})",
                        closeloop_notification::templates::PARTS.join(", "),
                        closeloop_notification::templates::KINDS.len(),
                        match &templates {
                            Some(d) => format!("{} over the shipped ones", d.display()),
                            None => "the shipped ones".to_string(),
                        }
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(exit::INVALID)
                }
            }
        }
    }
}
