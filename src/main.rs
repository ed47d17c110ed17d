//! The `seatflow` command: parse the command line, set up logging, run what is asked.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use seatflow::bench::{self, BenchArgs};
use seatflow::{App, Config, Overrides};
use tracing_subscriber::EnvFilter;

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
    /// Load a running seatflow with a flash-sale spike and verify the sale.
    Bench(BenchArgs),
    /// Manage seatflow's Kafka topics (needs `kafka_brokers`).
    Topics {
        #[command(subcommand)]
        action: TopicsAction,
    },
}

#[derive(Debug, Subcommand)]
enum TopicsAction {
    /// Create every topic that is missing, with its partitions, replication, min ISR and
    /// cleanup policy; check the partition count of those that exist. Idempotent.
    Create,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let _ = rlimit::increase_nofile_limit(u64::MAX);
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
        Some(Role::SeatProcessor) => {
            let config = Config::load(cli.config.as_deref(), &overrides(&cli))?;
            init_logging(&config.log_format);
            runtime.block_on(run_seat_processor(config))
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
                let processor = config.clone();
                return runtime.block_on(async move {
                    let app = App::build(config).await?;
                    tracing::info!(port = app.port(), "all roles on Kafka; Swagger UI at /docs");
                    tokio::try_join!(run_seat_processor(processor), app.run_until_stopped())
                        .map(drop)
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
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let worker = {
        let stop = stop.clone();
        tokio::task::spawn_blocking(move || seatflow_kafka::run_seat_processor(&processor, stop))
    };
    tokio::pin!(worker);
    tokio::select! {
        finished = &mut worker => return Ok(finished.context("seat processor panicked")??),
        _ = seatflow::shutdown_signal() => {}
    }
    stop.store(true, std::sync::atomic::Ordering::Release);
    worker.await.context("seat processor panicked")??;
    Ok(())
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

fn init_logging(format: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}
