//! `closeloop status`: what closeloop processes are doing, from each one's
//! `/readyz` and `/metrics`: per process, one line for its roles and
//! readiness, one per projector (the roles' and the analytics views';
//! position, lag) and per durable consumer (position, lag, dead letters
//! and retries since it started); with
//! `--nats-url`, also what each consumer has parked in the dead-letter
//! stream (what `closeloop dlq list` lists).

use std::collections::BTreeMap;
use std::process::ExitCode;

use clap::Args;
use serde_json::Value;

use crate::client::exit;
use crate::output::outln;

#[derive(Args)]
pub struct StatusArgs {
    /// A process's HTTP address (plain http: in-cluster or through a
    /// port-forward; on Kubernetes, one pod's). Repeat the flag, or separate
    /// addresses with commas, to report on several processes (one per role).
    #[arg(
        long = "url",
        env = "CLOSELOOP_HTTP_URL",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:8080"
    )]
    urls: Vec<String>,
    /// Also count each consumer's parked messages in the dead-letter stream
    /// on this NATS server.
    #[arg(long, env = "CLOSELOOP_NATS_URL")]
    nats_url: Option<String>,
    /// The install's subject prefix (with --nats-url).
    #[arg(long, env = "CLOSELOOP_PREFIX", default_value = "closeloop")]
    prefix: String,
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

/// One process's report, or why there is none.
async fn process(url: &str) -> Result<Value, String> {
    let (ready_status, ready_body) = crate::http::request("GET", url, "/readyz", None)
        .await
        .map_err(|e| e.to_string())?;
    let ready: Value = serde_json::from_slice(&ready_body).unwrap_or(Value::Null);
    let metrics = match crate::http::request("GET", url, "/metrics", None).await {
        Ok((200, body)) => parse(&String::from_utf8_lossy(&body)),
        Ok((status, _)) => return Err(format!("{url} answered {status} for /metrics")),
        Err(e) => return Err(e.to_string()),
    };
    let roles = ready
        .get("roles")
        .or_else(|| ready.pointer("/checks/roles"))
        .and_then(Value::as_str)
        .unwrap_or("?")
        .to_string();
    // The roles' projectors, then the analytics views' (their names carry
    // their generation: `analytics_tickets`, `analytics_tickets@g1`).
    let projectors: Vec<Value> = [
        (
            "closeloop_projector_sequence",
            "closeloop_projector_pending",
        ),
        (
            "closeloop_analytics_projector_sequence",
            "closeloop_analytics_projector_pending",
        ),
    ]
    .into_iter()
    .flat_map(|(position, pending)| {
        names(&metrics, position, "projector")
            .into_iter()
            .map(|p| {
                serde_json::json!({
                    "projector": p,
                    "position": get(&metrics, position, "projector", &p, None),
                    "pending": get(&metrics, pending, "projector", &p, None),
                })
            })
            .collect::<Vec<_>>()
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
    Ok(serde_json::json!({
        "url": url,
        "ready": ready_status == 200,
        "roles": roles,
        "readiness": ready,
        "projectors": projectors,
        "consumers": consumers,
    }))
}

/// Parked messages per consumer in the dead-letter stream.
async fn parked(nats_url: &str, prefix: &str) -> Result<BTreeMap<String, u64>, String> {
    let prefix = closeloop_eventstore::Prefix::parse(prefix).map_err(|e| e.to_string())?;
    let client = async_nats::ConnectOptions::new()
        .connection_timeout(std::time::Duration::from_secs(5))
        .connect(nats_url)
        .await
        .map_err(|e| format!("cannot connect to NATS at {nats_url}: {e}"))?;
    let js = async_nats::jetstream::new(client);
    let letters = closeloop_eventstore::dlq::list(&js, &prefix, None)
        .await
        .map_err(|e| e.to_string())?;
    let mut out = BTreeMap::new();
    for l in letters {
        *out.entry(l.consumer).or_insert(0) += 1;
    }
    Ok(out)
}

pub async fn run(args: StatusArgs) -> ExitCode {
    let mut processes = Vec::new();
    let mut all_ready = true;
    for url in &args.urls {
        match process(url).await {
            Ok(p) => {
                all_ready &= p["ready"] == true;
                processes.push(p);
            }
            Err(e) => {
                all_ready = false;
                eprintln!("error: {e}");
                processes.push(serde_json::json!({"url": url, "ready": false, "error": e}));
            }
        }
    }
    let parked = match &args.nats_url {
        None => None,
        Some(n) => match parked(n, &args.prefix).await {
            Ok(p) => Some(p),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(exit::UNAVAILABLE);
            }
        },
    };
    match args.output {
        Format::Json => crate::output::print_json(&serde_json::json!({
            "ready": all_ready,
            "processes": processes,
            "parked": parked,
        })),
        Format::Text => {
            for p in &processes {
                if let Some(e) = p.get("error") {
                    outln!(
                        "{:<10} {:<22} UNREACHABLE: {}",
                        "process",
                        p["url"].as_str().unwrap_or_default(),
                        e.as_str().unwrap_or_default()
                    );
                    continue;
                }
                outln!(
                    "{:<10} {:<22} {}  ({})",
                    "roles",
                    p["roles"].as_str().unwrap_or_default(),
                    if p["ready"] == true {
                        "ready"
                    } else {
                        "NOT READY"
                    },
                    p["url"].as_str().unwrap_or_default()
                );
                for p in p["projectors"].as_array().into_iter().flatten() {
                    outln!(
                        "{:<10} {:<22} position {:<10} pending {}",
                        "projector",
                        p["projector"].as_str().unwrap_or_default(),
                        p["position"],
                        p["pending"]
                    );
                }
                for c in p["consumers"].as_array().into_iter().flatten() {
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
            for (consumer, n) in parked.iter().flatten() {
                outln!("{:<10} {:<22} parked {n}", "dlq", consumer);
            }
        }
    }
    if all_ready {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(exit::UNAVAILABLE)
    }
}
