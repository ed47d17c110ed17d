//! The projector: the log from Kafka into the Postgres audit, the Redis read models and the
//! webhooks' deliveries (posted from here too).

use anyhow::Context;

use crate::Config;

use super::{audit_store, until_done_or_signalled};

/// The projector role: the audit and the webhooks' deliveries (with `database_url`) and the
/// Redis read models (with `redis_url`), side by side, until stopped.
pub async fn run_projector(config: Config) -> anyhow::Result<()> {
    anyhow::ensure!(
        config.audit.database_url.is_some() || config.redis.url.is_some(),
        "the projector needs database_url (SEATFLOW_DATABASE_URL=postgres://...) and/or \
         redis_url (SEATFLOW_REDIS_URL=redis://...)"
    );
    let audit = async {
        match config.audit.database_url {
            Some(_) => project_audit(&config, audit_store(&config)?, false).await,
            None => Ok(()),
        }
    };
    let redis = async {
        match config.redis()? {
            Some(store) => project_redis(&config, store, false).await,
            None => Ok(()),
        }
    };
    let webhooks = async {
        match (&config.audit.database_url, config.webhooks.enabled) {
            (Some(_), true) => project_webhooks(&config, audit_store(&config)?).await,
            _ => Ok(()),
        }
    };
    tokio::try_join!(audit, redis, webhooks).map(drop)
}

/// Apply the audit database's migrations, waiting for the database if it is not up yet.
async fn migrate_when_up(store: &seatflow_projections::audit::AuditStore) -> anyhow::Result<()> {
    let mut attempt = 1;
    loop {
        match store.migrate().await {
            Ok(applied) => {
                for migration in applied {
                    tracing::info!(migration, "migration applied");
                }
                return Ok(());
            }
            Err(e) if attempt < 60 => {
                tracing::warn!(error = %e, attempt, "cannot apply the migrations yet; retrying");
                attempt += 1;
                tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            }
            Err(e) => return Err(e).context("cannot apply the migrations"),
        }
    }
}

/// Queue webhook deliveries from `reservation-completed` and post them, until stopped. The
/// webhooks and their deliveries are kept in the audit database.
pub async fn project_webhooks(
    config: &Config,
    audit: seatflow_projections::audit::AuditStore,
) -> anyhow::Result<()> {
    let mut projector = projector_config(config, false)?;
    migrate_when_up(&audit).await?;
    projector.wire = crate::wire(config).await?;
    let store: std::sync::Arc<dyn seatflow_projections::webhooks::WebhookStore> =
        std::sync::Arc::new(seatflow_projections::webhooks::postgres::PostgresWebhooks::new(audit));
    let stop = crate::shutdown_token().child_token();
    let (queued, watch) = tokio::sync::watch::channel(0);
    let senders = tokio::spawn(seatflow_projections::webhooks::deliver::run(
        store.clone(),
        config.webhooks.send(),
        watch,
        stop.clone(),
    ));
    let worker = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let projected =
                seatflow_kafka::run_webhook_projector(&projector, store, queued, stop.clone())
                    .await;
            stop.cancel();
            let _ = senders.await;
            projected
        })
    };
    until_done_or_signalled("webhook projector", worker, &stop).await
}

pub(crate) fn projector_config(
    config: &Config,
    stop_at_end: bool,
) -> anyhow::Result<seatflow_kafka::ProjectorConfig> {
    let brokers = config
        .kafka
        .brokers
        .clone()
        .context("kafka.brokers is not set (SEATFLOW_KAFKA_BROKERS=host:port,...)")?;
    Ok(seatflow_kafka::ProjectorConfig {
        brokers,
        topics: config.topics(),
        wire: seatflow_kafka::Wire::single_object(),
        max_batch: 5_000,
        linger: std::time::Duration::from_millis(20),
        writers: 2,
        stop_at_end,
    })
}

/// Project `reservation-completed` into `store` until stopped (or, with `stop_at_end`, until
/// the end the topic had at start).
pub async fn project_audit(
    config: &Config,
    store: seatflow_projections::audit::AuditStore,
    stop_at_end: bool,
) -> anyhow::Result<()> {
    let mut projector = projector_config(config, stop_at_end)?;
    // The database may start after us: wait for it rather than fail.
    migrate_when_up(&store).await?;
    projector.wire = crate::wire(config).await?;
    let stop = crate::shutdown_token().child_token();
    let worker = {
        let stop = stop.clone();
        tokio::spawn(async move { seatflow_kafka::run_projector(&projector, &store, stop).await })
    };
    until_done_or_signalled("projector", worker, &stop).await
}

/// Project `section-status` and `reservation-completed` into the Redis read models of `store`
/// until stopped (or, with `stop_at_end`, until the ends the topics had at start).
pub async fn project_redis(
    config: &Config,
    store: seatflow_projections::redis::RedisReads,
    stop_at_end: bool,
) -> anyhow::Result<()> {
    let mut projector = projector_config(config, stop_at_end)?;
    projector.wire = crate::wire(config).await?;
    let stop = crate::shutdown_token().child_token();
    let worker = {
        let stop = stop.clone();
        tokio::spawn(
            async move { seatflow_kafka::run_redis_projector(&projector, &store, stop).await },
        )
    };
    until_done_or_signalled("Redis projector", worker, &stop).await
}
