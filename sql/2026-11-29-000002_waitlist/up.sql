-- The waitlist (issue 13): a reservation may be WAITLISTED in its section's order until seats
-- come back.

ALTER TABLE reservation
    DROP CONSTRAINT reservation_status_check,
    ADD CONSTRAINT reservation_status_check CHECK (status IN
        ('PENDING', 'HELD', 'CONFIRMED', 'REJECTED', 'CANCELLED', 'EXPIRED', 'WAITLISTED'));

ALTER TABLE reservation_archive
    DROP CONSTRAINT reservation_status_check,
    ADD CONSTRAINT reservation_status_check CHECK (status IN
        ('PENDING', 'HELD', 'CONFIRMED', 'REJECTED', 'CANCELLED', 'EXPIRED', 'WAITLISTED'));
