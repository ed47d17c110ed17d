//! The HTTP server's connections, bounded: at most `max` open at once (one more is answered
//! `503 too_many_connections` and closed, instead of waiting unanswered in the backlog), and
//! none kept by a client that sends nothing. While none of a connection's requests is being
//! answered, the next request's head must arrive within `idle` of the last answer (or of the
//! connection's opening), or the connection is closed: an idle keep-alive, a half-sent request
//! head and a silent socket all end there. A request being answered (a long poll of up to 30 s,
//! a live stream for as long as it lasts) is never cut by it; its body has its own deadline where
//! it is read ([`crate::body`]). The other way round, a client that stops reading what it is
//! sent is dropped once a write to it has waited `idle`.
//!
//! The acceptor wraps each socket in a [`TimedStream`]; the [`TrackRequests`] middleware tells
//! the connection (found by its peer address) when a request starts and ends.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use dashmap::DashMap;
use parking_lot::Mutex;
use poem::http::uri::Scheme;
use poem::listener::Acceptor;
use poem::web::{LocalAddr, RemoteAddr};
use poem::{Endpoint, IntoResponse, Middleware, Request, Response};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

/// What one open connection is doing.
#[derive(Debug)]
struct Connection {
    /// Requests of it being answered.
    in_flight: AtomicUsize,
    /// When it last became idle (opened, or its last answer was given).
    idle_since: Mutex<Instant>,
}

/// The open connections and their bounds; shared by the acceptor and the middleware.
#[derive(Debug, Clone)]
pub struct Connections {
    open: Arc<AtomicUsize>,
    by_peer: Arc<DashMap<SocketAddr, Arc<Connection>>>,
    max: usize,
    idle: Duration,
}

impl Connections {
    pub fn new(max: usize, idle: Duration) -> Self {
        Self {
            open: Arc::new(AtomicUsize::new(0)),
            by_peer: Arc::new(DashMap::new()),
            max,
            idle,
        }
    }

    /// The acceptor that keeps these bounds around `inner`.
    pub fn acceptor<A>(&self, inner: A) -> BoundedAcceptor<A> {
        BoundedAcceptor {
            inner,
            connections: self.clone(),
        }
    }

    /// A request of the connection from `peer` starts; it ends when the guard drops.
    fn begin(&self, peer: Option<SocketAddr>) -> Option<InFlight> {
        let connection = self.by_peer.get(&peer?)?.clone();
        connection.in_flight.fetch_add(1, Ordering::AcqRel);
        Some(InFlight(connection))
    }
}

/// A request being answered.
struct InFlight(Arc<Connection>);

impl Drop for InFlight {
    fn drop(&mut self) {
        *self.0.idle_since.lock() = Instant::now();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The acceptor: refuses connections over the bound, times the others.
#[derive(Debug)]
pub struct BoundedAcceptor<A> {
    inner: A,
    connections: Connections,
}

impl<A: Acceptor<Io = TcpStream>> Acceptor for BoundedAcceptor<A> {
    type Io = TimedStream;

    fn local_addr(&self) -> Vec<LocalAddr> {
        self.inner.local_addr()
    }

    async fn accept(&mut self) -> io::Result<(Self::Io, LocalAddr, RemoteAddr, Scheme)> {
        loop {
            let (socket, local, remote, scheme) = self.inner.accept().await?;
            let connections = &self.connections;
            if connections.open.fetch_add(1, Ordering::AcqRel) >= connections.max {
                connections.open.fetch_sub(1, Ordering::AcqRel);
                tokio::spawn(refuse(socket));
                continue;
            }
            let connection = Arc::new(Connection {
                in_flight: AtomicUsize::new(0),
                idle_since: Mutex::new(Instant::now()),
            });
            let peer = remote.as_socket_addr().copied();
            if let Some(peer) = peer {
                connections.by_peer.insert(peer, connection.clone());
            }
            let stream = TimedStream::new(socket, connection, peer, connections);
            return Ok((stream, local, remote, scheme));
        }
    }
}

/// Answer a connection over the bound with a 503 and close it.
async fn refuse(mut socket: TcpStream) {
    const BODY: &str = r#"{"error":"too_many_connections","message":"this server has as many connections open as it accepts; retry in a moment"}"#;
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         retry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{BODY}",
        BODY.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = socket.write_all(answer.as_bytes()).await;
        let _ = socket.shutdown().await;
    })
    .await;
}

/// A socket that ends when it stays idle too long, or when its client stops reading what it
/// is sent for as long (a stalled reader of a stream is dropped rather than kept for ever).
pub struct TimedStream {
    inner: TcpStream,
    connection: Arc<Connection>,
    deadline: Pin<Box<Sleep>>,
    idle: Duration,
    /// Set while a write waits for the client to read; it fails when this passes.
    write_deadline: Option<Pin<Box<Sleep>>>,
    peer: Option<SocketAddr>,
    connections: Connections,
}

