//! Configuration, layered: defaults -> TOML file (`--config`) -> `SEATFLOW_*` environment ->
//! command line. Validated at start with a message naming the bad setting.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, bail};
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use seatflow_gateway::auth::AuthSettings;
use seatflow_gateway::limits::LimitSettings;
use serde::{Deserialize, Serialize};

/// Every setting's name; `SEATFLOW_<NAME>` sets it. Other `SEATFLOW_*` variables (the scripts'
/// own) are not settings and are left alone. Each is a field of the nested settings,
/// [`path_of`] says which.
pub const SETTINGS: &[&str] = &[
    "bind",
    "public_url",
    "max_seats_per_reservation",
    "max_seats_per_event",
    "max_connections",
    "idle_timeout_secs",
    "dedup_window_secs",
    "recent_outcomes",
    "data_dir",
    "max_batch",
    "queue_depth",
    "sync_writes",
    "waitlist_per_section",
    "cached_sections",
    "cached_quotas",
    "partitions",
    "kafka_partitions",
    "log_format",
    "instance_id",
    "metrics_bind",
    "kafka_brokers",
    "kafka_topic_prefix",
    "kafka_replication",
    "kafka_min_insync_replicas",
    "gateway_reply_partition",
    "gateway_linger_ms",
    "seat_processor_producers",
    "schema_registry_url",
    "database_url",
    "redis_url",
    "redis_key_prefix",
    "redis_outcome_ttl_secs",
    "auth_mode",
    "auth_allow_insecure",
    "auth_hmac_secret",
    "auth_public_keys",
    "auth_jwks",
    "auth_jwks_refresh_secs",
    "auth_issuer",
    "auth_audience",
    "auth_leeway_secs",
    "auth_roles_claim",
    "auth_trusted_proxies",
    "auth_admission_secret",
    "limits_enabled",
    "limits_user_writes_per_sec",
    "limits_user_writes_burst",
    "limits_user_reads_per_sec",
    "limits_user_reads_burst",
    "limits_address_writes_per_sec",
    "limits_address_writes_burst",
    "limits_address_reads_per_sec",
    "limits_address_reads_burst",
    "limits_events_per_organizer_per_hour",
    "limits_exempt",
    "limits_max_tracked",
    "limits_refusal_delay_max_ms",
    "webhooks_enabled",
    "webhooks_timeout_ms",
    "webhooks_first_retry_ms",
    "webhooks_max_retry_ms",
    "webhooks_give_up_after_secs",
    "webhooks_parallel",
    "webhooks_allow_private_urls",
];

/// Where the setting `SEATFLOW_<NAME>` goes in the nested settings (`http.bind`, ...).
/// `kafka_partitions` is the older name of `partitions`.
pub fn path_of(name: &str) -> Option<&'static str> {
    Some(match name {
        "bind" => "http.bind",
        "public_url" => "http.public_url",
        "max_seats_per_reservation" => "http.max_seats_per_reservation",
        "max_seats_per_event" => "http.max_seats_per_event",
        "max_connections" => "http.max_connections",
        "idle_timeout_secs" => "http.idle_timeout_secs",
        "dedup_window_secs" => "http.dedup_window_secs",
        "recent_outcomes" => "http.recent_outcomes",
        "data_dir" => "processor.data_dir",
        "max_batch" => "processor.max_batch",
        "queue_depth" => "processor.queue_depth",
        "sync_writes" => "processor.sync_writes",
        "waitlist_per_section" => "processor.waitlist_per_section",
        "cached_sections" => "processor.cached_sections",
        "cached_quotas" => "processor.cached_quotas",
        "partitions" | "kafka_partitions" => "partitions",
        "log_format" => "log_format",
        "instance_id" => "instance_id",
        "metrics_bind" => "metrics_bind",
        "auth_mode" => "auth.mode",
        "auth_allow_insecure" => "auth.allow_insecure",
        "auth_hmac_secret" => "auth.hmac_secret",
        "auth_admission_secret" => "auth.admission_secret",
        "auth_public_keys" => "auth.public_keys",
        "auth_jwks" => "auth.jwks",
        "auth_jwks_refresh_secs" => "auth.jwks_refresh_secs",
        "auth_issuer" => "auth.issuer",
        "auth_audience" => "auth.audience",
        "auth_leeway_secs" => "auth.leeway_secs",
        "auth_roles_claim" => "auth.roles_claim",
        "auth_trusted_proxies" => "auth.trusted_proxies",
        "limits_enabled" => "limits.enabled",
        "limits_user_writes_per_sec" => "limits.user_writes.per_sec",
        "limits_user_writes_burst" => "limits.user_writes.burst",
        "limits_user_reads_per_sec" => "limits.user_reads.per_sec",
        "limits_user_reads_burst" => "limits.user_reads.burst",
        "limits_address_writes_per_sec" => "limits.address_writes.per_sec",
        "limits_address_writes_burst" => "limits.address_writes.burst",
        "limits_address_reads_per_sec" => "limits.address_reads.per_sec",
        "limits_address_reads_burst" => "limits.address_reads.burst",
        "limits_events_per_organizer_per_hour" => "limits.events_per_organizer_per_hour",
        "limits_exempt" => "limits.exempt",
        "limits_max_tracked" => "limits.max_tracked",
        "limits_refusal_delay_max_ms" => "limits.refusal_delay_max_ms",
        "kafka_brokers" => "kafka.brokers",
        "kafka_topic_prefix" => "kafka.topic_prefix",
        "kafka_replication" => "kafka.replication",
        "kafka_min_insync_replicas" => "kafka.min_insync_replicas",
        "gateway_reply_partition" => "kafka.gateway_reply_partition",
        "gateway_linger_ms" => "kafka.gateway_linger_ms",
        "seat_processor_producers" => "kafka.seat_processor_producers",
        "schema_registry_url" => "kafka.schema_registry_url",
        "database_url" => "audit.database_url",
        "redis_url" => "redis.url",
        "redis_key_prefix" => "redis.key_prefix",
        "redis_outcome_ttl_secs" => "redis.outcome_ttl_secs",
        "webhooks_enabled" => "webhooks.enabled",
        "webhooks_timeout_ms" => "webhooks.timeout_ms",
        "webhooks_first_retry_ms" => "webhooks.first_retry_ms",
        "webhooks_max_retry_ms" => "webhooks.max_retry_ms",
        "webhooks_give_up_after_secs" => "webhooks.give_up_after_secs",
        "webhooks_parallel" => "webhooks.parallel",
        "webhooks_allow_private_urls" => "webhooks.allow_private_urls",
        _ => return None,
    })
}

