//! `closeloop report closure|first-contact|escalations|nps|uplift|quality|
//! leaderboard|journey`: the analytics role's views, as tables, JSON or CSV,
//! and `--explain` for the tickets, responses or accounts behind a row.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use closeloop_proto::v1;
use closeloop_proto::v1::analytics_service_client::AnalyticsServiceClient;
use serde_json::{Value, json};

use crate::client::{self, CliError};
use crate::output::{self, outln, rfc3339, text};
use crate::sla::{Format, parse_time};

#[derive(Args)]
pub struct ReportArgs {
    /// gRPC address of a closeloop server running the analytics role.
    #[arg(
        long,
        global = true,
        env = "CLOSELOOP_SERVER",
        default_value = "http://127.0.0.1:50051"
    )]
    server: String,
    #[command(subcommand)]
    command: View,
}

#[derive(Subcommand)]
enum View {
    /// Tickets closed within their target: met, missed, pending, the rate
    /// against the target rate and how many more were needed.
    Closure(ViewArgs),
    /// Tickets whose first contact was within its target.
    FirstContact(ViewArgs),
    /// Tickets warned, breached (per clock) and escalated (per level).
    Escalations(ViewArgs),
    /// NPS (promoters, passives, detractors, score), CSAT and CES.
    Nps(ViewArgs),
    /// NPS change of accounts whose feedback was acted on against the
    /// others', per pair of consecutive periods (default: years), with a
    /// bootstrap 95% interval of the difference.
    Uplift(ViewArgs),
    /// Closure quality: closed tickets scored on the rubric; --best N or
    /// --worst N lists tickets with the criteria they missed.
    Quality(ViewArgs),
    /// Account teams (the account's CSM) ranked per period (default:
    /// quarters).
    Leaderboard(ViewArgs),
    /// Per program and journey stage: responses, metric, tickets, open,
    /// closure and first-contact rates, breaches, unmatched responses.
    Journey(ViewArgs),
}

#[derive(Args)]
struct ViewArgs {
    /// Slices, comma-separated: program, workflow, team, region, owner,
    /// segment, period.
    #[arg(long, value_delimiter = ',')]
    by: Vec<String>,
    /// Start of the period, inclusive: an RFC 3339 time, or a date (its
    /// midnight in --tz).
    #[arg(long)]
    from: Option<String>,
    /// End of the period, exclusive: an RFC 3339 time, or a date (its
    /// midnight in --tz).
    #[arg(long)]
    to: Option<String>,
    /// Buckets of the period slice: day, week, month, quarter, year
    /// (default: month; quarter for leaderboard, year for uplift).
    #[arg(long, default_value = "")]
    period: String,
    /// Time zone of the period buckets (IANA, default UTC).
    #[arg(long, default_value = "")]
    tz: String,
    /// Evaluate as of this time (default: now): an RFC 3339 time, or a date
    /// (its midnight in --tz).
    #[arg(long)]
    as_of: Option<String>,
    /// Only items whose slice has this value: DIMENSION=VALUE (repeatable).
    #[arg(long = "where")]
    only: Vec<String>,
    /// List the tickets or responses behind the row with this key (its
    /// slice values, comma-separated, in --by order; `all` for every row).
    #[arg(long)]
    explain: Option<String>,
    /// With --explain: only met, missed or pending (closure,
    /// first-contact); promoter, passive or detractor (nps); warned,
    /// breached or escalated (escalations); acted or not-acted (uplift);
    /// responses, unmatched, tickets, open or breached (journey).
    #[arg(long, default_value = "")]
    only_items: String,
    /// quality: list the N best-scored closed tickets (all rows, or the
    /// row of --explain).
    #[arg(long, value_name = "N", conflicts_with = "worst",
          value_parser = clap::value_parser!(u32).range(1..))]
    best: Option<u32>,
    /// quality: list the N worst-scored closed tickets, with the criteria
    /// they missed.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    worst: Option<u32>,
    /// With --explain: at most N lines.
    #[arg(long, value_name = "N")]
    limit: Option<u32>,
    #[arg(short = 'o', long = "output", value_enum, default_value = "table")]
    output: Format,
}

