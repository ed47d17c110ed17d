//! The keys a JWT may be signed with, and the check of a token against them.
//!
//! Each key carries the one algorithm it may verify (an HMAC secret HS256, an RSA key RS256, a
//! P-256 key ES256, an Ed25519 key EdDSA): a token is only ever checked with a key of its own
//! `alg`, so an HS256 token signed with an RSA public key's bytes (the "alg confusion" attack)
//! finds no key, and `none` is not an algorithm at all. Keys come from an HMAC secret, PEM
//! files, and a JWKS document (a file, or an `http(s)` URL as identity providers publish
//! theirs), which is fetched at start, refreshed on a period, and once more, at most every
//! [`KID_REFRESH_EVERY`], when a token names a `kid` it does not hold.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use tokio::sync::{Mutex, RwLock};

use super::AuthSettings;

/// Shortest time between two refreshes of the JWKS asked for by unknown `kid`s: a client that
/// sends made-up key ids cannot make the gateway hammer the identity provider.
pub const KID_REFRESH_EVERY: Duration = Duration::from_secs(10);

/// One key and the algorithm it verifies.
#[derive(Clone)]
struct Key {
    kid: Option<String>,
    algorithm: Algorithm,
    key: DecodingKey,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key material (an HMAC secret is one).
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

/// Why a token was refused (the `error_description` of the 401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is not a well-formed JWT")]
    Malformed,
    #[error("the token's algorithm is not one a configured key allows")]
    Algorithm,
    #[error("the token names a key id (kid) that is not known")]
    UnknownKey,
    #[error("the token's signature does not verify")]
    Signature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet (nbf)")]
    NotYetValid,
    #[error("the token's issuer (iss) is not the one expected")]
    Issuer,
    #[error("the token's audience (aud) is not this service")]
    Audience,
    #[error("the token lacks the claim {0}")]
    MissingClaim(String),
}

/// The claims seatflow reads. Roles are read from the raw claims (their claim is configurable).
#[derive(Debug, Deserialize)]
pub struct Claims {
    pub sub: String,
    #[serde(flatten)]
    pub rest: serde_json::Map<String, serde_json::Value>,
}

impl Claims {
    /// `exp`, Unix seconds (required, so present on every verified token).
    pub fn expires(&self) -> Option<u64> {
        let exp = self.rest.get("exp")?;
        exp.as_u64()
            .or_else(|| exp.as_f64().filter(|e| *e >= 0.0).map(|e| e as u64))
    }
}

/// Where JWKS documents come from.
#[derive(Debug, Clone)]
enum JwksSource {
    File(std::path::PathBuf),
    Url(String),
}

impl JwksSource {
    /// The document's text and its keys.
    async fn load(&self, client: &reqwest::Client) -> anyhow::Result<(String, Vec<Key>)> {
        let text = match self {
            Self::File(path) => tokio::fs::read_to_string(path).await.map_err(|e| {
                anyhow::anyhow!("cannot read the JWKS file {}: {e}", path.display())
            })?,
            Self::Url(url) => {
                client
                    .get(url)
                    .timeout(Duration::from_secs(5))
                    .send()
                    .await
                    .and_then(reqwest::Response::error_for_status)
                    .map_err(|e| anyhow::anyhow!("cannot fetch the JWKS from {url}: {e}"))?
                    .text()
                    .await?
            }
        };
        let set: JwkSet = serde_json::from_str(&text)
            .map_err(|e| anyhow::anyhow!("the JWKS document is not a JWK set: {e}"))?;
        let keys = keys_of(&set);
        Ok((text, keys))
    }
}

/// The public keys of a JWK set that seatflow can use; symmetric (`oct`) keys and curves it
/// does not verify are left out.
fn keys_of(set: &JwkSet) -> Vec<Key> {
    set.keys
        .iter()
        .filter_map(|jwk| {
            let algorithm = match &jwk.algorithm {
                AlgorithmParameters::RSA(_) => Algorithm::RS256,
                AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
                    Algorithm::ES256
                }
                AlgorithmParameters::OctetKeyPair(_) => Algorithm::EdDSA,
                _ => return None,
            };
            Some(Key {
                kid: jwk.common.key_id.clone(),
                algorithm,
                key: DecodingKey::from_jwk(jwk).ok()?,
            })
        })
        .collect()
}

/// Checks tokens against the configured keys.
#[derive(Debug, Clone)]
pub struct Verifier {
    fixed: Arc<Vec<Key>>,
    jwks: Option<Arc<Jwks>>,
    validation: Validation,
}

