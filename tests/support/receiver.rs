#![allow(dead_code)] // shared by the api and kafka tests, each uses part of it
//! A webhook receiver for tests: an HTTP server on a free loopback port that records every post
//! (headers, body, what it answered) and answers as the test tells it (by the post's number).

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use poem::listener::{Acceptor, Listener, TcpListener};
use poem::{Body, EndpointExt, Request, Response, Route, handler, http::StatusCode, web::Data};
use seatflow_projections::webhooks::sign;
use serde_json::Value;

/// What the receiver does with its n-th post (0-based).
#[derive(Clone, Copy, Debug)]
pub enum Answer {
    Status(u16),
    /// Wait, then answer 200.
    Slow(Duration),
}

/// One post as it arrived.
#[derive(Clone, Debug)]
pub struct Post {
    pub signature: String,
    pub timestamp: i64,
    pub delivery: String,
    pub topic: String,
    pub body: String,
    pub answered: u16,
}

impl Post {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("a JSON body")
    }

    /// Whether the signature is the HMAC of the timestamp and the body with `secret`.
    pub fn signed_with(&self, secret: &str) -> bool {
        sign::verify(
            secret,
            self.timestamp,
            self.body.as_bytes(),
            &self.signature,
        )
    }
}

type Script = Arc<dyn Fn(usize) -> Answer + Send + Sync>;

struct Shared {
    posts: Mutex<Vec<Post>>,
    calls: Mutex<usize>,
    script: Mutex<Script>,
}

pub struct Receiver {
    pub url: String,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

#[handler]
async fn receive(request: &Request, body: Body, shared: Data<&Arc<Shared>>) -> Response {
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let body = body.into_string().await.unwrap_or_default();
    let call = {
        let mut calls = shared.calls.lock();
        *calls += 1;
        *calls - 1
    };
    let script = shared.script.lock().clone();
    let answered = match script(call) {
        Answer::Status(code) => code,
        Answer::Slow(wait) => {
            tokio::time::sleep(wait).await;
            200
        }
    };
    shared.posts.lock().push(Post {
        signature: header(sign::SIGNATURE_HEADER),
        timestamp: header(sign::TIMESTAMP_HEADER).parse().unwrap_or(-1),
        delivery: header(sign::DELIVERY_HEADER),
        topic: header(sign::TOPIC_HEADER),
        body,
        answered,
    });
    Response::builder()
        .status(StatusCode::from_u16(answered).expect("a status"))
        .finish()
}

impl Receiver {
    /// A receiver answering every post with what `script` says for its number.
    pub async fn start(script: impl Fn(usize) -> Answer + Send + Sync + 'static) -> Self {
        let shared = Arc::new(Shared {
            posts: Mutex::new(Vec::new()),
            calls: Mutex::new(0),
            script: Mutex::new(Arc::new(script)),
        });
        let acceptor = TcpListener::bind("127.0.0.1:0")
            .into_acceptor()
            .await
            .expect("bind a receiver");
        let port = acceptor.local_addr()[0]
            .as_socket_addr()
            .expect("a socket address")
            .port();
        let app = Route::new()
            .at("/hook", poem::post(receive))
            .data(shared.clone());
        let server = tokio::spawn(async move {
            let _ = poem::Server::new_with_acceptor(acceptor).run(app).await;
        });
        Self {
            url: format!("http://127.0.0.1:{port}/hook"),
            shared,
            server,
        }
    }

    /// A receiver that answers 200 at once.
    pub async fn ok() -> Self {
        Self::start(|_| Answer::Status(200)).await
    }

    /// From now on, answer as `script` says.
    pub fn answer(&self, script: impl Fn(usize) -> Answer + Send + Sync + 'static) {
        *self.shared.script.lock() = Arc::new(script);
    }

    pub fn posts(&self) -> Vec<Post> {
        self.shared.posts.lock().clone()
    }

    /// The posts it answered 2xx.
    pub fn delivered(&self) -> Vec<Post> {
        self.posts()
            .into_iter()
            .filter(|p| (200..300).contains(&p.answered))
            .collect()
    }

    /// Wait until `done` holds for the posts (at most `within`); the posts then.
    pub async fn until(&self, within: Duration, done: impl Fn(&[Post]) -> bool) -> Vec<Post> {
        let started = Instant::now();
        loop {
            let posts = self.posts();
            if done(&posts) || started.elapsed() > within {
                return posts;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