pub async fn run(args: ReportArgs) -> ExitCode {
    let server = args.server.clone();
    match report(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => client::report(&server, e),
    }
}

/// An RFC 3339 time, or a date (`2026-01-01`): the first instant of that day
/// in the report's time zone `tz` (`--tz`; UTC when empty), so that
/// `--from`/`--to` dates bound the same days the period buckets show. Where
/// the clocks skip midnight, the day starts at the instant they jump to.
fn time_arg(field: &str, s: &str, tz: &str) -> Result<prost_types::Timestamp, CliError> {
    let s = s.trim();
    if s.len() != 10 || s.as_bytes()[4] != b'-' {
        return parse_time(field, s);
    }
    let bad = |e: jiff::Error| {
        CliError::Usage(format!(
            "{field} {s:?} is not a date (YYYY-MM-DD) or an RFC 3339 time: {e}"
        ))
    };
    let date: jiff::civil::Date = s.parse().map_err(bad)?;
    // A zone the tz database does not know is refused by the server, naming
    // it; the date is not what is wrong then.
    let zone = match tz.trim() {
        "" => jiff::tz::TimeZone::UTC,
        z => jiff::tz::TimeZone::get(z).unwrap_or(jiff::tz::TimeZone::UTC),
    };
    let start = date.to_zoned(zone).map_err(bad)?;
    Ok(prost_types::Timestamp {
        seconds: start.timestamp().as_second(),
        nanos: 0,
    })
}

fn request(a: &ViewArgs) -> Result<v1::ReportRequest, CliError> {
    let mut only = Vec::new();
    for w in &a.only {
        let Some((d, v)) = w.split_once('=') else {
            return Err(CliError::Usage(format!(
                "--where {w:?}: use DIMENSION=VALUE, e.g. --where program=relationship-nps"
            )));
        };
        only.push(v1::SliceValue {
            dimension: d.trim().to_string(),
            value: v.trim().to_string(),
        });
    }
    Ok(v1::ReportRequest {
        by: a
            .by
            .iter()
            .map(|b| b.trim().to_string())
            .filter(|b| !b.is_empty())
            .collect(),
        from: a
            .from
            .as_deref()
            .map(|t| time_arg("--from", t, &a.tz))
            .transpose()?,
        to: a
            .to
            .as_deref()
            .map(|t| time_arg("--to", t, &a.tz))
            .transpose()?,
        period: a.period.clone(),
        time_zone: a.tz.clone(),
        as_of: a
            .as_of
            .as_deref()
            .map(|t| time_arg("--as-of", t, &a.tz))
            .transpose()?,
        only,
    })
}

async fn report(args: ReportArgs) -> Result<(), CliError> {
    let mut c = AnalyticsServiceClient::new(client::channel(&args.server).await?);
    let (name, a) = match &args.command {
        View::Closure(a) => ("closure", a),
        View::FirstContact(a) => ("first-contact", a),
        View::Escalations(a) => ("escalations", a),
        View::Nps(a) => ("nps", a),
        View::Uplift(a) => ("uplift", a),
        View::Quality(a) => ("quality", a),
        View::Leaderboard(a) => ("leaderboard", a),
        View::Journey(a) => ("journey", a),
    };
    let req = request(a)?;
    let ranked = match (a.best, a.worst) {
        (Some(n), _) => Some(("best", n)),
        (_, Some(n)) => Some(("worst", n)),
        _ => None,
    };
    if ranked.is_some() && name != "quality" {
        return Err(CliError::Usage(
            "--best and --worst list closures of the quality view: use `closeloop report quality --worst 10`".into(),
        ));
    }
    if a.explain.is_some() || ranked.is_some() {
        let key: Vec<String> = match a.explain.as_deref().map(str::trim) {
            None | Some("all") => Vec::new(),
            Some(key) => key.split(',').map(|k| k.trim().to_string()).collect(),
        };
        let r = c
            .explain(v1::ExplainRequest {
                view: name.to_string(),
                request: Some(req),
                key,
                only: a.only_items.clone(),
                order: ranked.map(|(o, _)| o.to_string()).unwrap_or_default(),
                limit: ranked.map(|(_, n)| n).or(a.limit).unwrap_or(0),
            })
            .await?
            .into_inner();
        print_explained(&r, a.output);
        return Ok(());
    }
    let r = match &args.command {
        View::Closure(_) => c.closure(req).await?,
        View::FirstContact(_) => c.first_contact(req).await?,
        View::Escalations(_) => c.escalations(req).await?,
        View::Nps(_) => c.nps(req).await?,
        View::Uplift(_) => c.uplift(req).await?,
        View::Quality(_) => c.quality(req).await?,
        View::Leaderboard(_) => c.leaderboard(req).await?,
        View::Journey(_) => c.journey(req).await?,
    }
    .into_inner();
    print_report(&r, a.output);
    Ok(())
}

