//! The process's metrics, in one registry that every role writes to and `/metrics` encodes in
//! the Prometheus text format. Process-wide (a `static`): the gateway, the workers and the Kafka
//! clients of one process report into the same families, as one scrape target.
//!
//! [`Metrics::otlp_request`] is the same registry as an OTLP export request, for a collector
//! (`OTEL_EXPORTER_OTLP_ENDPOINT`): pushed and scraped values always agree.
//!
//! Names are the contract of `ops/prometheus/alerts.yml` and `ops/grafana/seatflow.json`
//! (tests/ops checks that both read only these).

pub mod exposition;
pub mod otlp;

use std::sync::OnceLock;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// The route's pattern (`/api/reservations/:reservation_id`), never the raw path.
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LagLabels {
    pub group: String,
    pub topic: String,
    pub partition: i32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MemoryLabels {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProjectionLabels {
    pub projection: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// confirmed, rejected, cancelled, prefiltered, deduplicated, pending, timeout, invalid,
    /// error.
    pub outcome: &'static str,
}

/// Every metric of the process.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// When counting began: the start of every exported point.
    started: SystemTime,
    http: Family<HttpLabels, Histogram>,
    reservations: Family<OutcomeLabels, Counter>,
    pending: Gauge,
    decision: Histogram,
    batch_size: Histogram,
    rocksdb_write: Histogram,
    read_cache_hits: Counter,
    read_cache_misses: Counter,
    dedup_hits: Counter,
    transaction_commit: Histogram,
    consumer_lag: Family<LagLabels, Gauge>,
    projector_lag: Family<ProjectionLabels, Gauge<f64, AtomicU64>>,
    redis_up: Gauge,
    store_memory: Family<MemoryLabels, Gauge>,
    redis_failures: Counter,
    redis_skipped: Counter,
}

/// Latency buckets from 0.5 ms to ~16 s.
fn latency_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.0005, 2.0, 16)
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::default();
        let http = Family::<HttpLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(latency_buckets())
        });
        registry.register(
            "seatflow_http_request_duration_seconds",
            "HTTP requests by route pattern and status, with their duration",
            http.clone(),
        );
        let reservations = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            // The client appends _total.
            "seatflow_reservation_requests",
            "Reservation requests by how they were answered (timeout: still undecided when the wait ended)",
            reservations.clone(),
        );
        let pending = Gauge::default();
        registry.register(
            "seatflow_pending_requests",
            "Requests parked waiting for an outcome",
            pending.clone(),
        );
        let decision = Histogram::new(latency_buckets());
        registry.register(
            "seatflow_seat_processor_decision_seconds",
            "From the start of a decision batch until it is committed, once per command in it",
            decision.clone(),
        );
        let batch_size = Histogram::new(exponential_buckets(1.0, 2.0, 14));
        registry.register(
            "seatflow_seat_processor_batch_size",
            "Commands decided in one batch",
            batch_size.clone(),
        );
        let rocksdb_write = Histogram::new(latency_buckets());
        registry.register(
            "seatflow_rocksdb_write_seconds",
            "One RocksDB write batch (sections, outcomes, log records, position)",
            rocksdb_write.clone(),
        );
        let read_cache_hits = Counter::default();
        registry.register(
            "seatflow_read_cache_hits",
            "Event and seat-map reads answered from the Redis cache",
            read_cache_hits.clone(),
        );
        let read_cache_misses = Counter::default();
        registry.register(
            "seatflow_read_cache_misses",
            "Event and seat-map reads the Redis cache could not answer",
            read_cache_misses.clone(),
        );
        let dedup_hits = Counter::default();
        registry.register(
            "seatflow_dedup_hits",
            "Reservation requests answered with an earlier reservation (a retry, or a repeated Idempotency-Key)",
            dedup_hits.clone(),
        );
        let transaction_commit = Histogram::new(latency_buckets());
        registry.register(
            "seatflow_transaction_commit_seconds",
            "Sending a batch's offsets to its Kafka transaction and committing it",
            transaction_commit.clone(),
        );
        let consumer_lag = Family::<LagLabels, Gauge>::default();
        registry.register(
            "seatflow_consumer_lag_records",
            "Records between a consumer's position and the end of its partition (librdkafka's view, every 5 s)",
            consumer_lag.clone(),
        );
        let projector_lag = Family::<ProjectionLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "seatflow_projector_lag_seconds",
            "Age of the newest record a projection has written when it wrote it (0 when caught up)",
            projector_lag.clone(),
        );
        let store_memory = Family::<MemoryLabels, Gauge>::default();
        registry.register(
            "seatflow_rocksdb_memory_bytes",
            "What the RocksDB store holds in memory, by kind: memtables, block_cache (of it \
             block_cache_pinned), table_readers (every 5 s)",
            store_memory.clone(),
        );
        let redis_up = Gauge::default();
        registry.register(
            "seatflow_redis_up",
            "1 while Redis answers (or is not configured), 0 from a failed call until one succeeds",
            redis_up.clone(),
        );
        redis_up.set(1);
        let redis_failures = Counter::default();
        registry.register(
            "seatflow_redis_failures",
            "Redis calls that failed or timed out",
            redis_failures.clone(),
        );
        let redis_skipped = Counter::default();
        registry.register(
            "seatflow_redis_skipped_calls",
            "Redis calls not tried because Redis had just failed (served locally instead)",
            redis_skipped.clone(),
        );
        Self {
            registry,
            started: SystemTime::now(),
            dedup_hits,
            transaction_commit,
            consumer_lag,
            projector_lag,
            redis_up,
            store_memory,
            redis_failures,
            redis_skipped,
            http,
            reservations,
            pending,
            decision,
            batch_size,
            rocksdb_write,
            read_cache_hits,
            read_cache_misses,
        }
    }

    pub fn http_request(&self, route: &str, status: u16, took: Duration) {
        self.http
            .get_or_create(&HttpLabels {
                route: route.to_owned(),
                status,
            })
            .observe(took.as_secs_f64());
    }

    pub fn reservation(&self, outcome: &'static str) {
        self.reservations
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    /// How many reservation requests were answered `outcome` so far.
    pub fn reservations(&self, outcome: &'static str) -> u64 {
        self.reservations
            .get_or_create(&OutcomeLabels { outcome })
            .get()
    }

    pub fn parked(&self) {
        self.pending.inc();
    }

    pub fn unparked(&self) {
        self.pending.dec();
    }

    /// A batch of `commands` decided and committed in `took`.
    pub fn batch_decided(&self, commands: usize, took: Duration) {
        self.batch_size.observe(commands as f64);
        let seconds = took.as_secs_f64();
        for _ in 0..commands {
            self.decision.observe(seconds);
        }
    }

    pub fn rocksdb_write(&self, took: Duration) {
        self.rocksdb_write.observe(took.as_secs_f64());
    }

    pub fn read_cache(&self, hit: bool) {
        if hit {
            self.read_cache_hits.inc();
        } else {
            self.read_cache_misses.inc();
        }
    }

    pub fn dedup_hit(&self) {
        self.dedup_hits.inc();
    }

    pub fn transaction_committed(&self, took: Duration) {
        self.transaction_commit.observe(took.as_secs_f64());
    }

    /// A consumer's lag on one partition; `None` forgets the partition (no longer assigned).
    pub fn consumer_lag(&self, group: &str, topic: &str, partition: i32, lag: Option<i64>) {
        let labels = LagLabels {
            group: group.to_owned(),
            topic: topic.to_owned(),
            partition,
        };
        match lag {
            Some(lag) => {
                self.consumer_lag.get_or_create(&labels).set(lag);
            }
            None => {
                self.consumer_lag.remove(&labels);
            }
        }
    }

    pub fn projector_lag(&self, projection: &'static str, lag: Duration) {
        self.projector_lag
            .get_or_create(&ProjectionLabels { projection })
            .set(lag.as_secs_f64());
    }

    /// What the RocksDB store holds in memory of one kind.
    pub fn store_memory(&self, kind: &'static str, bytes: u64) {
        self.store_memory
            .get_or_create(&MemoryLabels { kind })
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    pub fn redis_up(&self, up: bool) {
        self.redis_up.set(i64::from(up));
    }

    pub fn redis_failed(&self) {
        self.redis_failures.inc();
    }

    pub fn redis_skipped(&self) {
        self.redis_skipped.inc();
    }

    /// Every metric in the OpenMetrics text format (serve it as [`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl Metrics {
    /// Every metric as one OTLP export request (protobuf) from `resource`'s attributes
    /// (`service.name`, `service.instance.id`, ...), taken now.
    pub fn otlp_request(
        &self,
        resource: &[(String, String)],
    ) -> Result<Vec<u8>, exposition::ParseError> {
        let families = exposition::parse(&self.encode())?;
        let unix_nanos = |at: SystemTime| {
            at.duration_since(UNIX_EPOCH)
                .map_or(0, |since| since.as_nanos() as u64)
        };
        let window = otlp::Window {
            start_unix_nano: unix_nanos(self.started),
            now_unix_nano: unix_nanos(SystemTime::now()),
        };
        Ok(prost::Message::encode_to_vec(&otlp::request(
            &families, resource, window,
        )))
    }
}

/// The content type of [`Metrics::encode`].
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}
