//! The two framings of a record on Kafka, and the choice between them.
//!
//! - Single-object framing (`C3 01` + 8-byte fingerprint + datum), the default: every record
//!   names its writer schema by fingerprint, no service needed.
//! - The Confluent wire format (`00` + 4-byte big-endian schema id + datum) when a Schema Registry
//!   is configured: the ids come from the registry ([`RegistryIds`], filled by the Kafka adapter
//!   at start) so that any Confluent-compatible consumer can read the topics.
//!
//! A reader accepts both framings whatever it writes, so a deployment can switch without
//! draining its topics. An id resolves to a writer schema through its fingerprint: only the
//! versions committed under `schemas/` can be read, exactly as with single-object framing.

use std::collections::HashMap;
use std::sync::Arc;

use apache_avro::Schema;

use crate::codec::{
    Contract, DecodeError, EncodeError, decode, fingerprint_bytes, is_single_object, read_datum,
    read_value, single_object_frame, write_datum,
};

const CONFLUENT_MAGIC: u8 = 0;
const CONFLUENT_HEADER_LEN: usize = 5;

/// What a Schema Registry said about our schemas: the id of each contract's current schema
/// (what we write with) and the schema behind every id we may read.
#[derive(Debug, Default, Clone)]
pub struct RegistryIds {
    current: HashMap<&'static str, u32>,
    fingerprints: HashMap<u32, [u8; 8]>,
}

#[derive(Debug, thiserror::Error)]
#[error("schema id {id}: the registry's schema does not parse: {reason}")]
pub struct RegistrySchemaError {
    pub id: u32,
    pub reason: String,
}

impl RegistryIds {
    /// Record the id the registry gave the current schema of `T` (we write with it).
    pub fn set_current<T: Contract>(&mut self, id: u32) {
        self.current.insert(T::NAME, id);
        self.fingerprints
            .insert(id, fingerprint_bytes(T::versions().current()));
    }

    /// Record the schema the registry holds under `id` (read back from it).
    pub fn learn(&mut self, id: u32, schema_json: &str) -> Result<(), RegistrySchemaError> {
        let schema = Schema::parse_str(schema_json).map_err(|e| RegistrySchemaError {
            id,
            reason: e.to_string(),
        })?;
        self.fingerprints.insert(id, fingerprint_bytes(&schema));
        Ok(())
    }

    /// The id we write `T` with, if registered.
    pub fn current<T: Contract>(&self) -> Option<u32> {
        self.current.get(T::NAME).copied()
    }
}

/// How records are framed when written; reading accepts both framings.
#[derive(Debug, Clone, Default)]
pub struct Wire {
    registry: Option<Arc<RegistryIds>>,
}

impl Wire {
    /// Single-object framing, no registry.
    pub fn single_object() -> Self {
        Self::default()
    }

    /// The Confluent wire format with the registry's ids.
    pub fn confluent(ids: RegistryIds) -> Self {
        Self {
            registry: Some(Arc::new(ids)),
        }
    }

    pub fn uses_registry(&self) -> bool {
        self.registry.is_some()
    }

    /// Encode with the current schema: Confluent framing when a registry is configured and
    /// `T` is registered, single-object framing otherwise.
    pub fn encode<T: Contract>(&self, record: &T) -> Result<Vec<u8>, EncodeError> {
        let Some(id) = self.registry.as_ref().and_then(|ids| ids.current::<T>()) else {
            return crate::codec::encode(record);
        };
        let mut out = Vec::with_capacity(128);
        out.push(CONFLUENT_MAGIC);
        out.extend_from_slice(&id.to_be_bytes());
        write_datum(record, &mut out)?;
        Ok(out)
    }

    /// Decode a record in either framing, written with any committed version of its schema.
    pub fn decode<T: Contract>(&self, bytes: &[u8]) -> Result<T, DecodeError> {
        if is_single_object(bytes) {
            return decode(bytes);
        }
        let (fingerprint, datum) = self.confluent_frame::<T>(bytes)?;
        read_datum(&fingerprint, datum)
    }

    /// A record in either framing as JSON, in its current schema's shape (for people reading the
    /// log: `seatflow log`).
    pub fn decode_json<T: Contract>(&self, bytes: &[u8]) -> Result<serde_json::Value, DecodeError> {
        let (fingerprint, datum) = if is_single_object(bytes) {
            single_object_frame(bytes)?
        } else {
            self.confluent_frame::<T>(bytes)?
        };
        let value = read_value::<T>(&fingerprint, datum)?;
        serde_json::Value::try_from(value).map_err(|e| DecodeError::Datum(T::NAME, e.to_string()))
    }

