//! `closeloop.v1.AnalyticsService`: each view, and `Explain`.

use rustc_hash::FxHashMap as HashMap;
use std::sync::Arc;

use closeloop_domain::{FieldViolation, Timestamp};
use closeloop_eventstore::{Clock, EventStore};
use closeloop_programs::Catalog;
use closeloop_proto::convert;
use closeloop_proto::v1;
use closeloop_proto::v1::analytics_service_server::AnalyticsService;
use closeloop_readmodel::Db;
use jiff::tz::TimeZone;
use tonic::{Request, Response, Status};

use crate::cache::{self, Cache};
use crate::query::{Dim, Period, Query};
use crate::report::{self, Band, Clock as RateClock, Context, Outcome, ReportError, Table};
use crate::tables::Tables;
use crate::{escalations, facts, generations, journey, leaderboard, quality, uplift};

#[derive(Clone)]
pub struct AnalyticsGrpc {
    pub db: Db,
    pub store: EventStore,
    pub catalog: Option<Arc<Catalog>>,
    pub clock: Clock,
    /// Wakes the generations' supervisor (a rebuild was asked for).
    pub wake: Arc<tokio::sync::Notify>,
    /// The newest facts in memory.
    pub cache: Arc<Cache>,
}

/// Where a report's facts come from: the in-memory cache (as of now) or
/// the tables (as of a past time).
enum Source<'a> {
    Cached(tokio::sync::RwLockReadGuard<'a, cache::Facts>),
    Loaded(Box<Data>),
}

impl Source<'_> {
    fn tickets(&self) -> &[facts::TicketFact] {
        match self {
            Source::Cached(f) => &f.tickets.tickets,
            Source::Loaded(d) => &d.tickets,
        }
    }

    fn responses(&self) -> &[facts::ResponseFact] {
        match self {
            Source::Cached(f) => &f.responses,
            Source::Loaded(d) => &d.responses,
        }
    }
}

fn unavailable(e: impl std::fmt::Display) -> Status {
    Status::unavailable(format!("read model unavailable: {e}"))
}

fn refused(e: ReportError) -> Status {
    closeloop_proto::status::invalid_argument(vec![FieldViolation::new("by", e.to_string())])
}

fn micros(t: &prost_types::Timestamp) -> i64 {
    convert::from_timestamp(t).as_micros()
}

/// Parses a request, with a violation per bad field.
pub fn parse_query(
    r: &v1::ReportRequest,
    now: i64,
    default_period: Period,
) -> Result<Query, Vec<FieldViolation>> {
    let mut errs = Vec::new();
    let mut by = Vec::new();
    for (i, d) in r.by.iter().enumerate() {
        match Dim::parse(d) {
            Some(d) if by.contains(&d) => errs.push(FieldViolation::new(
                format!("by[{i}]"),
                format!("{} is given twice", d.as_str()),
            )),
            Some(d) => by.push(d),
            None => errs.push(FieldViolation::new(
                format!("by[{i}]"),
                format!(
                    "{d:?} is not a slice: use {}",
                    Dim::ALL.map(Dim::as_str).join(", ")
                ),
            )),
        }
    }
    let period = if r.period.trim().is_empty() {
        default_period
    } else {
        Period::parse(&r.period).unwrap_or_else(|| {
            errs.push(FieldViolation::new(
                "period",
                format!(
                    "{:?} is not a period: use {}",
                    r.period,
                    Period::ALL.map(Period::as_str).join(", ")
                ),
            ));
            Period::Month
        })
    };
    let tz = if r.time_zone.trim().is_empty() {
        TimeZone::UTC
    } else {
        TimeZone::get(r.time_zone.trim()).unwrap_or_else(|_| {
            errs.push(FieldViolation::new(
                "time_zone",
                format!("{:?} is not a time zone of the tz database", r.time_zone),
            ));
            TimeZone::UTC
        })
    };
    let from = r.from.as_ref().map(micros);
    let to = r.to.as_ref().map(micros);
    if let (Some(f), Some(t)) = (from, to)
        && f >= t
    {
        errs.push(FieldViolation::new("to", "must be after from"));
    }
    let mut only = Vec::new();
    for (i, s) in r.only.iter().enumerate() {
        match Dim::parse(&s.dimension) {
            Some(d) => only.push((d, s.value.clone())),
            None => errs.push(FieldViolation::new(
                format!("only[{i}].dimension"),
                format!("{:?} is not a slice", s.dimension),
            )),
        }
    }
    if !errs.is_empty() {
        return Err(errs);
    }
    Ok(Query {
        from,
        to,
        as_of: r.as_of.as_ref().map_or(now, micros),
        by,
        period,
        tz,
        only,
        memo: Default::default(),
    })
}

