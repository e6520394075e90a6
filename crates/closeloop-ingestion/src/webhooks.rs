//! Vendor webhooks: Delighted and Formbricks deliveries, verified, mapped to
//! the canonical feedback document and submitted like any other feedback.
//!
//! A mapping file (`--webhooks FILE`, see `deploy/examples/webhooks.yaml` and
//! `docs/ingestion.md`) says which program a vendor's responses belong to,
//! where the account id is found, and which vendor question is which
//! canonical answer. Values are addressed by dotted paths into the vendor's
//! response object (`person_properties.account_id`, `data.q1`); for Delighted,
//! `additional_answers.<question id>` reads an additional question's answer.
//!
//! Signatures:
//! * Delighted: `X-Delighted-Webhook-Signature: sha256=<hex>`, the
//!   HMAC-SHA256 of the raw body keyed with the account's private API key.
//! * Formbricks: Standard Webhooks. `webhook-signature: v1,<base64> ...` is
//!   the HMAC-SHA256 of `<webhook-id>.<webhook-timestamp>.<body>` keyed with
//!   the base64 part of the `whsec_...` secret; deliveries whose timestamp is
//!   more than 5 minutes from our clock are refused (replays).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, KeyInit, Mac};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use sha2::Sha256;

/// Standard Webhooks replay window.
pub const TIMESTAMP_TOLERANCE: Duration = Duration::from_secs(5 * 60);

/// Where one vendor survey's values go in the canonical document.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    /// The closeloop program the responses belong to.
    pub program: String,
    /// Path to the account id.
    pub account_id: String,
    /// Canonical answer id → path of the vendor value.
    #[serde(default)]
    pub answers: BTreeMap<String, String>,
    /// Canonical attribute → path of the vendor value.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    /// `email`, `name`, `role` → path (vendor defaults apply when absent).
    #[serde(default)]
    pub respondent: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DelightedConfig {
    /// Environment variable holding the private API key Delighted signs with.
    #[serde(default)]
    pub secret_env: Option<String>,
    /// Or a file holding it (e.g. a mounted Kubernetes Secret).
    #[serde(default)]
    pub secret_file: Option<std::path::PathBuf>,
    /// Canonical `source` (default `delighted`).
    #[serde(default = "delighted")]
    pub source: String,
    pub program: String,
    pub account_id: String,
    #[serde(default)]
    pub answers: BTreeMap<String, String>,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    #[serde(default)]
    pub respondent: BTreeMap<String, String>,
}

