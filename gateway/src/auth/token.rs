//! Tokens signed with the configured HMAC secret: `seatflow token` for local use, and the
//! load generator's users. An identity provider issues the real ones.

use std::time::{Duration, SystemTime};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

/// What a token says.
#[derive(Debug, Clone, Serialize)]
struct Claims<'a> {
    sub: &'a str,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    roles: &'a [String],
    iat: u64,
    exp: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<&'a str>,
}

/// Signs HS256 tokens.
#[derive(Clone)]
pub struct Signer {
    key: EncodingKey,
    issuer: Option<String>,
    audience: Option<String>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// A signer with `secret` (at least 32 bytes, as the verifier asks), writing `iss` and
    /// `aud` when given.
    pub fn new(
        secret: &str,
        issuer: Option<String>,
        audience: Option<String>,
    ) -> anyhow::Result<Self> {
        if secret.len() < 32 {
            anyhow::bail!("the HMAC secret must be at least 32 bytes");
        }
        Ok(Self {
            key: EncodingKey::from_secret(secret.as_bytes()),
            issuer,
            audience,
        })
    }

    /// A token for `sub` with `roles`, valid for `ttl` from now.
    pub fn sign(&self, sub: &str, roles: &[String], ttl: Duration) -> anyhow::Result<String> {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)?
            .as_secs();
        let claims = Claims {
            sub,
            roles,
            iat: now,
            exp: now + ttl.as_secs().max(1),
            iss: self.issuer.as_deref(),
            aud: self.audience.as_deref(),
        };
        Ok(jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &self.key,
        )?)
    }
}
