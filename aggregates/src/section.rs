//! The state of one section: a bitmap of held seats and the available count.
//!
//! Rows are stored word-aligned (`words_per_row` u64 words each) so that a row scan never
//! straddles two rows, and the padding bits after the last seat of a row are kept set ("held")
//! so that a free-seat search can never run past the end of a row.

use crate::model::{Event, Layout, Rejection, SaleRules, Seat, SeatRequest, Status};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SectionState {
    layout: Layout,
    words_per_row: usize,
    /// Bit set = seat held (or padding).
    held: Vec<u64>,
    /// Free seats per row, to skip full rows without scanning them.
    free_in_row: Vec<u16>,
    available: u32,
    /// The rules its reservations are decided by.
    rules: SaleRules,
}

impl SectionState {
    /// An empty section (every seat free).
    pub fn new(layout: Layout) -> Self {
        let seats = usize::from(layout.seats_per_row);
        let words_per_row = seats.div_ceil(64);
        let mut held = vec![0u64; words_per_row * usize::from(layout.rows)];
        let padding = words_per_row * 64 - seats;
        if padding > 0 {
            let mask = !0u64 << (64 - padding);
            for row in 0..usize::from(layout.rows) {
                held[row * words_per_row + words_per_row - 1] |= mask;
            }
        }
        Self {
            layout,
            words_per_row,
            held,
            free_in_row: vec![layout.seats_per_row; usize::from(layout.rows)],
            available: layout.capacity(),
            rules: SaleRules::default(),
        }
    }

    /// The same section decided by `rules`.
    pub fn with_rules(mut self, rules: SaleRules) -> Self {
        self.rules = rules;
        self
    }

    /// The rules its reservations are decided by.
    pub fn rules(&self) -> SaleRules {
        self.rules
    }

    /// How long a reservation is HELD before it expires (0: confirmed when decided).
    pub fn hold_seconds(&self) -> u32 {
        self.rules.hold_seconds
    }

    /// A section with these seats held (used to restore a stored state).
    pub fn with_held(layout: Layout, held_seats: impl IntoIterator<Item = Seat>) -> Self {
        let mut state = Self::new(layout);
        for seat in held_seats {
            if layout.contains(seat) && !state.is_held(seat) {
                state.set(seat, true);
            }
        }
        state
    }

    /// The held seats as a packed bitmap: seat `i` (row-major, 0-based) is bit `i % 8` of byte
    /// `i / 8`. The storage form of the state.
    pub fn to_bitmap(&self) -> Vec<u8> {
        let seats = usize::from(self.layout.seats_per_row);
        let mut out = vec![0u8; (self.layout.capacity() as usize).div_ceil(8)];
        for row in 0..usize::from(self.layout.rows) {
            if self.free_in_row[row] == self.layout.seats_per_row {
                continue;
            }
            let base = row * seats;
            for word_index in 0..self.words_per_row {
                let mut word = self.held[row * self.words_per_row + word_index];
                if word_index == self.words_per_row - 1 && seats % 64 != 0 {
                    word &= (1u64 << (seats % 64)) - 1; // drop the padding
                }
                while word != 0 {
                    let bit = word.trailing_zeros() as usize;
                    let index = base + word_index * 64 + bit;
                    out[index / 8] |= 1 << (index % 8);
                    word &= word - 1;
                }
            }
        }
        out
    }

    /// The state of a packed bitmap (see [`Self::to_bitmap`]); None if its length does not fit.
    pub fn from_bitmap(layout: Layout, bitmap: &[u8]) -> Option<Self> {
        if bitmap.len() != (layout.capacity() as usize).div_ceil(8) {
            return None;
        }
        let mut state = Self::new(layout);
        let seats = usize::from(layout.seats_per_row);
        for (byte_index, byte) in bitmap.iter().enumerate() {
            let mut bits = *byte;
            while bits != 0 {
                let index = byte_index * 8 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                if index >= layout.capacity() as usize {
                    return None;
                }
                state.set(
                    Seat::new((index / seats) as u16 + 1, (index % seats) as u16 + 1),
                    true,
                );
            }
        }
        Some(state)
    }

