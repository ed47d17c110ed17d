//! The OpenAPI document is what generated clients are made of: it must name things as a client
//! would, declare the formats and bounds the server really has, list per operation the errors it
//! really answers, and agree with the answers on absent values. (tests/clients generates real
//! clients from it and validates a whole sale's answers against it.)

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{spawn_app, spawn_with, test_config};

/// Every operation of the public API, by the id clients name their methods after.
const OPERATIONS: &[(&str, &str, &str)] = &[
    ("post", "/api/events", "createEvent"),
    ("get", "/api/events", "listEvents"),
    ("get", "/api/events/{eventId}", "getEvent"),
    (
        "get",
        "/api/events/{eventId}/sections/{section}/seats",
        "getSeatMap",
    ),
    ("post", "/api/reservations", "reserveSeats"),
    ("get", "/api/reservations/{reservationId}", "getReservation"),
    (
        "delete",
        "/api/reservations/{reservationId}",
        "cancelReservation",
    ),
    (
        "post",
        "/api/reservations/{reservationId}/confirm",
        "confirmReservation",
    ),
    (
        "get",
        "/api/users/{userId}/reservations",
        "listUserReservations",
    ),
    ("post", "/api/events/{eventId}/queue", "joinQueue"),
    (
        "get",
        "/api/events/{eventId}/queue/{ticketId}",
        "getQueueTicket",
    ),
    (
        "delete",
        "/api/events/{eventId}/queue/{ticketId}",
        "leaveQueue",
    ),
    (
        "get",
        "/api/events/{eventId}/queue/{ticketId}/stream",
        "streamQueueTicket",
    ),
    (
        "get",
        "/api/events/{eventId}/availability/stream",
        "streamAvailability",
    ),
    (
        "put",
        "/api/events/{eventId}/waiting-room",
        "changeWaitingRoom",
    ),
    ("post", "/api/webhooks", "createWebhook"),
    ("get", "/api/webhooks", "listWebhooks"),
    ("get", "/api/webhooks/{webhookId}", "getWebhook"),
    ("delete", "/api/webhooks/{webhookId}", "deleteWebhook"),
    (
        "get",
        "/api/webhooks/{webhookId}/deliveries",
        "listWebhookDeliveries",
    ),
    ("get", "/health/live", "checkLiveness"),
    ("get", "/health/ready", "checkReadiness"),
];

async fn document(app: &crate::helpers::TestApp) -> Value {
    let response = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .expect("spec");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"],
        "application/json",
        "the document's own media type"
    );
    response.json().await.expect("JSON")
}

fn schema<'a>(document: &'a Value, name: &str) -> &'a Value {
    let schema = &document["components"]["schemas"][name];
    assert!(schema.is_object(), "no schema {name}");
    schema
}

