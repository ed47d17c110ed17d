//! The `seatflow` command: parse the command line, set up logging, run what is asked.

use std::path::PathBuf;
use tokio_util::sync::CancellationToken;

use anyhow::Context;
use clap::{Parser, Subcommand};
use seatflow::bench::{self, BenchArgs};
use seatflow::{App, Config, MetricsRole, Overrides};

// glibc's malloc was the top of the server's profile under load (~20% of CPU); mimalloc's
// thread-local free lists take that to a few percent.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "seatflow",
    version,
    about = "Flash-sale ticket reservation backend"
)]
struct Cli {
    /// A TOML configuration file (see docs/operations.md for every setting).
    #[arg(long, global = true, env = "SEATFLOW_CONFIG")]
    config: Option<PathBuf>,
    /// Address of the HTTP API (default 0.0.0.0:8080).
    #[arg(long, global = true)]
    bind: Option<String>,
    /// Directory of the embedded store (default ./data).
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// Partitions / seat-worker threads (default: CPU cores; fixed per data directory).
    #[arg(long, global = true)]
    partitions: Option<u32>,
    #[command(subcommand)]
    command: Option<Role>,
}

#[derive(Debug, Subcommand)]
enum Role {
    /// Every role in one process: on the embedded store (the default), or, with
    /// `kafka_brokers` set, a gateway and a seat processor on Kafka.
    All,
    /// The HTTP gateway on Kafka (needs `kafka_brokers`).
    Gateway,
    /// The seat processor on Kafka: decides the commands of the partitions the group assigns
    /// it, exactly once (needs `kafka_brokers`; state in `data_dir`).
    SeatProcessor,
    /// Project the log from Kafka into the Postgres audit table (with `database_url`; applies
    /// the migrations first) and into the Redis read models (with `redis_url`).
    Projector,
    /// Apply the database migrations of `sql/` (needs `database_url`). Idempotent.
    Migrate,
    /// Move audit rows older than a cut-off to `reservation_archive` (needs `database_url`).
    Archive {
        /// Age of the rows to move, e.g. `90days`, `12h`.
        #[arg(long, default_value = "90days", value_parser = humantime::parse_duration)]
        older_than: std::time::Duration,
    },
    /// Rebuild a projection from the start of the log into a fresh database (`audit`) or a
    /// fresh Redis key prefix (`redis`), with progress; `--verify` then compares it with the
    /// live one (`database_url` / `redis_url` + `redis_key_prefix`).
    Replay {
        /// The projection to rebuild.
        #[arg(value_parser = ["audit", "redis"])]
        projection: String,
        /// Where to rebuild: a database URL (audit) or a key prefix (redis); empty, or holding
        /// an earlier replay to finish.
        #[arg(long)]
        into: String,
        /// Compare the rebuilt rows with the live projection's; exit 1 on any difference.
        #[arg(long)]
        verify: bool,
    },
    /// Read a topic, every record decoded to one line of JSON (needs `kafka_brokers`).
    Log {
        #[command(subcommand)]
        action: LogAction,
    },
    /// Load a running seatflow with a flash-sale spike and verify the sale.
    Bench(BenchArgs),
    /// Manage seatflow's Kafka topics (needs `kafka_brokers`).
    Topics {
        #[command(subcommand)]
        action: TopicsAction,
    },
}

#[derive(Debug, Subcommand)]
enum LogAction {
    /// The records from `--from` (default: the beginning) to the end the topic has now.
    Dump(LogArgs),
    /// The records from `--from` (default: the end) as they arrive, until Ctrl-C.
    Tail(LogArgs),
}

#[derive(Debug, clap::Args)]
struct LogArgs {
    /// The topic, without the prefix.
    #[arg(long, value_parser = seatflow_kafka::LOG_TOPICS)]
    topic: String,
    /// Only this partition.
    #[arg(long)]
    partition: Option<i32>,
    /// `beginning`, `end`, or an offset (with `--partition`).
    #[arg(long)]
    from: Option<String>,
    /// Stop after this many records.
    #[arg(long)]
    limit: Option<usize>,
}

#[derive(Debug, Subcommand)]
enum TopicsAction {
    /// Create every topic that is missing, with its partitions, replication, min ISR and
    /// cleanup policy; check the partition count of those that exist. Idempotent.
    Create,
}