fn to_proto(t: &Table, q: &Query, positions: &[(String, u64)]) -> v1::Report {
    let row = |r: &report::Row| v1::ReportRow {
        key: r.key.clone(),
        values: r.values.iter().map(|v| v1::Measure { value: *v }).collect(),
    };
    v1::Report {
        view: t.view.to_string(),
        dimensions: t.dims.iter().map(ToString::to_string).collect(),
        measures: t.measures.iter().map(ToString::to_string).collect(),
        rows: t.rows.iter().map(row).collect(),
        total: Some(row(&t.total)),
        as_of: Some(convert::timestamp(Timestamp::from_micros(q.as_of))),
        positions: positions
            .iter()
            .map(|(p, s)| v1::Position {
                projection: p.clone(),
                sequence: *s,
            })
            .collect(),
    }
}

/// A view's default period bucketing.
fn default_period(view: &str) -> Period {
    match view {
        "leaderboard" => Period::Quarter,
        "uplift" => Period::Year,
        _ => Period::Month,
    }
}

impl AnalyticsGrpc {
    fn query(&self, view: &str, r: Option<&v1::ReportRequest>) -> Result<Query, Status> {
        let now = Timestamp::from_system_time(self.clock.now()).as_micros();
        parse_query(
            r.unwrap_or(&v1::ReportRequest::default()),
            now,
            default_period(view),
        )
        .map_err(closeloop_proto::status::invalid_argument)
    }

    /// The context of a report given its accounts.
    async fn context(
        &self,
        accounts: Arc<HashMap<String, facts::AccountFact>>,
    ) -> Result<Context, Status> {
        let mut cx = Context {
            accounts,
            teams: facts::teams(&self.db).await.map_err(unavailable)?,
            ..Context::default()
        };
        if let Some(c) = &self.catalog {
            cx.config = c.analytics.clone();
            cx.stages = c
                .programs
                .iter()
                .map(|p| (p.id.clone(), p.journey_stage.clone()))
                .collect();
            cx.metrics = c
                .programs
                .iter()
                .map(|p| {
                    (
                        p.id.clone(),
                        (
                            p.metric.as_str().to_string(),
                            p.metric_question.clone().unwrap_or_default(),
                        ),
                    )
                })
                .collect::<HashMap<_, _>>();
        }
        Ok(cx)
    }

    /// The facts of `q`: the cache's when `q` is as of its newest fact or
    /// later, else read from the tables as of `q`'s time; with the context
    /// and the projections' positions they reflect.
    async fn source(
        &self,
        view: &str,
        q: &Query,
    ) -> Result<(Source<'_>, Context, Vec<(String, u64)>), Status> {
        let t = generations::active(&self.db).await.map_err(unavailable)?;
        let cached = self
            .cache
            .current(&self.db, &t)
            .await
            .map_err(unavailable)?;
        if q.as_of >= cached.max_at {
            let cx = self.context(cached.accounts.clone()).await?;
            let positions = facts::named(&t, cached.synced.map(|s| s.max(0) as u64));
            return Ok((Source::Cached(cached), cx, positions));
        }
        drop(cached);
        // Positions first: the answer reflects at least these.
        let positions = facts::named(
            &t,
            facts::checkpoints(&self.db, &t)
                .await
                .map_err(unavailable)?,
        );
        let data = self.data(&t, view, q).await?;
        let cx = data.cx.clone();
        Ok((Source::Loaded(Box::new(data)), cx, positions))
    }

