//! The Postgres audit projection on a real PostgreSQL (started by `ops/test`): how batches are
//! applied, and the archive procedure.

use std::time::Duration;

use chrono::{DateTime, Utc};
use seatflow_projections::audit::AuditRow;

#[path = "../support/database.rs"]
mod database;
#[path = "../support/embedded.rs"]
mod embedded;
use database::fresh_database;

fn row(n: u128, status: &str, completed_at: DateTime<Utc>, offset: i64) -> AuditRow {
    AuditRow {
        id: uuid::Uuid::from_u128(n),
        user_id: format!("user-{n}"),
        event_id: "evt".into(),
        section: "A".into(),
        seat_count: 1,
        seats: serde_json::json!([{"row": 1, "seat": n}]),
        status: status.into(),
        reason: None,
        reason_message: None,
        requested_at: completed_at,
        completed_at,
        cancelled_at: (status == "CANCELLED").then_some(completed_at),
        log_partition: 0,
        log_offset: offset,
        expires_at: None,
        confirmed_at: None,
        expired_at: None,
        payment_ref: None,
        waitlist_place: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_only_moves_forward_in_the_log_and_positions_follow_their_batch() {
    let (_, store) = fresh_database().await;
    let now = Utc::now();
    store
        .apply("audit", &[row(1, "CONFIRMED", now, 5)], &[(0, 6)])
        .await
        .expect("apply");
    // The cancellation, later in the log, replaces it; the same reservation twice in one batch
    // keeps the later one.
    store
        .apply(
            "audit",
            &[row(1, "CONFIRMED", now, 5), row(1, "CANCELLED", now, 7)],
            &[(0, 8)],
        )
        .await
        .expect("apply");
    // A replay of the first batch changes nothing but the position it is told.
    store
        .apply("audit", &[row(1, "CONFIRMED", now, 5)], &[(0, 6)])
        .await
        .expect("apply");
    let rows = store.all_rows().await.expect("rows");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].status, "CANCELLED");
    assert_eq!(rows[0].log_offset, 7);
    let positions = store.positions("audit").await.expect("positions");
    assert_eq!(positions.get(&0), Some(&6));
    assert!(
        store
            .positions("other")
            .await
            .expect("positions")
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_archive_moves_exactly_the_rows_older_than_the_cut_off() {
    let (_, store) = fresh_database().await;
    let now = Utc::now();
    let day = chrono::Duration::days(1);
    let rows: Vec<AuditRow> = [200, 91, 90, 89, 1]
        .iter()
        .enumerate()
        .map(|(i, age)| {
            // 90 days minus a minute is newer than the cut-off, 90 days plus a minute older.
            let skew = if *age == 90 {
                chrono::Duration::minutes(1)
            } else {
                chrono::Duration::zero()
            };
            row(
                i as u128 + 1,
                "CONFIRMED",
                now - day * *age + skew,
                i as i64,
            )
        })
        .collect();
    store.apply("audit", &rows, &[(0, 5)]).await.expect("apply");
    let moved = store
        .archive(Duration::from_secs(90 * 86_400))
        .await
        .expect("archive");
    assert_eq!(moved, 2, "the rows of 200 and 91 days");
    let archived = store.archived_ids().await.expect("archived");
    assert_eq!(
        archived,
        vec![uuid::Uuid::from_u128(1), uuid::Uuid::from_u128(2)]
    );
    let left: Vec<u128> = store
        .all_rows()
        .await
        .expect("rows")
        .iter()
        .map(|r| r.id.as_u128())
        .collect();
    assert_eq!(left, vec![3, 4, 5]);
    // Nothing older is left: a second run moves nothing.
    assert_eq!(
        store
            .archive(Duration::from_secs(90 * 86_400))
            .await
            .expect("archive"),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paged_verification_counts_like_a_whole_one() {
    let (_, rebuilt) = fresh_database().await;
    let (_, live) = fresh_database().await;
    let now = Utc::now();
    let rows: Vec<AuditRow> = (1..=25)
        .map(|n| row(n, "CONFIRMED", now, n as i64))
        .collect();
    rebuilt.apply("audit", &rows, &[]).await.expect("apply");
    let mut live_rows = rows.clone();
    live_rows[3].status = "REJECTED".into(); // id 4: different
    live_rows.remove(10); // id 11: missing from the live projection
    live_rows[20].status = "CANCELLED".into(); // id 22: cancelled later in the log: newer
    live_rows[20].log_offset = 1_000;
    live_rows.push(row(30, "CONFIRMED", now, 30)); // after the rebuild's last id: newer
    live_rows.push(row(0, "CONFIRMED", now, 31)); // before its first: newer
    live.apply("audit", &live_rows, &[]).await.expect("apply");
    let whole = seatflow_projections::audit::compare(
        &rebuilt.all_rows().await.expect("rows"),
        &live.all_rows().await.expect("rows"),
    );
    assert_eq!(whole.equal, 22);
    assert_eq!(whole.different, vec![uuid::Uuid::from_u128(4)]);
    assert_eq!(whole.missing_live, vec![uuid::Uuid::from_u128(11)]);
    assert_eq!(whole.newer_live, 3);
    for page in [1, 7, 10, 25, 100] {
        let paged = seatflow_projections::audit::verify(&rebuilt, &live, page)
            .await
            .expect("verify");
        assert_eq!(paged, whole, "pages of {page}");
    }
}

/// The embedded all-in-one on `data_dir`, with `database_url` when given.
async fn embedded(data_dir: &std::path::Path, database_url: Option<&str>) -> embedded::Embedded {
    embedded::start(seatflow::Config {
        audit: seatflow::config::AuditSettings {
            database_url: database_url.map(seatflow::config::Secret::new),
        },
        ..seatflow::Config::embedded(data_dir, 2)
    })
    .await
}

async fn reserve(
    client: &reqwest::Client,
    base: &str,
    event: &str,
    user: &str,
) -> serde_json::Value {
    let response = client
        .post(format!("{base}/api/reservations?wait=5000"))
        .json(
            &serde_json::json!({"eventId": event, "section": "A", "userId": user, "seatCount": 2}),
        )
        .send()
        .await
        .expect("reserve");
    assert_eq!(response.status(), 200);
    response.json().await.expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_runtime_audits_its_own_log_including_what_it_decided_before_it_had_a_database()
 {
    let (url, store) = fresh_database().await;
    let disk = tempfile::tempdir().expect("dir");
    let client = reqwest::Client::new();
    let mut told: std::collections::HashMap<String, serde_json::Value> = Default::default();
    let keep = |told: &mut std::collections::HashMap<String, serde_json::Value>,
                outcome: serde_json::Value| {
        told.insert(
            outcome["reservationId"].as_str().expect("id").to_owned(),
            outcome,
        );
    };

    // Without a database: nothing to audit into yet.
    let app = embedded(disk.path(), None).await;
    let base = app.base.clone();
    let response = client
        .post(format!("{base}/api/events"))
        .json(&serde_json::json!({"name": "Embedded audit", "sections": [{"section": "A", "rows": 4, "seatsPerRow": 6}]}))
        .send()
        .await
        .expect("create");
    let event: serde_json::Value = response.json().await.expect("json");
    let event = event["eventId"].as_str().expect("id").to_owned();
    for i in 0..3 {
        keep(
            &mut told,
            reserve(&client, &base, &event, &format!("early-{i}")).await,
        );
    }
    app.stop().await;

    // With one: the earlier decisions are caught up, the new ones follow, a cancellation too.
    let app = embedded(disk.path(), Some(&url)).await;
    let base = app.base.clone();
    for i in 0..4 {
        keep(
            &mut told,
            reserve(&client, &base, &event, &format!("late-{i}")).await,
        );
    }
    let (cancel_id, cancel_user) = told
        .iter()
        .find(|(_, o)| o["status"] == "CONFIRMED")
        .map(|(id, o)| (id.clone(), o["userId"].as_str().expect("user").to_owned()))
        .expect("a confirmed reservation");
    let response = client
        .delete(format!("{base}/api/reservations/{cancel_id}"))
        .header("X-User-Id", &cancel_user)
        .send()
        .await
        .expect("cancel");
    keep(&mut told, response.json().await.expect("json"));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let rows = store.all_rows().await.expect("rows");
        let matches = rows.len() == told.len()
            && rows.iter().all(|row| {
                told.get(&row.id.to_string())
                    .is_some_and(|o| o["status"] == row.status.as_str())
            });
        if matches {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the audit never matched what clients were told: {} rows for {} outcomes",
            rows.len(),
            told.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.stop().await;

    // A restart resumes from the stored positions: nothing doubled, nothing missed.
    let app = embedded(disk.path(), Some(&url)).await;
    let base = app.base.clone();
    keep(
        &mut told,
        reserve(&client, &base, &event, "after-restart").await,
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while store.count().await.expect("count") < told.len() as u64 {
        assert!(
            std::time::Instant::now() < deadline,
            "the new outcome never arrived"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(store.count().await.expect("count"), told.len() as u64);
    let cancelled = store
        .find(uuid::Uuid::parse_str(&cancel_id).expect("uuid"))
        .await
        .expect("find")
        .expect("row");
    assert_eq!(cancelled.status, "CANCELLED");
    assert!(cancelled.cancelled_at.is_some());
    app.stop().await;
}

/// The checkout reaches the audit: a HELD row with its hold's end, a confirmed one with its
/// payment reference, an expired one with `expired_at` and its seats given back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_follows_a_hold_to_its_confirmation_or_its_expiry() {
    let (url, store) = fresh_database().await;
    let disk = tempfile::tempdir().expect("dir");
    let client = reqwest::Client::new();
    let app = embedded(disk.path(), Some(&url)).await;
    let base = app.base.clone();
    let event: serde_json::Value = client
        .post(format!("{base}/api/events"))
        .json(
            &serde_json::json!({"name": "Audited checkout", "holdSeconds": 1,
            "sections": [{"section": "A", "rows": 2, "seatsPerRow": 4}]}),
        )
        .send()
        .await
        .expect("create")
        .json()
        .await
        .expect("json");
    let event = event["eventId"].as_str().expect("id").to_owned();
    let paid = reserve(&client, &base, &event, "paid").await;
    let lapsed = reserve(&client, &base, &event, "lapsed").await;
    let id = |outcome: &serde_json::Value| {
        uuid::Uuid::parse_str(outcome["reservationId"].as_str().expect("id")).expect("uuid")
    };
    let confirmed = client
        .post(format!("{base}/api/reservations/{}/confirm", id(&paid)))
        .header("X-User-Id", "paid")
        .json(&serde_json::json!({"paymentRef": "psp-991"}))
        .send()
        .await
        .expect("confirm");
    assert_eq!(confirmed.status(), 200);

    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let (paid_row, lapsed_row) = loop {
        let paid_row = store.find(id(&paid)).await.expect("find");
        let lapsed_row = store.find(id(&lapsed)).await.expect("find");
        if let (Some(p), Some(l)) = (&paid_row, &lapsed_row)
            && p.status == "CONFIRMED"
            && l.status == "EXPIRED"
        {
            break (p.clone(), l.clone());
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the audit never showed the confirmation and the expiry: {paid_row:?} {lapsed_row:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(paid_row.payment_ref.as_deref(), Some("psp-991"));
    assert!(paid_row.confirmed_at.is_some() && paid_row.expired_at.is_none());
    assert!(
        paid_row.expires_at.is_some(),
        "the hold it was confirmed in"
    );
    assert!(lapsed_row.expired_at.is_some() && lapsed_row.confirmed_at.is_none());
    assert!(lapsed_row.expired_at >= lapsed_row.expires_at);
    assert_eq!(lapsed_row.seats.as_array().map(Vec::len), Some(2));
    app.stop().await;
}

/// A WAITLISTED reservation is an audit row like any other (the forward migration allows the
/// status), and it moves on to HELD when seats come back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_follows_a_waitlisted_reservation_to_its_hold() {
    let (url, store) = fresh_database().await;
    let disk = tempfile::tempdir().expect("dir");
    let client = reqwest::Client::new();
    let app = embedded(disk.path(), Some(&url)).await;
    let base = app.base.clone();
    let event: serde_json::Value = client
        .post(format!("{base}/api/events"))
        .json(
            &serde_json::json!({"name": "Audited waitlist", "holdSeconds": 1,
            "sections": [{"section": "A", "rows": 1, "seatsPerRow": 2}]}),
        )
        .send()
        .await
        .expect("create")
        .json()
        .await
        .expect("json");
    let event = event["eventId"].as_str().expect("id").to_owned();
    reserve(&client, &base, &event, "first").await;
    let waiting: serde_json::Value = client
        .post(format!("{base}/api/reservations?wait=5000"))
        .json(
            &serde_json::json!({"eventId": event, "section": "A", "userId": "patient",
            "seatCount": 2, "waitlist": true}),
        )
        .send()
        .await
        .expect("reserve")
        .json()
        .await
        .expect("json");
    assert_eq!(waiting["status"], "WAITLISTED", "{waiting}");
    let id = uuid::Uuid::parse_str(waiting["reservationId"].as_str().expect("id")).expect("uuid");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    loop {
        if let Some(row) = store.find(id).await.expect("find") {
            if seen.last() != Some(&row.status) {
                seen.push(row.status.clone());
            }
            if row.status == "HELD" {
                assert!(row.waitlist_place.is_some(), "{row:?}");
                assert_eq!(
                    row.waitlist_place,
                    waiting["waitlistPlace"].as_i64(),
                    "the row keeps the place it waited at"
                );
                break;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the audit never showed the promotion: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        seen.first().map(String::as_str),
        Some("WAITLISTED"),
        "{seen:?}"
    );
    app.stop().await;
}
