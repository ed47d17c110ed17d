//! The RocksDB key codec: fixed layouts per table, big-endian numbers so that byte order is
//! numeric order (a log scan reads a partition in sequence order).

use seatflow_aggregates::{QuotaKey, ReservationId, SectionKey};

pub(crate) const PARTITION_COUNT: &[u8] = b"partitions";

/// `[u16 event id length][event id][section]`: sections of one event sort together.
pub(crate) fn section(key: &SectionKey) -> Vec<u8> {
    let event = key.event_id.as_bytes();
    let mut out = Vec::with_capacity(2 + event.len() + key.section.len());
    out.extend_from_slice(&(event.len() as u16).to_be_bytes());
    out.extend_from_slice(event);
    out.extend_from_slice(key.section.as_bytes());
    out
}

/// The section key of [`section`]'s bytes.
pub(crate) fn decode_section(bytes: &[u8]) -> Option<SectionKey> {
    let length = usize::from(u16::from_be_bytes(bytes.get(..2)?.try_into().ok()?));
    let event = std::str::from_utf8(bytes.get(2..2 + length)?).ok()?;
    let section = std::str::from_utf8(bytes.get(2 + length..)?).ok()?;
    Some(SectionKey::new(event, section))
}

/// `[u16 event id length][event id][u16 section length][section]`: the keys of one section's
/// stored rows start with it (both lengths, so that no section's prefix is another's).
pub(crate) fn section_rows_prefix(key: &SectionKey) -> Vec<u8> {
    let (event, section) = (key.event_id.as_bytes(), key.section.as_bytes());
    let mut out = Vec::with_capacity(6 + event.len() + section.len());
    out.extend_from_slice(&(event.len() as u16).to_be_bytes());
    out.extend_from_slice(event);
    out.extend_from_slice(&(section.len() as u16).to_be_bytes());
    out.extend_from_slice(section);
    out
}

/// [`section_rows_prefix`] `[u16 row]`: one row of a section, written when a batch moved seats
/// in it.
pub(crate) fn section_row(key: &SectionKey, row: u16) -> Vec<u8> {
    let mut out = section_rows_prefix(key);
    out.extend_from_slice(&row.to_be_bytes());
    out
}

/// The row of a [`section_row`] key after its `prefix_len` bytes of prefix.
pub(crate) fn decode_section_row(key: &[u8], prefix_len: usize) -> Option<u16> {
    let row: [u8; 2] = key.get(prefix_len..)?.try_into().ok()?;
    Some(u16::from_be_bytes(row))
}

/// `[u32 partition][u64 hold end][reservation id]`: a partition's holds sort by when they end.
/// Times before 1970 do not occur (the domain's clock is the Unix time of now).
pub(crate) fn hold(partition: u32, expires_at: i64, id: ReservationId) -> [u8; 28] {
    let mut out = [0u8; 28];
    out[..4].copy_from_slice(&partition.to_be_bytes());
    out[4..12].copy_from_slice(&(expires_at.max(0) as u64).to_be_bytes());
    out[12..].copy_from_slice(id.0.as_bytes());
    out
}

/// (hold end, reservation id) of a [`hold`] key.
pub(crate) fn decode_hold(key: &[u8]) -> Option<(i64, ReservationId)> {
    let expires_at = u64::from_be_bytes(key.get(4..12)?.try_into().ok()?);
    let id: [u8; 16] = key.get(12..28)?.try_into().ok()?;
    Some((
        i64::try_from(expires_at).ok()?,
        ReservationId(uuid::Uuid::from_bytes(id)),
    ))
}

/// `[u16 event id length][event id][user id]`: a quota, unambiguous like [`section`].
pub(crate) fn quota(key: &QuotaKey) -> Vec<u8> {
    let event = key.event_id.as_bytes();
    let mut out = Vec::with_capacity(2 + event.len() + key.user_id.len());
    out.extend_from_slice(&(event.len() as u16).to_be_bytes());
    out.extend_from_slice(event);
    out.extend_from_slice(key.user_id.as_bytes());
    out
}

/// `[u32 target partition][reservation id][u8 kind]`: a command one partition handed on to
/// another, waiting in the outbox until the batch that decides it. A reservation has at most one
/// command of a kind on its way at a time (a copy of the same is the same message).
pub(crate) fn outbox(target: u32, id: ReservationId, kind: u8) -> [u8; 21] {
    let mut out = [0u8; 21];
    out[..4].copy_from_slice(&target.to_be_bytes());
    out[4..20].copy_from_slice(id.0.as_bytes());
    out[20] = kind;
    out
}

