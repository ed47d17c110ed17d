//! The `seatflow` command: parse the command line, set up logging, run what is asked.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use seatflow::bench::{self, BenchArgs, CompareArgs, ShowArgs};
use seatflow::roles::{self, LogRequest};
use seatflow::{Config, MetricsRole, Overrides};

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
    /// Address of the HTTP API (default 127.0.0.1:8080).
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
    /// `kafka.brokers` set, a gateway and a seat processor on Kafka.
    All,
    /// The HTTP gateway on Kafka (needs `kafka.brokers`).
    Gateway,
    /// The seat processor on Kafka: decides the commands of the partitions the group assigns
    /// it, exactly once (needs `kafka.brokers`; state in `data_dir`).
    SeatProcessor,
    /// Project the log from Kafka into the Postgres audit table (with `database_url`; applies
    /// the migrations first) and into the Redis read models (with `redis_url`).
    Projector,
    /// Apply the database migrations of `sql/` (needs `audit.database_url`). Idempotent.
    Migrate,
    /// Move audit rows older than a cut-off to `reservation_archive` (needs `audit.database_url`).
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
    /// Read a topic, every record decoded to one line of JSON (needs `kafka.brokers`).
    Log {
        #[command(subcommand)]
        action: LogAction,
    },
    /// Load a running seatflow with a flash-sale spike and verify the sale; `bench compare`
    /// puts two runs side by side.
    Bench(Box<BenchCommand>),
    /// Print a JWT signed with the configured `auth.hmac_secret` (with `auth.issuer` and
    /// `auth.audience` when set): for local use and scripts.
    Token {
        /// The user (`sub`).
        #[arg(long)]
        sub: String,
        /// Roles, comma-separated (`organizer`, `admin`).
        #[arg(long, value_delimiter = ',')]
        roles: Vec<String>,
        /// How long it is valid, e.g. `1h`, `15m`.
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        ttl: std::time::Duration,
    },
    /// Manage seatflow's Kafka topics (needs `kafka.brokers`).
    Topics {
        #[command(subcommand)]
        action: TopicsAction,
    },
}

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
struct BenchCommand {
    #[command(subcommand)]
    action: Option<BenchAction>,
    #[command(flatten)]
    args: BenchArgs,
}

#[derive(Debug, Subcommand)]
enum BenchAction {
    /// Two runs written by `seatflow bench --json FILE`, side by side: printed, and drawn on
    /// one page with `--report`.
    Compare(CompareArgs),
    /// A run written by `seatflow bench --json FILE`, printed again, and drawn with `--report`
    /// or `--charts`.
    Show(ShowArgs),
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
        Some(Role::Bench(command)) => match *command {
            BenchCommand {
                action: Some(BenchAction::Compare(args)),
                ..
            } => bench::compare(&args),
            BenchCommand {
                action: Some(BenchAction::Show(args)),
                ..
            } => bench::show(&args),
            BenchCommand { args, .. } => {
                init_logging("text");
                runtime.block_on(bench::run(args)).map(drop)
            }
        },
        Some(Role::Token {
            ref sub,
            ref roles,
            ttl,
        }) => {
            let config = Config::load(cli.config.as_deref(), &overrides(&cli))?;
            let secret = config.auth.hmac_secret.as_ref().context(
                "seatflow token signs with auth.hmac_secret (SEATFLOW_AUTH_HMAC_SECRET): set it",
            )?;
            let signer = seatflow_gateway::auth::token::Signer::new(
                secret.expose(),
                config.auth.issuer.clone(),
                config.auth.audience.clone(),
            )?;
            println!("{}", signer.sign(sub, roles, ttl)?);
            Ok(())
        }
        Some(Role::Topics {
            action: TopicsAction::Create,
        }) => {
            init_logging("text");
            let config = Config::load(cli.config.as_deref(), &overrides(&cli))?;
            runtime.block_on(roles::create_topics(&config))
        }
        Some(Role::Projector) => {
            let config = Config::load(cli.config.as_deref(), &overrides(&cli))?;
            init_logging(&config.log_format);
            runtime.block_on(async move {
                seatflow::serve_metrics(&config, MetricsRole::Projector).await?;
                roles::run_projector(config).await
            })
        }
        Some(Role::Migrate) => {
            init_logging("text");
            let config = Config::load(cli.config.as_deref(), &overrides(&cli))?;
            runtime.block_on(roles::migrate(&config))
        }
        Some(Role::Archive { older_than }) => {
            init_logging("text");
            let config = Config::load(cli.config.as_deref(), &overrides(&cli))?;
            runtime.block_on(roles::archive(&config, older_than))
        }
        Some(Role::Replay {
            ref projection,
            ref into,
            verify,
        }) => {
            init_logging("text");
            let config = Config::load(cli.config.as_deref(), &overrides(&cli))?;
            if projection == "redis" {
                runtime.block_on(roles::replay_redis(config, into.clone(), verify))
            } else {
                runtime.block_on(roles::replay_audit(config, into.clone(), verify))
            }
        }
        Some(Role::Log { ref action }) => {
            init_logging("text");
            let config = Config::load(cli.config.as_deref(), &overrides(&cli))?;
            let (args, follow) = match action {
                LogAction::Dump(args) => (args, false),
                LogAction::Tail(args) => (args, true),
            };
            let request = LogRequest {
                topic: args.topic.clone(),
                partition: args.partition,
                from: args.from.clone(),
                limit: args.limit,
            };
            runtime.block_on(roles::read_log(config, &request, follow))
        }
        Some(Role::SeatProcessor) => {
            let config = Config::load(cli.config.as_deref(), &overrides(&cli))?;
            init_logging(&config.log_format);
            runtime.block_on(async move {
                seatflow::serve_metrics(&config, MetricsRole::SeatProcessor).await?;
                roles::run_seat_processor(config).await
            })
        }
        Some(Role::Gateway) => {
            let config = Config::load(cli.config.as_deref(), &overrides(&cli))?;
            init_logging(&config.log_format);
            runtime.block_on(roles::run_gateway(config))
        }
        None | Some(Role::All) => {
            let config = Config::load(cli.config.as_deref(), &overrides(&cli))?;
            init_logging(&config.log_format);
            if config.on_kafka() {
                runtime.block_on(roles::all_on_kafka(config))
            } else {
                runtime.block_on(roles::run_embedded(config))
            }
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

/// Logs go to stderr: stdout is for what a command prints (`log dump` records, `replay`'s report).
/// Logs (and traces when configured) for the process; `main` drops the guard at the end, which
/// flushes the spans still buffered.
fn init_logging(format: &str) {
    *TRACING.lock() = Some(seatflow::observability::init(format));
}

static TRACING: parking_lot::Mutex<Option<seatflow::observability::TracingGuard>> =
    parking_lot::Mutex::new(None);
