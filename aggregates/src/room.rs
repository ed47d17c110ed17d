//! The virtual waiting room of one event: who is in line, in what order, and who may buy now.
//!
//! Pure like the sections: the room's owner (the partition its event falls on) feeds in the
//! joins, the ends of sessions and its clock ([`RoomState::advance`]), and gets back the
//! [`RoomEvent`]s to append to the log; applying those events ([`RoomState::apply`]) rebuilds
//! the room exactly (the state changes only by applying them, even inside `advance`), so a
//! replay or a failover admits no one twice and loses no ticket. The partition its event falls
//! on owns it ([`crate::Partition`]); a gateway keeps a replica by applying the same events.
//!
//! The rules, as the big on-sales run them:
//! - The room opens `opens_before_seconds` before the on-sale; one ticket per user (joining
//!   again gives the same ticket).
//! - Everyone who joined before the on-sale gets a position by a uniform shuffle at the on-sale
//!   (being early does not matter, so a bot that joins first gains nothing); the seed is drawn
//!   by the owner and recorded in the [`RoomEvent::Shuffled`] event, so an audit recomputes the
//!   order ([`shuffled_order`]). Later joiners go to the back in arrival order.
//! - Tickets are admitted in position order at `admit_per_minute` (a bucket holding at most one
//!   second's worth, at least one admission, so a pause does not turn into a burst), never more
//!   than `max_active` sessions at once. A session ends when its user confirms, when it
//!   expires after `session_seconds`, or when the user leaves; that frees its slot.
//!
//! Counting is in integers (a credit in 1/60,000ths of an admission per millisecond), so the
//! same events always rebuild the same state.

use std::collections::{BTreeMap, BTreeSet};

use crate::model::Millis;

/// A ticket's id (a UUID v7, made by the gateway that took the join).
pub type TicketId = uuid::Uuid;

/// An event's waiting-room settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RoomRules {
    /// When the sale starts (Unix milliseconds).
    pub on_sale_at: Millis,
    /// Admissions a minute; none: as fast as `max_active` allows.
    pub admit_per_minute: Option<u32>,
    /// Most admitted sessions at once; none: no cap but the rate.
    pub max_active: Option<u32>,
    /// How long an admission lasts.
    pub session_seconds: u32,
    /// How long before the on-sale the room opens.
    pub opens_before_seconds: u32,
}

impl RoomRules {
    /// When joining becomes possible.
    pub fn opens_at(&self) -> Millis {
        self.on_sale_at - i64::from(self.opens_before_seconds) * 1_000
    }
}

/// Where a ticket stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TicketStatus {
    /// In line.
    Waiting,
    /// May buy until `until`.
    Admitted { at: Millis, until: Millis },
    /// Out of the room.
    Ended { at: Millis, why: SessionEnd },
}

/// Why a ticket left the room.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionEnd {
    /// Its user's reservation was confirmed.
    Confirmed,
    /// The admission ran out.
    Expired,
    /// The user left.
    Left,
}

/// One ticket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ticket {
    pub id: TicketId,
    pub user: String,
    pub joined_at: Millis,
    /// How many tickets joined before this one (the order the shuffle starts from).
    pub arrival: u32,
    /// 1-based place in line; none until the on-sale's shuffle for an early joiner.
    pub position: Option<u32>,
    pub status: TicketStatus,
}

/// What the room's owner decided: the room's log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RoomEvent {
    /// The room was set up, or its rules changed (only before the shuffle).
    Opened { rules: RoomRules, at: Millis },
    Joined {
        ticket: TicketId,
        user: String,
        at: Millis,
    },
    /// The early joiners put in order with `seed` ([`shuffled_order`]).
    Shuffled { seed: u64, at: Millis },
    Admitted {
        ticket: TicketId,
        at: Millis,
        until: Millis,
    },
    Ended {
        ticket: TicketId,
        at: Millis,
        why: SessionEnd,
    },
}

impl RoomEvent {
    /// The ticket whose stored state the event changes, if one.
    pub fn ticket(&self) -> Option<TicketId> {
        match self {
            Self::Opened { .. } | Self::Shuffled { .. } => None,
            Self::Joined { ticket, .. }
            | Self::Admitted { ticket, .. }
            | Self::Ended { ticket, .. } => Some(*ticket),
        }
    }
}

