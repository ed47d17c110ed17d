-- Back to the statuses before the checkout (fails while HELD or EXPIRED rows exist).
CREATE OR REPLACE FUNCTION archive_reservations(cutoff timestamptz) RETURNS bigint
LANGUAGE sql AS $$
    WITH moved AS (
        DELETE FROM reservation WHERE completed_at < cutoff RETURNING *
    ), archived AS (
        INSERT INTO reservation_archive (id, user_id, event_id, section, seat_count, seats,
            status, reason, reason_message, requested_at, completed_at, cancelled_at,
            log_partition, log_offset, archived_at)
        SELECT id, user_id, event_id, section, seat_count, seats, status, reason,
            reason_message, requested_at, completed_at, cancelled_at, log_partition, log_offset,
            now()
        FROM moved
        ON CONFLICT (id) DO UPDATE SET
            status = excluded.status, seats = excluded.seats, reason = excluded.reason,
            completed_at = excluded.completed_at, cancelled_at = excluded.cancelled_at,
            log_partition = excluded.log_partition, log_offset = excluded.log_offset,
            archived_at = excluded.archived_at
        RETURNING 1
    )
    SELECT count(*) FROM archived;
$$;

ALTER TABLE reservation_archive
    DROP COLUMN expires_at, DROP COLUMN confirmed_at, DROP COLUMN expired_at,
    DROP COLUMN payment_ref,
    DROP CONSTRAINT reservation_status_check,
    ADD CONSTRAINT reservation_status_check CHECK (status IN
        ('PENDING', 'CONFIRMED', 'REJECTED', 'CANCELLED'));

ALTER TABLE reservation
    DROP COLUMN expires_at, DROP COLUMN confirmed_at, DROP COLUMN expired_at,
    DROP COLUMN payment_ref,
    DROP CONSTRAINT reservation_status_check,
    ADD CONSTRAINT reservation_status_check CHECK (status IN
        ('PENDING', 'CONFIRMED', 'REJECTED', 'CANCELLED'));