/// `[u32 partition][u16 event id length][event id][u16 section length][section]`: the keys of
/// one section's waitlist start with it (both lengths, so that no section's prefix is another's).
pub(crate) fn waitlist_prefix(partition: u32, key: &SectionKey) -> Vec<u8> {
    let (event, section) = (key.event_id.as_bytes(), key.section.as_bytes());
    let mut out = Vec::with_capacity(8 + event.len() + section.len() + 24);
    out.extend_from_slice(&partition.to_be_bytes());
    out.extend_from_slice(&(event.len() as u16).to_be_bytes());
    out.extend_from_slice(event);
    out.extend_from_slice(&(section.len() as u16).to_be_bytes());
    out.extend_from_slice(section);
    out
}

/// [`waitlist_prefix`] `[u64 place][reservation id]`: a section's waitlist in its order.
pub(crate) fn waitlist(partition: u32, key: &SectionKey, place: u64, id: ReservationId) -> Vec<u8> {
    let mut out = waitlist_prefix(partition, key);
    out.extend_from_slice(&place.to_be_bytes());
    out.extend_from_slice(id.0.as_bytes());
    out
}

/// (place, reservation id) of a [`waitlist`] key after its `prefix_len` bytes of prefix.
pub(crate) fn decode_waitlist(key: &[u8], prefix_len: usize) -> Option<(u64, ReservationId)> {
    let place = u64::from_be_bytes(key.get(prefix_len..prefix_len + 8)?.try_into().ok()?);
    let id: [u8; 16] = key.get(prefix_len + 8..prefix_len + 24)?.try_into().ok()?;
    Some((place, ReservationId(uuid::Uuid::from_bytes(id))))
}

/// The 16 bytes of the UUID.
pub(crate) fn reservation(id: ReservationId) -> [u8; 16] {
    *id.0.as_bytes()
}

/// `indexes`: present once the catalogue and user indexes cover the whole log (v2: with each
/// user's [`user_marker`]; a store indexed by v1 is indexed again once).
pub(crate) const INDEXES_BUILT: &[u8] = b"indexes/v2";

/// [`user_prefix`] alone: present once the user has a reservation. Asking whether a user has
/// any is then a point read that the bloom filters answer for a user who has none (most
/// requests of a sale), instead of an iterator over every table per request.
pub(crate) fn user_marker(user_id: &str) -> Vec<u8> {
    user_prefix(user_id)
}

/// The bytes a user's index keys start with: an 8-byte hash of the user id (the column family's
/// prefix, so a lookup for a user with no reservations is answered by a bloom filter), then the
/// user id itself.
pub(crate) fn user_prefix(user_id: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + user_id.len() + 16);
    out.extend_from_slice(&fnv1a64(user_id.as_bytes()).to_be_bytes());
    out.extend_from_slice(user_id.as_bytes());
    out
}

/// `[u64 hash][user id][reservation id]`: a user's reservations sort by id, which (UUID v7) is
/// by request time.
pub(crate) fn user_reservation(user_id: &str, id: ReservationId) -> Vec<u8> {
    let mut out = user_prefix(user_id);
    out.extend_from_slice(id.0.as_bytes());
    out
}

/// The reservation id of a user index key, if the key belongs to `prefix`'s user (another user
/// may share the hash, and a longer id may start with this one).
pub(crate) fn decode_user_reservation(prefix: &[u8], key: &[u8]) -> Option<ReservationId> {
    if key.len() != prefix.len() + 16 || !key.starts_with(prefix) {
        return None;
    }
    let id: [u8; 16] = key[prefix.len()..].try_into().ok()?;
    Some(ReservationId(uuid::Uuid::from_bytes(id)))
}

/// FNV-1a, 64 bits: stable across versions and platforms (it is on disk).
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// `[u32 partition][u64 seq]`.
pub(crate) fn log(partition: u32, seq: u64) -> [u8; 12] {
    let mut out = [0u8; 12];
    out[..4].copy_from_slice(&partition.to_be_bytes());
    out[4..].copy_from_slice(&seq.to_be_bytes());
    out
}

