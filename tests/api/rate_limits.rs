//! Rate limits over HTTP: a user over their write rate gets 429 with `Retry-After` and recovers;
//! an address is limited whoever its users, `X-Forwarded-For` counts only from a trusted proxy.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use seatflow_gateway::auth::AuthSettings;
use seatflow_gateway::limits::{LimitSettings, Rate};
use serde_json::json;

use crate::auth::{call, claims, create_event, hs256, jwt_settings};
use crate::helpers::{read, spawn_with, test_config};

#[tokio::test]
async fn a_user_over_the_write_rate_is_told_when_to_retry_and_recovers() {
    let dir = tempfile::tempdir().expect("dir");
    let mut config = test_config(dir.path());
    config.auth = jwt_settings();
    config.limits = LimitSettings {
        user_writes: Rate {
            per_sec: 1.0,
            burst: 2.0,
        },
        ..LimitSettings::default()
    };
    let app = spawn_with(config).await;
    let event = create_event(&app, &hs256(&claims("olga", &["organizer"]))).await;
    let ann = hs256(&claims("ann", &[]));
    let reserve = json!({"eventId": event, "section": "A", "seatCount": 1});
    for _ in 0..2 {
        let (status, body, _) = call(
            &app,
            Method::POST,
            "/api/reservations",
            Some(&ann),
            Some(reserve.clone()),
        )
        .await;
        assert!(status.is_success(), "{status} {body}");
    }
    let asked = std::time::Instant::now();
    let response = app
        .client
        .post(app.url("/api/reservations"))
        .bearer_auth(&ann)
        .json(&reserve)
        .send()
        .await
        .expect("request");
    // The refusal is held back for about the second ann should have waited, so a client that
    // asks again at once cannot ask faster than the rate.
    let held = asked.elapsed();
    assert!(
        held >= Duration::from_millis(700),
        "answered after {held:?}"
    );
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let (status, body) = read(response).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["error"], "rate_limited");
    assert_eq!(retry_after, Some(1));
    // Another user is not affected, nor are ann's reads.
    let bob = hs256(&claims("bob", &[]));
    let (status, _, _) = call(
        &app,
        Method::POST,
        "/api/reservations",
        Some(&bob),
        Some(reserve.clone()),
    )
    .await;
    assert!(status.is_success());
    let (status, _, _) = call(
        &app,
        Method::GET,
        "/api/users/ann/reservations",
        Some(&ann),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, body, _) = call(
        &app,
        Method::POST,
        "/api/reservations",
        Some(&ann),
        Some(reserve),
    )
    .await;
    assert!(status.is_success(), "recovered: {status} {body}");
    app.stop().await;
}

#[tokio::test]
async fn an_address_is_limited_and_a_forged_forwarded_for_does_not_escape_it() {
    let reads = |trusted: Vec<String>| {
        let dir = tempfile::tempdir().expect("dir");
        let mut config = test_config(dir.path());
        config.auth = AuthSettings {
            trusted_proxies: trusted,
            ..AuthSettings::default()
        };
        config.limits = LimitSettings {
            address_reads: Rate {
                per_sec: 1.0,
                burst: 3.0,
            },
            exempt: Vec::new(),
            // Refused at once: this test counts refusals, a held-back one would let the bucket
            // refill before the next request.
            refusal_delay_max_ms: 0,
            ..LimitSettings::default()
        };
        (config, dir)
    };
    let (config, _dir) = reads(Vec::new());
    let app = spawn_with(config).await;
    let get = |forwarded: &str| {
        app.client
            .get(app.url("/api/events"))
            .header("x-forwarded-for", forwarded)
            .send()
    };
    let mut statuses = Vec::new();
    for i in 0..5 {
        // Each claims another address; from a peer that is not a proxy, that proves nothing.
        statuses.push(
            get(&format!("198.51.100.{i}"))
                .await
                .expect("request")
                .status(),
        );
    }
    assert_eq!(
        statuses,
        [
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::TOO_MANY_REQUESTS,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
    // Health is never limited.
    let (status, _) = read(
        app.client
            .get(app.url("/health/ready"))
            .send()
            .await
            .expect("request"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    app.stop().await;

    // Behind a trusted proxy each client address has its own bucket.
    let (config, _dir) = reads(vec!["127.0.0.1".into(), "::1".into()]);
    let app = spawn_with(config).await;
    for i in 0..5 {
        let response = app
            .client
            .get(app.url("/api/events"))
            .header("x-forwarded-for", format!("198.51.100.{i}"))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), StatusCode::OK, "client {i}");
    }
    app.stop().await;
}
