//! Shared by the test crates that need PostgreSQL: a fresh database per test.

/// A fresh database on the test PostgreSQL (started by `ops/test`), with the migrations applied.
pub async fn fresh_database() -> (String, seatflow_projections::audit::AuditStore) {
    let server = std::env::var("SEATFLOW_TEST_DATABASE_URL").unwrap_or_else(|_| {
        panic!("SEATFLOW_TEST_DATABASE_URL is not set: run the tests with ops/test (it starts PostgreSQL)")
    });
    let name = format!("audit_{}", uuid::Uuid::now_v7().simple());
    let status = std::process::Command::new("psql")
        .args([server.as_str(), "-qc", &format!("CREATE DATABASE {name}")])
        .status()
        .expect("psql runs");
    assert!(status.success(), "cannot create database {name}");
    let base = server.rsplit_once('/').expect("a database in the URL").0;
    let url = format!("{base}/{name}");
    let store = seatflow_projections::audit::AuditStore::new(&url, 2).expect("pool");
    store.migrate().await.expect("migrations");
    (url, store)
}
