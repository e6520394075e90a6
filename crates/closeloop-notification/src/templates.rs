//! Message templates: `subject.txt`, `body.txt` (the plain-text part),
//! `body.html` (the HTML part, auto-escaped) and `chat.md` (the chat
//! message), rendered with `minijinja`; the daily digest's
//! `digest_subject.txt`, `digest.txt` and `digest.html`; and the weekly
//! open-ticket report's `report_subject.txt`, `report.txt` and
//! `report.html`.
//!
//! closeloop ships defaults (`crates/closeloop-notification/templates/`).
//! An operator's template directory (`--templates DIR`) overrides any of
//! them: `DIR/<part>` for every notification, `DIR/<workflow id>/<part>`
//! for tickets opened by that workflow. Every template is compiled and
//! rendered against a sample of every notification kind when the role
//! starts (and by `closeloop notifications check-templates`), so a broken
//! template stops the start with its file and line, never a send.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use minijinja::{Environment, UndefinedBehavior};
use serde::Serialize;

/// The parts of a message, by file name.
pub const PARTS: [&str; 4] = ["subject.txt", "body.txt", "body.html", "chat.md"];

/// The parts of a daily digest (one message listing a person's FYIs; not
/// per workflow, as a digest spans workflows).
pub const DIGEST_PARTS: [&str; 3] = ["digest_subject.txt", "digest.txt", "digest.html"];

/// The parts of the weekly open-ticket report (e-mail only).
pub const REPORT_PARTS: [&str; 3] = ["report_subject.txt", "report.txt", "report.html"];

const DEFAULTS: [(&str, &str); 10] = [
    (
        "report_subject.txt",
        include_str!("../templates/report_subject.txt"),
    ),
    ("report.txt", include_str!("../templates/report.txt")),
    ("report.html", include_str!("../templates/report.html")),
    ("subject.txt", include_str!("../templates/subject.txt")),
    ("body.txt", include_str!("../templates/body.txt")),
    ("body.html", include_str!("../templates/body.html")),
    ("chat.md", include_str!("../templates/chat.md")),
    (
        "digest_subject.txt",
        include_str!("../templates/digest_subject.txt"),
    ),
    ("digest.txt", include_str!("../templates/digest.txt")),
    ("digest.html", include_str!("../templates/digest.html")),
];

/// Every notification kind, as templates see it (`kind`).
pub const KINDS: [closeloop_domain::notification::NoticeKind; 11] =
    closeloop_domain::notification::NoticeKind::ALL;

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("cannot read templates from {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("template {name}: {message}")]
    Invalid { name: String, message: String },
}

fn invalid(name: &str, e: &minijinja::Error) -> TemplateError {
    let mut message = e.to_string();
    if let Some(line) = e.line() {
        message = format!("line {line}: {message}");
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        message = format!("{message}: {s}");
        source = s.source();
    }
    TemplateError::Invalid {
        name: name.to_string(),
        message,
    }
}

/// A rendered message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
    /// The chat message (`chat.md`).
    pub chat: String,
}

/// The compiled templates. Cheap to share (behind an `Arc`).
pub struct Templates {
    env: Environment<'static>,
    /// Workflows with templates of their own.
    workflows: Vec<String>,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Templates")
            .field("workflows", &self.workflows)
            .finish()
    }
}