#[tokio::test]
async fn every_operation_has_a_stable_id_and_nothing_else_is_public() {
    let app = spawn_app().await;
    let document = document(&app).await;
    let mut operations = 0;
    for (path, item) in document["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("path item") {
            operations += 1;
            let id = operation["operationId"].as_str().unwrap_or_default();
            assert!(
                OPERATIONS.contains(&(method.as_str(), path.as_str(), id)),
                "{method} {path} has operationId {id:?}, not one of the known ones"
            );
        }
    }
    assert_eq!(
        operations,
        OPERATIONS.len(),
        "every operation is documented"
    );
    assert!(
        document["paths"].get("/bench/echo").is_none(),
        "the load generator's baseline is not part of the API"
    );
    // ... and still answers for `seatflow bench --baseline`.
    let (status, echoed) = app
        .post(
            "/bench/echo",
            &json!({"eventId": "e", "section": "A", "userId": "u", "seatCount": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{echoed}");
    assert_eq!(echoed["status"], "PENDING");
}

#[tokio::test]
async fn names_are_what_a_client_would_write() {
    let app = spawn_app().await;
    let document = document(&app).await;
    let schemas = document["components"]["schemas"]
        .as_object()
        .expect("schemas");
    for name in [
        "Event",
        "NewEvent",
        "NewSection",
        "Section",
        "SeatMap",
        "Seat",
        "Reservation",
        "ReservationRequest",
        "ReservationStatus",
        "ErrorResponse",
    ] {
        assert!(schemas.contains_key(name), "no schema {name}");
    }
    for name in schemas.keys() {
        assert!(
            !name.ends_with("Dto"),
            "schema {name} carries a Rust suffix"
        );
    }
    for (path, item) in document["paths"].as_object().expect("paths") {
        assert!(!path.contains('_'), "{path}: parameters are camelCase");
        for operation in item.as_object().expect("path item").values() {
            for parameter in operation["parameters"].as_array().into_iter().flatten() {
                let name = parameter["name"].as_str().expect("name");
                assert!(!name.contains('_'), "{path}: parameter {name}");
            }
        }
    }
    // Clients call the address the server is reached at, not http://localhost.
    assert_eq!(document["servers"], json!([{"url": app.address}]));
    // Media types without poem's charset parameter (generators warn once per operation).
    assert!(!document.to_string().contains("charset"));
}

#[tokio::test]
async fn ids_and_instants_carry_their_format() {
    let app = spawn_app().await;
    let document = document(&app).await;
    let format = |schema_name: &str, property: &str| {
        schema(&document, schema_name)["properties"][property]["format"].clone()
    };
    assert_eq!(format("Event", "eventId"), "uuid");
    assert_eq!(format("Event", "createdAt"), "date-time");
    assert_eq!(format("SeatMap", "eventId"), "uuid");
    assert_eq!(format("ReservationRequest", "eventId"), "uuid");
    assert_eq!(format("Reservation", "reservationId"), "uuid");
    assert_eq!(format("Reservation", "eventId"), "uuid");
    for instant in ["requestedAt", "decidedAt", "cancelledAt"] {
        assert_eq!(format("Reservation", instant), "date-time", "{instant}");
    }
    let parameter = |path: &str, method: &str, name: &str| {
        document["paths"][path][method]["parameters"]
            .as_array()
            .expect("parameters")
            .iter()
            .find(|p| p["name"] == name)
            .expect("parameter")["schema"]
            .clone()
    };
    assert_eq!(
        parameter("/api/reservations/{reservationId}", "get", "reservationId")["format"],
        "uuid"
    );
    assert_eq!(
        parameter("/api/events/{eventId}", "get", "eventId")["format"],
        "uuid"
    );
}

/// A body field's declared bounds: the value at each bound is accepted, one past it refused
/// with 422 naming the field; so the document and the server's checks cannot drift apart.
#[tokio::test]
async fn declared_bounds_are_the_bounds_the_server_checks() {
    let mut config = test_config(std::path::Path::new("unused"));
    let dir = tempfile::tempdir().expect("dir");
    config.processor.data_dir = dir.path().to_owned();
    config.http.max_seats_per_reservation = 5;
    let app = spawn_with(config).await;
    let document = document(&app).await;
    let property =
        |schema_name: &str, name: &str| schema(&document, schema_name)["properties"][name].clone();

    // The configured maximum, not a constant of the code.
    let seat_count = property("ReservationRequest", "seatCount");
    assert_eq!(seat_count["minimum"], 1);
    assert_eq!(seat_count["maximum"], 5);
    assert_eq!(property("ReservationRequest", "seats")["maxItems"], 5);
    let event = app.create_event(&[("A", 1, 10)]).await;
    let reserve = |count: u64| json!({"eventId": event, "section": "A", "userId": format!("u{count}"), "seatCount": count});
    let (status, _) = app.post("/api/reservations?wait=5000", &reserve(5)).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = app.post("/api/reservations", &reserve(6)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["field"], "seatCount");

    // Event creation: the name, the section's name, rows and seats per row.
    let name = property("NewEvent", "name");
    assert_eq!(
        (name["minLength"].clone(), name["maxLength"].clone()),
        (json!(1), json!(200))
    );
    let section = property("NewSection", "section");
    assert_eq!(section["maxLength"], 128);
    let rows = property("NewSection", "rows");
    let seats_per_row = property("NewSection", "seatsPerRow");
    assert_eq!(
        (rows["minimum"].clone(), rows["maximum"].clone()),
        (json!(1), json!(1000))
    );
    assert_eq!(seats_per_row["maximum"], 1000);
    let create = |name: String, section: String, rows: u64, seats: u64| json!({"name": name, "sections": [{"section": section, "rows": rows, "seatsPerRow": seats}]});
    for (body, accepted) in [
        (create("n".repeat(200), "A".into(), 1, 1), true),
        (create("n".repeat(201), "A".into(), 1, 1), false),
        (create("é".repeat(200), "é".repeat(128), 1, 1), true),
        (create("e".into(), "s".repeat(129), 1, 1), false),
        (create("e".into(), "A".into(), 1000, 100), true),
        (create("e".into(), "A".into(), 1001, 1), false),
        (create("e".into(), "A".into(), 100, 1000), true),
        (create("e".into(), "A".into(), 1, 1001), false),
    ] {
        let (status, answer) = app.post("/api/events", &body).await;
        if accepted {
            assert_eq!(status, StatusCode::CREATED, "{answer}");
        } else {
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
        }
    }

    // The sale's rules: holdSeconds 0..=3600, maxSeatsPerUser 1..=100.
    for (field, low, high) in [("holdSeconds", 0, 3600), ("maxSeatsPerUser", 1, 100)] {
        let declared = property("NewEvent", field);
        assert_eq!(
            (declared["minimum"].clone(), declared["maximum"].clone()),
            (json!(low), json!(high)),
            "{field}"
        );
        for (value, accepted) in [
            (low, true),
            (high, true),
            (low - 1, false),
            (high + 1, false),
        ] {
            let body = json!({"name": "e", field: value,
                "sections": [{"section": "A", "rows": 1, "seatsPerRow": 1}]});
            let (status, answer) = app.post("/api/events", &body).await;
            if accepted {
                assert_eq!(status, StatusCode::CREATED, "{field} {value}: {answer}");
                assert_eq!(answer[field], value, "{answer}");
            } else {
                assert_eq!(
                    status,
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "{field} {value}: {answer}"
                );
                assert_eq!(answer["field"], field, "{answer}");
            }
        }
    }

    // Query parameters: their bounds are checked where they are declared.
    let limit = document["paths"]["/api/events"]["get"]["parameters"]
        .as_array()
        .expect("parameters")
        .iter()
        .find(|p| p["name"] == "limit")
        .expect("limit")["schema"]
        .clone();
    assert_eq!(
        (
            limit["minimum"].clone(),
            limit["maximum"].clone(),
            limit["default"].clone()
        ),
        (json!(1), json!(1000), json!(100))
    );
    assert_eq!(app.get("/api/events?limit=1000").await.0, StatusCode::OK);
    let (status, body) = app.get("/api/events?limit=1001").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["field"], "limit");
    assert_eq!(body["message"], "must be at most 1000");
}

#[tokio::test]
async fn each_operation_lists_the_errors_it_answers() {
    let app = spawn_app().await;
    let document = document(&app).await;
    let statuses = |path: &str, method: &str| -> Vec<String> {
        document["paths"][path][method]["responses"]
            .as_object()
            .expect("responses")
            .keys()
            .cloned()
            .collect()
    };
    // Every /api operation may answer 429 (the rate limits, on by default).
    assert_eq!(
        statuses("/api/events/{eventId}", "get"),
        ["200", "404", "429", "503"]
    );
    assert_eq!(
        statuses("/api/reservations", "post"),
        [
            "200", "202", "400", "404", "408", "409", "413", "415", "422", "429", "503"
        ]
    );
    assert_eq!(
        statuses("/api/reservations/{reservationId}", "delete"),
        ["200", "400", "403", "404", "409", "422", "429", "503"]
    );
    assert_eq!(
        statuses("/api/reservations/{reservationId}/confirm", "post"),
        [
            "200", "400", "403", "404", "408", "409", "413", "415", "422", "429", "503"
        ]
    );
    assert_eq!(
        statuses("/api/events", "get"),
        ["200", "400", "422", "429", "503"]
    );
    assert_eq!(statuses("/health/ready", "get"), ["200", "503"]);
}

#[tokio::test]
async fn absent_values_are_left_out_not_null() {
    let app = spawn_app().await;
    let event = app.create_event(&[("A", 1, 3)]).await;
    let (status, confirmed) = app.reserve(&event, "A", "ann", 2).await;
    assert_eq!(status, StatusCode::OK);
    let keys = |value: &Value| -> Vec<String> {
        let mut keys: Vec<String> = value.as_object().expect("object").keys().cloned().collect();
        keys.sort();
        keys
    };
    assert_eq!(
        keys(&confirmed),
        [
            "confirmedAt",
            "decidedAt",
            "eventId",
            "requestedAt",
            "reservationId",
            "seats",
            "section",
            "status",
            "userId"
        ]
    );
    let (status, pending) = app
        .post(
            "/api/reservations",
            &json!({"eventId": event, "section": "A", "userId": "bo", "seatCount": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{pending}");
    assert_eq!(
        keys(&pending),
        [
            "eventId",
            "reservationId",
            "seats",
            "section",
            "status",
            "userId"
        ]
    );
    let unknown_route = app.get("/nowhere").await.1;
    for answer in [&confirmed, &pending, &unknown_route] {
        assert!(
            !answer.to_string().contains("null"),
            "no null in an answer: {answer}"
        );
    }
    assert!(unknown_route.get("field").is_none(), "{unknown_route}");
}
