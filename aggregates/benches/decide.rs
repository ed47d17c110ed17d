//! Seat decisions per second on a 5,000-seat section (50 rows x 100 seats).

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use seatflow_aggregates::{
    Command, Decision, Layout, ReservationId, Reserve, SaleRules, SeatRequest, SectionKey,
    SectionState, decide,
};

fn reserve(count: u16) -> Command {
    Command::Reserve(Reserve {
        reservation_id: ReservationId::new_v7(),
        key: SectionKey::new("evt", "A"),
        user_id: "user-1".into(),
        request: SeatRequest::Adjacent(count),
        requested_at: 0,
        quota: Default::default(),
        waitlist: false,
    })
}

fn bench(c: &mut Criterion) {
    let layout = Layout::new(50, 100).expect("layout");
    let mut group = c.benchmark_group("decide");
    group.throughput(Throughput::Elements(1));

    // Decide + apply until the section is sold out, then start over with an empty section: the
    // average over a whole sale (early rows, scattered gaps, sold-out rejections).
    let commands: Vec<Command> = (0..64).map(|i| reserve(1 + (i % 4) as u16)).collect();
    // The same, with best-available avoiding lone seats (the default of a new event).
    for (name, avoid_single_seats) in [
        ("reserve_adjacent_5000_seats", false),
        ("reserve_adjacent_5000_seats_avoiding_single_seats", true),
    ] {
        let empty = SectionState::new(layout).with_rules(SaleRules {
            avoid_single_seats,
            ..SaleRules::default()
        });
        let mut state = empty.clone();
        let mut i = 0usize;
        group.bench_function(name, |b| {
            b.iter(|| {
                let command = &commands[i % commands.len()];
                i += 1;
                match decide(Some(&state), None, command, 0) {
                    Decision::Append(events) => {
                        for event in &events {
                            state.apply(event);
                        }
                        if state.available() == 0 {
                            state = empty.clone();
                        }
                        black_box(events);
                    }
                    other => {
                        black_box(other);
                    }
                }
            })
        });
    }

    // The search alone in a section that is 90% held with scattered gaps.
    let held = (1..=50u16)
        .flat_map(|row| (1..=100u16).map(move |seat| seatflow_aggregates::Seat::new(row, seat)))
        .filter(|seat| !(seat.row as u32 * 7 + seat.seat as u32 * 13).is_multiple_of(10));
    let fragmented = SectionState::with_held(layout, held);
    group.bench_function("allocate_2_in_fragmented_section", |b| {
        b.iter(|| black_box(fragmented.allocate(black_box(&SeatRequest::Adjacent(1)))))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
