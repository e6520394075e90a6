//! The weekly report scheduler: for each region of the programs file's
//! `reports.weekly`, at each time of its cron schedule (in the region's
//! time zone, on the install's clock), the report as of that time is
//! generated into the region's report stream (`ReportGenerated`, which the
//! notification role e-mails to the region's recipients).
//!
//! Each scheduled time is written once: the request id is the time, and
//! the report aggregate refuses a time at or before the latest generated,
//! so replicas and restarts agree. A time missed while no escalation role
//! ran is generated when one starts again (the latest missed one only); an
//! install's first start does not report on the past.

use std::sync::Arc;
use std::time::Duration;

use closeloop_contracts::report::ReportContract;
use closeloop_domain::Timestamp;
use closeloop_domain::report::{
    Generate, MAX_LINES, ReportKey, ReportLine, ReportOwner, WeeklyReport,
};
use closeloop_eventstore::{Clock, EventContext, Executor};
use closeloop_programs::ReportSchedule;
use closeloop_readmodel::Db;
use tracing::Instrument;

/// Generates the reports of one region. Cheap to clone.
#[derive(Clone)]
pub struct Scheduler {
    pub db: Db,
    pub reports: Executor<ReportContract>,
    pub clock: Clock,
}

/// The report of `schedule`'s region as of `at`, as the event records it.
pub async fn build(
    db: &Db,
    schedule: &ReportSchedule,
    at: Timestamp,
) -> Result<WeeklyReport, String> {
    let r = crate::report::weekly(db, &schedule.region, at, false).await?;
    let total = r.tickets();
    let mut left = MAX_LINES;
    let owners = r
        .owners
        .into_iter()
        .filter_map(|(owner, tickets)| {
            let take = tickets.len().min(left);
            left -= take;
            (take > 0).then(|| ReportOwner {
                owner,
                lines: tickets
                    .into_iter()
                    .take(take)
                    .map(|t| ReportLine {
                        ticket_id: t.ticket_id,
                        account_id: t.account_id,
                        title: t.title,
                        program_id: t.program_id,
                        opened_at: t.opened_at,
                        age_days: t.age_days,
                        reasons: t.reasons.iter().map(|r| r.to_string()).collect(),
                        first_contact_due: t.first_contact_due,
                        close_due: t.close_due,
                        escalation_level: t.escalation_level,
                    })
                    .collect(),
            })
        })
        .collect();
    Ok(WeeklyReport {
        region: schedule.region.clone(),
        scheduled_at: at,
        recipients: schedule.recipients.clone(),
        owners,
        tickets: u32::try_from(total).unwrap_or(u32::MAX),
        truncated: total > MAX_LINES,
    })
}

impl Scheduler {
    /// Generates the report of `schedule` for scheduled time `at` (once).
    pub async fn generate(&self, schedule: &ReportSchedule, at: Timestamp) -> Result<bool, String> {
        let report = build(&self.db, schedule, at).await?;
        let key = ReportKey::of_region(&schedule.region);
        let request = format!("weekly/{}", at.as_micros());
        let ctx = EventContext {
            actor: crate::observer::ACTOR.to_string(),
            correlation_id: request.clone(),
            causation_id: request.clone(),
            traceparent: None,
        };
        let done = self
            .reports
            .execute(key, &request, &ctx, &Generate(report))
            .await
            .map_err(|e| e.to_string())?;
        Ok(!done.replayed)
    }

    /// Runs `schedule` until `stopped` resolves.
    pub async fn run(
        self,
        schedule: Arc<ReportSchedule>,
        stopped: impl std::future::Future<Output = ()> + Send,
    ) {
        tokio::pin!(stopped);
        let key = ReportKey::of_region(&schedule.region);
        let now = || Timestamp::from_system_time(self.clock.now());
        // Where the schedule stands: the latest time generated, or (on an
        // install's first start) now.
        let mut cursor = loop {
            match self.reports.load(key).await {
                Ok(s) => break s.and_then(|s| s.last_scheduled_at).unwrap_or_else(now),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the reports; retrying");
                    tokio::select! {
                        _ = &mut stopped => return,
                        _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                    }
                }
            }
        };
        loop {
            if let Some(slot) = schedule.last_at_or_before(now())
                && slot > cursor
            {
                match self.generate(&schedule, slot).await {
                    Ok(written) => {
                        tracing::info!(region = %schedule.region, written, at = %humantime::format_rfc3339_seconds(slot.to_system_time()), "weekly report");
                        cursor = slot;
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(region = %schedule.region, error = %e, "weekly report failed; retrying");
                        tokio::select! {
                            _ = &mut stopped => return,
                            _ = tokio::time::sleep(Duration::from_secs(5)) => continue,
                        }
                    }
                }
            }
            let next = schedule.next_after(cursor.max(now()));
            let clock = self.clock.clone();
            let until = async move {
                match next {
                    Some(t) => clock.sleep_until(t.to_system_time()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = &mut stopped => return,
                _ = until => {}
                _ = self.clock.moved() => {}
                // A safety net against a wall clock stepped by NTP.
                _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
            }
        }
    }

    /// [`Scheduler::run`] in its own span.
    pub async fn spawn_run(
        self,
        schedule: Arc<ReportSchedule>,
        stopped: impl std::future::Future<Output = ()> + Send,
    ) {
        let span = tracing::info_span!("weekly_report", region = %schedule.region);
        self.run(schedule, stopped).instrument(span).await
    }
}
