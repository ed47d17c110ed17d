//! The waiting room over HTTP on the embedded default: joining before the sale, the shuffle and
//! the admissions at the on-sale, the admission a reservation needs (and every way to lack
//! one), the session a confirmation ends, leaving, and a room that survives a restart.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, read, spawn_app, spawn_app_in};

fn rfc3339_in(millis: i64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    let at = UNIX_EPOCH + Duration::from_millis((now + millis) as u64);
    humantime::format_rfc3339_millis(at).to_string()
}

/// An event of one 10 x 10 section "A" whose sale opens in `opens_in_ms` behind a room.
pub async fn event_with_room(app: &TestApp, opens_in_ms: i64, room: Value) -> String {
    let (status, event) = app
        .post(
            "/api/events",
            &json!({
                "name": "Stadium night",
                "onSaleAt": rfc3339_in(opens_in_ms),
                "waitingRoom": room,
                "sections": [{"section": "A", "rows": 10, "seatsPerRow": 10}]
            }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{event}");
    event["eventId"].as_str().expect("eventId").to_owned()
}

async fn join(app: &TestApp, event: &str, user: &str) -> (StatusCode, Value) {
    let response = app
        .client
        .post(app.url(&format!("/api/events/{event}/queue")))
        .header("X-User-Id", user)
        .send()
        .await
        .expect("join");
    read(response).await
}

async fn ticket(app: &TestApp, event: &str, ticket: &str, user: &str) -> (StatusCode, Value) {
    let response = app
        .client
        .get(app.url(&format!("/api/events/{event}/queue/{ticket}")))
        .header("X-User-Id", user)
        .send()
        .await
        .expect("ticket");
    read(response).await
}

async fn reserve(
    app: &TestApp,
    event: &str,
    user: &str,
    token: Option<&str>,
) -> (StatusCode, Value) {
    let mut request = app
        .client
        .post(app.url("/api/reservations?wait=5000"))
        .json(&json!({"eventId": event, "section": "A", "userId": user, "seatCount": 2}));
    if let Some(token) = token {
        request = request.header("X-Admission-Token", token);
    }
    read(request.send().await.expect("reserve")).await
}

/// Poll the ticket until its status is `status` (at most `within`); its JSON.
async fn until_status(
    app: &TestApp,
    event: &str,
    id: &str,
    user: &str,
    status: &str,
    within: Duration,
) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let (code, body) = ticket(app, event, id, user).await;
        assert_eq!(code, StatusCode::OK, "{body}");
        if body["status"] == status {
            return body;
        }
        assert!(Instant::now() < deadline, "still {body} after {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn id_of(ticket: &Value) -> String {
    ticket["ticketId"].as_str().expect("ticketId").to_owned()
}

#[tokio::test]
async fn buyers_join_before_the_sale_are_shuffled_at_it_and_admitted_under_the_cap() {
    let app = spawn_app().await;
    let event = event_with_room(
        &app,
        2_000,
        json!({"admitPerMinute": 60000, "maxActive": 2, "sessionSeconds": 60}),
    )
    .await;
    let (_, shown) = app.get(&format!("/api/events/{event}")).await;
    assert_eq!(
        shown["waitingRoom"],
        json!({"admitPerMinute": 60000, "maxActive": 2, "sessionSeconds": 60, "opensBeforeSeconds": 1800}),
        "{shown}"
    );
    assert!(shown["onSaleAt"].is_string(), "{shown}");

    let mut tickets = Vec::new();
    for user in ["ann", "bob", "cid"] {
        let (status, joined) = join(&app, &event, user).await;
        assert_eq!(status, StatusCode::CREATED, "{joined}");
        assert_eq!(joined["status"], "WAITING");
        assert_eq!(joined["eventId"], event.as_str());
        assert_eq!(joined["userId"], user);
        assert_eq!(
            joined["position"],
            Value::Null,
            "no place before the shuffle"
        );
        assert!(joined["estimatedWaitSeconds"].is_u64(), "{joined}");
        tickets.push((user, id_of(&joined)));
    }
    let (status, again) = join(&app, &event, "ann").await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(id_of(&again), tickets[0].1, "one ticket per user and event");

    // Before the sale: no reservation at all.
    let (status, early) = reserve(&app, &event, "ann", None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{early}");
    assert_eq!(early["error"], "sale_not_started");

    // At the on-sale: places 1..=3, the first two admitted (the cap), the third waits first.
    let mut admitted = Vec::new();
    let mut waiting = None;
    for (user, id) in &tickets {
        let deadline = Instant::now() + Duration::from_secs(10);
        let body = loop {
            let (_, body) = ticket(&app, &event, id, user).await;
            if body["position"].is_u64() && body["status"] != "WAITING"
                || body["peopleAhead"].is_u64()
            {
                break body;
            }
            assert!(Instant::now() < deadline, "{body}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        match body["status"].as_str() {
            Some("ADMITTED") => {
                assert!(body["admissionToken"].is_string(), "{body}");
                admitted.push((*user, id.clone(), body));
            }
            Some("WAITING") => waiting = Some((*user, id.clone(), body)),
            other => panic!("{other:?}: {body}"),
        }
    }
    assert_eq!(admitted.len(), 2, "never more than maxActive");
    let (last_user, last_id, last) = waiting.expect("one waits");
    assert_eq!(last["position"], 3, "{last}");
    assert_eq!(last["peopleAhead"], 0, "{last}");
    let mut positions: Vec<u64> = admitted
        .iter()
        .map(|(_, _, t)| t["position"].as_u64().expect("position"))
        .collect();
    positions.sort_unstable();
    assert_eq!(positions, vec![1, 2]);

    // A reservation needs the admission: missing, another user's, edited, another event's.
    let (first_user, first_id, first) = &admitted[0];
    let (second_user, _, second) = &admitted[1];
    let token = first["admissionToken"].as_str().expect("token");
    let (status, missing) = reserve(&app, &event, first_user, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{missing}");
    assert_eq!(missing["error"], "admission_required");
    assert_eq!(missing["field"], "X-Admission-Token");
    let others = second["admissionToken"].as_str().expect("token");
    let (status, theirs) = reserve(&app, &event, first_user, Some(others)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{theirs}");
    assert_eq!(theirs["error"], "admission_invalid");
    let edited = edit_claim(token, "sub", second_user);
    let (status, forged) = reserve(&app, &event, second_user, Some(&edited)).await;
    assert_eq!(forged["error"], "admission_invalid", "{status} {forged}");

    // Admitted: the reservation goes through, and its confirmation ends the session, which
    // frees the slot for the one who waited.
    let (status, bought) = reserve(&app, &event, first_user, Some(token)).await;
    assert_eq!(status, StatusCode::OK, "{bought}");
    assert_eq!(bought["status"], "CONFIRMED");
    let ended = until_status(
        &app,
        &event,
        first_id,
        first_user,
        "ENDED",
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(ended["endedBecause"], "CONFIRMED", "{ended}");
    assert!(ended.get("admissionToken").is_none(), "{ended}");
    until_status(
        &app,
        &event,
        &last_id,
        last_user,
        "ADMITTED",
        Duration::from_secs(5),
    )
    .await;
    // The token of an ended session buys nothing more.
    let (status, again) = reserve(&app, &event, first_user, Some(token)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{again}");
    assert_eq!(again["error"], "admission_expired");

    // Replayed for another event with a room: refused.
    let other_event = event_with_room(&app, 0, json!({"maxActive": 5})).await;
    let (status, replayed) = reserve(&app, &other_event, second_user, Some(others)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{replayed}");
    assert_eq!(replayed["error"], "admission_invalid");
}

/// The token with one claim changed, its signature kept.
fn edit_claim(token: &str, claim: &str, value: &str) -> String {
    use base64::Engine;
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let parts: Vec<&str> = token.split('.').collect();
    let mut claims: Value =
        serde_json::from_slice(&engine.decode(parts[1]).expect("claims")).expect("json");
    claims[claim] = json!(value);
    let payload = engine.encode(serde_json::to_vec(&claims).expect("json"));
    format!("{}.{payload}.{}", parts[0], parts[2])
}

#[tokio::test]
async fn the_room_opens_before_the_sale_and_refuses_earlier_joins() {
    let app = spawn_app().await;
    let event = event_with_room(&app, 7_200_000, json!({"admitPerMinute": 100})).await;
    let (status, refused) = join(&app, &event, "ann").await;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    assert_eq!(refused["error"], "queue_not_open");

    let plain = app.create_event(&[("A", 1, 4)]).await;
    let (status, none) = join(&app, &plain, "ann").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{none}");
    assert_eq!(none["error"], "no_waiting_room");
    let (status, unknown) = join(&app, "0193a1b2-7c4d-7e8f-9a0b-1c2d3e4f5a6b", "ann").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{unknown}");
    assert_eq!(unknown["error"], "unknown_event");
}

#[tokio::test]
async fn a_buyer_leaves_their_own_ticket_only_and_leaving_frees_the_place() {
    let app = spawn_app().await;
    let event = event_with_room(&app, 0, json!({"maxActive": 1})).await;
    let (_, ann) = join(&app, &event, "ann").await;
    let ann = id_of(&ann);
    let admitted = until_status(
        &app,
        &event,
        &ann,
        "ann",
        "ADMITTED",
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(admitted["position"], 1);
    let (_, bob) = join(&app, &event, "bob").await;
    let bob = id_of(&bob);
    let leave = |user: &'static str, id: String| {
        let request = app
            .client
            .delete(app.url(&format!("/api/events/{event}/queue/{id}")))
            .header("X-User-Id", user);
        async move { read(request.send().await.expect("leave")).await }
    };
    let (status, body) = leave("bob", ann.clone()).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, left) = leave("ann", ann.clone()).await;
    assert_eq!(status, StatusCode::OK, "{left}");
    assert_eq!(left["status"], "ENDED");
    assert_eq!(left["endedBecause"], "LEFT");
    until_status(
        &app,
        &event,
        &bob,
        "bob",
        "ADMITTED",
        Duration::from_secs(5),
    )
    .await;
    let (status, bad) = ticket(&app, &event, "not-a-ticket", "bob").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    assert_eq!(bad["field"], "ticketId");
}

#[tokio::test]
async fn a_room_is_validated_field_by_field() {
    let app = spawn_app().await;
    let section = json!([{"section": "A", "rows": 1, "seatsPerRow": 4}]);
    let cases = [
        (
            json!({"name": "x", "sections": section, "waitingRoom": {"maxActive": 5}}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "onSaleAt",
        ),
        (
            json!({"name": "x", "sections": section, "onSaleAt": "next tuesday", "waitingRoom": {}}),
            StatusCode::BAD_REQUEST,
            "onSaleAt",
        ),
        (
            json!({"name": "x", "sections": section, "onSaleAt": rfc3339_in(0), "waitingRoom": {"admitPerMinute": 0}}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "waitingRoom.admitPerMinute",
        ),
        (
            json!({"name": "x", "sections": section, "onSaleAt": rfc3339_in(0), "waitingRoom": {"sessionSeconds": 5}}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "waitingRoom.sessionSeconds",
        ),
        (
            json!({"name": "x", "sections": section, "onSaleAt": rfc3339_in(0), "waitingRoom": {"queue": 1}}),
            StatusCode::BAD_REQUEST,
            "waitingRoom.queue",
        ),
    ];
    for (body, status, field) in cases {
        let (got, error) = app.post("/api/events", &body).await;
        assert_eq!(got, status, "{body} -> {error}");
        assert_eq!(error["field"], field, "{body} -> {error}");
    }
}

#[tokio::test]
async fn the_room_survives_a_restart_with_every_ticket_and_admission() {
    let app = spawn_app().await;
    let event = event_with_room(&app, 0, json!({"maxActive": 1, "sessionSeconds": 600})).await;
    let mut tickets = Vec::new();
    for user in ["ann", "bob", "cid"] {
        let (_, joined) = join(&app, &event, user).await;
        tickets.push((user, id_of(&joined)));
    }
    let (user, id) = &tickets[0];
    let before = until_status(&app, &event, id, user, "ADMITTED", Duration::from_secs(5)).await;
    let mut seen = Vec::new();
    for (user, id) in &tickets {
        seen.push(ticket(&app, &event, id, user).await.1);
    }
    let dir = app.data_dir.clone();
    let _kept = app.stop().await;
    let app = spawn_app_in(&dir).await;
    for ((user, id), was) in tickets.iter().zip(&seen) {
        let (status, now) = ticket(&app, &event, id, user).await;
        assert_eq!(status, StatusCode::OK, "{now}");
        for field in ["status", "position", "peopleAhead", "admittedUntil"] {
            assert_eq!(now[field], was[field], "{field}: {was} then {now}");
        }
    }
    // The admitted one still buys; no one else was admitted meanwhile (the cap).
    let token = before["admissionToken"].as_str().expect("token");
    let (status, bought) = reserve(&app, &event, user, Some(token)).await;
    assert_eq!(status, StatusCode::OK, "{bought}");
    // And a join after the restart is the same ticket.
    let (_, again) = join(&app, &event, "bob").await;
    assert_eq!(id_of(&again), tickets[1].1);
}

/// The messages of a Server-Sent Events stream, read as they come: (id, data as JSON).
pub struct SseReader {
    response: reqwest::Response,
    buffer: String,
}

impl SseReader {
    pub async fn open(app: &TestApp, path: &str, headers: &[(&str, &str)]) -> Self {
        let mut request = app.client.get(app.url(path));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.expect("stream");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()["content-type"].to_str().expect("type"),
            "text/event-stream"
        );
        Self {
            response,
            buffer: String::new(),
        }
    }

    /// Whether the server closes the stream within `within` (with no message before).
    pub async fn closes(&mut self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        matches!(
            tokio::time::timeout_at(deadline, self.response.chunk()).await,
            Ok(Ok(None))
        )
    }

    /// The next message (comments skipped), or None when the stream ends or `within` passes.
    pub async fn next(&mut self, within: Duration) -> Option<(Option<String>, Value)> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut id = None;
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(value) = line.strip_prefix("id:") {
                        id = Some(value.trim().to_owned());
                    } else if let Some(value) = line.strip_prefix("data:") {
                        data.push_str(value.trim_start());
                    }
                }
                if !data.is_empty() {
                    return Some((id, serde_json::from_str(&data).expect("JSON data")));
                }
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk())
                .await
                .ok()?
                .expect("read")?;
            self.buffer
                .push_str(std::str::from_utf8(&chunk).expect("UTF-8"));
        }
    }
}

#[tokio::test]
async fn a_ticket_is_followed_live_until_its_session_ends() {
    let app = spawn_app().await;
    let event = event_with_room(&app, 1_500, json!({"maxActive": 1})).await;
    let (_, joined) = join(&app, &event, "ann").await;
    let id = id_of(&joined);
    let mut stream = SseReader::open(
        &app,
        &format!("/api/events/{event}/queue/{id}/stream"),
        &[("X-User-Id", "ann")],
    )
    .await;
    let (_, first) = stream.next(Duration::from_secs(2)).await.expect("at once");
    assert_eq!(first["status"], "WAITING", "{first}");
    assert_eq!(first["position"], Value::Null);
    // Pushed at the on-sale, without asking.
    let (_, admitted) = stream.next(Duration::from_secs(5)).await.expect("pushed");
    assert_eq!(admitted["status"], "ADMITTED", "{admitted}");
    assert_eq!(admitted["position"], 1);
    assert!(admitted["admissionToken"].is_string(), "{admitted}");
    let left = app
        .client
        .delete(app.url(&format!("/api/events/{event}/queue/{id}")))
        .header("X-User-Id", "ann")
        .send()
        .await
        .expect("leave");
    assert_eq!(left.status(), StatusCode::OK);
    let (_, ended) = stream.next(Duration::from_secs(3)).await.expect("pushed");
    assert_eq!(ended["status"], "ENDED", "{ended}");
    assert_eq!(ended["endedBecause"], "LEFT");
    assert!(
        stream.closes(Duration::from_secs(3)).await,
        "the stream ends"
    );
}

#[tokio::test]
async fn the_organizer_changes_the_room_until_the_sale_and_not_after() {
    let app = spawn_app().await;
    let event = event_with_room(&app, 3_600_000, json!({"admitPerMinute": 100})).await;
    let change = |body: Value| {
        let request = app
            .client
            .put(app.url(&format!("/api/events/{event}/waiting-room")))
            .json(&body);
        async move { read(request.send().await.expect("change")).await }
    };
    // Earlier sale, another pace: the room and the event say so, and the sale opens then.
    let (status, changed) = change(json!({"onSaleAt": rfc3339_in(1_000),
        "waitingRoom": {"admitPerMinute": 600, "maxActive": 1}}))
    .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(changed["waitingRoom"]["admitPerMinute"], 600);
    let (_, shown) = app.get(&format!("/api/events/{event}")).await;
    assert_eq!(shown["waitingRoom"]["maxActive"], 1, "{shown}");
    assert_eq!(shown["onSaleAt"], changed["onSaleAt"], "{shown}");
    let (_, joined) = join(&app, &event, "ann").await;
    let ann = id_of(&joined);
    until_status(
        &app,
        &event,
        &ann,
        "ann",
        "ADMITTED",
        Duration::from_secs(5),
    )
    .await;
    // After the shuffle: refused.
    let (status, late) = change(json!({"onSaleAt": rfc3339_in(60_000),
        "waitingRoom": {"admitPerMinute": 1}}))
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{late}");
    assert_eq!(late["error"], "sale_started");
    // An event without a room has none to change.
    let plain = app.create_event(&[("A", 1, 4)]).await;
    let (status, none) = app
        .client
        .put(app.url(&format!("/api/events/{plain}/waiting-room")))
        .json(&json!({"onSaleAt": rfc3339_in(0), "waitingRoom": {}}))
        .send()
        .await
        .map(|r| (r.status(), r))
        .expect("change");
    assert_eq!(status, StatusCode::NOT_FOUND, "{:?}", read(none).await);
}
