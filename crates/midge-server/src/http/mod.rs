//! The HTTP API of a `protocol = "http"` listener (docs/http-api.md): publish, subscribe as
//! server-sent events, health and readiness. HTTPS with the listener's TLS keys.
//!
//! Its clients go through the broker core as MQTT clients do: a publish is a short-lived MQTT 5
//! connection of the core (`ClientConnection`) that publishes once and is answered when the core
//! acknowledges it (after the store's commit for QoS 1 and 2); a subscriber is a session of the
//! core for as long as its event stream lasts (longer, with a session expiry), drained through an
//! `Egress` into the stream, so its queue, bounds, pacing and slow-consumer policy are an MQTT
//! subscriber's. Who a request is (a bearer token, Basic credentials for the listener's
//! authenticator, or anonymous) and what it may do (the listener's ACL) are decided as for an
//! MQTT client.
//!
//! Connections are accepted by the listener's accept loop (`crate::listener`) under its
//! `max_connections` and the shared gate, and each is served here by hyper's HTTP/1.1 server
//! with axum's router.
//!
//! # Layout
//! - `error`: the JSON errors every failure is answered with.
//! - `caller`: the `Authorization` header: a bearer token, Basic credentials, or none.
//! - `client`: a request's client of the core: a `ClientConnection` connected as an MQTT 5
//!   client, authenticated as the caller.
//! - `publish`: `POST /api/v1/publish`.
//! - `subscribe`: `GET /api/v1/subscribe`, server-sent events; `events` formats them and keeps
//!   each session's event ids for `Last-Event-ID`.
//! - `admin`: the operator's endpoints (bearer tokens only): clients, sessions, subscriptions,
//!   retained messages, counters, a reload of the config.
//! - `health`: `/healthz` and `/readyz`.
//! - `console`: the web console at `/`, its files built into the binary.
//! - `metrics`: `/metrics`, for Prometheus (`crate::metrics` writes it).

mod admin;
mod caller;
mod client;
mod console;
mod error;
mod events;
mod health;
mod metrics;
mod publish;
mod subscribe;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::routing::{delete, get, post};
use axum::Router;
use tokio::net::TcpStream;
use tracing::debug;

use crate::config::ListenerConfig;
use crate::conn::ListenerContext;
use crate::tls::TlsListener;
use error::ApiError;
use events::ResumeTable;

/// Whether the server is ready to serve: every listener accepting, and not shutting down (the
/// store is opened before any listener accepts). `/readyz` reads it.
#[derive(Debug, Default)]
pub struct Readiness {
    up: AtomicBool,
}

impl Readiness {
    /// Marks the server ready (every listener accepting) or not (shutting down).
    pub fn set(&self, up: bool) {
        self.up.store(up, Ordering::Release);
    }

    /// Whether the server is ready.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }
}

/// An HTTP listener's own state, shared by its connections.
#[derive(Debug)]
pub(crate) struct HttpListener {
    /// Its place in the config, from 1.
    index: usize,
    /// The bearer tokens it takes and the user name each stands for (`http_tokens`).
    tokens: Vec<(Vec<u8>, Arc<str>)>,
    /// Whether `/metrics` answers requests without credentials (`metrics_anonymous`).
    metrics_anonymous: bool,
    /// What `/metrics` reads beyond the broker: the store, the listeners.
    metrics: Arc<crate::metrics::Source>,
    /// Whether the server is ready (`/readyz`).
    readiness: Arc<Readiness>,
    /// Where `POST /api/v1/reload` asks for a reload; `None`: it answers 503.
    reload: Option<crate::server::ReloadRequests>,
    /// Each persistent subscriber's event ids and last events, for `Last-Event-ID`; kept across
    /// reloads.
    resume: Arc<ResumeTable>,
}

impl HttpListener {
    /// The state of listener `index` with `config`; `/metrics` reads `metrics`.
    pub(crate) fn new(
        index: usize,
        config: &ListenerConfig,
        readiness: Arc<Readiness>,
        metrics: Arc<crate::metrics::Source>,
        reload: Option<crate::server::ReloadRequests>,
    ) -> Self {
        let tokens = config
            .http_tokens
            .iter()
            .flatten()
            .map(|(user, token)| (token.as_bytes().to_vec(), Arc::from(user.as_str())))
            .collect();
        let metrics_anonymous = config.metrics_anonymous;
        Self { index, tokens, metrics_anonymous, metrics, readiness, reload, resume: Arc::default() }
    }

    /// The same listener with these settings, keeping `previous`'s subscribers' event ids (after
    /// a reload), so a reader resumes across it.
    pub(crate) fn keeping_resume(mut self, previous: Option<&Self>) -> Self {
        if let Some(previous) = previous {
            self.resume = Arc::clone(&previous.resume);
        }
        self
    }

