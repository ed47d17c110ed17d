//! A JSON request body that names the offending field when it does not parse.
//!
//! poem-openapi's own `Json<T>` reports type names, not field paths. `JsonBody<T>` keeps the
//! OpenAPI schema of `T` (derived with `Object`) but parses with serde and
//! `serde_path_to_error`, so `{"sections": [{"rows": "x"}]}` is answered with
//! `field: "sections[0].rows"`. The body is read with a size limit.

use poem::{Request, RequestBody};
use poem_openapi::payload::{ParsePayload, Payload};
use poem_openapi::registry::{MetaSchemaRef, Registry};
use poem_openapi::types::Type;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<T: Type> Payload for JsonBody<T> {
    const CONTENT_TYPE: &'static str = "application/json";

    fn check_content_type(content_type: &str) -> bool {
        matches!(content_type.parse::<mime::Mime>(), Ok(mime)
            if mime.type_() == "application"
                && (mime.subtype() == "json" || mime.suffix().is_some_and(|s| s == "json")))
    }

    fn schema_ref() -> MetaSchemaRef {
        T::schema_ref()
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}

impl<T: Type + DeserializeOwned> ParsePayload for JsonBody<T> {
    const IS_REQUIRED: bool = true;

    async fn from_request(_request: &Request, body: &mut RequestBody) -> poem::Result<Self> {
        let bytes = body
            .take()?
            .into_bytes_limit(MAX_BODY_BYTES)
            .await
            .map_err(|e| match e {
                poem::error::ReadBodyError::PayloadTooLarge => ApiError::payload_too_large(),
                other => ApiError::bad_request("body", other.to_string()),
            })?;
        if bytes.is_empty() {
            return Err(ApiError::bad_request("body", "a JSON body is required").into());
        }
        let mut deserializer = serde_json::Deserializer::from_slice(&bytes);
        let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            // serde_path_to_error says "." at the top level and "?" where the JSON is malformed.
            let field = if path.is_empty() || path == "." || path == "?" {
                missing_field(&inner.to_string()).unwrap_or_else(|| "body".to_owned())
            } else {
                match missing_field(&inner.to_string()) {
                    Some(missing) => format!("{path}.{missing}"),
                    None => path,
                }
            };
            ApiError::bad_request_owned(field, json_message(&inner))
        })?;
        Ok(Self(value))
    }
}

poem_openapi::impl_apirequest_for_payload!(JsonBody<T>, T: Type + DeserializeOwned + Send);

/// serde names a missing field only in its message: "missing field `seatCount` at line 1 ...".
fn missing_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("missing field `")?;
    Some(rest.split('`').next()?.to_owned())
}

/// serde_json's message without the " at line L column C" suffix.
fn json_message(error: &serde_json::Error) -> String {
    let message = error.to_string();
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_owned(),
        None => message,
    }
}
