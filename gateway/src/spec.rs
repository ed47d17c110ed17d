//! The OpenAPI document as clients get it (`/openapi.json`, Swagger UI at `/docs`).
//!
//! poem-openapi derives the document from the operations' types; three things it cannot know
//! are added here: which error statuses each operation can answer (every operation returns the
//! one `ApiError`, which lists them all), what this server is configured to allow (the most
//! seats in one reservation), and the media type without poem's `charset` parameter (which
//! means nothing for JSON and makes some generators warn once per operation). Bounds are written
//! as integers (`1`, not poem's `1.0`), as a client's generated checks on integers expect. With
//! authentication on, every `/api` operation answers 401 and 403 too, and with `jwt` it carries
//! the bearer security scheme (Swagger UI's "Authorize", generated clients send the token).

use serde_json::{Value, json};

use crate::auth::Mode;

/// The error statuses each operation can answer, by operation id. Every `/api` operation can
/// also answer 503 while the server starts (`starting`) or cannot decide (`unavailable`).
const ERRORS_BY_OPERATION: &[(&str, &[u16])] = &[
    ("createEvent", &[400, 408, 413, 415, 422, 503]),
    ("listEvents", &[400, 422, 503]),
    ("getEvent", &[404, 503]),
    ("getSeatMap", &[404, 503]),
    ("reserveSeats", &[400, 404, 408, 409, 413, 415, 422, 503]),
    ("getReservation", &[400, 404, 422, 503]),
    ("cancelReservation", &[400, 403, 404, 409, 422, 503]),
    (
        "confirmReservation",
        &[400, 403, 404, 408, 409, 413, 415, 422, 503],
    ),
    ("listUserReservations", &[400, 422, 503]),
];

/// What the running server allows that the document shows.
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    pub max_seats_per_reservation: u16,
}

