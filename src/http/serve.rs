//! Serving connections: at most so many at once, and each closed when it
//! is slower to say what it wants than the settings allow. Without this a
//! client that opens connections and sends nothing, or a request a byte at
//! a time, holds them for as long as it likes.
//!
//! hyper's own header timeout is not used: it also runs while a kept-alive
//! connection waits for its next request, so one number would bound both,
//! and a proxy that pools connections needs the idle wait long and the
//! header wait short.
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::CONNECTION;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use futures_util::StreamExt;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify, Semaphore};
use tokio::time::Instant;
use tower::ServiceExt;

use super::limits::is_api;
use super::{console, ApiError, BODY_LIMIT_BYTES};
use crate::config::ConnectionArgs;

/// How many connections may be open, and how long each may take to send a
/// request's head or to send nothing at all.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: u32,
}

impl From<&ConnectionArgs> for ConnectionLimits {
    fn from(args: &ConnectionArgs) -> Self {
        Self {
            header_read_timeout: args.header_read_timeout(),
            idle_timeout: args.idle_timeout(),
            max_connections: args.max_connections,
        }
    }
}

/// Serves `router` on `listener` until `shutdown` completes, then lets the
/// open connections finish their requests. At the cap, new connections
/// wait in the listen backlog, not refused: they are served as soon as the
/// timeouts close the slow ones.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let max = limits.max_connections.max(1);
    let open = Arc::new(Semaphore::new(max as usize));
    let (stop, stopping) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = open.clone().acquire_owned() => permit.map_err(io::Error::other)?,
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    accept_failed(err).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let (router, stopping) = (router.clone(), stopping.clone());
        tokio::spawn(async move {
            connection(stream, peer, router, limits, stopping).await;
            drop(permit);
        });
    }
    drop(listener);
    stop.send_replace(true);
    // Each connection gives its permit back as it closes.
    let _ = open.acquire_many(max).await;
    Ok(())
}

