//! seatflow as a library: configuration, the wiring of the embedded default, and the load
//! generator. `main` only parses the command line, sets up logging and runs what is asked.

pub mod bench;
pub mod config;
mod embedded_audit;
mod embedded_reads;
mod embedded_webhooks;
pub mod observability;
pub mod otlp_metrics;
pub mod roles;
mod shared_dedup;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

use anyhow::Context;
use poem::listener::{Acceptor, Listener, TcpListener};
use poem::{Endpoint, EndpointExt, IntoResponse, Request, Response};
use seatflow_aggregates::{Event, SectionStatus};
use seatflow_commands::{CommandService, Dedup, DedupStore, Limits, SectionDirectory, StatusCache};
use seatflow_gateway::connections::{BoundedAcceptor, Connections};
use seatflow_gateway::{AppState, ErrorBody};
use seatflow_processor::{CommitSink, LogRecord, Processor, open_store};
use seatflow_projections::{Queries, ReadModel, Waiters};
use tracing::info;

pub use config::{Config, MetricsRole, Overrides};
use shared_dedup::SharedDedup;

/// Everything a committed batch updates before callers are answered: the read model, the
/// pre-filter cache and parked requests.
struct EmbeddedSink {
    read: Arc<ReadModel>,
    status: Arc<StatusCache>,
    waiters: Arc<Waiters>,
    /// Wakes the embedded audit projection, when there is one.
    audit: Arc<tokio::sync::Notify>,
    /// Wakes the embedded webhook projection.
    webhooks: Arc<tokio::sync::Notify>,
}

impl CommitSink for EmbeddedSink {
    fn committed(&self, records: &[LogRecord], statuses: &[SectionStatus]) {
        for record in records {
            self.read.apply(record.partition, record.seq, &record.event);
        }
        for status in statuses {
            self.status.update(&status.key, status.available);
        }
        for record in records {
            if let Event::ReservationCompleted(completed) = &record.event {
                self.waiters.resolve(&completed.reservation);
            }
        }
        self.audit.notify_one();
        self.webhooks.notify_one();
    }
}

/// The read model answers the command side's catalogue questions.
struct Directory(Arc<ReadModel>);

impl SectionDirectory for Directory {
    fn layout(&self, key: &seatflow_aggregates::SectionKey) -> Option<seatflow_aggregates::Layout> {
        self.0.layout(key)
    }

    fn rules(
        &self,
        key: &seatflow_aggregates::SectionKey,
    ) -> Option<seatflow_aggregates::SaleRules> {
        self.0.rules(key)
    }

    fn event_exists(&self, event_id: &str) -> bool {
        self.0.has_event(event_id)
    }

    fn reservation(
        &self,
        id: seatflow_aggregates::ReservationId,
    ) -> Option<seatflow_aggregates::Reservation> {
        self.0.reservation(id)
    }

    fn held_by(
        &self,
        user_id: &str,
        key: &seatflow_aggregates::SectionKey,
        since: seatflow_aggregates::Millis,
    ) -> Option<seatflow_aggregates::Reservation> {
        self.0.held_by(user_id, key, since)
    }

    fn note_accepted(&self, pending: &seatflow_aggregates::Reservation) {
        self.0.note_reservation(pending);
    }
}

/// The running HTTP side: the all-in-one embedded process, or a gateway on Kafka.
pub struct App {
    port: u16,
    /// The API's address for clients, in the OpenAPI document.
    public_url: String,
    acceptor: BoundedAcceptor<poem::listener::TcpAcceptor>,
    state: AppState,
    /// Runs after the server stopped (finish the workers' last batch, stop consumers).
    cleanup: Box<dyn FnOnce() + Send>,
    /// The start-up work that must succeed (the log replay), if any.
    replay: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// What the Kafka read side feeds: the read model, the pre-filter cache, parked requests.
struct KafkaFeed {
    read: Arc<ReadModel>,
    status: Arc<StatusCache>,
    waiters: Arc<Waiters>,
}

impl seatflow_kafka::ReadFeed for KafkaFeed {
    fn status(&self, status: &seatflow_aggregates::SectionStatus) {
        self.status.update(&status.key, status.available);
    }

    fn event(&self, partition: u32, offset: i64, event: &Event) {
        self.read.apply(partition, offset as u64 + 1, event);
        if let Event::ReservationCompleted(completed) = event {
            self.waiters.resolve(&completed.reservation);
        }
    }

