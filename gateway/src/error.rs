//! Every error the API answers, each with one status code and the JSON body
//! `{"error": code, "message": text, "field": name|null}`.

use poem::{IntoResponse, Response};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object};
use seatflow_aggregates::Rejection;
use seatflow_commands::CommandError;

/// The body of every error response.
#[derive(Debug, Clone, Object, serde::Serialize)]
pub struct ErrorBody {
    /// Machine-readable code, e.g. `invalid_request`, `sold_out`, `not_found`.
    pub error: String,
    /// What went wrong, for people.
    pub message: String,
    /// The request field at fault (JSON path, parameter or header name), when there is one.
    pub field: Option<String>,
}

#[derive(Debug, ApiResponse)]
pub enum ApiError {
    /// The request is malformed: not JSON, a field missing or of the wrong type.
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// The reservation belongs to another user.
    #[oai(status = 403)]
    Forbidden(Json<ErrorBody>),
    /// The event, section or reservation does not exist.
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    /// The seats cannot be had (sold out, not enough seats, seat taken) or the reservation
    /// cannot be cancelled.
    #[oai(status = 409)]
    Conflict(Json<ErrorBody>),
    /// The request body is larger than 64 KiB.
    #[oai(status = 413)]
    PayloadTooLarge(Json<ErrorBody>),
    /// The body is not `application/json`.
    #[oai(status = 415)]
    UnsupportedMediaType(Json<ErrorBody>),
    /// The request is well-formed but a value is out of range or inconsistent.
    #[oai(status = 422)]
    Unprocessable(Json<ErrorBody>),
    /// The seat processor cannot decide right now; retry later.
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>),
}

fn body(error: &str, message: impl Into<String>, field: Option<String>) -> Json<ErrorBody> {
    Json(ErrorBody {
        error: error.to_owned(),
        message: message.into(),
        field,
    })
}

impl ApiError {
    pub fn bad_request(field: &str, message: impl Into<String>) -> Self {
        Self::BadRequest(body("invalid_request", message, Some(field.to_owned())))
    }

    pub fn bad_request_owned(field: String, message: impl Into<String>) -> Self {
        Self::BadRequest(body("invalid_request", message, Some(field)))
    }

    pub fn unprocessable(field: &str, message: impl Into<String>) -> Self {
        Self::Unprocessable(body("invalid_value", message, Some(field.to_owned())))
    }

    pub fn not_found(what: &str, message: impl Into<String>, field: Option<&str>) -> Self {
        Self::NotFound(body(what, message, field.map(str::to_owned)))
    }

    pub fn payload_too_large() -> Self {
        Self::PayloadTooLarge(body(
            "payload_too_large",
            format!(
                "the request body is larger than {} bytes",
                crate::body::MAX_BODY_BYTES
            ),
            Some("body".into()),
        ))
    }

    fn rejection(rejection: Rejection) -> Self {
        let field = match rejection {
            Rejection::SeatTaken { .. }
            | Rejection::SeatOutOfRange { .. }
            | Rejection::DuplicateSeat { .. } => Some("seats".to_owned()),
            Rejection::InvalidSeatCount { .. }
            | Rejection::NotEnoughSeats { .. }
            | Rejection::NoAdjacentSeats { .. } => Some("seatCount".to_owned()),
            _ => None,
        };
        let payload = body(rejection.code(), rejection.to_string(), field);
        match rejection {
            Rejection::NotOwner => Self::Forbidden(payload),
            Rejection::UnknownSection | Rejection::UnknownReservation => Self::NotFound(payload),
            Rejection::SeatOutOfRange { .. }
            | Rejection::DuplicateSeat { .. }
            | Rejection::InvalidSeatCount { .. } => Self::Unprocessable(payload),
            _ => Self::Conflict(payload),
        }
    }
}

impl From<CommandError> for ApiError {
    fn from(error: CommandError) -> Self {
        let message = error.to_string();
        match error {
            CommandError::Invalid { field, message } => Self::unprocessable(field, message),
            CommandError::UnknownEvent(_) => {
                Self::not_found("unknown_event", message, Some("eventId"))
            }
            CommandError::UnknownSection(_) => {
                Self::not_found("unknown_section", message, Some("section"))
            }
            CommandError::UnknownReservation(_) => {
                Self::not_found("unknown_reservation", message, Some("reservationId"))
            }
            CommandError::PreFiltered(rejection) | CommandError::Refused(rejection) => {
                Self::rejection(rejection)
            }
            CommandError::Unavailable(_) => Self::Unavailable(body("unavailable", message, None)),
        }
    }
}

/// Turn every error poem or poem-openapi raises before a handler runs (bad path parameter,
/// wrong content type, unknown route, body too large) into the same JSON error body.
pub async fn json_errors(error: poem::Error) -> Response {
    if error.is_from_response() {
        return error.into_response();
    }
    let status = error.status();
    let message = error.to_string();
    let api_error = if let Some(param) =
        error.downcast_ref::<poem_openapi::error::ParseParamError>()
    {
        let field = param.name.to_owned();
        ApiError::BadRequest(body("invalid_request", param.reason.clone(), Some(field)))
    } else if let Some(content_type) = error.downcast_ref::<poem_openapi::error::ContentTypeError>()
    {
        ApiError::UnsupportedMediaType(body(
            "unsupported_media_type",
            format!("{content_type}; send application/json"),
            Some("Content-Type".into()),
        ))
    } else if status == poem::http::StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::payload_too_large()
    } else if status == poem::http::StatusCode::NOT_FOUND {
        ApiError::not_found("not_found", "no such route", None)
    } else if status == poem::http::StatusCode::METHOD_NOT_ALLOWED {
        return (
            status,
            poem::web::Json(ErrorBody {
                error: "method_not_allowed".into(),
                message,
                field: None,
            }),
        )
            .into_response();
    } else if status.is_client_error() {
        ApiError::BadRequest(body("invalid_request", message, None))
    } else {
        tracing::error!(%status, error = %message, "request failed");
        return (
            status,
            poem::web::Json(ErrorBody {
                error: "internal".into(),
                message,
                field: None,
            }),
        )
            .into_response();
    };
    api_error.into_response()
}