/// Why a join is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JoinRefused {
    /// Before `on_sale_at - opens_before_seconds` (`queue_not_open`).
    NotOpen { opens_at: Millis },
}

/// The shuffle at the on-sale, as recorded: enough to put the line back in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shuffle {
    pub seed: u64,
    pub at: Millis,
    /// How many tickets had joined (the first `early` arrivals are shuffled).
    pub early: u32,
}

/// A room's state apart from its tickets: what is stored once per room, the tickets each under
/// their own key (a join or an admission writes one ticket, not the whole line).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RoomHeader {
    pub rules: RoomRules,
    pub shuffle: Option<Shuffle>,
    pub credit: u64,
    pub credited_at: Millis,
}

/// The room of one event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoomState {
    rules: RoomRules,
    tickets: BTreeMap<TicketId, Ticket>,
    by_user: BTreeMap<String, TicketId>,
    /// Joined before the shuffle, in arrival order.
    early: Vec<TicketId>,
    /// The line from the shuffle on: positions 1, 2, ... in order.
    line: Vec<TicketId>,
    /// Index in `line` of the next ticket to consider for admission.
    next: usize,
    shuffle: Option<Shuffle>,
    /// Positions at or behind the head of the line whose tickets left while waiting (what
    /// `ahead_of` does not count).
    left: BTreeSet<u32>,
    /// The admitted sessions, by when they run out.
    sessions: BTreeSet<(Millis, TicketId)>,
    /// Admission credit, in 1/60,000ths of an admission.
    credit: u64,
    /// When the credit was last topped up.
    credited_at: Millis,
    active: u32,
}

/// One admission, in credit units (a rate of `r` a minute adds `r` units a millisecond).
const ADMISSION: u64 = 60_000;

impl RoomState {
    pub fn new(rules: RoomRules) -> Self {
        Self {
            rules,
            tickets: BTreeMap::new(),
            by_user: BTreeMap::new(),
            early: Vec::new(),
            line: Vec::new(),
            next: 0,
            shuffle: None,
            left: BTreeSet::new(),
            sessions: BTreeSet::new(),
            credit: 0,
            credited_at: rules.on_sale_at,
            active: 0,
        }
    }

    pub fn rules(&self) -> RoomRules {
        self.rules
    }

    pub fn ticket(&self, id: TicketId) -> Option<&Ticket> {
        self.tickets.get(&id)
    }

    /// The ticket of `user`, if they joined.
    pub fn ticket_of(&self, user: &str) -> Option<&Ticket> {
        self.by_user.get(user).and_then(|id| self.tickets.get(id))
    }

    /// Admitted sessions now.
    pub fn active(&self) -> u32 {
        self.active
    }

    /// Tickets still waiting ahead of `id` (none before the shuffle for an early joiner, or
    /// once it is not waiting). Logarithmic in the tickets that left the line.
    pub fn ahead_of(&self, id: TicketId) -> Option<u32> {
        let ticket = self.tickets.get(&id)?;
        let position = ticket.position?;
        if ticket.status != TicketStatus::Waiting {
            return None;
        }
        // Positions next+1 .. position-1 are behind the head; those that left do not count.
        let head = u32::try_from(self.next).unwrap_or(u32::MAX) + 1;
        let behind_head = position.saturating_sub(head);
        let left = self.left.range(head..position).count();
        Some(behind_head.saturating_sub(u32::try_from(left).unwrap_or(u32::MAX)))
    }

    /// Whether the on-sale's shuffle happened.
    pub fn is_shuffled(&self) -> bool {
        self.shuffle.is_some()
    }

    /// The seconds `id` may still wait to be admitted at `now`, as the room runs now: the
    /// admissions ahead at the rate (or, with only a cap, sessions running out one after
    /// another); before the shuffle, the time to the on-sale plus the middle of the crowd's.
    pub fn estimated_wait_seconds(&self, id: TicketId, now: Millis) -> Option<u64> {
        let ticket = self.tickets.get(&id)?;
        if ticket.status != TicketStatus::Waiting {
            return Some(0);
        }
        let (admissions, before) = match self.ahead_of(id) {
            Some(ahead) => (u64::from(ahead) + 1, 0),
            None => {
                let crowd = u64::try_from(self.early.len()).unwrap_or(u64::MAX);
                let to_sale = u64::try_from(self.rules.on_sale_at - now).unwrap_or(0);
                (crowd.div_ceil(2), to_sale.div_ceil(1_000))
            }
        };
        let admitting = match (self.rules.admit_per_minute, self.rules.max_active) {
            (Some(rate), _) => (admissions * 60).div_ceil(u64::from(rate.max(1))),
            (None, Some(most)) => {
                let rounds = admissions.div_ceil(u64::from(most.max(1)));
                rounds.saturating_sub(1) * u64::from(self.rules.session_seconds)
            }
            (None, None) => 0,
        };
        Some(before + admitting)
    }

