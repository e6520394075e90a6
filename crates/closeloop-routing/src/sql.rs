//! The directory as routing reads it from the read model, one response at a
//! time: the response's account and the teams its program's workflows name.

use std::collections::{BTreeMap, HashMap};

use closeloop_readmodel::Db;
use sqlx::Row;

use crate::{AccountInfo, DirectoryView};

/// A snapshot of what one routing decision needs, plus the rotation turns
/// the routing role has taken for its routes.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub account: Option<(String, AccountInfo)>,
    /// Team id → members in rotation order; absent: unknown team.
    pub teams: BTreeMap<String, Vec<String>>,
    /// (team, workflow id) → turn.
    pub turns: HashMap<(String, String), u64>,
}

impl DirectoryView for Snapshot {
    fn account(&self, id: &str) -> Option<AccountInfo> {
        self.account
            .as_ref()
            .filter(|(a, _)| a == id)
            .map(|(_, info)| info.clone())
    }

    fn team_members(&self, team: &str) -> Option<Vec<String>> {
        self.teams.get(team).cloned()
    }

    fn turn(&self, team: &str, workflow_id: &str) -> u64 {
        self.turns
            .get(&(team.to_string(), workflow_id.to_string()))
            .copied()
            .unwrap_or(0)
    }
}

/// Reads account `account_id` and `teams` from the directory views.
pub async fn load(db: &Db, account_id: &str, teams: &[String]) -> Result<Snapshot, sqlx::Error> {
    let mut snap = Snapshot::default();
    let pool = db.pool();
    if let Some(row) = sqlx::query("SELECT name, region, segment FROM accounts WHERE id = $1")
        .bind(account_id)
        .fetch_optional(pool)
        .await?
    {
        let team = sqlx::query("SELECT role, email FROM account_team WHERE account_id = $1")
            .bind(account_id)
            .fetch_all(pool)
            .await?
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<Result<BTreeMap<String, String>, sqlx::Error>>()?;
        snap.account = Some((
            account_id.to_string(),
            AccountInfo {
                name: row.try_get(0)?,
                region: row.try_get(1)?,
                segment: row.try_get(2)?,
                team,
            },
        ));
    }
    for team in teams {
        if snap.teams.contains_key(team) {
            continue;
        }
        let known = sqlx::query("SELECT 1 FROM teams WHERE id = $1")
            .bind(team.as_str())
            .fetch_optional(pool)
            .await?
            .is_some();
        if !known {
            continue;
        }
        let members =
            sqlx::query("SELECT email FROM team_members WHERE team_id = $1 ORDER BY position")
                .bind(team.as_str())
                .fetch_all(pool)
                .await?
                .iter()
                .map(|r| r.try_get(0))
                .collect::<Result<Vec<String>, sqlx::Error>>()?;
        snap.teams.insert(team.clone(), members);
    }
    Ok(snap)
}
