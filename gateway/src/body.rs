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

/// Longest a request body may take to arrive once its head did.
pub const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

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
        let bytes = read_limited(body).await?;
        if bytes.is_empty() {
            return Err(ApiError::bad_request("body", "a JSON body is required").into());
        }
        Ok(Self(parse(&bytes)?))
    }
}

poem_openapi::impl_apirequest_for_payload!(JsonBody<T>, T: Type + DeserializeOwned + Send);

/// A JSON body that may be left out (empty): `T::default()` then.
#[derive(Debug)]
pub struct OptionalJsonBody<T>(pub T);

impl<T: Type> Payload for OptionalJsonBody<T> {
    const CONTENT_TYPE: &'static str = "application/json";

    fn check_content_type(content_type: &str) -> bool {
        JsonBody::<T>::check_content_type(content_type)
    }

    fn schema_ref() -> MetaSchemaRef {
        T::schema_ref()
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}

impl<T: Type + DeserializeOwned + Default> ParsePayload for OptionalJsonBody<T> {
    const IS_REQUIRED: bool = false;

    async fn from_request(_request: &Request, body: &mut RequestBody) -> poem::Result<Self> {
        let bytes = read_limited(body).await?;
        if bytes.is_empty() {
            return Ok(Self(T::default()));
        }
        Ok(Self(parse(&bytes)?))
    }
}

/// As poem-openapi's own extractor for a payload, but a request without a `Content-Type` is
/// read too: an empty one is the default, anything else still needs `application/json`.
impl<'a, T: Type + DeserializeOwned + Default + Send> poem_openapi::ApiExtractor<'a>
    for OptionalJsonBody<T>
{
    const TYPES: &'static [poem_openapi::ApiExtractorType] =
        &[poem_openapi::ApiExtractorType::RequestObject];

    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        <Self as Payload>::register(registry);
    }

    fn request_meta() -> Option<poem_openapi::registry::MetaRequest> {
        Some(poem_openapi::registry::MetaRequest {
            description: None,
            content: vec![poem_openapi::registry::MetaMediaType {
                content_type: <Self as Payload>::CONTENT_TYPE,
                schema: <Self as Payload>::schema_ref(),
            }],
            required: false,
        })
    }

    async fn from_request(
        request: &'a Request,
        body: &mut RequestBody,
        _param_opts: poem_openapi::ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        match request.content_type() {
            Some(content_type) if !Self::check_content_type(content_type) => {
                Err(poem_openapi::error::ContentTypeError::NotSupported {
                    content_type: content_type.to_string(),
                }
                .into())
            }
            Some(_) => <Self as ParsePayload>::from_request(request, body).await,
            None => {
                let bytes = read_limited(body).await?;
                if bytes.is_empty() {
                    Ok(Self(T::default()))
                } else {
                    Err(poem_openapi::error::ContentTypeError::ExpectContentType.into())
                }
            }
        }
    }
}

/// The body's bytes, at most [`MAX_BODY_BYTES`].
async fn read_limited(body: &mut RequestBody) -> Result<Vec<u8>, ApiError> {
    let read = body
        .take()
        .map_err(|e| ApiError::bad_request("body", e.to_string()))?
        .into_bytes_limit(MAX_BODY_BYTES);
    // A body sent a byte at a time must not hold a connection and a handler for good.
    tokio::time::timeout(BODY_TIMEOUT, read)
        .await
        .map_err(|_| ApiError::body_timeout())?
        .map(|bytes| bytes.to_vec())
        .map_err(|e| match e {
            poem::error::ReadBodyError::PayloadTooLarge => ApiError::payload_too_large(),
            other => ApiError::bad_request("body", other.to_string()),
        })
}

/// Parse JSON with the path of the field that does not parse.
fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    {
        let mut deserializer = serde_json::Deserializer::from_slice(bytes);
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
        Ok(value)
    }
}

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