    /// One row's held seats as packed bits (seat `i`, 0-based, is bit `i % 8` of byte `i / 8`;
    /// `seats_per_row.div_ceil(8)` bytes): the storage form of a row a batch changed, so that a
    /// batch writes the rows it touched instead of the whole section. None outside the layout.
    pub fn row_bits(&self, row: u16) -> Option<Vec<u8>> {
        if row == 0 || row > self.layout.rows {
            return None;
        }
        let seats = usize::from(self.layout.seats_per_row);
        let base = usize::from(row - 1) * self.words_per_row;
        let mut out = Vec::with_capacity(seats.div_ceil(8));
        for word in &self.held[base..base + self.words_per_row] {
            out.extend_from_slice(&word.to_le_bytes());
        }
        out.truncate(seats.div_ceil(8));
        if let Some(last) = out.last_mut()
            && seats % 8 != 0
        {
            *last &= (1u8 << (seats % 8)) - 1; // drop the padding
        }
        Some(out)
    }

    /// Replace one row's held seats by packed bits of [`Self::row_bits`]. False (and nothing
    /// changed) when the row is outside the layout or the bits do not fit it.
    pub fn set_row_bits(&mut self, row: u16, bits: &[u8]) -> bool {
        let seats = usize::from(self.layout.seats_per_row);
        let fits = bits.len() == seats.div_ceil(8)
            && (seats % 8 == 0 || bits[bits.len() - 1] >> (seats % 8) == 0);
        if row == 0 || row > self.layout.rows || !fits {
            return false;
        }
        let row_index = usize::from(row - 1);
        let base = row_index * self.words_per_row;
        let mut held_in_row = 0u32;
        for word_index in 0..self.words_per_row {
            let mut bytes = [0u8; 8];
            let from = word_index * 8;
            let to = (from + 8).min(bits.len());
            bytes[..to - from].copy_from_slice(&bits[from..to]);
            let mut word = u64::from_le_bytes(bytes);
            held_in_row += word.count_ones();
            if word_index == self.words_per_row - 1 && seats % 64 != 0 {
                word |= !0u64 << (seats % 64); // the padding stays held
            }
            self.held[base + word_index] = word;
        }
        let free_before = u32::from(self.free_in_row[row_index]);
        let free_now = seats as u32 - held_in_row;
        self.free_in_row[row_index] = free_now as u16;
        self.available = self.available - free_before + free_now;
        true
    }

    pub fn layout(&self) -> Layout {
        self.layout
    }

    pub fn available(&self) -> u32 {
        self.available
    }

    pub fn held_count(&self) -> u32 {
        self.layout.capacity() - self.available
    }

    /// Whether a seat (inside the layout) is held.
    pub fn is_held(&self, seat: Seat) -> bool {
        let (word, bit) = self.position(seat);
        self.held[word] & (1u64 << bit) != 0
    }

