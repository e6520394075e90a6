//! Checking answers against a program and evaluating workflow triggers.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use cel::{Context, ExecutionError, Value};

use crate::model::{Program, QuestionKind};

/// One answer as submitted (a domain type).
pub use closeloop_domain::feedback::AnswerValue;

fn to_cel(v: &AnswerValue) -> Value {
    match v {
        AnswerValue::Int(i) => Value::Int(*i),
        AnswerValue::Float(f) => Value::Float(*f),
        AnswerValue::Text(s) => Value::String(Arc::new(s.clone())),
        AnswerValue::Bool(b) => Value::Bool(*b),
    }
}

/// What a trigger can see of one response. CEL variables: `answers`,
/// `attributes`, `respondent` (`email`, `name`, `role`), `account` (`id`,
/// `name`, `region`, `segment`) and `program` (the program id).
#[derive(Debug, Clone, Default)]
pub struct Facts<'a> {
    pub answers: BTreeMap<String, AnswerValue>,
    pub attributes: BTreeMap<String, String>,
    pub respondent: BTreeMap<&'a str, String>,
    pub account: BTreeMap<&'a str, String>,
}

/// Which workflows a response triggered, and triggers that failed to evaluate
/// (a failing trigger does not match; the failure is reported, not hidden).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Evaluation {
    pub matched: Vec<String>,
    pub errors: Vec<(String, String)>,
}

fn string_map<'k>(m: impl Iterator<Item = (&'k str, &'k String)>) -> Value {
    let h: HashMap<String, Value> = m
        .map(|(k, v)| (k.to_string(), Value::String(Arc::new(v.clone()))))
        .collect();
    Value::from(h)
}

impl Program {
    /// Checks answers against the program's questions; returns
    /// `(answer key, problem)` for every bad, unknown or missing answer.
    /// Reads whole-number floats (`5.0`, as many JSON encoders write a
    /// whole number) as integers where the question takes a whole number
    /// (NPS, scale). Anything else is left for [`Program::check_answers`]
    /// to name (`5.5` stays a float and is refused with its value).
    pub fn normalize_answers(&self, answers: &mut BTreeMap<String, AnswerValue>) {
        for (key, value) in answers.iter_mut() {
            let whole = matches!(
                self.question(key).map(|q| &q.kind),
                Some(QuestionKind::Nps | QuestionKind::Scale { .. })
            );
            if let (true, AnswerValue::Float(f)) = (whole, &*value)
                && f.is_finite()
                && f.fract() == 0.0
                && f.abs() < 9.0e15
            {
                *value = AnswerValue::Int(*f as i64);
            }
        }
    }