impl Templates {
    /// The defaults, overridden by the files in `dir` (if given): compiles
    /// and checks every template (see [`Templates::check`]).
    pub fn load(dir: Option<&Path>) -> Result<Templates, TemplateError> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_keep_trailing_newline(false);
        let mut sources: BTreeMap<String, String> = DEFAULTS
            .iter()
            .map(|(n, s)| (format!("default/{n}"), s.to_string()))
            .collect();
        let mut workflows = Vec::new();
        if let Some(dir) = dir {
            let read = |p: &Path| {
                std::fs::read_to_string(p).map_err(|source| TemplateError::Read {
                    path: p.to_path_buf(),
                    source,
                })
            };
            let entries = std::fs::read_dir(dir).map_err(|source| TemplateError::Read {
                path: dir.to_path_buf(),
                source,
            })?;
            for entry in entries {
                let entry = entry.map_err(|source| TemplateError::Read {
                    path: dir.to_path_buf(),
                    source,
                })?;
                let path = entry.path();
                let name = entry.file_name().to_string_lossy().to_string();
                if path.is_dir() {
                    let mut any = false;
                    for part in PARTS {
                        let p = path.join(part);
                        if p.exists() {
                            sources.insert(format!("{name}/{part}"), read(&p)?);
                            any = true;
                        }
                    }
                    if any {
                        workflows.push(name);
                    }
                } else if PARTS.contains(&name.as_str())
                    || DIGEST_PARTS.contains(&name.as_str())
                    || REPORT_PARTS.contains(&name.as_str())
                {
                    sources.insert(format!("default/{name}"), read(&path)?);
                } else {
                    return Err(TemplateError::Invalid {
                        name: path.display().to_string(),
                        message: format!(
                            "not a template closeloop uses (expected {}, {}, {}, or a directory named after a workflow)",
                            PARTS.join(", "),
                            DIGEST_PARTS.join(", "),
                            REPORT_PARTS.join(", ")
                        ),
                    });
                }
            }
        }
        for (name, source) in sources {
            let shown = match dir {
                Some(d) if !name.starts_with("default/") || dir_has(d, &name) => d
                    .join(name.trim_start_matches("default/"))
                    .display()
                    .to_string(),
                _ => format!("(built-in) {name}"),
            };
            env.add_template_owned(name, source)
                .map_err(|e| invalid(&shown, &e))?;
        }
        let t = Templates { env, workflows };
        t.check()?;
        Ok(t)
    }

    /// Renders every template against a sample of every kind: the first
    /// error, with the template's name, line and the kind that broke it.
    pub fn check(&self) -> Result<(), TemplateError> {
        let scopes = std::iter::once(None).chain(self.workflows.iter().map(|w| Some(w.as_str())));
        for workflow in scopes {
            for kind in KINDS {
                for with_optional in [true, false] {
                    let kind = kind.as_str();
                    let ctx = Context::sample(kind, with_optional);
                    self.render(workflow, &ctx).map_err(|e| match e {
                        TemplateError::Invalid { name, message } => TemplateError::Invalid {
                            name,
                            message: format!(
                                "{message} (rendering a {kind} notification{})",
                                if with_optional {
                                    ""
                                } else {
                                    " without feedback, guide or closure"
                                }
                            ),
                        },
                        other => other,
                    })?;
                }
            }
        }
        for with_lines in [true, false] {
            self.render_report(&ReportContext::sample(with_lines))
                .map_err(|e| match e {
                    TemplateError::Invalid { name, message } => TemplateError::Invalid {
                        name,
                        message: format!("{message} (rendering a weekly report)"),
                    },
                    other => other,
                })?;
        }
        self.render_digest(&DigestContext::sample())
            .map_err(|e| match e {
                TemplateError::Invalid { name, message } => TemplateError::Invalid {
                    name,
                    message: format!("{message} (rendering a daily digest)"),
                },
                other => other,
            })?;
        Ok(())
    }

    /// The weekly report for `ctx` (its chat form is the plain text).
    pub fn render_report(&self, ctx: &ReportContext) -> Result<Rendered, TemplateError> {
        self.render_top(REPORT_PARTS, ctx)
    }

    /// The daily digest for `ctx` (its chat form is the plain text).
    pub fn render_digest(&self, ctx: &DigestContext) -> Result<Rendered, TemplateError> {
        self.render_top(DIGEST_PARTS, ctx)
    }

    /// A message of top-level templates only (`[subject, text, html]`),
    /// whose chat form is the plain text.
    fn render_top(
        &self,
        [subject, text, html]: [&str; 3],
        ctx: &impl Serialize,
    ) -> Result<Rendered, TemplateError> {
        let part = |p: &str| {
            let name = format!("default/{p}");
            let t = self
                .env
                .get_template(&name)
                .map_err(|e| invalid(&name, &e))?;
            t.render(ctx).map_err(|e| invalid(&name, &e))
        };
        let text = part(text)?;
        Ok(Rendered {
            subject: part(subject)?
                .lines()
                .next()
                .unwrap_or_default()
                .trim()
                .to_string(),
            chat: text.clone(),
            text,
            html: part(html)?,
        })
    }

    /// The message for `ctx`, with `workflow`'s templates where it has them.
    pub fn render(&self, workflow: Option<&str>, ctx: &Context) -> Result<Rendered, TemplateError> {
        let part = |p: &str| {
            let own = workflow.map(|w| format!("{w}/{p}"));
            let name = match own {
                Some(n) if self.env.get_template(&n).is_ok() => n,
                _ => format!("default/{p}"),
            };
            let t = self
                .env
                .get_template(&name)
                .map_err(|e| invalid(&name, &e))?;
            t.render(ctx).map_err(|e| invalid(&name, &e))
        };
        Ok(Rendered {
            subject: part("subject.txt")?
                .lines()
                .next()
                .unwrap_or_default()
                .trim()
                .to_string(),
            text: part("body.txt")?,
            html: part("body.html")?,
            chat: part("chat.md")?,
        })
    }
}

