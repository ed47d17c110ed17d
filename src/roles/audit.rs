//! The audit's maintenance commands: apply the migrations, move old rows to the archive.

use std::time::Duration;

use anyhow::Context;

use super::audit_store;
use crate::Config;

/// Apply the audit's migrations and say which ran.
pub async fn migrate(config: &Config) -> anyhow::Result<()> {
    let applied = audit_store(config)?
        .migrate()
        .await
        .context("cannot apply the migrations")?;
    if applied.is_empty() {
        println!("the database is up to date");
    }
    for migration in applied {
        println!("applied {migration}");
    }
    Ok(())
}

/// Move the reservations completed more than `older_than` ago to `reservation_archive`.
pub async fn archive(config: &Config, older_than: Duration) -> anyhow::Result<()> {
    let store = audit_store(config)?;
    store
        .migrate()
        .await
        .context("cannot apply the migrations")?;
    let moved = store.archive(older_than).await.context("cannot archive")?;
    println!(
        "moved {moved} reservations completed more than {} ago to reservation_archive",
        humantime::format_duration(older_than)
    );
    Ok(())
}
