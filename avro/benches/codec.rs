//! Avro codec cost of the records on the hot path: the log record and the section state.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use seatflow_aggregates::{
    Completed, Event, Layout, Reservation, ReservationId, Seat, SectionKey, SectionState, Status,
};
use seatflow_avro::{StoredSection, decode, decode_through_values, encode, encode_through_values};

fn bench(c: &mut Criterion) {
    let key = SectionKey::new("0193a1b2-7c4d-7e8f-9a0b-1c2d3e4f5a6b", "A12");
    let event = Event::ReservationCompleted(Completed {
        reservation: Reservation {
            id: ReservationId::new_v7(),
            key: key.clone(),
            user_id: "user-123456".into(),
            status: Status::Confirmed,
            requested_seats: 3,
            seats: vec![Seat::new(4, 7), Seat::new(4, 8), Seat::new(4, 9)],
            reason: None,
            requested_at: 1_764_000_000_000,
            decided_at: 1_764_000_000_002,
            cancelled_at: None,
            checkout: Default::default(),
        },
        available: 4_321,
    });
    let layout = Layout::new(50, 100).expect("layout");
    let held = (1..=25u16).flat_map(|row| (1..=100u16).map(move |seat| Seat::new(row, seat)));
    let state = StoredSection {
        key,
        state: SectionState::with_held(layout, held),
    };

    let mut group = c.benchmark_group("avro");
    let event_bytes = encode(&event).expect("encode");
    group.bench_function("encode_seat_event", |b| {
        b.iter(|| black_box(encode(black_box(&event))))
    });
    // The same bytes through an Avro value and the generic writer (what `encode` did before
    // the decided path's records were written directly).
    group.bench_function("encode_seat_event_through_values", |b| {
        b.iter(|| black_box(encode_through_values(black_box(&event))))
    });
    group.bench_function("decode_seat_event", |b| {
        b.iter(|| black_box(decode::<Event>(black_box(&event_bytes))))
    });
    group.bench_function("decode_seat_event_through_values", |b| {
        b.iter(|| black_box(decode_through_values::<Event>(black_box(&event_bytes))))
    });
    let state_bytes = encode(&state).expect("encode");
    group.bench_function("encode_section_state_5000_seats", |b| {
        b.iter(|| black_box(encode(black_box(&state))))
    });
    group.bench_function("decode_section_state_5000_seats", |b| {
        b.iter(|| black_box(decode::<StoredSection>(black_box(&state_bytes))))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
