//! Analytics edge cases, each on its own install with a simulated clock: a
//! response revised after its ticket closed, a ticket reopened after its
//! target, a team below the leaderboard's minimum, a period boundary in a
//! non-UTC time zone, an account moving region between periods.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use closeloop_domain::TicketId;
use closeloop_domain::feedback::FeedbackId;
use closeloop_proto::v1;
use closeloop_proto::v1::analytics_service_client::AnalyticsServiceClient;
use closeloop_proto::v1::clock_service_client::ClockServiceClient;
use closeloop_proto::v1::feedback_service_client::FeedbackServiceClient;
use closeloop_server::ClockConfig;
use closeloop_tests::{App, AppOptions, Backend, Nats, TestDb, spawn_app_with, unique_prefix};

const SOURCE: &str = "edges";

fn us(t: &str) -> i64 {
    t.parse::<jiff::Timestamp>().unwrap().as_microsecond()
}

fn ts(t: &str) -> prost_types::Timestamp {
    let us = us(t);
    prost_types::Timestamp {
        seconds: us.div_euclid(1_000_000),
        nanos: (us.rem_euclid(1_000_000) * 1000) as i32,
    }
}

struct Install {
    app: App,
    nats: Nats,
    prefix: String,
    db: TestDb,
}

async fn install(start: &str) -> Install {
    let nats = Nats::start();
    let db = TestDb::new(Backend::Sqlite).await;
    let prefix = unique_prefix();
    let app = spawn_app_with(
        &nats.url(),
        &db.url,
        &prefix,
        AppOptions {
            clock: ClockConfig::Simulated {
                start: Some(std::time::UNIX_EPOCH + Duration::from_micros(us(start) as u64)),
            },
            ..AppOptions::default()
        },
    )
    .await;
    app.seed_person("lee@vendor.example", None).await;
    Install {
        app,
        nats,
        prefix,
        db,
    }
}

impl Install {
    async fn set_clock(&self, t: &str) {
        ClockServiceClient::connect(self.app.grpc_url())
            .await
            .unwrap()
            .set_clock(v1::SetClockRequest { to: Some(ts(t)) })
            .await
            .unwrap();
    }

    async fn account(&self, id: &str, region: &str, csm: &str) {
        self.app.seed_person(csm, Some("lee@vendor.example")).await;
        self.app
            .upsert_account(v1::Account {
                id: id.into(),
                name: id.into(),
                region: region.into(),
                segment: "enterprise".into(),
                team: vec![v1::AccountTeamMember {
                    role: "csm".into(),
                    email: csm.into(),
                }],
                ..Default::default()
            })
            .await;
    }

    /// Submits relationship-NPS response `id` (a revision when `revised`).
    async fn respond(
        &self,
        id: &str,
        account: &str,
        submitted: &str,
        answers: &[(&str, i64)],
        revised: Option<&str>,
    ) {
        let r = FeedbackServiceClient::connect(self.app.grpc_url())
            .await
            .unwrap()
            .submit_batch(v1::SubmitFeedbackBatchRequest {
                feedback: vec![v1::Feedback {
                    response_id: id.into(),
                    source: SOURCE.into(),
                    program: "relationship-nps".into(),
                    account_id: account.into(),
                    respondent: Some(v1::Respondent {
                        email: "buyer@customer.example".into(),
                        name: "Buyer".into(),
                        role: "CIO".into(),
                    }),
                    submitted_at: Some(ts(submitted)),
                    answers: answers
                        .iter()
                        .map(|(q, v)| {
                            (
                                q.to_string(),
                                v1::Answer {
                                    value: Some(v1::answer::Value::IntValue(*v)),
                                },
                            )
                        })
                        .collect(),
                    revised_at: revised.map(ts),
                    ..Default::default()
                }],
            })
            .await
            .unwrap()
            .into_inner();
        assert!(
            r.results
                .iter()
                .all(|x| x.status == v1::SubmitStatus::Received as i32
                    || x.status == v1::SubmitStatus::Updated as i32),
            "{r:?}"
        );
    }

