//! Who is calling: the `auth` settings, the check every `/api` request passes before its
//! handler, and the [`Caller`] the handlers then act for.
//!
//! Three modes (`auth.mode`):
//! - `jwt`: `Authorization: Bearer <JWT>`, verified against the configured keys ([`keys`]); the
//!   user is `sub`, the roles come from a claim. 401 with `WWW-Authenticate` when missing or
//!   invalid.
//! - `trusted-header`: behind a gateway that authenticates, `X-User-Id` (and `X-User-Roles`)
//!   from the addresses of `auth.trusted_proxies` only ([`addresses`]); 401 from anyone else.
//! - `none`: anyone is whoever the request names, with every role; for local use, so the
//!   server refuses to start with it on a non-loopback address unless `auth.allow_insecure`.

pub mod addresses;
pub mod keys;
pub mod token;
pub mod verified;

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use poem::http::{HeaderValue, StatusCode, header};
use poem::{IntoResponse, Request, Response};
use serde::{Deserialize, Serialize};

use seatflow_commands::text::{identifier, normalized};

use crate::error::{ApiError, ErrorBody};
use addresses::Proxies;
use keys::{TokenError, Verifier};
use verified::{VerifiedTokens, unix_now};

/// The header a trusted proxy names the user in.
pub const USER_HEADER: &str = "X-User-Id";
/// The header a trusted proxy lists the user's roles in (comma- or space-separated).
pub const ROLES_HEADER: &str = "X-User-Roles";

/// How callers are identified.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// No identity: the request names its user. Local use only.
    #[default]
    None,
    /// A JWT bearer token on every `/api` call.
    Jwt,
    /// `X-User-Id` from a trusted proxy.
    TrustedHeader,
}

/// A key or secret in the settings: never printed.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretText(String);

impl SecretText {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value itself, to sign or verify with. Never to be logged.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SecretText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"***\"")
    }
}

/// The `[auth]` settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSettings {
    /// `none` (default; only on a loopback address), `jwt` or `trusted-header`.
    pub mode: Mode,
    /// Start with `none` on a non-loopback address anyway (logs a warning).
    pub allow_insecure: bool,
    /// `jwt`: an HMAC secret for HS256 tokens (at least 32 bytes); also what `seatflow token`
    /// signs with.
    pub hmac_secret: Option<SecretText>,
    /// `jwt`: PEM files of public keys (RSA: RS256, P-256: ES256, Ed25519: EdDSA).
    pub public_keys: Vec<PathBuf>,
    /// `jwt`: a JWKS document, a file or an `http(s)` URL, fetched at start and refreshed.
    pub jwks: Option<String>,
    /// How often the JWKS is fetched again, seconds.
    pub jwks_refresh_secs: u64,
    /// `jwt`: the `iss` tokens must carry, when set.
    pub issuer: Option<String>,
    /// `jwt`: the `aud` tokens must carry, when set.
    pub audience: Option<String>,
    /// Clock skew allowed on `exp` and `nbf`, seconds.
    pub leeway_secs: u64,
    /// The claim holding the roles (a list or a space-separated string; `a.b` reaches into an
    /// object). `scope` is read too.
    pub roles_claim: String,
    /// Addresses (or CIDR ranges) allowed to send identity headers (`trusted-header`) and
    /// `X-Forwarded-For`.
    pub trusted_proxies: Vec<String>,
    /// Signs the waiting room's admission tokens (at least 32 bytes). Every gateway of a
    /// deployment must share it, so that one honours what another admitted; unset: a random
    /// secret per process (enough for one process).
    pub admission_secret: Option<SecretText>,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            mode: Mode::None,
            allow_insecure: false,
            hmac_secret: None,
            public_keys: Vec::new(),
            jwks: None,
            jwks_refresh_secs: 300,
            issuer: None,
            audience: None,
            leeway_secs: 30,
            roles_claim: "roles".into(),
            trusted_proxies: Vec::new(),
            admission_secret: None,
        }
    }
}

