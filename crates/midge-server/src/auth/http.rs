//! An HTTP service decides who may connect (`[listener.http_auth]`), as the core's
//! [`Authenticator`].
//!
//! For each client with credentials the broker POSTs JSON to `url`:
//!
//! ```json
//! {"clientid": "sensor-7", "username": "alice", "password": "secret", "peer": "10.0.0.5:51234",
//!  "certificate_subject": "CN=sensor-7,O=Example"}
//! ```
//!
//! A 2xx answer allows the client; its body may name the filters the client may publish and
//! subscribe to (`{"publish": ["a/#"], "subscribe": ["b/+"]}`), which limit it on top of the
//! listener's ACL. A 4xx answer refuses it (Bad User Name or Password). Anything else (another
//! status, no answer within `timeout_ms`, a service that cannot be reached) refuses it with
//! Server Unavailable: the broker fails closed.
//!
//! With `acl_url`, a second service answers what an allowed client may do: the broker POSTs
//! `{"clientid": …, "username": …}` to it, and a 2xx answer's `publish` and `subscribe` filters
//! are the client's rights (an empty or missing list: none of that kind); a 4xx answer gives it
//! none at all; anything else refuses the connection with Server Unavailable.
//!
//! Rights are asked for once, at connect, not per message: the authorization port is checked on
//! the message path and must answer at once, so a per-topic HTTP call would stall deliveries.
//! The filters the services give do that job instead.
//!
//! Calls are bounded: at most `max_in_flight` at once (others wait, within the connect timeout),
//! and answers are cached for `cache_seconds`, at most `cache_entries` of them (keyed by client
//! id, user name and a SHA-256 of the password: the cache holds no password), so a reconnect
//! storm of the same clients costs the service nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use midge_broker::ports::auth::{Authenticator, Credentials, Decision, Grants, Identity, Verdict};
use midge_codec::ReasonCode;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

/// `[listener.http_auth]`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HttpAuthConfig {
    /// Where to POST the credentials (`http://`).
    pub url: String,
    /// Where to ask what an allowed client may do (`http://`); none: the `url`'s answer alone.
    pub acl_url: Option<String>,
    /// How long an answer may take. Default 2,000 ms.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// How long an answer is kept. Default 60 s; 0 keeps none.
    #[serde(default = "default_cache_seconds")]
    pub cache_seconds: u64,
    /// Most answers kept (then the cache starts over). Default 10,000.
    #[serde(default = "default_cache_entries")]
    pub cache_entries: usize,
    /// Most calls in flight at once. Default 64.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
}

fn default_timeout_ms() -> u64 {
    2_000
}

fn default_cache_seconds() -> u64 {
    60
}

fn default_cache_entries() -> usize {
    10_000
}

fn default_max_in_flight() -> usize {
    64
}

/// Why `[listener.http_auth]` cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum HttpAuthError {
    /// The URL is not an `http://` URL.
    #[error("[listener.http_auth] url {url:?}: {problem}")]
    Url {
        /// The URL as written.
        url: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A bound is zero.
    #[error("[listener.http_auth] {key} must be at least 1")]
    Zero {
        /// The key.
        key: &'static str,
    },
}

/// The HTTP backend.
pub struct HttpAuthenticator {
    inner: Arc<Inner>,
}

struct Inner {
    config: HttpAuthConfig,
    uri: hyper::Uri,
    acl_uri: Option<hyper::Uri>,
    client: Client<HttpConnector, Full<Bytes>>,
    in_flight: Semaphore,
    cache: Mutex<HashMap<[u8; 32], (Instant, Verdict)>>,
}

impl std::fmt::Debug for HttpAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpAuthenticator").field("url", &self.inner.config.url).finish_non_exhaustive()
    }
}

/// The body of a 2xx answer (every field optional).
#[derive(Debug, Default, Deserialize)]
struct Allowed {
    publish: Option<Vec<String>>,
    subscribe: Option<Vec<String>>,
}

impl HttpAuthenticator {
    /// Checks `config` and builds the client (no connection is made yet).
    pub fn new(config: &HttpAuthConfig) -> Result<Self, HttpAuthError> {
        let uri = http_uri(&config.url)?;
        let acl_uri = config.acl_url.as_deref().map(http_uri).transpose()?;
        for (key, value) in [("max_in_flight", config.max_in_flight), ("cache_entries", config.cache_entries)] {
            if value == 0 {
                return Err(HttpAuthError::Zero { key });
            }
        }
        if config.timeout_ms == 0 {
            return Err(HttpAuthError::Zero { key: "timeout_ms" });
        }
        let client = Client::builder(TokioExecutor::new()).build_http();
        let inner = Inner {
            config: config.clone(),
            uri,
            acl_uri,
            client,
            in_flight: Semaphore::new(config.max_in_flight),
            cache: Mutex::new(HashMap::new()),
        };
        Ok(Self { inner: Arc::new(inner) })
    }
}