    /// The room apart from its tickets.
    pub fn header(&self) -> RoomHeader {
        RoomHeader {
            rules: self.rules,
            shuffle: self.shuffle,
            credit: self.credit,
            credited_at: self.credited_at,
        }
    }

    /// Every ticket, by id.
    pub fn tickets(&self) -> impl Iterator<Item = &Ticket> {
        self.tickets.values()
    }

    /// The room as stored: its header and its tickets (any order; positions are recomputed
    /// from the arrivals and the shuffle's seed).
    pub fn restore(header: RoomHeader, tickets: impl IntoIterator<Item = Ticket>) -> Self {
        let mut room = Self::new(header.rules);
        room.credit = header.credit;
        room.credited_at = header.credited_at;
        room.shuffle = header.shuffle;
        let mut arrivals: Vec<Ticket> = tickets.into_iter().collect();
        arrivals.sort_by_key(|ticket| ticket.arrival);
        let order: Vec<TicketId> = arrivals.iter().map(|ticket| ticket.id).collect();
        for mut ticket in arrivals {
            ticket.position = None;
            if let TicketStatus::Admitted { until, .. } = ticket.status {
                room.sessions.insert((until, ticket.id));
                room.active += 1;
            }
            room.by_user.insert(ticket.user.clone(), ticket.id);
            room.tickets.insert(ticket.id, ticket);
        }
        match header.shuffle {
            None => room.early = order,
            Some(shuffle) => {
                let early = usize::try_from(shuffle.early)
                    .unwrap_or(usize::MAX)
                    .min(order.len());
                let mut line = shuffled_order(&order[..early], shuffle.seed);
                line.extend_from_slice(&order[early..]);
                room.place(line);
            }
        }
        room
    }

    /// Decide a join by `user` at `now`, with `fresh` as the id of a new ticket: the ticket's
    /// id and, when it is new, the event to append.
    pub fn join(
        &self,
        user: &str,
        fresh: TicketId,
        now: Millis,
    ) -> Result<(TicketId, Option<RoomEvent>), JoinRefused> {
        if let Some(existing) = self.by_user.get(user) {
            return Ok((*existing, None));
        }
        if now < self.rules.opens_at() {
            return Err(JoinRefused::NotOpen {
                opens_at: self.rules.opens_at(),
            });
        }
        Ok((
            fresh,
            Some(RoomEvent::Joined {
                ticket: fresh,
                user: user.to_owned(),
                at: now,
            }),
        ))
    }

    /// Decide what the clock brings at `now`, and apply it: the shuffle at the on-sale (with
    /// `seed`, drawn by the owner), the sessions that ran out, then the admissions the rate and
    /// the cap allow. The events returned are what a replay applies to get here. Its cost is
    /// the events it makes, whatever the size of the line.
    pub fn advance(&mut self, now: Millis, seed: u64) -> Vec<RoomEvent> {
        let mut events = Vec::new();
        let mut emit = |room: &mut RoomState, event: RoomEvent| {
            room.apply(&event);
            events.push(event);
        };
        if self.shuffle.is_none() && now >= self.rules.on_sale_at {
            emit(self, RoomEvent::Shuffled { seed, at: now });
        }
        if self.shuffle.is_none() {
            return events;
        }
        while let Some(&(until, ticket)) = self.sessions.first()
            && until <= now
        {
            let why = SessionEnd::Expired;
            emit(
                self,
                RoomEvent::Ended {
                    ticket,
                    at: now,
                    why,
                },
            );
        }
        let until = now + i64::from(self.rules.session_seconds) * 1_000;
        while self.may_admit(now) {
            let Some(ticket) = self.first_waiting() else {
                break;
            };
            emit(
                self,
                RoomEvent::Admitted {
                    ticket,
                    at: now,
                    until,
                },
            );
        }
        events
    }