impl AuthSettings {
    /// What is wrong with these settings for a server on `bind`, in words naming the setting.
    /// `none` on a non-loopback address is refused unless `allow_insecure`.
    pub fn check(&self, bind: SocketAddr) -> Result<(), String> {
        Proxies::parse(&self.trusted_proxies)?;
        if self
            .admission_secret
            .as_ref()
            .is_some_and(|secret| secret.expose().len() < 32)
        {
            return Err("auth.admission_secret must be at least 32 bytes".into());
        }
        if self.jwks_refresh_secs == 0 {
            return Err("auth.jwks_refresh_secs must be at least 1".into());
        }
        match self.mode {
            Mode::None if !bind.ip().is_loopback() && !self.allow_insecure => Err(format!(
                "auth.mode = \"none\" lets anyone act as any user, and {bind} is reachable from \
                 other machines: set auth.mode to \"jwt\" (or \"trusted-header\" behind an \
                 authenticating proxy), bind a loopback address (127.0.0.1), or set \
                 auth.allow_insecure = true to run it anyway"
            )),
            Mode::TrustedHeader if self.trusted_proxies.is_empty() => Err(
                "auth.mode = \"trusted-header\" needs auth.trusted_proxies: the addresses \
                 allowed to send X-User-Id"
                    .into(),
            ),
            Mode::Jwt
                if self.hmac_secret.is_none()
                    && self.public_keys.is_empty()
                    && self.jwks.is_none() =>
            {
                Err(
                    "auth.mode = \"jwt\" needs a key: auth.hmac_secret, auth.public_keys or \
                     auth.jwks"
                        .into(),
                )
            }
            _ => Ok(()),
        }
    }
}

/// A role a token or a proxy can grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// May create and change events.
    Organizer,
    /// May read any reservation and any user's history, and act on any reservation.
    Admin,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Self::Organizer => "organizer",
            Self::Admin => "admin",
        }
    }
}

/// Who a request acts for, set by [`Authenticate`] on every `/api` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// `auth.mode = none`: whoever the request names, with every role.
    Anyone,
    /// An authenticated user.
    User { id: String, roles: HashSet<String> },
}

impl Caller {
    /// Whether the caller has `role` (anyone has every role in `none` mode).
    pub fn has(&self, role: Role) -> bool {
        match self {
            Self::Anyone => true,
            Self::User { roles, .. } => roles.contains(role.name()),
        }
    }

    /// Whether the caller may see and act on what belongs to `owner`.
    pub fn may_act_for(&self, owner: &str) -> bool {
        match self {
            Self::Anyone => true,
            Self::User { id, .. } => id == owner || self.has(Role::Admin),
        }
    }

    /// The authenticated user, if any.
    pub fn user(&self) -> Option<&str> {
        match self {
            Self::Anyone => None,
            Self::User { id, .. } => Some(id),
        }
    }

    /// The user a request acts as, given the one it names in `field`: in `none` mode the named
    /// one (required); otherwise the authenticated one, which a name, when given, must match.
    pub fn acting_as(&self, named: Option<String>, field: &str) -> Result<String, ApiError> {
        match (self, named) {
            (Self::Anyone, Some(named)) => Ok(named),
            (Self::Anyone, None) => Err(ApiError::bad_request(field, "the user is required")),
            (Self::User { id, .. }, Some(named)) if normalized(&named) != id.as_str() => {
                Err(ApiError::forbidden(
                    "user_mismatch",
                    format!("{field} must be the authenticated user or be left out"),
                    Some(field),
                ))
            }
            (Self::User { id, .. }, _) => Ok(id.clone()),
        }
    }

    /// 403 unless the caller has `role`.
    pub fn require(&self, role: Role, to: &str) -> Result<(), ApiError> {
        if self.has(role) {
            Ok(())
        } else {
            Err(ApiError::forbidden(
                "forbidden",
                format!("{to} needs the {} role", role.name()),
                None,
            ))
        }
    }
}

/// The built authenticator.
#[derive(Debug, Clone)]
pub struct Auth {
    identify: Identify,
    proxies: Proxies,
}

/// How [`Auth`] tells who a request is from, one variant per [`Mode`] with what it needs.
#[derive(Debug, Clone)]
enum Identify {
    Anyone,
    Token {
        verifier: Box<Verifier>,
        /// Tokens verified recently; none when only an HMAC secret is configured.
        verified: Option<VerifiedTokens>,
        roles_claim: String,
        leeway_secs: u64,
    },
    ProxyHeaders,
}

