//! Rebuild a projection from the start of the log into a fresh place, and compare.

use anyhow::Context;

use crate::Config;

use super::audit_store;
use super::projector::{project_audit, project_redis};

pub async fn replay_redis(config: Config, into: String, verify: bool) -> anyhow::Result<()> {
    let live = config
        .redis()?
        .context("redis_url is not set (SEATFLOW_REDIS_URL=redis://...)")?;
    anyhow::ensure!(
        into != live.prefix(),
        "--into must be a fresh key prefix, not the live one ({})",
        live.prefix()
    );
    let target = live.with_prefix(&into);
    let started = std::time::Instant::now();
    project_redis(&config, target.clone(), true).await?;
    let rebuilt = target
        .snapshot()
        .await
        .context("cannot read the rebuilt key space")?;
    println!(
        "replayed the Redis read models into {into}: {} outcomes, {} section counts in {:.1} s",
        rebuilt.outcomes.len(),
        rebuilt.counts.len(),
        started.elapsed().as_secs_f64()
    );
    if !verify {
        return Ok(());
    }
    let current = live
        .snapshot()
        .await
        .context("cannot read the live key space")?;
    let ttl = chrono::Duration::seconds(
        i64::try_from(config.redis.outcome_ttl_secs).unwrap_or(i64::MAX / 1000),
    );
    let comparison =
        seatflow_projections::redis::compare(&rebuilt, &current, chrono::Utc::now() - ttl);
    println!(
        "verify: {} outcomes equal, {} different, {} missing from the live projection, {} only \
         in the replay (expired live: older than redis_outcome_ttl_secs); counts: {} equal, {} \
         different",
        comparison.equal_outcomes,
        comparison.different_outcomes.len(),
        comparison.missing_live.len(),
        comparison.expired_live,
        comparison.equal_counts,
        comparison.different_counts.len()
    );
    for id in comparison.different_outcomes.iter().take(10) {
        println!("  different: {id}");
    }
    for id in comparison.missing_live.iter().take(10) {
        println!("  missing from the live projection: {id}");
    }
    for section in comparison.different_counts.iter().take(10) {
        println!("  count differs: {section}");
    }
    if comparison.is_equal() {
        Ok(())
    } else {
        anyhow::bail!("the rebuilt Redis read models differ from the live ones")
    }
}

pub async fn replay_audit(config: Config, into: String, verify: bool) -> anyhow::Result<()> {
    let target = seatflow_projections::audit::AuditStore::new(&into, 4)?;
    let started = std::time::Instant::now();
    project_audit(&config, target.clone(), true).await?;
    let rebuilt = target
        .count()
        .await
        .context("cannot count the rebuilt rows")?;
    println!(
        "replayed the audit: {rebuilt} rows in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    if !verify {
        return Ok(());
    }
    let live = audit_store(&config)?;
    let comparison = seatflow_projections::audit::verify(&target, &live, 10_000)
        .await
        .context("cannot compare the projections")?;
    println!(
        "verify: {} rows equal, {} different, {} missing from the live projection, {} live rows \
         newer than the replay (not compared)",
        comparison.equal,
        comparison.different.len(),
        comparison.missing_live.len(),
        comparison.newer_live
    );
    for id in comparison.different.iter().take(10) {
        println!("  different: {id}");
    }
    for id in comparison.missing_live.iter().take(10) {
        println!("  missing from the live projection: {id}");
    }
    if comparison.different.is_empty() && comparison.missing_live.is_empty() {
        Ok(())
    } else {
        anyhow::bail!("the rebuilt projection differs from the live one")
    }
}