/// Every setting, nested by the part of seatflow it is for. In a TOML file: `partitions`,
/// `log_format`, `instance_id`, `metrics_bind` at the top, the others in `[http]`,
/// `[processor]`, `[kafka]`, `[audit]`, `[redis]`, `[auth]`, `[limits]` and `[webhooks]`
/// tables.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Partitions of the log (`SEATFLOW_PARTITIONS`; `SEATFLOW_KAFKA_PARTITIONS` is the older
    /// name): embedded, the store's partitions and so its seat-worker threads (default: CPU
    /// cores; fixed for the life of a data directory); on Kafka, the partitions of seatflow's
    /// topics (default 20, the seed's).
    pub partitions: Option<u32>,
    /// `text` or `json` logs (`SEATFLOW_LOG_FORMAT`); levels from `RUST_LOG`.
    pub log_format: String,
    /// This process's stable identity (`SEATFLOW_INSTANCE_ID`; default: the host name), e.g. a
    /// StatefulSet pod name: the seat processor's transactional id, so a restarted process
    /// fences its previous incarnation.
    pub instance_id: String,
    /// Where the roles without an HTTP API serve `/metrics` and `/health/live`
    /// (`SEATFLOW_METRICS_BIND`). Unset: the seat processor on `127.0.0.1:9464`, the projector
    /// on `127.0.0.1:9465`, so both run on one host (loopback: set it for a scraper elsewhere).
    /// The gateway and the all-in-one serve them on `http.bind`.
    pub metrics_bind: Option<String>,
    pub http: HttpSettings,
    pub processor: ProcessorSettings,
    pub kafka: KafkaSettings,
    pub audit: AuditSettings,
    pub redis: RedisSettings,
    /// Who may call the API (`[auth]`, `SEATFLOW_AUTH_*`): docs/operations.md, "Security".
    pub auth: AuthSettings,
    /// How fast each user and client address may call (`[limits]`, `SEATFLOW_LIMITS_*`).
    pub limits: LimitSettings,
    /// Posting webhooks (`[webhooks]`, `SEATFLOW_WEBHOOKS_*`).
    pub webhooks: WebhookSettings,
}

