//! Posting deliveries: one task per enabled webhook (a slow or dead receiver holds up only its
//! own task), each posting its webhook's due deliveries a few at a time, recording every
//! attempt, until its webhook is disabled or deleted. And [`project`], the step every delivery
//! projection takes with a batch of the log: the deliveries it owes, queued with its positions.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use seatflow_aggregates::{Event, Millis};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use uuid::Uuid;

use super::plan::{RetryPolicy, round};
use super::sign::{DELIVERY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, TOPIC_HEADER, signature};
use super::{
    Attempt, Delivery, DeliveryStatus, Disabled, Webhook, WebhookStore, WebhookStoreError,
};
use crate::retry::with_retries;

/// How deliveries are posted.
#[derive(Clone, Copy, Debug)]
pub struct SendSettings {
    pub retry: RetryPolicy,
    /// Longest a receiver may take to answer one post.
    pub timeout: Duration,
    /// Posts in flight to one webhook at once.
    pub parallel: usize,
    /// Pending deliveries a sender looks at at once (its webhook's oldest).
    pub window: usize,
    /// Post to names that resolve to loopback, private or link-local addresses too.
    pub allow_private: bool,
}

impl Default for SendSettings {
    fn default() -> Self {
        Self {
            retry: RetryPolicy::default(),
            timeout: Duration::from_secs(10),
            parallel: 4,
            window: 64,
            allow_private: false,
        }
    }
}

/// Tells the senders that deliveries were queued (a counter they watch).
pub type Queued = watch::Sender<u64>;

/// The projection's step for a batch of the log: the deliveries `events` owe the current
/// webhooks, queued with `positions` (the log positions after the batch) in one write.
pub async fn project(
    store: &dyn WebhookStore,
    projection: &str,
    events: &[Event],
    positions: &[(i32, i64)],
    queued: &Queued,
) -> Result<usize, WebhookStoreError> {
    let webhooks = store.webhooks().await?;
    let now = now_millis();
    let deliveries: Vec<Delivery> = events
        .iter()
        .flat_map(|event| super::notify::deliveries_for(&webhooks, event, now))
        .collect();
    let count = deliveries.len();
    store.enqueue(projection, deliveries, positions).await?;
    if count > 0 {
        queued.send_modify(|n| *n += 1);
    }
    Ok(count)
}

/// Run a sender for every enabled webhook until `stop`: webhooks registered (on any gateway)
/// are picked up within a second, disabled or deleted ones are let go.
pub async fn run(
    store: Arc<dyn WebhookStore>,
    settings: SendSettings,
    queued: watch::Receiver<u64>,
    stop: CancellationToken,
) {
    let client = match client(&settings) {
        Ok(client) => client,
        Err(e) => {
            warn!(error = %e, "cannot build the webhook HTTP client: no webhook is delivered");
            return;
        }
    };
    info!("webhook senders running");
    let mut senders: HashMap<Uuid, (CancellationToken, tokio::task::JoinHandle<()>)> =
        HashMap::new();
    while !stop.is_cancelled() {
        match store.webhooks().await {
            Ok(webhooks) => {
                let enabled: HashSet<Uuid> = webhooks
                    .iter()
                    .filter(|w| w.disabled.is_none())
                    .map(|w| w.id)
                    .collect();
                senders.retain(|id, (token, task)| {
                    let keep = enabled.contains(id) && !task.is_finished();
                    if !keep {
                        token.cancel();
                    }
                    keep
                });
                for webhook in webhooks {
                    if webhook.disabled.is_some() || senders.contains_key(&webhook.id) {
                        continue;
                    }
                    let token = stop.child_token();
                    let sender = Sender {
                        store: store.clone(),
                        client: client.clone(),
                        settings,
                        webhook: webhook.clone(),
                    };
                    let task = tokio::spawn(sender.run(queued.clone(), token.clone()));
                    senders.insert(webhook.id, (token, task));
                }
            }
            Err(e) => warn!(error = %e, "cannot list the webhooks; trying again"),
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            () = stop.cancelled() => {}
        }
    }
    for (token, task) in senders.into_values() {
        token.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
    }
    info!("webhook senders stopped");
}

