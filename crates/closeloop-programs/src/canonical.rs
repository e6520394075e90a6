//! The canonical feedback document.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use crate::{AnswerValue, Catalog};
use closeloop_domain::{AccountId, Email, Timestamp};
use serde_json::{Map, Value};

/// Longest `response_id`, in bytes.
pub const RESPONSE_ID_MAX: usize = 128;
/// Most attributes on one response.
pub const ATTRIBUTES_MAX: usize = 64;
/// Longest attribute value or respondent field, in characters.
pub const VALUE_MAX: usize = 1000;
/// How far in the future `submitted_at` may be (clock skew).
pub const FUTURE_SKEW: Duration = Duration::from_secs(300);

/// One bad field: a JSON pointer (RFC 6901) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub pointer: String,
    pub detail: String,
}

fn problem(pointer: impl Into<String>, detail: impl Into<String>) -> Problem {
    Problem {
        pointer: pointer.into(),
        detail: detail.into(),
    }
}

/// Escapes a key for a JSON pointer.
fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// The validated response and its respondent are domain types.
pub use closeloop_domain::feedback::{Feedback, Respondent};

const FIELDS: [&str; 9] = [
    "response_id",
    "source",
    "program",
    "account_id",
    "respondent",
    "submitted_at",
    "revised_at",
    "answers",
    "attributes",
];

fn string<'a>(obj: &'a Map<String, Value>, key: &str, out: &mut Vec<Problem>) -> Option<&'a str> {
    match obj.get(key) {
        None | Some(Value::Null) => {
            out.push(problem(format!("/{key}"), "is required"));
            None
        }
        Some(Value::String(s)) if s.trim().is_empty() => {
            out.push(problem(format!("/{key}"), "must not be empty"));
            None
        }
        Some(Value::String(s)) => Some(s.trim()),
        Some(_) => {
            out.push(problem(format!("/{key}"), "must be a string"));
            None
        }
    }
}

fn short_text(pointer: String, v: &Value, out: &mut Vec<Problem>) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) if s.chars().count() > VALUE_MAX => {
            out.push(problem(
                pointer,
                format!("is longer than {VALUE_MAX} characters"),
            ));
            String::new()
        }
        Value::String(s) => s.trim().to_string(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => {
            out.push(problem(pointer, "must be a string, number or boolean"));
            String::new()
        }
    }
}

/// An RFC 3339 time with a zone: `Z` or a `±HH:MM` offset.
pub fn parse_time(s: &str) -> Result<SystemTime, String> {
    let bad = || format!("{s:?} is not an RFC 3339 time with a zone (e.g. 2026-11-02T09:30:00Z)");
    if s.ends_with(['Z', 'z']) {
        return humantime::parse_rfc3339_weak(s).map_err(|_| bad());
    }
    let b = s.as_bytes();
    let n = b.len();
    if n < 7 || !matches!(b[n - 6], b'+' | b'-') || b[n - 3] != b':' {
        return Err(bad());
    }
    let hh: u64 = s[n - 5..n - 3].parse().map_err(|_| bad())?;
    let mm: u64 = s[n - 2..].parse().map_err(|_| bad())?;
    if hh > 23 || mm > 59 {
        return Err(bad());
    }
    let local = humantime::parse_rfc3339_weak(&format!("{}Z", &s[..n - 6])).map_err(|_| bad())?;
    let offset = Duration::from_secs(hh * 3600 + mm * 60);
    Ok(if b[n - 6] == b'+' {
        local - offset
    } else {
        local + offset
    })
}

