//! Clients generated from the running server's OpenAPI document (openapi-generator, Python and
//! TypeScript) run a whole sale; every answer of both sales is validated against the document;
//! Swagger UI renders every operation in a headless Chromium; schemathesis finds no answer the
//! document does not declare. The work is done by `run` and `schemathesis` (shell, Python,
//! TypeScript beside this file); these tests serve the API they run against.

#[path = "../support/embedded.rs"]
mod embedded;

use std::process::Command;

#[tokio::test(flavor = "multi_thread")]
async fn generated_clients_run_a_sale_that_matches_the_document() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = seatflow::Config::embedded(&dir.path().join("data"), 2);
    let app = embedded::start(config).await;
    // And one that authenticates, for the client that carries a token.
    let (signed_in, tokens) = start_jwt(&dir.path().join("jwt"), true).await;
    let work = dir.path().join("clients");
    std::fs::create_dir_all(&work).expect("work dir");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/run");
    let base = app.base.clone();
    let jwt_base = signed_in.base.clone();
    let status = tokio::task::spawn_blocking(move || {
        Command::new(script)
            .arg(&base)
            .arg(&work)
            .env("SEATFLOW_CLIENTS_JWT_BASE", jwt_base)
            .env("SEATFLOW_CLIENTS_JWT_TOKENS", tokens.join(" "))
            .status()
    })
    .await
    .expect("join")
    .expect("tests/clients/run starts");
    app.stop().await;
    signed_in.stop().await;
    assert!(status.success(), "tests/clients/run failed: {status}");
}

/// schemathesis over the document of a server that authenticates (`auth.mode = jwt`), with a
/// token of a user who holds every role; the rate limits are off, or its thousand requests a
/// minute would be answered 429 (which the document declares, and would prove nothing).
#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_finds_no_answer_the_document_does_not_declare() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (app, tokens) = start_jwt(&dir.path().join("data"), false).await;
    let token = tokens[3].clone();
    let work = dir.path().join("schemathesis");
    std::fs::create_dir_all(&work).expect("work dir");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/schemathesis");
    let base = app.base.clone();
    let status = tokio::task::spawn_blocking(move || {
        Command::new(script)
            .arg(&base)
            .arg(&token)
            .arg(&work)
            .status()
    })
    .await
    .expect("join")
    .expect("tests/clients/schemathesis starts");
    app.stop().await;
    assert!(
        status.success(),
        "tests/clients/schemathesis failed: {status}"
    );
}

/// An embedded server with `auth.mode = jwt` (the rate limits off unless `limited`: the
/// schemathesis run asks a thousand times a minute as one user), and tokens for olga the
/// organizer, ann, bob, and a user with every role.
async fn start_jwt(data: &std::path::Path, limited: bool) -> (embedded::Embedded, Vec<String>) {
    const SECRET: &str = "clients-test-only-hmac-secret-0123456789";
    let mut config = seatflow::Config::embedded(data, 2);
    config.auth = seatflow_gateway::auth::AuthSettings {
        mode: seatflow_gateway::auth::Mode::Jwt,
        hmac_secret: Some(seatflow_gateway::auth::SecretText::new(SECRET)),
        ..Default::default()
    };
    config.limits.enabled = limited;
    let app = embedded::start(config).await;
    let signer = seatflow_gateway::auth::token::Signer::new(SECRET, None, None).expect("signer");
    let hour = std::time::Duration::from_secs(3600);
    let tokens = [
        ("olga", vec!["organizer".to_owned()]),
        ("ann", vec![]),
        ("bob", vec![]),
        (
            "schemathesis",
            vec!["organizer".to_owned(), "admin".to_owned()],
        ),
    ]
    .iter()
    .map(|(sub, roles)| signer.sign(sub, roles, hour).expect("token"))
    .collect();
    (app, tokens)
}