fn dir_has(dir: &Path, name: &str) -> bool {
    dir.join(name.trim_start_matches("default/")).exists()
}

/// What the weekly report templates see.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ReportContext {
    pub region: String,
    pub as_of: String,
    /// Tickets that need attention, and how many are listed.
    pub tickets: u32,
    pub listed: u32,
    pub truncated: bool,
    pub owners: Vec<ReportOwnerCtx>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ReportOwnerCtx {
    pub owner: String,
    pub tickets: Vec<ReportTicketCtx>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ReportTicketCtx {
    pub ticket_id: String,
    pub account_id: String,
    pub title: String,
    pub age_days: u32,
    pub reasons: Vec<String>,
    pub first_contact_due: Option<String>,
    pub close_due: Option<String>,
    pub escalation_level: u32,
    pub act: String,
}

impl ReportContext {
    pub fn sample(with_lines: bool) -> ReportContext {
        ReportContext {
            region: "EMEA".into(),
            as_of: "2026-01-12T08:00:00Z".into(),
            tickets: u32::from(with_lines),
            listed: u32::from(with_lines),
            truncated: false,
            owners: if with_lines {
                vec![ReportOwnerCtx {
                    owner: "dana.li@vendor.example".into(),
                    tickets: vec![ReportTicketCtx {
                        ticket_id: "0b6f0c5e-1111-5222-8333-944455556666".into(),
                        account_id: "ACME-001".into(),
                        title: "NPS detractor follow-up: Acme Corp".into(),
                        age_days: 9,
                        reasons: vec!["breached".into(), "escalated".into()],
                        first_contact_due: None,
                        close_due: Some("2026-02-02T09:30:00Z".into()),
                        escalation_level: 1,
                        act: "closeloop tickets show 0b6f0c5e-1111-5222-8333-944455556666".into(),
                    }],
                }]
            } else {
                Vec::new()
            },
        }
    }
}

/// What the digest templates see.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DigestContext {
    pub recipient: String,
    /// The digest's hour and time zone (the person's preference).
    pub hour: u8,
    pub time_zone: String,
    pub items: Vec<DigestItem>,
}

/// One FYI in a digest.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DigestItem {
    /// The FYI's own subject line.
    pub subject: String,
    pub kind: String,
    pub ticket_id: String,
    pub title: String,
    pub account: String,
    /// The FYI's chat message without its last line (how to act).
    pub summary: String,
    pub act: String,
}

impl DigestContext {
    pub fn sample() -> DigestContext {
        DigestContext {
            recipient: "dana.li@vendor.example".into(),
            hour: 8,
            time_zone: "Europe/Paris".into(),
            items: vec![DigestItem {
                subject: "[closeloop] FYI: ticket opened for Acme Corp: NPS detractor follow-up"
                    .into(),
                kind: "opened_fyi".into(),
                ticket_id: "0b6f0c5e-1111-5222-8333-944455556666".into(),
                title: "NPS detractor follow-up: Acme Corp".into(),
                account: "Acme Corp".into(),
                summary: "FYI: NPS detractor follow-up opened for Acme Corp".into(),
                act: "closeloop tickets show 0b6f0c5e-1111-5222-8333-944455556666".into(),
            }],
        }
    }
}

