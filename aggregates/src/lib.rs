//! The seat-allocation domain of seatflow, pure and synchronous.
//!
//! A section is `rows x seats_per_row` seats held as a bitmap plus an available count
//! ([`SectionState`]). Commands ([`Command`]) are decided against that state into events
//! ([`Event`]) or a typed [`Rejection`]; events are applied to rebuild the state. Nothing here
//! does I/O, reads a clock or spawns a task: the partition runner feeds the time in, stores what
//! comes out and carries out the side effects. That keeps every rule testable without Kafka or
//! a disk, and makes a replay of the events rebuild exactly the state that was decided.
//!
//! [`decide`] adds to a section's rules the rule that a reservation id is decided once (a
//! redelivered command is answered with the first outcome). [`Partition::decide_batch`] is a
//! partition owner's whole work: a batch of commands in, the [`Action`]s that must happen out,
//! for the embedded worker and the Kafka seat processor alike: holds that expire on the
//! partition's clock, the section's waitlist, and the hand-ons of the per-user limit's saga to
//! a user's quota ([`QuotaState`], decided like a section by the partition its key falls on).
//! [`partition_of`] says which partition owns a section, [`partition_of_command`] which one
//! decides a command. [`room`] is an event's virtual waiting room, decided the same way.

mod cache;
mod decision;
mod model;
mod partition;
mod quota;
pub mod room;
mod routing;
mod section;

#[cfg(any(test, feature = "test-util"))]
pub mod test_util;

pub use decision::{Decision, decide, evolve, expire, promote, waitlist};
pub use model::{
    Cancel, Checkout, ClaimQuota, Command, CommandReply, Completed, Confirm, Event, InitSection,
    Layout, LayoutError, MAX_HOLD_SECONDS, MAX_PAYMENT_REF_CHARS, MAX_ROWS, MAX_SEATS_PER_ROW,
    MAX_SEATS_PER_USER, MAX_SECTION_SEATS, Millis, Outcome, QuotaKey, QuotaVerdict, Rejection,
    ReleaseQuota, Reservation, ReservationId, Reserve, RoomCommand, RoomRecorded, RoomRequest,
    SaleRules, Seat, SeatRequest, SectionInitialized, SectionKey, SectionStatus, Status,
};
pub use partition::{
    Action, DEFAULT_CACHED_QUOTAS, DEFAULT_CACHED_SECTIONS, DEFAULT_WAITLIST_PER_SECTION, Hold,
    MemoryStore, Partition, PartitionSettings, PartitionStore, SectionChange, Waiting,
};
pub use quota::QuotaState;
pub use routing::{murmur2, partition_of, partition_of_command};
pub use section::SectionState;

#[cfg(test)]
mod lifecycle_tests;
#[cfg(test)]
mod limit_tests;
#[cfg(test)]
mod room_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod waitlist_tests;
