//! `closeloop.v1.TicketService` over gRPC.

use std::sync::Arc;
use std::time::Duration;

use closeloop_directory::lookup::DirectoryLookup;
use closeloop_directory::records::{AccountKind, PersonKind};
use closeloop_programs::Catalog;

use closeloop_domain::ticket::{Closure, Origin};
use closeloop_domain::values::{REASON_MAX, TEXT_MAX, TITLE_MAX, Violations};
use closeloop_domain::{
    AccountId, Email, FieldViolation, ProgramId, RequestId, Text, TicketCommand, TicketId,
};
use closeloop_proto::v1::ticket_service_server::TicketService;
use closeloop_proto::{convert, v1};
use closeloop_readmodel::{Db, Progress, wait_for};
use tonic::{Request, Response, Status};

use crate::commands::TicketCommands;
use crate::errors::TicketError;
use crate::projection;
use crate::queries::{self, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, PageToken, TicketFilter};
use closeloop_eventstore::{Carried, EventContext, Executed};

/// Longest a query waits for the read model to reach its `min_sequence`.
pub const READ_YOUR_WRITES_TIMEOUT: Duration = Duration::from_secs(10);

/// The gRPC service. Commands go to the event store; queries to the read model.
#[derive(Clone)]
pub struct TicketGrpc {
    commands: TicketCommands,
    db: Db,
    progress: Progress,
    references: References,
    clock: closeloop_eventstore::Clock,
}

/// What a client's command may name: accounts and people of the directory,
/// programs of the programs file (`None`: no programs file configured).
#[derive(Clone)]
pub struct References {
    pub directory: DirectoryLookup,
    pub catalog: Option<Arc<Catalog>>,
}

impl References {
    /// Every account, person and program `cmd` names that does not exist,
    /// as field violations (answered `NOT_FOUND`), or `ProgramsNotConfigured`.
    async fn check(&self, cmd: &TicketCommand) -> Result<(), TicketError> {
        let unavailable =
            |e: closeloop_directory::lookup::LookupError| TicketError::Unavailable(e.to_string());
        let mut missing = Vec::new();
        match cmd {
            TicketCommand::Open {
                account_id,
                owner,
                program_id,
                ..
            } => {
                if !self
                    .directory
                    .exists::<AccountKind>(account_id.as_str())
                    .await
                    .map_err(unavailable)?
                {
                    missing.push(FieldViolation::new(
                        "account_id",
                        format!("{account_id} is not an account in the directory"),
                    ));
                }
                self.person(owner, "owner_email", &mut missing).await?;
                match (program_id, &self.catalog) {
                    (None, _) => {}
                    (Some(p), None) => {
                        return Err(TicketError::ProgramsNotConfigured(p.to_string()));
                    }
                    (Some(p), Some(c)) if c.program(p.as_str()).is_none() => {
                        let known: Vec<_> = c.programs.iter().map(|p| p.id.as_str()).collect();
                        missing.push(FieldViolation::new(
                            "program_id",
                            format!(
                                "{p} is not a configured program; known: {}",
                                known.join(", ")
                            ),
                        ));
                    }
                    (Some(_), Some(_)) => {}
                }
            }
            TicketCommand::Reassign { new_owner, .. } => {
                self.person(new_owner, "new_owner_email", &mut missing)
                    .await?;
            }
            _ => {}
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(TicketError::UnknownReferences(missing))
        }
    }

    async fn person(
        &self,
        email: &Email,
        field: &str,
        missing: &mut Vec<FieldViolation>,
    ) -> Result<(), TicketError> {
        let known = self
            .directory
            .exists::<PersonKind>(email.as_str())
            .await
            .map_err(|e| TicketError::Unavailable(e.to_string()))?;
        if !known {
            missing.push(FieldViolation::new(
                field,
                format!(
                    "{email} is not a person in the directory (an owner needs a directory entry, \
                     with a manager to escalate to: closeloop directory import)"
                ),
            ));
        }
        Ok(())
    }
}

