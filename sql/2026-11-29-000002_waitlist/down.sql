-- Back to the statuses before the waitlist: a WAITLISTED row cannot stay; it is written as the
-- REJECTED it would have been without waiting.

UPDATE reservation SET status = 'REJECTED' WHERE status = 'WAITLISTED';
UPDATE reservation_archive SET status = 'REJECTED' WHERE status = 'WAITLISTED';

ALTER TABLE reservation
    DROP CONSTRAINT reservation_status_check,
    ADD CONSTRAINT reservation_status_check CHECK (status IN
        ('PENDING', 'HELD', 'CONFIRMED', 'REJECTED', 'CANCELLED', 'EXPIRED'));

ALTER TABLE reservation_archive
    DROP CONSTRAINT reservation_status_check,
    ADD CONSTRAINT reservation_status_check CHECK (status IN
        ('PENDING', 'HELD', 'CONFIRMED', 'REJECTED', 'CANCELLED', 'EXPIRED'));