    fn snapshot(
        &self,
        init: &seatflow_aggregates::SectionInitialized,
        state: seatflow_aggregates::SectionState,
    ) {
        self.status.update(&init.key, state.available());
        self.read.restore_section(init, state);
    }

    fn room(&self, event_id: &str, room: seatflow_aggregates::room::RoomState) {
        self.read.restore_room(event_id, room);
    }
}

/// What the HTTP side reads from, set up the same way on both runtimes: the read model, the
/// pre-filter's cache of counts, and the requests parked until an outcome arrives.
struct ReadSide {
    read: Arc<ReadModel>,
    status: Arc<StatusCache>,
    waiters: Arc<Waiters>,
}

impl ReadSide {
    /// Memory for `recent` outcomes, the rest read from `store` when there is one.
    fn new(
        partitions: u32,
        recent: usize,
        store: Option<Arc<dyn seatflow_projections::OutcomeStore>>,
    ) -> Self {
        Self {
            read: Arc::new(ReadModel::bounded(partitions, recent, store)),
            status: Arc::new(StatusCache::new()),
            waiters: Arc::new(Waiters::new()),
        }
    }
}

/// Connections of the audit pool of an HTTP process: history and lookup reads, and (embedded)
/// the projection's writes.
const AUDIT_POOL: usize = 8;

/// The audit, when `database_url` is set.
fn audit_pool(config: &Config) -> anyhow::Result<Option<seatflow_projections::audit::AuditStore>> {
    config
        .audit
        .database_url
        .as_ref()
        .map(config::Secret::expose)
        .map(|url| seatflow_projections::audit::AuditStore::new(url, AUDIT_POOL))
        .transpose()
        .context("cannot set up the audit database pool")
}

/// The API's connections: at most `http.max_connections`, closed after
/// `http.idle_timeout_secs` without a request.
fn connections(config: &Config) -> Connections {
    Connections::new(
        config.http.max_connections,
        Duration::from_secs(config.http.idle_timeout_secs),
    )
}

async fn bind(
    config: &Config,
    connections: &Connections,
) -> anyhow::Result<(BoundedAcceptor<poem::listener::TcpAcceptor>, u16)> {
    let addr = config.bind_addr()?;
    let acceptor = TcpListener::bind(addr)
        .into_acceptor()
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let port = acceptor
        .local_addr()
        .first()
        .and_then(|a| a.as_socket_addr().map(|s| s.port()))
        .unwrap_or(0);
    Ok((connections.acceptor(acceptor), port))
}

fn limits(config: &Config) -> Limits {
    Limits {
        max_seats_per_reservation: config.http.max_seats_per_reservation,
        dedup_window: Duration::from_secs(config.http.dedup_window_secs),
        max_seats_per_event: config.http.max_seats_per_event,
        ..Limits::default()
    }
}

/// Drop expired in-memory de-duplication entries every minute.
/// Report what the store holds in memory, by kind, every 5 s (what a process's resident memory
/// is made of: docs/BENCHMARK.md, "Memory and restart").
pub(crate) fn report_store_memory(store: seatflow_processor::Store) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            if let Err(e) = store.report_memory() {
                tracing::warn!(error = %e, "store memory not readable");
            }
        }
    });
}

fn sweep_dedup(dedup: Arc<Dedup>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            dedup.sweep();
        }
    });
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App").field("port", &self.port).finish()
    }
}