impl TicketGrpc {
    pub fn new(
        commands: TicketCommands,
        db: Db,
        progress: Progress,
        references: References,
    ) -> Self {
        TicketGrpc {
            commands,
            db,
            progress,
            references,
            clock: closeloop_eventstore::Clock::Wall,
        }
    }

    /// Remaining SLA times are counted from `clock`'s time.
    pub fn with_clock(mut self, clock: closeloop_eventstore::Clock) -> Self {
        self.clock = clock;
        self
    }

    async fn run<T>(
        &self,
        req: &Request<T>,
        request_id: &str,
        ticket_id: Option<&str>,
        actor: &str,
        parse: impl FnOnce(&mut Violations) -> Option<TicketCommand>,
    ) -> Result<Response<v1::TicketCommandResponse>, Status> {
        let mut v = Violations::new();
        let rid = v.check(RequestId::parse("request_id", request_id));
        let id = match ticket_id {
            Some(t) => v.check(TicketId::parse("ticket_id", t)),
            None => rid.as_ref().map(TicketId::for_manual_request),
        };
        let actor = if actor.trim().is_empty() {
            Some(String::new())
        } else {
            v.check(Email::parse("actor", actor)).map(|e| e.to_string())
        };
        let cmd = parse(&mut v);
        let (Some(rid), Some(id), Some(actor), Some(cmd), true) =
            (rid, id, actor, cmd, v.is_empty())
        else {
            return Err(TicketError::Invalid(v.0).into());
        };
        self.references.check(&cmd).await?;
        let ctx = event_context(req, &rid, actor);
        let Executed {
            state: ticket,
            sequence,
            replayed,
        } = self
            .commands
            .execute(id, rid.as_str(), &ctx, &cmd)
            .await
            .map_err(TicketError::from)?;
        Ok(Response::new(v1::TicketCommandResponse {
            ticket: Some(convert::ticket(&ticket)),
            sequence,
            replayed,
        }))
    }

    async fn catch_up(&self, min_sequence: u64) -> Result<(), TicketError> {
        if min_sequence == 0 {
            return Ok(());
        }
        let mut progress = self.progress.clone();
        wait_for(
            &self.db,
            projection::NAME,
            &mut progress,
            min_sequence,
            READ_YOUR_WRITES_TIMEOUT,
        )
        .await
        .map(|_| ())
        .map_err(|at| TicketError::NotCaughtUp {
            at,
            wanted: min_sequence,
        })
    }
}

fn event_context<T>(req: &Request<T>, rid: &RequestId, actor: String) -> EventContext {
    let md = req.metadata();
    Carried::from_lookup(|k| md.get(k).and_then(|v| v.to_str().ok()).map(str::to_string))
        .context(rid.as_str(), actor)
}

fn text(v: &mut Violations, field: &str, value: &str, max: usize) -> Option<Text> {
    v.check(Text::parse(field, value, max))
}

#[tonic::async_trait]
impl TicketService for TicketGrpc {
    async fn open_ticket(
        &self,
        req: Request<v1::OpenTicketRequest>,
    ) -> Result<Response<v1::TicketCommandResponse>, Status> {
        let r = req.get_ref();
        self.run(&req, &r.request_id, None, &r.actor, |v| {
            let account_id = v.check(AccountId::parse("account_id", &r.account_id));
            let owner = v.check(Email::parse("owner_email", &r.owner_email));
            let program_id = if r.program_id.trim().is_empty() {
                Some(None)
            } else {
                v.check(ProgramId::parse("program_id", &r.program_id))
                    .map(Some)
            };
            let title = v.check(Text::parse_optional("title", &r.title, TITLE_MAX));
            Some(TicketCommand::Open {
                account_id: account_id?,
                owner: owner?,
                program_id: program_id?,
                title: title?,
                origin: Origin::Manual,
                plan: Box::default(),
            })
        })
        .await
    }

