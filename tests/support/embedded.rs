//! Shared by the test crates that run the embedded all-in-one in this process: start it on a
//! configuration, wait until it is ready, stop it cleanly.

use std::time::{Duration, Instant};

pub struct Embedded {
    pub base: String,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// Build and serve `config` (bind it to 127.0.0.1:0), ready when this returns.
pub async fn start(config: seatflow::Config) -> Embedded {
    let app = seatflow::App::build(config).await.expect("app builds");
    let base = format!("http://127.0.0.1:{}", app.port());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async move {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while client
        .get(format!("{base}/health/ready"))
        .send()
        .await
        .map_or(true, |r| r.status() != 200)
    {
        assert!(Instant::now() < deadline, "never ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Embedded { base, stop, server }
}

impl Embedded {
    /// Stop gracefully; the run must end without an error.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        self.server.await.expect("join").expect("clean stop");
    }
}
