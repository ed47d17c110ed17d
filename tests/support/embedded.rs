//! Shared by the test crates that run the embedded all-in-one in this process: start it on a
//! configuration, wait until it is ready, stop it cleanly.
//!
//! The server runs on a thread and runtime of its own, not on the test's: a test that ends
//! without `stop` drops its [`Embedded`], and the drop stops the server and waits until the
//! store is closed. Left to the test's runtime, the server would be cancelled mid-shutdown, its
//! workers would close RocksDB on their own threads, and when that was the last test the process
//! could exit under them (RocksDB aborts: "pthread lock: Invalid argument").

use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub struct Embedded {
    pub base: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<JoinHandle<anyhow::Result<()>>>,
}

/// Build and serve `config` (bind it to 127.0.0.1:0), ready when this returns.
pub async fn start(config: seatflow::Config) -> Embedded {
    let (built, port) = tokio::sync::oneshot::channel::<u16>();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = std::thread::Builder::new()
        .name("embedded-server".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            runtime.block_on(async move {
                let app = seatflow::App::build(config).await?;
                let _ = built.send(app.port());
                app.run_until(async move {
                    let _ = stopped.await;
                })
                .await
            })
        })
        .expect("server thread");
    let port = match port.await {
        Ok(port) => port,
        Err(_) => match server.join() {
            Ok(result) => panic!("the app did not build: {:?}", result.err()),
            Err(panic) => std::panic::resume_unwind(panic),
        },
    };
    let base = format!("http://127.0.0.1:{port}");
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
    Embedded {
        base,
        stop: Some(stop),
        server: Some(server),
    }
}

impl Embedded {
    /// Stop gracefully; the run must end without an error.
    pub async fn stop(mut self) {
        let server = self.server.take().expect("running");
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::task::spawn_blocking(move || server.join())
            .await
            .expect("join")
            .expect("server thread")
            .expect("clean stop");
    }
}

impl Drop for Embedded {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            if let Some(stop) = self.stop.take() {
                let _ = stop.send(());
            }
            let _ = server.join();
        }
    }
}