/// Webhooks: who may be posted to and how deliveries are retried.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookSettings {
    /// Post deliveries (`SEATFLOW_WEBHOOKS_ENABLED`): the all-in-one process, or on Kafka the
    /// projector (which keeps webhooks in the audit database, so it needs `database_url`).
    /// Off: webhooks can still be registered; their deliveries are queued and wait.
    pub enabled: bool,
    /// Longest a receiver may take to answer a post, milliseconds (`SEATFLOW_WEBHOOKS_TIMEOUT_MS`).
    pub timeout_ms: u64,
    /// The wait after a delivery's first failed attempt, doubled after each further one,
    /// milliseconds (`SEATFLOW_WEBHOOKS_FIRST_RETRY_MS`).
    pub first_retry_ms: u64,
    /// The longest wait between two attempts, milliseconds (`SEATFLOW_WEBHOOKS_MAX_RETRY_MS`).
    pub max_retry_ms: u64,
    /// How long a delivery is retried before it is given up (FAILED), seconds
    /// (`SEATFLOW_WEBHOOKS_GIVE_UP_AFTER_SECS`; a day).
    pub give_up_after_secs: u64,
    /// Posts in flight to one webhook at once (`SEATFLOW_WEBHOOKS_PARALLEL`).
    pub parallel: usize,
    /// Accept webhook URLs on loopback, private and link-local addresses and `localhost`
    /// (`SEATFLOW_WEBHOOKS_ALLOW_PRIVATE_URLS`): off, an organizer cannot make the server post
    /// into its own network.
    pub allow_private_urls: bool,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        let retry = seatflow_projections::webhooks::plan::RetryPolicy::default();
        Self {
            enabled: true,
            timeout_ms: 10_000,
            first_retry_ms: retry.first_retry_ms,
            max_retry_ms: retry.max_retry_ms,
            give_up_after_secs: retry.give_up_after_ms / 1_000,
            parallel: 4,
            allow_private_urls: false,
        }
    }
}

impl WebhookSettings {
    /// How the senders post.
    pub fn send(&self) -> seatflow_projections::webhooks::deliver::SendSettings {
        seatflow_projections::webhooks::deliver::SendSettings {
            retry: seatflow_projections::webhooks::plan::RetryPolicy {
                first_retry_ms: self.first_retry_ms.max(1),
                max_retry_ms: self.max_retry_ms.max(1),
                give_up_after_ms: self.give_up_after_secs.saturating_mul(1_000),
            },
            timeout: std::time::Duration::from_millis(self.timeout_ms.max(1)),
            parallel: self.parallel.max(1),
            window: 64,
            allow_private: self.allow_private_urls,
        }
    }
}

/// The HTTP API and its command side.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    /// Where the HTTP API listens (`SEATFLOW_BIND`).
    pub bind: String,
    /// The API's address as its clients reach it, e.g. `https://tickets.example.com`
    /// (`SEATFLOW_PUBLIC_URL`): the OpenAPI document's server, which generated clients call by
    /// default. Unset: the bound address, or `http://localhost:<port>` when bound to all of them.
    pub public_url: Option<String>,
    /// Most seats in one reservation (`SEATFLOW_MAX_SEATS_PER_RESERVATION`).
    pub max_seats_per_reservation: u16,
    /// Most seats in one event, all sections together (`SEATFLOW_MAX_SEATS_PER_EVENT`): each
    /// costs memory for the life of the process.
    pub max_seats_per_event: u64,
    /// Most connections open at once (`SEATFLOW_MAX_CONNECTIONS`); one more is answered 503 and
    /// closed.
    pub max_connections: usize,
    /// How long a connection may stay without a request once its last answer was given (or it
    /// opened), seconds (`SEATFLOW_IDLE_TIMEOUT_SECS`): idle keep-alives and half-sent request
    /// heads end there.
    pub idle_timeout_secs: u64,
    /// How long a retry returns the first reservation, seconds (`SEATFLOW_DEDUP_WINDOW_SECS`).
    pub dedup_window_secs: u64,
    /// How many recent decisions a process keeps in memory, outcomes and de-duplication keys
    /// each (`SEATFLOW_RECENT_OUTCOMES`). Memory is bounded by it, not by the sale's history:
    /// older outcomes are read from the store that holds them all (the embedded store; Redis and
    /// the audit on Kafka).
    pub recent_outcomes: usize,
}

/// The embedded seat processor and its store.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ProcessorSettings {
    /// Where the store lives (`SEATFLOW_DATA_DIR`): the embedded log, or a Kafka seat
    /// processor's local state.
    pub data_dir: PathBuf,
    /// Most commands a worker decides and writes in one batch (`SEATFLOW_MAX_BATCH`).
    pub max_batch: usize,
    /// Commands waiting per worker before submitters wait (`SEATFLOW_QUEUE_DEPTH`).
    pub queue_depth: usize,
    /// fsync each batch before answering (`SEATFLOW_SYNC_WRITES`). Off: a batch survives a
    /// process crash but not a power loss.
    pub sync_writes: bool,
    /// Most requests waiting in one section's waitlist (`SEATFLOW_WAITLIST_PER_SECTION`);
    /// beyond it a request that asks to wait is REJECTED `waitlist_full`.
    pub waitlist_per_section: u32,
    /// About how many sections each partition owner keeps in memory between batches
    /// (`SEATFLOW_CACHED_SECTIONS`); the others are read from its store when asked for again.
    /// A section is a bit per seat.
    pub cached_sections: usize,
    /// About how many per-user quotas (events with `maxSeatsPerUser`) each partition owner
    /// keeps in memory between batches (`SEATFLOW_CACHED_QUOTAS`), ~400 bytes each.
    pub cached_quotas: usize,
}