    /// The user `token` stands for, if it is one of the listener's (compared in constant time).
    pub(crate) fn user_of(&self, token: &str) -> Option<Arc<str>> {
        use subtle::ConstantTimeEq;
        self.tokens
            .iter()
            .find(|(known, _)| bool::from(known.as_slice().ct_eq(token.as_bytes())))
            .map(|(_, user)| user.clone())
    }
}

/// What one HTTP connection's requests are served with.
#[derive(Debug)]
struct Api {
    http: Arc<HttpListener>,
    context: Arc<ListenerContext>,
    /// The client's address, for logs and authentication backends.
    peer: SocketAddr,
}

/// Serves one HTTP connection to its end: the TLS handshake first on an HTTPS listener (within
/// the connect timeout), then HTTP/1.1 requests until the client closes, or the server shuts
/// down (a request in progress is finished first; an event stream ends when the broker's
/// shutdown ends its session).
pub(crate) async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<Arc<TlsListener>>,
    http: Arc<HttpListener>,
    context: Arc<ListenerContext>,
) {
    let timeout = context.broker.limits().connect_timeout();
    let api = Arc::new(Api { http, context: Arc::clone(&context), peer });
    match tls {
        None => serve_http(stream, api, timeout).await,
        Some(tls) => match tokio::time::timeout(timeout, tls.acceptor().accept(stream)).await {
            Ok(Ok(stream)) => serve_http(stream, api, timeout).await,
            Ok(Err(error)) => {
                tls.handshake_failed();
                debug!(%peer, %error, "TLS handshake failed");
            }
            Err(_) => {
                tls.handshake_failed();
                debug!(%peer, "TLS handshake not finished within the connect timeout");
            }
        },
    }
}

/// HTTP/1.1 over `io` until it ends. A request's headers must arrive within `timeout` (the
/// connect timeout), so a client that opens a connection and stays silent holds it that long.
async fn serve_http<I>(io: I, api: Arc<Api>, timeout: std::time::Duration)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut shutdown = api.context.shutdown.clone();
    if *shutdown.borrow() {
        return;
    }
    let peer = api.peer;
    let service = hyper_util::service::TowerToHyperService::new(router(api));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(timeout);
    let connection = builder.serve_connection(hyper_util::rt::TokioIo::new(io), service);
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        _ = shutdown.changed() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = result {
        debug!(%peer, %error, "http connection ended with an error");
    }
}

/// The routes.
fn router(api: Arc<Api>) -> Router {
    Router::new()
        .route("/healthz", get(health::alive))
        .route("/readyz", get(health::ready))
        .route("/", get(console::index))
        .route("/console/:file", get(console::asset))
        .route("/api/v1/publish", post(publish::publish))
        .route("/api/v1/subscribe", get(subscribe::subscribe))
        .route("/api/v1/clients", get(admin::clients))
        .route("/api/v1/clients/*client_id", get(admin::client).delete(admin::kick))
        .route("/api/v1/sessions", get(admin::sessions))
        .route("/api/v1/subscriptions", get(admin::subscriptions))
        .route("/api/v1/retained", get(admin::retained_list))
        .route("/api/v1/retained/*topic", get(admin::retained_get).merge(delete(admin::retained_delete)))
        .route("/api/v1/stats", get(admin::stats))
        .route("/api/v1/cluster", get(admin::cluster))
        .route("/api/v1/cluster/clients/*client_id", get(admin::cluster_client))
        .route("/api/v1/reload", post(admin::reload))
        .route("/metrics", get(metrics::metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(api)
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!("no such endpoint: {}", uri.path()))
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not allowed on {}", uri.path()),
    )
}

#[cfg(test)]
mod tests {
    /// docs/openapi.yaml describes every endpoint the router serves.
    #[test]
    fn the_openapi_description_names_every_endpoint() {
        let openapi = include_str!("../../../../docs/openapi.yaml");
        for path in [
            "/healthz:",
            "/readyz:",
            "/api/v1/publish:",
            "/api/v1/subscribe:",
            "/api/v1/clients:",
            "/api/v1/clients/{client_id}:",
            "/api/v1/sessions:",
            "/api/v1/subscriptions:",
            "/api/v1/retained:",
            "/api/v1/retained/{topic}:",
            "/api/v1/stats:",
            "/api/v1/reload:",
            "/metrics:",
        ] {
            assert!(openapi.contains(&format!("  {path}\n")), "{path} is not in docs/openapi.yaml");
        }
    }
}