/// The document poem-openapi derived (`spec`, JSON), completed for clients.
pub fn complete(spec: &str, limits: ServerLimits, auth: Mode, rate_limited: bool) -> String {
    let mut document: Value = serde_json::from_str(spec).expect("poem-openapi writes JSON");
    keep_answerable_errors(&mut document);
    if auth != Mode::None {
        secure_api_operations(&mut document, auth == Mode::Jwt);
    }
    if rate_limited {
        add_to_api_operations(
            &mut document,
            "429",
            "Too many requests from this user or address: retry after `Retry-After` seconds.",
        );
    }
    show_limits(&mut document, limits);
    close_request_bodies(&mut document);
    one_way_to_ask_for_seats(&mut document);
    whole_bounds_as_integers(&mut document);
    unsigned_integers_from_zero(&mut document);
    describe_event_streams(&mut document);
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

/// Every `/api` operation answers 401 (no or a bad identity) and 403 (a role missing, another
/// user named); with `bearer`, it requires the bearer scheme.
fn secure_api_operations(document: &mut Value, bearer: bool) {
    if bearer {
        document["components"]["securitySchemes"] = json!({
            "bearerAuth": {
                "type": "http",
                "scheme": "bearer",
                "bearerFormat": "JWT",
                "description": "A JWT from the identity provider (or `seatflow token` locally); \
                                the user is its `sub`, the roles its roles claim."
            }
        });
    }
    if bearer {
        for operation in api_operations(document) {
            operation["security"] = json!([{"bearerAuth": []}]);
        }
    }
    add_to_api_operations(
        document,
        "401",
        "No valid identity: a missing, expired or invalid token (`WWW-Authenticate` says which).",
    );
    add_to_api_operations(
        document,
        "403",
        "The caller may not: a role is missing, or the request names another user.",
    );
}

/// Every operation under `/api/`.
fn api_operations(document: &mut Value) -> impl Iterator<Item = &mut Value> {
    document["paths"]
        .as_object_mut()
        .into_iter()
        .flat_map(|paths| paths.iter_mut())
        .filter(|(path, _)| path.starts_with("/api/"))
        .filter_map(|(_, item)| item.as_object_mut())
        .flat_map(|item| item.values_mut())
}

/// An error answer every `/api` operation may give (kept where one is documented already).
fn add_to_api_operations(document: &mut Value, status: &str, description: &str) {
    for operation in api_operations(document) {
        if let Some(responses) = operation
            .get_mut("responses")
            .and_then(Value::as_object_mut)
        {
            responses.entry(status).or_insert_with(|| {
                json!({
                    "description": description,
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}
                })
            });
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

/// Request bodies are parsed strictly (an unknown field is a 400 naming it, a typo never goes
/// unnoticed): say so with `additionalProperties: false` on every schema a request body reaches.
fn close_request_bodies(document: &mut Value) {
    let mut pending: Vec<String> = Vec::new();
    if let Some(paths) = document.get("paths").and_then(Value::as_object) {
        for operation in paths
            .values()
            .filter_map(Value::as_object)
            .flat_map(|o| o.values())
        {
            if let Some(content) = operation.pointer("/requestBody/content")
                && let Some(content) = content.as_object()
            {
                for media in content.values() {
                    collect_refs(&media["schema"], &mut pending);
                }
            }
        }
    }
    let mut closed = std::collections::HashSet::new();
    while let Some(name) = pending.pop() {
        if !closed.insert(name.clone()) {
            continue;
        }
        let Some(schema) = document.pointer_mut(&format!("/components/schemas/{name}")) else {
            continue;
        };
        if schema["type"] == "object" {
            schema["additionalProperties"] = json!(false);
        }
        if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
            for property in properties.values() {
                collect_refs(property, &mut pending);
            }
        }
    }
}

/// The component names `schema` refers to, directly or as its items.
fn collect_refs(schema: &Value, into: &mut Vec<String>) {
    for reference in [schema.get("$ref"), schema.pointer("/items/$ref")]
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        if let Some(name) = reference.strip_prefix("#/components/schemas/") {
            into.push(name.to_owned());
        }
    }
}

/// A reservation request gives `seatCount` or `seats`, never both (the server answers 422).
fn one_way_to_ask_for_seats(document: &mut Value) {
    if let Some(request) = document.pointer_mut("/components/schemas/ReservationRequest") {
        request["not"] = json!({"required": ["seatCount", "seats"]});
    }
}

/// `format: uint32` says nothing to a validator: give unsigned integers their `minimum: 0`
/// (and `uint32` its maximum) where no tighter bound is declared.
fn unsigned_integers_from_zero(value: &mut Value) {
    match value {
        Value::Object(object) => {
            let format = object
                .get("format")
                .and_then(Value::as_str)
                .map(str::to_owned);
            if object.get("type").and_then(Value::as_str) == Some("integer")
                && let Some(format) = format.filter(|f| f.starts_with("uint"))
            {
                object.entry("minimum").or_insert(json!(0));
                if format == "uint32" {
                    object.entry("maximum").or_insert(json!(u32::MAX));
                }
            }
            object.values_mut().for_each(unsigned_integers_from_zero);
        }
        Value::Array(items) => items.iter_mut().for_each(unsigned_integers_from_zero),
        _ => {}
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

/// poem-openapi documents a Server-Sent Events answer as an array of its messages; before
/// OpenAPI 3.2, a `text/event-stream` schema describes one event (`data`, `event`, `id`), and
/// the message is the event's `data`, JSON text. OpenAPI 3.0 has no keyword for the schema of
/// a string's JSON content (`contentSchema` is 3.1's), so the message's schema is named in an
/// extension, `x-message-schema`, and in the description.
fn describe_event_streams(document: &mut Value) {
    let Some(paths) = document["paths"].as_object_mut() else {
        return;
    };
    for item in paths.values_mut() {
        let Some(operations) = item.as_object_mut() else {
            continue;
        };
        for operation in operations.values_mut() {
            // `get_mut`, not indexing: indexing a missing key would add it as `null`.
            let Some(responses) = operation
                .get_mut("responses")
                .and_then(Value::as_object_mut)
            else {
                continue;
            };
            for response in responses.values_mut() {
                let Some(stream) = response
                    .get_mut("content")
                    .and_then(|content| content.get_mut("text/event-stream"))
                else {
                    continue;
                };
                let message = stream
                    .get_mut("schema")
                    .and_then(|schema| schema.get_mut("items"))
                    .map(Value::take)
                    .unwrap_or(Value::Null);
                let name = message["$ref"]
                    .as_str()
                    .and_then(|reference| reference.rsplit('/').next())
                    .unwrap_or("the message")
                    .to_owned();
                stream["schema"] = json!({
                    "type": "object",
                    "required": ["data"],
                    "properties": {
                        "data": {
                            "type": "string",
                            "description": format!("one message, JSON: a {name}"),
                            "x-message-schema": message,
                        },
                        "event": {"type": "string"},
                        "id": {"type": "string"},
                        "retry": {"type": "integer"},
                    },
                });
            }
        }
    }
}