impl App {
    /// Open the store, start the workers, bind the listener, and start rebuilding the read
    /// models from the log; the API answers 503 until that is done (`/health/ready`).
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        if config.kafka.brokers.is_some() {
            return Self::build_kafka_gateway(config).await;
        }
        if config.redis.url.is_some() {
            tracing::warn!(
                "redis_url is used with Kafka only: the embedded runtime keeps its read models and de-duplication keys in memory"
            );
        }
        let processor_config = config.processor();
        let store =
            open_store(&config.processor.data_dir, &processor_config).with_context(|| {
                format!(
                    "cannot open the store in {}",
                    config.processor.data_dir.display()
                )
            })?;
        let ReadSide {
            read,
            status,
            waiters,
        } = ReadSide::new(
            config.partitions(),
            config.http.recent_outcomes,
            Some(Arc::new(embedded_reads::StoredOutcomes(store.clone()))),
        );
        let wake_audit = Arc::new(tokio::sync::Notify::new());
        let wake_webhooks = Arc::new(tokio::sync::Notify::new());
        let sink = Arc::new(EmbeddedSink {
            read: read.clone(),
            status: status.clone(),
            waiters: waiters.clone(),
            audit: wake_audit.clone(),
            webhooks: wake_webhooks.clone(),
        });
        let (processor, workers) = Processor::start(store.clone(), &processor_config, sink.clone())
            .context("cannot start the seat workers")?;
        let dedup = Arc::new(Dedup::bounded(
            Duration::from_secs(config.http.dedup_window_secs),
            config.http.recent_outcomes,
        ));
        let commands = CommandService::new(
            Arc::new(processor.clone()),
            Arc::new(Directory(read.clone())),
            status,
            dedup.clone(),
            limits(&config),
        );
        let audit = audit_pool(&config)?;
        let stop_audit = CancellationToken::new();
        let audit_task = audit.as_ref().map(|audit| {
            tokio::spawn(embedded_audit::run(
                store.clone(),
                config.partitions(),
                audit.clone(),
                wake_audit.clone(),
                stop_audit.clone(),
            ))
        });
        let webhook_store = embedded_webhooks::RocksWebhooks::new(store.clone());
        let webhook_tasks = config.webhooks.enabled.then(|| {
            let (queued, watch) = tokio::sync::watch::channel(0);
            [
                tokio::spawn(embedded_webhooks::project_log(
                    store.clone(),
                    config.partitions(),
                    webhook_store.clone(),
                    wake_webhooks.clone(),
                    queued,
                    stop_audit.clone(),
                )),
                tokio::spawn(seatflow_projections::webhooks::deliver::run(
                    Arc::new(webhook_store.clone()),
                    config.webhooks.send(),
                    watch,
                    stop_audit.clone(),
                )),
            ]
        });
        report_store_memory(store.clone());
        let ready = Arc::new(AtomicBool::new(false));
        let state = AppState {
            webhooks: Some(seatflow_gateway::WebhookRegistry {
                store: Arc::new(webhook_store),
                allow_private_urls: config.webhooks.allow_private_urls,
            }),
            commands,
            queries: Queries::new(read.clone(), waiters, None, audit),
            read: read.clone(),
            ready: ready.clone(),
            redis: None,
            auth: auth(&config).await?,
            limiter: limiter(&config)?,
            connections: connections(&config),
            admission: admission_keys(&config, Some(&config.processor.data_dir))?,
        };

        let (acceptor, port) = bind(&config, &state.connections).await?;

        // Load the read models while the listener already answers health probes. No command
        // can reach a worker before `ready`, so the store does not move while it is read.
        let partitions = config.partitions();
        let replay = tokio::task::spawn_blocking(move || {
            embedded_reads::load(&store, partitions, &read, &sink.status)?;
            ready.store(true, Ordering::Release);
            Ok(())
        });

        sweep_dedup(dedup);

