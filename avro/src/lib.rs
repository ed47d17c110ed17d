//! The wire and storage format of seatflow: Avro schemas (`schemas/*.avsc`) and the conversion
//! between domain types and Avro values.
//!
//! The `.avsc` files are the single source of the format. Every record is written with the
//! current schema and framed with Avro single-object encoding (`C3 01` + the schema's 8-byte
//! CRC-64-AVRO fingerprint + the datum), so a reader always knows which schema wrote it. A reader
//! knows every committed version of a schema (`schemas/history/`) and resolves old data to the
//! current schema: that is where schema evolution lives, and the tests prove that each schema
//! still reads data written with its previous committed version.
//!
//! The records every decision makes (a reservation's command and outcome, a section's count)
//! are written and read field by field instead of through Avro values (the `direct` module;
//! the contract tests hold them to the generic writer and reader byte for byte).
//!
//! On Kafka, [`Wire`] writes the Confluent wire format instead when a Schema Registry is
//! configured, and reads both.

mod codec;
mod convert;
mod direct;
mod room;
mod wire;

pub use codec::{
    Contract, DecodeError, EncodeError, decode, decode_through_values, encode,
    encode_through_values, fingerprint,
};
pub use convert::{StoredQuota, StoredSection};
pub use room::{StoredRoom, StoredTicket};
pub use wire::{RegistryIds, RegistrySchemaError, Wire};