    /// The detractor ticket of response `id`, once it is open.
    async fn ticket(&self, id: &str) -> String {
        let ticket =
            TicketId::for_feedback(&FeedbackId::of(SOURCE, id).to_string(), "rnps-detractor")
                .to_string();
        let mut c = self.app.tickets().await;
        let deadline = Instant::now() + Duration::from_secs(20);
        while c
            .get_ticket(v1::GetTicketRequest {
                ticket_id: ticket.clone(),
                min_sequence: 0,
            })
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "ticket of {id} never opened");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        ticket
    }

    async fn act(&self, ticket: &str, action: &str) {
        let mut c = self.app.tickets().await;
        let request_id = format!("{ticket}-{action}");
        match action {
            "contact" => c
                .log_contact(v1::LogContactRequest {
                    request_id,
                    ticket_id: ticket.into(),
                    channel: v1::ContactChannel::Phone as i32,
                    summary: "called".into(),
                    actor: String::new(),
                })
                .await
                .map(|_| ()),
            "close" => c
                .close_ticket(v1::CloseTicketRequest {
                    request_id,
                    ticket_id: ticket.into(),
                    root_cause_category: "product".into(),
                    root_cause: "an upgrade changed the export format the customer's finance team relies on every single month".into(),
                    actions_taken: "restored the old format as an option, walked their finance team through it and agreed a review".into(),
                    opportunity: None,
                    actor: String::new(),
                })
                .await
                .map(|_| ()),
            _ => c
                .reopen_ticket(v1::ReopenTicketRequest {
                    request_id,
                    ticket_id: ticket.into(),
                    reason: "it came back".into(),
                    actor: String::new(),
                })
                .await
                .map(|_| ()),
        }
        .unwrap();
    }

    /// Asks `view` until `ok` holds of its answer (views follow events
    /// within a second; this waits up to 20 s).
    async fn until(
        &self,
        view: &str,
        req: v1::ReportRequest,
        ok: impl Fn(&Answer) -> bool,
    ) -> Answer {
        let mut a = AnalyticsServiceClient::connect(self.app.grpc_url())
            .await
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let r = match view {
                "closure" => a.closure(req.clone()).await,
                "nps" => a.nps(req.clone()).await,
                "escalations" => a.escalations(req.clone()).await,
                "quality" => a.quality(req.clone()).await,
                "leaderboard" => a.leaderboard(req.clone()).await,
                "journey" => a.journey(req.clone()).await,
                other => panic!("{other}"),
            }
            .unwrap()
            .into_inner();
            let answer = Answer::of(&r);
            if ok(&answer) {
                return answer;
            }
            assert!(
                Instant::now() < deadline,
                "{view} never got there: {answer:#?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A report as key → measure → value ("" key: the total).
#[derive(Debug)]
struct Answer(BTreeMap<String, BTreeMap<String, Option<f64>>>);

impl Answer {
    fn of(r: &v1::Report) -> Answer {
        let row = |row: &v1::ReportRow| {
            r.measures
                .iter()
                .cloned()
                .zip(row.values.iter().map(|m| m.value))
                .collect::<BTreeMap<_, _>>()
        };
        let mut out: BTreeMap<_, _> = r.rows.iter().map(|x| (x.key.join("/"), row(x))).collect();
        out.insert(String::new(), row(r.total.as_ref().unwrap()));
        Answer(out)
    }

    fn get(&self, key: &str, measure: &str) -> Option<f64> {
        self.0
            .get(key)
            .and_then(|m| m.get(measure).copied().flatten())
    }
}

fn req(by: &[&str], as_of: Option<&str>) -> v1::ReportRequest {
    v1::ReportRequest {
        by: by.iter().map(|b| b.to_string()).collect(),
        as_of: as_of.map(ts),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_revised_after_its_ticket_closed() {
    let i = install("2026-01-05T09:00:00Z").await;
    i.account("ACC-1", "EMEA", "dana@vendor.example").await;
    i.respond("R1", "ACC-1", "2026-01-05T08:00:00Z", &[("nps", 3)], None)
        .await;
    let t = i.ticket("R1").await;
    i.set_clock("2026-01-05T12:00:00Z").await;
    i.act(&t, "contact").await;
    i.set_clock("2026-01-08T09:00:00Z").await;
    i.act(&t, "close").await;
    i.set_clock("2026-01-10T00:00:00Z").await;
    i.respond(
        "R1",
        "ACC-1",
        "2026-01-05T08:00:00Z",
        &[("nps", 9)],
        Some("2026-01-10T00:00:00Z"),
    )
    .await;
    // NPS counts the latest revision: now a promoter ...
    let a = i
        .until("nps", req(&[], None), |a| {
            a.get("", "promoters") == Some(1.0)
        })
        .await;
    assert_eq!(a.get("", "detractors"), Some(0.0));
    assert_eq!(a.get("", "responses"), Some(1.0));
    // ... and before the revision was recorded, the detractor it was.
    let a = i
        .until("nps", req(&[], Some("2026-01-09T00:00:00Z")), |_| true)
        .await;
    assert_eq!(a.get("", "detractors"), Some(1.0));
    assert_eq!(a.get("", "promoters"), Some(0.0));
    // The ticket stays closed, met on its first close, scored once.
    let a = i.until("closure", req(&[], None), |_| true).await;
    assert_eq!(
        (a.get("", "met"), a.get("", "missed"), a.get("", "reopens")),
        (Some(1.0), Some(0.0), Some(0.0))
    );
    let a = i.until("journey", req(&[], None), |_| true).await;
    assert_eq!(a.get("", "tickets"), Some(1.0));
    assert_eq!(a.get("", "open"), Some(0.0));
    let a = i.until("quality", req(&[], None), |_| true).await;
    assert_eq!(a.get("", "tickets"), Some(1.0));
    // Fifteen words of root cause: just enough.
    assert_eq!(a.get("", "score"), Some(100.0));
    i.app.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ticket_reopened_after_its_target() {
    let i = install("2026-01-05T09:00:00Z").await;
    i.account("ACC-1", "EMEA", "dana@vendor.example").await;
    i.respond("R1", "ACC-1", "2026-01-05T08:00:00Z", &[("nps", 2)], None)
        .await;
    let t = i.ticket("R1").await;
    i.set_clock("2026-01-05T10:00:00Z").await;
    i.act(&t, "contact").await;
    i.set_clock("2026-01-15T09:00:00Z").await;
    i.act(&t, "close").await;
    // Reopened 40 days after opening: after the 30-day target.
    i.set_clock("2026-02-14T09:00:00Z").await;
    i.act(&t, "reopen").await;
    i.set_clock("2026-02-19T09:00:00Z").await;
    // The closure view keeps the first close: met, with one reopening.
    let a = i
        .until("closure", req(&[], None), |a| {
            a.get("", "reopens") == Some(1.0)
        })
        .await;
    assert_eq!(
        (a.get("", "met"), a.get("", "missed"), a.get("", "pending")),
        (Some(1.0), Some(0.0), Some(0.0))
    );
    assert_eq!(a.get("", "rate"), Some(100.0));
    // Reopened, it is open: not scored for quality, open in the journey.
    let a = i.until("quality", req(&[], None), |_| true).await;
    assert_eq!(a.get("", "tickets"), Some(0.0));
    let a = i
        .until("quality", req(&[], Some("2026-02-01T00:00:00Z")), |_| true)
        .await;
    assert_eq!(a.get("", "tickets"), Some(1.0));
    let a = i.until("journey", req(&[], None), |_| true).await;
    assert_eq!(a.get("", "open"), Some(1.0));
    // The reopening started a new closure clock (30 days from it): past
    // it, the ticket is breached, though the closure view still says met.
    i.set_clock("2026-03-17T09:00:00Z").await;
    let a = i
        .until("escalations", req(&[], None), |a| {
            a.get("", "closure_breached") == Some(1.0)
        })
        .await;
    assert_eq!(a.get("", "tickets"), Some(1.0));
    let a = i.until("closure", req(&[], None), |_| true).await;
    assert_eq!(a.get("", "met"), Some(1.0));
    i.app.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_team_below_the_minimum_count_is_listed_unranked_and_ties_share_a_rank() {
    let i = install("2026-04-20T09:00:00Z").await;
    // Four account teams: a and c score 8 (a tie), d scores 6, b has only
    // four responses.
    let teams = [("a", 5, 8), ("b", 4, 9), ("c", 5, 8), ("d", 5, 6)];
    let mut n = 0;
    for (team, count, score) in teams {
        let csm = format!("csm-{team}@vendor.example");
        for k in 0..count {
            let account = format!("ACC-{team}{k}");
            i.account(&account, "EMEA", &csm).await;
            n += 1;
            i.respond(
                &format!("R{n}"),
                &account,
                "2026-04-15T09:00:00Z",
                &[
                    ("nps", score),
                    ("partnership", score),
                    ("future_plans", score),
                ],
                None,
            )
            .await;
        }
    }
    let a = i
        .until("leaderboard", req(&[], None), |a| {
            a.get("", "responses") == Some(19.0)
        })
        .await;
    let row = |team: &str, m: &str| a.get(&format!("2026-Q2/csm-{team}@vendor.example"), m);
    assert_eq!(row("a", "rank"), Some(1.0));
    assert_eq!(row("c", "rank"), Some(1.0));
    assert_eq!(row("d", "rank"), Some(3.0));
    assert_eq!(row("b", "rank"), None, "four responses: below the minimum");
    assert_eq!(row("b", "ranked"), Some(0.0));
    assert_eq!(row("b", "score"), Some(9.0));
    assert_eq!(row("a", "accounts"), Some(5.0));
    i.app.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_period_boundary_in_a_non_utc_time_zone() {
    let i = install("2026-04-02T09:00:00Z").await;
    i.account("ACC-1", "EMEA", "dana@vendor.example").await;
    // 00:30 on 1 April in Berlin (CEST, UTC+2), still March in UTC; and a
    // second before Berlin's midnight.
    i.respond("R1", "ACC-1", "2026-03-31T22:30:00Z", &[("nps", 10)], None)
        .await;
    i.respond("R2", "ACC-1", "2026-03-31T21:59:59Z", &[("nps", 9)], None)
        .await;
    let mut berlin = req(&["period"], None);
    berlin.period = "quarter".into();
    berlin.time_zone = "Europe/Berlin".into();
    let a = i
        .until("nps", berlin.clone(), |a| {
            a.get("", "responses") == Some(2.0)
        })
        .await;
    assert_eq!(a.get("2026-Q2", "responses"), Some(1.0));
    assert_eq!(a.get("2026-Q1", "responses"), Some(1.0));
    let mut utc = berlin.clone();
    utc.time_zone = String::new();
    let a = i.until("nps", utc, |_| true).await;
    assert_eq!(a.get("2026-Q1", "responses"), Some(2.0));
    assert_eq!(a.get("2026-Q2", "responses"), None);
    // Half-open [from, to) at Berlin's midnight.
    let mut from = req(&[], None);
    from.from = Some(ts("2026-04-01T00:00:00+02:00"));
    let a = i.until("nps", from, |_| true).await;
    assert_eq!(a.get("", "responses"), Some(1.0));
    let mut to = req(&[], None);
    to.to = Some(ts("2026-04-01T00:00:00+02:00"));
    let a = i.until("nps", to, |_| true).await;
    assert_eq!(a.get("", "responses"), Some(1.0));
    assert_eq!(a.get("", "promoters"), Some(1.0));
    i.app.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_moving_region_between_periods() {
    let i = install("2026-01-10T09:00:00Z").await;
    i.account("ACC-1", "EMEA", "dana@vendor.example").await;
    i.respond("R1", "ACC-1", "2026-01-10T08:00:00Z", &[("nps", 10)], None)
        .await;
    i.set_clock("2026-02-01T09:00:00Z").await;
    i.account("ACC-1", "APAC", "dana@vendor.example").await;
    i.set_clock("2026-04-10T09:00:00Z").await;
    i.respond("R2", "ACC-1", "2026-04-10T08:00:00Z", &[("nps", 0)], None)
        .await;
    let mut by = req(&["region", "period"], None);
    by.period = "quarter".into();
    // Now: the account's region is APAC, for both periods.
    let a = i
        .until("nps", by.clone(), |a| a.get("", "responses") == Some(2.0))
        .await;
    assert_eq!(a.get("APAC/2026-Q1", "promoters"), Some(1.0));
    assert_eq!(a.get("APAC/2026-Q2", "detractors"), Some(1.0));
    assert!(!a.0.keys().any(|k| k.starts_with("EMEA")), "{a:#?}");
    // As of before the move: EMEA, and the later response not there yet.
    by.as_of = Some(ts("2026-01-20T00:00:00Z"));
    let a = i.until("nps", by, |_| true).await;
    assert_eq!(a.get("EMEA/2026-Q1", "promoters"), Some(1.0));
    assert_eq!(a.get("", "responses"), Some(1.0));
    i.app.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_views_rebuild_beside_the_live_ones_and_switch_over() {
    let i = install("2026-01-05T09:00:00Z").await;
    i.account("ACC-1", "EMEA", "dana@vendor.example").await;
    for (n, score) in [(1, 2), (2, 9), (3, 10)] {
        i.respond(
            &format!("R{n}"),
            "ACC-1",
            "2026-01-05T08:00:00Z",
            &[("nps", score)],
            None,
        )
        .await;
    }
    i.until("nps", req(&[], None), |a| {
        a.get("", "responses") == Some(3.0)
    })
    .await;
    let mut a = AnalyticsServiceClient::connect(i.app.grpc_url())
        .await
        .unwrap();
    let started = a
        .rebuild_views(v1::RebuildViewsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(started.started, 1);
    let again = a
        .rebuild_views(v1::RebuildViewsRequest {})
        .await
        .unwrap_err();
    assert_eq!(again.code(), tonic::Code::FailedPrecondition);
    assert!(
        again.message().contains("generation 1"),
        "{}",
        again.message()
    );
    // Reports answer in full all along, from one generation or the other.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = a.nps(req(&[], None)).await.unwrap().into_inner();
        let answer = Answer::of(&r);
        assert_eq!(answer.get("", "responses"), Some(3.0));
        assert_eq!(answer.get("", "nps"), Some(100.0 * (2.0 - 1.0) / 3.0));
        if r.positions.iter().all(|p| p.projection.ends_with("@g1")) {
            break;
        }
        assert!(Instant::now() < deadline, "never switched: {r:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let s = a
        .view_status(v1::ViewStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    let state = |g: u64| {
        s.generations
            .iter()
            .find(|x| x.generation == g)
            .map(|x| x.state.clone())
    };
    assert_eq!(state(0).as_deref(), Some("retired"));
    assert_eq!(state(1).as_deref(), Some("active"));
    let live = s.generations.iter().find(|x| x.generation == 1).unwrap();
    assert_eq!(live.projections.len(), 5);
    assert!(live.switched_at.is_some());
    // Caught up: nothing of their subjects left to apply.
    assert!(live.projections.iter().all(|p| p.pending == 0), "{live:?}");
    // The new generation follows the stream from here on.
    i.respond("R4", "ACC-1", "2026-01-05T08:30:00Z", &[("nps", 0)], None)
        .await;
    i.until("nps", req(&[], None), |a| {
        a.get("", "responses") == Some(4.0)
    })
    .await;
    // The next rebuild drops the retired generation's tables.
    let pool = sqlx::AnyPool::connect(&i.db.url).await.unwrap();
    let count = |table: &'static str| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(format!(
                "SELECT COUNT(*) FROM {table}"
            )))
            .fetch_one(&pool)
            .await
        }
    };
    assert_eq!(count("analytics_responses").await.unwrap(), 3);
    assert_eq!(count("analytics_responses_g1").await.unwrap(), 4);
    let next = a
        .rebuild_views(v1::RebuildViewsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next.started, 2);
    assert!(count("analytics_responses").await.is_err(), "dropped");
    i.until("nps", req(&[], None), |a| {
        a.get("", "responses") == Some(4.0)
    })
    .await;
    i.app.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_the_views_cannot_read_is_parked_with_the_reason() {
    let i = install("2026-01-05T09:00:00Z").await;
    i.account("ACC-1", "EMEA", "dana@vendor.example").await;
    i.respond("R1", "ACC-1", "2026-01-05T08:00:00Z", &[("nps", 2)], None)
        .await;
    i.ticket("R1").await;
    // Not a ticket event: no headers, no protobuf.
    let js = async_nats::jetstream::new(async_nats::connect(i.nats.url()).await.unwrap());
    let junk = js
        .publish(
            format!(
                "{}.events.ticket.0b8f3a4e-4a4e-4c6f-9a51-9d1f5f0e2c11",
                i.prefix
            ),
            "not an event".into(),
        )
        .await
        .unwrap()
        .await
        .unwrap()
        .sequence;
    i.respond("R2", "ACC-1", "2026-01-05T08:10:00Z", &[("nps", 1)], None)
        .await;
    i.ticket("R2").await;
    // The events around it are in the views ...
    i.until("closure", req(&[], None), |a| {
        a.get("", "pending") == Some(2.0)
    })
    .await;
    // ... and it is parked with the reason.
    let pool = sqlx::AnyPool::connect(&i.db.url).await.unwrap();
    let reason: String = sqlx::query_scalar(
        "SELECT reason FROM projection_errors WHERE projector = 'analytics_tickets' AND sequence = $1",
    )
    .bind(junk as i64)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(!reason.is_empty());
    i.app.stop().await.unwrap();
}