    /// The writer schema's fingerprint and the datum of a Confluent-framed record.
    fn confluent_frame<'a, T: Contract>(
        &self,
        bytes: &'a [u8],
    ) -> Result<([u8; 8], &'a [u8]), DecodeError> {
        if bytes.len() < CONFLUENT_HEADER_LEN || bytes[0] != CONFLUENT_MAGIC {
            return Err(DecodeError::NotSingleObject);
        }
        let mut id_bytes = [0u8; 4];
        id_bytes.copy_from_slice(&bytes[1..CONFLUENT_HEADER_LEN]);
        let id = u32::from_be_bytes(id_bytes);
        let fingerprint = self
            .registry
            .as_ref()
            .and_then(|ids| ids.fingerprints.get(&id))
            .filter(|fp| T::versions().knows(fp))
            .ok_or(DecodeError::UnknownSchemaId {
                contract: T::NAME,
                id,
            })?;
        Ok((*fingerprint, &bytes[CONFLUENT_HEADER_LEN..]))
    }
}

#[cfg(test)]
mod tests {
    use seatflow_aggregates::{CommandReply, SectionKey, SectionStatus};

    use super::*;
    use crate::codec::Contract;

    fn status() -> SectionStatus {
        SectionStatus {
            key: SectionKey::new("evt-1", "A"),
            available: 42,
        }
    }

    fn registry(id: u32) -> Wire {
        let mut ids = RegistryIds::default();
        ids.set_current::<SectionStatus>(id);
        Wire::confluent(ids)
    }

    #[test]
    fn the_confluent_format_is_a_zero_the_big_endian_id_and_the_same_datum() {
        let single = crate::encode(&status()).expect("encode");
        let confluent = registry(0x0102_0304).encode(&status()).expect("encode");
        assert_eq!(confluent[..5], [0, 1, 2, 3, 4]);
        // The datum after either header is the same bytes.
        assert_eq!(confluent[5..], single[10..]);
    }

    #[test]
    fn a_reader_with_the_registry_reads_both_framings() {
        let wire = registry(7);
        let confluent = wire.encode(&status()).expect("encode");
        let single = Wire::single_object().encode(&status()).expect("encode");
        assert_eq!(single[..2], [0xC3, 0x01]);
        assert_eq!(
            wire.decode::<SectionStatus>(&confluent).expect("confluent"),
            status()
        );
        assert_eq!(
            wire.decode::<SectionStatus>(&single).expect("single"),
            status()
        );
    }

    #[test]
    fn an_id_the_registry_did_not_give_or_of_another_schema_is_refused() {
        let confluent = registry(7).encode(&status()).expect("encode");
        let no_registry = Wire::single_object().decode::<SectionStatus>(&confluent);
        assert!(matches!(
            no_registry,
            Err(DecodeError::UnknownSchemaId { id: 7, .. })
        ));
        let other_id = registry(8).decode::<SectionStatus>(&confluent);
        assert!(matches!(
            other_id,
            Err(DecodeError::UnknownSchemaId { id: 7, .. })
        ));
        // Id 7 names SectionStatusEvent; read as a CommandReply it must be refused, not misread.
        let wrong_contract = registry(7).decode::<CommandReply>(&confluent);
        assert!(matches!(
            wrong_contract,
            Err(DecodeError::UnknownSchemaId { id: 7, .. })
        ));
    }

    #[test]
    fn a_schema_learnt_from_the_registry_resolves_its_id() {
        let writer = registry(7);
        let confluent = writer.encode(&status()).expect("encode");
        // Another process that only read the registry: the schema text under id 7, reformatted
        // as a registry may return it (canonical JSON, no whitespace).
        let text = SectionStatus::versions().current().canonical_form();
        let mut ids = RegistryIds::default();
        ids.learn(7, &text).expect("parses");
        let reader = Wire::confluent(ids);
        assert_eq!(
            reader.decode::<SectionStatus>(&confluent).expect("decode"),
            status()
        );
        assert!(RegistryIds::default().learn(9, "{not json").is_err());
    }

    #[test]
    fn a_record_reads_as_json_in_its_schema_s_shape_from_either_framing() {
        let wire = registry(7);
        for bytes in [
            wire.encode(&status()).expect("encode"),
            Wire::single_object().encode(&status()).expect("encode"),
        ] {
            let json = wire.decode_json::<SectionStatus>(&bytes).expect("json");
            assert_eq!(json["availableCount"], 42, "{json}");
            assert_eq!(json["eventId"], "evt-1", "{json}");
            assert_eq!(json["section"], "A", "{json}");
        }
    }

    #[test]
    fn a_contract_the_registry_does_not_know_is_written_single_object() {
        let reply_bytes = registry(7)
            .encode(&CommandReply {
                correlation_id: "c".into(),
                key: SectionKey::new("evt-1", "A"),
                available: 1,
                outcome: seatflow_aggregates::Outcome::SectionReady,
            })
            .expect("encode");
        assert_eq!(reply_bytes[..2], [0xC3, 0x01]);
    }
}
