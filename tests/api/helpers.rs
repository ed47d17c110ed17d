//! Spawning seatflow for the API tests: in-process on port 0 with its own data directory, or as
//! a child process (for crash tests).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use seatflow::Config;

use crate::embedded::Embedded;
use serde_json::{Value, json};

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub data_dir: PathBuf,
    // Declared before the directory: fields drop in order, and the server must stop (its drop
    // waits for that) before its data directory is removed.
    server: Option<Embedded>,
    _dir: Option<tempfile::TempDir>,
}

pub fn test_config(data_dir: &Path) -> Config {
    Config::embedded(data_dir, 2)
}

/// Start seatflow in this process on a fresh data directory and wait until it is ready.
pub async fn spawn_app() -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().to_owned();
    let mut app = spawn_app_in(&data_dir).await;
    app._dir = Some(dir);
    app
}

/// Start seatflow in this process on `data_dir`.
pub async fn spawn_app_in(data_dir: &Path) -> TestApp {
    spawn_with(test_config(data_dir)).await
}

pub async fn spawn_with(config: Config) -> TestApp {
    let data_dir = config.processor.data_dir.clone();
    let server = crate::embedded::start(config).await;
    TestApp {
        address: server.base.clone(),
        client: reqwest::Client::new(),
        data_dir,
        server: Some(server),
        _dir: None,
    }
}

impl TestApp {
    /// Stop gracefully and wait until the store is closed.
    pub async fn stop(mut self) -> Option<tempfile::TempDir> {
        if let Some(server) = self.server.take() {
            server.stop().await;
        }
        self._dir.take()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        let response = self
            .client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("request");
        read(response).await
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        let response = self
            .client
            .get(self.url(path))
            .send()
            .await
            .expect("request");
        read(response).await
    }

    /// Create an event with `(name, rows, seats)` sections; returns its id.
    pub async fn create_event(&self, sections: &[(&str, u32, u32)]) -> String {
        let sections: Vec<Value> = sections
            .iter()
            .map(|(name, rows, seats)| json!({"section": name, "rows": rows, "seatsPerRow": seats}))
            .collect();
        let (status, body) = self
            .post(
                "/api/events",
                &json!({"name": "Test concert", "sections": sections}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["eventId"].as_str().expect("eventId").to_owned()
    }

    /// Reserve `count` adjacent seats and wait for the outcome.
    pub async fn reserve(
        &self,
        event: &str,
        section: &str,
        user: &str,
        count: u32,
    ) -> (StatusCode, Value) {
        self.post(
            "/api/reservations?wait=5000",
            &json!({"eventId": event, "section": section, "userId": user, "seatCount": count}),
        )
        .await
    }
}

pub async fn read(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let text = response.text().await.expect("body");
    let value = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}"))
    };
    (status, value)
}

pub async fn wait_ready(client: &reqwest::Client, address: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(response) = client.get(format!("{address}/health/ready")).send().await
            && response.status() == StatusCode::OK
        {
            return;
        }
        assert!(Instant::now() < deadline, "{address} never became ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// seatflow as a child process (so it can be killed with SIGKILL).
pub struct ChildApp {
    pub child: Child,
    pub address: String,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

pub fn spawn_process(data_dir: &Path, port: u16) -> ChildApp {
    let child = Command::new(env!("CARGO_BIN_EXE_seatflow"))
        .args(["--bind", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--partitions", "2"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("seatflow binary starts");
    ChildApp {
        child,
        address: format!("http://127.0.0.1:{port}"),
    }
}
