//! `closeloop.v1.AnalyticsService`: each view, and `Explain`.

use std::collections::HashMap;
use std::sync::Arc;

use closeloop_domain::{FieldViolation, Timestamp};
use closeloop_eventstore::Clock;
use closeloop_programs::Catalog;
use closeloop_proto::convert;
use closeloop_proto::v1;
use closeloop_proto::v1::analytics_service_server::AnalyticsService;
use closeloop_readmodel::Db;
use jiff::tz::TimeZone;
use tonic::{Request, Response, Status};

use crate::facts;
use crate::query::{Dim, Period, Query};
use crate::report::{self, Band, Clock as RateClock, Context, Outcome, ReportError, Table};

#[derive(Clone)]
pub struct AnalyticsGrpc {
    pub db: Db,
    pub catalog: Option<Arc<Catalog>>,
    pub clock: Clock,
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
pub fn parse_query(r: &v1::ReportRequest, now: i64) -> Result<Query, Vec<FieldViolation>> {
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
        Period::Month
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

impl AnalyticsGrpc {
    fn query(&self, r: Option<&v1::ReportRequest>) -> Result<Query, Status> {
        let now = Timestamp::from_system_time(self.clock.now()).as_micros();
        parse_query(r.unwrap_or(&v1::ReportRequest::default()), now)
            .map_err(closeloop_proto::status::invalid_argument)
    }

    async fn context(&self, q: &Query) -> Result<Context, Status> {
        let mut cx = Context {
            accounts: facts::accounts(&self.db, q.as_of)
                .await
                .map_err(unavailable)?,
            teams: facts::teams(&self.db).await.map_err(unavailable)?,
            ..Context::default()
        };
        if let Some(c) = &self.catalog {
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

    async fn rate(&self, clock: RateClock, r: v1::ReportRequest) -> Result<v1::Report, Status> {
        let q = self.query(Some(&r))?;
        let positions = facts::positions(&self.db).await.map_err(unavailable)?;
        let cx = self.context(&q).await?;
        let tickets = facts::tickets(&self.db, &q).await.map_err(unavailable)?;
        Ok(to_proto(
            &report::rate(clock, &q, &tickets, &cx),
            &q,
            &positions,
        ))
    }
}

#[tonic::async_trait]
impl AnalyticsService for AnalyticsGrpc {
    async fn closure(
        &self,
        req: Request<v1::ReportRequest>,
    ) -> Result<Response<v1::Report>, Status> {
        Ok(Response::new(
            self.rate(RateClock::Closure, req.into_inner()).await?,
        ))
    }

    async fn first_contact(
        &self,
        req: Request<v1::ReportRequest>,
    ) -> Result<Response<v1::Report>, Status> {
        Ok(Response::new(
            self.rate(RateClock::FirstContact, req.into_inner()).await?,
        ))
    }

    async fn nps(&self, req: Request<v1::ReportRequest>) -> Result<Response<v1::Report>, Status> {
        let q = self.query(Some(&req.into_inner()))?;
        let positions = facts::positions(&self.db).await.map_err(unavailable)?;
        let cx = self.context(&q).await?;
        let responses = facts::responses(&self.db, &q).await.map_err(unavailable)?;
        let t = report::nps(&q, &responses, &cx).map_err(refused)?;
        Ok(Response::new(to_proto(&t, &q, &positions)))
    }

    async fn explain(
        &self,
        req: Request<v1::ExplainRequest>,
    ) -> Result<Response<v1::ExplainResponse>, Status> {
        let r = req.into_inner();
        let q = self.query(r.request.as_ref())?;
        if !r.key.is_empty() && r.key.len() != q.by.len() {
            return Err(closeloop_proto::status::invalid_argument(vec![
                FieldViolation::new(
                    "key",
                    format!(
                        "give one value per slice of request.by ({} values), or none for every row",
                        q.by.len()
                    ),
                ),
            ]));
        }
        let cx = self.context(&q).await?;
        let only = r.only.trim();
        let bad_only = |allowed: &str| {
            closeloop_proto::status::invalid_argument(vec![FieldViolation::new(
                "only",
                format!("{only:?} is not one of {allowed}"),
            )])
        };
        let explained = match r.view.trim() {
            v @ ("closure" | "first-contact") => {
                let clock = if v == "closure" {
                    RateClock::Closure
                } else {
                    RateClock::FirstContact
                };
                let outcome = match only {
                    "" => None,
                    "met" => Some(Outcome::Met),
                    "missed" => Some(Outcome::Missed),
                    "pending" => Some(Outcome::Pending),
                    _ => return Err(bad_only("met, missed, pending")),
                };
                let tickets = facts::tickets(&self.db, &q).await.map_err(unavailable)?;
                report::explain_rate(clock, &q, &r.key, outcome, &tickets, &cx)
            }
            "nps" => {
                let band = match only {
                    "" => None,
                    "promoter" => Some(Band::Promoter),
                    "passive" => Some(Band::Passive),
                    "detractor" => Some(Band::Detractor),
                    _ => return Err(bad_only("promoter, passive, detractor")),
                };
                let responses = facts::responses(&self.db, &q).await.map_err(unavailable)?;
                report::explain_nps(&q, &r.key, band, &responses, &cx).map_err(refused)?
            }
            other => {
                return Err(closeloop_proto::status::invalid_argument(vec![
                    FieldViolation::new(
                        "view",
                        format!("{other:?} is not a view: use closure, first-contact, nps"),
                    ),
                ]));
            }
        };
        Ok(Response::new(v1::ExplainResponse {
            items: explained.items.to_string(),
            columns: explained.columns.iter().map(ToString::to_string).collect(),
            lines: explained
                .lines
                .into_iter()
                .map(|cells| v1::ExplainLine { cells })
                .collect(),
            as_of: Some(convert::timestamp(Timestamp::from_micros(q.as_of))),
        }))
    }
}