/// Counts as integers, rates and scores with one decimal, `-` where a
/// measure does not apply.
fn cell(measure: &str, v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(v)
            if measure.ends_with("rate")
                || measure.ends_with("_before")
                || measure.ends_with("_after")
                || measure.ends_with("_change")
                || measure.starts_with("ci_")
                || v.fract() != 0.0 =>
        {
            format!("{v:.1}")
        }
        Some(v) => format!("{v}"),
    }
}

fn values(r: &v1::Report, row: &v1::ReportRow) -> Vec<Option<f64>> {
    (0..r.measures.len())
        .map(|i| row.values.get(i).and_then(|m| m.value))
        .collect()
}

fn print_report(r: &v1::Report, format: Format) {
    let total = r.total.clone().unwrap_or_default();
    match format {
        Format::Json => {
            let row = |row: &v1::ReportRow| {
                let key: serde_json::Map<String, Value> = r
                    .dimensions
                    .iter()
                    .zip(&row.key)
                    .map(|(d, k)| (d.clone(), Value::from(k.clone())))
                    .collect();
                let vals: serde_json::Map<String, Value> = r
                    .measures
                    .iter()
                    .zip(values(r, row))
                    .map(|(m, v)| (m.clone(), v.map_or(Value::Null, Value::from)))
                    .collect();
                json!({"key": key, "values": vals})
            };
            output::print_json(&json!({
                "view": r.view,
                "as_of": rfc3339(&r.as_of),
                "positions": r.positions.iter().map(|p| json!({"projection": p.projection, "sequence": p.sequence})).collect::<Vec<_>>(),
                "dimensions": r.dimensions,
                "measures": r.measures,
                "rows": r.rows.iter().map(row).collect::<Vec<_>>(),
                "total": row(&total),
            }));
        }
        Format::Csv => {
            let mut w = csv::Writer::from_writer(Vec::new());
            let _ = w.write_record(r.dimensions.iter().chain(&r.measures));
            let line = |w: &mut csv::Writer<Vec<u8>>, key: Vec<String>, row: &v1::ReportRow| {
                let vals = values(r, row)
                    .into_iter()
                    .map(|v| v.map(|v| v.to_string()).unwrap_or_default());
                let _ = w.write_record(key.into_iter().chain(vals));
            };
            for row in &r.rows {
                line(&mut w, row.key.clone(), row);
            }
            let key = if r.dimensions.is_empty() {
                Vec::new()
            } else {
                std::iter::once("(total)".to_string())
                    .chain(std::iter::repeat_n(String::new(), r.dimensions.len() - 1))
                    .collect()
            };
            line(&mut w, key, &total);
            let bytes = w.into_inner().unwrap_or_default();
            output::write_stdout(format_args!("{}", String::from_utf8_lossy(&bytes)));
        }
        Format::Table => {
            outln!("{} as of {}", r.view, text(&rfc3339(&r.as_of)));
            let head: Vec<String> = r.dimensions.iter().chain(&r.measures).cloned().collect();
            let mut lines: Vec<Vec<String>> = r
                .rows
                .iter()
                .map(|row| {
                    row.key
                        .iter()
                        .cloned()
                        .chain(
                            r.measures
                                .iter()
                                .zip(values(r, row))
                                .map(|(m, v)| cell(m, v)),
                        )
                        .collect()
                })
                .collect();
            let mut t: Vec<String> = (0..r.dimensions.len())
                .map(|i| {
                    if i == 0 {
                        "total".into()
                    } else {
                        String::new()
                    }
                })
                .collect();
            t.extend(
                r.measures
                    .iter()
                    .zip(values(r, &total))
                    .map(|(m, v)| cell(m, v)),
            );
            if r.dimensions.is_empty() {
                lines.clear();
            }
            lines.push(t);
            let keys = r.dimensions.len();
            output::table(&head, &lines, |i| i >= keys);
        }
    }
}

