//! Identity over HTTP: `auth.mode = jwt` (HMAC, PEM public keys, a JWKS that rotates), each way
//! a token is refused, roles, ownership (someone else's is 404), and `trusted-header` from
//! trusted and untrusted addresses. The keys are test-only (tests/api/keys/).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use seatflow_gateway::auth::{AuthSettings, Mode, SecretText};
use serde_json::{Value, json};

use crate::helpers::{TestApp, read, spawn_with, test_config};

pub(crate) const SECRET: &str = "test-only-hmac-secret-of-at-least-32-bytes";
const ISSUER: &str = "https://id.example.test/";
const AUDIENCE: &str = "seatflow-tests";

fn key_file(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/api/keys/{name}"))
}

fn key_pem(name: &str) -> Vec<u8> {
    std::fs::read(key_file(name)).expect("a test key")
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("time")
        .as_secs() as i64
}

/// Claims for `sub` valid for an hour, with the expected issuer and audience.
pub(crate) fn claims(sub: &str, roles: &[&str]) -> Value {
    json!({"sub": sub, "roles": roles, "exp": now() + 3600, "iss": ISSUER, "aud": AUDIENCE})
}

pub(crate) fn hs256(claims: &Value) -> String {
    sign(
        Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
}

fn sign(header: Header, claims: &Value, key: &EncodingKey) -> String {
    jsonwebtoken::encode(&header, claims, key).expect("signs")
}

fn with_kid(algorithm: Algorithm, kid: &str) -> Header {
    let mut header = Header::new(algorithm);
    header.kid = Some(kid.to_owned());
    header
}

pub(crate) fn jwt_settings() -> AuthSettings {
    AuthSettings {
        mode: Mode::Jwt,
        hmac_secret: Some(SecretText::new(SECRET)),
        public_keys: vec![
            key_file("rsa.pub.pem"),
            key_file("ec.pub.pem"),
            key_file("ed.pub.pem"),
        ],
        issuer: Some(ISSUER.into()),
        audience: Some(AUDIENCE.into()),
        leeway_secs: 5,
        ..AuthSettings::default()
    }
}

pub(crate) async fn spawn_auth(settings: AuthSettings) -> (TestApp, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("dir");
    let mut config = test_config(dir.path());
    config.auth = settings;
    // These tests make more writes per user than a person would: the limits have their own.
    config.limits.enabled = false;
    (spawn_with(config).await, dir)
}

pub(crate) async fn call(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value, Option<String>) {
    let mut request = app.client.request(method, app.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request");
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().expect("ascii").to_owned());
    let (status, body) = read(response).await;
    (status, body, challenge)
}

pub(crate) async fn create_event(app: &TestApp, token: &str) -> String {
    let (status, body, _) = call(
        app,
        reqwest::Method::POST,
        "/api/events",
        Some(token),
        Some(json!({"name": "Secured", "holdSeconds": 600,
            "sections": [{"section": "A", "rows": 2, "seatsPerRow": 10}]})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["eventId"].as_str().expect("eventId").to_owned()
}

#[tokio::test]
async fn every_bad_token_is_refused_with_401_and_a_bearer_challenge() {
    let (app, _dir) = spawn_auth(jwt_settings()).await;
    let get = |token: Option<String>| {
        let app = &app;
        async move {
            call(
                app,
                reqwest::Method::GET,
                "/api/events",
                token.as_deref(),
                None,
            )
            .await
        }
    };

    let (status, body, challenge) = get(None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"], "unauthorized");
    assert_eq!(challenge.as_deref(), Some("Bearer realm=\"seatflow\""));

    let rsa_public_bytes = key_pem("rsa.pub.pem");
    let other_secret = EncodingKey::from_secret(b"another-secret-of-at-least-32-bytes!!");
    let refused: Vec<(&str, String)> = vec![
        ("garbage", "not.a.jwt".to_owned()),
        (
            "bad signature",
            sign(
                Header::new(Algorithm::HS256),
                &claims("ann", &[]),
                &other_secret,
            ),
        ),
        ("alg none", {
            let enc = |v: &Value| {
                use base64::Engine;
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
            };
            format!(
                "{}.{}.",
                enc(&json!({"alg": "none", "typ": "JWT"})),
                enc(&claims("ann", &[]))
            )
        }),
        (
            // The RSA public key's bytes used as an HMAC secret: the confusion attack.
            "HS256 signed with the RSA public key",
            sign(
                Header::new(Algorithm::HS256),
                &claims("ann", &[]),
                &EncodingKey::from_secret(&rsa_public_bytes),
            ),
        ),
        (
            "expired",
            hs256(&json!({"sub": "ann", "exp": now() - 60, "iss": ISSUER, "aud": AUDIENCE})),
        ),
        (
            "not yet valid",
            hs256(
                &json!({"sub": "ann", "exp": now() + 3600, "nbf": now() + 600, "iss": ISSUER, "aud": AUDIENCE}),
            ),
        ),
        (
            "wrong audience",
            hs256(&json!({"sub": "ann", "exp": now() + 3600, "iss": ISSUER, "aud": "other"})),
        ),
        (
            "wrong issuer",
            hs256(
                &json!({"sub": "ann", "exp": now() + 3600, "iss": "https://evil/", "aud": AUDIENCE}),
            ),
        ),
        (
            "no sub",
            hs256(&json!({"exp": now() + 3600, "iss": ISSUER, "aud": AUDIENCE})),
        ),
        (
            "no exp",
            hs256(&json!({"sub": "ann", "iss": ISSUER, "aud": AUDIENCE})),
        ),
    ];
    for (case, token) in refused {
        let (status, body, challenge) = get(Some(token)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{case}: {body}");
        assert_eq!(body["error"], "invalid_token", "{case}: {body}");
        assert!(!body.to_string().contains(SECRET), "{case}: {body}");
        let challenge = challenge.unwrap_or_default();
        assert!(
            challenge.starts_with("Bearer realm=\"seatflow\", error=\"invalid_token\""),
            "{case}: {challenge}"
        );
    }
    let (status, body, _) = get(Some(hs256(&claims("ann", &[])))).await;
    assert_eq!(status, StatusCode::OK, "a good token passes: {body}");
    // Health, metrics and the document stay open, and none of them shows the secret.
    let (status, _, _) = call(&app, reqwest::Method::GET, "/health/ready", None, None).await;
    assert_eq!(status, StatusCode::OK);
    for path in ["/metrics", "/openapi.json"] {
        let text = app
            .client
            .get(app.url(path))
            .send()
            .await
            .expect("request")
            .text()
            .await
            .expect("text");
        assert!(!text.is_empty() && !text.contains(SECRET), "{path}");
    }
    app.stop().await;
}

#[tokio::test]
async fn rsa_p256_and_ed25519_keys_from_pem_files_verify_their_tokens() {
    let (app, _dir) = spawn_auth(jwt_settings()).await;
    let signed = [
        (
            Algorithm::RS256,
            EncodingKey::from_rsa_pem(&key_pem("rsa.key.pem")).expect("rsa"),
        ),
        (
            Algorithm::ES256,
            EncodingKey::from_ec_pem(&key_pem("ec.key.pem")).expect("ec"),
        ),
        (
            Algorithm::EdDSA,
            EncodingKey::from_ed_pem(&key_pem("ed.key.pem")).expect("ed"),
        ),
    ];
    for (algorithm, key) in &signed {
        let token = sign(Header::new(*algorithm), &claims("ann", &[]), key);
        let (status, body, _) = call(
            &app,
            reqwest::Method::GET,
            "/api/events",
            Some(&token),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{algorithm:?}: {body}");
    }
    // An RS256 token signed with the P-256 key's algorithm swapped in the header does not pass.
    let (_, ec_key) = &signed[1];
    let forged = sign(Header::new(Algorithm::ES256), &claims("ann", &[]), ec_key);
    let mut parts: Vec<String> = forged.split('.').map(str::to_owned).collect();
    {
        use base64::Engine;
        parts[0] = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(json!({"alg": "RS256", "typ": "JWT"}).to_string());
    }
    let (status, _, _) = call(
        &app,
        reqwest::Method::GET,
        "/api/events",
        Some(&parts.join(".")),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    app.stop().await;
}

#[tokio::test]
async fn roles_ownership_and_the_user_named_in_a_request() {
    let (app, _dir) = spawn_auth(jwt_settings()).await;
    let organizer = hs256(&claims("olga", &["organizer"]));
    let ann = hs256(&claims("ann", &[]));
    let bob = hs256(&claims("bob", &[]));
    // Roles also come as a space-separated `scope`.
    let admin = hs256(
        &json!({"sub": "ada", "scope": "read admin", "exp": now() + 3600,
        "iss": ISSUER, "aud": AUDIENCE}),
    );
    use reqwest::Method;

    let (status, body, _) = call(
        &app,
        Method::POST,
        "/api/events",
        Some(&ann),
        Some(json!({"name": "x", "sections": [{"section": "A", "rows": 1, "seatsPerRow": 1}]})),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"], "forbidden");
    let event = create_event(&app, &organizer).await;

    // The user is the token's; naming another is refused, naming oneself or no one is fine.
    let reserve = |user: Option<&str>| {
        let mut body = json!({"eventId": event, "section": "A", "seatCount": 1});
        if let Some(user) = user {
            body["userId"] = json!(user);
        }
        body
    };
    let (status, body, _) = call(
        &app,
        Method::POST,
        "/api/reservations?wait=5000",
        Some(&ann),
        Some(reserve(Some("bob"))),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["field"], "userId", "{body}");
    let (status, held, _) = call(
        &app,
        Method::POST,
        "/api/reservations?wait=5000",
        Some(&ann),
        Some(reserve(None)),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{held}");
    assert_eq!(held["userId"], "ann");
    assert_eq!(held["status"], "HELD");
    let id = held["reservationId"].as_str().expect("id").to_owned();
    let (status, _, _) = call(
        &app,
        Method::POST,
        "/api/reservations?wait=5000",
        Some(&ann),
        Some(reserve(Some("ann"))),
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    // Someone else's reservation and history do not exist for bob; they do for an admin.
    let one = format!("/api/reservations/{id}");
    for (method, path) in [
        (Method::GET, one.clone()),
        (Method::DELETE, one.clone()),
        (Method::POST, format!("{one}/confirm")),
        (Method::GET, "/api/users/ann/reservations".to_owned()),
    ] {
        let (status, body, _) = call(&app, method.clone(), &path, Some(&bob), None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {body}");
    }
    let (status, mine, _) = call(
        &app,
        Method::GET,
        "/api/users/bob/reservations",
        Some(&bob),
        None,
    )
    .await;
    assert_eq!((status, mine), (StatusCode::OK, json!([])));
    let (status, seen, _) = call(&app, Method::GET, &one, Some(&admin), None).await;
    assert_eq!(status, StatusCode::OK, "{seen}");
    let (status, history, _) = call(
        &app,
        Method::GET,
        "/api/users/ann/reservations",
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(history.as_array().map(Vec::len), Some(1), "{history}");

    // The owner confirms without naming herself; a name that is not hers is refused.
    let confirm = format!("{one}/confirm");
    let spoofed = app
        .client
        .post(app.url(&confirm))
        .bearer_auth(&ann)
        .header("X-User-Id", "bob")
        .send()
        .await
        .expect("request");
    let (status, body) = read(spoofed).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["field"], "X-User-Id");
    let (status, confirmed, _) = call(&app, Method::POST, &confirm, Some(&ann), None).await;
    assert_eq!(status, StatusCode::OK, "{confirmed}");
    assert_eq!(confirmed["status"], "CONFIRMED");
    // An admin may cancel it for her.
    let (status, cancelled, _) = call(&app, Method::DELETE, &one, Some(&admin), None).await;
    assert_eq!(status, StatusCode::OK, "{cancelled}");
    assert_eq!(cancelled["status"], "CANCELLED");
    app.stop().await;
}

/// A stand-in identity provider: serves a JWKS document that can be swapped, and counts the
/// fetches.
struct Provider {
    url: String,
    document: Arc<parking_lot::Mutex<String>>,
    fetches: Arc<AtomicUsize>,
    _server: tokio::task::JoinHandle<()>,
}

async fn provider(first: &str) -> Provider {
    let document = Arc::new(parking_lot::Mutex::new(first.to_owned()));
    let fetches = Arc::new(AtomicUsize::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let (served, counted) = (document.clone(), fetches.clone());
    let server = tokio::spawn(async move {
        let app = poem::endpoint::make_sync(move |_| {
            counted.fetch_add(1, Ordering::SeqCst);
            poem::Response::builder()
                .content_type("application/json")
                .body(served.lock().clone())
        });
        let acceptor = poem::listener::TcpAcceptor::from_tokio(listener).expect("acceptor");
        let _ = poem::Server::new_with_acceptor(acceptor).run(app).await;
    });
    Provider {
        url: format!("http://{address}/.well-known/jwks.json"),
        document,
        fetches,
        _server: server,
    }
}

#[tokio::test]
async fn a_rotated_jwks_is_fetched_again_for_an_unknown_kid_at_most_every_ten_seconds() {
    let read_json = |name: &str| String::from_utf8(key_pem(name)).expect("utf-8");
    let idp = provider(&read_json("jwks-first.json")).await;
    let (app, _dir) = spawn_auth(AuthSettings {
        mode: Mode::Jwt,
        jwks: Some(idp.url.clone()),
        issuer: Some(ISSUER.into()),
        audience: Some(AUDIENCE.into()),
        ..AuthSettings::default()
    })
    .await;
    assert_eq!(idp.fetches.load(Ordering::SeqCst), 1, "fetched at start");
    let rsa = EncodingKey::from_rsa_pem(&key_pem("rsa.key.pem")).expect("rsa");
    let ec = EncodingKey::from_ec_pem(&key_pem("ec.key.pem")).expect("ec");
    let get = |token: String| {
        let app = &app;
        async move {
            call(app, reqwest::Method::GET, "/api/events", Some(&token), None)
                .await
                .0
        }
    };
    assert_eq!(
        get(sign(
            with_kid(Algorithm::RS256, "rsa-1"),
            &claims("ann", &[]),
            &rsa
        ))
        .await,
        StatusCode::OK
    );
    // An HMAC token is refused: no HMAC key is configured, and a JWKS gives none.
    assert_eq!(
        get(hs256(&claims("ann", &[]))).await,
        StatusCode::UNAUTHORIZED
    );

    // The provider rotates to a P-256 key; a token with its kid makes the gateway look again.
    *idp.document.lock() = read_json("jwks-rotated.json");
    assert_eq!(
        get(sign(
            with_kid(Algorithm::ES256, "ec-2"),
            &claims("ann", &[]),
            &ec
        ))
        .await,
        StatusCode::OK
    );
    assert_eq!(
        idp.fetches.load(Ordering::SeqCst),
        2,
        "one refresh for the unknown kid"
    );
    // Made-up kids right after do not make it fetch again.
    for i in 0..20 {
        let token = sign(
            with_kid(Algorithm::ES256, &format!("made-up-{i}")),
            &claims("ann", &[]),
            &ec,
        );
        assert_eq!(get(token).await, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        idp.fetches.load(Ordering::SeqCst),
        2,
        "refreshes are rate-limited"
    );
    // The rotated-out key no longer verifies.
    assert_eq!(
        get(sign(
            with_kid(Algorithm::RS256, "rsa-1"),
            &claims("ann", &[]),
            &rsa
        ))
        .await,
        StatusCode::UNAUTHORIZED
    );
    app.stop().await;
}

#[tokio::test]
async fn trusted_headers_count_only_from_a_trusted_proxy() {
    let trusted = AuthSettings {
        mode: Mode::TrustedHeader,
        trusted_proxies: vec!["127.0.0.1".into(), "::1".into()],
        ..AuthSettings::default()
    };
    let (app, _dir) = spawn_auth(trusted.clone()).await;
    let as_user = |user: &str, roles: &str| {
        app.client
            .post(app.url("/api/events"))
            .header("X-User-Id", user)
            .header("X-User-Roles", roles)
            .json(&json!({"name": "Proxied", "sections": [{"section": "A", "rows": 1, "seatsPerRow": 2}]}))
    };
    let (status, body) = read(as_user("olga", "organizer").send().await.expect("request")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, _) = read(as_user("ann", "").send().await.expect("request")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = read(
        app.client
            .get(app.url("/api/events"))
            .send()
            .await
            .expect("request"),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a proxy that names no user"
    );
    app.stop().await;

    // The same headers from an address that is not a proxy: 401.
    let (app, _dir) = spawn_auth(AuthSettings {
        trusted_proxies: vec!["10.9.8.7".into()],
        ..trusted
    })
    .await;
    let spoofed = app
        .client
        .get(app.url("/api/users/victim/reservations"))
        .header("X-User-Id", "victim")
        .header("X-Forwarded-For", "10.9.8.7")
        .send()
        .await
        .expect("request");
    let (status, body) = read(spoofed).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    app.stop().await;
}

#[test]
fn unsafe_settings_refuse_to_start_with_a_message_naming_them() {
    let dir = tempfile::tempdir().expect("dir");
    let mut config = test_config(dir.path());
    config.http.bind = "0.0.0.0:8080".into();
    let refused = format!("{:#}", config.validate().expect_err("none on 0.0.0.0"));
    assert!(
        refused.contains("auth.mode") && refused.contains("allow_insecure"),
        "{refused}"
    );
    config.auth.allow_insecure = true;
    config.validate().expect("allowed on purpose");

    config.auth = AuthSettings {
        mode: Mode::TrustedHeader,
        ..AuthSettings::default()
    };
    let refused = format!("{:#}", config.validate().expect_err("no proxies"));
    assert!(refused.contains("auth.trusted_proxies"), "{refused}");
    config.auth = AuthSettings {
        mode: Mode::Jwt,
        ..AuthSettings::default()
    };
    let refused = format!("{:#}", config.validate().expect_err("no key"));
    assert!(refused.contains("auth.hmac_secret"), "{refused}");

    // The secret never prints.
    config.auth.hmac_secret = Some(SecretText::new(SECRET));
    let printed = format!("{config:?} {config:#?}");
    assert!(!printed.contains(SECRET), "{printed}");
}

#[tokio::test]
async fn the_document_carries_the_bearer_scheme_on_every_api_operation() {
    let (app, _dir) = spawn_auth(jwt_settings()).await;
    let (status, document, _) = call(&app, reqwest::Method::GET, "/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        document["components"]["securitySchemes"]["bearerAuth"]["scheme"],
        "bearer"
    );
    let mut operations = 0;
    for (path, item) in document["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("operations") {
            if path.starts_with("/api/") {
                operations += 1;
                assert_eq!(
                    operation["security"],
                    json!([{"bearerAuth": []}]),
                    "{method} {path}"
                );
                assert!(operation["responses"]["401"].is_object(), "{method} {path}");
            }
        }
    }
    assert!(operations >= 8, "{operations}");
    app.stop().await;
}