fn main() -> anyhow::Result<()> {
    let result = run();
    // Flush the spans still buffered (a no-op without an OTLP endpoint).
    drop(TRACING.lock().take());
    result
}

fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let outcome = run_role(cli, &runtime);
    // A role that ended on an error may leave blocking work behind (a Kafka client closing):
    // the process still stops, within a bound.
    runtime.shutdown_timeout(std::time::Duration::from_secs(10));
    outcome
}

/// Run what the command line asks for on `runtime`.
fn run_role(cli: Cli, runtime: &tokio::runtime::Runtime) -> anyhow::Result<()> {
    match cli.command {
        Some(Role::Bench(args)) => {
            init_logging("text");
            runtime.block_on(bench::run(args)).map(drop)
        }
        Some(Role::Topics {
            action: TopicsAction::Create,
        }) => {
            init_logging("text");
            let config = Config::load(cli.config.as_deref(), &overrides(&cli))?;
            runtime.block_on(create_topics(&config))
        }
        Some(Role::Projector) => {
            let config = Config::load(cli.config.as_deref(), &overrides(&cli))?;
            init_logging(&config.log_format);
            runtime.block_on(async move {
                seatflow::serve_metrics(&config, MetricsRole::Projector).await?;
                run_projector(config).await
            })
        }
        Some(Role::Migrate) => {
            init_logging("text");
            let config = Config::load(cli.config.as_deref(), &overrides(&cli))?;
            runtime.block_on(async move {
                let applied = audit_store(&config)?
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
            })
        }
        Some(Role::Archive { older_than }) => {
            init_logging("text");
            let config = Config::load(cli.config.as_deref(), &overrides(&cli))?;
            runtime.block_on(async move {
                let store = audit_store(&config)?;
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
            })
        }
        Some(Role::Replay {
            ref projection,
            ref into,
            verify,
        }) => {
            init_logging("text");
            let config = Config::load(cli.config.as_deref(), &overrides(&cli))?;
            if projection == "redis" {
                runtime.block_on(replay_redis(config, into.clone(), verify))
            } else {
                runtime.block_on(replay_audit(config, into.clone(), verify))
            }
        }
        Some(Role::Log { ref action }) => {
            init_logging("text");
            let config = Config::load(cli.config.as_deref(), &overrides(&cli))?;
            let (args, follow) = match action {
                LogAction::Dump(args) => (args, false),
                LogAction::Tail(args) => (args, true),
            };
            runtime.block_on(read_log(config, args, follow))
        }
        Some(Role::SeatProcessor) => {
            let config = Config::load(cli.config.as_deref(), &overrides(&cli))?;
            init_logging(&config.log_format);
            runtime.block_on(async move {
                seatflow::serve_metrics(&config, MetricsRole::SeatProcessor).await?;
                run_seat_processor(config).await
            })
        }
        Some(Role::Gateway) => {
            let config = Config::load(cli.config.as_deref(), &overrides(&cli))?;
            init_logging(&config.log_format);
            if config.kafka_brokers.is_none() {
                anyhow::bail!(
                    "the gateway role needs kafka_brokers (SEATFLOW_KAFKA_BROKERS); \
                     without Kafka run `seatflow` (all roles, embedded)"
                );
            }
            runtime.block_on(async move {
                let app = App::build(config).await?;
                tracing::info!(port = app.port(), "gateway listening; Swagger UI at /docs");
                app.run_until_stopped().await
            })
        }
        None | Some(Role::All) => {
            let config = Config::load(cli.config.as_deref(), &overrides(&cli))?;
            if config.kafka_brokers.is_some() {
                init_logging(&config.log_format);
                let (processor, projector) = (config.clone(), config.clone());
                return runtime.block_on(async move {
                    let app = App::build(config).await?;
                    tracing::info!(port = app.port(), "all roles on Kafka; Swagger UI at /docs");
                    // Each role a task of its own: one that blocks (a synchronous call) or waits
                    // must not hold up the others, the HTTP listener least of all.
                    let mut roles = tokio::task::JoinSet::new();
                    roles.spawn(run_seat_processor(processor));
                    roles.spawn(app.run_until_stopped());
                    if projector.database_url.is_some() || projector.redis_url.is_some() {
                        roles.spawn(run_projector(projector));
                    }
                    while let Some(finished) = roles.join_next().await {
                        finished.context("a role panicked")??;
                    }
                    Ok(())
                });
            }
            init_logging(&config.log_format);
            tracing::info!(
                bind = %config.bind,
                data_dir = %config.data_dir.display(),
                partitions = config.partitions,
                sync_writes = config.sync_writes,
                "starting seatflow (embedded: every role in one process)"
            );
            runtime.block_on(async move {
                let app = App::build(config).await?;
                tracing::info!(port = app.port(), "listening; Swagger UI at /docs");
                app.run_until_stopped().await
            })
        }
    }
}

