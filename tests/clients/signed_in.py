"""The Python client generated from the document of a server with `auth.mode = jwt` carries the
bearer token it is configured with, and meets every refusal of authentication and ownership as
its typed exception.

    signed_in.py <base url> <organizer token: olga> <token: ann> <token: bob>
"""

import sys
import uuid

import seatflow_client as sf
from seatflow_client import exceptions
from typed_errors import refused

base, olga, ann, bob = sys.argv[1:5]


def apis(token):
    client = sf.ApiClient(sf.Configuration(host=base, access_token=token))
    return sf.EventsApi(client), sf.ReservationsApi(client)


anonymous_events, _ = apis(None)
olga_events, _ = apis(olga)
ann_events, ann_reservations = apis(ann)
_, bob_reservations = apis(bob)

# No token: 401 with the bearer challenge.
e = refused(exceptions.UnauthorizedException, "unauthorized", lambda: anonymous_events.list_events())
assert e.headers.get("www-authenticate", "").startswith("Bearer"), e.headers
# A token of another key: 401 invalid_token.
forged = ann[:-4] + ("AAAA" if not ann.endswith("AAAA") else "BBBB")
refused(exceptions.UnauthorizedException, "invalid_token", lambda: apis(forged)[0].list_events())

new_event = sf.NewEvent(name="Signed-in sale", sections=[sf.NewSection(section="A", rows=1, seats_per_row=4)])
# A buyer may not create events; an organizer may.
refused(exceptions.ForbiddenException, "forbidden", lambda: ann_events.create_event(new_event))
event = olga_events.create_event(new_event)

# The user is the token's: left out of the request, it is filled in.
mine = ann_reservations.reserve_seats(
    sf.ReservationRequest(event_id=event.event_id, section="A", seat_count=2), wait=5000)
assert mine.status == sf.ReservationStatus.CONFIRMED and mine.user_id == "ann", mine
# Naming someone else is refused, naming the field.
e = refused(exceptions.ForbiddenException, "user_mismatch", lambda: ann_reservations.reserve_seats(
    sf.ReservationRequest(event_id=event.event_id, section="A", user_id="bob", seat_count=1)))
assert e.data.var_field == "userId", e.data
# Another user's reservation does not exist for bob, nor may he cancel it.
refused(exceptions.NotFoundException, "unknown_reservation",
        lambda: bob_reservations.get_reservation(mine.reservation_id))
refused(exceptions.NotFoundException, "unknown_reservation",
        lambda: bob_reservations.cancel_reservation(mine.reservation_id))
assert bob_reservations.list_user_reservations("bob") == []
# Ann reads and cancels her own.
assert ann_reservations.get_reservation(mine.reservation_id).reservation_id == mine.reservation_id
cancelled = ann_reservations.cancel_reservation(mine.reservation_id)
assert cancelled.status == sf.ReservationStatus.CANCELLED, cancelled
print("signed-in python client: done", file=sys.stderr)
