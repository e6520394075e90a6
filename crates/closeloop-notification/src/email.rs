//! E-mail over SMTP with `lettre`.
//!
//! `--smtp-url` takes `smtp://host:port` (plain), `smtp://host:port?tls=required`
//! (STARTTLS), or `smtps://host:port` (TLS from the first byte); credentials
//! in the URL (`smtp://user:password@host`) or, better, the password from a
//! file (`--smtp-password-file`). Every message has two parts (plain text
//! and HTML) and a `Message-ID` derived from the notification's id, so a
//! message sent again after a crash carries the same id.

use lettre::message::{Mailbox, MultiPart, header};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::templates::Rendered;

#[derive(Debug, thiserror::Error)]
pub enum EmailConfigError {
    #[error("--smtp-url {url:?}: {reason}")]
    Url { url: String, reason: String },
    #[error("--mail-from {0:?} is not an e-mail address (e.g. \"closeloop <cx@vendor.example>\")")]
    From(String),
    #[error("cannot read the SMTP password file {path}: {source}")]
    PasswordFile {
        path: String,
        source: std::io::Error,
    },
}

/// How a send ended, for the notification's attempt record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// Worth retrying (the server is down, busy, or answered 4xx), after
    /// `retry_after` seconds when the receiver asked (HTTP `Retry-After`).
    Transient {
        code: Option<u16>,
        message: String,
        retry_after: Option<u64>,
    },
    /// Retrying cannot help (the server refused the address with 5xx, or the
    /// address cannot be written in a message).
    Permanent { code: Option<u16>, message: String },
}

/// An SMTP sender. Cheap to clone.
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    /// The server as configured, without credentials (for logs and /readyz).
    pub server: String,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer")
            .field("server", &self.server)
            .finish()
    }
}

/// `url` without its password.
fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***@{}", &url[..s], &url[at + 1..]),
        _ => url.to_string(),
    }
}

