//! The guard in front of every `/api` request: the client address's rate limit, then who the
//! caller is ([`crate::auth`]), then the caller's own rate limit; the handler gets the
//! [`Caller`] as request data. Other paths (health, docs, metrics) pass as they are.

use std::time::Duration;

use poem::http::{HeaderValue, Method, StatusCode, header};
use poem::{Endpoint, IntoResponse, Middleware, Request, Response};

use crate::auth::{Auth, Caller, peer_ip};
use crate::error::ErrorBody;
use crate::limits::{Kind, Limiter};

/// The address a request stands for (the peer, or the client a trusted proxy names), for the
/// handlers' own limits.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddress(pub Option<std::net::IpAddr>);

/// The middleware.
#[derive(Debug, Clone)]
pub struct Guard {
    pub auth: Auth,
    pub limiter: Limiter,
}

impl<E: Endpoint> Middleware<E> for Guard {
    type Output = GuardEndpoint<E>;

    fn transform(&self, inner: E) -> Self::Output {
        GuardEndpoint {
            inner,
            guard: self.clone(),
        }
    }
}

#[derive(Debug)]
pub struct GuardEndpoint<E> {
    inner: E,
    guard: Guard,
}

impl<E: Endpoint> Endpoint for GuardEndpoint<E> {
    type Output = Response;

    async fn call(&self, mut request: Request) -> poem::Result<Self::Output> {
        if !request.uri().path().starts_with("/api/") {
            return self
                .inner
                .call(request)
                .await
                .map(IntoResponse::into_response);
        }
        let kind = if request.method() == Method::GET || request.method() == Method::HEAD {
            Kind::Read
        } else {
            Kind::Write
        };
        let limiter = &self.guard.limiter;
        let address = peer_ip(&request).map(|peer| {
            let forwarded = request.header("x-forwarded-for");
            self.guard.auth.proxies().client(peer, forwarded)
        });
        if let Some(wait) = limiter.check_address(kind, address) {
            return Ok(refuse(limiter, wait, "this address").await);
        }
        let caller = match self.guard.auth.caller(&request).await {
            Ok(caller) => caller,
            Err(refused) => return Ok(refused.response()),
        };
        if let Caller::User { id, .. } = &caller
            && let Some(wait) = limiter.check_user(kind, id)
        {
            return Ok(refuse(limiter, wait, "this user").await);
        }
        request.extensions_mut().insert(caller);
        request.extensions_mut().insert(ClientAddress(address));
        self.inner
            .call(request)
            .await
            .map(IntoResponse::into_response)
    }
}

/// The 429, held back for the time the client should have waited (see
/// `limits.refusal_delay_max_ms`): a client that asks again the moment it is refused sends no
/// faster than its rate on each connection.
async fn refuse(limiter: &Limiter, wait: Duration, whose: &str) -> Response {
    let delay = limiter.refusal_delay(wait);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    too_many(wait, whose)
}

/// 429 with `Retry-After` (whole seconds, at least 1) and the JSON error body.
fn too_many(wait: Duration, whose: &str) -> Response {
    let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
    let body = ErrorBody {
        error: "rate_limited".into(),
        message: format!("too many requests from {whose}; retry after {seconds} s"),
        field: None,
    };
    let mut response = poem::web::Json(body)
        .with_status(StatusCode::TOO_MANY_REQUESTS)
        .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    response
}