fn overrides(cli: &Cli) -> Overrides {
    Overrides {
        bind: cli.bind.clone(),
        data_dir: cli.data_dir.clone(),
        partitions: cli.partitions,
    }
}

/// Run the Kafka seat processor on a blocking thread until SIGINT/SIGTERM.
async fn run_seat_processor(config: Config) -> anyhow::Result<()> {
    let brokers = config
        .kafka_brokers
        .clone()
        .context("kafka_brokers is not set (SEATFLOW_KAFKA_BROKERS=host:port,...)")?;
    let processor = seatflow_kafka::SeatProcessorConfig {
        brokers,
        topics: config.topics(),
        instance_id: config.instance_id.clone(),
        data_dir: config.data_dir.clone(),
        max_batch: config.max_batch,
        sync_writes: config.sync_writes,
        wire: seatflow::wire(&config).await?,
    };
    tracing::info!(
        instance = %processor.instance_id,
        data_dir = %processor.data_dir.display(),
        "starting the seat processor on Kafka"
    );
    let stop = seatflow::shutdown_token().child_token();
    let worker = {
        let stop = stop.clone();
        tokio::task::spawn_blocking(move || seatflow_kafka::run_seat_processor(&processor, stop))
    };
    until_done_or_signalled("seat processor", worker, &stop).await
}