impl ProcessorSettings {
    /// What each partition owner is set up with.
    pub fn partition(&self) -> seatflow_aggregates::PartitionSettings {
        seatflow_aggregates::PartitionSettings {
            waitlist_per_section: self.waitlist_per_section,
            cached_sections: self.cached_sections,
            cached_quotas: self.cached_quotas,
        }
    }
}

/// Kafka: set `brokers` and seatflow runs on Kafka instead of its embedded log.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaSettings {
    /// Bootstrap servers, `host:port,...` (`SEATFLOW_KAFKA_BROKERS`). Unset: the embedded
    /// default.
    pub brokers: Option<String>,
    /// Prepended to every topic name (`SEATFLOW_KAFKA_TOPIC_PREFIX`).
    pub topic_prefix: String,
    /// Replicas per partition (`SEATFLOW_KAFKA_REPLICATION`; production 3).
    pub replication: i32,
    /// Replicas that must have a write (`SEATFLOW_KAFKA_MIN_INSYNC_REPLICAS`; production 2).
    pub min_insync_replicas: i32,
    /// The `reservation-replies` partition this gateway reads (`SEATFLOW_GATEWAY_REPLY_PARTITION`;
    /// default: derived from `instance_id`). Gateways sharing one are correct, just busier.
    pub gateway_reply_partition: Option<i32>,
    /// How long a gateway gathers commands before it sends them to the broker, ms
    /// (`SEATFLOW_GATEWAY_LINGER_MS`, 0..=100). Under load, longer means fewer and larger
    /// produce requests (the broker's cost is mostly per request); alone, it is that much
    /// added to an answer. Measured in docs/BENCHMARK.md.
    pub gateway_linger_ms: u32,
    /// Transactional producers of a seat processor (`SEATFLOW_SEAT_PROCESSOR_PRODUCERS`,
    /// 1..=16): a batch that touches more than 6 partitions is split over up to this many
    /// transactions, each on its own producer and connection, flushed at once (D50; measured
    /// in docs/BENCHMARK.md).
    pub seat_processor_producers: u32,
    /// A Confluent-compatible Schema Registry, `http://host:port` (`SEATFLOW_SCHEMA_REGISTRY_URL`).
    /// Set: records on the public topics use the Confluent wire format with the registry's ids
    /// (schemas registered at start). Unset: single-object framing, no registry needed.
    pub schema_registry_url: Option<String>,
}

/// The Postgres audit.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuditSettings {
    /// `postgres://user:password@host:port/db` (`SEATFLOW_DATABASE_URL`). Set: `seatflow
    /// projector` (and `seatflow all`) write every outcome there. Unset: no audit.
    pub database_url: Option<Secret>,
}

/// The Redis of the shared read models.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RedisSettings {
    /// `redis://host:port/db` (`SEATFLOW_REDIS_URL`). Set: gateways keep de-duplication keys
    /// there (shared by all of them), cache event and seat-map answers, and look up outcomes
    /// there; `seatflow projector` (and `seatflow all` on Kafka) writes counts and outcomes
    /// there. Unset: each process keeps its own in memory.
    pub url: Option<Secret>,
    /// Prepended to every Redis key, `<prefix>:...` (`SEATFLOW_REDIS_KEY_PREFIX`).
    pub key_prefix: String,
    /// How long Redis keeps a reservation's outcome, seconds (`SEATFLOW_REDIS_OUTCOME_TTL_SECS`).
    pub outcome_ttl_secs: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            partitions: None,
            log_format: "text".into(),
            instance_id: default_instance_id(),
            metrics_bind: None,
            http: HttpSettings::default(),
            processor: ProcessorSettings::default(),
            kafka: KafkaSettings::default(),
            audit: AuditSettings::default(),
            redis: RedisSettings::default(),
            auth: AuthSettings::default(),
            limits: LimitSettings::default(),
            webhooks: WebhookSettings::default(),
        }
    }
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            // Loopback unless asked: the default `auth.mode = none` is for this machine only.
            bind: "127.0.0.1:8080".into(),
            public_url: None,
            max_seats_per_reservation: 8,
            max_seats_per_event: 200_000,
            max_connections: 20_000,
            idle_timeout_secs: 30,
            dedup_window_secs: 3600,
            recent_outcomes: seatflow_projections::DEFAULT_RECENT_OUTCOMES,
        }
    }
}