    pub fn check_answers(&self, answers: &BTreeMap<String, AnswerValue>) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        for (key, value) in answers {
            let Some(q) = self.question(key) else {
                let known: Vec<_> = self.questions.iter().map(|q| q.id.as_str()).collect();
                problems.push((
                    key.clone(),
                    format!(
                        "is not a question of program {}; known: {}",
                        self.id,
                        known.join(", ")
                    ),
                ));
                continue;
            };
            let bad = |want: String| Some(format!("is {}; {want}", value.describe()));
            let problem = match (&q.kind, value) {
                (QuestionKind::Nps, AnswerValue::Int(i)) if (0..=10).contains(i) => None,
                (QuestionKind::Nps, _) => {
                    bad("an NPS answer is a whole number from 0 to 10".into())
                }
                (QuestionKind::Scale { min, max }, AnswerValue::Int(i))
                    if (*min..=*max).contains(i) =>
                {
                    None
                }
                (QuestionKind::Scale { min, max }, _) => {
                    bad(format!("must be a whole number from {min} to {max}"))
                }
                (
                    QuestionKind::Number { min, max },
                    AnswerValue::Int(_) | AnswerValue::Float(_),
                ) => {
                    let x = match value {
                        AnswerValue::Int(i) => *i as f64,
                        AnswerValue::Float(f) => *f,
                        _ => unreachable!(),
                    };
                    if min.is_some_and(|m| x < m) || max.is_some_and(|m| x > m) {
                        bad(format!(
                            "must be between {} and {}",
                            min.map_or("-inf".into(), |m| m.to_string()),
                            max.map_or("+inf".into(), |m| m.to_string())
                        ))
                    } else {
                        None
                    }
                }
                (QuestionKind::Number { .. }, _) => bad("must be a number".into()),
                (QuestionKind::Text { max_length }, AnswerValue::Text(s)) => {
                    let n = s.chars().count();
                    (n > *max_length)
                        .then(|| format!("is {n} characters; the limit is {max_length}"))
                }
                (QuestionKind::Text { .. }, _) => bad("must be text".into()),
                (QuestionKind::Choice { options }, AnswerValue::Text(s)) if options.contains(s) => {
                    None
                }
                (QuestionKind::Choice { options }, _) => {
                    bad(format!("must be one of {}", options.join(", ")))
                }
                (QuestionKind::Boolean, AnswerValue::Bool(_)) => None,
                (QuestionKind::Boolean, _) => bad("must be true or false".into()),
            };
            if let Some(p) = problem {
                problems.push((key.clone(), p));
            }
        }
        for q in self.questions.iter().filter(|q| q.required) {
            if !answers.contains_key(&q.id) {
                problems.push((q.id.clone(), format!("is required by program {}", self.id)));
            }
        }
        problems
    }

    /// Evaluates every workflow trigger of this program against `facts`.
    pub fn evaluate(&self, facts: &Facts<'_>) -> Evaluation {
        // The built-in function registry is built once per thread; each
        // evaluation only adds the response's variables in a child scope.
        ROOT.with(|root| {
            let mut ctx = root.new_inner_scope();
            add_facts(&mut ctx, &self.id, facts);
            self.evaluate_in(&ctx)
        })
    }

    fn evaluate_in(&self, ctx: &Context<'_, '_>) -> Evaluation {
        let mut out = Evaluation::default();
        for w in &self.workflows {
            match w.program.execute(ctx) {
                Ok(Value::Bool(true)) => out.matched.push(w.id.clone()),
                Ok(Value::Bool(false)) => {}
                // An optional answer or attribute that is absent simply does not match.
                Err(ExecutionError::NoSuchKey(_)) => {}
                Ok(other) => out.errors.push((
                    w.id.clone(),
                    format!("trigger returned {other:?}, not true/false"),
                )),
                Err(e) => out.errors.push((w.id.clone(), e.to_string())),
            }
        }
        out
    }
}

thread_local! {
    static ROOT: Context<'static, 'static> = Context::default();
}

/// The CEL variables of one response (see [`Facts`]).
pub(crate) fn context(program_id: &str, facts: &Facts<'_>) -> Context<'static, 'static> {
    let mut ctx = Context::default();
    add_facts(&mut ctx, program_id, facts);
    ctx
}

fn add_facts(ctx: &mut Context<'_, '_>, program_id: &str, facts: &Facts<'_>) {
    let answers: HashMap<String, Value> = facts
        .answers
        .iter()
        .map(|(k, v)| (k.clone(), to_cel(v)))
        .collect();
    ctx.add_variable_from_value("answers", Value::from(answers));
    ctx.add_variable_from_value(
        "attributes",
        string_map(facts.attributes.iter().map(|(k, v)| (k.as_str(), v))),
    );
    ctx.add_variable_from_value(
        "respondent",
        string_map(facts.respondent.iter().map(|(k, v)| (*k, v))),
    );
    ctx.add_variable_from_value(
        "account",
        string_map(facts.account.iter().map(|(k, v)| (*k, v))),
    );
    ctx.add_variable_from_value("program", Value::String(Arc::new(program_id.to_string())));
}
