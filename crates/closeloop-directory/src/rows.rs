//! Directory records as people write them: the rows of an import file (YAML
//! or CSV, via the CLI) and the JSON messages of `<prefix>.intake.directory`.

use std::collections::BTreeMap;

use closeloop_proto::v1;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersonRow {
    pub email: String,
    #[serde(default)]
    pub name: String,
    #[serde(default, alias = "manager_email")]
    pub manager: String,
    /// How the person is told (default: e-mail, immediately).
    #[serde(default)]
    pub notify: Option<NotifyRow>,
    /// Their own chat webhook.
    #[serde(default)]
    pub chat: Option<ChatRow>,
}

/// `notify: {channels: [email, chat], digest_hour: 8, digest_time_zone: Europe/Paris}`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyRow {
    #[serde(default)]
    pub channels: Vec<String>,
    #[serde(default)]
    pub digest_hour: Option<u32>,
    #[serde(default)]
    pub digest_time_zone: String,
}

impl NotifyRow {
    pub fn to_proto(&self) -> v1::NotificationPreferences {
        v1::NotificationPreferences {
            channels: self.channels.clone(),
            digest_hour: self.digest_hour,
            digest_time_zone: self.digest_time_zone.clone(),
        }
    }
}

/// `chat: {kind: slack, url: https://hooks.slack.com/services/...}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatRow {
    pub kind: String,
    pub url: String,
}

impl ChatRow {
    pub fn to_proto(&self) -> v1::ChatWebhook {
        v1::ChatWebhook {
            kind: self.kind.clone(),
            url: self.url.clone(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeamRow {
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub members: Vec<String>,
    /// The team's chat channel.
    #[serde(default)]
    pub chat: Option<ChatRow>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountRow {
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub region: String,
    #[serde(default)]
    pub segment: String,
    /// Role → e-mail.
    #[serde(default)]
    pub team: BTreeMap<String, String>,
}

/// One message on `<prefix>.intake.directory`: `{"kind": "account", ...}`,
/// `{"kind": "person", ...}` or `{"kind": "team", ...}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum DirectoryRow {
    Account(AccountRow),
    Person(PersonRow),
    Team(TeamRow),
}

impl PersonRow {
    pub fn to_proto(&self) -> v1::Person {
        v1::Person {
            email: self.email.clone(),
            name: self.name.clone(),
            manager_email: self.manager.clone(),
            sequence: 0,
            notify: self.notify.as_ref().map(NotifyRow::to_proto),
            chat: self.chat.as_ref().map(ChatRow::to_proto),
        }
    }
}

impl TeamRow {
    pub fn to_proto(&self) -> v1::Team {
        v1::Team {
            id: self.id.clone(),
            name: self.name.clone(),
            members: self.members.clone(),
            sequence: 0,
            chat: self.chat.as_ref().map(ChatRow::to_proto),
        }
    }
}

impl AccountRow {
    pub fn to_proto(&self) -> v1::Account {
        v1::Account {
            id: self.id.clone(),
            name: self.name.clone(),
            region: self.region.clone(),
            segment: self.segment.clone(),
            team: self
                .team
                .iter()
                .map(|(role, email)| v1::AccountTeamMember {
                    role: role.clone(),
                    email: email.clone(),
                })
                .collect(),
            sequence: 0,
        }
    }
}

/// A YAML directory file (`closeloop directory import`,
/// `deploy/examples/directory.yaml`): people, teams and accounts.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectoryFile {
    #[serde(default)]
    pub people: Vec<PersonRow>,
    #[serde(default)]
    pub teams: Vec<TeamRow>,
    #[serde(default)]
    pub accounts: Vec<AccountRow>,
}
