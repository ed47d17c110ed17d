//! The HTTP gateway: the JSON API (poem + poem-openapi), Swagger UI at `/docs`, the OpenAPI
//! document at `/openapi.json`, health probes, and one JSON error body for every failure.

pub mod admission;
mod allow;
mod api;
pub mod auth;
mod body;
pub mod connections;
mod echo;
mod error;
mod guard;
pub mod limits;
mod spec;

use poem::endpoint::make_sync;
use poem::web::Html;
use poem::{Endpoint, EndpointExt, Response, Route};
use poem_openapi::OpenApiService;

pub use api::{AppState, MAX_WAIT_MS, MAX_WEBHOOKS_PER_OWNER, WebhookRegistry};
pub use body::MAX_BODY_BYTES;
pub use error::{ApiError, ErrorBody};

type Operations = (
    api::EventsApi,
    api::ReservationsApi,
    api::QueueApi,
    api::AvailabilityApi,
    api::WebhooksApi,
    api::HealthApi,
);

/// The OpenAPI service: every operation, and the address clients reach it at.
fn openapi(state: AppState, public_url: &str) -> OpenApiService<Operations, ()> {
    let operations = (
        api::EventsApi {
            state: state.clone(),
        },
        api::ReservationsApi {
            state: state.clone(),
        },
        api::QueueApi {
            state: state.clone(),
        },
        api::AvailabilityApi {
            state: state.clone(),
        },
        api::WebhooksApi {
            state: state.clone(),
        },
        api::HealthApi { state },
    );
    OpenApiService::new(operations, "seatflow", env!("CARGO_PKG_VERSION"))
        .description(
            "Flash-sale ticket reservations: seats, never one sold twice, or a clear sold out.",
        )
        .server(public_url)
}

/// The process's metrics (OpenMetrics text), for Prometheus.
#[poem::handler]
fn prometheus_metrics() -> Response {
    Response::builder()
        .content_type(seatflow_telemetry::CONTENT_TYPE)
        .body(seatflow_telemetry::metrics().encode())
}

/// Every route of the gateway. `public_url` is the API's address as clients reach it (the
/// document's `servers`).
pub fn routes(state: AppState, public_url: &str) -> impl Endpoint + use<> {
    let limits = spec::ServerLimits {
        max_seats_per_reservation: state.commands.limits().max_seats_per_reservation,
    };
    let connections = state.connections.clone();
    let guard = guard::Guard {
        auth: state.auth.clone(),
        limiter: state.limiter.clone(),
    };
    let api = openapi(state, public_url);
    let derived = api.spec();
    let document = spec::complete(&derived, limits, guard.auth.mode(), guard.limiter.is_on());
    // Swagger UI carries the document inside its page: the completed one.
    let ui = api.swagger_ui_html().replacen(&derived, &document, 1);
    let json = document.clone();
    let routes = allow::Routes::of(&document);
    Route::new()
        .at("/metrics", poem::get(prometheus_metrics))
        .at(
            "/openapi.json",
            poem::get(make_sync(move |_| {
                Response::builder()
                    .content_type("application/json")
                    .body(json.clone())
            })),
        )
        .at(
            "/docs",
            poem::get(make_sync({
                let ui = ui.clone();
                move |_| Html(ui.clone())
            })),
        )
        .at("/docs/", poem::get(make_sync(move |_| Html(ui.clone()))))
        .at("/bench/echo", poem::post(echo::echo))
        .nest("/", api)
        .with(guard)
        .with(connections::TrackRequests(connections))
        .catch_all_error(error::json_errors)
        .with(allow::AllowOn405(routes))
}
