// A whole sale through the TypeScript (fetch) client generated from seatflow's OpenAPI
// document. Every request and answer is written to a JSON-lines file (validate.py checks the
// answers against the document); every error is met as the client's ResponseError, its body
// read as the document's ErrorResponse.
//
//   node sale.js <base url> <exchanges.jsonl>

import { appendFileSync, writeFileSync } from "fs";
import {
  Configuration,
  ErrorResponse,
  ErrorResponseFromJSON,
  EventsApi,
  ReservationsApi,
  ReservationStatus,
  ResponseError,
} from "./index";

const [base, recordTo] = process.argv.slice(2);
// Users of this run only, so that a server that has sold before answers the same.
const run = Math.random().toString(16).slice(2, 10);
const user = (name: string): string => `${name}-${run}`;
writeFileSync(recordTo, "");

// Record every exchange as sent and as received.
async function recordingFetch(input: RequestInfo | URL, init?: RequestInit): Promise<Response> {
  const response = await fetch(input, init);
  const headers = new Headers(init?.headers);
  appendFileSync(
    recordTo,
    JSON.stringify({
      method: init?.method ?? "GET",
      url: String(input),
      requestContentType: headers.get("Content-Type"),
      status: response.status,
      contentType: response.headers.get("content-type"),
      body: await response.clone().text(),
    }) + "\n",
  );
  return response;
}

const configuration = new Configuration({ basePath: base, fetchApi: recordingFetch });
const events = new EventsApi(configuration);
const reservations = new ReservationsApi(configuration);

function check(condition: boolean, what: string): void {
  if (!condition) {
    throw new Error(`failed: ${what}`);
  }
}

async function refused(status: number, error: string, call: () => Promise<unknown>): Promise<ErrorResponse> {
  try {
    await call();
  } catch (e) {
    if (!(e instanceof ResponseError)) {
      throw e;
    }
    check(e.response.status === status, `status ${e.response.status} != ${status}`);
    const body = ErrorResponseFromJSON(await e.response.json());
    check(body.error === error, `error ${body.error} != ${error}`);
    return body;
  }
  throw new Error(`expected ${status} ${error}`);
}

async function sale(): Promise<void> {
  const event = await events.createEvent({
    newEvent: { name: "TypeScript sale", sections: [{ section: "Floor", rows: 1, seatsPerRow: 3 }] },
  });
  check(event.createdAt instanceof Date && event.createdAt.getFullYear() >= 2026, "createdAt is a date");
  const listed = await events.listEvents({ limit: 1000 });
  check(listed.some((e) => e.eventId === event.eventId), "the event is listed");

  const ann = await reservations.reserveSeats({
    reservationRequest: { eventId: event.eventId, section: "Floor", userId: user("ann"), seatCount: 2 },
    wait: 5000,
  });
  check(ann.status === ReservationStatus.Confirmed, `ann ${ann.status}`);
  check(ann.seats.length === 2 && ann.reason === undefined, "two seats, no reason");
  check(ann.decidedAt instanceof Date, "decidedAt is a date");

  const pending = await reservations.reserveSeatsRaw({
    reservationRequest: { eventId: event.eventId, section: "Floor", userId: user("ben"), seats: [{ row: 1, seat: 3 }] },
  });
  check(pending.raw.status === 202, `202, not ${pending.raw.status}`);
  const ben = await reservations.getReservation({ reservationId: (await pending.value()).reservationId, wait: 5000 });
  check(ben.status === ReservationStatus.Confirmed, `ben ${ben.status}`);

  const seatMap = await events.getSeatMap({ eventId: event.eventId, section: "Floor" });
  check(seatMap.available === 0 && seatMap.rowsMap[0] === "xxx", `seat map ${seatMap.rowsMap}`);
  const history = await reservations.listUserReservations({ userId: user("ann") });
  check(history.length === 1 && history[0].reservationId === ann.reservationId, "ann's history");

  // Errors, as the document declares them.
  await refused(409, "sold_out", () =>
    reservations.reserveSeats({
      reservationRequest: { eventId: event.eventId, section: "Floor", userId: user("cy"), seatCount: 1 },
      wait: 5000,
    }),
  );
  await refused(403, "not_owner", () => reservations.cancelReservation({ reservationId: ann.reservationId, xUserId: user("eve") }));
  await refused(404, "unknown_event", () => events.getEvent({ eventId: "00000000-0000-7000-8000-000000000000" }));
  const badId = await refused(400, "invalid_request", () => reservations.getReservation({ reservationId: "not-a-uuid" }));
  check(badId.field === "reservationId", `field ${badId.field}`);
  const tooLong = await refused(422, "invalid_value", () =>
    reservations.reserveSeats({
      reservationRequest: { eventId: event.eventId, section: "Floor", userId: user("dan"), seatCount: 1 },
      wait: 30001,
    }),
  );
  check(tooLong.field === "wait", `field ${tooLong.field}`);
  // Bodies no client of the document would send, through the same client: the answers are still
  // the document's.
  const newEvent = { name: "n", sections: [{ section: "A", rows: 1, seatsPerRow: 1 }] };
  await refused(415, "unsupported_media_type", () =>
    events.createEvent({ newEvent }, async ({ init }) => ({
      ...init,
      headers: { ...(init.headers as Record<string, string>), "Content-Type": "text/plain" },
    })),
  );
  await refused(400, "invalid_request", () =>
    events.createEvent({ newEvent }, async ({ init }) => ({ ...init, body: "{not json" })),
  );
  await refused(413, "payload_too_large", () =>
    events.createEvent({ newEvent: { name: "x".repeat(70_000), sections: [{ section: "A", rows: 1, seatsPerRow: 1 }] } }),
  );

  const cancelled = await reservations.cancelReservation({ reservationId: ann.reservationId, xUserId: user("ann") });
  check(cancelled.status === ReservationStatus.Cancelled && cancelled.cancelledAt instanceof Date, "cancelled");
  const after = await events.getEvent({ eventId: event.eventId });
  check(after.sections[0].available === 2, `available ${after.sections[0].available}`);
}

sale().then(
  () => console.error("typescript sale: done"),
  (error) => {
    console.error(error);
    process.exit(1);
  },
);
