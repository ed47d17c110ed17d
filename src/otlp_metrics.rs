//! Pushes the process's metrics to an OpenTelemetry collector by OTLP (HTTP/protobuf,
//! `POST /v1/metrics`) when one is configured, beside the `/metrics` scrape: every
//! `OTEL_METRIC_EXPORT_INTERVAL` (60 s by default; k8s: 15 s) and once more when the process
//! ends, so a short command's last numbers are not lost. Off with `OTEL_METRICS_EXPORTER=none`.
//!
//! The push runs on its own thread with its own small runtime: it never competes with the
//! request path, and it works the same for every role and command.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tracing::{info, warn};

/// The pushing thread; dropping it pushes once more and waits for that (at most the timeout).
#[derive(Debug)]
pub struct MetricsPush {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    timeout: Duration,
}

impl Drop for MetricsPush {
    fn drop(&mut self) {
        drop(self.stop.take());
        let Some(thread) = self.thread.take() else {
            return;
        };
        let deadline = Instant::now() + self.timeout + Duration::from_secs(1);
        while !thread.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if thread.is_finished() {
            let _ = thread.join();
        }
    }
}

/// Where and how to push, from the standard `OTEL_*` variables.
#[derive(Clone, Debug, PartialEq)]
pub struct PushConfig {
    pub url: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub headers: Vec<(String, String)>,
}

impl PushConfig {
    /// `None` when no endpoint is configured or metrics export is turned off.
    /// `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT` is the whole URL; `OTEL_EXPORTER_OTLP_ENDPOINT` is
    /// the collector's base, `/v1/metrics` appended.
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Option<Self> {
        let var = |name: &str| var(name).filter(|value| !value.trim().is_empty());
        if var("OTEL_METRICS_EXPORTER").is_some_and(|exporter| exporter.trim() == "none") {
            return None;
        }
        let url = match var("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT") {
            Some(url) => url,
            None => format!(
                "{}/v1/metrics",
                var("OTEL_EXPORTER_OTLP_ENDPOINT")?.trim_end_matches('/')
            ),
        };
        let millis = |name: &str, default: u64| {
            Duration::from_millis(
                var(name)
                    .and_then(|value| value.trim().parse().ok())
                    .unwrap_or(default),
            )
        };
        let headers = var("OTEL_EXPORTER_OTLP_METRICS_HEADERS")
            .or_else(|| var("OTEL_EXPORTER_OTLP_HEADERS"))
            .map(|list| parse_headers(&list))
            .unwrap_or_default();
        Some(Self {
            url,
            interval: millis("OTEL_METRIC_EXPORT_INTERVAL", 60_000).max(Duration::from_millis(10)),
            timeout: millis(
                "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT",
                millis("OTEL_EXPORTER_OTLP_TIMEOUT", 10_000).as_millis() as u64,
            ),
            headers,
        })
    }
}

/// `key=value,key2=value2`, values percent-decoded (the OTLP exporter convention).
fn parse_headers(list: &str) -> Vec<(String, String)> {
    list.split(',')
        .filter_map(|pair| pair.split_once('='))
        .map(|(key, value)| (key.trim().to_owned(), percent_decode(value.trim())))
        .filter(|(key, _)| !key.is_empty())
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        let hex = bytes
            .get(at + 1..at + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[at], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                at += 3;
            }
            (byte, _) => {
                out.push(byte);
                at += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Start pushing, when configured; `resource` names this process (`service.name`,
/// `service.instance.id`, ...).
pub fn start(config: PushConfig, resource: Vec<(String, String)>) -> Option<MetricsPush> {
    let (stop, stopped) = mpsc::channel::<()>();
    let timeout = config.timeout;
    let thread = std::thread::Builder::new()
        .name("otlp-metrics".into())
        .spawn(move || push_until_stopped(&config, &resource, &stopped));
    match thread {
        Ok(thread) => Some(MetricsPush {
            stop: Some(stop),
            thread: Some(thread),
            timeout,
        }),
        Err(e) => {
            warn!(error = %e, "no OTLP export of metrics: cannot start its thread");
            None
        }
    }
}

fn push_until_stopped(
    config: &PushConfig,
    resource: &[(String, String)],
    stopped: &mpsc::Receiver<()>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            warn!(error = %e, "no OTLP export of metrics: cannot start its runtime");
            return;
        }
    };
    let client = match reqwest::Client::builder().timeout(config.timeout).build() {
        Ok(client) => client,
        Err(e) => {
            warn!(error = %e, "no OTLP export of metrics: cannot make its HTTP client");
            return;
        }
    };
    info!(url = %config.url, interval_ms = config.interval.as_millis() as u64, "pushing metrics by OTLP");
    let mut failing = false;
    loop {
        let last = !matches!(
            stopped.recv_timeout(config.interval),
            Err(RecvTimeoutError::Timeout)
        );
        match runtime.block_on(push(&client, config, resource)) {
            Ok(()) if failing => {
                failing = false;
                info!(url = %config.url, "OTLP metrics export works again");
            }
            Ok(()) => {}
            // One line when it starts failing, not one per interval.
            Err(e) if !failing => {
                failing = true;
                warn!(url = %config.url, error = %e, "OTLP metrics export failed; retrying every interval");
            }
            Err(_) => {}
        }
        if last {
            return;
        }
    }
}

async fn push(
    client: &reqwest::Client,
    config: &PushConfig,
    resource: &[(String, String)],
) -> anyhow::Result<()> {
    let body = seatflow_telemetry::metrics().otlp_request(resource)?;
    let mut request = client
        .post(&config.url)
        .header("content-type", "application/x-protobuf")
        .body(body);
    for (key, value) in &config.headers {
        request = request.header(key, value);
    }
    let response = request.send().await?;
    anyhow::ensure!(
        response.status().is_success(),
        "the collector answered {}",
        response.status()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(vars: &[(&str, &str)]) -> Option<PushConfig> {
        PushConfig::from_env(|name| {
            vars.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| (*value).to_owned())
        })
    }

    #[test]
    fn the_base_endpoint_gets_the_metrics_path_and_the_metrics_endpoint_is_taken_whole() {
        let base = config(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")])
            .expect("configured");
        assert_eq!(base.url, "http://collector:4318/v1/metrics");
        assert_eq!(
            (base.interval, base.timeout),
            (Duration::from_secs(60), Duration::from_secs(10))
        );
        let whole = config(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            (
                "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
                "http://other:9000/push",
            ),
            ("OTEL_METRIC_EXPORT_INTERVAL", "15000"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
        ])
        .expect("configured");
        assert_eq!(whole.url, "http://other:9000/push");
        assert_eq!(
            (whole.interval, whole.timeout),
            (Duration::from_secs(15), Duration::from_millis(2500))
        );
    }

    #[test]
    fn nothing_is_pushed_without_an_endpoint_or_with_the_exporter_off() {
        assert_eq!(config(&[]), None);
        assert_eq!(config(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")]), None);
        assert_eq!(
            config(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
                ("OTEL_METRICS_EXPORTER", "none"),
            ]),
            None
        );
    }

    #[test]
    fn headers_are_a_comma_list_with_percent_encoded_values() {
        let config = config(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "authorization=Bearer%20abc%3D, x-tenant = seatflow,broken",
            ),
        ])
        .expect("configured");
        assert_eq!(
            config.headers,
            vec![
                ("authorization".to_owned(), "Bearer abc=".to_owned()),
                ("x-tenant".to_owned(), "seatflow".to_owned()),
            ]
        );
    }
}
