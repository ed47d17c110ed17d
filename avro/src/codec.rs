//! Single-object framing and the schema registry built into the binary.

use std::collections::HashMap;

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::types::Value;
use apache_avro::writer::datum::GenericDatumWriter;
use apache_avro::{Schema, rabin::Rabin};

/// The two marker bytes of Avro single-object encoding.
const MAGIC: [u8; 2] = [0xC3, 0x01];
const HEADER_LEN: usize = 10;

/// A record type with an Avro schema and a conversion to and from Avro values.
pub trait Contract: Sized {
    /// The schema's name, also the file name under `schemas/`.
    const NAME: &'static str;

    /// Every committed version of the schema, oldest first; the last one is the current one.
    fn versions() -> &'static Versions;

    fn to_value(&self) -> Value;

    /// Append the datum, written with the current schema. The default goes through
    /// [`Contract::to_value`]; the records every decision makes write their bytes directly
    /// (the `direct` module), tested to be the same bytes.
    fn write_to(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        write_through_values(self, out)
    }

    fn from_value(value: Value) -> Result<Self, DecodeError>;

    /// Read a datum written with the current schema. The default goes through an Avro value
    /// and [`Contract::from_value`]; the records every decision makes are read directly (the
    /// `direct` module), tested to give the same records.
    fn read_from(datum: &[u8]) -> Result<Self, DecodeError> {
        read_through_values(datum)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("{0} does not match its schema: {1}")]
    Schema(&'static str, String),
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error(
        "not an Avro record: neither single-object framing (C3 01 + fingerprint) nor the \
         Confluent wire format (00 + schema id)"
    )]
    NotSingleObject,
    #[error("{contract}: schema id {id} is not a known version of this schema in the registry")]
    UnknownSchemaId { contract: &'static str, id: u32 },
    #[error("{contract}: unknown schema fingerprint {fingerprint:016x}")]
    UnknownSchema {
        contract: &'static str,
        fingerprint: u64,
    },
    #[error("{0}: corrupt datum: {1}")]
    Datum(&'static str, String),
    #[error("{contract}: field {field}: {problem}")]
    Field {
        contract: &'static str,
        field: &'static str,
        problem: String,
    },
}

/// The parsed versions of one schema, with a writer for the current one and a reader per version.
pub struct Versions {
    name: &'static str,
    current: &'static Schema,
    current_source: &'static str,
    current_fingerprint: [u8; 8],
    writer: GenericDatumWriter<'static>,
    readers: HashMap<[u8; 8], GenericDatumReader<'static>>,
}

impl std::fmt::Debug for Versions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Versions")
            .field("name", &self.name)
            .field("versions", &self.readers.len())
            .finish()
    }
}

impl Versions {
    /// Parse the committed versions (oldest first, the current last). Panics on a broken
    /// schema: schemas are compiled into the binary and checked by the tests.
    pub fn parse(name: &'static str, sources: &[&'static str]) -> Self {
        let schemas: Vec<&'static Schema> = sources
            .iter()
            .map(|source| {
                let schema = Schema::parse_str(source)
                    .unwrap_or_else(|e| panic!("schema {name} does not parse: {e}"));
                &*Box::leak(Box::new(schema))
            })
            .collect();
        let current = *schemas.last().expect("at least one schema version");
        let mut readers = HashMap::new();
        let current_fingerprint = fingerprint_bytes(current);
        for writer_schema in &schemas {
            let fingerprint = fingerprint_bytes(writer_schema);
            // Data written with the current schema needs no resolution (the costly part).
            let reader = if fingerprint == current_fingerprint {
                GenericDatumReader::builder(writer_schema).build()
            } else {
                GenericDatumReader::builder(writer_schema)
                    .reader_schema(current)
                    .build()
            }
            .unwrap_or_else(|e| panic!("schema {name}: {e}"));
            readers.insert(fingerprint, reader);
        }
        let writer = GenericDatumWriter::builder(current)
            .build()
            .unwrap_or_else(|e| panic!("schema {name}: {e}"));
        Self {
            name,
            current,
            current_source: sources.last().copied().unwrap_or_default(),
            current_fingerprint,
            writer,
            readers,
        }
    }

    pub fn current(&self) -> &'static Schema {
        self.current
    }

    /// The current schema as written in its `.avsc` file (what is registered in a registry).
    pub fn current_source(&self) -> &'static str {
        self.current_source
    }

    /// Whether data written with the schema of this fingerprint can be read.
    pub(crate) fn knows(&self, fingerprint: &[u8; 8]) -> bool {
        self.readers.contains_key(fingerprint)
    }
}

