//! Configuration, layered: defaults -> TOML file (`--config`) -> `SEATFLOW_*` environment ->
//! command line. Validated at start with a message naming the bad setting.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, bail};
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// Every setting's name; `SEATFLOW_<NAME>` sets it. Other `SEATFLOW_*` variables (the scripts'
/// own) are not settings and are left alone.
pub const SETTINGS: &[&str] = &[
    "bind",
    "public_url",
    "data_dir",
    "partitions",
    "max_batch",
    "queue_depth",
    "sync_writes",
    "max_seats_per_reservation",
    "dedup_window_secs",
    "recent_outcomes",
    "log_format",
    "kafka_brokers",
    "kafka_topic_prefix",
    "kafka_partitions",
    "kafka_replication",
    "kafka_min_insync_replicas",
    "instance_id",
    "gateway_reply_partition",
    "schema_registry_url",
    "database_url",
    "redis_url",
    "redis_key_prefix",
    "redis_outcome_ttl_secs",
    "metrics_bind",
];

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the HTTP API listens (`SEATFLOW_BIND`).
    pub bind: String,
    /// The API's address as its clients reach it, e.g. `https://tickets.example.com`
    /// (`SEATFLOW_PUBLIC_URL`): the OpenAPI document's server, which generated clients call by
    /// default. Unset: the bound address, or `http://localhost:<port>` when bound to all of them.
    pub public_url: Option<String>,
    /// Where the embedded store lives (`SEATFLOW_DATA_DIR`).
    pub data_dir: PathBuf,
    /// Partitions, and so seat-worker threads (`SEATFLOW_PARTITIONS`); default: CPU cores.
    /// Fixed for the life of a data directory.
    pub partitions: u32,
    /// Most commands a worker decides and writes in one batch (`SEATFLOW_MAX_BATCH`).
    pub max_batch: usize,
    /// Commands waiting per worker before submitters wait (`SEATFLOW_QUEUE_DEPTH`).
    pub queue_depth: usize,
    /// fsync each batch before answering (`SEATFLOW_SYNC_WRITES`). Off: a batch survives a
    /// process crash but not a power loss.
    pub sync_writes: bool,
    /// Most seats in one reservation (`SEATFLOW_MAX_SEATS_PER_RESERVATION`).
    pub max_seats_per_reservation: u16,
    /// How long a retry returns the first reservation, seconds (`SEATFLOW_DEDUP_WINDOW_SECS`).
    pub dedup_window_secs: u64,
    /// How many recent decisions a process keeps in memory, outcomes and de-duplication keys
    /// each (`SEATFLOW_RECENT_OUTCOMES`). Memory is bounded by it, not by the sale's history:
    /// older outcomes are read from the store that holds them all (the embedded store; Redis and
    /// the audit on Kafka).
    pub recent_outcomes: usize,
    /// `text` or `json` logs (`SEATFLOW_LOG_FORMAT`); levels from `RUST_LOG`.
    pub log_format: String,
    /// Kafka bootstrap servers, `host:port,...` (`SEATFLOW_KAFKA_BROKERS`). Unset: the
    /// embedded default.
    pub kafka_brokers: Option<String>,
    /// Prepended to every topic name (`SEATFLOW_KAFKA_TOPIC_PREFIX`).
    pub kafka_topic_prefix: String,
    /// Partitions of seatflow's topics (`SEATFLOW_KAFKA_PARTITIONS`; the seed: 20).
    pub kafka_partitions: i32,
    /// Replicas per partition (`SEATFLOW_KAFKA_REPLICATION`; production 3).
    pub kafka_replication: i32,
    /// Replicas that must have a write (`SEATFLOW_KAFKA_MIN_INSYNC_REPLICAS`; production 2).
    pub kafka_min_insync_replicas: i32,
    /// This process's stable identity (`SEATFLOW_INSTANCE_ID`; default: the host name), e.g. a
    /// StatefulSet pod name: the seat processor's transactional id, so a restarted process
    /// fences its previous incarnation.
    pub instance_id: String,
    /// The `reservation-replies` partition this gateway reads (`SEATFLOW_GATEWAY_REPLY_PARTITION`;
    /// default: derived from `instance_id`). Gateways sharing one are correct, just busier.
    pub gateway_reply_partition: Option<i32>,
    /// A Confluent-compatible Schema Registry, `http://host:port` (`SEATFLOW_SCHEMA_REGISTRY_URL`).
    /// Set: records on the public topics use the Confluent wire format with the registry's ids
    /// (schemas registered at start). Unset: single-object framing, no registry needed.
    pub schema_registry_url: Option<String>,
    /// The Postgres of the audit projection, `postgres://user:password@host:port/db`
    /// (`SEATFLOW_DATABASE_URL`). Set: `seatflow projector` (and `seatflow all` on Kafka) write
    /// every outcome there. Unset: no audit.
    pub database_url: Option<Secret>,
    /// The Redis of the shared read models, `redis://host:port/db` (`SEATFLOW_REDIS_URL`). Set:
    /// gateways keep de-duplication keys there (shared by all of them), cache event and seat-map
    /// answers, and look up outcomes there; `seatflow projector` (and `seatflow all` on Kafka)
    /// writes counts and outcomes there. Unset: each process keeps its own in memory.
    pub redis_url: Option<Secret>,
    /// Prepended to every Redis key, `<prefix>:...` (`SEATFLOW_REDIS_KEY_PREFIX`).
    pub redis_key_prefix: String,
    /// How long Redis keeps a reservation's outcome, seconds (`SEATFLOW_REDIS_OUTCOME_TTL_SECS`).
    pub redis_outcome_ttl_secs: u64,
    /// Where the roles without an HTTP API serve `/metrics` and `/health/live`
    /// (`SEATFLOW_METRICS_BIND`). Unset: the seat processor on `0.0.0.0:9464`, the projector on
    /// `0.0.0.0:9465`, so both run on one host. The gateway and the all-in-one serve them on
    /// `bind`.
    pub metrics_bind: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        let processor = seatflow_processor::ProcessorConfig::default();
        Self {
            bind: "0.0.0.0:8080".into(),
            public_url: None,
            data_dir: PathBuf::from("data"),
            partitions: processor.partitions,
            max_batch: processor.max_batch,
            queue_depth: processor.queue_depth,
            sync_writes: processor.sync_writes,
            max_seats_per_reservation: 8,
            dedup_window_secs: 3600,
            recent_outcomes: seatflow_projections::DEFAULT_RECENT_OUTCOMES,
            log_format: "text".into(),
            kafka_brokers: None,
            kafka_topic_prefix: String::new(),
            kafka_partitions: 20,
            kafka_replication: 3,
            kafka_min_insync_replicas: 2,
            instance_id: default_instance_id(),
            gateway_reply_partition: None,
            schema_registry_url: None,
            database_url: None,
            redis_url: None,
            redis_key_prefix: "seatflow".into(),
            redis_outcome_ttl_secs: 86_400,
            metrics_bind: None,
        }
    }
}

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
#[derive(Debug, Default, Clone, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partitions: Option<u32>,
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
        let config: Config = figment
            .merge(Env::prefixed("SEATFLOW_").only(SETTINGS))
            .merge(Serialized::defaults(overrides))
            .extract()
            .context("invalid configuration")?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        self.bind_addr()?;
        if let Some(url) = &self.public_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            bail!("public_url must start with http:// or https:// (got {url:?})");
        }
        if !(1..=1024).contains(&self.partitions) {
            bail!(
                "partitions must be between 1 and 1024 (got {})",
                self.partitions
            );
        }
        if self.max_batch == 0 {
            bail!("max_batch must be at least 1");
        }
        if self.queue_depth == 0 {
            bail!("queue_depth must be at least 1");
        }
        if !(1..=64).contains(&self.max_seats_per_reservation) {
            bail!(
                "max_seats_per_reservation must be between 1 and 64 (got {})",
                self.max_seats_per_reservation
            );
        }
        if self.dedup_window_secs == 0 {
            bail!("dedup_window_secs must be at least 1");
        }
        if !(1_000..=100_000_000).contains(&self.recent_outcomes) {
            bail!(
                "recent_outcomes must be between 1000 and 100000000 (got {})",
                self.recent_outcomes
            );
        }
        if !(1..=10_000).contains(&self.kafka_partitions) {
            bail!(
                "kafka_partitions must be between 1 and 10000 (got {})",
                self.kafka_partitions
            );
        }
        if self.kafka_replication < 1 {
            bail!(
                "kafka_replication must be at least 1 (got {})",
                self.kafka_replication
            );
        }
        if !(1..=self.kafka_replication).contains(&self.kafka_min_insync_replicas) {
            bail!(
                "kafka_min_insync_replicas must be between 1 and kafka_replication ({}) (got {})",
                self.kafka_replication,
                self.kafka_min_insync_replicas
            );
        }
        if self
            .kafka_brokers
            .as_deref()
            .is_some_and(|b| b.trim().is_empty())
        {
            bail!("kafka_brokers is set but empty");
        }
        if let Some(url) = &self.schema_registry_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            bail!("schema_registry_url must start with http:// or https:// (got {url:?})");
        }
        if let Some(url) = self.database_url.as_ref().map(Secret::expose)
            && !(url.starts_with("postgres://") || url.starts_with("postgresql://"))
        {
            bail!("database_url must start with postgres:// (got a URL of another kind)");
        }
        if let Some(url) = self.redis_url.as_ref().map(Secret::expose)
            && !(url.starts_with("redis://") || url.starts_with("rediss://"))
        {
            bail!("redis_url must start with redis:// or rediss:// (got a URL of another kind)");
        }
        if self.redis_key_prefix.is_empty() || self.redis_key_prefix.contains(char::is_whitespace) {
            bail!("redis_key_prefix must be a non-empty word without spaces");
        }
        if let Some(bind) = &self.metrics_bind {
            bind.parse::<SocketAddr>().with_context(|| {
                format!("metrics_bind must be an address like 0.0.0.0:9464 (got {bind:?})")
            })?;
        }
        if self.redis_outcome_ttl_secs == 0 {
            bail!("redis_outcome_ttl_secs must be at least 1");
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
            MetricsRole::SeatProcessor => "0.0.0.0:9464",
            MetricsRole::Projector => "0.0.0.0:9465",
        };
        let bind = self.metrics_bind.as_deref().unwrap_or(default);
        bind.parse()
            .with_context(|| format!("metrics_bind must be an address (got {bind:?})"))
    }

    /// The API's address for clients (`public_url`), given the port it listens on.
    pub fn public_url(&self, port: u16) -> String {
        if let Some(url) = &self.public_url {
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
        self.bind.parse().with_context(|| {
            format!(
                "bind must be an address like 0.0.0.0:8080 (got {:?})",
                self.bind
            )
        })
    }

    /// This gateway's reply partition.
    pub fn reply_partition(&self) -> i32 {
        self.gateway_reply_partition.unwrap_or_else(|| {
            let hash = seatflow_aggregates::murmur2(self.instance_id.as_bytes()) & 0x7fff_ffff;
            (hash % self.kafka_partitions.max(1) as u32) as i32
        })
    }

    pub fn topics(&self) -> seatflow_kafka::TopicsConfig {
        seatflow_kafka::TopicsConfig {
            prefix: self.kafka_topic_prefix.clone(),
            partitions: self.kafka_partitions,
            replication: self.kafka_replication,
            min_insync_replicas: self.kafka_min_insync_replicas,
        }
    }

    /// The Redis read models, if configured.
    pub fn redis(&self) -> anyhow::Result<Option<seatflow_projections::redis::RedisReads>> {
        self.redis_url
            .as_ref()
            .map(Secret::expose)
            .map(|url| {
                seatflow_projections::redis::RedisReads::new(
                    url,
                    &self.redis_key_prefix,
                    std::time::Duration::from_secs(self.redis_outcome_ttl_secs),
                )
            })
            .transpose()
            .context("cannot set up the Redis pool")
    }

    pub fn processor(&self) -> seatflow_processor::ProcessorConfig {
        seatflow_processor::ProcessorConfig {
            partitions: self.partitions,
            max_batch: self.max_batch,
            queue_depth: self.queue_depth,
            sync_writes: self.sync_writes,
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
            database_url: Some(Secret::new("postgres://seatflow:hunter2@db:5432/seatflow")),
            redis_url: Some(Secret::new("rediss://:s3cret@cache:6380/0")),
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
            config.database_url.as_ref().map(Secret::expose),
            Some("postgres://seatflow:hunter2@db:5432/seatflow")
        );
    }

    #[test]
    fn every_setting_can_come_from_the_environment() {
        let value = serde_json::to_value(Config::default()).expect("serializes");
        let mut fields: Vec<&str> = value
            .as_object()
            .expect("an object")
            .keys()
            .map(String::as_str)
            .collect();
        fields.sort_unstable();
        let mut settings = SETTINGS.to_vec();
        settings.sort_unstable();
        assert_eq!(fields, settings);
    }

    #[test]
    fn command_line_beats_environment_beats_file_beats_defaults() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "seatflow.toml",
                "partitions = 3\nbind = \"127.0.0.1:1\"\nmax_batch = 7\n",
            )?;
            jail.set_env("SEATFLOW_PARTITIONS", "5");
            jail.set_env("SEATFLOW_BIND", "127.0.0.1:2");
            let overrides = Overrides {
                bind: Some("127.0.0.1:3".into()),
                ..Overrides::default()
            };
            let config = Config::load(Some(std::path::Path::new("seatflow.toml")), &overrides)
                .expect("loads");
            assert_eq!(config.max_batch, 7);
            assert_eq!(config.partitions, 5);
            assert_eq!(config.bind, "127.0.0.1:3");
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
            jail.create_file("typo.toml", "max_seats_per_reservations = 2\n")?;
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