impl DelightedConfig {
    pub fn mapping(&self) -> Mapping {
        Mapping {
            program: self.program.clone(),
            account_id: self.account_id.clone(),
            answers: self.answers.clone(),
            attributes: self.attributes.clone(),
            respondent: self.respondent.clone(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FormbricksConfig {
    /// Environment variable holding the webhook's `whsec_...` signing secret.
    #[serde(default)]
    pub secret_env: Option<String>,
    /// Or a file holding it.
    #[serde(default)]
    pub secret_file: Option<std::path::PathBuf>,
    #[serde(default = "formbricks")]
    pub source: String,
    /// Formbricks events that carry a response to take (default: finished responses only).
    #[serde(default = "finished")]
    pub events: Vec<String>,
    /// Formbricks survey id → mapping.
    pub surveys: BTreeMap<String, Mapping>,
}

fn delighted() -> String {
    "delighted".into()
}
fn formbricks() -> String {
    "formbricks".into()
}
fn finished() -> Vec<String> {
    vec!["responseFinished".into()]
}

#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
struct File {
    delighted: Option<DelightedConfig>,
    formbricks: Option<FormbricksConfig>,
}

/// The loaded mapping file with its secrets.
#[derive(Debug, Clone, Default)]
pub struct Webhooks {
    pub delighted: Option<(DelightedConfig, Vec<u8>)>,
    pub formbricks: Option<(FormbricksConfig, Vec<u8>)>,
}

impl Webhooks {
    /// Parses a mapping file, reading each vendor's secret from the
    /// environment through `env`. Reports every problem.
    pub fn parse(
        text: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Webhooks, Vec<String>> {
        let file: File = serde_norway::from_str(text).map_err(|e| vec![e.to_string()])?;
        let mut errors = Vec::new();
        let mut out = Webhooks::default();
        if let Some(d) = file.delighted {
            match secret("delighted", &d.secret_env, &d.secret_file, &env) {
                Ok(s) => out.delighted = Some((d, s.into_bytes())),
                Err(e) => errors.push(format!("{e} (Delighted's private API key)")),
            }
        }
        if let Some(f) = file.formbricks {
            if f.surveys.is_empty() {
                errors.push("formbricks.surveys: map at least one Formbricks survey id".into());
            }
            match secret("formbricks", &f.secret_env, &f.secret_file, &env) {
                Ok(s) => match standard_secret(&s) {
                    Ok(key) => out.formbricks = Some((f, key)),
                    Err(e) => errors.push(format!("formbricks: the signing secret is {e}")),
                },
                Err(e) => errors.push(format!("{e} (the webhook's whsec_ signing secret)")),
            }
        }
        if errors.is_empty() {
            Ok(out)
        } else {
            Err(errors)
        }
    }

    pub fn load(path: &Path) -> Result<Webhooks, Vec<String>> {
        let text = std::fs::read_to_string(path).map_err(|e| vec![format!("cannot read: {e}")])?;
        Webhooks::parse(&text, |k| std::env::var(k).ok())
    }
}

/// A vendor's secret from `secret_env` or `secret_file` (exactly one).
fn secret(
    vendor: &str,
    var: &Option<String>,
    file: &Option<std::path::PathBuf>,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<String, String> {
    let value = match (var, file) {
        (Some(v), None) => env(v).ok_or(format!(
            "{vendor}.secret_env: environment variable {v} is not set"
        ))?,
        (None, Some(f)) => std::fs::read_to_string(f)
            .map_err(|e| format!("{vendor}.secret_file: cannot read {}: {e}", f.display()))?,
        _ => {
            return Err(format!(
                "{vendor}: give exactly one of secret_env or secret_file"
            ));
        }
    };
    let value = value.trim().to_string();
    if value.is_empty() {
        return Err(format!("{vendor}: the secret is empty"));
    }
    Ok(value)
}

/// The HMAC key of a Standard Webhooks `whsec_<base64>` secret.
pub fn standard_secret(secret: &str) -> Result<Vec<u8>, String> {
    let b64 = secret.strip_prefix("whsec_").unwrap_or(secret);
    B64.decode(b64.trim())
        .map_err(|e| format!("not a whsec_<base64> secret: {e}"))
}

fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> Hmac<Sha256> {
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    for p in parts {
        mac.update(p);
    }
    mac
}

/// Checks Delighted's `X-Delighted-Webhook-Signature` (`sha256=<hex>`).
pub fn verify_delighted(key: &[u8], signature: Option<&str>, body: &[u8]) -> Result<(), String> {
    let sig = signature.ok_or("missing X-Delighted-Webhook-Signature header")?;
    let hex_sig = sig
        .trim()
        .strip_prefix("sha256=")
        .ok_or("X-Delighted-Webhook-Signature must be sha256=<hex>")?;
    let raw = hex::decode(hex_sig).map_err(|_| "X-Delighted-Webhook-Signature is not hex")?;
    hmac_sha256(key, &[body]).verify_slice(&raw).map_err(|_| {
        "signature does not match the body (wrong API key, or the body was altered)".into()
    })
}

/// Checks a Standard Webhooks delivery (`webhook-id`, `webhook-timestamp`,
/// `webhook-signature`) at time `now`.
pub fn verify_standard(
    key: &[u8],
    id: Option<&str>,
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now: SystemTime,
) -> Result<(), String> {
    let id = id.ok_or("missing webhook-id header")?;
    let ts = timestamp.ok_or("missing webhook-timestamp header")?;
    let sigs = signature.ok_or("missing webhook-signature header")?;
    let secs: u64 = ts
        .trim()
        .parse()
        .map_err(|_| "webhook-timestamp is not Unix seconds")?;
    let now = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    if now.abs_diff(secs) > TIMESTAMP_TOLERANCE.as_secs() {
        return Err(format!(
            "webhook-timestamp {secs} is more than {}s from now ({now}): refused as a possible replay",
            TIMESTAMP_TOLERANCE.as_secs()
        ));
    }
    let mac = hmac_sha256(
        key,
        &[id.as_bytes(), b".", ts.trim().as_bytes(), b".", body],
    );
    let expected = mac.finalize().into_bytes();
    for s in sigs.split_whitespace() {
        if let Some(b64) = s.strip_prefix("v1,")
            && let Ok(raw) = B64.decode(b64)
            && hmac_eq(&raw, &expected)
        {
            return Ok(());
        }
    }
    Err("no v1 signature matches the body (wrong secret, or the body was altered)".into())
}

/// Constant-time comparison.
fn hmac_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A mapping problem, reported like a validation problem: the pointer names
/// the canonical field, the detail says which vendor path fed it.
#[derive(Debug, Clone, PartialEq)]
pub struct MappingProblem {
    pub pointer: String,
    pub detail: String,
}

fn lookup<'a>(root: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = root;
    let mut parts = path.split('.');
    while let Some(p) = parts.next() {
        if p == "additional_answers"
            && let Some(list) = cur.get(p).and_then(Value::as_array)
        {
            // Delighted: additional_answers.<question id> → that answer's value.
            let qid = parts.next()?;
            let entry = list.iter().find(|a| {
                a.pointer("/question/id").and_then(Value::as_str) == Some(qid)
                    || a.get("id").and_then(Value::as_str) == Some(qid)
            })?;
            return delighted_answer(entry);
        }
        cur = match cur {
            Value::Object(m) => m.get(p)?,
            Value::Array(a) => a.get(p.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

/// The value of a Delighted additional answer: the first non-null of
/// `scale`, `free_response`, `select_one.text`, `select_many[].text`.
fn delighted_answer(entry: &Value) -> Option<&Value> {
    let v = entry.get("value")?;
    for k in ["scale", "free_response"] {
        if let Some(x) = v.get(k).filter(|x| !x.is_null()) {
            return Some(x);
        }
    }
    if let Some(t) = v.pointer("/select_one/text") {
        return Some(t);
    }
    v.get("select_many").filter(|x| !x.is_null())
}

/// Text of a vendor value for attributes and respondent fields.
fn as_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .map(|i| i.get("text").map(as_text).unwrap_or_else(|| as_text(i)))
            .collect::<Vec<_>>()
            .join(", "),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Builds the canonical document. `vendor` is the vendor's response object;
/// `defaults` fill respondent fields the mapping does not name.
fn canonical(
    m: &Mapping,
    source: &str,
    response_id: &str,
    (submitted_at, revised_at): (&str, Option<String>),
    vendor: &Value,
    defaults: &[(&str, &str)],
) -> Result<Value, Vec<MappingProblem>> {
    let mut problems = Vec::new();
    let account_id = match lookup(vendor, &m.account_id)
        .map(as_text)
        .filter(|s| !s.is_empty())
    {
        Some(a) => a,
        None => {
            problems.push(MappingProblem {
                pointer: "/account_id".into(),
                detail: format!(
                    "the delivery has no value at {} (mapped to account_id)",
                    m.account_id
                ),
            });
            String::new()
        }
    };
    let mut answers = Map::new();
    for (answer, path) in &m.answers {
        match lookup(vendor, path) {
            // Unanswered: left out, the program decides whether that is allowed.
            None | Some(Value::Null) => {}
            Some(Value::Array(a)) if a.is_empty() => {}
            Some(v @ (Value::Number(_) | Value::String(_) | Value::Bool(_))) => {
                answers.insert(answer.clone(), v.clone());
            }
            Some(v) => {
                answers.insert(answer.clone(), Value::String(as_text(v)));
            }
        }
    }
    let mut attributes = Map::new();
    for (attr, path) in &m.attributes {
        if let Some(v) = lookup(vendor, path).map(as_text).filter(|s| !s.is_empty()) {
            attributes.insert(attr.clone(), Value::String(v));
        }
    }
    let mut respondent = Map::new();
    for (field, path) in defaults {
        if let Some(v) = lookup(vendor, path).map(as_text).filter(|s| !s.is_empty()) {
            respondent.insert(field.to_string(), Value::String(v));
        }
    }
    for (field, path) in &m.respondent {
        if let Some(v) = lookup(vendor, path).map(as_text).filter(|s| !s.is_empty()) {
            respondent.insert(field.clone(), Value::String(v));
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let mut doc = json!({
        "response_id": response_id,
        "source": source,
        "program": m.program,
        "account_id": account_id,
        "respondent": respondent,
        "submitted_at": submitted_at,
        "answers": answers,
        "attributes": attributes,
    });
    // The vendor's last-change time orders the revisions of a response, so a
    // late `created` delivery never replaces an `updated` one.
    if let Some(r) = revised_at.filter(|r| !r.is_empty()) {
        doc["revised_at"] = Value::String(r);
    }
    Ok(doc)
}

fn rfc3339(unix: i64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(unix.max(0) as u64))
        .to_string()
}

/// What a delivery means.
#[derive(Debug, Clone, PartialEq)]
pub enum Delivery {
    /// A canonical feedback document to submit.
    Feedback(Value),
    /// An event that carries no response to take (e.g. `unsubscribe.created`).
    Ignored(String),
}

/// Maps a Delighted webhook body.
pub fn from_delighted(
    cfg: &DelightedConfig,
    body: &Value,
) -> Result<Delivery, Vec<MappingProblem>> {
    let event = body
        .get("event_type")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !matches!(event, "survey_response.created" | "survey_response.updated") {
        return Ok(Delivery::Ignored(format!(
            "Delighted event {event:?} carries no survey response"
        )));
    }
    let data = body.get("event_data").unwrap_or(&Value::Null);
    let id = data.get("id").map(as_text).unwrap_or_default();
    if id.is_empty() {
        return Err(vec![MappingProblem {
            pointer: "/response_id".into(),
            detail: "event_data.id is missing".into(),
        }]);
    }
    let unix = |k: &str| data.get(k).and_then(Value::as_i64);
    let at = unix("created_at").map(rfc3339).unwrap_or_default();
    let revised = unix("updated_at").map(rfc3339);
    canonical(
        &cfg.mapping(),
        &cfg.source,
        &id,
        (&at, revised),
        data,
        &[("email", "person.email"), ("name", "person.name")],
    )
    .map(Delivery::Feedback)
}

/// Maps a Formbricks webhook body.
pub fn from_formbricks(
    cfg: &FormbricksConfig,
    body: &Value,
) -> Result<Delivery, Vec<MappingProblem>> {
    let event = body
        .get("event")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !cfg.events.iter().any(|e| e == event) {
        return Ok(Delivery::Ignored(format!(
            "Formbricks event {event:?} is not one of the configured events {:?}",
            cfg.events
        )));
    }
    let data = body.get("data").unwrap_or(&Value::Null);
    let survey = data.get("surveyId").map(as_text).unwrap_or_default();
    let Some(mapping) = cfg.surveys.get(&survey) else {
        return Err(vec![MappingProblem {
            pointer: "/program".into(),
            detail: format!("Formbricks survey {survey:?} has no mapping in the webhooks file"),
        }]);
    };
    let id = data.get("id").map(as_text).unwrap_or_default();
    if id.is_empty() {
        return Err(vec![MappingProblem {
            pointer: "/response_id".into(),
            detail: "data.id is missing".into(),
        }]);
    }
    let at = data.get("createdAt").map(as_text).unwrap_or_default();
    let revised = data.get("updatedAt").map(as_text);
    canonical(
        mapping,
        &cfg.source,
        &id,
        (&at, revised),
        data,
        &[("email", "contactAttributes.email")],
    )
    .map(Delivery::Feedback)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
delighted:
  secret_env: DELIGHTED_KEY
  program: relationship-nps
  account_id: person_properties.account_id
  answers:
    nps: score
    comment: comment
    usage_intent: additional_answers.q_usage
  attributes:
    region: person_properties.region
  respondent:
    role: person_properties.role
formbricks:
  secret_env: FB_SECRET
  surveys:
    svy1:
      program: product-experience
      account_id: data.account_id
      answers: {experience: data.q_exp, comment: data.q_comment}
"#;

    fn env(k: &str) -> Option<String> {
        match k {
            "DELIGHTED_KEY" => Some("key123".into()),
            "FB_SECRET" => Some(format!("whsec_{}", B64.encode(b"fb-secret-bytes"))),
            _ => None,
        }
    }

    #[test]
    fn parses_and_reports_missing_secrets() {
        let w = Webhooks::parse(FILE, env).unwrap();
        assert_eq!(w.delighted.as_ref().unwrap().1, b"key123");
        assert_eq!(w.formbricks.as_ref().unwrap().1, b"fb-secret-bytes");
        let errs = Webhooks::parse(FILE, |_| None).unwrap_err();
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(errs[0].contains("DELIGHTED_KEY"));
        let both = "delighted: {secret_env: X, secret_file: /x, program: p, account_id: a}";
        assert!(Webhooks::parse(both, env).unwrap_err()[0].contains("exactly one"));
        let errs = Webhooks::parse(
            "delighted: {secret_env: X, program: p, account_id: a, anwsers: {}}",
            env,
        )
        .unwrap_err();
        assert!(errs[0].contains("anwsers"), "{errs:?}");
    }

    #[test]
    fn delighted_signature() {
        let body = br#"{"event_type":"survey_response.created"}"#;
        let sig = hex::encode(hmac_sha256(b"key123", &[body]).finalize().into_bytes());
        assert!(verify_delighted(b"key123", Some(&format!("sha256={sig}")), body).is_ok());
        assert!(verify_delighted(b"other", Some(&format!("sha256={sig}")), body).is_err());
        assert!(verify_delighted(b"key123", Some(&format!("sha256={sig}")), b"{}").is_err());
        assert!(
            verify_delighted(b"key123", None, body)
                .unwrap_err()
                .contains("missing")
        );
        assert!(verify_delighted(b"key123", Some("md5=00"), body).is_err());
    }

    #[test]
    fn standard_webhooks_signature_and_replay_window() {
        // The Standard Webhooks specification's published test vector.
        let key = standard_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        let at = UNIX_EPOCH + Duration::from_secs(1_614_265_330);
        let ok = verify_standard(
            &key,
            Some("msg_p5jXN8AQM9LWM0D4loKWxJek"),
            Some("1614265330"),
            Some("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="),
            body,
            at,
        );
        assert_eq!(ok, Ok(()));
        let later = at + Duration::from_secs(301);
        let stale = verify_standard(
            &key,
            Some("msg_p5jXN8AQM9LWM0D4loKWxJek"),
            Some("1614265330"),
            Some("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="),
            body,
            later,
        );
        assert!(stale.unwrap_err().contains("replay"));
        let tampered = verify_standard(
            &key,
            Some("msg_p5jXN8AQM9LWM0D4loKWxJek"),
            Some("1614265330"),
            Some("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="),
            br#"{"test": 2432232315}"#,
            at,
        );
        assert!(tampered.is_err());
    }

    #[test]
    fn delighted_payload_maps_to_canonical() {
        let w = Webhooks::parse(FILE, env).unwrap();
        let cfg = &w.delighted.unwrap().0;
        let body = json!({
            "event_type": "survey_response.updated",
            "event_id": "e1",
            "event_data": {
                "id": "5435",
                "person": {"id": "5975", "email": "cio@acme.example", "name": "Dana Li"},
                "survey_type": "nps", "score": 3, "comment": "Upgrade broke our workflows",
                "created_at": 1762075800, "updated_at": 1762075860,
                "person_properties": {"account_id": "ACME-001", "region": "EMEA", "role": "CIO"},
                "additional_answers": [
                    {"id": "9", "value": {"free_response": null, "scale": null,
                        "select_one": {"id": "x", "text": "reduce"}, "select_many": null},
                     "question": {"id": "q_usage", "type": "select_one", "text": "Plans?"}}
                ]
            }
        });
        let Delivery::Feedback(doc) = from_delighted(cfg, &body).unwrap() else {
            panic!()
        };
        assert_eq!(doc["response_id"], "5435");
        assert_eq!(doc["source"], "delighted");
        assert_eq!(doc["account_id"], "ACME-001");
        assert_eq!(doc["submitted_at"], "2025-11-02T09:30:00Z");
        assert_eq!(doc["revised_at"], "2025-11-02T09:31:00Z");
        assert_eq!(
            doc["answers"],
            json!({"nps": 3, "comment": "Upgrade broke our workflows", "usage_intent": "reduce"})
        );
        assert_eq!(doc["attributes"], json!({"region": "EMEA"}));
        assert_eq!(
            doc["respondent"],
            json!({"email": "cio@acme.example", "name": "Dana Li", "role": "CIO"})
        );
        let unsub = json!({"event_type": "unsubscribe.created", "event_data": {}});
        assert!(matches!(
            from_delighted(cfg, &unsub),
            Ok(Delivery::Ignored(_))
        ));
        let mut no_account = body.clone();
        no_account["event_data"]["person_properties"] = Value::Null;
        let errs = from_delighted(cfg, &no_account).unwrap_err();
        assert_eq!(errs[0].pointer, "/account_id");
    }

    #[test]
    fn formbricks_payload_maps_to_canonical() {
        let w = Webhooks::parse(FILE, env).unwrap();
        let cfg = &w.formbricks.unwrap().0;
        let body = json!({
            "webhookId": "wh1", "event": "responseFinished",
            "data": {"id": "resp1", "surveyId": "svy1", "finished": true,
                     "createdAt": "2026-11-02T09:30:00.000Z",
                     "data": {"account_id": "ACME-001", "q_exp": 1, "q_comment": "slow"},
                     "contactAttributes": {"email": "pm@acme.example"}}
        });
        let Delivery::Feedback(doc) = from_formbricks(cfg, &body).unwrap() else {
            panic!()
        };
        assert_eq!(doc["program"], "product-experience");
        assert_eq!(doc["answers"], json!({"experience": 1, "comment": "slow"}));
        assert_eq!(doc["respondent"]["email"], "pm@acme.example");
        let created = json!({"event": "responseCreated", "data": {}});
        assert!(matches!(
            from_formbricks(cfg, &created),
            Ok(Delivery::Ignored(_))
        ));
        let mut other = body.clone();
        other["data"]["surveyId"] = json!("svy-unknown");
        assert!(
            from_formbricks(cfg, &other).unwrap_err()[0]
                .detail
                .contains("svy-unknown")
        );
    }
}