    /// Reads what `view` needs as of the query's time and computes it.
    async fn report(
        &self,
        view: &str,
        r: Option<&v1::ReportRequest>,
    ) -> Result<v1::Report, Status> {
        let q = self.query(view, r)?;
        let asked = std::time::Instant::now();
        let (source, cx, positions) = self.source(view, &q).await?;
        let read = asked.elapsed();
        let (tickets, responses, cx) = (source.tickets(), source.responses(), &cx);
        let table = match view {
            "closure" => report::rate(RateClock::Closure, &q, tickets, cx),
            "first-contact" => report::rate(RateClock::FirstContact, &q, tickets, cx),
            "nps" => report::nps(&q, responses, cx).map_err(refused)?,
            "escalations" => escalations::escalations(&q, tickets, cx),
            "uplift" => uplift::uplift(&q, responses, tickets, cx).map_err(refused)?,
            "quality" => quality::quality(&q, tickets, cx),
            "leaderboard" => leaderboard::leaderboard(&q, responses, cx).map_err(refused)?,
            "journey" => journey::journey(&q, responses, tickets, cx).map_err(refused)?,
            other => return Err(bad_view(other)),
        };
        tracing::debug!(
            view,
            read_ms = read.as_secs_f64() * 1e3,
            took_ms = asked.elapsed().as_secs_f64() * 1e3,
            "analytics: report"
        );
        Ok(to_proto(&table, &q, &positions))
    }

    /// The facts `view` reads.
    async fn data(&self, t: &Tables, view: &str, q: &Query) -> Result<Data, Status> {
        let accounts = facts::accounts(&self.db, t, q.as_of)
            .await
            .map_err(unavailable)?;
        let cx = self.context(Arc::new(accounts)).await?;
        let needs_tickets = view != "nps" && view != "leaderboard";
        let needs_responses = matches!(view, "nps" | "leaderboard" | "uplift" | "journey");
        let tickets = if !needs_tickets {
            Vec::new()
        } else if view == "uplift" {
            // Tickets of any opening time: acting on a response may come
            // from a ticket opened before the range.
            let all = Query {
                from: None,
                to: None,
                ..q.clone()
            };
            facts::tickets(&self.db, t, &all)
                .await
                .map_err(unavailable)?
        } else {
            facts::tickets(&self.db, t, q).await.map_err(unavailable)?
        };
        let mut responses = if needs_responses {
            facts::responses(&self.db, t, q)
                .await
                .map_err(unavailable)?
        } else {
            Vec::new()
        };
        if view == "journey" {
            facts::mark_unmatched(&self.db, t, q.as_of, &mut responses)
                .await
                .map_err(unavailable)?;
        }
        Ok(Data {
            tickets,
            responses,
            cx,
        })
    }
}

impl AnalyticsGrpc {
    async fn generations(&self) -> Result<v1::ViewGenerations, Status> {
        let mut out = Vec::new();
        for g in generations::list(&self.db).await.map_err(unavailable)? {
            if g.state == "dropped" {
                continue;
            }
            let t = Tables::of(g.generation);
            let mut projections = Vec::new();
            let positions = facts::checkpoints(&self.db, &t)
                .await
                .map_err(unavailable)?;
            for (base, sequence) in crate::view::ALL.into_iter().zip(positions) {
                let pending = self
                    .store
                    .pending(&crate::view::filter_of(base, self.store.prefix()), sequence)
                    .await
                    .map_err(unavailable)?;
                projections.push(v1::ProjectionState {
                    projection: t.checkpoint(base),
                    sequence,
                    pending,
                });
            }
            let time = |us: i64| (us > 0).then(|| convert::timestamp(Timestamp::from_micros(us)));
            out.push(v1::ViewGeneration {
                generation: g.generation.max(0) as u64,
                state: g.state,
                started_at: time(g.started_at),
                switched_at: time(g.switched_at),
                projections,
            });
        }
        Ok(v1::ViewGenerations {
            generations: out,
            started: 0,
        })
    }
}

struct Data {
    tickets: Vec<facts::TicketFact>,
    responses: Vec<facts::ResponseFact>,
    cx: Context,
}

/// The views, as `Explain` and `closeloop report` name them.
pub const VIEWS: [&str; 8] = [
    "closure",
    "first-contact",
    "nps",
    "escalations",
    "uplift",
    "quality",
    "leaderboard",
    "journey",
];