    /// When [`RoomState::advance`] next has something to do, if anything: the on-sale, the
    /// first session to run out, or (with someone waiting and a free slot) the moment the
    /// credit allows the next admission. The owner sets its timer to this.
    pub fn next_due(&self) -> Option<Millis> {
        if self.shuffle.is_none() {
            return Some(self.rules.on_sale_at);
        }
        let session_ends = self.sessions.first().map(|(until, _)| *until);
        let under_cap = self.rules.max_active.is_none_or(|most| self.active < most);
        let admission = (under_cap && self.first_waiting().is_some()).then(|| {
            match self.rules.admit_per_minute {
                None => self.credited_at,
                Some(rate) => {
                    let missing = ADMISSION.saturating_sub(self.credit);
                    let millis = missing.div_ceil(u64::from(rate.max(1)));
                    self.credited_at + i64::try_from(millis).unwrap_or(i64::MAX / 2)
                }
            }
        });
        [session_ends, admission].into_iter().flatten().min()
    }

    /// Decide that `user`'s session ends (`why`: confirmed or left) at `now`; nothing when the
    /// user has no ticket in the room any more.
    pub fn end(&self, user: &str, why: SessionEnd, now: Millis) -> Option<RoomEvent> {
        let ticket = self.ticket_of(user)?;
        match ticket.status {
            TicketStatus::Ended { .. } => None,
            TicketStatus::Waiting | TicketStatus::Admitted { .. } => Some(RoomEvent::Ended {
                ticket: ticket.id,
                at: now,
                why,
            }),
        }
    }

    /// Apply a decided event.
    pub fn apply(&mut self, event: &RoomEvent) {
        match event {
            RoomEvent::Opened { rules, .. } => {
                if self.shuffle.is_some() {
                    return;
                }
                self.rules = *rules;
                self.credited_at = rules.on_sale_at;
            }
            RoomEvent::Joined { ticket, user, at } => {
                if self.tickets.contains_key(ticket) || self.by_user.contains_key(user) {
                    return;
                }
                let position = if self.shuffle.is_some() {
                    self.line.push(*ticket);
                    Some(u32::try_from(self.line.len()).unwrap_or(u32::MAX))
                } else {
                    self.early.push(*ticket);
                    None
                };
                self.by_user.insert(user.clone(), *ticket);
                self.tickets.insert(
                    *ticket,
                    Ticket {
                        id: *ticket,
                        user: user.clone(),
                        joined_at: *at,
                        arrival: u32::try_from(self.tickets.len()).unwrap_or(u32::MAX),
                        position,
                        status: TicketStatus::Waiting,
                    },
                );
            }
            RoomEvent::Shuffled { seed, at } => {
                if self.shuffle.is_some() {
                    return;
                }
                let early = std::mem::take(&mut self.early);
                self.shuffle = Some(Shuffle {
                    seed: *seed,
                    at: *at,
                    early: u32::try_from(early.len()).unwrap_or(u32::MAX),
                });
                // The sale opens with one second's worth of admissions at once.
                self.credited_at = *at;
                self.credit = self.credit_cap();
                let mut line = shuffled_order(&early, *seed);
                line.append(&mut self.line);
                self.place(line);
            }
            RoomEvent::Admitted { ticket, at, until } => {
                let Some(entry) = self.tickets.get_mut(ticket) else {
                    return;
                };
                if entry.status != TicketStatus::Waiting {
                    return;
                }
                entry.status = TicketStatus::Admitted {
                    at: *at,
                    until: *until,
                };
                self.sessions.insert((*until, *ticket));
                self.active += 1;
                self.credit = self.credit_at(*at).saturating_sub(ADMISSION);
                self.credited_at = self.credited_at.max(*at);
                self.skip_done();
            }
            RoomEvent::Ended { ticket, at, why } => {
                let Some(entry) = self.tickets.get_mut(ticket) else {
                    return;
                };
                match entry.status {
                    TicketStatus::Ended { .. } => return,
                    TicketStatus::Admitted { until, .. } => {
                        self.sessions.remove(&(until, *ticket));
                        self.active -= 1;
                    }
                    TicketStatus::Waiting => {
                        if let Some(position) = entry.position {
                            self.left.insert(position);
                        }
                    }
                }
                entry.status = TicketStatus::Ended { at: *at, why: *why };
                self.skip_done();
            }
        }
    }