    async fn log_contact(
        &self,
        req: Request<v1::LogContactRequest>,
    ) -> Result<Response<v1::TicketCommandResponse>, Status> {
        let r = req.get_ref();
        self.run(&req, &r.request_id, Some(&r.ticket_id), &r.actor, |v| {
            let channel = convert::from_channel(r.channel);
            if channel.is_none() {
                v.push(FieldViolation::new(
                    "channel",
                    if r.channel == v1::ContactChannel::Unspecified as i32 {
                        "is required: PHONE, EMAIL, MEETING or OTHER".to_string()
                    } else {
                        format!(
                            "{} is not a contact channel: use PHONE, EMAIL, MEETING or OTHER",
                            r.channel
                        )
                    },
                ));
            }
            let summary = text(v, "summary", &r.summary, TEXT_MAX);
            Some(TicketCommand::LogContact {
                channel: channel?,
                summary: summary?,
            })
        })
        .await
    }

    async fn add_note(
        &self,
        req: Request<v1::AddNoteRequest>,
    ) -> Result<Response<v1::TicketCommandResponse>, Status> {
        let r = req.get_ref();
        self.run(&req, &r.request_id, Some(&r.ticket_id), &r.actor, |v| {
            Some(TicketCommand::AddNote {
                text: text(v, "text", &r.text, TEXT_MAX)?,
            })
        })
        .await
    }

    async fn reassign_ticket(
        &self,
        req: Request<v1::ReassignTicketRequest>,
    ) -> Result<Response<v1::TicketCommandResponse>, Status> {
        let r = req.get_ref();
        self.run(&req, &r.request_id, Some(&r.ticket_id), &r.actor, |v| {
            let new_owner = v.check(Email::parse("new_owner_email", &r.new_owner_email));
            let reason = text(v, "reason", &r.reason, REASON_MAX);
            Some(TicketCommand::Reassign {
                new_owner: new_owner?,
                reason: reason?,
            })
        })
        .await
    }

    async fn record_customer_reply(
        &self,
        req: Request<v1::RecordCustomerReplyRequest>,
    ) -> Result<Response<v1::TicketCommandResponse>, Status> {
        let r = req.get_ref();
        self.run(&req, &r.request_id, Some(&r.ticket_id), &r.actor, |v| {
            Some(TicketCommand::RecordReply {
                text: text(v, "text", &r.text, TEXT_MAX)?,
            })
        })
        .await
    }

    async fn close_ticket(
        &self,
        req: Request<v1::CloseTicketRequest>,
    ) -> Result<Response<v1::TicketCommandResponse>, Status> {
        let r = req.get_ref();
        self.run(&req, &r.request_id, Some(&r.ticket_id), &r.actor, |v| {
            let opp = r.opportunity.as_ref().map(|o| (o.kind.as_str(), o.amount));
            match Closure::parse(&r.root_cause_category, &r.root_cause, &r.actions_taken, opp) {
                Ok(c) => Some(TicketCommand::Close(c)),
                Err(errs) => {
                    errs.into_iter().for_each(|e| v.push(e));
                    None
                }
            }
        })
        .await
    }

    async fn reopen_ticket(
        &self,
        req: Request<v1::ReopenTicketRequest>,
    ) -> Result<Response<v1::TicketCommandResponse>, Status> {
        let r = req.get_ref();
        self.run(&req, &r.request_id, Some(&r.ticket_id), &r.actor, |v| {
            Some(TicketCommand::Reopen {
                reason: text(v, "reason", &r.reason, REASON_MAX)?,
            })
        })
        .await
    }

    async fn wait_on_customer(
        &self,
        req: Request<v1::WaitRequest>,
    ) -> Result<Response<v1::TicketCommandResponse>, Status> {
        let r = req.get_ref();
        self.run(&req, &r.request_id, Some(&r.ticket_id), &r.actor, |v| {
            Some(TicketCommand::WaitOnCustomer {
                reason: text(v, "reason", &r.reason, REASON_MAX)?,
            })
        })
        .await
    }

    async fn end_wait(
        &self,
        req: Request<v1::WaitRequest>,
    ) -> Result<Response<v1::TicketCommandResponse>, Status> {
        let r = req.get_ref();
        self.run(&req, &r.request_id, Some(&r.ticket_id), &r.actor, |v| {
            Some(TicketCommand::EndWait {
                reason: text(v, "reason", &r.reason, REASON_MAX)?,
            })
        })
        .await
    }

