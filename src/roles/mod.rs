//! The roles a seatflow process runs: the embedded all-in-one and the Kafka gateway (each an
//! [`App`]: built, then its port, then `run_until_stopped`), the Kafka seat processor, the
//! projector, the replays, the log reader, topic creation and the audit's maintenance. Each
//! runs until it is done or the process's shutdown token is cancelled; `main` only parses the
//! command line and picks one.

mod audit;
mod log;
mod projector;
mod replay;
mod seat_processor;
mod topics;

pub use audit::{archive, migrate};
pub use log::{LogRequest, read_log};
pub use projector::run_projector;
pub use replay::{replay_audit, replay_redis};
pub use seat_processor::run_seat_processor;
pub use topics::create_topics;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::{App, Config};

/// The embedded default: every role in one process over the embedded store.
pub async fn run_embedded(config: Config) -> anyhow::Result<()> {
    tracing::info!(
        bind = %config.http.bind,
        data_dir = %config.processor.data_dir.display(),
        partitions = config.partitions(),
        sync_writes = config.processor.sync_writes,
        "starting seatflow (embedded: every role in one process)"
    );
    let app = App::build(config).await?;
    tracing::info!(port = app.port(), "listening; Swagger UI at /docs");
    app.run_until_stopped().await
}

/// A gateway on Kafka: the HTTP API, commands to the seat processors.
pub async fn run_gateway(config: Config) -> anyhow::Result<()> {
    if !config.on_kafka() {
        anyhow::bail!(
            "the gateway role needs kafka.brokers (SEATFLOW_KAFKA_BROKERS); \
             without Kafka run `seatflow` (all roles, embedded)"
        );
    }
    let app = App::build(config).await?;
    tracing::info!(port = app.port(), "gateway listening; Swagger UI at /docs");
    app.run_until_stopped().await
}

/// Every role in one process on Kafka (`seatflow all` with `kafka.brokers`): the gateway, a seat
/// processor, and the projector when a database or Redis is configured. Each role is a task of
/// its own: one that blocks (a synchronous call) or waits must not hold up the others, the HTTP
/// listener least of all (inside one `try_join!` a migration stalled them all).
pub async fn all_on_kafka(config: Config) -> anyhow::Result<()> {
    let (processor, projector) = (config.clone(), config.clone());
    let app = App::build(config).await?;
    tracing::info!(port = app.port(), "all roles on Kafka; Swagger UI at /docs");
    let mut running = tokio::task::JoinSet::new();
    running.spawn(run_seat_processor(processor));
    running.spawn(app.run_until_stopped());
    if projector.audit.database_url.is_some() || projector.redis.url.is_some() {
        running.spawn(run_projector(projector));
    }
    while let Some(finished) = running.join_next().await {
        finished.context("a role panicked")??;
    }
    Ok(())
}

/// Wait for a role's task; when `stop` is cancelled (SIGTERM/Ctrl-C: it is a child of the
/// process's shutdown token), wait for the task to wind down.
pub(crate) async fn until_done_or_signalled<T, E>(
    what: &str,
    worker: tokio::task::JoinHandle<Result<T, E>>,
    stop: &CancellationToken,
) -> anyhow::Result<()>
where
    E: std::error::Error + Send + Sync + 'static,
{
    tokio::pin!(worker);
    tokio::select! {
        finished = &mut worker => {
            finished.with_context(|| format!("{what} panicked"))??;
            return Ok(());
        }
        _ = stop.cancelled() => {}
    }
    worker.await.with_context(|| format!("{what} panicked"))??;
    Ok(())
}

pub fn audit_store(config: &Config) -> anyhow::Result<seatflow_projections::audit::AuditStore> {
    let url = config
        .audit
        .database_url
        .as_ref()
        .map(crate::config::Secret::expose)
        .context("audit.database_url is not set (SEATFLOW_DATABASE_URL=postgres://...)")?;
    // The projector writes over 2 connections at once, plus one for reading its positions.
    Ok(seatflow_projections::audit::AuditStore::new(url, 6)?)
}
