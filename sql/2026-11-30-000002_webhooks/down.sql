DROP SEQUENCE webhook_delivery_seq;
DROP TABLE webhook_delivery;
DROP TABLE webhook;
