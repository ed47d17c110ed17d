//! `405 Method Not Allowed` answers carry the `Allow` header (RFC 9110 requires it): the methods
//! the path's route has, taken from the OpenAPI document plus the routes outside it.

use std::sync::Arc;

use poem::http::{HeaderValue, StatusCode, header};
use poem::{Endpoint, IntoResponse, Middleware, Request, Response};
use serde_json::Value;

/// The routes outside the document, with their methods.
const OTHER_ROUTES: &[(&str, &str)] = &[
    ("/metrics", "GET"),
    ("/openapi.json", "GET"),
    ("/docs", "GET"),
    ("/docs/", "GET"),
    ("/bench/echo", "POST"),
];

/// Each route's path template, split in segments (`{name}` matches any one), and its methods.
#[derive(Debug, Clone, Default)]
pub struct Routes(Arc<Vec<(Vec<String>, String)>>);

impl Routes {
    /// The routes of `document` (the OpenAPI JSON) and [`OTHER_ROUTES`].
    pub fn of(document: &str) -> Self {
        let mut routes = Vec::new();
        let document: Value = serde_json::from_str(document).unwrap_or_default();
        for (path, item) in document["paths"].as_object().into_iter().flatten() {
            let mut methods: Vec<String> = item
                .as_object()
                .into_iter()
                .flat_map(|item| item.keys())
                .map(|method| method.to_ascii_uppercase())
                .collect();
            methods.sort();
            routes.push((segments(path), methods.join(", ")));
        }
        for (path, methods) in OTHER_ROUTES {
            routes.push((segments(path), (*methods).to_owned()));
        }
        Self(Arc::new(routes))
    }

    /// The methods of the route `path` falls on.
    fn allowed(&self, path: &str) -> Option<&str> {
        let asked = segments(path);
        self.0
            .iter()
            .find(|(template, _)| {
                template.len() == asked.len()
                    && template
                        .iter()
                        .zip(&asked)
                        .all(|(t, a)| t == a || (t.starts_with('{') && t.ends_with('}')))
            })
            .map(|(_, methods)| methods.as_str())
    }
}

fn segments(path: &str) -> Vec<String> {
    path.split('/').map(str::to_owned).collect()
}

/// The middleware that adds `Allow` to a 405.
#[derive(Debug, Clone)]
pub struct AllowOn405(pub Routes);

impl<E: Endpoint> Middleware<E> for AllowOn405 {
    type Output = AllowOn405Endpoint<E>;

    fn transform(&self, inner: E) -> Self::Output {
        AllowOn405Endpoint {
            inner,
            routes: self.0.clone(),
        }
    }
}

#[derive(Debug)]
pub struct AllowOn405Endpoint<E> {
    inner: E,
    routes: Routes,
}

impl<E: Endpoint> Endpoint for AllowOn405Endpoint<E> {
    type Output = Response;

    async fn call(&self, request: Request) -> poem::Result<Self::Output> {
        let path = request.uri().path().to_owned();
        let mut response = self.inner.call(request).await?.into_response();
        if response.status() == StatusCode::METHOD_NOT_ALLOWED
            && let Some(methods) = self.routes.allowed(&path)
            && let Ok(value) = HeaderValue::from_str(methods)
        {
            response.headers_mut().insert(header::ALLOW, value);
        }
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_finds_its_template() {
        let routes = Routes::of(
            r#"{"paths": {"/api/events": {"get": {}, "post": {}},
                "/api/reservations/{reservationId}": {"get": {}, "delete": {}}}}"#,
        );
        assert_eq!(routes.allowed("/api/events"), Some("GET, POST"));
        assert_eq!(routes.allowed("/api/reservations/abc"), Some("DELETE, GET"));
        assert_eq!(routes.allowed("/bench/echo"), Some("POST"));
        assert_eq!(routes.allowed("/api/reservations/abc/x"), None);
    }
}