impl TimedStream {
    fn new(
        inner: TcpStream,
        connection: Arc<Connection>,
        peer: Option<SocketAddr>,
        connections: &Connections,
    ) -> Self {
        Self {
            inner,
            connection,
            deadline: Box::pin(tokio::time::sleep(connections.idle)),
            idle: connections.idle,
            write_deadline: None,
            peer,
            connections: connections.clone(),
        }
    }

    /// A write's result, unless it has waited for the client longer than the idle bound.
    fn unless_stalled(
        &mut self,
        cx: &mut Context<'_>,
        written: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        if written.is_ready() {
            self.write_deadline = None;
            return written;
        }
        let idle = self.idle;
        let deadline = self
            .write_deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
        if deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client stopped reading",
            )));
        }
        Poll::Pending
    }
}

impl std::fmt::Debug for TimedStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TimedStream")
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

impl Drop for TimedStream {
    fn drop(&mut self) {
        self.connections.open.fetch_sub(1, Ordering::AcqRel);
        if let Some(peer) = self.peer {
            self.connections
                .by_peer
                .remove_if(&peer, |_, c| Arc::ptr_eq(c, &self.connection));
        }
    }
}

impl AsyncRead for TimedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.connection.in_flight.load(Ordering::Acquire) == 0 {
            let due = *this.connection.idle_since.lock() + this.idle;
            if this.deadline.deadline() != due {
                this.deadline.as_mut().reset(due);
            }
            if this.deadline.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no request within the idle timeout",
                )));
            }
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for TimedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.unless_stalled(cx, written)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.unless_stalled(cx, written)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The middleware that marks a connection busy while one of its requests is answered, and
/// refuses a declared body over the limit at once (413).
#[derive(Debug, Clone)]
pub struct TrackRequests(pub Connections);

impl<E: Endpoint> Middleware<E> for TrackRequests {
    type Output = TrackRequestsEndpoint<E>;

    fn transform(&self, inner: E) -> Self::Output {
        TrackRequestsEndpoint {
            inner,
            connections: self.0.clone(),
        }
    }
}

#[derive(Debug)]
pub struct TrackRequestsEndpoint<E> {
    inner: E,
    connections: Connections,
}

impl<E: Endpoint> Endpoint for TrackRequestsEndpoint<E> {
    type Output = Response;

    async fn call(&self, request: Request) -> poem::Result<Self::Output> {
        // A body declared larger than any accepted is refused before a byte of it is read.
        let declared = request
            .header(poem::http::header::CONTENT_LENGTH)
            .and_then(|length| length.parse::<u64>().ok());
        if declared.is_some_and(|length| length > crate::body::MAX_BODY_BYTES as u64) {
            let mut response = crate::error::ApiError::payload_too_large().into_response();
            response.headers_mut().insert(
                poem::http::header::CONNECTION,
                poem::http::HeaderValue::from_static("close"),
            );
            return Ok(response);
        }
        let in_flight = self
            .connections
            .begin(request.remote_addr().as_socket_addr().copied());
        let response = self.inner.call(request).await?.into_response();
        Ok(match in_flight {
            Some(busy) if is_stream(&response) => busy_while_streaming(response, busy),
            _ => response,
        })
    }
}

/// Whether the answer is a stream that goes on after its head (Server-Sent Events).
fn is_stream(response: &Response) -> bool {
    response
        .content_type()
        .is_some_and(|t| t.starts_with("text/event-stream"))
}

/// The answer with its connection kept busy until its body ends: a stream is still being
/// answered, so the idle bound must not cut it.
fn busy_while_streaming(response: Response, busy: InFlight) -> Response {
    use futures_util::StreamExt;
    let (parts, body) = response.into_parts();
    let body = body.into_bytes_stream().map(move |chunk| {
        let _still_answering = &busy;
        chunk
    });
    Response::from_parts(parts, poem::Body::from_bytes_stream(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client that stops reading is dropped once the server has waited the idle bound to
    /// write to it (what a stalled reader of a stream meets), not kept for ever.
    #[tokio::test]
    async fn a_client_that_stops_reading_is_dropped_after_the_idle_bound() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let _client_that_never_reads = TcpStream::connect(address).await.expect("connect");
        let (socket, peer) = listener.accept().await.expect("accept");
        let connections = Connections::new(10, Duration::from_millis(300));
        let connection = Arc::new(Connection {
            in_flight: AtomicUsize::new(1),
            idle_since: Mutex::new(Instant::now()),
        });
        let mut stream = TimedStream::new(socket, connection, Some(peer), &connections);
        let chunk = vec![7u8; 64 * 1024];
        let started = Instant::now();
        let mut written = 0usize;
        let error = loop {
            match tokio::time::timeout(Duration::from_secs(20), stream.write_all(&chunk)).await {
                Ok(Ok(())) => written += chunk.len(),
                Ok(Err(e)) => break e,
                Err(_) => panic!("a stalled write was never given up ({written} bytes written)"),
            }
        };
        assert_eq!(error.kind(), io::ErrorKind::TimedOut, "{error}");
        assert!(written > 0, "the socket's buffers took something first");
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
