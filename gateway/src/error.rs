//! Every error the API answers, each with one status code and the JSON body
//! `{"error": code, "message": text, "field": name}` (`field` only where one is at fault).

use poem::{IntoResponse, Response};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object};
use seatflow_aggregates::Rejection;
use seatflow_commands::CommandError;

/// The body of every error response.
#[derive(Debug, Clone, Object, serde::Serialize)]
#[oai(rename = "ErrorResponse")]
pub struct ErrorBody {
    /// Machine-readable code, e.g. `invalid_request`, `sold_out`, `not_found`.
    pub error: String,
    /// What went wrong, for people.
    pub message: String,
    /// The request field at fault (JSON path, parameter or header name), when there is one.
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

#[derive(Debug, ApiResponse)]
pub enum ApiError {
    /// The request is malformed: not JSON, a field missing or of the wrong type.
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// The caller may not: a role is missing (`forbidden`), a user named in the request is not
    /// the authenticated one (`user_mismatch`), or, without authentication, the reservation is
    /// another user's (`not_owner`); a reservation in an event with a waiting room without a
    /// valid `X-Admission-Token` (`admission_required`, `admission_expired`,
    /// `admission_invalid`).
    #[oai(status = 403)]
    Forbidden(Json<ErrorBody>),
    /// The event, section, reservation or waiting-room ticket does not exist (or the event has
    /// no waiting room: `no_waiting_room`).
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    /// The seats cannot be had (sold out, not enough seats, seat taken), or the reservation
    /// cannot be cancelled or confirmed (`not_cancellable`, `hold_expired`, `not_confirmable`),
    /// or the sale or its waiting room is not open yet (`sale_not_started`, `queue_not_open`).
    #[oai(status = 409)]
    Conflict(Json<ErrorBody>),
    /// The request body did not arrive in time (10 s after the request's head).
    #[oai(status = 408)]
    RequestTimeout(Json<ErrorBody>),
    /// The request body is larger than 64 KiB.
    #[oai(status = 413)]
    PayloadTooLarge(Json<ErrorBody>),
    /// The body is not `application/json`.
    #[oai(status = 415)]
    UnsupportedMediaType(Json<ErrorBody>),
    /// The request is well-formed but a value is out of range or inconsistent.
    #[oai(status = 422)]
    Unprocessable(Json<ErrorBody>),
    /// Too many requests from this user or address, or too many events created by this
    /// organizer: retry after `Retry-After` seconds.
    #[oai(status = 429)]
    TooManyRequests(Json<ErrorBody>, #[oai(header = "Retry-After")] u64),
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
        Self::unprocessable_owned(field.to_owned(), message)
    }

    pub fn unprocessable_owned(field: String, message: impl Into<String>) -> Self {
        Self::Unprocessable(body("invalid_value", message, Some(field)))
    }

    /// 409 with a code of its own (`hold_expired`, `not_confirmable`, ...).
    pub fn conflict(code: &str, message: impl Into<String>) -> Self {
        Self::Conflict(body(code, message, None))
    }

    pub fn forbidden(code: &str, message: impl Into<String>, field: Option<&str>) -> Self {
        Self::Forbidden(body(code, message, field.map(str::to_owned)))
    }

    /// 429 for an organizer (or address) over its events per hour.
    pub fn too_many_events(wait: std::time::Duration) -> Self {
        let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
        Self::TooManyRequests(
            body(
                "too_many_events",
                format!("too many events created; retry after {seconds} s"),
                None,
            ),
            seconds,
        )
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::Unavailable(body("unavailable", message, None))
    }

    pub fn unknown_event() -> Self {
        Self::not_found("unknown_event", "no such event", Some("eventId"))
    }

    pub fn not_found(what: &str, message: impl Into<String>, field: Option<&str>) -> Self {
        Self::NotFound(body(what, message, field.map(str::to_owned)))
    }

    pub fn body_timeout() -> Self {
        Self::RequestTimeout(body(
            "request_timeout",
            format!(
                "the request body did not arrive within {} s",
                crate::body::BODY_TIMEOUT.as_secs()
            ),
            Some("body".into()),
        ))
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
            Rejection::UnknownSection
            | Rejection::UnknownReservation
            | Rejection::UnknownTicket
            | Rejection::NoWaitingRoom => Self::NotFound(payload),
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
            CommandError::UnknownTicket => {
                Self::not_found("unknown_ticket", message, Some("ticketId"))
            }
            CommandError::SaleNotStarted { opens_at } => Self::conflict(
                "sale_not_started",
                format!(
                    "the sale opens at {}",
                    crate::api::model::Timestamp::from_millis(opens_at).0
                ),
            ),
            CommandError::PreFiltered(rejection) | CommandError::Refused(rejection) => {
                Self::rejection(rejection)
            }
            CommandError::Unavailable(_) => Self::unavailable(message),
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
        // A parameter of the right type outside its declared bounds: the same answer as a body
        // value out of range.
        match out_of_bounds(&param.reason) {
            Some(message) => ApiError::unprocessable_owned(field, message),
            None => ApiError::bad_request_owned(field, param.reason.clone()),
        }
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

/// The words for a parameter that failed one of the bounds its OpenAPI schema declares
/// (poem-openapi reports `verification failed. maximum(30000, exclusive: false)`).
fn out_of_bounds(reason: &str) -> Option<String> {
    let check = reason.strip_prefix("verification failed. ")?;
    let (name, rest) = check.split_once('(')?;
    let bound = rest.split([',', ')']).next()?;
    Some(match name {
        "maximum" => format!("must be at most {bound}"),
        "minimum" => format!("must be at least {bound}"),
        "maxLength" => format!("must be at most {bound} characters"),
        "minLength" => format!("must be at least {bound} characters"),
        _ => format!("must satisfy {check}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_said_in_words() {
        assert_eq!(
            out_of_bounds("verification failed. maximum(30000, exclusive: false)").as_deref(),
            Some("must be at most 30000")
        );
        assert_eq!(
            out_of_bounds("verification failed. minimum(1, exclusive: false)").as_deref(),
            Some("must be at least 1")
        );
        assert_eq!(
            out_of_bounds("verification failed. maxLength(128)").as_deref(),
            Some("must be at most 128 characters")
        );
        assert_eq!(
            out_of_bounds("failed to parse \"integer(uint64)\": invalid digit"),
            None
        );
    }
}