        Ok(Self {
            port,
            public_url: config.public_url(port),
            acceptor,
            state,
            cleanup: Box::new(move || {
                // The workers stop when the last handle to them is gone.
                drop(processor);
                workers.join();
                // The projections hold the store: they must let go before we return.
                stop_audit.cancel();
                wake_audit.notify_one();
                wake_webhooks.notify_one();
                let tasks = audit_task
                    .into_iter()
                    .chain(webhook_tasks.into_iter().flatten());
                for task in tasks {
                    let _ = tokio::runtime::Handle::current().block_on(task);
                }
            }),
            replay,
        })
    }

    /// A gateway on Kafka: commands to `reservation-commands`, outcomes from its own reply
    /// partition, the read side followed from the topics; ready once it caught up.
    async fn build_kafka_gateway(config: Config) -> anyhow::Result<Self> {
        let brokers = config
            .kafka
            .brokers
            .clone()
            .context("kafka.brokers is not set (SEATFLOW_KAFKA_BROKERS)")?;
        let topics = config.topics();
        let wire = wire(&config).await?;
        let partitions = config.partitions();
        let ReadSide {
            read,
            status,
            waiters,
        } = ReadSide::new(partitions, config.http.recent_outcomes, None);
        let on_reply: Arc<dyn Fn(&seatflow_aggregates::CommandReply) + Send + Sync> = {
            let (read, waiters) = (read.clone(), waiters.clone());
            Arc::new(move |reply| {
                if let seatflow_aggregates::Outcome::Reservation(reservation) = &reply.outcome {
                    read.note_reservation(reservation);
                    waiters.resolve(reservation);
                }
            })
        };
        let bus = seatflow_kafka::KafkaBus::start(
            &seatflow_kafka::GatewayKafkaConfig {
                brokers: brokers.clone(),
                topics: topics.clone(),
                reply_partition: config.reply_partition(),
                linger: Duration::from_millis(config.kafka.gateway_linger_ms.into()),
                wire: wire.clone(),
            },
            on_reply,
        )
        .context("cannot connect the gateway to Kafka")?;
        let ready = Arc::new(AtomicBool::new(false));
        let stop = CancellationToken::new();
        let feed = Arc::new(KafkaFeed {
            read: read.clone(),
            status: status.clone(),
            waiters: waiters.clone(),
        });
        let (follower, barrier) = seatflow_kafka::follow(
            &brokers,
            &topics,
            wire,
            feed,
            seatflow_kafka::Warm {
                outcomes_per_partition: (config.http.recent_outcomes / partitions.max(1) as usize)
                    as i64,
            },
            bus.ready(),
            ready.clone(),
            stop.clone(),
        )
        .context("cannot follow the read topics")?;
        let window = Duration::from_secs(config.http.dedup_window_secs);
        let redis = config.redis()?;
        let (dedup, local_dedup): (Arc<dyn DedupStore>, Arc<Dedup>) = match &redis {
            Some(redis) => {
                let shared = Arc::new(SharedDedup::new(
                    redis.clone(),
                    window,
                    config.http.recent_outcomes,
                ));
                let local = shared.local();
                (shared, local)
            }
            None => {
                let local = Arc::new(Dedup::bounded(window, config.http.recent_outcomes));
                (local.clone(), local)
            }
        };
        let commands = CommandService::new(
            Arc::new(bus),
            Arc::new(Directory(read.clone())),
            status,
            dedup,
            limits(&config),
        )
        .with_read_barrier(Arc::new(barrier));
        let audit = audit_pool(&config)?;
        let state = AppState {
            webhooks: audit
                .clone()
                .map(|audit| seatflow_gateway::WebhookRegistry {
                    store: Arc::new(
                        seatflow_projections::webhooks::postgres::PostgresWebhooks::new(audit),
                    ),
                    allow_private_urls: config.webhooks.allow_private_urls,
                }),
            commands,
            queries: Queries::new(read.clone(), waiters, redis.clone(), audit),
            read,
            ready,
            redis,
            auth: auth(&config).await?,
            limiter: limiter(&config)?,
            connections: connections(&config),
            admission: admission_keys(&config, None)?,
        };
        let (acceptor, port) = bind(&config, &state.connections).await?;
        sweep_dedup(local_dedup);
        info!(
            reply_partition = config.reply_partition(),
            "gateway on Kafka"
        );
        Ok(Self {
            port,
            public_url: config.public_url(port),
            acceptor,
            state,
            cleanup: Box::new(move || {
                stop.cancel();
                let _ = follower.join();
            }),
            replay: tokio::spawn(async { Ok(()) }),
        })
    }

    /// The port the API listens on (useful with port 0).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serve until SIGINT/SIGTERM, then finish in-flight requests and the workers' last batch.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.run_until(shutdown_signal()).await
    }

    /// Serve until `stop` completes.
    pub async fn run_until(
        self,
        stop: impl std::future::Future<Output = ()> + Send,
    ) -> anyhow::Result<()> {
        let ready = self.state.ready.clone();
        let routes = seatflow_gateway::routes(self.state, &self.public_url).around(
            move |endpoint, request| {
                let ready = ready.clone();
                async move { gate_until_ready(&ready, endpoint, request).await }
            },
        );
        // A log that cannot be replayed must stop the process, not leave it unready forever.
        let replay = self.replay;
        let (failed_tx, failed_rx) = tokio::sync::oneshot::channel::<String>();
        tokio::spawn(async move {
            let failure = match replay.await {
                Ok(Ok(())) => return,
                Ok(Err(e)) => format!("cannot rebuild the read models from the log: {e:#}"),
                Err(e) => format!("log replay panicked: {e}"),
            };
            let _ = failed_tx.send(failure);
        });
        let failure = Arc::new(parking_lot::Mutex::new(None));
        let stop = {
            let failure = failure.clone();
            async move {
                tokio::pin!(stop);
                tokio::select! {
                    _ = &mut stop => {}
                    failed = failed_rx => match failed {
                        Ok(message) => *failure.lock() = Some(message),
                        // Replay succeeded: keep serving until asked to stop.
                        Err(_) => stop.await,
                    },
                }
            }
        };
        poem::Server::new_with_acceptor(self.acceptor)
            .run_with_graceful_shutdown(routes, stop, Some(Duration::from_secs(10)))
            .await
            .context("HTTP server failed")?;
        tokio::task::spawn_blocking(self.cleanup)
            .await
            .context("stopping")?;
        if let Some(message) = failure.lock().take() {
            anyhow::bail!(message);
        }
        info!("stopped");
        Ok(())
    }
}