impl Default for ProcessorSettings {
    fn default() -> Self {
        let processor = seatflow_processor::ProcessorConfig::default();
        Self {
            data_dir: PathBuf::from("data"),
            max_batch: processor.max_batch,
            queue_depth: processor.queue_depth,
            sync_writes: processor.sync_writes,
            waitlist_per_section: processor.partition.waitlist_per_section,
            cached_sections: processor.partition.cached_sections,
            cached_quotas: processor.partition.cached_quotas,
        }
    }
}

impl Default for KafkaSettings {
    fn default() -> Self {
        Self {
            brokers: None,
            topic_prefix: String::new(),
            replication: 3,
            min_insync_replicas: 2,
            gateway_reply_partition: None,
            gateway_linger_ms: 5,
            seat_processor_producers: 4,
            schema_registry_url: None,
        }
    }
}

impl Default for RedisSettings {
    fn default() -> Self {
        Self {
            url: None,
            key_prefix: "seatflow".into(),
            outcome_ttl_secs: 86_400,
        }
    }
}

/// Partitions of seatflow's topics unless configured: the seed's.
const KAFKA_PARTITIONS: u32 = 20;

fn default_instance_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "seatflow-0".to_owned())
}

/// The roles that serve their metrics on `metrics_bind` (they have no HTTP API).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsRole {
    SeatProcessor,
    Projector,
}

/// Settings given on the command line (highest precedence).
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub bind: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub partitions: Option<u32>,
}

impl Overrides {
    /// The given ones, each at its place in the nested settings.
    fn provider(&self) -> Figment {
        let mut given = Figment::new();
        if let Some(bind) = &self.bind {
            given = given.merge(Serialized::default("http.bind", bind));
        }
        if let Some(dir) = &self.data_dir {
            given = given.merge(Serialized::default("processor.data_dir", dir));
        }
        if let Some(partitions) = self.partitions {
            given = given.merge(Serialized::default("partitions", partitions));
        }
        given
    }
}