impl Mailer {
    /// A sender to `url` as `from`; `password` (from a file) overrides the
    /// URL's. Call it inside a Tokio runtime (the connection pool runs there).
    pub fn new(
        url: &str,
        from: &str,
        password: Option<String>,
    ) -> Result<Mailer, EmailConfigError> {
        let bad = |reason: String| EmailConfigError::Url {
            url: redacted(url),
            reason,
        };
        if !(url.starts_with("smtp://") || url.starts_with("smtps://")) {
            return Err(bad(
                "use smtp://HOST:PORT, smtp://HOST:PORT?tls=required (STARTTLS) or smtps://HOST:PORT"
                    .into(),
            ));
        }
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| bad(e.to_string()))?
            .timeout(Some(std::time::Duration::from_secs(20)));
        if let Some(password) = password {
            let user = url
                .split_once("://")
                .and_then(|(_, rest)| rest.split_once('@'))
                .map(|(creds, _)| creds.split(':').next().unwrap_or_default().to_string())
                .filter(|u| !u.is_empty())
                .ok_or_else(|| {
                    bad("a password file needs a user name in the URL (smtp://USER@HOST)".into())
                })?;
            builder = builder.credentials(Credentials::new(user, password));
        }
        let from: Mailbox = from
            .parse()
            .map_err(|_| EmailConfigError::From(from.to_string()))?;
        Ok(Mailer {
            transport: builder.build(),
            from,
            server: redacted(url),
        })
    }

    /// Reads a password file (trailing newline trimmed).
    pub fn password_file(path: &str) -> Result<String, EmailConfigError> {
        std::fs::read_to_string(path)
            .map(|s| s.trim_end_matches(['\r', '\n']).to_string())
            .map_err(|source| EmailConfigError::PasswordFile {
                path: path.to_string(),
                source,
            })
    }

    /// The message for `to` with `message_id` (without angle brackets).
    ///
    /// `cc` is named in a `Cc:` header only (so a reply to all reaches
    /// them); the message is delivered to `to` alone: whoever is in copy
    /// gets their own notification, on their own channel.
    pub fn message(
        &self,
        to: &str,
        cc: Option<&str>,
        message_id: &str,
        m: &Rendered,
    ) -> Result<Message, SendError> {
        let to: Mailbox = to.parse().map_err(|e| SendError::Permanent {
            code: None,
            message: format!("{to:?} is not an e-mail address: {e}"),
        })?;
        let mut b = Message::builder().from(self.from.clone()).to(to.clone());
        if let Some(cc) = cc.and_then(|c| c.parse::<Mailbox>().ok()) {
            let envelope =
                lettre::address::Envelope::new(Some(self.from.email.clone()), vec![to.email])
                    .map_err(|e| SendError::Permanent {
                        code: None,
                        message: format!("cannot build the envelope: {e}"),
                    })?;
            b = b.cc(cc).envelope(envelope);
        }
        b.subject(m.subject.clone())
            .message_id(Some(format!("<{message_id}>")))
            .header(header::MIME_VERSION_1_0)
            .multipart(MultiPart::alternative_plain_html(
                m.text.clone(),
                m.html.clone(),
            ))
            .map_err(|e| SendError::Permanent {
                code: None,
                message: format!("cannot build the message: {e}"),
            })
    }

    /// Sends `message`; the server's answer decides retry or not.
    pub async fn send(&self, message: Message) -> Result<(), SendError> {
        match self.transport.send(message).await {
            Ok(_) => Ok(()),
            Err(e) => {
                let code = e.status().map(u16::from);
                let message = e.to_string();
                if e.is_permanent() {
                    Err(SendError::Permanent { code, message })
                } else {
                    Err(SendError::Transient {
                        code,
                        message,
                        retry_after: None,
                    })
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The transport's connection pool runs on Tokio: mailers are built
    // inside a runtime, as the server builds them.
    #[tokio::test]
    async fn configuration_errors_are_specific() {
        let e = Mailer::new("http://mail:25", "cx@v.io", None).unwrap_err();
        assert!(e.to_string().contains("use smtp://"), "{e}");
        let e = Mailer::new("smtp://mail:25", "not an address", None).unwrap_err();
        assert!(e.to_string().contains("--mail-from"), "{e}");
        let e = Mailer::new("smtp://mail:25", "cx@v.io", Some("pw".into())).unwrap_err();
        assert!(e.to_string().contains("user name"), "{e}");
        let m = Mailer::new("smtp://u:secret@mail:25", "closeloop <cx@v.io>", None).unwrap();
        assert_eq!(m.server, "smtp://***@mail:25");
        assert!(!format!("{m:?}").contains("secret"));
    }

    #[tokio::test]
    async fn messages_have_both_parts_and_a_stable_message_id() {
        let m = Mailer::new("smtp://127.0.0.1:2525", "cx@v.io", None).unwrap();
        let r = Rendered {
            subject: "S".into(),
            text: "plain".into(),
            html: "<p>html</p>".into(),
            chat: "chat".into(),
        };
        let msg = m.message("o@v.io", None, "abc@closeloop", &r).unwrap();
        let raw = String::from_utf8(msg.formatted()).unwrap();
        assert!(raw.contains("Message-ID: <abc@closeloop>"), "{raw}");
        assert!(raw.contains("multipart/alternative"), "{raw}");
        assert!(
            raw.contains("text/plain") && raw.contains("text/html"),
            "{raw}"
        );
        assert!(matches!(
            m.message("not an address", None, "x@closeloop", &r),
            Err(SendError::Permanent { .. })
        ));
        assert_eq!(
            msg.envelope()
                .to()
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            ["o@v.io"]
        );
        // In copy: named in the header, not delivered to.
        let cc = m
            .message("mgr@v.io", Some("o@v.io"), "c@closeloop", &r)
            .unwrap();
        let raw = String::from_utf8(cc.formatted()).unwrap();
        assert!(raw.contains("Cc: o@v.io"), "{raw}");
        assert_eq!(
            cc.envelope()
                .to()
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            ["mgr@v.io"]
        );
    }
}