/// Why a request is not authenticated: the 401's `error` code and description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unauthenticated {
    /// No credentials at all (RFC 6750: no error code in the challenge).
    Missing(&'static str),
    /// A bearer token that does not verify.
    InvalidToken(TokenError),
    /// Identity headers from an address that is not a trusted proxy, or none.
    UntrustedHeaders(&'static str),
}

impl Auth {
    /// The authenticator of `settings` (fetches the JWKS once, when there is one).
    pub async fn new(settings: &AuthSettings) -> anyhow::Result<Self> {
        let identify = match settings.mode {
            Mode::Jwt => {
                let verifier = Verifier::new(settings).await?;
                verifier.spawn_refresh(std::time::Duration::from_secs(settings.jwks_refresh_secs));
                Identify::Token {
                    verified: verifier.has_public_keys().then(VerifiedTokens::default),
                    verifier: Box::new(verifier),
                    roles_claim: settings.roles_claim.clone(),
                    leeway_secs: settings.leeway_secs,
                }
            }
            Mode::None => Identify::Anyone,
            Mode::TrustedHeader => Identify::ProxyHeaders,
        };
        Ok(Self {
            identify,
            proxies: Proxies::parse(&settings.trusted_proxies).map_err(anyhow::Error::msg)?,
        })
    }

    pub fn mode(&self) -> Mode {
        match self.identify {
            Identify::Anyone => Mode::None,
            Identify::Token { .. } => Mode::Jwt,
            Identify::ProxyHeaders => Mode::TrustedHeader,
        }
    }

    /// The trusted proxies (for the client address of rate limits).
    pub fn proxies(&self) -> &Proxies {
        &self.proxies
    }

    /// Who `request` is from.
    pub async fn caller(&self, request: &Request) -> Result<Caller, Unauthenticated> {
        match &self.identify {
            Identify::Anyone => Ok(Caller::Anyone),
            Identify::Token {
                verifier,
                verified,
                roles_claim,
                leeway_secs,
            } => {
                let token = bearer_token(request)?;
                let now = unix_now();
                // Read before verifying: a key change during the check makes the entry stale.
                let keys = verifier.key_generation();
                if let Some(caller) = verified.as_ref().and_then(|v| v.get(token, keys, now)) {
                    return Ok(caller);
                }
                let claims = verifier
                    .verify(token)
                    .await
                    .map_err(Unauthenticated::InvalidToken)?;
                // The user as every stored name is: normalized, bounded.
                let id = identifier("sub", &claims.sub).map_err(|_| {
                    Unauthenticated::InvalidToken(TokenError::MissingClaim("sub".into()))
                })?;
                let caller = Caller::User {
                    id,
                    roles: keys::roles_of(&claims, roles_claim),
                };
                if let Some(verified) = verified
                    && let Some(exp) = claims.expires()
                {
                    let until = exp.saturating_add(*leeway_secs);
                    verified.keep(token, caller.clone(), keys, until, now);
                }
                Ok(caller)
            }
            Identify::ProxyHeaders => {
                let peer = peer_ip(request);
                if !peer.is_some_and(|peer| self.proxies.trusts(peer)) {
                    return Err(Unauthenticated::UntrustedHeaders(
                        "identity headers are only accepted from a trusted proxy",
                    ));
                }
                let id = request
                    .header(USER_HEADER)
                    .and_then(|id| identifier(USER_HEADER, id).ok())
                    .ok_or(Unauthenticated::UntrustedHeaders(
                        "the proxy sent no valid X-User-Id (1 to 128 characters)",
                    ))?;
                let roles = request
                    .header(ROLES_HEADER)
                    .unwrap_or_default()
                    .split(|c: char| c == ',' || c.is_whitespace())
                    .filter(|role| !role.is_empty())
                    .map(str::to_owned)
                    .collect();
                Ok(Caller::User { id, roles })
            }
        }
    }
}

/// The peer's address, when the connection has one.
pub fn peer_ip(request: &Request) -> Option<IpAddr> {
    request.remote_addr().as_socket_addr().map(SocketAddr::ip)
}

fn bearer_token(request: &Request) -> Result<&str, Unauthenticated> {
    let value = request
        .header(header::AUTHORIZATION)
        .ok_or(Unauthenticated::Missing(
            "an Authorization: Bearer token is required",
        ))?;
    match value.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(token.trim())
        }
        _ => Err(Unauthenticated::InvalidToken(TokenError::Malformed)),
    }
}

impl Unauthenticated {
    /// The 401: `WWW-Authenticate` (RFC 6750) and the JSON error body.
    pub fn response(&self) -> Response {
        let (code, message, challenge) = match self {
            Self::Missing(message) => (
                "unauthorized",
                (*message).to_owned(),
                "Bearer realm=\"seatflow\"".to_owned(),
            ),
            Self::InvalidToken(reason) => (
                "invalid_token",
                reason.to_string(),
                format!(
                    "Bearer realm=\"seatflow\", error=\"invalid_token\", error_description=\"{reason}\""
                ),
            ),
            Self::UntrustedHeaders(message) => (
                "unauthorized",
                (*message).to_owned(),
                "Bearer realm=\"seatflow\"".to_owned(),
            ),
        };
        let body = ErrorBody {
            error: code.to_owned(),
            message,
            field: Some("Authorization".into())
                .filter(|_| !matches!(self, Self::UntrustedHeaders(_))),
        };
        let mut response = poem::web::Json(body)
            .with_status(StatusCode::UNAUTHORIZED)
            .into_response();
        if let Ok(value) = HeaderValue::from_str(&challenge) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, value);
        }
        response
    }
}