/// A connection that went away before it was accepted is nobody's
/// concern; anything else (no file descriptors left) is logged and waited
/// out rather than retried in a busy loop.
async fn accept_failed(err: io::Error) {
    use io::ErrorKind as K;
    if matches!(
        err.kind(),
        K::ConnectionAborted | K::ConnectionRefused | K::ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %err, "accepting a connection failed");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// Serves one connection's requests until it closes, its client is too
/// slow, or the server stops.
async fn connection<IO>(
    io: IO,
    peer: SocketAddr,
    router: Router,
    limits: ConnectionLimits,
    mut stopping: watch::Receiver<bool>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let pace = Arc::new(Pace::new());
    let io = TokioIo::new(Watched {
        io,
        pace: pace.clone(),
    });
    let service = {
        let pace = pace.clone();
        tower::service_fn(move |mut req: hyper::Request<Incoming>| {
            let request = pace.request_started();
            req.extensions_mut().insert(ConnectInfo(peer));
            let router = router.clone();
            async move {
                let response = router.oneshot(req).await?;
                Ok::<_, Infallible>(response.map(|body| Answering {
                    body,
                    _request: request,
                }))
            }
        })
    };
    let conn = http1::Builder::new().serve_connection(io, TowerToHyperService::new(service));
    tokio::pin!(conn);
    let mut closing = false;
    loop {
        tokio::select! {
            ended = conn.as_mut() => {
                if let Err(err) = ended {
                    tracing::debug!(error = %err, %peer, "a connection ended with an error");
                }
                return;
            }
            overdue = pace.overdue(&limits, !closing) => match overdue {
                // Dropped, so closed: there is no request to finish.
                Overdue::Header => {
                    tracing::debug!(%peer, "closing a connection whose request was too slow to arrive");
                    return;
                }
                // Gracefully: a request that arrives at this very moment is
                // still answered.
                Overdue::Idle => {
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
            },
            _ = stopping.wait_for(|stop| *stop), if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
        }
    }
}

/// Where a connection is between its requests, for the timeouts.
struct Pace {
    phase: Mutex<Phase>,
    changed: Notify,
}

struct Phase {
    /// Requests handed to the router whose responses are not yet written.
    busy: usize,
    /// Whether any request was handed over: the first must arrive within
    /// the header timeout of the connection's opening.
    served: bool,
    /// Since when the connection waits for a request.
    waiting_since: Instant,
    /// When the first byte of the awaited request arrived.
    first_byte: Option<Instant>,
}

#[derive(Debug, PartialEq, Eq)]
enum Overdue {
    /// A request began and did not arrive in time, or none came on a new
    /// connection.
    Header,
    /// A kept-alive connection has waited for a next request long enough.
    Idle,
}

impl Pace {
    fn new() -> Self {
        Self {
            phase: Mutex::new(Phase {
                busy: 0,
                served: false,
                waiting_since: Instant::now(),
                first_byte: None,
            }),
            changed: Notify::new(),
        }
    }

    /// The phase is plain data, consistent after any panic.
    fn phase(&self) -> MutexGuard<'_, Phase> {
        self.phase.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn received(&self, bytes: usize) {
        if bytes == 0 {
            return;
        }
        let mut phase = self.phase();
        if phase.busy == 0 && phase.first_byte.is_none() {
            phase.first_byte = Some(Instant::now());
            drop(phase);
            self.changed.notify_one();
        }
    }

    fn request_started(self: &Arc<Self>) -> InFlight {
        let mut phase = self.phase();
        phase.busy += 1;
        phase.served = true;
        phase.first_byte = None;
        InFlight(self.clone())
    }

    fn request_done(&self) {
        let mut phase = self.phase();
        phase.busy = phase.busy.saturating_sub(1);
        if phase.busy == 0 {
            phase.waiting_since = Instant::now();
            phase.first_byte = None;
            drop(phase);
            self.changed.notify_one();
        }
    }

    /// When the connection will be overdue, and for what, if it is waiting
    /// for a request. With `idle` false an idle wait has no end: the
    /// connection was already asked to close.
    fn deadline(&self, limits: &ConnectionLimits, idle: bool) -> Option<(Instant, Overdue)> {
        let phase = self.phase();
        if phase.busy > 0 {
            return None;
        }
        match phase.first_byte {
            _ if !phase.served => Some((
                phase.waiting_since + limits.header_read_timeout,
                Overdue::Header,
            )),
            Some(first) => Some((first + limits.header_read_timeout, Overdue::Header)),
            None if idle => Some((phase.waiting_since + limits.idle_timeout, Overdue::Idle)),
            None => None,
        }
    }

    /// Completes when the connection is overdue.
    async fn overdue(&self, limits: &ConnectionLimits, idle: bool) -> Overdue {
        loop {
            // A change between reading the deadline and waiting leaves a
            // permit in `changed`, so it is never missed.
            match self.deadline(limits, idle) {
                Some((at, why)) if at <= Instant::now() => return why,
                Some((at, _)) => {
                    tokio::select! {
                        () = self.changed.notified() => {}
                        () = tokio::time::sleep_until(at) => {}
                    }
                }
                None => self.changed.notified().await,
            }
        }
    }
}

/// A request being answered; done when dropped.
struct InFlight(Arc<Pace>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_done();
    }
}

/// A response body that keeps its request in flight until hyper has
/// written all of it, or given up.
struct Answering {
    body: Body,
    _request: InFlight,
}

impl http_body::Body for Answering {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The connection's socket, telling `pace` when bytes arrive.
struct Watched<IO> {
    io: IO,
    pace: Arc<Pace>,
}

impl<IO: AsyncRead + Unpin> AsyncRead for Watched<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            self.pace.received(buf.filled().len() - before);
        }
        polled
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Watched<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// Reads a request's body in full before the handler runs, within
/// `timeout` of its head: otherwise a client that sends its body slowly
/// holds a connection and a task for as long as it likes. At most one
/// byte past the body limit is read; the extractors refuse such a body as
/// they always did.
pub async fn read_body_in_time(
    State(timeout): State<Duration>,
    req: Request,
    next: Next,
) -> Response {
    if http_body::Body::is_end_stream(req.body()) {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    match tokio::time::timeout(timeout, buffered(body)).await {
        Ok(body) => next.run(Request::from_parts(parts, body)).await,
        Err(_) => {
            let mut response = if is_api(parts.uri.path()) {
                ApiError::request_timeout().into_response()
            } else {
                console::too_slow_page()
            };
            // The rest of the body may still come: not worth reading.
            response
                .headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
            response
        }
    }
}

/// The body's bytes, up to one past the limit, or the error that cut it
/// short, for the extractors to answer.
async fn buffered(body: Body) -> Body {
    let mut chunks = body.into_data_stream();
    let mut bytes = Vec::new();
    while let Some(chunk) = chunks.next().await {
        match chunk {
            Ok(chunk) => {
                bytes.extend_from_slice(&chunk);
                if bytes.len() > BODY_LIMIT_BYTES {
                    break;
                }
            }
            Err(err) => {
                return Body::from_stream(futures_util::stream::once(async move {
                    Err::<Bytes, _>(err)
                }))
            }
        }
    }
    Body::from(bytes)
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;
    use axum::routing::{get, post};
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    use super::*;

    const LIMITS: ConnectionLimits = ConnectionLimits {
        header_read_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(75),
        max_connections: 8,
    };

    fn router() -> Router {
        Router::new()
            .route("/ok", get(|| async { "ok" }))
            .route("/v1/echo", post(|body: Bytes| async move { body }))
            .layer(axum::middleware::from_fn_with_state(
                Duration::from_secs(10),
                read_body_in_time,
            ))
    }

    /// A client end, and the server serving the other end.
    fn open() -> (DuplexStream, watch::Sender<bool>) {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let (stop, stopping) = watch::channel(false);
        let peer = "192.0.2.1:4000".parse().unwrap();
        tokio::spawn(connection(server, peer, router(), LIMITS, stopping));
        (client, stop)
    }

    /// Reads one response (they are short, and end their head and body in
    /// one write); `None` when the server closed the connection.
    async fn response(client: &mut DuplexStream) -> Option<String> {
        let mut buffer = vec![0; 4096];
        let n = client.read(&mut buffer).await.unwrap_or(0);
        (n > 0).then(|| String::from_utf8_lossy(&buffer[..n]).into_owned())
    }

    async fn closed(client: &mut DuplexStream) -> bool {
        let mut buffer = [0; 64];
        matches!(client.read(&mut buffer).await, Ok(0) | Err(_))
    }

    const GET_OK: &[u8] = b"GET /ok HTTP/1.1\r\nhost: authledger\r\n\r\n";

    #[tokio::test(start_paused = true)]
    async fn a_request_line_that_stops_halfway_is_cut_off_at_the_header_timeout() {
        let (mut client, _stop) = open();
        let opened = Instant::now();
        client.write_all(b"GET /ok HT").await.unwrap();
        assert!(closed(&mut client).await);
        assert_eq!(opened.elapsed(), LIMITS.header_read_timeout);
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_that_says_nothing_is_closed_at_the_header_timeout() {
        let (mut client, _stop) = open();
        let opened = Instant::now();
        assert!(closed(&mut client).await);
        assert_eq!(opened.elapsed(), LIMITS.header_read_timeout);
    }

    #[tokio::test(start_paused = true)]
    async fn a_kept_alive_connection_waits_the_idle_timeout_not_the_header_timeout() {
        let (mut client, _stop) = open();
        client.write_all(GET_OK).await.unwrap();
        let first = response(&mut client).await.unwrap();
        assert!(first.starts_with("HTTP/1.1 200"), "{first}");

        tokio::time::sleep(LIMITS.header_read_timeout * 3).await;
        client.write_all(GET_OK).await.unwrap();
        let second = response(&mut client).await.unwrap();
        assert!(second.starts_with("HTTP/1.1 200"), "{second}");

        let answered = Instant::now();
        assert!(closed(&mut client).await);
        assert_eq!(answered.elapsed(), LIMITS.idle_timeout);
    }

    #[tokio::test(start_paused = true)]
    async fn a_second_request_that_stops_halfway_is_cut_off_at_the_header_timeout() {
        let (mut client, _stop) = open();
        client.write_all(GET_OK).await.unwrap();
        response(&mut client).await.unwrap();
        tokio::time::sleep(Duration::from_secs(30)).await;
        let began = Instant::now();
        client.write_all(b"GET /o").await.unwrap();
        assert!(closed(&mut client).await);
        assert_eq!(began.elapsed(), LIMITS.header_read_timeout);
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_does_not_arrive_in_time_is_answered_408_and_the_connection_closed() {
        let (mut client, _stop) = open();
        client
            .write_all(
                b"POST /v1/echo HTTP/1.1\r\nhost: authledger\r\ncontent-length: 10\r\n\r\nab",
            )
            .await
            .unwrap();
        let began = Instant::now();
        let answer = response(&mut client).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("request-timeout"), "{answer}");
        assert_eq!(began.elapsed(), Duration::from_secs(10));
        assert!(closed(&mut client).await);
    }

    #[tokio::test(start_paused = true)]
    async fn a_whole_body_reaches_the_handler() {
        let (mut client, _stop) = open();
        client
            .write_all(
                b"POST /v1/echo HTTP/1.1\r\nhost: authledger\r\ncontent-length: 5\r\n\r\nhello",
            )
            .await
            .unwrap();
        let answer = response(&mut client).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("hello"), "{answer}");
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_still_refused_by_its_extractor() {
        let oversized = vec![b'a'; BODY_LIMIT_BYTES + 100];
        let request = Request::post("/v1/echo")
            .body(Body::from(oversized))
            .unwrap();
        let response = router()
            .layer(axum::extract::DefaultBodyLimit::max(BODY_LIMIT_BYTES))
            .oneshot(request)
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[tokio::test(start_paused = true)]
    async fn stopping_closes_an_idle_connection_and_lets_a_request_finish() {
        let (mut client, stop) = open();
        client.write_all(GET_OK).await.unwrap();
        response(&mut client).await.unwrap();
        let asked = Instant::now();
        stop.send_replace(true);
        assert!(closed(&mut client).await);
        assert!(asked.elapsed() < LIMITS.header_read_timeout);
    }
}
