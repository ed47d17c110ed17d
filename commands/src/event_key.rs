//! Creating an event again without making a second one: an organizer's `Idempotency-Key`
//! names the event's id.
//!
//! The id is derived from the organizer and the key, so every gateway, before or after any
//! restart, gives a repeated creation the same id with nothing stored: its sections' owners
//! see an initialisation of sections they already have, take an identical one as done and
//! refuse one with other seats or rules. A creation that timed out (the seat processor had not
//! decided it yet) can so be retried safely.

use seatflow_aggregates::room::RoomRules;
use seatflow_aggregates::{Layout, SaleRules};

/// An event's creation as validated: what is submitted, and what a repeat is compared with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewEvent {
    pub name: String,
    /// The sections in the order listed, with their seats.
    pub sections: Vec<(String, Layout)>,
    pub rules: SaleRules,
    pub room: Option<RoomRules>,
}

/// An organizer's `Idempotency-Key` on an event's creation.
#[derive(Clone, Copy, Debug)]
pub struct EventKey<'a> {
    pub organizer: &'a str,
    pub key: &'a str,
}

impl EventKey<'_> {
    /// The event id the key stands for: a UUID (version 8) made of the first 16 bytes of
    /// SHA-256 over the organizer and the key, each length-prefixed (no two pairs share an
    /// input). Another organizer's same key names another event.
    pub fn event_id(&self) -> String {
        let mut input = Vec::with_capacity(32 + self.organizer.len() + self.key.len());
        input.extend_from_slice(b"seatflow event key\0");
        for part in [self.organizer, self.key] {
            input.extend_from_slice(&(part.len() as u64).to_be_bytes());
            input.extend_from_slice(part.as_bytes());
        }
        let digest = ring::digest::digest(&ring::digest::SHA256, &input);
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest.as_ref()[..16]);
        uuid::Builder::from_custom_bytes(bytes)
            .into_uuid()
            .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(organizer: &str, key: &str) -> String {
        EventKey { organizer, key }.event_id()
    }

    #[test]
    fn the_same_organizer_and_key_name_the_same_event_and_any_other_pair_another() {
        assert_eq!(id("org-1", "spring-tour"), id("org-1", "spring-tour"));
        assert_ne!(id("org-1", "spring-tour"), id("org-2", "spring-tour"));
        assert_ne!(id("org-1", "spring-tour"), id("org-1", "spring-tour-2"));
        // The split between organizer and key is part of the input.
        assert_ne!(id("org-1a", "b"), id("org-1", "ab"));
    }

    #[test]
    fn an_event_key_is_a_version_8_uuid() {
        let parsed = uuid::Uuid::parse_str(&id("org-1", "k")).expect("a UUID");
        assert_eq!(parsed.get_version_num(), 8);
        assert_eq!(parsed.get_variant(), uuid::Variant::RFC4122);
    }
}