impl Config {
    /// Load the layers and validate.
    pub fn load(file: Option<&std::path::Path>, overrides: &Overrides) -> anyhow::Result<Self> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            if !file.exists() {
                bail!("config file {} does not exist", file.display());
            }
            figment = figment.merge(Toml::file(file));
        }
        let both = ["SEATFLOW_PARTITIONS", "SEATFLOW_KAFKA_PARTITIONS"].map(std::env::var);
        if let [Ok(new), Ok(old)] = &both
            && new != old
        {
            bail!(
                "SEATFLOW_PARTITIONS ({new}) and SEATFLOW_KAFKA_PARTITIONS ({old}, its older name) disagree; set one"
            );
        }
        let config: Config = figment
            .merge(
                // Names arrive as written (`BIND`); the table is in lower case.
                Env::prefixed("SEATFLOW_").filter_map(|name| {
                    path_of(&name.as_str().to_ascii_lowercase()).map(Into::into)
                }),
            )
            .merge(overrides.provider())
            .extract()
            .context("invalid configuration")?;
        config.validate()?;
        Ok(config)
    }

    /// The embedded default on `data_dir` with `partitions`, listening on a free loopback port:
    /// a process of its own for a test or a tool.
    pub fn embedded(data_dir: &std::path::Path, partitions: u32) -> Self {
        Self {
            partitions: Some(partitions),
            http: HttpSettings {
                bind: "127.0.0.1:0".into(),
                ..HttpSettings::default()
            },
            processor: ProcessorSettings {
                data_dir: data_dir.to_owned(),
                ..ProcessorSettings::default()
            },
            ..Self::default()
        }
    }

    /// Whether seatflow runs on Kafka (`kafka.brokers` set) rather than its embedded log.
    pub fn on_kafka(&self) -> bool {
        self.kafka.brokers.is_some()
    }

    /// The partitions of the log this runtime uses (see [`Config::partitions`]).
    pub fn partitions(&self) -> u32 {
        self.partitions.unwrap_or_else(|| {
            if self.on_kafka() {
                KAFKA_PARTITIONS
            } else {
                seatflow_processor::ProcessorConfig::default().partitions
            }
        })
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        self.auth
            .check(self.bind_addr()?)
            .map_err(anyhow::Error::msg)?;
        self.limits.check().map_err(anyhow::Error::msg)?;
        let http = &self.http;
        if let Some(url) = &http.public_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            bail!("http.public_url must start with http:// or https:// (got {url:?})");
        }
        let most = if self.on_kafka() { 10_000 } else { 1_024 };
        if !(1..=most).contains(&self.partitions()) {
            bail!(
                "partitions must be between 1 and {most} (got {})",
                self.partitions()
            );
        }
        if self.processor.max_batch == 0 {
            bail!("processor.max_batch must be at least 1");
        }
        if self.processor.queue_depth == 0 {
            bail!("processor.queue_depth must be at least 1");
        }
        if !(1..=1_000_000).contains(&http.max_connections) {
            bail!(
                "http.max_connections must be between 1 and 1000000 (got {})",
                http.max_connections
            );
        }
        if !(1..=3600).contains(&http.idle_timeout_secs) {
            bail!(
                "http.idle_timeout_secs must be between 1 and 3600 (got {})",
                http.idle_timeout_secs
            );
        }
        if !(1..=10_000_000).contains(&http.max_seats_per_event) {
            bail!(
                "http.max_seats_per_event must be between 1 and 10000000 (got {})",
                http.max_seats_per_event
            );
        }
        if !(1..=64).contains(&http.max_seats_per_reservation) {
            bail!(
                "http.max_seats_per_reservation must be between 1 and 64 (got {})",
                http.max_seats_per_reservation
            );
        }
        if http.dedup_window_secs == 0 {
            bail!("http.dedup_window_secs must be at least 1");
        }
        if !(1_000..=100_000_000).contains(&http.recent_outcomes) {
            bail!(
                "http.recent_outcomes must be between 1000 and 100000000 (got {})",
                http.recent_outcomes
            );
        }
        let kafka = &self.kafka;
        if kafka.replication < 1 {
            bail!(
                "kafka.replication must be at least 1 (got {})",
                kafka.replication
            );
        }
        if !(1..=kafka.replication).contains(&kafka.min_insync_replicas) {
            bail!(
                "kafka.min_insync_replicas must be between 1 and kafka.replication ({}) (got {})",
                kafka.replication,
                kafka.min_insync_replicas
            );
        }
        if kafka.gateway_linger_ms > 100 {
            bail!(
                "kafka.gateway_linger_ms must be between 0 and 100 (got {})",
                kafka.gateway_linger_ms
            );
        }
        if !(1..=16).contains(&kafka.seat_processor_producers) {
            bail!(
                "kafka.seat_processor_producers must be between 1 and 16 (got {})",
                kafka.seat_processor_producers
            );
        }
        if kafka
            .brokers
            .as_deref()
            .is_some_and(|b| b.trim().is_empty())
        {
            bail!("kafka.brokers is set but empty");
        }
        if let Some(url) = &kafka.schema_registry_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            bail!("kafka.schema_registry_url must start with http:// or https:// (got {url:?})");
        }
        if let Some(url) = self.audit.database_url.as_ref().map(Secret::expose)
            && !(url.starts_with("postgres://") || url.starts_with("postgresql://"))
        {
            bail!("audit.database_url must start with postgres:// (got a URL of another kind)");
        }
        let redis = &self.redis;
        if let Some(url) = redis.url.as_ref().map(Secret::expose)
            && !(url.starts_with("redis://") || url.starts_with("rediss://"))
        {
            bail!("redis.url must start with redis:// or rediss:// (got a URL of another kind)");
        }
        if redis.key_prefix.is_empty() || redis.key_prefix.contains(char::is_whitespace) {
            bail!("redis.key_prefix must be a non-empty word without spaces");
        }
        if redis.outcome_ttl_secs == 0 {
            bail!("redis.outcome_ttl_secs must be at least 1");
        }
        let webhooks = &self.webhooks;
        if !(1..=60_000).contains(&webhooks.timeout_ms) {
            bail!("webhooks.timeout_ms must be between 1 and 60000");
        }
        if webhooks.first_retry_ms == 0 || webhooks.max_retry_ms < webhooks.first_retry_ms {
            bail!("webhooks.first_retry_ms must be at least 1 and at most webhooks.max_retry_ms");
        }
        if !(1..=64).contains(&webhooks.parallel) {
            bail!("webhooks.parallel must be between 1 and 64");
        }
        if let Some(bind) = &self.metrics_bind {
            bind.parse::<SocketAddr>().with_context(|| {
                format!("metrics_bind must be an address like 0.0.0.0:9464 (got {bind:?})")
            })?;
        }
        if !matches!(self.log_format.as_str(), "text" | "json") {
            bail!(
                "log_format must be text or json (got {:?})",
                self.log_format
            );
        }
        Ok(())
    }

    /// Where `role` serves its metrics: `metrics_bind`, or the role's own default port.
    pub fn metrics_addr(&self, role: MetricsRole) -> anyhow::Result<SocketAddr> {
        let default = match role {
            MetricsRole::SeatProcessor => "127.0.0.1:9464",
            MetricsRole::Projector => "127.0.0.1:9465",
        };
        let bind = self.metrics_bind.as_deref().unwrap_or(default);
        bind.parse()
            .with_context(|| format!("metrics_bind must be an address (got {bind:?})"))
    }

    /// The API's address for clients (`http.public_url`), given the port it listens on.
    pub fn public_url(&self, port: u16) -> String {
        if let Some(url) = &self.http.public_url {
            return url.trim_end_matches('/').to_owned();
        }
        match self.bind_addr() {
            Ok(addr) if !addr.ip().is_unspecified() => {
                format!("http://{}", SocketAddr::new(addr.ip(), port))
            }
            _ => format!("http://localhost:{port}"),
        }
    }

    pub fn bind_addr(&self) -> anyhow::Result<SocketAddr> {
        self.http.bind.parse().with_context(|| {
            format!(
                "http.bind must be an address like 0.0.0.0:8080 (got {:?})",
                self.http.bind
            )
        })
    }

    /// This gateway's reply partition.
    pub fn reply_partition(&self) -> i32 {
        self.kafka.gateway_reply_partition.unwrap_or_else(|| {
            let hash = seatflow_aggregates::murmur2(self.instance_id.as_bytes()) & 0x7fff_ffff;
            (hash % self.partitions().max(1)) as i32
        })
    }

    pub fn topics(&self) -> seatflow_kafka::TopicsConfig {
        seatflow_kafka::TopicsConfig {
            prefix: self.kafka.topic_prefix.clone(),
            partitions: i32::try_from(self.partitions()).unwrap_or(i32::MAX),
            replication: self.kafka.replication,
            min_insync_replicas: self.kafka.min_insync_replicas,
        }
    }

    /// The Redis read models, if configured.
    pub fn redis(&self) -> anyhow::Result<Option<seatflow_projections::redis::RedisReads>> {
        self.redis
            .url
            .as_ref()
            .map(Secret::expose)
            .map(|url| {
                seatflow_projections::redis::RedisReads::new(
                    url,
                    &self.redis.key_prefix,
                    std::time::Duration::from_secs(self.redis.outcome_ttl_secs),
                )
            })
            .transpose()
            .context("cannot set up the Redis pool")
    }

    pub fn processor(&self) -> seatflow_processor::ProcessorConfig {
        seatflow_processor::ProcessorConfig {
            partitions: self.partitions(),
            max_batch: self.processor.max_batch,
            queue_depth: self.processor.queue_depth,
            sync_writes: self.processor.sync_writes,
            partition: self.processor.partition(),
        }
    }
}

