//! The roles a seatflow process runs besides the HTTP API (`App`): the Kafka seat processor,
//! the projector, the replays, the log reader, topic creation. Each runs until it is done or
//! the process's shutdown token is cancelled; `main` only parses the command line and picks one.

mod log;
mod projector;
mod replay;
mod seat_processor;
mod topics;

pub use log::{LogRequest, read_log};
pub use projector::run_projector;
pub use replay::{replay_audit, replay_redis};
pub use seat_processor::run_seat_processor;
pub use topics::create_topics;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::{App, Config};

/// Every role in one process on Kafka (`seatflow all` with `kafka_brokers`): the gateway, a seat
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
        .context("database_url is not set (SEATFLOW_DATABASE_URL=postgres://...)")?;
    // The projector writes over 2 connections at once, plus one for reading its positions.
    Ok(seatflow_projections::audit::AuditStore::new(url, 6)?)
}
