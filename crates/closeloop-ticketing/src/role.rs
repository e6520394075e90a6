//! The `ticketing` role: the ticket aggregate's single writer, its view,
//! `TicketService`, and the consumer that opens the tickets routing decided.

use closeloop_directory::lookup::DirectoryLookup;
use closeloop_eventstore::consumer::Decoded;
use closeloop_proto::v1::ticket_service_server::TicketServiceServer;
use closeloop_runtime::{Role, Setup, Started};
use sqlx::migrate::Migrator;

use crate::commands::TicketCommands;
use crate::grpc::{References, TicketGrpc};
use crate::{projection, routes};

/// The role.
pub struct Ticketing;

impl Role for Ticketing {
    fn name(&self) -> &'static str {
        "ticketing"
    }

    /// Its own tables, and the directory's it reads through the lookup.
    fn migrations(&self) -> Vec<&'static Migrator> {
        vec![&crate::MIGRATOR, &closeloop_directory::MIGRATOR]
    }

    fn start<'a>(&'a self, s: &'a mut Setup) -> Started<'a> {
        Box::pin(async move {
            let progress = s.project(projection::TicketStateProjection);
            s.project_background(crate::notifications::TicketNotifications);
            s.project_background(crate::sla::TicketSla);
            let commands = TicketCommands::new(s.store.clone());
            s.executor(crate::AGGREGATE, commands.metrics());
            s.consume(
                routes::consumer_spec(&s.prefix),
                Decoded(routes::RouteOpener::new(commands.clone())),
            );
            let references = References {
                directory: DirectoryLookup::new(s.db.clone(), s.store.clone()),
                catalog: s.catalog.clone(),
            };
            let grpc = TicketGrpc::new(commands, s.db.clone(), progress, references)
                .with_clock(s.store.clock().clone());
            s.http(crate::http::router(grpc.clone()));
            s.grpc(TicketServiceServer::new(grpc));
            Ok(())
        })
    }
}