/// What templates see.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Context {
    /// The notification kind (see [`KINDS`]).
    pub kind: String,
    pub recipient: String,
    pub ticket: TicketCtx,
    pub account: AccountCtx,
    pub feedback: Option<FeedbackCtx>,
    pub guide: Option<GuideCtx>,
    pub closure: Option<ClosureCtx>,
    pub event: EventCtx,
    /// How to act on the ticket (a command, or a link when configured).
    pub act: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TicketCtx {
    pub id: String,
    pub title: String,
    pub status: String,
    pub account_id: String,
    pub owner_email: String,
    pub program_id: String,
    pub workflow_id: Option<String>,
    pub opened_at: String,
    pub first_contact_due: String,
    pub close_due: String,
    pub fallback_reason: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AccountCtx {
    pub name: String,
    pub region: String,
    pub segment: String,
    /// Role → e-mail.
    pub team: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FeedbackCtx {
    /// Name and e-mail of who answered, as known.
    pub respondent: String,
    /// The program's score answer (`nps`, `csat`, `ces`, `score`), if any.
    pub score: Option<String>,
    pub comment: Option<String>,
    /// Every answer as text.
    pub answers: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct GuideCtx {
    pub title: String,
    pub link: String,
    pub steps: Vec<String>,
    pub templates: Vec<ResponseTemplateCtx>,
    pub talking_points: Vec<String>,
    pub faq: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ResponseTemplateCtx {
    pub name: String,
    pub subject: String,
    pub body: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ClosureCtx {
    pub root_cause_category: String,
    pub root_cause: String,
    pub actions_taken: String,
    pub opportunity: Option<String>,
}

/// What the causing event adds.
#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct EventCtx {
    /// A reassignment's or reopen's reason.
    pub reason: Option<String>,
    /// A customer reply's text.
    pub text: Option<String>,
    pub previous_owner: Option<String>,
    /// What an SLA event says (warnings, breaches, escalations).
    pub sla: Option<SlaCtx>,
}

/// An SLA event, as the templates see it.
#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct SlaCtx {
    /// `first contact` or `closure` (warnings and breaches).
    pub clock: Option<String>,
    /// A warning's percentage of the clock's time.
    pub pct: Option<u32>,
    pub due_at: Option<String>,
    pub original_due: Option<String>,
    /// An escalation's level (1: the owner's manager).
    pub level: Option<u32>,
    pub untouched_since: Option<String>,
    pub untouched_days: Option<i64>,
    /// Who an escalation went to.
    pub escalated_to: Option<String>,
    /// Why the fallback got an escalation (the ticket is flagged).
    pub fallback_reason: Option<String>,
    /// Whole days since the ticket opened.
    pub age_days: i64,
}

impl SlaCtx {
    fn sample(kind: &str, with_optional: bool) -> Option<SlaCtx> {
        let clock = Some("first contact".to_string());
        match kind {
            "sla_warning" | "sla_breach" => Some(SlaCtx {
                clock,
                pct: (kind == "sla_warning").then_some(75),
                due_at: Some("2026-11-04T09:30:00Z".into()),
                original_due: Some(if with_optional {
                    "2026-11-03T09:30:00Z".into()
                } else {
                    "2026-11-04T09:30:00Z".into()
                }),
                age_days: 2,
                ..SlaCtx::default()
            }),
            "escalation" | "escalation_fyi" => Some(SlaCtx {
                level: Some(1),
                untouched_since: Some("2026-11-02T09:30:00Z".into()),
                untouched_days: Some(7),
                escalated_to: Some("mia.manager@vendor.example".into()),
                fallback_reason: with_optional
                    .then(|| "dana.li@vendor.example has no manager in the directory".into()),
                age_days: 7,
                ..SlaCtx::default()
            }),
            _ => None,
        }
    }
}

impl Context {
    /// A sample of `kind`, with or without the optional parts.
    pub fn sample(kind: &str, with_optional: bool) -> Context {
        Context {
            kind: kind.to_string(),
            recipient: "dana.li@vendor.example".into(),
            ticket: TicketCtx {
                id: "0b6f0c5e-1111-5222-8333-944455556666".into(),
                title: "NPS detractor follow-up: Acme Corp".into(),
                status: "open".into(),
                account_id: "ACME-001".into(),
                owner_email: "dana.li@vendor.example".into(),
                program_id: "relationship-nps".into(),
                workflow_id: with_optional.then(|| "rnps-detractor".into()),
                opened_at: "2026-11-02T09:30:00Z".into(),
                first_contact_due: "2026-11-04T09:30:00Z".into(),
                close_due: "2026-12-02T09:30:00Z".into(),
                fallback_reason: with_optional.then(|| "account ACME-001 has no csm".into()),
            },
            account: AccountCtx {
                name: "Acme Corp".into(),
                region: "EMEA".into(),
                segment: "enterprise".into(),
                team: [("csm".to_string(), "dana.li@vendor.example".to_string())].into(),
            },
            feedback: with_optional.then(|| FeedbackCtx {
                respondent: "Sam Lee <sam@acme.example>".into(),
                score: Some("3".into()),
                comment: Some("The upgrade broke our workflows".into()),
                answers: [("nps".to_string(), "3".to_string())].into(),
            }),
            guide: with_optional.then(|| GuideCtx {
                title: "Detractor playbook".into(),
                link: "https://wiki.vendor.example/cx/nps-detractor".into(),
                steps: vec!["Call within 48 hours".into()],
                templates: vec![ResponseTemplateCtx {
                    name: "First outreach".into(),
                    subject: "Thank you for your feedback".into(),
                    body: "Hello Sam".into(),
                }],
                talking_points: vec!["Listen first".into()],
                faq: "https://wiki.vendor.example/cx/faq".into(),
            }),
            closure: with_optional.then(|| ClosureCtx {
                root_cause_category: "product".into(),
                root_cause: "A regression in the 4.2 upgrade".into(),
                actions_taken: "Hotfix shipped".into(),
                opportunity: Some("expansion (12000)".into()),
            }),
            event: EventCtx {
                reason: with_optional.then(|| "holiday cover".into()),
                text: with_optional.then(|| "Thanks, it works now".into()),
                previous_owner: with_optional.then(|| "lee@vendor.example".into()),
                sla: SlaCtx::sample(kind, with_optional),
            },
            act: "closeloop tickets show 0b6f0c5e-1111-5222-8333-944455556666".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_templates_render_every_kind() {
        let t = Templates::load(None).unwrap();
        let r = t
            .render(None, &Context::sample("owner_assigned", true))
            .unwrap();
        assert_eq!(
            r.subject,
            "[closeloop] New ticket for you: NPS detractor follow-up: Acme Corp (Acme Corp)"
        );
        assert!(
            r.text.contains("The upgrade broke our workflows"),
            "{}",
            r.text
        );
        assert!(r.text.contains("first contact by 2026-11-04T09:30:00Z"));
        assert!(r.text.contains("1. Call within 48 hours"));
        assert!(
            r.html
                .contains("<blockquote>The upgrade broke our workflows</blockquote>")
        );
        let closed = t
            .render(None, &Context::sample("closed_outcome", true))
            .unwrap();
        assert!(closed.text.contains("Root cause (product): A regression"));
    }

    #[test]
    fn html_is_escaped_text_is_not() {
        let t = Templates::load(None).unwrap();
        let mut ctx = Context::sample("customer_replied", true);
        ctx.event.text = Some("<script>alert(1)</script> & more".into());
        let r = t.render(None, &ctx).unwrap();
        assert!(r.html.contains("&lt;script&gt;"), "{}", r.html);
        assert!(r.text.contains("<script>alert(1)</script> & more"));
    }

    #[test]
    fn overrides_apply_per_directory_and_workflow_and_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("subject.txt"), "All: {{ ticket.title }}").unwrap();
        std::fs::create_dir(dir.path().join("rnps-detractor")).unwrap();
        std::fs::write(
            dir.path().join("rnps-detractor/subject.txt"),
            "Detractor {{ account.name }}",
        )
        .unwrap();
        let t = Templates::load(Some(dir.path())).unwrap();
        let ctx = Context::sample("owner_assigned", true);
        assert_eq!(
            t.render(None, &ctx).unwrap().subject,
            "All: NPS detractor follow-up: Acme Corp"
        );
        assert_eq!(
            t.render(Some("rnps-detractor"), &ctx).unwrap().subject,
            "Detractor Acme Corp"
        );

        std::fs::write(dir.path().join("body.txt"), "{{ ticket.titel }}").unwrap();
        let e = Templates::load(Some(dir.path())).unwrap_err().to_string();
        assert!(e.contains("body.txt"), "{e}");
        assert!(e.contains("line 1"), "{e}");
        std::fs::write(dir.path().join("body.txt"), "{% if %}").unwrap();
        let e = Templates::load(Some(dir.path())).unwrap_err().to_string();
        assert!(e.contains("body.txt") && e.contains("syntax"), "{e}");
        std::fs::remove_file(dir.path().join("body.txt")).unwrap();
        std::fs::write(dir.path().join("bodyy.txt"), "x").unwrap();
        let e = Templates::load(Some(dir.path())).unwrap_err().to_string();
        assert!(
            e.contains("bodyy.txt") && e.contains("not a template"),
            "{e}"
        );
    }
}
