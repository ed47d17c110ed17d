//! The OpenAPI document as clients get it (`/openapi.json`, Swagger UI at `/docs`).
//!
//! poem-openapi derives the document from the operations' types; three things it cannot know
//! are added here: which error statuses each operation can answer (every operation returns the
//! one `ApiError`, which lists them all), what this server is configured to allow (the most
//! seats in one reservation), and the media type without poem's `charset` parameter (which
//! means nothing for JSON and makes some generators warn once per operation). Bounds are written
//! as integers (`1`, not poem's `1.0`), as a client's generated checks on integers expect.

use serde_json::{Value, json};

/// The error statuses each operation can answer, by operation id. Every `/api` operation can
/// also answer 503 while the server starts (`starting`) or cannot decide (`unavailable`).
const ERRORS_BY_OPERATION: &[(&str, &[u16])] = &[
    ("createEvent", &[400, 413, 415, 422, 503]),
    ("listEvents", &[400, 422, 503]),
    ("getEvent", &[404, 503]),
    ("getSeatMap", &[404, 503]),
    ("reserveSeats", &[400, 404, 409, 413, 415, 422, 503]),
    ("getReservation", &[400, 404, 422, 503]),
    ("cancelReservation", &[400, 403, 404, 409, 422, 503]),
    ("listUserReservations", &[400, 422, 503]),
];

/// What the running server allows that the document shows.
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    pub max_seats_per_reservation: u16,
}

/// The document poem-openapi derived (`spec`, JSON), completed for clients.
pub fn complete(spec: &str, limits: ServerLimits) -> String {
    let mut document: Value = serde_json::from_str(spec).expect("poem-openapi writes JSON");
    keep_answerable_errors(&mut document);
    show_limits(&mut document, limits);
    whole_bounds_as_integers(&mut document);
    let text = serde_json::to_string_pretty(&document).expect("a JSON value serializes");
    text.replace("application/json; charset=utf-8", "application/json")
}

/// Drop from each operation the error statuses it never answers.
fn keep_answerable_errors(document: &mut Value) {
    let Some(paths) = document["paths"].as_object_mut() else {
        return;
    };
    for path in paths.values_mut().filter_map(Value::as_object_mut) {
        for operation in path.values_mut() {
            let id = operation.get("operationId").and_then(Value::as_str);
            let Some(&(_, statuses)) = ERRORS_BY_OPERATION.iter().find(|(op, _)| Some(*op) == id)
            else {
                continue;
            };
            if let Some(responses) = operation
                .get_mut("responses")
                .and_then(Value::as_object_mut)
            {
                responses.retain(|status, _| {
                    let code: u16 = status.parse().unwrap_or(0);
                    code < 400 || statuses.contains(&code)
                });
            }
        }
    }
}

/// The configured most seats per reservation, as `seatCount`'s maximum and `seats`' maxItems.
fn show_limits(document: &mut Value, limits: ServerLimits) {
    let Some(request) = document.pointer_mut("/components/schemas/ReservationRequest/properties")
    else {
        return;
    };
    let max = json!(limits.max_seats_per_reservation);
    if let Some(seat_count) = request.get_mut("seatCount") {
        seat_count["maximum"] = max.clone();
    }
    if let Some(seats) = request.get_mut("seats") {
        seats["maxItems"] = max;
    }
}

/// `minimum: 1.0` -> `minimum: 1` wherever a bound is a whole number.
fn whole_bounds_as_integers(value: &mut Value) {
    match value {
        Value::Object(object) => {
            for (key, value) in object.iter_mut() {
                if matches!(key.as_str(), "minimum" | "maximum" | "multipleOf")
                    && let Some(number) = value.as_f64()
                    && number.fract() == 0.0
                    && number.abs() < 9.0e15
                {
                    *value = json!(number as i64);
                } else {
                    whole_bounds_as_integers(value);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(whole_bounds_as_integers),
        _ => {}
    }
}
