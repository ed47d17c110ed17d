//! Webhooks: an organizer registers a receiver for some of what the log decides (holds,
//! confirmations, expiries, cancellations, promotions, sold-out sections), reads it, removes
//! it, and reads its delivery log. Deliveries are made by the delivery projection
//! (`seatflow_projections::webhooks`), not here.

use std::net::IpAddr;
use std::sync::Arc;

use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi};
use reqwest::Url;
use seatflow_projections::webhooks::address::is_private;
use seatflow_projections::webhooks::sign::new_secret;
use seatflow_projections::webhooks::{
    Delivery, DeliveryStatus, Topic, Webhook, WebhookStore, WebhookStoreError,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::model::{Timestamp, UuidText};
use super::{AppState, Tag, default_limit, now_millis};
use crate::auth::{Caller, Role};
use crate::body::JsonBody;
use crate::error::ApiError;

/// Longest webhook URL accepted.
const MAX_URL_CHARS: usize = 2_048;
/// Most webhooks one organizer may have.
pub const MAX_WEBHOOKS_PER_OWNER: usize = 50;

/// Where webhooks are kept, and who may be posted to.
#[derive(Clone, Debug)]
pub struct WebhookRegistry {
    pub store: Arc<dyn WebhookStore>,
    /// Accept URLs on loopback, private and link-local addresses (tests, a local receiver).
    pub allow_private_urls: bool,
}

/// What a webhook is told of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum, Serialize, Deserialize)]
#[oai(rename = "WebhookEvent")]
pub enum TopicDto {
    #[oai(rename = "reservation.held")]
    #[serde(rename = "reservation.held")]
    ReservationHeld,
    #[oai(rename = "reservation.confirmed")]
    #[serde(rename = "reservation.confirmed")]
    ReservationConfirmed,
    #[oai(rename = "reservation.expired")]
    #[serde(rename = "reservation.expired")]
    ReservationExpired,
    #[oai(rename = "reservation.cancelled")]
    #[serde(rename = "reservation.cancelled")]
    ReservationCancelled,
    #[oai(rename = "waitlist.promoted")]
    #[serde(rename = "waitlist.promoted")]
    WaitlistPromoted,
    #[oai(rename = "section.sold_out")]
    #[serde(rename = "section.sold_out")]
    SectionSoldOut,
}

impl From<TopicDto> for Topic {
    fn from(topic: TopicDto) -> Self {
        match topic {
            TopicDto::ReservationHeld => Self::ReservationHeld,
            TopicDto::ReservationConfirmed => Self::ReservationConfirmed,
            TopicDto::ReservationExpired => Self::ReservationExpired,
            TopicDto::ReservationCancelled => Self::ReservationCancelled,
            TopicDto::WaitlistPromoted => Self::WaitlistPromoted,
            TopicDto::SectionSoldOut => Self::SectionSoldOut,
        }
    }
}

impl From<Topic> for TopicDto {
    fn from(topic: Topic) -> Self {
        match topic {
            Topic::ReservationHeld => Self::ReservationHeld,
            Topic::ReservationConfirmed => Self::ReservationConfirmed,
            Topic::ReservationExpired => Self::ReservationExpired,
            Topic::ReservationCancelled => Self::ReservationCancelled,
            Topic::WaitlistPromoted => Self::WaitlistPromoted,
            Topic::SectionSoldOut => Self::SectionSoldOut,
        }
    }
}

/// A receiver to register.
#[derive(Debug, Clone, Object, Serialize, Deserialize)]
#[oai(rename = "NewWebhook", rename_all = "camelCase")]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewWebhookDto {
    /// Where deliveries are posted: an `http` or `https` URL (public addresses only, unless
    /// the server allows private ones).
    #[oai(validator(min_length = 1, max_length = 2048))]
    pub url: String,
    /// What it is told of (at least one).
    #[oai(validator(min_items = 1, max_items = 6))]
    pub events: Vec<TopicDto>,
    /// Only this event's notifications (absent: every event's).
    #[serde(default)]
    pub event_id: Option<UuidText>,
}

