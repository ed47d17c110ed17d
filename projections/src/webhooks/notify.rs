//! What each decided event tells webhooks: the pure mapping from the log to notifications, and
//! from notifications to the deliveries of the webhooks that want them.

use seatflow_aggregates::{Completed, Event, Millis, Reservation, Status};
use serde_json::{Value, json};
use uuid::Uuid;

use super::{Delivery, DeliveryStatus, Topic, Webhook};

/// Something a webhook may be told.
#[derive(Clone, Debug, PartialEq)]
pub struct Notification {
    pub topic: Topic,
    pub event_id: String,
    /// What it must stay in order with: its reservation, or its section.
    pub ordering_key: String,
    /// When it was decided.
    pub at: Millis,
    pub data: Value,
}

/// The notifications of one decided event, in the order they are delivered.
pub fn notifications(event: &Event) -> Vec<Notification> {
    let Event::ReservationCompleted(completed) = event else {
        return Vec::new();
    };
    let reservation = &completed.reservation;
    let checkout = &reservation.checkout;
    let promoted = checkout.waitlisted.is_some()
        && match reservation.status {
            Status::Held => true,
            // Promoted straight to CONFIRMED (an event without holds), not confirmed after a
            // hold (which has an end of hold).
            Status::Confirmed => checkout.expires_at.is_none(),
            _ => false,
        };
    let topics: &[Topic] = match reservation.status {
        Status::Held if promoted => &[Topic::WaitlistPromoted, Topic::ReservationHeld],
        Status::Held => &[Topic::ReservationHeld],
        Status::Confirmed if promoted => &[Topic::WaitlistPromoted, Topic::ReservationConfirmed],
        Status::Confirmed => &[Topic::ReservationConfirmed],
        Status::Expired => &[Topic::ReservationExpired],
        Status::Cancelled => &[Topic::ReservationCancelled],
        Status::Pending | Status::Rejected | Status::Waitlisted => &[],
    };
    let mut out: Vec<Notification> = topics
        .iter()
        .map(|topic| Notification {
            topic: *topic,
            event_id: reservation.key.event_id.clone(),
            ordering_key: format!("reservation:{}", reservation.id.0),
            at: reservation.decided_at,
            data: reservation_data(reservation),
        })
        .collect();
    if sold_out_by(completed) {
        out.push(Notification {
            topic: Topic::SectionSoldOut,
            event_id: reservation.key.event_id.clone(),
            ordering_key: format!(
                "section:{}/{}",
                reservation.key.event_id, reservation.key.section
            ),
            at: reservation.decided_at,
            data: json!({
                "eventId": reservation.key.event_id,
                "section": reservation.key.section,
                "available": 0,
                "soldOutAt": rfc3339(reservation.decided_at),
            }),
        });
    }
    out
}

/// Whether this outcome took the section's last seats: it took seats (a new hold, or a
/// confirmation without a hold before it) and none are left. A confirmation of a hold takes
/// nothing new, so a section sold out by holds is not announced again when they are paid.
fn sold_out_by(completed: &Completed) -> bool {
    let reservation = &completed.reservation;
    let took_seats = match reservation.status {
        Status::Held => true,
        Status::Confirmed => reservation.checkout.expires_at.is_none(),
        _ => false,
    };
    took_seats && completed.available == 0
}

/// A reservation as a webhook body carries it (the API's field names).
fn reservation_data(reservation: &Reservation) -> Value {
    let checkout = &reservation.checkout;
    let mut data = json!({
        "reservationId": reservation.id.0,
        "eventId": reservation.key.event_id,
        "section": reservation.key.section,
        "userId": reservation.user_id,
        "status": reservation.status.as_str(),
        "seatCount": reservation.requested_seats,
        "seats": reservation
            .seats
            .iter()
            .map(|seat| json!({"row": seat.row, "seat": seat.seat}))
            .collect::<Vec<_>>(),
        "decidedAt": rfc3339(reservation.decided_at),
        "expiresAt": checkout.expires_at.map(rfc3339),
        "confirmedAt": checkout.confirmed_at.map(rfc3339),
        "expiredAt": checkout.expired_at.map(rfc3339),
        "cancelledAt": reservation.cancelled_at.map(rfc3339),
        "paymentRef": checkout.payment_ref,
        "waitlistPlace": checkout.waitlisted,
    });
    // As in the API's answers, an absent value is left out rather than `null`.
    if let Value::Object(fields) = &mut data {
        fields.retain(|_, value| !value.is_null());
    }
    data
}

