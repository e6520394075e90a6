//! `closeloop.v1.FeedbackService`: gRPC intake with the HTTP contract's
//! validation (the message is read as the canonical JSON document).

use closeloop_domain::FieldViolation;
use closeloop_eventstore::Carried;
use closeloop_proto::convert;
use closeloop_proto::status::invalid_argument;
use closeloop_proto::v1;
use closeloop_proto::v1::feedback_service_server::FeedbackService;
use serde_json::{Map, Value, json};
use tonic::{Request, Response, Status};

use crate::canonical::Problem;
use crate::intake::{Accepted, BATCH_MAX, Intake, Outcome, SubmitError};

#[derive(Clone)]
pub struct FeedbackGrpc {
    intake: Intake,
}

impl FeedbackGrpc {
    pub fn new(intake: Intake) -> Self {
        FeedbackGrpc { intake }
    }
}

/// The canonical JSON form of a protobuf feedback (empty fields omitted, so
/// they are reported as missing).
pub fn to_json(f: &v1::Feedback) -> Value {
    let mut m = Map::new();
    for (k, v) in [
        ("response_id", &f.response_id),
        ("source", &f.source),
        ("program", &f.program),
        ("account_id", &f.account_id),
    ] {
        if !v.is_empty() {
            m.insert(k.into(), json!(v));
        }
    }
    if let Some(r) = &f.respondent {
        let mut o = Map::new();
        for (k, v) in [("email", &r.email), ("name", &r.name), ("role", &r.role)] {
            if !v.is_empty() {
                o.insert(k.into(), json!(v));
            }
        }
        m.insert("respondent".into(), Value::Object(o));
    }
    for (key, t) in [
        ("submitted_at", &f.submitted_at),
        ("revised_at", &f.revised_at),
    ] {
        if let Some(t) = t {
            let at = convert::from_timestamp(t).to_system_time();
            m.insert(
                key.into(),
                json!(humantime::format_rfc3339_micros(at).to_string()),
            );
        }
    }
    let answers: Map<String, Value> = f
        .answers
        .iter()
        .map(|(k, a)| {
            use v1::answer::Value as A;
            let v = match &a.value {
                Some(A::IntValue(i)) => json!(i),
                Some(A::DoubleValue(d)) => json!(d),
                Some(A::StringValue(s)) => json!(s),
                Some(A::BoolValue(b)) => json!(b),
                None => Value::Null,
            };
            (k.clone(), v)
        })
        .collect();
    m.insert("answers".into(), Value::Object(answers));
    if !f.attributes.is_empty() {
        m.insert(
            "attributes".into(),
            Value::Object(
                f.attributes
                    .iter()
                    .map(|(k, v)| (k.clone(), json!(v)))
                    .collect(),
            ),
        );
    }
    Value::Object(m)
}

/// `/answers/nps` → `answers.nps`.
fn field(pointer: &str) -> String {
    pointer
        .trim_start_matches('/')
        .split('/')
        .map(|p| p.replace("~1", "/").replace("~0", "~"))
        .collect::<Vec<_>>()
        .join(".")
}

fn violations(problems: &[Problem]) -> Vec<FieldViolation> {
    problems
        .iter()
        .map(|p| FieldViolation::new(field(&p.pointer), p.detail.clone()))
        .collect()
}

fn status(o: Outcome) -> v1::SubmitStatus {
    match o {
        Outcome::Received => v1::SubmitStatus::Received,
        Outcome::Updated => v1::SubmitStatus::Updated,
        Outcome::Duplicate => v1::SubmitStatus::Duplicate,
        Outcome::Superseded => v1::SubmitStatus::Superseded,
    }
}

fn carried<T>(req: &Request<T>) -> Carried {
    let md = req.metadata();
    Carried::from_lookup(|k| md.get(k)?.to_str().ok().map(str::to_string))
}

#[tonic::async_trait]
impl FeedbackService for FeedbackGrpc {
    async fn submit(
        &self,
        req: Request<v1::SubmitFeedbackRequest>,
    ) -> Result<Response<v1::SubmitFeedbackResponse>, Status> {
        let carried = carried(&req);
        let f = req.into_inner().feedback.ok_or_else(|| {
            invalid_argument(vec![FieldViolation::new("feedback", "is required")])
        })?;
        match self.intake.submit(&to_json(&f), &carried).await {
            Ok(Accepted {
                feedback_id,
                outcome,
                sequence,
            }) => Ok(Response::new(v1::SubmitFeedbackResponse {
                feedback_id: feedback_id.to_string(),
                status: status(outcome) as i32,
                sequence,
            })),
            Err(SubmitError::Invalid(p)) => Err(invalid_argument(violations(&p))),
            Err(e) => Err(Status::unavailable(format!(
                "{e}; nothing was stored, retry later"
            ))),
        }
    }

    async fn submit_batch(
        &self,
        req: Request<v1::SubmitFeedbackBatchRequest>,
    ) -> Result<Response<v1::SubmitFeedbackBatchResponse>, Status> {
        let carried = carried(&req);
        let items = req.into_inner().feedback;
        if items.is_empty() || items.len() > BATCH_MAX {
            return Err(invalid_argument(vec![FieldViolation::new(
                "feedback",
                format!(
                    "a batch holds 1 to {BATCH_MAX} responses; this one has {}",
                    items.len()
                ),
            )]));
        }
        let docs = items.iter().map(to_json).collect();
        let results = self.intake.submit_batch(docs, carried).await;
        let results = results
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                let mut out = v1::SubmitFeedbackResult {
                    index: i as u32,
                    ..Default::default()
                };
                match r {
                    Ok(a) => {
                        out.feedback_id = a.feedback_id.to_string();
                        out.status = status(a.outcome) as i32;
                        out.sequence = a.sequence;
                    }
                    Err(SubmitError::Invalid(p)) => {
                        out.status = v1::SubmitStatus::Invalid as i32;
                        out.violations = violations(&p)
                            .into_iter()
                            .map(|v| v1::FeedbackViolation {
                                field: v.field,
                                description: v.description,
                            })
                            .collect();
                    }
                    Err(e) => {
                        out.status = v1::SubmitStatus::Unavailable as i32;
                        out.error = e.to_string();
                    }
                }
                out
            })
            .collect();
        Ok(Response::new(v1::SubmitFeedbackBatchResponse { results }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointers_become_dotted_fields() {
        assert_eq!(field("/answers/nps"), "answers.nps");
        assert_eq!(field("/attributes/a~1b"), "attributes.a/b");
        assert_eq!(field(""), "");
    }
}