/// A setting that carries a credential (a URL with a password). Debug output and logs show it
/// with the password as `***`; only [`Secret::expose`] gives the value, at the one place that
/// connects with it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value itself, to connect with. Never to be logged.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    /// `scheme://user:***@host/...`: enough to tell which server, never the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Some((scheme, rest)) = self.0.split_once("://") else {
            return f.write_str("\"***\"");
        };
        let shown = match rest.rsplit_once('@') {
            Some((user_info, host)) => match user_info.split_once(':') {
                Some((user, _password)) => format!("{scheme}://{user}:***@{host}"),
                None => format!("{scheme}://{user_info}@{host}"),
            },
            None => format!("{scheme}://{rest}"),
        };
        write!(f, "{shown:?}")
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail's closure signature, not ours
mod tests {
    use super::*;

    #[test]
    fn a_password_in_a_url_never_prints() {
        let config = Config {
            audit: AuditSettings {
                database_url: Some(Secret::new("postgres://seatflow:hunter2@db:5432/seatflow")),
            },
            redis: RedisSettings {
                url: Some(Secret::new("rediss://:s3cret@cache:6380/0")),
                ..RedisSettings::default()
            },
            ..Config::default()
        };
        let printed = format!("{config:?} {config:#?}");
        assert!(
            !printed.contains("hunter2") && !printed.contains("s3cret"),
            "{printed}"
        );
        assert!(
            printed.contains("postgres://seatflow:***@db:5432/seatflow"),
            "{printed}"
        );
        assert!(printed.contains("rediss://:***@cache:6380/0"), "{printed}");
        assert_eq!(
            config.audit.database_url.as_ref().map(Secret::expose),
            Some("postgres://seatflow:hunter2@db:5432/seatflow")
        );
    }

    /// Every field's dotted path, `http.bind`, ...
    fn paths(value: &serde_json::Value, prefix: &str, out: &mut Vec<String>) {
        for (key, value) in value.as_object().expect("an object") {
            let path = format!("{prefix}{key}");
            if value.is_object() {
                paths(value, &format!("{path}."), out);
            } else {
                out.push(path);
            }
        }
    }

    #[test]
    fn every_setting_can_come_from_the_environment() {
        let mut fields = Vec::new();
        paths(
            &serde_json::to_value(Config::default()).expect("serializes"),
            "",
            &mut fields,
        );
        fields.sort_unstable();
        let mut settings: Vec<String> = SETTINGS
            .iter()
            .map(|name| path_of(name).expect("a path").to_owned())
            .collect();
        settings.sort_unstable();
        settings.dedup();
        assert_eq!(fields, settings);
    }

