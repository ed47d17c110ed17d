//! Avro binary written straight from the domain types and read straight into them, for the
//! records every decision makes (a reservation's command; its outcome, in the decided log, the
//! changelog and the reply; a section's count).
//!
//! The generic path builds an Avro `Value` tree of the record (a `String` and a `Vec` per field),
//! checks it against the schema and then writes it, or reads such a tree and converts it:
//! measured on the Kafka seat processor, ~30 % of its CPU went to writing. These writers put the
//! same bytes into the buffer directly, and the reader takes the fields off the bytes. They
//! follow the current schemas by hand, so the contract tests compare them with the generic
//! writer and reader on generated records: a schema change that is not made here too fails those
//! tests. Data of an older schema version is still read by the generic path (it resolves it).
//!
//! Encoding (Avro specification, "Binary encoding"): `int` and `long` as zig-zag varints, a
//! `string` as its length and UTF-8 bytes, an `enum` as its symbol's index, a union as the
//! branch's index and the value, an array as one block (count, items) and the empty block (0).

use seatflow_aggregates::{
    Checkout, Command, Completed, Millis, QuotaVerdict, Rejection, Reservation, ReservationId,
    Reserve, Seat, SeatRequest, SectionKey, Status,
};

use crate::codec::DecodeError;
use crate::convert::{
    field_error, rejection_of, rejection_parts, status_at, status_index, verdict_at, verdict_index,
};

pub(crate) fn long(out: &mut Vec<u8>, value: i64) {
    let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
    while zigzag >= 0x80 {
        out.push((zigzag as u8) | 0x80);
        zigzag >>= 7;
    }
    out.push(zigzag as u8);
}

pub(crate) fn int(out: &mut Vec<u8>, value: i32) {
    long(out, i64::from(value));
}

pub(crate) fn string(out: &mut Vec<u8>, value: &str) {
    long(out, value.len() as i64);
    out.extend_from_slice(value.as_bytes());
}

/// The `null` branch of a `["null", T]` union.
pub(crate) fn null(out: &mut Vec<u8>) {
    long(out, 0);
}

/// A `["null", long]` union.
pub(crate) fn optional_long(out: &mut Vec<u8>, value: Option<i64>) {
    match value {
        None => null(out),
        Some(value) => {
            long(out, 1);
            long(out, value);
        }
    }
}

/// An `int` from a count, as the generic path writes it (saturated at `i32::MAX`).
pub(crate) fn count(out: &mut Vec<u8>, value: u32) {
    int(out, i32::try_from(value).unwrap_or(i32::MAX));
}

fn seat(out: &mut Vec<u8>, seat: Seat) {
    int(out, i32::from(seat.row));
    int(out, i32::from(seat.seat));
}

fn boolean(out: &mut Vec<u8>, value: bool) {
    out.push(u8::from(value));
}

fn reservation_id(out: &mut Vec<u8>, id: ReservationId) {
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    string(out, id.0.hyphenated().encode_lower(&mut text));
}

fn seats(out: &mut Vec<u8>, seats: &[Seat]) {
    if !seats.is_empty() {
        long(out, seats.len() as i64);
        for s in seats {
            seat(out, *s);
        }
    }
    long(out, 0);
}

/// A `ReservationCommand` datum holding a `Reserve` (branch 1), the command of every request.
pub(crate) fn reserve_command(out: &mut Vec<u8>, reserve: &Reserve) {
    string(out, &reserve.key.event_id);
    string(out, &reserve.key.section);
    long(out, reserve.requested_at);
    long(out, 1);
    reservation_id(out, reserve.reservation_id);
    string(out, &reserve.user_id);
    let picked: &[Seat] = match &reserve.request {
        SeatRequest::Adjacent(_) => &[],
        SeatRequest::Picked(picked) => picked,
    };
    int(out, i32::from(reserve.request.seat_count()));
    seats(out, picked);
    int(out, verdict_index(reserve.quota) as i32);
    boolean(out, reserve.waitlist);
}

