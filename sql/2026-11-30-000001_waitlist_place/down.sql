-- Back to the archive move without the waitlist place.
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

ALTER TABLE reservation_archive DROP COLUMN waitlist_place;
ALTER TABLE reservation DROP COLUMN waitlist_place;
