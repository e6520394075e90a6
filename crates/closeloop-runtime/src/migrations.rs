//! One migration history per database, made of every service's migrations.
//!
//! Each crate that owns tables embeds its migrations (`sqlx::migrate!`);
//! a process runs the union of those its roles need, in version order, as
//! one sqlx migrator (so all are recorded in one `_sqlx_migrations` table).
//! Versions are unique across crates: a collision is refused at start
//! (and by a test). A process that runs only some roles ignores migrations
//! other roles applied to a shared database.

use std::collections::BTreeMap;

use futures::future::BoxFuture;
use sqlx::error::BoxDynError;
use sqlx::migrate::{Migration, MigrationSource, Migrator};

#[derive(Debug, thiserror::Error)]
pub enum MigrationsError {
    #[error(
        "migration version {version} is defined twice ({first:?} and {second:?}); \
         every crate's migrations need versions of their own"
    )]
    Collision {
        version: i64,
        first: String,
        second: String,
    },
    #[error("cannot assemble migrations: {0}")]
    Assemble(#[from] sqlx::migrate::MigrateError),
}

/// The union of several crates' migrators.
#[derive(Debug)]
pub struct MigrationSet(Vec<Migration>);

impl MigrationSet {
    /// Collects `migrators` (the same migrator twice counts once); refuses
    /// two different migrations with one version.
    pub fn of<'a>(
        migrators: impl IntoIterator<Item = &'a Migrator>,
    ) -> Result<MigrationSet, MigrationsError> {
        let mut by_version: BTreeMap<i64, Migration> = BTreeMap::new();
        for m in migrators.into_iter().flat_map(Migrator::iter) {
            match by_version.get(&m.version) {
                Some(seen) if seen.checksum == m.checksum => {}
                Some(seen) => {
                    return Err(MigrationsError::Collision {
                        version: m.version,
                        first: seen.description.to_string(),
                        second: m.description.to_string(),
                    });
                }
                None => {
                    by_version.insert(m.version, m.clone());
                }
            }
        }
        Ok(MigrationSet(by_version.into_values().collect()))
    }

    /// One migrator for them all. Migrations another process applied to a
    /// shared database (for roles this one does not run) are left alone.
    pub async fn migrator(self) -> Result<Migrator, MigrationsError> {
        let mut m = Migrator::new(self).await?;
        m.set_ignore_missing(true);
        Ok(m)
    }
}

impl MigrationSource<'static> for MigrationSet {
    fn resolve(self) -> BoxFuture<'static, Result<Vec<Migration>, BoxDynError>> {
        Box::pin(async move { Ok(self.0) })
    }
}
