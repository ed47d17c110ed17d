//! A stand-in for a Confluent Schema Registry: no registry server can be installed on these
//! machines (Confluent's is not on Maven Central), so the tests run this one. It answers the
//! REST calls schema_registry_converter makes, with Confluent's paths and JSON shapes:
//!
//! - `POST /subjects/{subject}/versions` `{"schema", "schemaType"}` -> `{"id"}` (the same schema
//!   keeps its id, under any subject, as Confluent's does);
//! - `GET /subjects/{subject}/versions` -> `[1, 2, ...]` (404 `{"error_code": 40401}` if unknown);
//! - `GET /subjects/{subject}/versions/{version}` -> `{"subject", "version", "id", "schema"}`;
//! - `GET /schemas/ids/{id}` -> `{"schema"}`.
//!
//! It does not check compatibility (a real registry would); every call is logged for the tests.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use poem::http::StatusCode;
use poem::listener::{Acceptor, Listener, TcpListener};
use poem::web::{Data, Json, Path};
use poem::{EndpointExt, Route, get, handler};
use serde_json::{Value, json};

#[derive(Default)]
pub struct Registry {
    /// Schema text -> id.
    ids: HashMap<String, u32>,
    /// Subject -> the ids of its versions, oldest first.
    subjects: HashMap<String, Vec<u32>>,
    /// `METHOD path` of every call.
    pub calls: Vec<String>,
}

impl Registry {
    pub fn id_of(&self, subject: &str, version: usize) -> Option<u32> {
        self.subjects.get(subject)?.get(version - 1).copied()
    }

    pub fn schema_of(&self, id: u32) -> Option<&String> {
        self.ids.iter().find(|(_, i)| **i == id).map(|(s, _)| s)
    }
}

type Shared = Arc<Mutex<Registry>>;

fn not_found(code: u32, message: &str) -> (StatusCode, Json<Value>) {
    (
        StatusCode::NOT_FOUND,
        Json(json!({"error_code": code, "message": message})),
    )
}

#[handler]
fn register_schema(
    Path(subject): Path<String>,
    Json(body): Json<Value>,
    Data(registry): Data<&Shared>,
) -> (StatusCode, Json<Value>) {
    let mut registry = registry.lock();
    registry
        .calls
        .push(format!("POST /subjects/{subject}/versions"));
    let Some(schema) = body["schema"].as_str() else {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"error_code": 42201, "message": "schema is missing"})),
        );
    };
    let next = registry.ids.len() as u32 + 1;
    let id = *registry.ids.entry(schema.to_owned()).or_insert(next);
    let versions = registry.subjects.entry(subject).or_default();
    if !versions.contains(&id) {
        versions.push(id);
    }
    (StatusCode::OK, Json(json!({"id": id})))
}

#[handler]
fn list_versions(
    Path(subject): Path<String>,
    Data(registry): Data<&Shared>,
) -> (StatusCode, Json<Value>) {
    let mut registry = registry.lock();
    registry
        .calls
        .push(format!("GET /subjects/{subject}/versions"));
    match registry.subjects.get(&subject) {
        Some(ids) => (
            StatusCode::OK,
            Json(json!((1..=ids.len()).collect::<Vec<_>>())),
        ),
        None => not_found(40401, "Subject not found."),
    }
}

#[handler]
fn get_version(
    Path((subject, version)): Path<(String, usize)>,
    Data(registry): Data<&Shared>,
) -> (StatusCode, Json<Value>) {
    let mut registry = registry.lock();
    registry
        .calls
        .push(format!("GET /subjects/{subject}/versions/{version}"));
    let Some(id) = registry.id_of(&subject, version) else {
        return not_found(40402, "Version not found.");
    };
    let schema = registry.schema_of(id).cloned().unwrap_or_default();
    (
        StatusCode::OK,
        Json(json!({"subject": subject, "version": version, "id": id, "schema": schema})),
    )
}

#[handler]
fn get_by_id(Path(id): Path<u32>, Data(registry): Data<&Shared>) -> (StatusCode, Json<Value>) {
    let mut registry = registry.lock();
    registry.calls.push(format!("GET /schemas/ids/{id}"));
    match registry.schema_of(id).cloned() {
        Some(schema) => (StatusCode::OK, Json(json!({"schema": schema}))),
        None => not_found(40403, "Schema not found"),
    }
}

/// Start the stand-in on a free port; returns its URL and its state.
pub async fn start() -> (String, Shared) {
    let registry: Shared = Arc::default();
    let routes = Route::new()
        .at(
            "/subjects/:subject/versions",
            get(list_versions).post(register_schema),
        )
        .at("/subjects/:subject/versions/:version", get(get_version))
        .at("/schemas/ids/:id", get(get_by_id))
        .data(registry.clone());
    let acceptor = TcpListener::bind("127.0.0.1:0")
        .into_acceptor()
        .await
        .expect("bind the stand-in registry");
    let port = acceptor
        .local_addr()
        .first()
        .and_then(|a| a.as_socket_addr().map(|s| s.port()))
        .expect("port");
    tokio::spawn(poem::Server::new_with_acceptor(acceptor).run(routes));
    (format!("http://127.0.0.1:{port}"), registry)
}