    async fn get_ticket(
        &self,
        req: Request<v1::GetTicketRequest>,
    ) -> Result<Response<v1::GetTicketResponse>, Status> {
        let r = req.into_inner();
        let id = TicketId::parse("ticket_id", &r.ticket_id).map_err(TicketError::from)?;
        self.catch_up(r.min_sequence).await?;
        // One connection for the four reads: each connection taken from
        // the pool costs a round trip to its thread when it is given back.
        let mut conn = self.db.pool().acquire().await.map_err(queries::sql_err)?;
        match queries::get_ticket(&mut conn, &id.to_string()).await? {
            Some((ticket, activity)) => Ok(Response::new(v1::GetTicketResponse {
                ticket: Some(ticket),
                activity,
                notifications: crate::notifications::of_ticket(&mut conn, &id.to_string())
                    .await
                    .map_err(queries::sql_err)?,
                sla: crate::sla::of_ticket(&mut conn, id, self.clock.now())
                    .await
                    .map_err(queries::sql_err)?,
            })),
            None => Err(TicketError::Rule(closeloop_domain::RuleViolation::NotFound(id)).into()),
        }
    }

    async fn list_tickets(
        &self,
        req: Request<v1::ListTicketsRequest>,
    ) -> Result<Response<v1::ListTicketsResponse>, Status> {
        let r = req.into_inner();
        let mut v = Violations::new();
        let status = match v1::TicketStatus::try_from(r.status) {
            Ok(v1::TicketStatus::Unspecified) => None,
            Ok(s) => convert::from_status(s),
            Err(_) => {
                v.push(FieldViolation::new(
                    "status",
                    format!("{} is not a ticket status", r.status),
                ));
                None
            }
        };
        let opt =
            |v: &mut Violations, s: &str, f: &dyn Fn(&str) -> Result<String, FieldViolation>| {
                if s.trim().is_empty() {
                    None
                } else {
                    v.check(f(s))
                }
            };
        let owner_email = opt(&mut v, &r.owner_email, &|s| {
            Email::parse("owner_email", s).map(|e| e.to_string())
        });
        let program_id = opt(&mut v, &r.program_id, &|s| {
            ProgramId::parse("program_id", s).map(|e| e.to_string())
        });
        let account_id = opt(&mut v, &r.account_id, &|s| {
            AccountId::parse("account_id", s).map(|e| e.to_string())
        });
        let opened_after = r.opened_after.as_ref().map(convert::from_timestamp);
        let opened_before = r.opened_before.as_ref().map(convert::from_timestamp);
        if let (Some(a), Some(b)) = (opened_after, opened_before)
            && a >= b
        {
            v.push(FieldViolation::new(
                "opened_before",
                "must be later than opened_after",
            ));
        }
        let page_size = match r.page_size {
            0 => DEFAULT_PAGE_SIZE,
            n if n > MAX_PAGE_SIZE => {
                v.push(FieldViolation::new(
                    "page_size",
                    format!("is {n}; the maximum is {MAX_PAGE_SIZE}"),
                ));
                DEFAULT_PAGE_SIZE
            }
            n => n,
        };
        let after = if r.page_token.is_empty() {
            None
        } else {
            let t = PageToken::decode(&r.page_token);
            if t.is_none() {
                v.push(FieldViolation::new(
                    "page_token",
                    "is not a token returned by ListTickets",
                ));
            }
            t
        };
        v.into_result().map_err(TicketError::Invalid)?;
        self.catch_up(r.min_sequence).await?;
        let filter = TicketFilter {
            status,
            owner_email,
            program_id,
            account_id,
            opened_after,
            opened_before,
        };
        let (tickets, next) =
            queries::list_tickets(&self.db, &filter, page_size, after.as_ref()).await?;
        Ok(Response::new(v1::ListTicketsResponse {
            tickets,
            next_page_token: next.map(|t| t.encode()).unwrap_or_default(),
        }))
    }
}