/// A registered receiver.
#[derive(Debug, Clone, Object)]
#[oai(rename = "Webhook", rename_all = "camelCase")]
pub struct WebhookDto {
    pub id: UuidText,
    pub url: String,
    pub events: Vec<TopicDto>,
    #[oai(skip_serializing_if_is_none)]
    pub event_id: Option<UuidText>,
    pub created_at: Timestamp,
    /// False once disabled (its receiver answered 410 Gone): it is posted nothing more.
    pub enabled: bool,
    #[oai(skip_serializing_if_is_none)]
    pub disabled_at: Option<Timestamp>,
    #[oai(skip_serializing_if_is_none)]
    pub disabled_reason: Option<String>,
    /// The key of its signatures (`X-Seatflow-Signature`: hex HMAC-SHA256 of the
    /// `X-Seatflow-Timestamp` text followed by the body). Given once, in the answer to its
    /// registration; never again.
    #[oai(skip_serializing_if_is_none)]
    pub secret: Option<String>,
}

impl WebhookDto {
    fn of(webhook: &Webhook, with_secret: bool) -> Self {
        Self {
            id: UuidText(webhook.id.to_string()),
            url: webhook.url.clone(),
            events: webhook.topics.iter().copied().map(TopicDto::from).collect(),
            event_id: webhook.event_id.clone().map(UuidText),
            created_at: Timestamp::from_millis(webhook.created_at),
            enabled: webhook.disabled.is_none(),
            disabled_at: webhook
                .disabled
                .as_ref()
                .map(|d| Timestamp::from_millis(d.at)),
            disabled_reason: webhook.disabled.as_ref().map(|d| d.reason.clone()),
            secret: with_secret.then(|| webhook.secret.clone()),
        }
    }
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename = "WebhookDeliveryStatus", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DeliveryStatusDto {
    /// Waiting for its first attempt or its next retry.
    Pending,
    /// The receiver answered 2xx.
    Delivered,
    /// Retried for the whole retry period (a day) without success: given up.
    Failed,
    /// The receiver answered 410 Gone; the webhook was disabled.
    Gone,
}

/// One delivery and its last attempt.
#[derive(Debug, Clone, Object)]
#[oai(rename = "WebhookDelivery", rename_all = "camelCase")]
pub struct DeliveryDto {
    /// The `X-Seatflow-Delivery` header and the body's `id`: the same on every retry.
    pub id: UuidText,
    /// Its place in the webhook's deliveries; `before` of the next page.
    pub seq: i64,
    pub event: TopicDto,
    pub status: DeliveryStatusDto,
    pub attempts: u32,
    pub created_at: Timestamp,
    /// When it is tried next (PENDING only).
    #[oai(skip_serializing_if_is_none)]
    pub next_attempt_at: Option<Timestamp>,
    #[oai(skip_serializing_if_is_none)]
    pub last_attempt_at: Option<Timestamp>,
    /// The receiver's status at the last attempt (absent when it did not answer).
    #[oai(skip_serializing_if_is_none)]
    pub last_status_code: Option<u16>,
    #[oai(skip_serializing_if_is_none)]
    pub last_error: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub last_duration_ms: Option<u64>,
    #[oai(skip_serializing_if_is_none)]
    pub delivered_at: Option<Timestamp>,
    /// The body posted.
    pub payload: Value,
}

impl From<&Delivery> for DeliveryDto {
    fn from(delivery: &Delivery) -> Self {
        let last = delivery.last_attempt.as_ref();
        Self {
            id: UuidText(delivery.id.to_string()),
            seq: i64::try_from(delivery.seq).unwrap_or(i64::MAX),
            event: delivery.topic.into(),
            status: match delivery.status {
                DeliveryStatus::Pending => DeliveryStatusDto::Pending,
                DeliveryStatus::Delivered => DeliveryStatusDto::Delivered,
                DeliveryStatus::Failed => DeliveryStatusDto::Failed,
                DeliveryStatus::Gone => DeliveryStatusDto::Gone,
            },
            attempts: delivery.attempts,
            created_at: Timestamp::from_millis(delivery.created_at),
            next_attempt_at: (delivery.status == DeliveryStatus::Pending)
                .then(|| Timestamp::from_millis(delivery.next_attempt_at)),
            last_attempt_at: last.map(|a| Timestamp::from_millis(a.at)),
            last_status_code: last.and_then(|a| a.status_code),
            last_error: last.and_then(|a| a.error.clone()),
            last_duration_ms: last.map(|a| a.duration_ms),
            delivered_at: delivery.delivered_at.map(Timestamp::from_millis),
            payload: serde_json::from_str(&delivery.body).unwrap_or(Value::Null),
        }
    }
}

#[derive(Debug, ApiResponse)]
pub enum Registered {
    /// Registered; the answer carries its secret, shown this once.
    #[oai(status = 201)]
    Created(Json<WebhookDto>),
}

#[derive(Debug, ApiResponse)]
pub enum Deleted {
    /// Removed, with its delivery log; nothing more is posted to it.
    #[oai(status = 204)]
    Done,
}

#[derive(Debug)]
pub struct WebhooksApi {
    pub state: AppState,
}

#[OpenApi(tag = "Tag::Webhooks")]
impl WebhooksApi {
    /// Register a webhook (the `organizer` role). Deliveries are POSTed as JSON with
    /// `X-Seatflow-Signature`, `X-Seatflow-Timestamp`, `X-Seatflow-Delivery` and
    /// `X-Seatflow-Event` headers, at least once, in order per reservation, retried with
    /// exponential back-off for a day; a 410 answer disables the webhook.
    #[oai(
        path = "/api/webhooks",
        method = "post",
        operation_id = "createWebhook"
    )]
    async fn create(
        &self,
        caller: Data<&Caller>,
        body: JsonBody<NewWebhookDto>,
    ) -> Result<Registered, ApiError> {
        caller.require(Role::Organizer, "registering a webhook")?;
        let registry = self.registry()?;
        let body = body.0;
        let url = checked_url(&body.url, registry.allow_private_urls)?;
        if body.events.is_empty() || body.events.len() > Topic::ALL.len() {
            return Err(ApiError::unprocessable(
                "events",
                "name at least one event and at most the six there are",
            ));
        }
        let mut topics: Vec<Topic> = body.events.iter().copied().map(Topic::from).collect();
        topics.sort();
        topics.dedup();
        if let Some(event) = &body.event_id
            && !self.state.read.has_event(&event.0)
        {
            return Err(ApiError::unknown_event());
        }
        let owner = caller.user().map(str::to_owned);
        let owned = registry
            .store
            .webhooks()
            .await
            .map_err(unavailable)?
            .iter()
            .filter(|w| w.owner == owner)
            .count();
        if owned >= MAX_WEBHOOKS_PER_OWNER {
            return Err(ApiError::conflict(
                "too_many_webhooks",
                format!("an organizer may have at most {MAX_WEBHOOKS_PER_OWNER} webhooks"),
            ));
        }
        let webhook = Webhook {
            id: Uuid::now_v7(),
            owner,
            url,
            topics,
            event_id: body.event_id.map(|e| e.0),
            secret: new_secret(),
            created_at: now_millis(),
            disabled: None,
        };
        registry.store.create(&webhook).await.map_err(unavailable)?;
        Ok(Registered::Created(Json(WebhookDto::of(&webhook, true))))
    }

    /// The caller's webhooks (an admin's: every one), without their secrets.
    #[oai(path = "/api/webhooks", method = "get", operation_id = "listWebhooks")]
    async fn list(&self, caller: Data<&Caller>) -> Result<Json<Vec<WebhookDto>>, ApiError> {
        caller.require(Role::Organizer, "reading webhooks")?;
        let webhooks = self
            .registry()?
            .store
            .webhooks()
            .await
            .map_err(unavailable)?;
        Ok(Json(
            webhooks
                .iter()
                .filter(|w| may_see(&caller, w))
                .map(|w| WebhookDto::of(w, false))
                .collect(),
        ))
    }

    /// One webhook, without its secret.
    #[oai(
        path = "/api/webhooks/:webhookId",
        method = "get",
        operation_id = "getWebhook"
    )]
    async fn get(
        &self,
        caller: Data<&Caller>,
        #[oai(name = "webhookId")] webhook_id: Path<UuidText>,
    ) -> Result<Json<WebhookDto>, ApiError> {
        let webhook = self.owned(&caller, &webhook_id.0).await?;
        Ok(Json(WebhookDto::of(&webhook, false)))
    }

    /// Remove a webhook and its delivery log.
    #[oai(
        path = "/api/webhooks/:webhookId",
        method = "delete",
        operation_id = "deleteWebhook"
    )]
    async fn delete(
        &self,
        caller: Data<&Caller>,
        #[oai(name = "webhookId")] webhook_id: Path<UuidText>,
    ) -> Result<Deleted, ApiError> {
        let webhook = self.owned(&caller, &webhook_id.0).await?;
        self.registry()?
            .store
            .delete(webhook.id)
            .await
            .map_err(unavailable)?;
        Ok(Deleted::Done)
    }

    /// A webhook's deliveries, newest first: what was posted, how often, what the receiver
    /// answered. Page with `before` (the last `seq` of the previous page).
    #[oai(
        path = "/api/webhooks/:webhookId/deliveries",
        method = "get",
        operation_id = "listWebhookDeliveries"
    )]
    async fn deliveries(
        &self,
        caller: Data<&Caller>,
        #[oai(name = "webhookId")] webhook_id: Path<UuidText>,
        /// Deliveries older than this `seq` only.
        #[oai(validator(minimum(value = "1")))]
        before: Query<Option<i64>>,
        /// How many, at most.
        #[oai(
            default = "default_limit",
            validator(minimum(value = "1"), maximum(value = "1000"))
        )]
        limit: Query<u32>,
    ) -> Result<Json<Vec<DeliveryDto>>, ApiError> {
        let webhook = self.owned(&caller, &webhook_id.0).await?;
        let before = before.0.map(|seq| u64::try_from(seq).unwrap_or(0));
        let deliveries = self
            .registry()?
            .store
            .deliveries(webhook.id, before, limit.0 as usize)
            .await
            .map_err(unavailable)?;
        Ok(Json(deliveries.iter().map(DeliveryDto::from).collect()))
    }
}

