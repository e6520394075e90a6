//! The `analytics` role: the fact projections and `AnalyticsService`.

use closeloop_proto::v1::analytics_service_server::AnalyticsServiceServer;
use closeloop_runtime::{Role, Setup, Started};
use sqlx::migrate::Migrator;

use crate::grpc::AnalyticsGrpc;
use crate::view::{AccountFacts, ResponseFacts, RoutingFacts, SlaFacts, TicketFacts};

/// The role.
pub struct Analytics;

impl Role for Analytics {
    fn name(&self) -> &'static str {
        "analytics"
    }

    /// Its own tables, and the directory's it reads (teams).
    fn migrations(&self) -> Vec<&'static Migrator> {
        vec![&crate::MIGRATOR, &closeloop_directory::MIGRATOR]
    }

    fn start<'a>(&'a self, s: &'a mut Setup) -> Started<'a> {
        Box::pin(async move {
            // Teams come from the directory's views.
            closeloop_directory::project_background(s);
            s.project_background(TicketFacts);
            s.project_background(SlaFacts);
            s.project_background(ResponseFacts);
            s.project_background(AccountFacts);
            s.project_background(RoutingFacts);
            s.grpc(AnalyticsServiceServer::new(AnalyticsGrpc {
                db: s.db.clone(),
                catalog: s.catalog.clone(),
                clock: s.store.clock().clone(),
            }));
            Ok(())
        })
    }
}