/// The senders' HTTP client.
fn client(settings: &SendSettings) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(settings.timeout)
        .connect_timeout(settings.timeout)
        // A receiver's redirect is not followed: the registered address is the one posted to.
        .redirect(reqwest::redirect::Policy::none())
        // A name is posted to only at the public addresses it resolves to (`address`).
        .dns_resolver(Arc::new(super::address::PublicOnly {
            allow_private: settings.allow_private,
        }))
        .user_agent(concat!("seatflow-webhooks/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// What became of one post.
enum Posted {
    Delivered,
    /// 410: the receiver asks never to be posted to again.
    Gone,
    Failed,
}

/// The sender of one webhook.
struct Sender {
    store: Arc<dyn WebhookStore>,
    client: reqwest::Client,
    settings: SendSettings,
    webhook: Webhook,
}

impl Sender {
    async fn run(self, mut queued: watch::Receiver<u64>, stop: CancellationToken) {
        while !stop.is_cancelled() {
            let Some(window) = with_retries(&stop, "read pending webhook deliveries", || {
                self.store.pending(self.webhook.id, self.settings.window)
            })
            .await
            else {
                return;
            };
            let now = now_millis();
            let plan = round(&window, now);
            if plan.due.is_empty() {
                // Look again when a retry is due, when something is queued, or every 5 s.
                let wait = plan.next_due.map_or(Duration::from_secs(5), |at| {
                    Duration::from_millis(u64::try_from(at - now).unwrap_or(0))
                        .min(Duration::from_secs(5))
                });
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    _ = queued.changed() => {}
                    () = stop.cancelled() => return,
                }
                continue;
            }
            let due: Vec<Delivery> = plan.due.iter().map(|i| window[*i].clone()).collect();
            let posts = futures_util::stream::iter(due)
                .map(|delivery| self.post(delivery))
                .buffer_unordered(self.settings.parallel.max(1))
                .collect::<Vec<(Delivery, Posted)>>();
            // A stop does not wait for a slow receiver: a post cut short is not recorded, so
            // it is posted again after the restart (at least once).
            let attempts = tokio::select! {
                attempts = posts => attempts,
                () = stop.cancelled() => return,
            };
            let mut gone = None;
            for (delivery, posted) in attempts {
                if matches!(posted, Posted::Gone) {
                    gone = delivery.last_attempt.as_ref().map(|attempt| attempt.at);
                }
                if with_retries(&stop, "record a webhook delivery", || {
                    self.store.record(&delivery)
                })
                .await
                .is_none()
                {
                    return;
                }
            }
            if let Some(at) = gone {
                let disabled = Disabled {
                    at,
                    reason: "the receiver answered 410 Gone".to_owned(),
                };
                warn!(webhook = %self.webhook.id, url = %self.webhook.url, "webhook disabled: its receiver answered 410 Gone");
                with_retries(&stop, "disable a webhook", || {
                    self.store.disable(self.webhook.id, disabled.clone())
                })
                .await;
                return;
            }
        }
    }

    /// One attempt: post, then the delivery as it stands after it.
    async fn post(&self, mut delivery: Delivery) -> (Delivery, Posted) {
        let started = Instant::now();
        let at = now_millis();
        let timestamp = at.div_euclid(1_000);
        let signed = signature(&self.webhook.secret, timestamp, delivery.body.as_bytes());
        let answer = self
            .client
            .post(&self.webhook.url)
            .header("content-type", "application/json")
            .header(SIGNATURE_HEADER, signed)
            .header(TIMESTAMP_HEADER, timestamp.to_string())
            .header(DELIVERY_HEADER, delivery.id.to_string())
            .header(TOPIC_HEADER, delivery.topic.name())
            .body(delivery.body.clone())
            .send()
            .await;
        let (status_code, error, posted) = match answer {
            Ok(response) => {
                let code = response.status();
                let posted = if code.is_success() {
                    Posted::Delivered
                } else if code == reqwest::StatusCode::GONE {
                    Posted::Gone
                } else {
                    Posted::Failed
                };
                let error = (!code.is_success()).then(|| format!("the receiver answered {code}"));
                (Some(code.as_u16()), error, posted)
            }
            Err(e) if e.is_timeout() => (
                None,
                Some(format!(
                    "no answer within {} ms",
                    self.settings.timeout.as_millis()
                )),
                Posted::Failed,
            ),
            Err(e) => (None, Some(transport_error(&e)), Posted::Failed),
        };
        delivery.attempts += 1;
        delivery.last_attempt = Some(Attempt {
            at,
            status_code,
            error,
            duration_ms: started.elapsed().as_millis() as u64,
        });
        let finished = now_millis();
        match posted {
            Posted::Delivered => {
                delivery.status = DeliveryStatus::Delivered;
                delivery.delivered_at = Some(finished);
            }
            Posted::Gone => delivery.status = DeliveryStatus::Gone,
            Posted::Failed => match self.settings.retry.next_attempt(&delivery, finished) {
                Some(next) => delivery.next_attempt_at = next,
                None => delivery.status = DeliveryStatus::Failed,
            },
        }
        (delivery, posted)
    }
}

/// A transport error with its causes (reqwest's own text is only "error sending request").
fn transport_error(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn now_millis() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as Millis)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A receiver on this machine answering every post 200; how many connections it took.
    async fn local_receiver() -> (u16, Arc<std::sync::atomic::AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let taken = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = taken.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let mut request = [0u8; 4096];
                let _ = socket.read(&mut request).await;
                let _ = socket
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                    .await;
            }
        });
        (port, taken)
    }

    #[tokio::test]
    async fn the_senders_do_not_post_to_a_name_of_this_machine_unless_allowed() {
        let (port, taken) = local_receiver().await;
        let url = format!("http://localhost:{port}/hook");
        let refused = client(&SendSettings::default())
            .expect("client")
            .post(&url)
            .send()
            .await
            .expect_err("refused");
        let text = transport_error(&refused);
        assert!(text.contains("resolves only to loopback"), "{text}");
        assert_eq!(taken.load(std::sync::atomic::Ordering::SeqCst), 0);

        let allowed = SendSettings {
            allow_private: true,
            ..SendSettings::default()
        };
        let answer = client(&allowed)
            .expect("client")
            .post(&url)
            .send()
            .await
            .expect("posted");
        assert_eq!(answer.status(), reqwest::StatusCode::OK);
        assert_eq!(taken.load(std::sync::atomic::Ordering::SeqCst), 1);
    }
}
