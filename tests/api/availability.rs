//! Live availability over Server-Sent Events: a snapshot first, then only the sections whose
//! count changed, coalesced, and a reconnection with `Last-Event-ID` that resumes without a
//! gap or a full re-send.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::spawn_app;
use crate::queue::SseReader;

#[tokio::test]
async fn counts_stream_as_a_snapshot_then_coalesced_changes_and_resume_where_they_left() {
    let app = spawn_app().await;
    let event = app.create_event(&[("A", 10, 10), ("B", 5, 5)]).await;
    let path = format!("/api/events/{event}/availability/stream");
    let mut stream = SseReader::open(&app, &path, &[]).await;
    let (first_id, snapshot) = stream.next(Duration::from_secs(2)).await.expect("at once");
    assert_eq!(snapshot["full"], true, "{snapshot}");
    assert_eq!(
        snapshot["sections"],
        json!([{"section": "A", "available": 100}, {"section": "B", "available": 25}])
    );
    let first_id = first_id.expect("an id");

    // A burst of 20 reservations in A: coalesced into a few messages naming A only.
    let started = Instant::now();
    for n in 0..20 {
        let (status, body) = app.reserve(&event, "A", &format!("u{n}"), 1).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let burst = started.elapsed();
    let mut messages = 0;
    let mut last = None;
    while let Some((id, update)) = stream.next(Duration::from_millis(800)).await {
        assert_eq!(update["full"], false, "{update}");
        assert_eq!(update["sections"][0]["section"], "A", "{update}");
        assert_eq!(update["sections"].as_array().expect("list").len(), 1);
        messages += 1;
        last = Some((id, update));
    }
    let (last_id, last) = last.expect("changes pushed");
    assert_eq!(last["sections"][0]["available"], 80, "the count at the end");
    // When the newest count in it was counted: after the burst began, not after now.
    let changed_at =
        humantime::parse_rfc3339(last["changedAt"].as_str().expect("changedAt")).expect("RFC 3339");
    let age = std::time::SystemTime::now()
        .duration_since(changed_at)
        .expect("not in the future");
    assert!(age < started.elapsed(), "{last}");
    let most = 2 + (burst.as_millis() as usize) / 250;
    assert!(
        messages <= most,
        "{messages} messages for a burst of {burst:?}: not coalesced"
    );

    // Back with the first id: what changed since (A), not a snapshot.
    let mut resumed = SseReader::open(&app, &path, &[("Last-Event-ID", &first_id)]).await;
    let (_, delta) = resumed.next(Duration::from_secs(2)).await.expect("at once");
    assert_eq!(delta["full"], false, "{delta}");
    assert_eq!(
        delta["sections"],
        json!([{"section": "A", "available": 80}])
    );
    // Back with the last id: nothing until B changes, then only B.
    let last_id = last_id.expect("an id");
    let mut current = SseReader::open(&app, &path, &[("Last-Event-ID", &last_id)]).await;
    assert!(
        current.next(Duration::from_millis(600)).await.is_none(),
        "no re-send"
    );
    app.reserve(&event, "B", "b1", 2).await;
    let (_, b) = current.next(Duration::from_secs(2)).await.expect("pushed");
    assert_eq!(b["sections"], json!([{"section": "B", "available": 23}]));
    // An id this gateway did not give: a snapshot.
    let mut foreign = SseReader::open(&app, &path, &[("Last-Event-ID", "other.5")]).await;
    let (_, full) = foreign.next(Duration::from_secs(2)).await.expect("at once");
    assert_eq!(full["full"], true);
    let (status, _) = app
        .get("/api/events/0193a1b2-7c4d-7e8f-9a0b-1c2d3e4f5a6b/availability/stream")
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