pub(crate) fn rfc3339(at: Millis) -> String {
    chrono::DateTime::from_timestamp_millis(at)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The PENDING deliveries of `event` to the webhooks that want them, each with a new id and
/// its whole body; due at once (`now`).
pub fn deliveries_for(webhooks: &[Webhook], event: &Event, now: Millis) -> Vec<Delivery> {
    let mut out = Vec::new();
    for notification in notifications(event) {
        for webhook in webhooks.iter().filter(|w| w.wants(&notification)) {
            let id = Uuid::now_v7();
            let body = json!({
                "id": id,
                "type": notification.topic.name(),
                "webhookId": webhook.id,
                "createdAt": rfc3339(notification.at),
                "data": notification.data,
            });
            out.push(Delivery {
                id,
                webhook_id: webhook.id,
                seq: 0,
                topic: notification.topic,
                ordering_key: notification.ordering_key.clone(),
                body: body.to_string(),
                created_at: now,
                status: DeliveryStatus::Pending,
                attempts: 0,
                next_attempt_at: now,
                last_attempt: None,
                delivered_at: None,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use seatflow_aggregates::{Checkout, ReservationId, Seat, SectionKey};

    use super::*;

    fn outcome(status: Status, checkout: Checkout, available: u32) -> Event {
        Event::ReservationCompleted(Completed {
            reservation: Reservation {
                id: ReservationId::new_v7(),
                key: SectionKey::new("e1", "A"),
                user_id: "u1".into(),
                status,
                requested_seats: 2,
                seats: vec![Seat::new(1, 1), Seat::new(1, 2)],
                reason: None,
                requested_at: 1_000,
                decided_at: 2_000,
                cancelled_at: None,
                checkout,
            },
            available,
        })
    }

    fn topics(event: &Event) -> Vec<Topic> {
        notifications(event).iter().map(|n| n.topic).collect()
    }

    fn held() -> Checkout {
        Checkout {
            expires_at: Some(9_000),
            ..Checkout::default()
        }
    }

    #[test]
    fn each_status_tells_its_topic() {
        assert_eq!(
            topics(&outcome(Status::Held, held(), 5)),
            [Topic::ReservationHeld]
        );
        let paid = Checkout {
            confirmed_at: Some(3_000),
            ..held()
        };
        assert_eq!(
            topics(&outcome(Status::Confirmed, paid, 5)),
            [Topic::ReservationConfirmed]
        );
        assert_eq!(
            topics(&outcome(Status::Expired, held(), 5)),
            [Topic::ReservationExpired]
        );
        assert_eq!(
            topics(&outcome(Status::Cancelled, Checkout::default(), 5)),
            [Topic::ReservationCancelled]
        );
        for quiet in [Status::Rejected, Status::Waitlisted, Status::Pending] {
            assert_eq!(
                topics(&outcome(quiet, Checkout::default(), 0)),
                [],
                "{quiet:?}"
            );
        }
    }

    #[test]
    fn a_promotion_is_told_before_the_hold_it_became() {
        let promoted = Checkout {
            waitlisted: Some(3),
            ..held()
        };
        assert_eq!(
            topics(&outcome(Status::Held, promoted.clone(), 4)),
            [Topic::WaitlistPromoted, Topic::ReservationHeld]
        );
        // Its later confirmation is a confirmation only.
        let paid = Checkout {
            confirmed_at: Some(3_000),
            ..promoted
        };
        assert_eq!(
            topics(&outcome(Status::Confirmed, paid, 4)),
            [Topic::ReservationConfirmed]
        );
        // Without holds a promotion is CONFIRMED at once.
        let straight = Checkout {
            waitlisted: Some(3),
            confirmed_at: Some(2_000),
            ..Checkout::default()
        };
        assert_eq!(
            topics(&outcome(Status::Confirmed, straight, 4)),
            [Topic::WaitlistPromoted, Topic::ReservationConfirmed]
        );
    }

    #[test]
    fn a_section_sells_out_once_when_its_last_seats_are_taken() {
        assert_eq!(
            topics(&outcome(Status::Held, held(), 0)),
            [Topic::ReservationHeld, Topic::SectionSoldOut]
        );
        let at_once = Checkout {
            confirmed_at: Some(2_000),
            ..Checkout::default()
        };
        assert_eq!(
            topics(&outcome(Status::Confirmed, at_once, 0)),
            [Topic::ReservationConfirmed, Topic::SectionSoldOut]
        );
        // Paying for a hold in a sold-out section takes nothing new.
        let paid = Checkout {
            confirmed_at: Some(3_000),
            ..held()
        };
        assert_eq!(
            topics(&outcome(Status::Confirmed, paid, 0)),
            [Topic::ReservationConfirmed]
        );
        assert_eq!(
            topics(&outcome(Status::Rejected, Checkout::default(), 0)),
            []
        );
    }

    fn webhook(topics: &[Topic], event: Option<&str>) -> Webhook {
        Webhook {
            id: Uuid::now_v7(),
            owner: None,
            url: "https://example.com/hook".into(),
            topics: topics.to_vec(),
            event_id: event.map(str::to_owned),
            secret: "s".into(),
            created_at: 1_500,
            disabled: None,
        }
    }

    #[test]
    fn only_webhooks_that_want_a_notification_get_a_delivery() {
        let event = outcome(Status::Held, held(), 0);
        let all = webhook(&Topic::ALL, None);
        let holds_of_e1 = webhook(&[Topic::ReservationHeld], Some("e1"));
        let other_event = webhook(&Topic::ALL, Some("e2"));
        let later = Webhook {
            created_at: 2_001,
            ..webhook(&Topic::ALL, None)
        };
        let disabled = Webhook {
            disabled: Some(super::super::Disabled {
                at: 1,
                reason: "gone".into(),
            }),
            ..webhook(&Topic::ALL, None)
        };
        let hooks = [
            all.clone(),
            holds_of_e1.clone(),
            other_event,
            later,
            disabled,
        ];
        let deliveries = deliveries_for(&hooks, &event, 5_000);
        let got: Vec<(Uuid, Topic)> = deliveries.iter().map(|d| (d.webhook_id, d.topic)).collect();
        assert_eq!(
            got,
            [
                (all.id, Topic::ReservationHeld),
                (holds_of_e1.id, Topic::ReservationHeld),
                (all.id, Topic::SectionSoldOut),
            ]
        );
        let body: Value = serde_json::from_str(&deliveries[0].body).expect("JSON");
        assert_eq!(body["type"], "reservation.held");
        assert_eq!(body["id"], deliveries[0].id.to_string());
        assert_eq!(body["data"]["status"], "HELD");
        assert_eq!(body["data"]["seats"][1]["seat"], 2);
        assert!(
            body["data"].get("confirmedAt").is_none(),
            "absent, not null"
        );
        assert!(
            deliveries
                .iter()
                .all(|d| d.status == DeliveryStatus::Pending)
        );
    }
}
