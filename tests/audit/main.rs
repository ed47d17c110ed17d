//! The Postgres audit projection on a real PostgreSQL (started by `ops/test`): how batches are
//! applied, and the archive procedure.

use std::time::Duration;

use chrono::{DateTime, Utc};
use seatflow_projections::audit::AuditRow;

#[path = "../support/database.rs"]
mod database;
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
