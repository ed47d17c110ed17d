//! The HTTP gateway: the JSON API (poem + poem-openapi), Swagger UI at `/docs`, the spec at
//! `/openapi.json`, health probes, and one JSON error body for every failure.

mod api;
mod body;
mod error;

use poem::{Endpoint, EndpointExt, Route};
use poem_openapi::OpenApiService;

pub use api::{AppState, MAX_WAIT_MS};
pub use body::MAX_BODY_BYTES;
pub use error::{ApiError, ErrorBody};

/// The OpenAPI service describing every operation.
pub fn openapi(state: AppState) -> OpenApiService<api::Api, ()> {
    OpenApiService::new(api::Api { state }, "seatflow", env!("CARGO_PKG_VERSION")).description(
        "Flash-sale ticket reservations: seats, never one sold twice, or a clear sold out.",
    )
}

/// The process's metrics (OpenMetrics text), for Prometheus.
#[poem::handler]
fn prometheus_metrics() -> poem::Response {
    poem::Response::builder()
        .content_type(seatflow_telemetry::CONTENT_TYPE)
        .body(seatflow_telemetry::metrics().encode())
}

/// Every route of the gateway.
pub fn routes(state: AppState) -> impl Endpoint {
    let api = openapi(state);
    let spec = api.spec_endpoint();
    let ui = api.swagger_ui();
    Route::new()
        .at("/metrics", poem::get(prometheus_metrics))
        .at("/openapi.json", spec)
        .nest("/docs", ui)
        .nest("/", api)
        .catch_all_error(error::json_errors)
}
