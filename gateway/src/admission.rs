//! Admission tokens: what the waiting room hands an admitted ticket, and what a reservation in
//! an event with a room must carry (`X-Admission-Token`).
//!
//! A token is an HS256 JWT signed with the gateways' admission secret (one secret shared by
//! every gateway, so that any of them honours a token another issued), bound to one user, one
//! event and one ticket, and expiring with the session. Its type claim keeps it from being
//! taken for a login token signed with the same algorithm, and a login token from being taken
//! for it. The checks answer the issue's codes: `admission_expired` for a token that ran out,
//! `admission_invalid` for anything else (another user's or event's, edited, another key).
//! Not wired to the reservation endpoint yet (issue 15 goes on).

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// The `typ` claim of an admission token.
const ADMISSION: &str = "seatflow-admission";

/// What an admission token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Admission {
    /// Always [`ADMISSION`].
    typ: String,
    /// The user admitted.
    pub sub: String,
    /// The event.
    pub evt: String,
    /// The waiting-room ticket.
    pub tkt: String,
    /// When the session ends (Unix seconds).
    pub exp: u64,
}

/// Why an admission token is refused (the 403's code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// `admission_expired`.
    Expired,
    /// `admission_invalid`.
    Invalid,
}

impl Refused {
    pub fn code(self) -> &'static str {
        match self {
            Self::Expired => "admission_expired",
            Self::Invalid => "admission_invalid",
        }
    }
}

/// Signs and checks admission tokens.
#[derive(Clone)]
pub struct AdmissionKeys {
    signing: EncodingKey,
    checking: DecodingKey,
}

impl std::fmt::Debug for AdmissionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdmissionKeys { .. }")
    }
}

impl AdmissionKeys {
    /// Keys from the shared admission secret (at least 32 bytes).
    pub fn new(secret: &[u8]) -> anyhow::Result<Self> {
        if secret.len() < 32 {
            anyhow::bail!("the admission secret must be at least 32 bytes");
        }
        Ok(Self {
            signing: EncodingKey::from_secret(secret),
            checking: DecodingKey::from_secret(secret),
        })
    }

    /// A token admitting `user` to `event` with `ticket` until `expires` (Unix seconds).
    pub fn issue(&self, user: &str, event: &str, ticket: &str, expires: u64) -> String {
        let claims = Admission {
            typ: ADMISSION.into(),
            sub: user.into(),
            evt: event.into(),
            tkt: ticket.into(),
            exp: expires,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.signing)
            .expect("HS256 signing of plain claims does not fail")
    }

    /// The admission `token` grants, if it admits `user` to `event` now.
    pub fn check(&self, token: &str, user: &str, event: &str) -> Result<Admission, Refused> {
        let mut validation = Validation::new(Algorithm::HS256);
        // A session ends when it ends: no leeway.
        validation.leeway = 0;
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp", "sub"]);
        let admission = jsonwebtoken::decode::<Admission>(token, &self.checking, &validation)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => Refused::Expired,
                _ => Refused::Invalid,
            })?
            .claims;
        if admission.typ != ADMISSION || admission.sub != user || admission.evt != event {
            return Err(Refused::Invalid);
        }
        Ok(admission)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"admission-test-secret-of-32-bytes!!";

    fn in_an_hour() -> u64 {
        crate::auth::verified::unix_now() + 3_600
    }

    #[test]
    fn a_token_admits_its_user_to_its_event_only() {
        let keys = AdmissionKeys::new(SECRET).expect("keys");
        let token = keys.issue("ann", "event-1", "ticket-1", in_an_hour());
        let admission = keys.check(&token, "ann", "event-1").expect("admits");
        assert_eq!(admission.tkt, "ticket-1");
        assert_eq!(keys.check(&token, "bob", "event-1"), Err(Refused::Invalid));
        assert_eq!(
            keys.check(&token, "ann", "event-2"),
            Err(Refused::Invalid),
            "replayed for another event"
        );
    }

    #[test]
    fn an_expired_edited_or_foreign_token_is_refused() {
        let keys = AdmissionKeys::new(SECRET).expect("keys");
        let old = keys.issue("ann", "event-1", "t", crate::auth::verified::unix_now() - 1);
        assert_eq!(keys.check(&old, "ann", "event-1"), Err(Refused::Expired));

        // Claims edited to name bob (the same claims' encoding, from any key), ann's signature
        // kept.
        let expires = in_an_hour();
        let anns = keys.issue("ann", "event-1", "t", expires);
        let other = AdmissionKeys::new(b"another-secret-of-at-least-32-bytes").expect("keys");
        let bobs = other.issue("bob", "event-1", "t", expires);
        let (anns, bobs): (Vec<&str>, Vec<&str>) =
            (anns.split('.').collect(), bobs.split('.').collect());
        let edited = format!("{}.{}.{}", anns[0], bobs[1], anns[2]);
        assert_eq!(keys.check(&edited, "bob", "event-1"), Err(Refused::Invalid));

        let foreign = other.issue("ann", "event-1", "t", in_an_hour());
        assert_eq!(
            keys.check(&foreign, "ann", "event-1"),
            Err(Refused::Invalid)
        );
        assert!(AdmissionKeys::new(b"short").is_err());
    }

    #[test]
    fn a_login_token_signed_with_the_same_secret_is_not_an_admission() {
        let keys = AdmissionKeys::new(SECRET).expect("keys");
        let secret = std::str::from_utf8(SECRET).expect("utf-8");
        let login = crate::auth::token::Signer::new(secret, None, None)
            .expect("signer")
            .sign("ann", &[], std::time::Duration::from_secs(600))
            .expect("token");
        assert_eq!(keys.check(&login, "ann", "event-1"), Err(Refused::Invalid));
    }
}
