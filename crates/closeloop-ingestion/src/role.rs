//! The `ingestion` role: feedback in (HTTP, gRPC, NATS, vendor webhooks) and
//! the account directory (gRPC `DirectoryService`, NATS directory intake).

use std::path::Path;
use std::sync::Arc;

use closeloop_directory::grpc::DirectoryGrpc;
use closeloop_directory::writer::DirectoryWriter;
use closeloop_proto::v1::directory_service_server::DirectoryServiceServer;
use closeloop_proto::v1::feedback_service_server::FeedbackServiceServer;
use closeloop_runtime::{Role, RoleError, Setup, Started};
use sqlx::migrate::Migrator;

use crate::grpc::FeedbackGrpc;
use crate::intake::Intake;
use crate::webhooks::Webhooks;
use crate::{directory_intake, http, nats};

const NAME: &str = "ingestion";

/// The role. Built from its configuration before anything connects, so a
/// bad webhooks file is reported at once.
pub struct Ingestion {
    webhooks: Option<Arc<Webhooks>>,
}

impl Ingestion {
    /// `webhooks`: the vendor webhooks mapping file, if any (validated here,
    /// secrets included).
    pub fn new(webhooks: Option<&Path>) -> Result<Ingestion, RoleError> {
        let webhooks = match webhooks {
            None => None,
            Some(path) => Some(Arc::new(Webhooks::load(path).map_err(|errs| {
                RoleError::new(
                    NAME,
                    format!(
                        "webhooks file {} is invalid:\n{}",
                        path.display(),
                        errs.iter()
                            .map(|e| format!("  {e}"))
                            .collect::<Vec<_>>()
                            .join("\n")
                    ),
                )
            })?)),
        };
        Ok(Ingestion { webhooks })
    }
}

impl Role for Ingestion {
    fn name(&self) -> &'static str {
        NAME
    }

    fn migrations(&self) -> Vec<&'static Migrator> {
        vec![&closeloop_directory::MIGRATOR]
    }

    fn start<'a>(&'a self, s: &'a mut Setup) -> Started<'a> {
        Box::pin(async move {
            let progress = closeloop_directory::project(s);
            let writer = DirectoryWriter::new(s.store.clone());
            for (aggregate, metrics) in writer.metrics() {
                s.executor(aggregate, metrics);
            }
            s.grpc(DirectoryServiceServer::new(DirectoryGrpc::new(
                writer.clone(),
                s.db.clone(),
                progress,
            )));
            let intake = Intake::new(s.catalog.clone(), s.db.clone(), s.store.clone());
            s.executor("feedback", intake.metrics());
            s.grpc(FeedbackServiceServer::new(FeedbackGrpc::new(
                intake.clone(),
            )));
            nats::ensure_streams(s.store.jetstream(), &s.prefix)
                .await
                .map_err(|e| RoleError::new(NAME, e))?;
            let directory_subject = directory_intake::directory_subject(&s.prefix);
            s.consume(
                nats::intake_spec(&s.prefix, "directory-intake", directory_subject),
                directory_intake::DirectoryIntake { writer },
            );
            if s.catalog.is_some() {
                s.consume(nats::feedback_intake_spec(&s.prefix), intake.clone());
            } else {
                tracing::warn!(
                    subject = %nats::feedback_subject(&s.prefix),
                    "no --programs file: feedback intake answers 503 and the NATS intake subject is not consumed"
                );
            }
            s.http(http::router(intake, self.webhooks.clone()));
            Ok(())
        })
    }
}