fn print_explained(r: &v1::ExplainResponse, format: Format) {
    match format {
        Format::Json => output::print_json(&json!({
            "items": r.items,
            "as_of": rfc3339(&r.as_of),
            "lines": r.lines.iter().map(|l| {
                r.columns.iter().cloned().zip(l.cells.iter().cloned().map(Value::from)).collect::<serde_json::Map<_, _>>()
            }).collect::<Vec<_>>(),
        })),
        Format::Csv => {
            let mut w = csv::Writer::from_writer(Vec::new());
            let _ = w.write_record(&r.columns);
            for l in &r.lines {
                let _ = w.write_record(&l.cells);
            }
            let bytes = w.into_inner().unwrap_or_default();
            output::write_stdout(format_args!("{}", String::from_utf8_lossy(&bytes)));
        }
        Format::Table => {
            outln!(
                "{} {} as of {}",
                r.lines.len(),
                r.items,
                text(&rfc3339(&r.as_of))
            );
            let lines: Vec<Vec<String>> = r.lines.iter().map(|l| l.cells.clone()).collect();
            output::table(&r.columns, &lines, |_| false);
        }
    }
}

#[derive(Args)]
pub struct ProjectionsArgs {
    /// gRPC address of a closeloop server running the analytics role.
    #[arg(
        long,
        global = true,
        env = "CLOSELOOP_SERVER",
        default_value = "http://127.0.0.1:50051"
    )]
    server: String,
    #[command(subcommand)]
    command: ProjectionsCommand,
}

#[derive(Subcommand)]
enum ProjectionsCommand {
    /// Rebuild views from the start of the stream into fresh tables, beside
    /// the live ones, and switch over when caught up (no downtime).
    Rebuild {
        /// The views to rebuild: `analytics` (every analytics view: they
        /// share their fact tables). Other views (tickets, the directory)
        /// rebuild from an empty database: see docs/operations.md.
        #[arg(long, default_value = "analytics")]
        view: String,
        /// Wait until the rebuilt views are live, showing progress.
        #[arg(long)]
        wait: bool,
    },
    /// Each analytics projection's generation, position and lag.
    Status {
        #[arg(short = 'o', long = "output", value_enum, default_value = "table")]
        output: Format,
    },
}

pub async fn run_projections(args: ProjectionsArgs) -> ExitCode {
    let server = args.server.clone();
    match projections(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => client::report(&server, e),
    }
}