    /// The credit at `now`: what was left at the last admission plus what was earned since, up
    /// to one second's worth (at least one admission).
    fn credit_at(&self, now: Millis) -> u64 {
        let Some(rate) = self.rules.admit_per_minute else {
            return self.credit;
        };
        let elapsed = u64::try_from(now - self.credited_at).unwrap_or(0);
        (self.credit + elapsed * u64::from(rate)).min(self.credit_cap())
    }

    /// The most credit kept: one second's worth, at least one admission.
    fn credit_cap(&self) -> u64 {
        self.rules
            .admit_per_minute
            .map_or(ADMISSION, |rate| (u64::from(rate) * 1_000).max(ADMISSION))
    }

    fn may_admit(&self, now: Millis) -> bool {
        let under_cap = self.rules.max_active.is_none_or(|most| self.active < most);
        let has_credit = self.rules.admit_per_minute.is_none() || self.credit_at(now) >= ADMISSION;
        under_cap && has_credit
    }

    /// The first ticket in line still waiting.
    fn first_waiting(&self) -> Option<TicketId> {
        self.line[self.next.min(self.line.len())..]
            .iter()
            .find(|id| self.tickets[*id].status == TicketStatus::Waiting)
            .copied()
    }

    /// Move the head of the line past tickets no longer waiting (admitted, ended), so each is
    /// passed once.
    fn skip_done(&mut self) {
        while let Some(id) = self.line.get(self.next)
            && self.tickets[id].status != TicketStatus::Waiting
        {
            self.next += 1;
        }
        let head = u32::try_from(self.next).unwrap_or(u32::MAX) + 1;
        while self.left.first().is_some_and(|position| *position < head) {
            self.left.pop_first();
        }
    }

    /// Make `line` the line: number the tickets in its order and find its head.
    fn place(&mut self, line: Vec<TicketId>) {
        self.left.clear();
        for (index, id) in line.iter().enumerate() {
            if let Some(ticket) = self.tickets.get_mut(id) {
                let position = u32::try_from(index + 1).unwrap_or(u32::MAX);
                ticket.position = Some(position);
                if matches!(ticket.status, TicketStatus::Ended { .. }) {
                    self.left.insert(position);
                }
            }
        }
        self.line = line;
        self.next = 0;
        self.skip_done();
    }

    /// Tickets in line, in order (for the audit and the tests).
    pub fn line(&self) -> &[TicketId] {
        &self.line
    }
}

/// The early joiners (in arrival order) put in line by `seed`: a Fisher-Yates shuffle driven by
/// SplitMix64, written out here so that an audit in any language recomputes it.
pub fn shuffled_order(arrivals: &[TicketId], seed: u64) -> Vec<TicketId> {
    let mut line: Vec<TicketId> = arrivals.to_vec();
    let mut state = seed;
    for i in (1..line.len()).rev() {
        let bound = u64::try_from(i + 1).unwrap_or(u64::MAX);
        let j = usize::try_from(uniform_below(&mut state, bound)).unwrap_or(0);
        line.swap(i, j);
    }
    line
}