/// Wait for a role's task; when `stop` is cancelled (SIGTERM/Ctrl-C: it is a child of the
/// process's shutdown token), wait for the task to wind down.
async fn until_done_or_signalled<T, E>(
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

fn audit_store(config: &Config) -> anyhow::Result<seatflow_projections::audit::AuditStore> {
    let url = config
        .database_url
        .as_ref()
        .map(seatflow::config::Secret::expose)
        .context("database_url is not set (SEATFLOW_DATABASE_URL=postgres://...)")?;
    // The projector writes over 2 connections at once, plus one for reading its positions.
    Ok(seatflow_projections::audit::AuditStore::new(url, 6)?)
}

/// The projector role: the audit (with `database_url`) and the Redis read models (with
/// `redis_url`), side by side, until stopped.
async fn run_projector(config: Config) -> anyhow::Result<()> {
    anyhow::ensure!(
        config.database_url.is_some() || config.redis_url.is_some(),
        "the projector needs database_url (SEATFLOW_DATABASE_URL=postgres://...) and/or \
         redis_url (SEATFLOW_REDIS_URL=redis://...)"
    );
    let audit = async {
        match config.database_url {
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
    tokio::try_join!(audit, redis).map(drop)
}

fn projector_config(
    config: &Config,
    stop_at_end: bool,
) -> anyhow::Result<seatflow_kafka::ProjectorConfig> {
    let brokers = config
        .kafka_brokers
        .clone()
        .context("kafka_brokers is not set (SEATFLOW_KAFKA_BROKERS=host:port,...)")?;
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
async fn project_audit(
    config: &Config,
    store: seatflow_projections::audit::AuditStore,
    stop_at_end: bool,
) -> anyhow::Result<()> {
    let mut projector = projector_config(config, stop_at_end)?;
    // The database may start after us: wait for it rather than fail.
    let mut attempt = 1;
    loop {
        match store.migrate().await {
            Ok(applied) => {
                for migration in applied {
                    tracing::info!(migration, "migration applied");
                }
                break;
            }
            Err(e) if attempt < 60 => {
                tracing::warn!(error = %e, attempt, "cannot apply the migrations yet; retrying");
                attempt += 1;
                tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            }
            Err(e) => return Err(e).context("cannot apply the migrations"),
        }
    }
    projector.wire = seatflow::wire(config).await?;
    let stop = seatflow::shutdown_token().child_token();
    let worker = {
        let stop = stop.clone();
        tokio::spawn(async move { seatflow_kafka::run_projector(&projector, &store, stop).await })
    };
    until_done_or_signalled("projector", worker, &stop).await
}

/// Project `section-status` and `reservation-completed` into the Redis read models of `store`
/// until stopped (or, with `stop_at_end`, until the ends the topics had at start).
async fn project_redis(
    config: &Config,
    store: seatflow_projections::redis::RedisReads,
    stop_at_end: bool,
) -> anyhow::Result<()> {
    let mut projector = projector_config(config, stop_at_end)?;
    projector.wire = seatflow::wire(config).await?;
    let stop = seatflow::shutdown_token().child_token();
    let worker = {
        let stop = stop.clone();
        tokio::spawn(
            async move { seatflow_kafka::run_redis_projector(&projector, &store, stop).await },
        )
    };
    until_done_or_signalled("Redis projector", worker, &stop).await
}

async fn replay_redis(config: Config, into: String, verify: bool) -> anyhow::Result<()> {
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
        i64::try_from(config.redis_outcome_ttl_secs).unwrap_or(i64::MAX / 1000),
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

async fn replay_audit(config: Config, into: String, verify: bool) -> anyhow::Result<()> {
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

async fn read_log(config: Config, args: &LogArgs, follow: bool) -> anyhow::Result<()> {
    use seatflow_kafka::LogStart;
    let start = match args.from.as_deref() {
        None if follow => LogStart::End,
        None | Some("beginning") => LogStart::Beginning,
        Some("end") => LogStart::End,
        Some(offset) => {
            let offset: i64 = offset.parse().with_context(|| {
                format!("--from must be beginning, end or an offset (got {offset:?})")
            })?;
            anyhow::ensure!(
                args.partition.is_some(),
                "--from <offset> needs --partition"
            );
            LogStart::Offset(offset)
        }
    };
    let query = seatflow_kafka::LogQuery {
        brokers: config
            .kafka_brokers
            .clone()
            .context("kafka_brokers is not set (SEATFLOW_KAFKA_BROKERS=host:port,...)")?,
        topics: config.topics(),
        wire: seatflow::wire(&config).await?,
        topic: args.topic.clone(),
        partition: args.partition,
        start,
        follow,
        limit: args.limit,
    };
    let stop = seatflow::shutdown_token().child_token();
    let reader = {
        let stop = stop.clone();
        tokio::task::spawn_blocking(move || {
            let mut out = std::io::stdout().lock();
            seatflow_kafka::read_log(&query, &stop, |record| {
                use std::io::Write;
                let _ = writeln!(out, "{record}");
            })
        })
    };
    until_done_or_signalled("log reader", reader, &stop).await
}

async fn create_topics(config: &Config) -> anyhow::Result<()> {
    let brokers = config
        .kafka_brokers
        .as_deref()
        .context("kafka_brokers is not set (SEATFLOW_KAFKA_BROKERS=host:port,...)")?;
    let specs = config.topics().specs();
    let statuses = seatflow_kafka::create_topics(brokers, &specs).await?;
    for (spec, (_, status)) in specs.iter().zip(statuses) {
        let status = match status {
            seatflow_kafka::TopicStatus::Created => "created",
            seatflow_kafka::TopicStatus::AlreadyExists => "exists",
        };
        println!(
            "{status:8} {:40} partitions={} replication={} min.insync.replicas={} cleanup={:?}  ({})",
            spec.name,
            spec.partitions,
            spec.replication,
            spec.min_insync_replicas,
            spec.cleanup,
            spec.purpose
        );
    }
    Ok(())
}

/// Logs go to stderr: stdout is for what a command prints (`log dump` records, `replay`'s report).
/// Logs (and traces when configured) for the process; `main` drops the guard at the end, which
/// flushes the spans still buffered.
fn init_logging(format: &str) {
    *TRACING.lock() = Some(seatflow::observability::init(format));
}

static TRACING: parking_lot::Mutex<Option<seatflow::observability::TracingGuard>> =
    parking_lot::Mutex::new(None);
