-- The audit projection of reservation outcomes: one row per reservation, its latest outcome.
-- Written by the projector from `reservation-completed` (see projections/src/audit.rs).

CREATE TABLE reservation (
    id             uuid        PRIMARY KEY,
    user_id        text        NOT NULL,
    event_id       text        NOT NULL,
    section        text        NOT NULL,
    seat_count     smallint    NOT NULL CHECK (seat_count > 0),
    -- [{"row": 1, "seat": 4}, ...]: held (CONFIRMED) or given back (CANCELLED); [] if REJECTED.
    seats          jsonb       NOT NULL DEFAULT '[]',
    status         text        NOT NULL CHECK (status IN ('PENDING', 'CONFIRMED', 'REJECTED', 'CANCELLED')),
    reason         text,           -- the rejection's code, e.g. not_enough_seats
    reason_message text,           -- and its message, e.g. "only 3 seats are left in the section"
    requested_at   timestamptz NOT NULL,
    completed_at   timestamptz NOT NULL,
    cancelled_at   timestamptz,
    -- Where in the log the row's latest outcome came from.
    log_partition  integer     NOT NULL,
    log_offset     bigint      NOT NULL
);

CREATE INDEX reservation_by_user ON reservation (user_id, completed_at DESC);
CREATE INDEX reservation_by_event ON reservation (event_id, completed_at DESC);

-- Rows moved out of `reservation` by archive_reservations(), same columns plus when.
CREATE TABLE reservation_archive (
    LIKE reservation INCLUDING DEFAULTS INCLUDING CONSTRAINTS,
    archived_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (id)
);

-- How far each projection has read each partition of its topic: written in the same
-- transaction as the rows, so a restart or a replay never loses or doubles one.
CREATE TABLE projection_offset (
    projection     text        NOT NULL,
    log_partition  integer     NOT NULL,
    next_offset    bigint      NOT NULL,
    PRIMARY KEY (projection, log_partition)
);

-- Move the reservations completed before `cutoff` to the archive, in one transaction; returns
-- how many moved. Run by `seatflow archive` (and a daily CronJob).
CREATE FUNCTION archive_reservations(cutoff timestamptz) RETURNS bigint
LANGUAGE sql AS $$
    WITH moved AS (
        DELETE FROM reservation WHERE completed_at < cutoff RETURNING *
    ), archived AS (
        INSERT INTO reservation_archive
        SELECT *, now() FROM moved
        ON CONFLICT (id) DO UPDATE SET
            status = excluded.status, seats = excluded.seats, reason = excluded.reason,
            completed_at = excluded.completed_at, cancelled_at = excluded.cancelled_at,
            log_partition = excluded.log_partition, log_offset = excluded.log_offset,
            archived_at = excluded.archived_at
        RETURNING 1
    )
    SELECT count(*) FROM archived;
$$;