#[derive(Debug)]
struct Jwks {
    source: JwksSource,
    client: reqwest::Client,
    /// The keys last fetched.
    keys: RwLock<Vec<Key>>,
    /// Held while a refresh runs, so that a burst of unknown `kid`s makes one fetch: when the
    /// last fetch was, and the document it read.
    refreshing: Mutex<(Instant, String)>,
    /// Counts the fetches that changed the keys (see [`Verifier::key_generation`]).
    generation: AtomicU64,
}

impl Jwks {
    /// Fetch the document again unless the last fetch is younger than `at_most_every`.
    async fn refresh(&self, at_most_every: Duration) -> anyhow::Result<()> {
        let mut last = self.refreshing.lock().await;
        if last.0.elapsed() < at_most_every {
            return Ok(());
        }
        last.0 = Instant::now();
        let (document, keys) = self.source.load(&self.client).await?;
        if document != last.1 {
            *self.keys.write().await = keys;
            last.1 = document;
            self.generation.fetch_add(1, Ordering::Release);
        }
        Ok(())
    }
}

impl Verifier {
    /// The keys of `settings`, the JWKS fetched once (a start that cannot read it fails).
    pub async fn new(settings: &AuthSettings) -> anyhow::Result<Self> {
        let mut fixed = Vec::new();
        if let Some(secret) = settings.hmac_secret.as_ref().map(|s| s.expose()) {
            if secret.len() < 32 {
                anyhow::bail!("auth.hmac_secret must be at least 32 bytes (HS256 wants 256 bits)");
            }
            fixed.push(Key {
                kid: None,
                algorithm: Algorithm::HS256,
                key: DecodingKey::from_secret(secret.as_bytes()),
            });
        }
        for path in &settings.public_keys {
            let pem = std::fs::read(path).map_err(|e| {
                anyhow::anyhow!("cannot read auth.public_keys file {}: {e}", path.display())
            })?;
            fixed.push(pem_key(&pem).ok_or_else(|| {
                anyhow::anyhow!(
                    "auth.public_keys file {} is not an RSA, P-256 or Ed25519 public key in PEM",
                    path.display()
                )
            })?);
        }
        let jwks = match settings.jwks.as_deref() {
            None => None,
            Some(place) => {
                let source = if place.starts_with("http://") || place.starts_with("https://") {
                    JwksSource::Url(place.to_owned())
                } else {
                    JwksSource::File(place.into())
                };
                let client = reqwest::Client::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .build()?;
                let (document, keys) = source.load(&client).await?;
                Some(Arc::new(Jwks {
                    source,
                    client,
                    keys: RwLock::new(keys),
                    // The first unknown `kid` may refresh at once.
                    refreshing: Mutex::new((
                        Instant::now()
                            .checked_sub(KID_REFRESH_EVERY)
                            .unwrap_or_else(Instant::now),
                        document,
                    )),
                    generation: AtomicU64::new(0),
                }))
            }
        };
        if fixed.is_empty() && jwks.is_none() {
            anyhow::bail!(
                "auth.mode = \"jwt\" needs a key: auth.hmac_secret, auth.public_keys or auth.jwks"
            );
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = settings.leeway_secs;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "sub"]);
        if let Some(issuer) = &settings.issuer {
            validation.set_issuer(&[issuer]);
        }
        match &settings.audience {
            Some(audience) => validation.set_audience(&[audience]),
            None => validation.validate_aud = false,
        }
        Ok(Self {
            fixed: Arc::new(fixed),
            jwks,
            validation,
        })
    }

    /// Keep the JWKS fresh: fetch it every `every` (a failed fetch keeps the keys held and is
    /// logged).
    pub fn spawn_refresh(&self, every: Duration) {
        if let Some(jwks) = self.jwks.clone() {
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    if let Err(e) = jwks.refresh(every / 2).await {
                        tracing::warn!(error = %e, "the JWKS could not be refreshed; the keys held stay");
                    }
                }
            });
        }
    }

    /// Whether a token may be checked with a public key (a PEM file or the JWKS): tens of
    /// microseconds per check, worth remembering; an HMAC check alone costs about what the
    /// remembering would.
    pub fn has_public_keys(&self) -> bool {
        self.jwks.is_some()
            || self
                .fixed
                .iter()
                .any(|key| key.algorithm != Algorithm::HS256)
    }

    /// A number that changes whenever the JWKS's keys change: what was verified under another
    /// generation must be verified again (a withdrawn key verifies nothing from then on).
    pub fn key_generation(&self) -> u64 {
        self.jwks
            .as_ref()
            .map_or(0, |jwks| jwks.generation.load(Ordering::Acquire))
    }

    /// The claims of a token that verifies with one of the keys.
    pub async fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        let candidates = self.candidates(header.alg, header.kid.as_deref()).await;
        let candidates = match (candidates.is_empty(), &header.kid, &self.jwks) {
            // A key id we do not hold: the provider may have rotated its keys.
            (true, Some(kid), Some(jwks)) => {
                if let Err(e) = jwks.refresh(KID_REFRESH_EVERY).await {
                    tracing::warn!(error = %e, "the JWKS could not be refreshed for an unknown kid");
                }
                let again = self.candidates(header.alg, Some(kid)).await;
                if again.is_empty() {
                    return Err(TokenError::UnknownKey);
                }
                again
            }
            (true, Some(_), None) => return Err(TokenError::UnknownKey),
            (true, None, _) => return Err(TokenError::Algorithm),
            (false, _, _) => candidates,
        };
        let mut validation = self.validation.clone();
        validation.algorithms = vec![header.alg];
        let mut refused = TokenError::Signature;
        for key in &candidates {
            match jsonwebtoken::decode::<Claims>(token, &key.key, &validation) {
                Ok(data) => return Ok(data.claims),
                Err(e) => {
                    refused = token_error(e.kind());
                    // Any other failure than the signature is the token's, whichever key.
                    if refused != TokenError::Signature {
                        return Err(refused);
                    }
                }
            }
        }
        Err(refused)
    }

    /// The keys that may verify a token of `algorithm` (and `kid`, when it names one).
    async fn candidates(&self, algorithm: Algorithm, kid: Option<&str>) -> Vec<Key> {
        let fits = |key: &&Key| {
            key.algorithm == algorithm
                && match (kid, &key.kid) {
                    (Some(kid), Some(own)) => kid == own,
                    // A key without an id (a secret, a PEM file) is tried for any token.
                    (_, None) | (None, Some(_)) => true,
                }
        };
        let mut keys: Vec<Key> = self.fixed.iter().filter(fits).cloned().collect();
        if let Some(jwks) = &self.jwks {
            keys.extend(jwks.keys.read().await.iter().filter(fits).cloned());
        }
        keys
    }
}