fn status(out: &mut Vec<u8>, value: Status) {
    int(out, status_index(value) as i32);
}

/// A `ReservationCompleted` datum: a reservation and its section's count after it (also branch 1
/// of `SeatEvent.event` and branch 0 of `CommandReply.outcome`).
pub(crate) fn completed(out: &mut Vec<u8>, r: &Reservation, available: u32) {
    reservation_id(out, r.id);
    string(out, &r.key.event_id);
    string(out, &r.key.section);
    string(out, &r.user_id);
    status(out, r.status);
    int(out, i32::from(r.requested_seats));
    seats(out, &r.seats);
    match &r.reason {
        None => null(out),
        Some(rejection) => {
            long(out, 1);
            let (code, at, number, was) = rejection_parts(rejection);
            int(out, code as i32);
            match at {
                None => null(out),
                Some(s) => {
                    long(out, 1);
                    seat(out, s);
                }
            }
            match number {
                None => null(out),
                Some(n) => {
                    long(out, 1);
                    count(out, n);
                }
            }
            match was {
                None => null(out),
                Some(s) => {
                    long(out, 1);
                    status(out, s);
                }
            }
        }
    }
    long(out, r.requested_at);
    long(out, r.decided_at);
    optional_long(out, r.cancelled_at);
    optional_long(out, r.checkout.expires_at);
    optional_long(out, r.checkout.confirmed_at);
    optional_long(out, r.checkout.expired_at);
    match r.checkout.payment_ref.as_deref() {
        None => null(out),
        Some(payment_ref) => {
            long(out, 1);
            string(out, payment_ref);
        }
    }
    count(out, available);
    optional_long(
        out,
        r.checkout
            .waitlisted
            .map(|place| i64::try_from(place).unwrap_or(i64::MAX)),
    );
}