async fn projections(args: ProjectionsArgs) -> Result<(), CliError> {
    let mut c = AnalyticsServiceClient::new(client::channel(&args.server).await?);
    match args.command {
        ProjectionsCommand::Rebuild { view, wait } => {
            let analytics_views = [
                "analytics",
                "closure",
                "first-contact",
                "escalations",
                "nps",
                "uplift",
                "quality",
                "leaderboard",
                "journey",
            ];
            if !analytics_views.contains(&view.trim()) {
                return Err(CliError::Usage(format!(
                    "--view {view:?}: this version rebuilds the analytics views (--view analytics, \
                     or any one of them: they share their fact tables); tickets and directory views \
                     rebuild by starting their role on an empty database"
                )));
            }
            let r = c
                .rebuild_views(v1::RebuildViewsRequest {})
                .await?
                .into_inner();
            let g = r.started;
            outln!("rebuilding the analytics views as generation {g}");
            if !wait {
                print_generations(&r, Format::Table);
                return Ok(());
            }
            loop {
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                let s = c.view_status(v1::ViewStatusRequest {}).await?.into_inner();
                let Some(mine) = s.generations.iter().find(|x| x.generation == g) else {
                    return Err(CliError::Usage(format!(
                        "generation {g} is gone (another rebuild replaced it)"
                    )));
                };
                if mine.state == "active" {
                    outln!("generation {g} is live");
                    print_generations(&s, Format::Table);
                    return Ok(());
                }
                let done: u64 = mine.projections.iter().map(|p| p.pending).sum();
                outln!("generation {g}: {done} events still to apply");
            }
        }
        ProjectionsCommand::Status { output } => {
            let s = c.view_status(v1::ViewStatusRequest {}).await?.into_inner();
            print_generations(&s, output);
            Ok(())
        }
    }
}

fn print_generations(s: &v1::ViewGenerations, format: Format) {
    match format {
        Format::Json => output::print_json(&json!({
            "generations": s.generations.iter().map(|g| json!({
                "generation": g.generation,
                "state": g.state,
                "started_at": rfc3339(&g.started_at),
                "switched_at": rfc3339(&g.switched_at),
                "projections": g.projections.iter().map(|p| json!({
                    "projection": p.projection,
                    "sequence": p.sequence,
                    "pending": p.pending,
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        })),
        Format::Csv | Format::Table => {
            let head: Vec<String> = ["generation", "state", "projection", "position", "lag"]
                .map(String::from)
                .to_vec();
            let lines: Vec<Vec<String>> = s
                .generations
                .iter()
                .flat_map(|g| {
                    g.projections.iter().map(|p| {
                        vec![
                            g.generation.to_string(),
                            g.state.clone(),
                            p.projection.clone(),
                            p.sequence.to_string(),
                            p.pending.to_string(),
                        ]
                    })
                })
                .collect();
            if matches!(format, Format::Csv) {
                let mut w = csv::Writer::from_writer(Vec::new());
                let _ = w.write_record(&head);
                for l in &lines {
                    let _ = w.write_record(l);
                }
                let bytes = w.into_inner().unwrap_or_default();
                output::write_stdout(format_args!("{}", String::from_utf8_lossy(&bytes)));
            } else {
                output::table(&head, &lines, |i| i >= 3);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::time_arg;

    fn at(field: &str, s: &str, tz: &str) -> String {
        let Ok(t) = time_arg(field, s, tz) else {
            panic!("{field} {s} refused")
        };
        humantime::format_rfc3339(
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(t.seconds as u64),
        )
        .to_string()
    }

    #[test]
    fn a_date_is_its_midnight_in_the_reports_time_zone() {
        for (field, given, tz, want) in [
            ("--from", "2026-11-09", "", "2026-11-09T00:00:00Z"),
            (
                "--from",
                "2026-11-09",
                "Pacific/Honolulu",
                "2026-11-09T10:00:00Z",
            ),
            ("--to", "2026-07-01", "Europe/Paris", "2026-06-30T22:00:00Z"),
            // Sao Paulo skipped midnight on 2018-11-04: the day began at 01:00.
            (
                "--from",
                "2018-11-04",
                "America/Sao_Paulo",
                "2018-11-04T03:00:00Z",
            ),
            // A time says its own zone.
            (
                "--as-of",
                "2026-11-09T12:00:00Z",
                "Pacific/Honolulu",
                "2026-11-09T12:00:00Z",
            ),
        ] {
            assert_eq!(at(field, given, tz), want, "{field} {given} in {tz:?}");
        }
        assert!(time_arg("--from", "2026-13-01", "").is_err());
    }
}