pub(crate) fn fingerprint_bytes(schema: &Schema) -> [u8; 8] {
    let bytes = schema.fingerprint::<Rabin>().bytes;
    let mut out = [0u8; 8];
    out.copy_from_slice(&bytes[..8]);
    out
}

/// The CRC-64-AVRO fingerprint of a contract's current schema.
pub fn fingerprint<T: Contract>() -> u64 {
    u64::from_le_bytes(T::versions().current_fingerprint)
}

/// Encode a record with its current schema, single-object framed.
pub fn encode<T: Contract>(record: &T) -> Result<Vec<u8>, EncodeError> {
    let versions = T::versions();
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&versions.current_fingerprint);
    write_datum(record, &mut out)?;
    Ok(out)
}

/// Append the record's datum (no framing), written with the current schema.
pub(crate) fn write_datum<T: Contract>(record: &T, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    record.write_to(out)
}

/// Append the record's datum through its Avro value and the generic writer of the current
/// schema (which checks the value against the schema).
pub(crate) fn write_through_values<T: Contract>(
    record: &T,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    T::versions()
        .writer
        .write_value(out, record.to_value())
        .map_err(|e| EncodeError::Schema(T::NAME, e.to_string()))?;
    Ok(())
}

/// [`encode`] through the record's Avro value and the generic writer: the reference the direct
/// writers of the decided path are tested against (same bytes), and nothing else.
pub fn encode_through_values<T: Contract>(record: &T) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&T::versions().current_fingerprint);
    write_through_values(record, &mut out)?;
    Ok(out)
}

/// Whether the bytes carry single-object framing.
pub(crate) fn is_single_object(bytes: &[u8]) -> bool {
    bytes.len() >= HEADER_LEN && bytes[..2] == MAGIC
}

/// The schema fingerprint and the datum of a single-object framed record.
pub(crate) fn single_object_frame(bytes: &[u8]) -> Result<([u8; 8], &[u8]), DecodeError> {
    if !is_single_object(bytes) {
        return Err(DecodeError::NotSingleObject);
    }
    let mut fp = [0u8; 8];
    fp.copy_from_slice(&bytes[2..HEADER_LEN]);
    Ok((fp, &bytes[HEADER_LEN..]))
}

/// Decode a single-object framed record written with any committed version of its schema.
pub fn decode<T: Contract>(bytes: &[u8]) -> Result<T, DecodeError> {
    let (fp, datum) = single_object_frame(bytes)?;
    read_datum(&fp, datum)
}

/// Read a datum written with the schema of `fp` (any committed version) into the record.
pub(crate) fn read_datum<T: Contract>(fp: &[u8; 8], datum: &[u8]) -> Result<T, DecodeError> {
    if *fp == T::versions().current_fingerprint {
        T::read_from(datum)
    } else {
        T::from_value(read_value::<T>(fp, datum)?)
    }
}

/// Read a datum of the current schema through an Avro value and [`Contract::from_value`].
pub(crate) fn read_through_values<T: Contract>(datum: &[u8]) -> Result<T, DecodeError> {
    T::from_value(read_value::<T>(&T::versions().current_fingerprint, datum)?)
}

/// [`decode`] through an Avro value and [`Contract::from_value`]: the reference the direct
/// readers of the decided path are tested against (same records), and nothing else.
pub fn decode_through_values<T: Contract>(bytes: &[u8]) -> Result<T, DecodeError> {
    let (fp, datum) = single_object_frame(bytes)?;
    T::from_value(read_value::<T>(&fp, datum)?)
}

/// Read a datum written with the schema of `fp` as an Avro value of `T`'s current schema.
pub(crate) fn read_value<T: Contract>(
    fp: &[u8; 8],
    mut datum: &[u8],
) -> Result<Value, DecodeError> {
    let reader = T::versions()
        .readers
        .get(fp)
        .ok_or(DecodeError::UnknownSchema {
            contract: T::NAME,
            fingerprint: u64::from_le_bytes(*fp),
        })?;
    reader
        .read_value(&mut datum)
        .map_err(|e| DecodeError::Datum(T::NAME, e.to_string()))
}

/// Declare the versions of a contract from its files under `schemas/`.
macro_rules! versions {
    ($name:literal, [$($version:literal),*]) => {{
        static VERSIONS: ::std::sync::LazyLock<$crate::codec::Versions> =
            ::std::sync::LazyLock::new(|| {
            $crate::codec::Versions::parse(
                $name,
                &[
                    $(include_str!(concat!("../schemas/history/", $name, ".", $version, ".avsc")),)*
                    include_str!(concat!("../schemas/", $name, ".avsc")),
                ],
            )
        });
        &VERSIONS
    }};
}
pub(crate) use versions;