/// The API's authenticator; `none` on an address others can reach was refused by
/// [`Config::validate`] unless allowed, and is said loudly here.
async fn auth(config: &Config) -> anyhow::Result<seatflow_gateway::auth::Auth> {
    let settings = &config.auth;
    if settings.mode == seatflow_gateway::auth::Mode::None
        && !config.bind_addr()?.ip().is_loopback()
    {
        tracing::warn!(
            bind = %config.http.bind,
            "auth.mode = none on an address other machines can reach (auth.allow_insecure): \
             anyone can act as any user"
        );
    }
    seatflow_gateway::auth::Auth::new(settings)
        .await
        .context("cannot set up authentication (auth)")
}

/// The waiting rooms' admission keys: the configured shared secret; else, embedded, one drawn
/// once and kept in the data directory (a restart keeps every admission valid); else one drawn
/// for this process (a gateway on Kafka: several of them need `auth.admission_secret`).
fn admission_keys(
    config: &Config,
    data_dir: Option<&std::path::Path>,
) -> anyhow::Result<seatflow_gateway::admission::AdmissionKeys> {
    let drawn = || {
        let mut secret = Vec::with_capacity(32);
        while secret.len() < 32 {
            secret.extend_from_slice(&seatflow_processor::entropy().to_le_bytes());
        }
        secret
    };
    let secret = match (&config.auth.admission_secret, data_dir) {
        (Some(secret), _) => secret.expose().as_bytes().to_vec(),
        (None, Some(dir)) => {
            let path = dir.join("admission-secret");
            match std::fs::read(&path) {
                Ok(kept) if kept.len() >= 32 => kept,
                _ => {
                    let secret = drawn();
                    write_private(&path, &secret)
                        .with_context(|| format!("cannot keep {}", path.display()))?;
                    secret
                }
            }
        }
        (None, None) => {
            tracing::warn!(
                "auth.admission_secret is not set: this gateway signs admissions with a \
                 secret of its own; set one shared secret (SEATFLOW_AUTH_ADMISSION_SECRET) \
                 when several gateways serve a waiting room"
            );
            drawn()
        }
    };
    seatflow_gateway::admission::AdmissionKeys::new(&secret)
        .context("cannot set up admission tokens (auth.admission_secret)")
}

/// Write `bytes` to a new file only its owner may read, durably.
fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// The API's rate limits, their idle buckets swept in the background.
fn limiter(config: &Config) -> anyhow::Result<seatflow_gateway::limits::Limiter> {
    let limiter =
        seatflow_gateway::limits::Limiter::new(&config.limits).map_err(anyhow::Error::msg)?;
    limiter.spawn_sweep();
    Ok(limiter)
}

/// Every request, timed and counted by route pattern and status; before the read models are
/// rebuilt, API calls would see an empty catalogue: answer 503.
async fn gate_until_ready<E: Endpoint>(
    ready: &AtomicBool,
    endpoint: Arc<E>,
    request: Request,
) -> poem::Result<Response> {
    let started = Instant::now();
    let trace = observability::trace_request(request.headers()).then(|| {
        let headers = request.headers().clone();
        (
            request.method().clone(),
            request.uri().path().to_owned(),
            headers,
        )
    });
    // Boxed once here: poem boxes (and moves) this future for every request, and holding the
    // layers' state inline made it 28 KB copied per request (issue 16's profile: memcpy and
    // the allocator were a sixth of the HTTP threads' time); boxed, it is a few hundred bytes.
    let answer = Box::pin(answer_when_ready(ready, endpoint, request));
    let response = match trace {
        Some((method, path, headers)) => traced(answer, &method, &path, &headers).await,
        None => answer.await,
    };
    let route = response
        .data::<poem::PathPattern>()
        .map_or("unmatched", |pattern| &pattern.0);
    seatflow_telemetry::metrics().http_request(
        route,
        response.status().as_u16(),
        started.elapsed(),
    );
    Ok(response)
}