impl WebhooksApi {
    fn registry(&self) -> Result<&WebhookRegistry, ApiError> {
        self.state.webhooks.as_ref().ok_or_else(|| {
            ApiError::unavailable(
                "webhooks need a store: on Kafka, set database_url (they are kept in the audit database)",
            )
        })
    }

    /// The webhook `id` if the caller may see it; 404 otherwise (another organizer's webhook
    /// is not revealed to exist).
    async fn owned(&self, caller: &Caller, id: &UuidText) -> Result<Webhook, ApiError> {
        caller.require(Role::Organizer, "reading webhooks")?;
        let unknown =
            || ApiError::not_found("unknown_webhook", "no such webhook", Some("webhookId"));
        let id = Uuid::parse_str(&id.0).map_err(|_| unknown())?;
        self.registry()?
            .store
            .webhook(id)
            .await
            .map_err(unavailable)?
            .filter(|w| may_see(caller, w))
            .ok_or_else(unknown)
    }
}

fn may_see(caller: &Caller, webhook: &Webhook) -> bool {
    match &webhook.owner {
        Some(owner) => caller.may_act_for(owner),
        None => caller.user().is_none() || caller.has(Role::Admin),
    }
}

fn unavailable(e: WebhookStoreError) -> ApiError {
    tracing::warn!(error = %e, "webhook store unavailable");
    ApiError::unavailable("the webhook store cannot be reached; retry later")
}