pub(crate) fn decode_log(key: &[u8]) -> Option<(u32, u64)> {
    let partition = u32::from_be_bytes(key.get(..4)?.try_into().ok()?);
    let seq = u64::from_be_bytes(key.get(4..12)?.try_into().ok()?);
    Some((partition, seq))
}

/// `applied/[u32 partition]`: the last sequence number of the partition's own log (embedded).
pub(crate) fn last_log_seq(partition: u32) -> Vec<u8> {
    let mut out = b"applied/".to_vec();
    out.extend_from_slice(&partition.to_be_bytes());
    out
}

/// `input/[u32 partition]`: the next offset of the partition's input topic (Kafka). A key of its
/// own: a position in a topic is never read as a position in the local log, or the reverse.
pub(crate) fn input_offset(partition: u32) -> Vec<u8> {
    let mut out = b"input/".to_vec();
    out.extend_from_slice(&partition.to_be_bytes());
    out
}

pub(crate) fn decode_u64(bytes: &[u8]) -> u64 {
    bytes
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_be_bytes)
        .unwrap_or(0)
}

pub(crate) fn decode_u32(bytes: &[u8]) -> u32 {
    bytes
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_be_bytes)
        .unwrap_or(0)
}

/// `[u32 partition][u16 event id length][event id][0]` for a waiting room's header,
/// `...[1][ticket id]` for one of its tickets: a room's header comes before its tickets, and a
/// partition's rooms are read in one scan.
pub(crate) fn room(partition: u32, event_id: &str, ticket: Option<uuid::Uuid>) -> Vec<u8> {
    let event = event_id.as_bytes();
    let mut out = Vec::with_capacity(4 + 2 + event.len() + 17);
    out.extend_from_slice(&partition.to_be_bytes());
    out.extend_from_slice(&(event.len() as u16).to_be_bytes());
    out.extend_from_slice(event);
    match ticket {
        None => out.push(0),
        Some(ticket) => {
            out.push(1);
            out.extend_from_slice(ticket.as_bytes());
        }
    }
    out
}

/// Whether a key of the rooms table is a room's header (see [`room`]).
pub(crate) fn is_room_header(key: &[u8]) -> bool {
    key.get(4..6)
        .and_then(|len| <[u8; 2]>::try_from(len).ok())
        .map(|len| 6 + usize::from(u16::from_be_bytes(len)))
        .is_some_and(|at| key.len() == at + 1 && key[at] == 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn log_keys_round_trip_and_sort_numerically(
            a in (0..8u32, any::<u64>()),
            b in (0..8u32, any::<u64>()),
        ) {
            prop_assert_eq!(decode_log(&log(a.0, a.1)), Some(a));
            prop_assert_eq!(log(a.0, a.1).cmp(&log(b.0, b.1)), a.cmp(&b));
        }

        #[test]
        fn section_keys_are_unambiguous(
            e1 in "[a-z/]{0,6}", s1 in "[a-z/]{0,6}", e2 in "[a-z/]{0,6}", s2 in "[a-z/]{0,6}",
        ) {
            let k1 = SectionKey::new(e1, s1);
            let k2 = SectionKey::new(e2, s2);
            prop_assert_eq!(section(&k1) == section(&k2), k1 == k2);
        }

        #[test]
        fn a_user_index_key_names_one_user_and_sorts_by_id(
            u1 in "[a-c]{0,4}", u2 in "[a-c]{0,4}", a in any::<u128>(), b in any::<u128>(),
        ) {
            let (a, b) = (ReservationId(uuid::Uuid::from_u128(a)), ReservationId(uuid::Uuid::from_u128(b)));
            let key = user_reservation(&u1, a);
            prop_assert_eq!(decode_user_reservation(&user_prefix(&u1), &key), Some(a));
            if u1 != u2 {
                prop_assert_eq!(decode_user_reservation(&user_prefix(&u2), &key), None);
            }
            prop_assert_eq!(key.cmp(&user_reservation(&u1, b)), a.cmp(&b));
        }
    }

    #[test]
    fn a_rooms_header_is_told_from_its_tickets_and_comes_first() {
        let header = super::room(3, "event-1", None);
        let ticket = super::room(3, "event-1", Some(uuid::Uuid::from_u128(7)));
        assert!(super::is_room_header(&header));
        assert!(!super::is_room_header(&ticket));
        assert!(header < ticket);
        // Another event's keys never fall between a room's header and its tickets.
        let longer = super::room(3, "event-10", None);
        assert!(!(header < longer && longer < ticket));
    }
}