/// The request's span continues the caller's trace (`traceparent`), if any; its id goes into
/// every log line written while it is handled.
async fn traced(
    answer: impl std::future::Future<Output = Response>,
    method: &poem::http::Method,
    path: &str,
    headers: &poem::http::HeaderMap,
) -> Response {
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let span = tracing::info_span!(
        "http",
        otel.name = %format!("{method} {path}"),
        trace_id = tracing::field::Empty,
    );
    let _ = span.set_parent(observability::extract(headers));
    let trace_id = span.context().span().span_context().trace_id();
    if trace_id != opentelemetry::trace::TraceId::INVALID {
        span.record("trace_id", tracing::field::display(trace_id));
    }
    tracing::Instrument::instrument(answer, span).await
}

async fn answer_when_ready<E: Endpoint>(
    ready: &AtomicBool,
    endpoint: Arc<E>,
    request: Request,
) -> Response {
    if !ready.load(Ordering::Acquire) && request.uri().path().starts_with("/api/") {
        return (
            poem::http::StatusCode::SERVICE_UNAVAILABLE,
            poem::web::Json(ErrorBody {
                error: "starting".into(),
                message: "the read models are being rebuilt from the log; retry shortly".into(),
                field: None,
            }),
        )
            .into_response();
    }
    match endpoint.call(request).await {
        Ok(output) => output.into_response(),
        Err(error) => error.into_response(),
    }
}

/// Serve `/metrics` and `/health/live` on `metrics_bind` (or the role's default) for a role
/// without an HTTP API, until the process ends. Fails at once if the address cannot be bound.
pub async fn serve_metrics(config: &Config, role: MetricsRole) -> anyhow::Result<()> {
    let addr = config.metrics_addr(role)?;
    let acceptor = TcpListener::bind(addr)
        .into_acceptor()
        .await
        .with_context(|| format!("cannot listen on {addr} (metrics_bind)"))?;
    #[poem::handler]
    fn metrics() -> Response {
        Response::builder()
            .content_type(seatflow_telemetry::CONTENT_TYPE)
            .body(seatflow_telemetry::metrics().encode())
    }
    #[poem::handler]
    fn live() -> poem::web::Json<serde_json::Value> {
        poem::web::Json(serde_json::json!({"status": "up"}))
    }
    let routes = poem::Route::new()
        .at("/metrics", poem::get(metrics))
        .at("/health/live", poem::get(live));
    tokio::spawn(async move {
        if let Err(e) = poem::Server::new_with_acceptor(acceptor).run(routes).await {
            tracing::warn!(error = %e, "metrics endpoint stopped");
        }
    });
    info!(%addr, "metrics on /metrics");
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    shutdown_token().cancelled().await;
}

/// The process's one shutdown signal: cancelled on SIGTERM or Ctrl-C. Every role stops on it
/// (or on a child of it); the signal is listened for once, by the first caller (inside the
/// runtime).
pub fn shutdown_token() -> CancellationToken {
    static ROOT: std::sync::OnceLock<CancellationToken> = std::sync::OnceLock::new();
    ROOT.get_or_init(|| {
        let token = CancellationToken::new();
        let cancel = token.clone();
        tokio::spawn(async move {
            terminate_or_interrupt().await;
            info!("shutting down");
            cancel.cancel();
        });
        token
    })
    .clone()
}

async fn terminate_or_interrupt() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}

/// How records are framed on Kafka: the Confluent wire format when a Schema Registry is
/// configured (our schemas registered, its ids learnt; retried for a minute while the registry
/// does not answer), single-object framing otherwise.
pub async fn wire(config: &Config) -> anyhow::Result<seatflow_kafka::Wire> {
    let Some(url) = &config.kafka.schema_registry_url else {
        return Ok(seatflow_kafka::Wire::single_object());
    };
    let mut attempt = 1;
    loop {
        match seatflow_kafka::connect_registry(url, &config.topics()).await {
            Ok(wire) => return Ok(wire),
            Err(e) if attempt < 30 => {
                tracing::warn!(error = %e, attempt, "schema registry not ready; retrying");
                attempt += 1;
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            Err(e) => return Err(e).context("cannot register the schemas"),
        }
    }
}