fn bad_view(v: &str) -> Status {
    closeloop_proto::status::invalid_argument(vec![FieldViolation::new(
        "view",
        format!("{v:?} is not a view: use {}", VIEWS.join(", ")),
    )])
}

#[tonic::async_trait]
impl AnalyticsService for AnalyticsGrpc {
    async fn closure(
        &self,
        req: Request<v1::ReportRequest>,
    ) -> Result<Response<v1::Report>, Status> {
        Ok(Response::new(
            self.report("closure", Some(&req.into_inner())).await?,
        ))
    }

    async fn first_contact(
        &self,
        req: Request<v1::ReportRequest>,
    ) -> Result<Response<v1::Report>, Status> {
        Ok(Response::new(
            self.report("first-contact", Some(&req.into_inner()))
                .await?,
        ))
    }

    async fn nps(&self, req: Request<v1::ReportRequest>) -> Result<Response<v1::Report>, Status> {
        Ok(Response::new(
            self.report("nps", Some(&req.into_inner())).await?,
        ))
    }

    async fn escalations(
        &self,
        req: Request<v1::ReportRequest>,
    ) -> Result<Response<v1::Report>, Status> {
        Ok(Response::new(
            self.report("escalations", Some(&req.into_inner())).await?,
        ))
    }

    async fn uplift(
        &self,
        req: Request<v1::ReportRequest>,
    ) -> Result<Response<v1::Report>, Status> {
        Ok(Response::new(
            self.report("uplift", Some(&req.into_inner())).await?,
        ))
    }

    async fn quality(
        &self,
        req: Request<v1::ReportRequest>,
    ) -> Result<Response<v1::Report>, Status> {
        Ok(Response::new(
            self.report("quality", Some(&req.into_inner())).await?,
        ))
    }

    async fn leaderboard(
        &self,
        req: Request<v1::ReportRequest>,
    ) -> Result<Response<v1::Report>, Status> {
        Ok(Response::new(
            self.report("leaderboard", Some(&req.into_inner())).await?,
        ))
    }

    async fn journey(
        &self,
        req: Request<v1::ReportRequest>,
    ) -> Result<Response<v1::Report>, Status> {
        Ok(Response::new(
            self.report("journey", Some(&req.into_inner())).await?,
        ))
    }

    async fn rebuild_views(
        &self,
        _req: Request<v1::RebuildViewsRequest>,
    ) -> Result<Response<v1::ViewGenerations>, Status> {
        let now = Timestamp::from_system_time(self.clock.now()).as_micros();
        let g = match generations::start_rebuild(&self.db, now).await {
            Ok(g) => g,
            Err(e @ generations::RebuildError::AlreadyBuilding(_)) => {
                return Err(Status::failed_precondition(e.to_string()));
            }
            Err(generations::RebuildError::Sql(e)) => return Err(unavailable(e)),
        };
        self.wake.notify_one();
        let mut r = self.generations().await?;
        r.started = g as u64;
        Ok(Response::new(r))
    }

    async fn view_status(
        &self,
        _req: Request<v1::ViewStatusRequest>,
    ) -> Result<Response<v1::ViewGenerations>, Status> {
        Ok(Response::new(self.generations().await?))
    }