/// Reads a datum's fields in schema order; every read is bounded by the bytes left.
pub(crate) struct Reader<'a> {
    contract: &'static str,
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(contract: &'static str, bytes: &'a [u8]) -> Self {
        Self { contract, bytes }
    }

    fn corrupt(&self, problem: &str) -> DecodeError {
        DecodeError::Datum(self.contract, problem.to_owned())
    }

    pub(crate) fn long(&mut self) -> Result<i64, DecodeError> {
        let mut zigzag = 0u64;
        let mut shift = 0u32;
        loop {
            let Some((&byte, rest)) = self.bytes.split_first() else {
                return Err(self.corrupt("the datum ends inside a number"));
            };
            self.bytes = rest;
            if shift > 63 {
                return Err(self.corrupt("a number longer than 10 bytes"));
            }
            zigzag |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                break;
            }
            shift += 7;
        }
        Ok(((zigzag >> 1) as i64) ^ -((zigzag & 1) as i64))
    }

    pub(crate) fn int(&mut self) -> Result<i32, DecodeError> {
        let value = self.long()?;
        i32::try_from(value).map_err(|_| self.corrupt("an int out of range"))
    }

    pub(crate) fn str(&mut self) -> Result<&'a str, DecodeError> {
        let len = usize::try_from(self.long()?)
            .ok()
            .filter(|len| *len <= self.bytes.len())
            .ok_or_else(|| self.corrupt("a string longer than the datum"))?;
        let (text, rest) = self.bytes.split_at(len);
        self.bytes = rest;
        std::str::from_utf8(text).map_err(|_| self.corrupt("a string that is not UTF-8"))
    }

    /// The branch of a union, or an enum's index.
    fn index(&mut self) -> Result<usize, DecodeError> {
        usize::try_from(self.long()?).map_err(|_| self.corrupt("a negative union or enum index"))
    }

    /// Whether a `["null", T]` union holds a value.
    fn some(&mut self, field: &'static str) -> Result<bool, DecodeError> {
        match self.index()? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(field_error(
                self.contract,
                field,
                format!("unknown branch {other}"),
            )),
        }
    }

    fn optional_long(&mut self, field: &'static str) -> Result<Option<i64>, DecodeError> {
        Ok(if self.some(field)? {
            Some(self.long()?)
        } else {
            None
        })
    }

    fn small(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        let value = self.int()?;
        u16::try_from(value)
            .map_err(|_| field_error(self.contract, field, format!("{value} out of range")))
    }

    fn count(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        let value = self.int()?;
        u32::try_from(value)
            .map_err(|_| field_error(self.contract, field, format!("{value} is negative")))
    }

    fn seat(&mut self) -> Result<Seat, DecodeError> {
        Ok(Seat::new(self.small("row")?, self.small("seat")?))
    }

    fn status(&mut self, field: &'static str) -> Result<Status, DecodeError> {
        let index = self.index()?;
        status_at(index).ok_or_else(|| {
            field_error(
                self.contract,
                field,
                format!("unknown status index {index}"),
            )
        })
    }

    /// An array of seats: blocks of a count (negative: followed by the block's size in bytes)
    /// and the items, ended by an empty block.
    fn seats(&mut self) -> Result<Vec<Seat>, DecodeError> {
        let mut seats = Vec::new();
        loop {
            let count = self.long()?;
            if count == 0 {
                return Ok(seats);
            }
            if count < 0 {
                self.long()?;
            }
            // A seat takes at least two bytes: a count beyond that is corrupt, not an allocation.
            let count = usize::try_from(count.unsigned_abs())
                .ok()
                .filter(|count| *count <= self.bytes.len() / 2)
                .ok_or_else(|| self.corrupt("an array longer than the datum"))?;
            seats.reserve(count);
            for _ in 0..count {
                seats.push(self.seat()?);
            }
        }
    }

    fn boolean(&mut self) -> Result<bool, DecodeError> {
        let Some((&byte, rest)) = self.bytes.split_first() else {
            return Err(self.corrupt("the datum ends inside a boolean"));
        };
        self.bytes = rest;
        match byte {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(self.corrupt("a boolean that is neither 0 nor 1")),
        }
    }

    fn reservation_id(&mut self, field: &'static str) -> Result<ReservationId, DecodeError> {
        let text = self.str()?;
        uuid::Uuid::parse_str(text)
            .map(ReservationId)
            .map_err(|e| field_error(self.contract, field, format!("{text:?}: {e}")))
    }

    /// A `ReservationCommand` datum: its section, its time and its branch, and the command when
    /// the branch is a `Reserve` (`None`: another command, for the generic reader).
    pub(crate) fn reserve_command(&mut self) -> Result<Option<Command>, DecodeError> {
        let key = SectionKey::new(self.str()?, self.str()?);
        let requested_at: Millis = self.long()?;
        if self.long()? != 1 {
            return Ok(None);
        }
        let reservation_id = self.reservation_id("reservationId")?;
        let user_id = self.str()?.to_owned();
        let count = self.small("seatCount")?;
        let picked = self.seats()?;
        let request = if picked.is_empty() {
            SeatRequest::Adjacent(count)
        } else {
            SeatRequest::Picked(picked)
        };
        let index = self.index()?;
        let quota: QuotaVerdict = verdict_at(index).ok_or_else(|| {
            field_error(
                self.contract,
                "quota",
                format!("unknown verdict index {index}"),
            )
        })?;
        let waitlist = self.boolean()?;
        Ok(Some(Command::Reserve(Reserve {
            reservation_id,
            key,
            user_id,
            request,
            requested_at,
            quota,
            waitlist,
        })))
    }

    fn rejection(&mut self) -> Result<Rejection, DecodeError> {
        let code = self.index()?;
        let seat = if self.some("seat")? {
            Some(self.seat()?)
        } else {
            None
        };
        let count = if self.some("count")? {
            Some(self.int()?)
        } else {
            None
        };
        let status = if self.some("status")? {
            Some(self.status("status")?)
        } else {
            None
        };
        rejection_of(self.contract, code, seat, count, status)
    }

    /// A `ReservationCompleted` datum (the reverse of [`completed`]).
    pub(crate) fn completed(&mut self) -> Result<Completed, DecodeError> {
        let id_text = self.str()?;
        let id = uuid::Uuid::parse_str(id_text)
            .map(ReservationId)
            .map_err(|e| {
                field_error(self.contract, "reservationId", format!("{id_text:?}: {e}"))
            })?;
        let event_id = self.str()?.to_owned();
        let section = self.str()?.to_owned();
        let user_id = self.str()?.to_owned();
        let status = self.status("status")?;
        let requested_seats = self.small("requestedSeats")?;
        let seats = self.seats()?;
        let reason = if self.some("reason")? {
            Some(self.rejection()?)
        } else {
            None
        };
        let requested_at = self.long()?;
        let decided_at = self.long()?;
        let cancelled_at = self.optional_long("cancelledAt")?;
        let expires_at = self.optional_long("expiresAt")?;
        let confirmed_at = self.optional_long("confirmedAt")?;
        let expired_at = self.optional_long("expiredAt")?;
        let payment_ref = if self.some("paymentRef")? {
            Some(self.str()?.to_owned())
        } else {
            None
        };
        let available = self.count("availableCount")?;
        let waitlisted =
            match self.optional_long("waitlistedPlace")? {
                None => None,
                Some(place) => Some(u64::try_from(place).map_err(|_| {
                    field_error(self.contract, "waitlistedPlace", "negative".into())
                })?),
            };
        Ok(Completed {
            reservation: Reservation {
                id,
                key: SectionKey::new(event_id, section),
                user_id,
                status,
                requested_seats,
                seats,
                reason,
                requested_at,
                decided_at,
                cancelled_at,
                checkout: Checkout {
                    expires_at,
                    confirmed_at,
                    expired_at,
                    payment_ref,
                    waitlisted,
                },
            },
            available,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longs_are_zigzag_varints() {
        // The examples of the Avro specification.
        for (value, bytes) in [
            (0i64, &[0x00u8][..]),
            (-1, &[0x01]),
            (1, &[0x02]),
            (-2, &[0x03]),
            (2, &[0x04]),
            (-64, &[0x7f]),
            (64, &[0x80, 0x01]),
        ] {
            let mut out = Vec::new();
            long(&mut out, value);
            assert_eq!(out, bytes, "{value}");
        }
        let mut out = Vec::new();
        long(&mut out, i64::MIN);
        assert_eq!(out.len(), 10);
        assert_eq!(out[9], 0x01);
        assert_eq!(Reader::new("test", &out).long().ok(), Some(i64::MIN));
    }

    #[test]
    fn an_array_in_several_blocks_with_their_sizes_is_read_whole() {
        // What another writer may send: a block of one seat, then a block of -2 seats (a
        // negative count is followed by the block's size in bytes), then the end.
        let mut bytes = Vec::new();
        long(&mut bytes, 1);
        seat(&mut bytes, Seat::new(1, 2));
        long(&mut bytes, -2);
        long(&mut bytes, 4);
        seat(&mut bytes, Seat::new(3, 4));
        seat(&mut bytes, Seat::new(5, 6));
        long(&mut bytes, 0);
        let seats = Reader::new("test", &bytes).seats().expect("read");
        assert_eq!(
            seats,
            vec![Seat::new(1, 2), Seat::new(3, 4), Seat::new(5, 6)]
        );
    }

    #[test]
    fn a_count_beyond_the_datum_is_refused_before_anything_is_allocated() {
        let mut bytes = Vec::new();
        long(&mut bytes, i64::MAX);
        assert!(Reader::new("test", &bytes).seats().is_err());
        let mut bytes = Vec::new();
        long(&mut bytes, 1 << 40);
        bytes.extend_from_slice(b"short");
        assert!(Reader::new("test", &bytes).str().is_err());
    }
}