    /// Every held seat, row by row.
    pub fn held_seats(&self) -> impl Iterator<Item = Seat> + '_ {
        (1..=self.layout.rows).flat_map(move |row| {
            (1..=self.layout.seats_per_row)
                .map(move |seat| Seat::new(row, seat))
                .filter(|seat| self.is_held(*seat))
        })
    }

    /// Choose the seats for a request without changing anything.
    pub fn allocate(&self, request: &SeatRequest) -> Result<Vec<Seat>, Rejection> {
        match request {
            SeatRequest::Adjacent(count) => self.allocate_adjacent(*count),
            SeatRequest::Picked(seats) => self.allocate_picked(seats),
        }
    }

    fn allocate_adjacent(&self, count: u16) -> Result<Vec<Seat>, Rejection> {
        if count == 0 || count > self.layout.seats_per_row {
            return Err(Rejection::InvalidSeatCount { requested: count });
        }
        if self.available == 0 {
            return Err(Rejection::SoldOut);
        }
        if self.available < u32::from(count) {
            return Err(Rejection::NotEnoughSeats {
                available: self.available,
            });
        }
        for row in 0..usize::from(self.layout.rows) {
            if self.free_in_row[row] < count {
                continue;
            }
            let start = if self.rules.avoid_single_seats {
                self.placement_leaving_no_lone_seat(row, usize::from(count))
            } else {
                self.free_run_in_row(row, usize::from(count))
            };
            if let Some(start) = start {
                let row_number = row as u16 + 1;
                return Ok((0..count)
                    .map(|i| Seat::new(row_number, start as u16 + 1 + i))
                    .collect());
            }
        }
        Err(Rejection::NoAdjacentSeats { requested: count })
    }

    fn allocate_picked(&self, seats: &[Seat]) -> Result<Vec<Seat>, Rejection> {
        if seats.is_empty() || seats.len() > usize::from(self.layout.seats_per_row) {
            return Err(Rejection::InvalidSeatCount {
                requested: u16::try_from(seats.len()).unwrap_or(u16::MAX),
            });
        }
        for (i, seat) in seats.iter().enumerate() {
            if !self.layout.contains(*seat) {
                return Err(Rejection::SeatOutOfRange { seat: *seat });
            }
            if seats[..i].contains(seat) {
                return Err(Rejection::DuplicateSeat { seat: *seat });
            }
        }
        if self.available == 0 {
            return Err(Rejection::SoldOut);
        }
        if let Some(taken) = seats.iter().find(|seat| self.is_held(**seat)) {
            return Err(Rejection::SeatTaken { seat: *taken });
        }
        let mut chosen = seats.to_vec();
        chosen.sort_unstable();
        Ok(chosen)
    }

    /// Apply a decided event. Events of other sections and rejections change nothing.
    pub fn apply(&mut self, event: &Event) {
        let Event::ReservationCompleted(completed) = event else {
            return;
        };
        let held = match completed.reservation.status {
            Status::Held | Status::Confirmed => true,
            Status::Cancelled | Status::Expired => false,
            Status::Rejected | Status::Pending | Status::Waitlisted => return,
        };
        for seat in &completed.reservation.seats {
            if self.layout.contains(*seat) && self.is_held(*seat) != held {
                self.set(*seat, held);
            }
        }
    }

    /// Start of the first run of `count` free seats in a 0-based row, as a 0-based seat index.
    fn free_run_in_row(&self, row: usize, count: usize) -> Option<usize> {
        let seats = usize::from(self.layout.seats_per_row);
        let mut from = 0;
        while from + count <= seats {
            let start = self.next_bit(row, from, false)?;
            if start + count > seats {
                return None;
            }
            let end = self.next_bit(row, start, true).unwrap_or(seats);
            if end - start >= count {
                return Some(start);
            }
            from = end;
        }
        None
    }

    /// Where `count` adjacent seats go in a 0-based row without leaving one lone free seat
    /// beside them (between taken seats, or at the row's end): the start of the first free run
    /// that they fill exactly or leave two or more seats of. When every run that fits would
    /// leave one, the first run that fits (a lone seat then is unavoidable in this row).
    /// Placing them at a run's start leaves at most one gap, at its end; placing them inside
    /// leaves two, which never helps.
    fn placement_leaving_no_lone_seat(&self, row: usize, count: usize) -> Option<usize> {
        let seats = usize::from(self.layout.seats_per_row);
        let mut first_fit = None;
        let mut from = 0;
        while from + count <= seats {
            let Some(start) = self.next_bit(row, from, false) else {
                break;
            };
            if start + count > seats {
                break;
            }
            let end = self.next_bit(row, start, true).unwrap_or(seats);
            let length = end - start;
            if length >= count {
                if length - count != 1 {
                    return Some(start);
                }
                first_fit.get_or_insert(start);
            }
            from = end;
        }
        first_fit
    }

    /// The first 0-based seat index at or after `from` in `row` whose held bit equals `held`.
    fn next_bit(&self, row: usize, from: usize, held: bool) -> Option<usize> {
        let base = row * self.words_per_row;
        let mut word_index = from / 64;
        let mut mask = !0u64 << (from % 64);
        while word_index < self.words_per_row {
            let word = self.held[base + word_index];
            let bits = if held { word } else { !word } & mask;
            if bits != 0 {
                return Some(word_index * 64 + bits.trailing_zeros() as usize);
            }
            word_index += 1;
            mask = !0;
        }
        None
    }

    fn position(&self, seat: Seat) -> (usize, u32) {
        let row = usize::from(seat.row - 1);
        let index = usize::from(seat.seat - 1);
        (row * self.words_per_row + index / 64, (index % 64) as u32)
    }

    fn set(&mut self, seat: Seat, held: bool) {
        let (word, bit) = self.position(seat);
        let row = usize::from(seat.row - 1);
        if held {
            self.held[word] |= 1u64 << bit;
            self.free_in_row[row] -= 1;
            self.available -= 1;
        } else {
            self.held[word] &= !(1u64 << bit);
            self.free_in_row[row] += 1;
            self.available += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(rows: u16, seats: u16) -> Layout {
        Layout::new(rows, seats).expect("valid layout")
    }

    /// One row of `seats` with `taken` (1-based) held, choosing seats with `avoid`.
    fn row_with(seats: u16, taken: &[u16], avoid: bool) -> SectionState {
        SectionState::with_held(layout(1, seats), taken.iter().map(|s| Seat::new(1, *s)))
            .with_rules(SaleRules {
                avoid_single_seats: avoid,
                ..SaleRules::default()
            })
    }

    fn first_seat(state: &SectionState, count: u16) -> u16 {
        state
            .allocate(&SeatRequest::Adjacent(count))
            .expect("seats")[0]
            .seat
    }

    /// Whether `count` seats from `start` (1-based) in `row` leave a free seat beside them that
    /// has no free neighbour (brute force, seat by seat).
    fn leaves_lone_seat(state: &SectionState, row: u16, start: u16, count: u16) -> bool {
        let seats = state.layout().seats_per_row;
        let free = |seat: i32| {
            (1..=i32::from(seats)).contains(&seat) && !state.is_held(Seat::new(row, seat as u16))
        };
        let (before, after) = (i32::from(start) - 1, i32::from(start + count));
        (free(before) && !free(before - 1)) || (free(after) && !free(after + 1))
    }

    proptest::proptest! {
        #[test]
        fn avoiding_single_seats_keeps_the_row_and_leaves_a_lone_seat_only_when_unavoidable(
            taken in proptest::collection::vec((1u16..=3, 1u16..=12), 0..24),
            count in 1u16..=6,
        ) {
            let layout = layout(3, 12);
            let held = taken.iter().map(|(row, seat)| Seat::new(*row, *seat));
            let plain = SectionState::with_held(layout, held);
            let avoiding = plain.clone().with_rules(SaleRules {
                avoid_single_seats: true,
                ..SaleRules::default()
            });
            let request = SeatRequest::Adjacent(count);
            match (plain.allocate(&request), avoiding.allocate(&request)) {
                (Ok(first), Ok(chosen)) => {
                    let row = chosen[0].row;
                    proptest::prop_assert_eq!(first[0].row, row, "the best row is kept");
                    proptest::prop_assert!(chosen.iter().all(|seat| seat.row == row && !plain.is_held(*seat)));
                    proptest::prop_assert!(chosen.windows(2).all(|w| w[1].seat == w[0].seat + 1));
                    if leaves_lone_seat(&plain, row, chosen[0].seat, count) {
                        for start in 1..=(12 - count + 1) {
                            let fits = (start..start + count).all(|seat| !plain.is_held(Seat::new(row, seat)));
                            if fits {
                                proptest::prop_assert!(
                                    leaves_lone_seat(&plain, row, start, count),
                                    "seats from {} would leave no lone seat", start
                                );
                            }
                        }
                    }
                }
                (plain_answer, avoiding_answer) => {
                    proptest::prop_assert_eq!(plain_answer, avoiding_answer);
                }
            }
        }
    }

    #[test]
    fn avoiding_single_seats_skips_a_gap_it_would_leave_one_seat_of() {
        // Seat 3 taken: free 1-2 and 4-10. One seat at seat 1 would leave seat 2 alone.
        assert_eq!(first_seat(&row_with(10, &[3], false), 1), 1);
        assert_eq!(first_seat(&row_with(10, &[3], true), 1), 4);
        // Two seats fill the gap exactly: that is best.
        assert_eq!(first_seat(&row_with(10, &[3], true), 2), 1);
        // Seven free at the row's end, six asked: every placement leaves one; the first is kept.
        assert_eq!(first_seat(&row_with(10, &[1, 2, 3], true), 6), 4);
        // The next row is never preferred to leaving a lone seat in the best row.
        let two_rows =
            SectionState::with_held(layout(2, 4), [Seat::new(1, 1)]).with_rules(SaleRules {
                avoid_single_seats: true,
                ..SaleRules::default()
            });
        let seats = two_rows.allocate(&SeatRequest::Adjacent(2)).expect("seats");
        assert_eq!(seats, vec![Seat::new(1, 2), Seat::new(1, 3)]);
    }

    #[test]
    fn adjacent_seats_come_from_the_best_row_first() {
        let state = SectionState::new(layout(3, 5));
        let seats = state.allocate(&SeatRequest::Adjacent(3)).expect("seats");
        assert_eq!(
            seats,
            vec![Seat::new(1, 1), Seat::new(1, 2), Seat::new(1, 3)]
        );
    }

    #[test]
    fn adjacent_seats_never_cross_a_row_end() {
        // Row 1 has seats 4-5 free (2 seats), row 2 is empty: 3 adjacent must come from row 2.
        let state = SectionState::with_held(
            layout(2, 5),
            [Seat::new(1, 1), Seat::new(1, 2), Seat::new(1, 3)],
        );
        let seats = state.allocate(&SeatRequest::Adjacent(3)).expect("seats");
        assert_eq!(
            seats,
            vec![Seat::new(2, 1), Seat::new(2, 2), Seat::new(2, 3)]
        );
    }

    #[test]
    fn a_gap_inside_a_row_is_used_when_it_is_wide_enough() {
        let state = SectionState::with_held(
            layout(1, 10),
            [Seat::new(1, 1), Seat::new(1, 4), Seat::new(1, 8)],
        );
        // Free runs: 2-3 (2), 5-7 (3), 9-10 (2).
        assert_eq!(
            state.allocate(&SeatRequest::Adjacent(3)),
            Ok(vec![Seat::new(1, 5), Seat::new(1, 6), Seat::new(1, 7)])
        );
        assert_eq!(
            state.allocate(&SeatRequest::Adjacent(4)),
            Err(Rejection::NoAdjacentSeats { requested: 4 })
        );
    }

    #[test]
    fn runs_are_found_across_word_boundaries_in_long_rows() {
        // 130 seats per row: three words. Hold everything except 62..=66 (1-based).
        let held = (1..=130)
            .filter(|s| !(62..=66).contains(s))
            .map(|s| Seat::new(1, s));
        let state = SectionState::with_held(layout(1, 130), held);
        assert_eq!(state.available(), 5);
        let seats = state.allocate(&SeatRequest::Adjacent(5)).expect("seats");
        assert_eq!(seats.first(), Some(&Seat::new(1, 62)));
        assert_eq!(seats.last(), Some(&Seat::new(1, 66)));
    }

    #[test]
    fn the_last_seat_of_a_full_word_row_is_reachable() {
        let held = (1..=63).map(|s| Seat::new(1, s));
        let state = SectionState::with_held(layout(1, 64), held);
        assert_eq!(
            state.allocate(&SeatRequest::Adjacent(1)),
            Ok(vec![Seat::new(1, 64)])
        );
    }

    #[test]
    fn rejections_say_why() {
        let full = SectionState::with_held(layout(1, 2), [Seat::new(1, 1), Seat::new(1, 2)]);
        assert_eq!(
            full.allocate(&SeatRequest::Adjacent(1)),
            Err(Rejection::SoldOut)
        );
        let one_left = SectionState::with_held(layout(1, 2), [Seat::new(1, 1)]);
        assert_eq!(
            one_left.allocate(&SeatRequest::Adjacent(2)),
            Err(Rejection::NotEnoughSeats { available: 1 })
        );
        let empty = SectionState::new(layout(2, 2));
        assert_eq!(
            empty.allocate(&SeatRequest::Adjacent(3)),
            Err(Rejection::InvalidSeatCount { requested: 3 })
        );
        assert_eq!(
            empty.allocate(&SeatRequest::Picked(vec![Seat::new(3, 1)])),
            Err(Rejection::SeatOutOfRange {
                seat: Seat::new(3, 1)
            })
        );
        assert_eq!(
            empty.allocate(&SeatRequest::Picked(vec![Seat::new(1, 1), Seat::new(1, 1)])),
            Err(Rejection::DuplicateSeat {
                seat: Seat::new(1, 1)
            })
        );
    }

    #[test]
    fn picked_seats_are_all_or_nothing() {
        let state = SectionState::with_held(layout(2, 4), [Seat::new(2, 3)]);
        assert_eq!(
            state.allocate(&SeatRequest::Picked(vec![Seat::new(1, 1), Seat::new(2, 3)])),
            Err(Rejection::SeatTaken {
                seat: Seat::new(2, 3)
            })
        );
        assert_eq!(
            state.allocate(&SeatRequest::Picked(vec![Seat::new(2, 4), Seat::new(1, 1)])),
            Ok(vec![Seat::new(1, 1), Seat::new(2, 4)])
        );
    }

    #[test]
    fn the_bitmap_form_round_trips_and_matches_the_seats() {
        for (rows, seats) in [(3, 70), (2, 64), (5, 7), (1, 1000)] {
            let held: Vec<Seat> = (1..=rows)
                .flat_map(|r| {
                    (1..=seats)
                        .filter(move |s| (r * 31 + s * 17) % 3 == 0)
                        .map(move |s| Seat::new(r, s))
                })
                .collect();
            let state = SectionState::with_held(layout(rows, seats), held.iter().copied());
            let bitmap = state.to_bitmap();
            for seat in &held {
                let index =
                    usize::from(seat.row - 1) * usize::from(seats) + usize::from(seat.seat - 1);
                assert_ne!(bitmap[index / 8] & (1 << (index % 8)), 0, "{seat}");
            }
            let ones: u32 = bitmap.iter().map(|b| b.count_ones()).sum();
            assert_eq!(ones, held.len() as u32);
            assert_eq!(
                SectionState::from_bitmap(state.layout(), &bitmap),
                Some(state)
            );
        }
        assert_eq!(
            SectionState::from_bitmap(layout(1, 9), &[0]),
            None,
            "too short"
        );
        assert_eq!(
            SectionState::from_bitmap(layout(1, 9), &[0, 0b10]),
            None,
            "bit past the end"
        );
    }

    #[test]
    fn held_seats_round_trip_through_with_held() {
        let state = SectionState::with_held(layout(3, 70), [Seat::new(2, 65), Seat::new(3, 1)]);
        let rebuilt = SectionState::with_held(state.layout(), state.held_seats());
        assert_eq!(rebuilt, state);
        assert_eq!(state.held_count(), 2);
    }

    proptest::proptest! {
        #[test]
        fn a_section_rebuilt_row_by_row_from_row_bits_is_the_same_state(
            rows in 1u16..=4,
            seats in 1u16..=140,
            taken in proptest::collection::vec((1u16..=4, 1u16..=140), 0..60),
            stale in proptest::collection::vec((1u16..=4, 1u16..=140), 0..30),
        ) {
            let layout = layout(rows, seats);
            let inside = |(row, seat): &(u16, u16)| *row <= rows && *seat <= seats;
            let seat_of = |(row, seat): &(u16, u16)| Seat::new(*row, *seat);
            let state = SectionState::with_held(layout, taken.iter().filter(|s| inside(s)).map(seat_of));
            // What a store holds: an older whole state, then the rows written since.
            let mut rebuilt = SectionState::with_held(layout, stale.iter().filter(|s| inside(s)).map(seat_of));
            for row in 1..=rows {
                let bits = state.row_bits(row).expect("row inside");
                proptest::prop_assert_eq!(bits.len(), usize::from(seats).div_ceil(8));
                proptest::prop_assert!(rebuilt.set_row_bits(row, &bits));
            }
            proptest::prop_assert_eq!(&rebuilt, &state);
            proptest::prop_assert_eq!(rebuilt.available(), state.available());
            proptest::prop_assert_eq!(state.row_bits(0), None);
            proptest::prop_assert_eq!(state.row_bits(rows + 1), None);
        }
    }

    #[test]
    fn row_bits_that_do_not_fit_the_row_are_refused() {
        let mut state = SectionState::new(layout(2, 9));
        let before = state.clone();
        assert!(!state.set_row_bits(1, &[0xff]), "too short");
        assert!(!state.set_row_bits(1, &[0, 0b10]), "a seat past the end");
        assert!(!state.set_row_bits(3, &[0, 0]), "no such row");
        assert_eq!(state, before);
        assert!(state.set_row_bits(2, &[0xff, 0b1]));
        assert_eq!(state.available(), 9);
        assert!(state.is_held(Seat::new(2, 9)));
        let seats = state
            .allocate(&SeatRequest::Adjacent(9))
            .expect("row 1 free");
        assert_eq!(seats[0], Seat::new(1, 1), "row 2 is full, row 1 free");
    }
}
