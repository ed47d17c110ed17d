//! Liveness and readiness probes.

use std::sync::atomic::Ordering;

use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi};

use super::model::HealthDto;
use super::{AppState, Tag};

#[derive(Debug, ApiResponse)]
pub enum Readiness {
    /// Ready: the read models are rebuilt and the workers run.
    #[oai(status = 200)]
    Ready(Json<HealthDto>),
    /// Not ready: the read models are still being rebuilt from the log.
    #[oai(status = 503)]
    Starting(Json<HealthDto>),
}

#[derive(Debug)]
pub struct HealthApi {
    pub state: AppState,
}

#[OpenApi(tag = "Tag::Health")]
impl HealthApi {
    /// Liveness: the process answers.
    #[oai(path = "/health/live", method = "get", operation_id = "checkLiveness")]
    async fn live(&self) -> Json<HealthDto> {
        Json(HealthDto {
            status: "up".into(),
        })
    }

    /// Readiness: 503 until the read models and status cache are rebuilt from the log.
    #[oai(
        path = "/health/ready",
        method = "get",
        operation_id = "checkReadiness"
    )]
    async fn ready(&self) -> Readiness {
        if self.state.ready.load(Ordering::Acquire) {
            Readiness::Ready(Json(HealthDto {
                status: "ready".into(),
            }))
        } else {
            Readiness::Starting(Json(HealthDto {
                status: "starting".into(),
            }))
        }
    }
}