impl Authenticator for HttpAuthenticator {
    fn authenticate(&self, credentials: &Credentials<'_>) -> Decision {
        let key = cache_key(credentials);
        if let Some(verdict) = self.inner.cached(&key) {
            return Decision::Now(verdict);
        }
        let body = serde_json::json!({
            "clientid": credentials.client_id,
            "username": credentials.username,
            "password": credentials.password.map(String::from_utf8_lossy),
            "peer": credentials.peer,
            "certificate_subject": credentials.certificate_subject,
        })
        .to_string();
        let acl_body = serde_json::json!({
            "clientid": credentials.client_id,
            "username": credentials.username,
        })
        .to_string();
        let inner = Arc::clone(&self.inner);
        let client_id = credentials.client_id.to_owned();
        let username: Option<Arc<str>> = credentials.username.map(Arc::from);
        Decision::Later(Box::pin(async move {
            let mut verdict = inner.ask(body).await;
            if let (Verdict::Allow(_), Some(acl_uri)) = (&verdict, &inner.acl_uri) {
                verdict = inner.rights(acl_uri, acl_body).await;
            }
            if let Verdict::Allow(identity) = &mut verdict {
                identity.username = username;
            }
            match &verdict {
                Verdict::Allow(_) => tracing::debug!(%client_id, url = %inner.config.url, "http_auth: allowed"),
                Verdict::Deny { detail, .. } => {
                    tracing::info!(%client_id, url = %inner.config.url, %detail, "http_auth: refused")
                }
            }
            // Failures of the service itself are not cached: the next attempt asks again.
            let service_failed =
                matches!(&verdict, Verdict::Deny { reason, .. } if *reason == ReasonCode::SERVER_UNAVAILABLE);
            if !service_failed {
                inner.remember(key, verdict.clone());
            }
            verdict
        }))
    }
}

impl Inner {
    fn cached(&self, key: &[u8; 32]) -> Option<Verdict> {
        let cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        let (at, verdict) = cache.get(key)?;
        (at.elapsed() < Duration::from_secs(self.config.cache_seconds)).then(|| verdict.clone())
    }

    fn remember(&self, key: [u8; 32], verdict: Verdict) {
        if self.config.cache_seconds == 0 {
            return;
        }
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= self.config.cache_entries {
            cache.clear(); // bounded: start over rather than track ages
        }
        cache.insert(key, (Instant::now(), verdict));
    }

    /// POSTs `body` to `uri` within the timeout and the in-flight bound; the status and body,
    /// or the refusal a failing service gives.
    async fn post(&self, uri: &hyper::Uri, body: String) -> Result<(hyper::StatusCode, Bytes), Verdict> {
        let unavailable =
            |detail: String| Verdict::Deny { reason: ReasonCode::SERVER_UNAVAILABLE, detail: detail.into() };
        let timeout = Duration::from_millis(self.config.timeout_ms);
        let call = async {
            let _permit = self.in_flight.acquire().await.map_err(|e| e.to_string())?;
            let request = Request::post(uri.clone())
                .header(hyper::header::CONTENT_TYPE, "application/json")
                .body(Full::new(Bytes::from(body)))
                .map_err(|e| e.to_string())?;
            let response = self.client.request(request).await.map_err(|e| e.to_string())?;
            let status = response.status();
            let bytes = response.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
            Ok::<_, String>((status, bytes))
        };
        match tokio::time::timeout(timeout, call).await {
            Err(_) => Err(unavailable(format!("no answer from {uri} within {} ms", self.config.timeout_ms))),
            Ok(Err(error)) => Err(unavailable(format!("the service at {uri} failed: {error}"))),
            Ok(Ok(answer)) => Ok(answer),
        }
    }

    /// What the `acl_url` service says an allowed client may do.
    async fn rights(&self, uri: &hyper::Uri, body: String) -> Verdict {
        let (status, bytes) = match self.post(uri, body).await {
            Ok(answer) => answer,
            Err(refusal) => return refusal,
        };
        let grants = if status.is_success() {
            let allowed: Allowed = serde_json::from_slice(&bytes).unwrap_or_default();
            Grants { publish: allowed.publish.unwrap_or_default(), subscribe: allowed.subscribe.unwrap_or_default() }
        } else if status.is_client_error() {
            Grants::default() // no rights at all
        } else {
            return Verdict::Deny {
                reason: ReasonCode::SERVER_UNAVAILABLE,
                detail: format!("the ACL service said {status}").into(),
            };
        };
        Verdict::Allow(Identity { username: None, grants: Some(Arc::new(grants)) })
    }

    /// POSTs the credentials and reads the verdict.
    async fn ask(&self, body: String) -> Verdict {
        let unavailable =
            |detail: String| Verdict::Deny { reason: ReasonCode::SERVER_UNAVAILABLE, detail: detail.into() };
        let (status, bytes) = match self.post(&self.uri, body).await {
            Ok(answer) => answer,
            Err(refusal) => return refusal,
        };
        if status.is_success() {
            let allowed: Allowed = serde_json::from_slice(&bytes).unwrap_or_default();
            let grants = (allowed.publish.is_some() || allowed.subscribe.is_some()).then(|| {
                Arc::new(Grants {
                    publish: allowed.publish.unwrap_or_default(),
                    subscribe: allowed.subscribe.unwrap_or_default(),
                })
            });
            return Verdict::Allow(Identity { username: None, grants });
        }
        if status.is_client_error() {
            return Verdict::Deny {
                reason: ReasonCode::BAD_USER_NAME_OR_PASSWORD,
                detail: format!("the service said {status}").into(),
            };
        }
        unavailable(format!("the service said {status}"))
    }
}

/// The cache's key: client id, user name and password, hashed together (the cache holds no
/// password).
fn cache_key(credentials: &Credentials<'_>) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for part in [
        credentials.client_id.as_bytes(),
        credentials.username.unwrap_or_default().as_bytes(),
        credentials.password.unwrap_or_default(),
    ] {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    hasher.finalize().into()
}

/// An `http://` URL of a service beside the broker.
fn http_uri(url: &str) -> Result<hyper::Uri, HttpAuthError> {
    let bad = |problem: &str| HttpAuthError::Url { url: url.to_owned(), problem: problem.to_owned() };
    let uri: hyper::Uri = url.parse().map_err(|e: hyper::http::uri::InvalidUri| bad(&e.to_string()))?;
    if uri.scheme_str() != Some("http") || uri.host().is_none() {
        return Err(bad("must be http://HOST[:PORT]/PATH (the service runs beside the broker)"));
    }
    Ok(uri)
}
