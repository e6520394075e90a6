//! `closeloop directory ...`: import and look up accounts, people and teams.

use crate::output::outln;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use closeloop_directory::rows::DirectoryFile;
use closeloop_proto::v1;
use closeloop_proto::v1::directory_service_client::DirectoryServiceClient;
use tonic::transport::Channel;

use crate::client::{self, CliError};

#[derive(Args)]
pub struct DirectoryArgs {
    /// gRPC address of a closeloop server running the ingestion role.
    #[arg(
        long,
        global = true,
        env = "CLOSELOOP_SERVER",
        default_value = "http://127.0.0.1:50051"
    )]
    server: String,
    /// Who is acting (an e-mail), recorded on the events.
    #[arg(long, global = true, env = "CLOSELOOP_ACTOR")]
    actor: Option<String>,
    #[command(subcommand)]
    command: DirectoryCommand,
}

#[derive(Subcommand)]
enum DirectoryCommand {
    /// Upsert people, teams and accounts from a YAML file (people:, teams:,
    /// accounts:) or a CSV file (accounts, people or teams, told apart by the
    /// header). Unchanged records write nothing; every bad record is reported.
    Import { file: PathBuf },
    /// Show an account and its account team.
    Account { id: String },
    /// Show a person and their manager.
    Person { email: String },
    /// Show a team and its members in rotation order.
    Team { id: String },
}

/// One record to upsert, with where it came from (for error messages).
enum Record {
    Person(String, v1::Person),
    Team(String, v1::Team),
    Account(String, v1::Account),
}

fn from_yaml(text: &str) -> Result<Vec<Record>, CliError> {
    let f: DirectoryFile =
        serde_norway::from_str(text).map_err(|e| CliError::Usage(e.to_string()))?;
    let mut out = Vec::new();
    for (i, p) in f.people.iter().enumerate() {
        out.push(Record::Person(
            format!("people[{i}] ({})", p.email),
            p.to_proto(),
        ));
    }
    for (i, t) in f.teams.iter().enumerate() {
        out.push(Record::Team(format!("teams[{i}] ({})", t.id), t.to_proto()));
    }
    for (i, a) in f.accounts.iter().enumerate() {
        out.push(Record::Account(
            format!("accounts[{i}] ({})", a.id),
            a.to_proto(),
        ));
    }
    Ok(out)
}

/// CSV: `id,name,region,segment,<role>...` (accounts), `email,name,manager_email`
/// (people) or `id,name,members` with members separated by `;` (teams).
/// People and teams may add `chat_kind,chat_url`; people `channels`
/// (separated by `;`), `digest_hour` and `digest_time_zone`.
fn from_csv(text: &str) -> Result<Vec<Record>, CliError> {
    let mut r = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let header: Vec<String> = r
        .headers()
        .map_err(|e| CliError::Usage(format!("CSV header: {e}")))?
        .iter()
        .map(|h| h.to_ascii_lowercase())
        .collect();
    let has = |c: &str| header.iter().any(|h| h == c);
    let mut out = Vec::new();
    for (i, row) in r.records().enumerate() {
        let row = row.map_err(|e| CliError::Usage(format!("CSV: {e}")))?;
        let line = row.position().map_or(i as u64 + 2, |p| p.line());
        let get = |c: &str| {
            header
                .iter()
                .position(|h| h == c)
                .and_then(|i| row.get(i))
                .unwrap_or_default()
                .to_string()
        };
        let chat = || {
            (!get("chat_url").is_empty() || !get("chat_kind").is_empty()).then(|| v1::ChatWebhook {
                kind: get("chat_kind"),
                url: get("chat_url"),
            })
        };
        if has("email") && !has("id") {
            let notify = if get("channels").is_empty()
                && get("digest_hour").is_empty()
                && get("digest_time_zone").is_empty()
            {
                None
            } else {
                let hour = get("digest_hour");
                Some(v1::NotificationPreferences {
                    channels: get("channels")
                        .split(';')
                        .map(str::trim)
                        .filter(|c| !c.is_empty())
                        .map(str::to_string)
                        .collect(),
                    digest_hour: if hour.is_empty() {
                        None
                    } else {
                        Some(hour.parse().map_err(|_| {
                            CliError::Usage(format!(
                                "line {line}: digest_hour {hour:?} is not an hour (0-23)"
                            ))
                        })?)
                    },
                    digest_time_zone: get("digest_time_zone"),
                })
            };
            out.push(Record::Person(
                format!("line {line}"),
                v1::Person {
                    email: get("email"),
                    name: get("name"),
                    manager_email: if has("manager_email") {
                        get("manager_email")
                    } else {
                        get("manager")
                    },
                    sequence: 0,
                    notify,
                    chat: chat(),
                },
            ));
        } else if has("id") && has("members") {
            out.push(Record::Team(
                format!("line {line}"),
                v1::Team {
                    id: get("id"),
                    name: get("name"),
                    members: get("members")
                        .split(';')
                        .map(str::trim)
                        .filter(|m| !m.is_empty())
                        .map(str::to_string)
                        .collect(),
                    sequence: 0,
                    chat: chat(),
                },
            ));
        } else if has("id") {
            let fixed = ["id", "name", "region", "segment"];
            let team = header
                .iter()
                .enumerate()
                .filter(|(_, h)| !fixed.contains(&h.as_str()))
                .filter_map(|(i, role)| {
                    let email = row.get(i).unwrap_or_default();
                    (!email.is_empty()).then(|| v1::AccountTeamMember {
                        role: role.clone(),
                        email: email.to_string(),
                    })
                })
                .collect();
            out.push(Record::Account(
                format!("line {line}"),
                v1::Account {
                    id: get("id"),
                    name: get("name"),
                    region: get("region"),
                    segment: get("segment"),
                    team,
                    sequence: 0,
                },
            ));
        } else {
            return Err(CliError::Usage(
                "CSV header must start an accounts file (id,name,...), a people file (email,name,manager_email) or a teams file (id,name,members)".into(),
            ));
        }
    }
    Ok(out)
}

