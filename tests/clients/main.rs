//! Clients generated from the running server's OpenAPI document (openapi-generator, Python and
//! TypeScript) run a whole sale; every answer of both sales is validated against the document;
//! Swagger UI renders every operation in a headless Chromium. The work is done by `run` (shell,
//! Python, TypeScript beside this file); this test serves the API it runs against.

#[path = "../support/embedded.rs"]
mod embedded;

use std::process::Command;

#[tokio::test(flavor = "multi_thread")]
async fn generated_clients_run_a_sale_that_matches_the_document() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = seatflow::Config::embedded(&dir.path().join("data"), 2);
    let app = embedded::start(config).await;
    let work = dir.path().join("clients");
    std::fs::create_dir_all(&work).expect("work dir");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/run");
    let base = app.base.clone();
    let status =
        tokio::task::spawn_blocking(move || Command::new(script).arg(&base).arg(&work).status())
            .await
            .expect("join")
            .expect("tests/clients/run starts");
    app.stop().await;
    assert!(status.success(), "tests/clients/run failed: {status}");
}
