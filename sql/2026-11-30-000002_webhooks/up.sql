-- Webhooks and their deliveries (issue 15), kept here when seatflow runs on Kafka: registered
-- through any gateway, queued by the projector's delivery projection (with its positions in
-- projection_offset, in the same transaction), posted by its senders.
-- A record column holds each one as the application writes it; the columns beside it are
-- what the queries select and order by.

CREATE TABLE webhook (
    id uuid PRIMARY KEY,
    record jsonb NOT NULL
);

-- seq orders a webhook's deliveries as the log did. No foreign key: a webhook deleted while
-- its deliveries are being queued must not fail the projection's batch; delete removes both.
CREATE TABLE webhook_delivery (
    webhook_id uuid NOT NULL,
    seq bigint NOT NULL,
    id uuid NOT NULL,
    pending boolean NOT NULL,
    record jsonb NOT NULL,
    PRIMARY KEY (webhook_id, seq)
);

CREATE INDEX webhook_delivery_pending ON webhook_delivery (webhook_id, seq) WHERE pending;

CREATE SEQUENCE webhook_delivery_seq;