/// An RSA, P-256 or Ed25519 public key in PEM, and the algorithm it verifies.
fn pem_key(pem: &[u8]) -> Option<Key> {
    let key = |algorithm, key| Key {
        kid: None,
        algorithm,
        key,
    };
    DecodingKey::from_rsa_pem(pem)
        .map(|k| key(Algorithm::RS256, k))
        .or_else(|_| DecodingKey::from_ec_pem(pem).map(|k| key(Algorithm::ES256, k)))
        .or_else(|_| DecodingKey::from_ed_pem(pem).map(|k| key(Algorithm::EdDSA, k)))
        .ok()
}

fn token_error(kind: &jsonwebtoken::errors::ErrorKind) -> TokenError {
    use jsonwebtoken::errors::ErrorKind;
    match kind {
        ErrorKind::ExpiredSignature => TokenError::Expired,
        ErrorKind::ImmatureSignature => TokenError::NotYetValid,
        ErrorKind::InvalidIssuer => TokenError::Issuer,
        ErrorKind::InvalidAudience => TokenError::Audience,
        ErrorKind::MissingRequiredClaim(claim) => TokenError::MissingClaim(claim.clone()),
        ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => TokenError::Algorithm,
        ErrorKind::InvalidSignature | ErrorKind::Crypto(_) => TokenError::Signature,
        // A `sub` that is not a string reads as a claim missing.
        ErrorKind::Json(_) => TokenError::MissingClaim("sub".into()),
        _ => TokenError::Malformed,
    }
}

/// Every role a token grants: the configured claim (a list, or a space-separated string; a
/// dotted name reaches into an object, as Keycloak's `realm_access.roles`), and `scope`.
pub fn roles_of(claims: &Claims, roles_claim: &str) -> HashSet<String> {
    let mut roles = HashSet::new();
    let mut value = None;
    for (i, part) in roles_claim.split('.').enumerate() {
        value = if i == 0 {
            claims.rest.get(part)
        } else {
            value.and_then(|v: &serde_json::Value| v.get(part))
        };
    }
    let mut take = |value: Option<&serde_json::Value>| match value {
        Some(serde_json::Value::String(text)) => {
            roles.extend(text.split_whitespace().map(str::to_owned));
        }
        Some(serde_json::Value::Array(items)) => {
            roles.extend(items.iter().filter_map(|v| v.as_str()).map(str::to_owned));
        }
        _ => {}
    };
    take(value);
    take(claims.rest.get("scope"));
    roles
}