/// One step of SplitMix64 from `value`: a well-mixed 64-bit number (the owner's seeds).
pub fn mix(value: u64) -> u64 {
    let mut state = value;
    splitmix64(&mut state)
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A uniform draw in `0..bound` (rejection sampling: no modulo bias).
fn uniform_below(state: &mut u64, bound: u64) -> u64 {
    let zone = u64::MAX - (u64::MAX % bound);
    loop {
        let draw = splitmix64(state);
        if draw < zone {
            return draw % bound;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ON_SALE: Millis = 1_800_000_000_000;

    fn rules(admit_per_minute: Option<u32>, max_active: Option<u32>) -> RoomRules {
        RoomRules {
            on_sale_at: ON_SALE,
            admit_per_minute,
            max_active,
            session_seconds: 600,
            opens_before_seconds: 1_800,
        }
    }

    fn id(n: u128) -> TicketId {
        uuid::Uuid::from_u128(n)
    }

    /// Decide and apply.
    fn join(room: &mut RoomState, user: &str, n: u128, now: Millis) -> TicketId {
        let (ticket, event) = room.join(user, id(n), now).expect("open");
        if let Some(event) = event {
            room.apply(&event);
        }
        ticket
    }

    fn tick(room: &mut RoomState, now: Millis, seed: u64) -> Vec<RoomEvent> {
        room.advance(now, seed)
    }

    fn admitted(events: &[RoomEvent]) -> Vec<TicketId> {
        events
            .iter()
            .filter_map(|e| match e {
                RoomEvent::Admitted { ticket, .. } => Some(*ticket),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn the_room_opens_before_the_sale_and_a_user_has_one_ticket() {
        let mut room = RoomState::new(rules(Some(60), None));
        let too_early = ON_SALE - 1_800_001;
        assert_eq!(
            room.join("ann", id(1), too_early),
            Err(JoinRefused::NotOpen {
                opens_at: ON_SALE - 1_800_000
            })
        );
        let first = join(&mut room, "ann", 1, ON_SALE - 1_000);
        let again = join(&mut room, "ann", 2, ON_SALE - 500);
        assert_eq!(first, again, "joining again gives the same ticket");
        assert_eq!(room.ticket(first).expect("ticket").position, None);
        assert!(room.ticket(id(2)).is_none());
    }

    #[test]
    fn early_joiners_are_shuffled_at_the_sale_and_later_ones_go_to_the_back() {
        let mut room = RoomState::new(rules(Some(60), Some(1)));
        for n in 0..50 {
            join(&mut room, &format!("u{n}"), n, ON_SALE - 10_000 + n as i64);
        }
        let events = tick(&mut room, ON_SALE, 42);
        assert!(matches!(events[0], RoomEvent::Shuffled { seed: 42, .. }));
        let arrivals: Vec<TicketId> = (0..50).map(id).collect();
        assert_eq!(room.line(), shuffled_order(&arrivals, 42).as_slice());
        assert_ne!(room.line(), arrivals.as_slice(), "not arrival order");
        let late = join(&mut room, "late", 99, ON_SALE + 5);
        assert_eq!(room.ticket(late).expect("late").position, Some(51));
        // The positions are 1..=51, each once.
        let mut positions: Vec<u32> = room
            .line()
            .iter()
            .map(|t| room.ticket(*t).and_then(|t| t.position).expect("placed"))
            .collect();
        positions.sort_unstable();
        assert_eq!(positions, (1..=51).collect::<Vec<_>>());
        // The first admitted is position 1.
        assert_eq!(admitted(&events), vec![room.line()[0]]);
    }

    #[test]
    fn admissions_follow_the_rate_within_five_percent_over_each_minute() {
        let mut room = RoomState::new(rules(Some(1_000), None));
        for n in 0..20_000 {
            join(&mut room, &format!("u{n}"), n, ON_SALE - 60_000);
        }
        // The owner's clock ticks every 100 ms, with a jitter, for ten minutes.
        let mut now = ON_SALE;
        let mut per_minute = [0_u32; 10];
        while now < ON_SALE + 600_000 {
            let admitted = admitted(&tick(&mut room, now, 7)).len() as u32;
            per_minute[((now - ON_SALE) / 60_000) as usize] += admitted;
            now += 100 + (now % 7);
        }
        for (minute, count) in per_minute.iter().enumerate() {
            assert!(
                (950..=1_050).contains(count),
                "minute {minute}: {count} admitted"
            );
        }
    }

    #[test]
    fn never_more_active_than_the_cap_and_an_ended_session_frees_its_slot() {
        let mut room = RoomState::new(rules(None, Some(3)));
        for n in 0..10 {
            join(&mut room, &format!("u{n}"), n, ON_SALE - 1);
        }
        let first = admitted(&tick(&mut room, ON_SALE, 1));
        assert_eq!(first.len(), 3);
        assert_eq!(room.active(), 3);
        assert!(admitted(&tick(&mut room, ON_SALE + 1_000, 1)).is_empty());
        // One confirms, one leaves: two slots.
        let who = |t: TicketId| room.ticket(t).expect("ticket").user.clone();
        let (a, b) = (who(first[0]), who(first[1]));
        for (user, why) in [(a, SessionEnd::Confirmed), (b, SessionEnd::Left)] {
            let end = room.end(&user, why, ON_SALE + 2_000).expect("ends");
            room.apply(&end);
            assert!(room.end(&user, why, ON_SALE + 2_001).is_none(), "once");
        }
        let next = admitted(&tick(&mut room, ON_SALE + 2_000, 1));
        assert_eq!(next, room.line()[3..5].to_vec(), "the next two in line");
        // The sessions run out after session_seconds.
        let later = tick(&mut room, ON_SALE + 600_000, 1);
        let expired = later
            .iter()
            .filter(|e| {
                matches!(
                    e,
                    RoomEvent::Ended {
                        why: SessionEnd::Expired,
                        ..
                    }
                )
            })
            .count();
        assert_eq!(expired, 1, "the first one left: its session ran out");
        assert_eq!(room.active(), 3, "and its slot went to the next");
    }

    #[test]
    fn the_owner_is_told_when_to_come_back() {
        let mut room = RoomState::new(rules(Some(60), Some(1)));
        assert_eq!(room.next_due(), Some(ON_SALE), "the on-sale");
        for n in 0..3 {
            join(&mut room, &format!("u{n}"), n, ON_SALE - 1);
        }
        tick(&mut room, ON_SALE, 9);
        // One admitted, the cap reached: next is the end of its session.
        assert_eq!(room.next_due(), Some(ON_SALE + 600_000));
        let first = room.ticket(room.line()[0]).expect("t").user.clone();
        let end = room
            .end(&first, SessionEnd::Confirmed, ON_SALE + 10)
            .expect("ends");
        room.apply(&end);
        // A free slot, and at 60 a minute the credit allows one a second after the last.
        assert_eq!(room.next_due(), Some(ON_SALE + 1_000));
        assert!(
            admitted(&tick(&mut room, ON_SALE + 999, 9)).is_empty(),
            "not yet"
        );
        assert_eq!(
            admitted(&tick(&mut room, ON_SALE + 1_000, 9)).len(),
            1,
            "then"
        );
    }

    #[test]
    fn a_waiting_ticket_that_leaves_is_skipped_and_ahead_counts_only_waiting_ones() {
        let mut room = RoomState::new(rules(Some(60), None));
        for n in 0..5 {
            join(&mut room, &format!("u{n}"), n, ON_SALE - 1);
        }
        tick(&mut room, ON_SALE, 3);
        let line = room.line().to_vec();
        assert_eq!(room.ahead_of(line[4]), Some(3), "one admitted, three ahead");
        let second = room.ticket(line[1]).expect("t").user.clone();
        let leave = room
            .end(&second, SessionEnd::Left, ON_SALE + 1)
            .expect("leaves");
        room.apply(&leave);
        assert_eq!(room.ahead_of(line[4]), Some(2));
        let next = admitted(&tick(&mut room, ON_SALE + 1_000, 3));
        assert_eq!(next, vec![line[2]], "the one who left is skipped");
    }

    #[test]
    fn the_events_rebuild_the_room() {
        let mut room = RoomState::new(rules(Some(600), Some(50)));
        let mut log = Vec::new();
        for n in 0..300_u128 {
            let at = ON_SALE - 5_000 + (n as i64) * 40;
            if let (_, Some(event)) = room.join(&format!("u{n}"), id(n), at).expect("open") {
                room.apply(&event);
                log.push(event);
            }
            if n % 10 == 0 {
                log.extend(room.advance(at, 11));
            }
            if n % 37 == 0
                && let Some(end) = room.end(&format!("u{}", n / 2), SessionEnd::Confirmed, at)
            {
                room.apply(&end);
                log.push(end);
            }
        }
        let mut replayed = RoomState::new(room.rules());
        for event in &log {
            replayed.apply(event);
        }
        assert_eq!(replayed, room);
        // Applying the log twice changes nothing (a redelivered event is harmless).
        for event in &log {
            replayed.apply(event);
        }
        assert_eq!(replayed, room);
    }

    /// A chi-square test of the shuffle: over many seeds, each of 8 tickets lands in each of
    /// the 8 positions about equally often.
    #[test]
    fn the_shuffle_is_uniform() {
        const N: usize = 8;
        const SEEDS: u64 = 80_000;
        let arrivals: Vec<TicketId> = (0..N as u128).map(id).collect();
        let mut counts = [[0_u64; N]; N];
        for seed in 0..SEEDS {
            for (position, ticket) in shuffled_order(&arrivals, seed).iter().enumerate() {
                counts[ticket.as_u128() as usize][position] += 1;
            }
        }
        let expected = SEEDS as f64 / N as f64;
        let chi_square: f64 = counts
            .iter()
            .flatten()
            .map(|&observed| (observed as f64 - expected).powi(2) / expected)
            .sum();
        // 49 degrees of freedom ((8-1) x (8-1)): the 99.9th percentile is 85.4.
        assert!(chi_square < 85.4, "chi-square {chi_square:.1}");
    }

    #[derive(Clone, Debug)]
    enum Step {
        Join(u8),
        Leave(u8),
        Confirm(u8),
        /// Let this many milliseconds pass, then advance the clock.
        Wait(u16),
    }

    fn step() -> impl proptest::strategy::Strategy<Value = Step> {
        use proptest::prelude::*;
        prop_oneof![
            3 => (0u8..40).prop_map(Step::Join),
            1 => (0u8..40).prop_map(Step::Leave),
            1 => (0u8..40).prop_map(Step::Confirm),
            3 => (0u16..3_000).prop_map(Step::Wait),
        ]
    }

    proptest::proptest! {
        /// Whatever the joins, leaves, confirmations and clock: never more sessions than the
        /// cap, no ticket admitted twice, admissions in line order, and the log rebuilds the
        /// room.
        #[test]
        fn the_room_keeps_its_promises(
            steps in proptest::collection::vec(step(), 0..150),
            max_active in 1u32..6,
            admit_per_minute in proptest::option::of(30u32..600),
        ) {
            let mut room = RoomState::new(RoomRules {
                on_sale_at: ON_SALE,
                admit_per_minute,
                max_active: Some(max_active),
                session_seconds: 5,
                opens_before_seconds: 60,
            });
            let mut now = ON_SALE - 20_000;
            let mut log = Vec::new();
            let mut admitted_positions = Vec::new();
            for (n, step) in steps.iter().enumerate() {
                let events = match step {
                    Step::Join(user) => room
                        .join(&format!("u{user}"), id(n as u128 + 1_000), now)
                        .ok()
                        .and_then(|(_, event)| event)
                        .into_iter()
                        .collect(),
                    Step::Leave(user) | Step::Confirm(user) => {
                        let why = if matches!(step, Step::Leave(_)) {
                            SessionEnd::Left
                        } else {
                            SessionEnd::Confirmed
                        };
                        room.end(&format!("u{user}"), why, now).into_iter().collect()
                    }
                    Step::Wait(millis) => {
                        now += i64::from(*millis);
                        room.advance(now, 5)
                    }
                };
                for event in events {
                    if !matches!(step, Step::Wait(_)) {
                        room.apply(&event);
                    }
                    if let RoomEvent::Admitted { ticket, .. } = &event {
                        let ticket = room.ticket(*ticket).expect("admitted ticket");
                        proptest::prop_assert!(
                            !admitted_positions.contains(&ticket.position),
                            "admitted twice"
                        );
                        admitted_positions.push(ticket.position);
                    }
                    log.push(event);
                }
                proptest::prop_assert!(room.active() <= max_active);
                // What is stored (the header and the tickets) rebuilds the same room.
                let restored = RoomState::restore(room.header(), room.tickets().cloned());
                proptest::prop_assert_eq!(&restored, &room);
                for ticket in room.tickets() {
                    let brute = ticket.position.filter(|_| ticket.status == TicketStatus::Waiting).map(|p| {
                        room.line()[..p as usize - 1]
                            .iter()
                            .filter(|t| room.ticket(**t).expect("t").status == TicketStatus::Waiting)
                            .count() as u32
                    });
                    proptest::prop_assert_eq!(room.ahead_of(ticket.id), brute);
                }
                if matches!(step, Step::Wait(_)) {
                    // Nothing due is left behind: the owner's next timer is in the future.
                    proptest::prop_assert!(room.next_due().is_none_or(|due| due > now));
                }
            }
            // In line order: each admission is behind the one before it.
            proptest::prop_assert!(admitted_positions.windows(2).all(|w| w[0] < w[1]));
            let mut replayed = RoomState::new(room.rules());
            for event in &log {
                replayed.apply(event);
            }
            proptest::prop_assert_eq!(replayed, room);
        }
    }
}