    async fn explain(
        &self,
        req: Request<v1::ExplainRequest>,
    ) -> Result<Response<v1::ExplainResponse>, Status> {
        let r = req.into_inner();
        let view = r.view.trim();
        if !VIEWS.contains(&view) {
            return Err(bad_view(view));
        }
        let q = self.query(view, r.request.as_ref())?;
        // Rows of these views have key columns besides the slices.
        let key_len = match view {
            "leaderboard" => leaderboard::dims(&q).map_err(refused)?.len() + 1,
            "journey" => 3 + q.by.iter().filter(|d| **d != Dim::Program).count(),
            "uplift" => 1 + q.by.len(),
            _ => q.by.len(),
        };
        if !r.key.is_empty() && r.key.len() != key_len {
            return Err(closeloop_proto::status::invalid_argument(vec![
                FieldViolation::new(
                    "key",
                    if key_len == 0 {
                        format!(
                            "{:?}: without slices this report has only its total row, \
                             which has no key; give none for it, or slice the report \
                             (by) and give one row's key",
                            r.key.join(",")
                        )
                    } else {
                        format!(
                            "{:?} is {} value{}, and this report's rows have keys of \
                             {key_len} value{} (its key columns, comma-separated, as the \
                             report shows them); give one row's key, or none for every row",
                            r.key.join(","),
                            r.key.len(),
                            if r.key.len() == 1 { "" } else { "s" },
                            if key_len == 1 { "" } else { "s" }
                        )
                    },
                ),
            ]));
        }
        let only = r.only.trim();
        let bad = |field: &str, value: &str, allowed: &str| {
            closeloop_proto::status::invalid_argument(vec![FieldViolation::new(
                field,
                format!("{value:?} is not one of {allowed}"),
            )])
        };
        let order = match r.order.trim() {
            "" => None,
            "best" => Some(quality::Order::Best),
            "worst" => Some(quality::Order::Worst),
            o => return Err(bad("order", o, "best, worst")),
        };
        if order.is_some() && view != "quality" {
            return Err(closeloop_proto::status::invalid_argument(vec![
                FieldViolation::new("order", "only the quality view orders its tickets"),
            ]));
        }
        let (source, cx, _) = self.source(view, &q).await?;
        let (tickets, responses, cx) = (source.tickets(), source.responses(), &cx);
        let mut explained = match view {
            "closure" | "first-contact" => {
                let clock = if view == "closure" {
                    RateClock::Closure
                } else {
                    RateClock::FirstContact
                };
                let outcome = match only {
                    "" => None,
                    "met" => Some(Outcome::Met),
                    "missed" => Some(Outcome::Missed),
                    "pending" => Some(Outcome::Pending),
                    _ => return Err(bad("only", only, "met, missed, pending")),
                };
                report::explain_rate(clock, &q, &r.key, outcome, tickets, cx)
            }
            "nps" => {
                let band = match only {
                    "" => None,
                    "promoter" => Some(Band::Promoter),
                    "passive" => Some(Band::Passive),
                    "detractor" => Some(Band::Detractor),
                    _ => return Err(bad("only", only, "promoter, passive, detractor")),
                };
                report::explain_nps(&q, &r.key, band, responses, cx).map_err(refused)?
            }
            "escalations" => {
                let o = match only {
                    "" => None,
                    o => Some(
                        escalations::Only::parse(o)
                            .ok_or_else(|| bad("only", o, "warned, breached, escalated"))?,
                    ),
                };
                escalations::explain(&q, &r.key, o, tickets, cx)
            }
            "uplift" => {
                let acted = match only {
                    "" => None,
                    "acted" => Some(true),
                    "not-acted" => Some(false),
                    o => return Err(bad("only", o, "acted, not-acted")),
                };
                uplift::explain(&q, &r.key, acted, responses, tickets, cx).map_err(refused)?
            }
            "quality" => {
                if !only.is_empty() {
                    return Err(bad("only", only, "nothing (quality lists closed tickets)"));
                }
                quality::explain(&q, &r.key, order, r.limit as usize, tickets, cx)
            }
            "leaderboard" => {
                if !only.is_empty() {
                    return Err(bad("only", only, "nothing (leaderboard lists responses)"));
                }
                leaderboard::explain(&q, &r.key, responses, cx).map_err(refused)?
            }
            _ => {
                let o = journey::Only::parse(only).ok_or_else(|| {
                    bad(
                        "only",
                        only,
                        "responses, unmatched, tickets, open, breached",
                    )
                })?;
                journey::explain(&q, &r.key, o, responses, tickets, cx).map_err(refused)?
            }
        };
        if r.limit > 0 {
            explained.lines.truncate(r.limit as usize);
        }
        Ok(Response::new(v1::ExplainResponse {
            items: explained.items.to_string(),
            columns: explained.columns,
            lines: explained
                .lines
                .into_iter()
                .map(|cells| v1::ExplainLine { cells })
                .collect(),
            as_of: Some(convert::timestamp(Timestamp::from_micros(q.as_of))),
        }))
    }
}
