DROP FUNCTION archive_reservations(timestamptz);
DROP TABLE projection_offset;
DROP TABLE reservation_archive;
DROP TABLE reservation;
