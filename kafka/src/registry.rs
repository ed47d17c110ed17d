//! The Schema Registry side of the Confluent wire format: at start, register the current
//! schema of every record type we publish (subject `<topic>-value`, Confluent's default
//! TopicNameStrategy, so any Confluent consumer finds it), and read back every version the
//! registry holds under those subjects, so that data written by older versions decodes.
//!
//! Which topics: the four public ones (`reservation-commands`, `reservation-completed`,
//! `section-status`, `reservation-replies`). The state changelog is internal to the seat
//! processor and carries two record types in one topic; it stays in single-object framing, as
//! do dead-letter records (the bytes as received).

use schema_registry_converter::async_impl::schema_registry::{
    SrSettings, get_all_versions, get_schema_by_subject_and_version, post_schema,
};
use schema_registry_converter::error::SRCError;
use schema_registry_converter::schema_registry_common::{SchemaType, SuppliedSchema};
use seatflow_aggregates::{Command, CommandReply, Event, SectionStatus};
use seatflow_avro::{Contract, RegistryIds, RegistrySchemaError, Wire};
use tracing::info;

use crate::topics::TopicsConfig;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("schema registry at {url}: subject {subject}: {source}")]
    Call {
        url: String,
        subject: String,
        source: SRCError,
    },
    #[error(transparent)]
    Schema(#[from] RegistrySchemaError),
}

/// Register our schemas and learn the registry's ids: the [`Wire`] to use on Kafka.
pub async fn connect_registry(url: &str, topics: &TopicsConfig) -> Result<Wire, RegistryError> {
    let settings = SrSettings::new(url.trim_end_matches('/').to_owned());
    let mut ids = RegistryIds::default();
    register::<Command>(
        &settings,
        url,
        &topics.name("reservation-commands"),
        &mut ids,
    )
    .await?;
    register::<Event>(
        &settings,
        url,
        &topics.name("reservation-completed"),
        &mut ids,
    )
    .await?;
    register::<SectionStatus>(&settings, url, &topics.name("section-status"), &mut ids).await?;
    register::<CommandReply>(
        &settings,
        url,
        &topics.name("reservation-replies"),
        &mut ids,
    )
    .await?;
    Ok(Wire::confluent(ids))
}

async fn register<T: Contract>(
    settings: &SrSettings,
    url: &str,
    topic: &str,
    ids: &mut RegistryIds,
) -> Result<(), RegistryError> {
    let subject = format!("{topic}-value");
    let failed = |source| RegistryError::Call {
        url: url.to_owned(),
        subject: subject.clone(),
        source,
    };
    let schema = SuppliedSchema::new(
        None,
        SchemaType::Avro,
        T::versions().current_source().to_owned(),
    );
    let registered = post_schema(settings, subject.clone(), schema)
        .await
        .map_err(failed)?;
    ids.set_current::<T>(registered.id);
    let versions = get_all_versions(settings, subject.clone())
        .await
        .map_err(failed)?;
    for version in &versions {
        let known = get_schema_by_subject_and_version(settings, &subject, Some(*version))
            .await
            .map_err(failed)?;
        ids.learn(known.id, &known.schema)?;
    }
    info!(
        subject,
        id = registered.id,
        versions = versions.len(),
        "schema registered"
    );
    Ok(())
}
