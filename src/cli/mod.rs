//! Command line: clap parses raw arguments, then each subcommand turns them into settings and
//! runs. Exit statuses follow SPEC §8.

pub mod admin;
mod check;
mod demo;
mod generate;
mod poll;
mod store;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "pollerd",
    version,
    about = "Polls REST APIs and delivers what changed as signed webhooks"
)]
pub struct Args {
    /// Settings file [default: $CONFIGURATION_DIRECTORY/pollerd.toml or /etc/pollerd/pollerd.toml]
    #[arg(long, global = true, env = "POLLERD_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon (systemd Type=notify aware)
    Run,
    /// Validate the settings and instance files without starting anything
    Check {
        /// Instance files to check [default: every file in instances_dir]
        files: Vec<PathBuf>,
    },
    /// One dry poll: print the notifications it would send; delivers nothing, changes no state
    Poll {
        instance: String,
        #[arg(long)]
        resource: Option<String>,
        /// RFC 3339 start, e.g. 2026-01-02T03:04:05Z [default: one hour ago]
        #[arg(long)]
        since: Option<String>,
    },
    /// Ask the running daemon for its status: a summary (exit 2 when a resource is failing or backlogged)
    Status {
        /// The whole report as JSON (every resource, whatever the other options)
        #[arg(long)]
        json: bool,
        /// Every resource's row [default: the worst 10 when there are more]
        #[arg(long)]
        all: bool,
        /// Only this instance's resources
        #[arg(long, value_name = "NAME")]
        instance: Option<String>,
        /// Only the resources that are failing or backlogged
        #[arg(long)]
        failing: bool,
    },
    /// List, replay or drop dead letters of the running daemon
    #[command(name = "dead-letters", subcommand)]
    DeadLetters(DeadLetterCommand),
    /// Run one reconcile (the DELETED check) of an instance's resources through the daemon now
    Reconcile {
        instance: String,
        /// Only this resource [default: every resource with deletedCheckInterval]
        #[arg(long)]
        resource: Option<String>,
        /// Print the ids it would report as deleted; send nothing, change nothing
        #[arg(long)]
        dry_run: bool,
        /// Report the deletions even when they are more than deletedMaxFraction of the known ids
        #[arg(long)]
        allow_mass_delete: bool,
        #[arg(long)]
        json: bool,
    },
    /// Move the stopped daemon's store to another engine (sled to PostgreSQL)
    #[command(subcommand)]
    Store(StoreCommand),
    /// Run the real daemon against a built-in simulated ConnectWise API and a local receiver
    Demo,
    /// Write man pages or shell completions (used when building the packages)
    #[command(hide = true)]
    Generate {
        what: generate::Artifact,
        /// Directory to write into (created if missing)
        #[arg(long, value_name = "DIR")]
        out_dir: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Copy a stopped single-host sled store into an empty PostgreSQL database, in one transaction
    ///
    /// Copies every resource's watermark, seen ids, known ids (the DELETED check) and queued
    /// notifications (bodies, order and attempt state), and the dead letters, then prints the
    /// counts per kind. Refused while a daemon runs on the sled store (sled's lock on the
    /// directory), and when the database already holds state or a held lease for any instance
    /// being copied (a copy never merges). One transaction: a failure leaves nothing copied.
    /// Copied instances get no lease: the nodes claim them. The target is shown as server and
    /// database only, never with its password.
    Copy {
        /// The sled store: sled:STATE_DIR
        #[arg(long, value_name = "sled:PATH")]
        from: String,
        /// postgres://… or a secret reference (${credential:NAME}, ${env:NAME}, ${file:/path})
        /// [default: the settings' [store] url]
        #[arg(long, value_name = "URL")]
        to: Option<String>,
        /// Print what would be copied; write nothing
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum DeadLetterCommand {
    /// List the dead letters
    List,
    /// Send dead letters again: back to the end of their resource's queue, same event id
    Replay {
        ids: Vec<String>,
        #[arg(long, conflicts_with = "ids")]
        all: bool,
    },
    /// Delete dead letters for good
    Drop {
        ids: Vec<String>,
        #[arg(long, conflicts_with = "ids")]
        all: bool,
    },
}

pub fn main() -> ExitCode {
    let args = Args::parse();
    match args.command {
        Command::Check { files } => check::run(args.config.as_deref(), &files),
        Command::Run => crate::daemon::run(args.config.as_deref()),
        Command::Poll {
            instance,
            resource,
            since,
        } => poll::run(
            args.config.as_deref(),
            &instance,
            resource.as_deref(),
            since.as_deref(),
        ),
        Command::Status {
            json,
            all,
            instance,
            failing,
        } => match admin_socket(args.config.as_deref()) {
            Ok(socket) => admin::status(
                &socket,
                json,
                &admin::StatusSelection {
                    all,
                    instance,
                    failing,
                },
            ),
            Err(code) => code,
        },
        Command::DeadLetters(action) => {
            let action = match action {
                DeadLetterCommand::List => admin::DeadLetterAction::List,
                DeadLetterCommand::Replay { ids, all } => {
                    admin::DeadLetterAction::Replay(selection(ids, all))
                }
                DeadLetterCommand::Drop { ids, all } => {
                    admin::DeadLetterAction::Drop(selection(ids, all))
                }
            };
            if matches!(&action, admin::DeadLetterAction::Replay(Some(ids)) | admin::DeadLetterAction::Drop(Some(ids)) if ids.is_empty())
            {
                eprintln!("pollerd dead-letters: name the ids to act on, or give --all");
                return ExitCode::FAILURE;
            }
            match admin_socket(args.config.as_deref()) {
                Ok(socket) => admin::dead_letters(&socket, action),
                Err(code) => code,
            }
        }
        Command::Reconcile {
            instance,
            resource,
            dry_run,
            allow_mass_delete,
            json,
        } => {
            let command = crate::admin::ReconcileCommand {
                instance,
                resource,
                dry_run,
                allow_mass_delete,
            };
            match admin_socket(args.config.as_deref()) {
                Ok(socket) => admin::reconcile(&socket, &command, json),
                Err(code) => code,
            }
        }
        Command::Store(StoreCommand::Copy { from, to, dry_run }) => {
            store::copy(&store::CopyRequest {
                config: args.config.as_deref(),
                from: &from,
                to: to.as_deref(),
                dry_run,
            })
        }
        Command::Demo => demo::run(),
        Command::Generate { what, out_dir } => generate::run(what, &out_dir),
    }
}

/// `--all` means every dead letter.
fn selection(ids: Vec<String>, all: bool) -> Option<Vec<String>> {
    (!all).then_some(ids)
}

/// The admin socket named by the settings.
fn admin_socket(config: Option<&std::path::Path>) -> Result<PathBuf, ExitCode> {
    let env = crate::config::Environment::from_process();
    crate::config::Settings::load(config, &env)
        .map(|s| s.admin_socket)
        .map_err(|d| {
            eprintln!("{d}");
            ExitCode::FAILURE
        })
}
