//! Webhooks: an organizer's receiver is told what the log decided (a hold, a confirmation, an
//! expiry, a cancellation, a promotion from a waitlist, a section selling out).
//!
//! Delivery is a projection of the decided-event log, like the audit: a projection reads the
//! log from its stored positions and writes, for every webhook that wants a notification, a
//! PENDING delivery together with the positions after it, in one write of the webhook store
//! (RocksDB embedded, Postgres on Kafka). Nothing decided is missed and nothing is queued twice.
//! Senders (one task per webhook, so a slow or dead receiver delays only itself) post the
//! pending deliveries, signed, in order per reservation, and retry with exponential back-off for
//! up to a day; a 410 answer disables the webhook. A crash between a post and its record posts
//! it again: at least once, with the same delivery id, for the receiver to de-duplicate.
//!
//! The mapping from events to notifications ([`notify`]), the signature ([`sign`]) and the
//! retry plan ([`plan`]) are pure; the sender loop ([`deliver`]) and the stores are I/O.

pub mod address;
pub mod deliver;
pub mod notify;
pub mod plan;
pub mod postgres;
pub mod sign;
mod store;

use seatflow_aggregates::Millis;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use store::{WebhookStore, WebhookStoreError};

/// What a webhook may be told of.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Topic {
    #[serde(rename = "reservation.held")]
    ReservationHeld,
    #[serde(rename = "reservation.confirmed")]
    ReservationConfirmed,
    #[serde(rename = "reservation.expired")]
    ReservationExpired,
    #[serde(rename = "reservation.cancelled")]
    ReservationCancelled,
    #[serde(rename = "waitlist.promoted")]
    WaitlistPromoted,
    #[serde(rename = "section.sold_out")]
    SectionSoldOut,
}

impl Topic {
    pub const ALL: [Self; 6] = [
        Self::ReservationHeld,
        Self::ReservationConfirmed,
        Self::ReservationExpired,
        Self::ReservationCancelled,
        Self::WaitlistPromoted,
        Self::SectionSoldOut,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::ReservationHeld => "reservation.held",
            Self::ReservationConfirmed => "reservation.confirmed",
            Self::ReservationExpired => "reservation.expired",
            Self::ReservationCancelled => "reservation.cancelled",
            Self::WaitlistPromoted => "waitlist.promoted",
            Self::SectionSoldOut => "section.sold_out",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|topic| topic.name() == name)
    }
}

/// Why and when a webhook stopped receiving.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disabled {
    pub at: Millis,
    pub reason: String,
}

/// A registered receiver.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Webhook {
    pub id: Uuid,
    /// The organizer who registered it (none when the server runs without authentication).
    pub owner: Option<String>,
    pub url: String,
    pub topics: Vec<Topic>,
    /// Only this event's notifications; every event's when absent.
    pub event_id: Option<String>,
    /// The HMAC key of its signatures: shown once, at registration.
    pub secret: String,
    pub created_at: Millis,
    pub disabled: Option<Disabled>,
}

impl Webhook {
    /// Whether this webhook is told of `notification`: one of its topics, its event (if it
    /// names one), decided once it existed, and it is not disabled.
    pub fn wants(&self, notification: &notify::Notification) -> bool {
        self.disabled.is_none()
            && self.topics.contains(&notification.topic)
            && self
                .event_id
                .as_ref()
                .is_none_or(|event| *event == notification.event_id)
            && notification.at >= self.created_at
    }
}

/// Where a delivery stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DeliveryStatus {
    /// Not delivered yet: waiting for its first attempt or its next retry.
    Pending,
    /// The receiver answered 2xx.
    Delivered,
    /// Every retry failed for the whole retry period: given up.
    Failed,
    /// The receiver answered 410 Gone: the webhook was disabled.
    Gone,
}

impl DeliveryStatus {
    pub fn name(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Delivered => "DELIVERED",
            Self::Failed => "FAILED",
            Self::Gone => "GONE",
        }
    }
}

/// One attempt's result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    pub at: Millis,
    /// The receiver's HTTP status, if it answered.
    pub status_code: Option<u16>,
    /// Why it did not count as delivered (a transport error, a timeout, a non-2xx status).
    pub error: Option<String>,
    pub duration_ms: u64,
}

/// One notification to one webhook, and its delivery's history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// Sent as `X-Seatflow-Delivery` and in the body: the same on every retry.
    pub id: Uuid,
    pub webhook_id: Uuid,
    /// Its place among its webhook's deliveries (log order), set by the store.
    pub seq: u64,
    pub topic: Topic,
    /// Deliveries with the same key (a reservation, a section) are posted in order: one is not
    /// tried before the one ahead of it is delivered or given up.
    pub ordering_key: String,
    /// The JSON body posted, exactly (the signature covers these bytes).
    pub body: String,
    pub created_at: Millis,
    pub status: DeliveryStatus,
    pub attempts: u32,
    pub next_attempt_at: Millis,
    pub last_attempt: Option<Attempt>,
    pub delivered_at: Option<Millis>,
}