fn read(path: &Path) -> Result<Vec<Record>, CliError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", path.display())))?;
    let csv = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    let records = if csv {
        from_csv(&text)
    } else {
        from_yaml(&text)
    };
    records.map_err(|e| match e {
        CliError::Usage(m) => CliError::Usage(format!("{}: {m}", path.display())),
        other => other,
    })
}

async fn import(
    c: &mut DirectoryServiceClient<Channel>,
    file: &Path,
    records: Vec<Record>,
    actor: String,
) -> Result<bool, CliError> {
    let (mut changed, mut unchanged, mut failed) = (0, 0, 0);
    for rec in records {
        let (place, result) = match rec {
            Record::Person(place, person) => (
                place,
                c.upsert_person(v1::UpsertPersonRequest {
                    person: Some(person),
                    actor: actor.clone(),
                    ..Default::default()
                })
                .await,
            ),
            Record::Team(place, team) => (
                place,
                c.upsert_team(v1::UpsertTeamRequest {
                    team: Some(team),
                    actor: actor.clone(),
                    ..Default::default()
                })
                .await,
            ),
            Record::Account(place, account) => (
                place,
                c.upsert_account(v1::UpsertAccountRequest {
                    account: Some(account),
                    actor: actor.clone(),
                    ..Default::default()
                })
                .await,
            ),
        };
        match result {
            Ok(r) if r.get_ref().changed => changed += 1,
            Ok(_) => unchanged += 1,
            Err(s) if s.code() == tonic::Code::InvalidArgument => {
                failed += 1;
                eprintln!("{}: {place}: {}", file.display(), s.message());
            }
            // Anything else (server down, ...) stops the import: re-running it is safe.
            Err(s) => return Err(CliError::Rpc(s)),
        }
    }
    outln!(
        "{}: {changed} upserted, {unchanged} unchanged, {failed} rejected",
        file.display()
    );
    Ok(failed == 0)
}

pub async fn run(args: DirectoryArgs) -> ExitCode {
    let result = async {
        // A file to import is read and checked before the server is asked:
        // a missing or malformed file is the error to report, not an
        // unreachable server.
        let records = match &args.command {
            DirectoryCommand::Import { file } => read(file)?,
            _ => Vec::new(),
        };
        let mut c = DirectoryServiceClient::new(client::channel(&args.server).await?);
        match &args.command {
            DirectoryCommand::Import { file } => {
                let ok = import(
                    &mut c,
                    file,
                    records,
                    args.actor.clone().unwrap_or_default(),
                )
                .await?;
                return Ok(if ok {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(client::exit::INVALID)
                });
            }
            DirectoryCommand::Account { id } => {
                let a = c
                    .get_account(v1::GetAccountRequest {
                        account_id: id.clone(),
                        min_sequence: 0,
                    })
                    .await?
                    .into_inner();
                outln!(
                    "{:<10} {}\n{:<10} {}\n{:<10} {}\n{:<10} {}",
                    "id",
                    a.id,
                    "name",
                    a.name,
                    "region",
                    a.region,
                    "segment",
                    a.segment
                );
                for m in a.team {
                    outln!("  {:<24} {}", m.role, m.email);
                }
            }
            DirectoryCommand::Person { email } => {
                let p = c
                    .get_person(v1::GetPersonRequest {
                        email: email.clone(),
                        min_sequence: 0,
                    })
                    .await?
                    .into_inner();
                outln!(
                    "{:<10} {}\n{:<10} {}\n{:<10} {}",
                    "email",
                    p.email,
                    "name",
                    p.name,
                    "manager",
                    if p.manager_email.is_empty() {
                        "-"
                    } else {
                        &p.manager_email
                    }
                );
            }
            DirectoryCommand::Team { id } => {
                let t = c
                    .get_team(v1::GetTeamRequest {
                        team_id: id.clone(),
                        min_sequence: 0,
                    })
                    .await?
                    .into_inner();
                outln!("{:<10} {}\n{:<10} {}", "id", t.id, "name", t.name);
                for m in t.members {
                    outln!("  {m}");
                }
            }
        }
        Ok::<_, CliError>(ExitCode::SUCCESS)
    }
    .await;
    result.unwrap_or_else(|e| client::report(&args.server, e))
}