    #[test]
    fn command_line_beats_environment_beats_file_beats_defaults() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "seatflow.toml",
                "partitions = 3\n[http]\nbind = \"127.0.0.1:1\"\nmax_seats_per_reservation = 4\n\
                 [processor]\nmax_batch = 7\n[redis]\nkey_prefix = \"file\"\n",
            )?;
            jail.set_env("SEATFLOW_PARTITIONS", "5");
            jail.set_env("SEATFLOW_BIND", "127.0.0.1:2");
            jail.set_env("SEATFLOW_REDIS_KEY_PREFIX", "env");
            jail.set_env("SEATFLOW_DATABASE_URL", "postgres://db/audit");
            let overrides = Overrides {
                bind: Some("127.0.0.1:3".into()),
                ..Overrides::default()
            };
            let config = Config::load(Some(std::path::Path::new("seatflow.toml")), &overrides)
                .expect("loads");
            assert_eq!(config.processor.max_batch, 7);
            assert_eq!(config.http.max_seats_per_reservation, 4);
            assert_eq!(config.partitions(), 5);
            assert_eq!(config.http.bind, "127.0.0.1:3");
            assert_eq!(config.redis.key_prefix, "env");
            assert_eq!(
                config.audit.database_url.as_ref().map(Secret::expose),
                Some("postgres://db/audit")
            );
            assert!(!config.on_kafka());
            Ok(())
        });
    }

    #[test]
    fn partitions_is_one_setting_with_a_default_per_runtime() {
        figment::Jail::expect_with(|jail| {
            let embedded = Config::load(None, &Overrides::default()).expect("loads");
            assert_eq!(
                embedded.partitions(),
                seatflow_processor::ProcessorConfig::default().partitions
            );
            jail.set_env("SEATFLOW_KAFKA_BROKERS", "localhost:9092");
            let kafka = Config::load(None, &Overrides::default()).expect("loads");
            assert_eq!(kafka.partitions(), 20);
            assert_eq!(kafka.topics().partitions, 20);
            // The older name still works; two names that disagree are refused.
            jail.set_env("SEATFLOW_KAFKA_PARTITIONS", "4");
            let old = Config::load(None, &Overrides::default()).expect("loads");
            assert_eq!(old.partitions(), 4);
            jail.set_env("SEATFLOW_PARTITIONS", "6");
            let error = Config::load(None, &Overrides::default()).expect_err("ambiguous");
            assert!(
                error.to_string().contains("SEATFLOW_KAFKA_PARTITIONS"),
                "{error}"
            );
            Ok(())
        });
    }

    #[test]
    fn a_bad_setting_is_named() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("SEATFLOW_PARTITIONS", "0");
            let error = Config::load(None, &Overrides::default()).expect_err("rejected");
            assert!(error.to_string().contains("partitions"), "{error}");
            jail.set_env("SEATFLOW_PARTITIONS", "2");
            jail.set_env("SEATFLOW_GATEWAY_LINGER_MS", "500");
            let error = Config::load(None, &Overrides::default()).expect_err("rejected");
            assert!(error.to_string().contains("gateway_linger_ms"), "{error}");
            jail.set_env("SEATFLOW_GATEWAY_LINGER_MS", "5");
            jail.set_env("SEATFLOW_SEAT_PROCESSOR_PRODUCERS", "0");
            let error = Config::load(None, &Overrides::default()).expect_err("rejected");
            assert!(
                error.to_string().contains("seat_processor_producers"),
                "{error}"
            );
            jail.set_env("SEATFLOW_SEAT_PROCESSOR_PRODUCERS", "4");
            jail.create_file("typo.toml", "[http]\nmax_seats_per_reservations = 2\n")?;
            let error = Config::load(
                Some(std::path::Path::new("typo.toml")),
                &Overrides::default(),
            )
            .expect_err("typo rejected");
            assert!(
                format!("{error:#}").contains("max_seats_per_reservations"),
                "{error:#}"
            );
            Ok(())
        });
    }

    #[test]
    fn the_roles_without_http_serve_metrics_on_ports_of_their_own() {
        let config = Config::default();
        let processor = config
            .metrics_addr(MetricsRole::SeatProcessor)
            .expect("addr");
        let projector = config.metrics_addr(MetricsRole::Projector).expect("addr");
        assert_ne!(processor, projector, "both run on one host");
        assert_eq!(processor.port(), 9464);
        assert_eq!(projector.port(), 9465);
        let config = Config {
            metrics_bind: Some("127.0.0.1:9999".into()),
            ..Config::default()
        };
        assert_eq!(
            config
                .metrics_addr(MetricsRole::Projector)
                .expect("addr")
                .port(),
            9999
        );
        let bad = Config {
            metrics_bind: Some("nowhere".into()),
            ..Config::default()
        };
        assert!(format!("{:#}", bad.validate().expect_err("refused")).contains("metrics_bind"));
    }
}