/// The URL as it will be posted to, if acceptable: http(s), a host, not too long, and unless
/// allowed not on this machine or a private network (an organizer must not make the server
/// post into its own network). A name is checked where it is posted to: the senders resolve it
/// to its public addresses only (`webhooks::address`), whatever it resolves to later.
fn checked_url(text: &str, allow_private: bool) -> Result<String, ApiError> {
    let refuse = |why: &str| ApiError::unprocessable("url", why);
    if text.chars().count() > MAX_URL_CHARS {
        return Err(refuse("at most 2048 characters"));
    }
    let url = Url::parse(text.trim()).map_err(|e| refuse(&format!("not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(refuse("must be an http:// or https:// URL"));
    }
    let private = match url.host() {
        None => return Err(refuse("must name a host")),
        Some(url::Host::Domain(name)) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            name == "localhost" || name.ends_with(".localhost")
        }
        Some(url::Host::Ipv4(ip)) => is_private(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => is_private(IpAddr::V6(ip)),
    };
    if private && !allow_private {
        return Err(refuse(
            "must be a public address (loopback, private and link-local ones are refused)",
        ));
    }
    Ok(url.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_odd_urls_are_refused_unless_allowed() {
        for refused in [
            "http://127.0.0.1:9000/hook",
            "http://localhost/hook",
            "http://api.localhost/hook",
            "http://10.1.2.3/",
            "http://192.168.0.1/",
            "http://169.254.169.254/latest/meta-data",
            "http://100.64.0.1/",
            "http://[::1]/",
            "http://[fd00::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://0.0.0.0/",
        ] {
            assert!(checked_url(refused, false).is_err(), "{refused}");
            assert!(checked_url(refused, true).is_ok(), "{refused} when allowed");
        }
        for odd in ["ftp://example.com/", "not a url", "mailto:a@example.com"] {
            assert!(checked_url(odd, true).is_err(), "{odd}");
        }
        assert!(checked_url(&format!("https://example.com/{}", "a".repeat(2100)), true).is_err());
        assert_eq!(
            checked_url("https://hooks.example.com/seatflow", false).ok(),
            Some("https://hooks.example.com/seatflow".to_owned())
        );
    }
}
