//! Chat: Slack and Microsoft Teams incoming webhooks, in the JSON each
//! documents, from the `chat.md` template (and a title: the message's
//! subject).
//!
//! * Slack ([incoming webhooks](https://api.slack.com/messaging/webhooks)):
//!   `{"text": fallback, "blocks": [header, section (mrkdwn)]}`; `&`, `<`
//!   and `>` escaped as Slack asks.
//! * Teams ([Workflows webhooks](https://learn.microsoft.com/en-us/microsoftteams/platform/webhooks-and-connectors/how-to/add-incoming-webhook)):
//!   `{"type": "message", "attachments": [{"contentType":
//!   "application/vnd.microsoft.card.adaptive", "content": AdaptiveCard}]}`
//!   with the title and the text as `TextBlock`s.
//!
//! A 2xx answer delivers; 429, 5xx and no answer are retried (honouring
//! `Retry-After`); any other answer (a removed webhook, a bad payload) gives
//! up. A chat webhook has no idempotency key: after a crash between sending
//! and recording, a chat message may be posted twice.

use closeloop_domain::notification::{ChatHook, ChatKind};
use serde_json::{Value, json};

use crate::email::SendError;

/// Slack's limits: a header's text, a section's text.
const SLACK_HEADER_MAX: usize = 150;
const SLACK_SECTION_MAX: usize = 3000;

fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Slack's mrkdwn escaping of `&`, `<` and `>`.
fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The JSON body for `hook`'s tool: `title` and `text` (from `chat.md`).
pub fn payload(kind: ChatKind, title: &str, text: &str) -> Value {
    match kind {
        ChatKind::Slack => json!({
            "text": slack_escape(&format!("{title}\n{text}")),
            "blocks": [
                {
                    "type": "header",
                    "text": {"type": "plain_text", "text": cut(title, SLACK_HEADER_MAX), "emoji": false},
                },
                {
                    "type": "section",
                    "text": {"type": "mrkdwn", "text": cut(&slack_escape(text), SLACK_SECTION_MAX)},
                },
            ],
        }),
        ChatKind::Teams => json!({
            "type": "message",
            "attachments": [{
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": null,
                "content": {
                    "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                    "type": "AdaptiveCard",
                    "version": "1.4",
                    "body": [
                        {"type": "TextBlock", "text": title, "weight": "Bolder", "size": "Medium", "wrap": true},
                        {"type": "TextBlock", "text": text, "wrap": true},
                    ],
                },
            }],
        }),
    }
}

/// Posts a message to `hook` through the guarded client.
pub async fn post(
    http: &crate::outbound::Http,
    hook: &ChatHook,
    title: &str,
    text: &str,
) -> Result<(), SendError> {
    let body = payload(hook.kind, title, text).to_string();
    let request = http.post(&hook.url).map_err(|r| SendError::Permanent {
        code: None,
        message: r.0,
    })?;
    let request = request
        .header("content-type", "application/json")
        .body(body);
    match crate::outbound::call(request, &format!("{} webhook", hook.kind.as_str())).await? {
        Ok(_) => Ok(()),
        // Busy or failing: later. Anything else (a removed webhook, a
        // payload it refuses) will not get better.
        Err(r) if r.status == 429 || r.status >= 500 => Err(r.retry()),
        Err(r) => Err(r.give_up()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slack_and_teams_shapes() {
        let s = payload(ChatKind::Slack, "New ticket <x>", "*Acme* & co");
        assert_eq!(s["blocks"][0]["type"], "header");
        assert_eq!(s["blocks"][0]["text"]["type"], "plain_text");
        assert_eq!(s["blocks"][1]["text"]["type"], "mrkdwn");
        assert_eq!(s["blocks"][1]["text"]["text"], "*Acme* &amp; co");
        assert_eq!(s["text"], "New ticket &lt;x&gt;\n*Acme* &amp; co");
        let long = "x".repeat(200);
        let s = payload(ChatKind::Slack, &long, "y");
        assert_eq!(
            s["blocks"][0]["text"]["text"]
                .as_str()
                .unwrap()
                .chars()
                .count(),
            150
        );
        let t = payload(ChatKind::Teams, "New ticket", "*Acme*");
        let card = &t["attachments"][0];
        assert_eq!(t["type"], "message");
        assert_eq!(
            card["contentType"],
            "application/vnd.microsoft.card.adaptive"
        );
        assert_eq!(card["content"]["type"], "AdaptiveCard");
        assert_eq!(card["content"]["body"][1]["text"], "*Acme*");
    }
}
