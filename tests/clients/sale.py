"""A whole sale through the Python client generated from seatflow's OpenAPI document.

Every request and answer is written to a JSON-lines file (validate.py checks the answers
against the document). Every error is met as the generated client's typed exception, with the
document's ErrorResponse parsed into `.data`.

    sale.py <base url> <exchanges.jsonl>
"""

import json
import sys
import uuid

import seatflow_client as sf
from seatflow_client import exceptions, rest
from typed_errors import refused

base, record_to = sys.argv[1], sys.argv[2]
# Users of this run only, so that a server that has sold before answers the same.
run = uuid.uuid4().hex[:8]


def user(name):
    return f"{name}-{run}"

exchanges = open(record_to, "w")

# Record every exchange at the client's transport, as sent and as received.
send = rest.RESTClientObject.request


def recorded(self, method, url, headers=None, body=None, post_params=None, _request_timeout=None):
    response = send(self, method, url, headers, body, post_params, _request_timeout)
    response.read()
    exchanges.write(json.dumps({
        "method": method,
        "url": url,
        "requestContentType": (headers or {}).get("Content-Type"),
        "status": response.status,
        "contentType": response.getheader("content-type"),
        "body": response.data.decode(),
    }) + "\n")
    return response


rest.RESTClientObject.request = recorded

client = sf.ApiClient(sf.Configuration(host=base))
events = sf.EventsApi(client)
reservations = sf.ReservationsApi(client)
health = sf.HealthApi(client)

# The document names the server the client was generated from.
assert client.configuration.host == base or sf.Configuration().host == base, sf.Configuration().host
assert health.check_readiness().status == "ready"

event = events.create_event(sf.NewEvent(
    name="Client sale",
    sections=[sf.NewSection(section="A", rows=2, seats_per_row=4),
              sf.NewSection(section="B", rows=1, seats_per_row=2)],
))
assert isinstance(event.event_id, (str, uuid.UUID)), type(event.event_id)
assert [s.available for s in event.sections] == [8, 2]
assert event.created_at.year >= 2026, event.created_at

assert event.event_id in [e.event_id for e in events.list_events(limit=1000)]
assert events.get_event(event.event_id).name == "Client sale"

# Reserve by count and wait for the outcome.
alice = reservations.reserve_seats(
    sf.ReservationRequest(event_id=event.event_id, section="A", user_id=user("alice"), seat_count=3),
    wait=5000,
)
assert alice.status == sf.ReservationStatus.CONFIRMED, alice
assert len(alice.seats) == 3 and alice.reason is None and alice.cancelled_at is None
assert alice.decided_at is not None

# Reserve chosen seats.
bob = reservations.reserve_seats(
    sf.ReservationRequest(event_id=event.event_id, section="A", user_id=user("bob"),
                          seats=[sf.Seat(row=2, seat=1), sf.Seat(row=2, seat=2)]),
    wait=5000,
)
assert bob.status == sf.ReservationStatus.CONFIRMED, bob
assert sorted((s.row, s.seat) for s in bob.seats) == [(2, 1), (2, 2)]

# Without waiting: 202 PENDING, then the outcome by long poll.
accepted = reservations.reserve_seats_with_http_info(
    sf.ReservationRequest(event_id=event.event_id, section="B", user_id=user("carol"), seat_count=1))
assert accepted.status_code == 202, accepted.status_code
assert accepted.data.status == sf.ReservationStatus.PENDING
carol = reservations.get_reservation(accepted.data.reservation_id, wait=5000)
assert carol.status == sf.ReservationStatus.CONFIRMED, carol

seat_map = events.get_seat_map(event.event_id, "A")
assert seat_map.available == 3 and seat_map.rows_map[1].startswith("xx"), seat_map

assert [r.reservation_id for r in reservations.list_user_reservations(user("alice"))] == [alice.reservation_id]

# A seat someone holds: decided, REJECTED with its reason (not an HTTP error).
taken = reservations.reserve_seats(
    sf.ReservationRequest(event_id=event.event_id, section="A", user_id=user("dave"),
                          seats=[sf.Seat(row=2, seat=1)]), wait=5000)
assert taken.status == sf.ReservationStatus.REJECTED and taken.reason == "seat_taken", taken
assert taken.reason_message and not taken.seats
# Errors, each as its typed exception.
refused(exceptions.ForbiddenException, "not_owner",
        lambda: reservations.cancel_reservation(alice.reservation_id, user("mallory")))
refused(exceptions.NotFoundException, "unknown_event",
        lambda: events.get_event(str(uuid.uuid4())))
refused(exceptions.NotFoundException, "unknown_section",
        lambda: events.get_seat_map(event.event_id, "Z"))
refused(exceptions.NotFoundException, "unknown_reservation",
        lambda: reservations.get_reservation(str(uuid.uuid4())))
outside = refused(exceptions.UnprocessableEntityException, "invalid_value",
                  lambda: reservations.reserve_seats(sf.ReservationRequest(
                      event_id=event.event_id, section="A", user_id=user("erin"),
                      seats=[sf.Seat(row=9, seat=1)])))
assert outside.data.var_field == "seats"  # the generator renames `field`, a reserved word for it

# Cancel: the seats are free again; cancelling again answers the same.
cancelled = reservations.cancel_reservation(alice.reservation_id, user("alice"))
assert cancelled.status == sf.ReservationStatus.CANCELLED and cancelled.cancelled_at is not None
again = reservations.cancel_reservation(alice.reservation_id, user("alice"))
assert again.status == sf.ReservationStatus.CANCELLED
assert events.get_event(event.event_id).sections[0].available == 6

# Sell out section B: a clear sold out.
sold = reservations.reserve_seats(
    sf.ReservationRequest(event_id=event.event_id, section="B", user_id=user("frank"), seat_count=1),
    wait=5000)
assert sold.status == sf.ReservationStatus.CONFIRMED, sold
refused(exceptions.ConflictException, "sold_out", lambda: reservations.reserve_seats(
    sf.ReservationRequest(event_id=event.event_id, section="B", user_id=user("gina"), seat_count=1),
    wait=5000))

exchanges.close()
print(f"python sale: {sum(1 for _ in open(record_to))} exchanges", file=sys.stderr)
