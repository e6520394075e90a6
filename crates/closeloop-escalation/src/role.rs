//! The `escalation` role: the SLA aggregate's single writer, the consumer
//! that observes ticket events, the timer view and worker, and
//! `EscalationService`.

use std::sync::Arc;

use closeloop_contracts::report::ReportContract;
use closeloop_contracts::sla::SlaContract;
use closeloop_directory::lookup::DirectoryLookup;
use closeloop_eventstore::Executor;
use closeloop_eventstore::consumer::Decoded;
use closeloop_proto::v1::escalation_service_server::EscalationServiceServer;
use closeloop_runtime::{Role, Setup, Started};
use sqlx::migrate::Migrator;

use crate::grpc::EscalationGrpc;
use crate::observer::{Observer, consumer_spec};
use crate::schedule::Scheduler;
use crate::timers::{TimerMetrics, Worker};
use crate::view::SlaView;

/// The role.
pub struct Escalation;

impl Role for Escalation {
    fn name(&self) -> &'static str {
        "escalation"
    }

    /// Its own tables, and the directory's it reads (managers, regions).
    fn migrations(&self) -> Vec<&'static Migrator> {
        vec![&crate::MIGRATOR, &closeloop_directory::MIGRATOR]
    }

    fn start<'a>(&'a self, s: &'a mut Setup) -> Started<'a> {
        Box::pin(async move {
            // Managers and regions come from the directory's views.
            closeloop_directory::project_background(s);
            let view = s.project_background(SlaView);
            let slas: Executor<SlaContract> = Executor::new(s.store.clone());
            s.executor(closeloop_contracts::sla::AGGREGATE, slas.metrics());
            let directory = DirectoryLookup::new(s.db.clone(), s.store.clone());
            s.consume(
                consumer_spec(&s.prefix).background(),
                Decoded(Observer {
                    slas: slas.clone(),
                    directory: directory.clone(),
                    catalog: s.catalog.clone(),
                }),
            );
            let metrics = Arc::new(TimerMetrics::default());
            s.metrics(metrics.clone());
            let worker = Worker {
                db: s.db.clone(),
                store: s.store.clone(),
                slas: slas.clone(),
                directory,
                catalog: s.catalog.clone(),
                clock: s.store.clock().clone(),
                view,
                metrics,
            };
            let stopped = s.stopped();
            s.spawn(worker.spawn_run(stopped));
            let reports: Executor<ReportContract> = Executor::new(s.store.clone());
            s.executor(closeloop_contracts::report::AGGREGATE, reports.metrics());
            let scheduler = Scheduler {
                db: s.db.clone(),
                reports,
                clock: s.store.clock().clone(),
            };
            let schedules = s
                .catalog
                .as_ref()
                .map(|c| c.reports.clone())
                .unwrap_or_default();
            s.readiness(
                "weekly_reports",
                if schedules.is_empty() {
                    "none configured (reports.weekly in the programs file)".to_string()
                } else {
                    schedules
                        .iter()
                        .map(|r| format!("{} `{}` {}", r.region, r.schedule, r.time_zone))
                        .collect::<Vec<_>>()
                        .join("; ")
                },
            );
            for schedule in schedules {
                let stopped = s.stopped();
                s.spawn(scheduler.clone().spawn_run(Arc::new(schedule), stopped));
            }
            s.grpc(EscalationServiceServer::new(EscalationGrpc {
                db: s.db.clone(),
                slas,
                catalog: s.catalog.clone(),
                clock: s.store.clock().clone(),
            }));
            Ok(())
        })
    }
}
