//! `POST /bench/echo`, the load generator's baseline (`seatflow bench --baseline`): parses a
//! reservation request as the real endpoint does and answers it as PENDING, touching no state,
//! to show the machine's HTTP ceiling beside the real figure. A diagnostic, not part of the API:
//! it is not in the OpenAPI document, so generated clients do not get it.

use poem::{IntoResponse, Request, RequestBody, Response};
use poem_openapi::payload::{Json, ParsePayload};
use seatflow_aggregates::ReservationId;
use seatflow_commands::ReserveRequest;

use crate::api::model::{ReservationDto, ReserveDto};
use crate::body::JsonBody;

#[poem::handler]
pub async fn echo(request: &Request, body: poem::Body) -> poem::Result<Response> {
    let mut body = RequestBody::new(body);
    let JsonBody(body) = JsonBody::<ReserveDto>::from_request(request, &mut body).await?;
    let request = ReserveRequest {
        event_id: body.event_id.0,
        section: body.section,
        user_id: body.user_id.unwrap_or_default(),
        seat_count: None,
        seats: None,
        idempotency_key: None,
        waitlist: false,
    };
    let answer = ReservationDto::pending(ReservationId::new_v7(), &request);
    Ok(Json(answer).into_response())
}