/// Parses and validates one feedback document against `catalog`. Whether
/// the account is in the directory is for the caller to check (it needs I/O).
pub fn parse(doc: &Value, catalog: &Catalog, now: SystemTime) -> Result<Feedback, Vec<Problem>> {
    let Value::Object(obj) = doc else {
        return Err(vec![problem("", "feedback must be a JSON object")]);
    };
    let mut out = Vec::new();
    for key in obj.keys() {
        if !FIELDS.contains(&key.as_str()) {
            out.push(problem(
                format!("/{}", escape(key)),
                format!(
                    "is not a field of canonical feedback; fields are {}",
                    FIELDS.join(", ")
                ),
            ));
        }
    }
    let response_id = string(obj, "response_id", &mut out).and_then(|r| {
        if r.len() > RESPONSE_ID_MAX || r.chars().any(|c| c.is_control()) {
            out.push(problem(
                "/response_id",
                format!("must be at most {RESPONSE_ID_MAX} bytes without control characters"),
            ));
            None
        } else {
            Some(r.to_string())
        }
    });
    let source =
        string(obj, "source", &mut out).and_then(
            |s| match closeloop_domain::directory::parse_token("source", s) {
                Ok(s) => Some(s),
                Err(_) => {
                    out.push(problem(
                        "/source",
                        format!("{s:?} must be 1-64 of a-z, 0-9, '-' and '_' (e.g. qualtrics)"),
                    ));
                    None
                }
            },
        );
    let program = string(obj, "program", &mut out).and_then(|p| match catalog.program(p) {
        Some(p) => Some(p),
        None => {
            let known: Vec<_> = catalog.programs.iter().map(|p| p.id.as_str()).collect();
            out.push(problem(
                "/program",
                format!(
                    "{p:?} is not a configured program; known: {}",
                    known.join(", ")
                ),
            ));
            None
        }
    });
    let account_id = string(obj, "account_id", &mut out).and_then(|a| {
        AccountId::parse("account_id", a)
            .map_err(|v| out.push(problem("/account_id", v.description)))
            .ok()
    });
    let respondent = match obj.get("respondent") {
        None | Some(Value::Null) => Respondent::default(),
        Some(Value::Object(r)) => {
            for k in r
                .keys()
                .filter(|k| !["email", "name", "role"].contains(&k.as_str()))
            {
                out.push(problem(
                    format!("/respondent/{}", escape(k)),
                    "is not a respondent field; use email, name, role",
                ));
            }
            let email = match r.get("email") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) if s.trim().is_empty() => None,
                Some(Value::String(s)) => Email::parse("email", s)
                    .map_err(|v| out.push(problem("/respondent/email", v.description)))
                    .ok(),
                Some(_) => {
                    out.push(problem("/respondent/email", "must be a string"));
                    None
                }
            };
            Respondent {
                email,
                name: r
                    .get("name")
                    .map(|v| short_text("/respondent/name".into(), v, &mut out))
                    .unwrap_or_default(),
                role: r
                    .get("role")
                    .map(|v| short_text("/respondent/role".into(), v, &mut out))
                    .unwrap_or_default(),
            }
        }
        Some(_) => {
            out.push(problem("/respondent", "must be an object"));
            Respondent::default()
        }
    };
    let submitted_at = string(obj, "submitted_at", &mut out).and_then(|s| match parse_time(s) {
        Ok(t) if t > now + FUTURE_SKEW => {
            out.push(problem("/submitted_at", format!("{s} is in the future")));
            None
        }
        Ok(t) => Some(Timestamp::from_system_time(t)),
        Err(e) => {
            out.push(problem("/submitted_at", e));
            None
        }
    });
    let revised_at = match obj.get("revised_at") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => match parse_time(s) {
            Ok(t) if t > now + FUTURE_SKEW => {
                out.push(problem("/revised_at", format!("{s} is in the future")));
                None
            }
            Ok(t) => {
                let t = Timestamp::from_system_time(t);
                if submitted_at.is_some_and(|sub| t < sub) {
                    out.push(problem(
                        "/revised_at",
                        format!("{s} is before submitted_at; a revision follows the submission"),
                    ));
                }
                Some(t)
            }
            Err(e) => {
                out.push(problem("/revised_at", e));
                None
            }
        },
        Some(_) => {
            out.push(problem("/revised_at", "must be a string (RFC 3339 time)"));
            None
        }
    };
    let mut answers = BTreeMap::new();
    match obj.get("answers") {
        Some(Value::Object(a)) if !a.is_empty() => {
            for (k, v) in a {
                let pointer = format!("/answers/{}", escape(k));
                let value = match v {
                    Value::Number(n) => match n.as_i64() {
                        Some(i) => AnswerValue::Int(i),
                        None => AnswerValue::Float(n.as_f64().unwrap_or(f64::NAN)),
                    },
                    Value::String(s) => AnswerValue::Text(s.clone()),
                    Value::Bool(b) => AnswerValue::Bool(*b),
                    Value::Null => continue,
                    _ => {
                        out.push(problem(pointer, "must be a number, string or boolean"));
                        continue;
                    }
                };
                answers.insert(k.clone(), value);
            }
            if let Some(p) = program {
                p.normalize_answers(&mut answers);
                for (key, detail) in p.check_answers(&answers) {
                    out.push(problem(format!("/answers/{}", escape(&key)), detail));
                }
            }
        }
        Some(Value::Object(_)) => out.push(problem("/answers", "must contain at least one answer")),
        None | Some(Value::Null) => out.push(problem("/answers", "is required")),
        Some(_) => out.push(problem(
            "/answers",
            "must be an object of question id to answer",
        )),
    }
    let mut attributes = BTreeMap::new();
    match obj.get("attributes") {
        None | Some(Value::Null) => {}
        Some(Value::Object(a)) => {
            if a.len() > ATTRIBUTES_MAX {
                out.push(problem(
                    "/attributes",
                    format!("has {} attributes; the limit is {ATTRIBUTES_MAX}", a.len()),
                ));
            }
            for (k, v) in a {
                let s = short_text(format!("/attributes/{}", escape(k)), v, &mut out);
                attributes.insert(k.clone(), s);
            }
        }
        Some(_) => out.push(problem("/attributes", "must be an object of name to value")),
    }
    match (response_id, source, program, account_id, submitted_at) {
        (Some(response_id), Some(source), Some(program), Some(account_id), Some(submitted_at))
            if out.is_empty() =>
        {
            Ok(Feedback {
                response_id,
                source,
                program: program.id.clone(),
                account_id,
                respondent,
                submitted_at,
                revised_at,
                answers,
                attributes,
            })
        }
        _ => Err(out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn catalog() -> Catalog {
        Catalog::load(std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../deploy/examples/programs.yaml"
        )))
        .unwrap()
    }

    fn now() -> SystemTime {
        humantime::parse_rfc3339("2026-11-22T12:00:00Z").unwrap()
    }

    /// The shipped example document (so the documented example stays valid).
    fn example() -> Value {
        serde_json::from_str(include_str!(
            "../../../deploy/examples/feedback/relationship-nps-detractor.json"
        ))
        .unwrap()
    }

    fn pointers(r: Result<Feedback, Vec<Problem>>) -> Vec<String> {
        r.unwrap_err().into_iter().map(|p| p.pointer).collect()
    }

    #[test]
    fn the_documented_example_parses() {
        let f = parse(&example(), &catalog(), now()).unwrap();
        assert_eq!(f.answers["nps"], AnswerValue::Int(3));
        assert_eq!(f.respondent.email.unwrap().as_str(), "cio@acme.example");
        assert_eq!(f.attributes["partner_id"], "P-042");
        assert_eq!(f.account_id.as_str(), "ACME-001");
    }

    #[test]
    fn every_bad_field_is_named() {
        let mut d = example();
        d["answers"]["nps"] = json!(11);
        d["answers"]["mood"] = json!([1]);
        d["program"] = json!("relationship-nps");
        d["source"] = json!("Qualtrics XM");
        d["submitted_at"] = json!("yesterday");
        d["respondent"]["email"] = json!("cio");
        d["extra"] = json!(1);
        assert_eq!(
            pointers(parse(&d, &catalog(), now())),
            [
                "/extra",
                "/source",
                "/respondent/email",
                "/submitted_at",
                "/answers/mood",
                "/answers/nps"
            ]
        );
    }

    #[test]
    fn missing_fields_unknown_program_and_non_objects() {
        assert_eq!(pointers(parse(&json!([1]), &catalog(), now())), [""]);
        let p = pointers(parse(&json!({}), &catalog(), now()));
        assert_eq!(
            p,
            [
                "/response_id",
                "/source",
                "/program",
                "/account_id",
                "/submitted_at",
                "/answers"
            ]
        );
        let mut d = example();
        d["program"] = json!("nps-2027");
        let e = parse(&d, &catalog(), now()).unwrap_err();
        assert_eq!(e[0].pointer, "/program");
        assert!(
            e[0].detail
                .contains("known: relationship-nps, implementation-csat, product-experience")
        );
    }

    #[test]
    fn future_and_zoneless_times_are_refused() {
        let mut d = example();
        d["submitted_at"] = json!("2027-01-01T00:00:00Z");
        assert_eq!(pointers(parse(&d, &catalog(), now())), ["/submitted_at"]);
        d["submitted_at"] = json!("2026-11-02T09:30:00");
        assert_eq!(pointers(parse(&d, &catalog(), now())), ["/submitted_at"]);
    }

    #[test]
    fn offsets_are_honoured() {
        let utc = parse_time("2026-11-02T09:30:00Z").unwrap();
        assert_eq!(parse_time("2026-11-02T10:30:00+01:00").unwrap(), utc);
        assert_eq!(parse_time("2026-11-02T04:00:00-05:30").unwrap(), utc);
        assert_eq!(
            parse_time("2026-11-02T09:30:00.250Z").unwrap(),
            utc + Duration::from_millis(250)
        );
        for bad in [
            "2026-11-02",
            "2026-11-02T09:30:00+1:00",
            "2026-11-02T09:30:00+25:00",
            "soon",
        ] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn whole_number_floats_are_whole_numbers_and_fractions_are_named() {
        let mut d = example();
        d["answers"]["nps"] = json!(5.0);
        let f = parse(&d, &catalog(), now()).unwrap();
        assert_eq!(f.answers["nps"], AnswerValue::Int(5));
        d["answers"]["nps"] = json!(5.5);
        let e = parse(&d, &catalog(), now()).unwrap_err();
        assert_eq!(e[0].pointer, "/answers/nps");
        assert!(e[0].detail.starts_with("is 5.5; "), "{}", e[0].detail);
        d["answers"]["nps"] = json!(11.0);
        let e = parse(&d, &catalog(), now()).unwrap_err();
        assert!(e[0].detail.starts_with("is 11; "), "{}", e[0].detail);
    }

    #[test]
    fn revised_at_orders_revisions_and_must_follow_the_submission() {
        let mut d = example();
        let f = parse(&d, &catalog(), now()).unwrap();
        assert_eq!((f.revised_at, f.revised()), (None, f.submitted_at));
        d["revised_at"] = json!("2026-11-03T08:00:00+01:00");
        let g = parse(&d, &catalog(), now()).unwrap();
        assert_eq!(
            g.revised(),
            Timestamp::from_system_time(parse_time("2026-11-03T07:00:00Z").unwrap())
        );
        d["revised_at"] = json!("2020-01-01T00:00:00Z");
        assert_eq!(pointers(parse(&d, &catalog(), now())), ["/revised_at"]);
        d["revised_at"] = json!(17);
        assert_eq!(pointers(parse(&d, &catalog(), now())), ["/revised_at"]);
    }
}
