//! `closeloop status`: what one closeloop process is doing, from its
//! `/readyz` and `/metrics`: one line for its roles and readiness, one per
//! projector (position, lag) and per durable consumer (position, lag,
//! dead letters, retries).

use std::collections::BTreeMap;
use std::process::ExitCode;

use clap::Args;
use serde_json::Value;

use crate::client::exit;
use crate::output::outln;

#[derive(Args)]
pub struct StatusArgs {
    /// The process's HTTP address (plain http: in-cluster or through a
    /// port-forward; on Kubernetes, one pod's).
    #[arg(
        long,
        env = "CLOSELOOP_HTTP_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    url: String,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value = "text")]
    output: Format,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Format {
    Text,
    Json,
}

/// Samples of a Prometheus text exposition: metric name → label set → value.
type Samples = BTreeMap<String, BTreeMap<BTreeMap<String, String>, f64>>;

/// Reads the sample lines of the Prometheus text format (as closeloop
/// writes it: no escaped quotes inside label values).
fn parse(text: &str) -> Samples {
    let mut out: Samples = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let (name, labels) = match series.split_once('{') {
            Some((n, rest)) => {
                let labels = rest
                    .trim_end_matches('}')
                    .split(',')
                    .filter_map(|kv| {
                        let (k, v) = kv.split_once('=')?;
                        Some((k.to_string(), v.trim_matches('"').to_string()))
                    })
                    .collect();
                (n, labels)
            }
            None => (series, BTreeMap::new()),
        };
        out.entry(name.to_string())
            .or_default()
            .insert(labels, value);
    }
    out
}

/// The value of `metric` for the series whose `label` is `value`.
fn get(s: &Samples, metric: &str, label: &str, value: &str, extra: Option<(&str, &str)>) -> u64 {
    s.get(metric)
        .and_then(|series| {
            series.iter().find_map(|(labels, v)| {
                let matches = labels.get(label).map(String::as_str) == Some(value)
                    && extra.is_none_or(|(k, x)| labels.get(k).map(String::as_str) == Some(x));
                matches.then_some(*v as u64)
            })
        })
        .unwrap_or(0)
}

fn names(s: &Samples, metric: &str, label: &str) -> Vec<String> {
    let mut v: Vec<String> = s
        .get(metric)
        .into_iter()
        .flat_map(|series| series.keys())
        .filter_map(|labels| labels.get(label).cloned())
        .collect();
    v.sort();
    v.dedup();
    v
}

pub async fn run(args: StatusArgs) -> ExitCode {
    let (ready_status, ready_body) =
        match crate::http::request("GET", &args.url, "/readyz", None).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(exit::UNAVAILABLE);
            }
        };
    let ready: Value = serde_json::from_slice(&ready_body).unwrap_or(Value::Null);
    let metrics = match crate::http::request("GET", &args.url, "/metrics", None).await {
        Ok((200, body)) => parse(&String::from_utf8_lossy(&body)),
        Ok((status, _)) => {
            eprintln!("error: {} answered {status} for /metrics", args.url);
            return ExitCode::from(exit::UNAVAILABLE);
        }
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(exit::UNAVAILABLE);
        }
    };
    let roles = ready
        .get("roles")
        .or_else(|| ready.pointer("/checks/roles"))
        .and_then(Value::as_str)
        .unwrap_or("?")
        .to_string();
    let is_ready = ready_status == 200;
    let projectors: Vec<Value> = names(&metrics, "closeloop_projector_sequence", "projector")
        .into_iter()
        .map(|p| {
            serde_json::json!({
                "projector": p,
                "position": get(&metrics, "closeloop_projector_sequence", "projector", &p, None),
                "pending": get(&metrics, "closeloop_projector_pending", "projector", &p, None),
            })
        })
        .collect();
    let consumers: Vec<Value> = names(&metrics, "closeloop_consumer_position", "consumer")
        .into_iter()
        .map(|c| {
            let verdict = |v| {
                get(
                    &metrics,
                    "closeloop_consumer_messages_total",
                    "consumer",
                    &c,
                    Some(("verdict", v)),
                )
            };
            serde_json::json!({
                "consumer": c,
                "position": get(&metrics, "closeloop_consumer_position", "consumer", &c, None),
                "pending": get(&metrics, "closeloop_consumer_pending", "consumer", &c, None),
                "done": verdict("done"),
                "dead_letters": verdict("dead_letter"),
                "retries": verdict("retry"),
            })
        })
        .collect();
    match args.output {
        Format::Json => crate::output::print_json(&serde_json::json!({
            "url": args.url,
            "ready": is_ready,
            "roles": roles,
            "readiness": ready,
            "projectors": projectors,
            "consumers": consumers,
        })),
        Format::Text => {
            outln!(
                "{:<10} {:<22} {}",
                "roles",
                roles,
                if is_ready { "ready" } else { "NOT READY" }
            );
            for p in &projectors {
                outln!(
                    "{:<10} {:<22} position {:<10} pending {}",
                    "projector",
                    p["projector"].as_str().unwrap_or_default(),
                    p["position"],
                    p["pending"]
                );
            }
            for c in &consumers {
                outln!(
                    "{:<10} {:<22} position {:<10} pending {:<8} dead letters {:<6} retries {}",
                    "consumer",
                    c["consumer"].as_str().unwrap_or_default(),
                    c["position"],
                    c["pending"],
                    c["dead_letters"],
                    c["retries"]
                );
            }
        }
    }
    if is_ready {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(exit::UNAVAILABLE)
    }
}
