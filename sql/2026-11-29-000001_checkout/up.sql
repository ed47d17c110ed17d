-- The checkout (issue 13): a reservation may be HELD until confirmed, and EXPIRED when its hold
-- ends first; the times of each step and the confirmation's payment reference are kept.

ALTER TABLE reservation
    DROP CONSTRAINT reservation_status_check,
    ADD CONSTRAINT reservation_status_check CHECK (status IN
        ('PENDING', 'HELD', 'CONFIRMED', 'REJECTED', 'CANCELLED', 'EXPIRED')),
    ADD COLUMN expires_at   timestamptz,   -- HELD: when the seats go back unless confirmed
    ADD COLUMN confirmed_at timestamptz,
    ADD COLUMN expired_at   timestamptz,
    ADD COLUMN payment_ref  text;

ALTER TABLE reservation_archive
    DROP CONSTRAINT reservation_status_check,
    ADD CONSTRAINT reservation_status_check CHECK (status IN
        ('PENDING', 'HELD', 'CONFIRMED', 'REJECTED', 'CANCELLED', 'EXPIRED')),
    ADD COLUMN expires_at   timestamptz,
    ADD COLUMN confirmed_at timestamptz,
    ADD COLUMN expired_at   timestamptz,
    ADD COLUMN payment_ref  text;

-- The archive's new columns come after `archived_at`: the move names its columns.
CREATE OR REPLACE FUNCTION archive_reservations(cutoff timestamptz) RETURNS bigint
LANGUAGE sql AS $$
    WITH moved AS (
        DELETE FROM reservation WHERE completed_at < cutoff RETURNING *
    ), archived AS (
        INSERT INTO reservation_archive (id, user_id, event_id, section, seat_count, seats,
            status, reason, reason_message, requested_at, completed_at, cancelled_at,
            log_partition, log_offset, expires_at, confirmed_at, expired_at, payment_ref,
            archived_at)
        SELECT id, user_id, event_id, section, seat_count, seats, status, reason,
            reason_message, requested_at, completed_at, cancelled_at, log_partition, log_offset,
            expires_at, confirmed_at, expired_at, payment_ref, now()
        FROM moved
        ON CONFLICT (id) DO UPDATE SET
            status = excluded.status, seats = excluded.seats, reason = excluded.reason,
            completed_at = excluded.completed_at, cancelled_at = excluded.cancelled_at,
            expires_at = excluded.expires_at, confirmed_at = excluded.confirmed_at,
            expired_at = excluded.expired_at, payment_ref = excluded.payment_ref,
            log_partition = excluded.log_partition, log_offset = excluded.log_offset,
            archived_at = excluded.archived_at
        RETURNING 1
    )
    SELECT count(*) FROM archived;
$$;
