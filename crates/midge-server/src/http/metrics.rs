//! `GET /metrics`: the broker's figures for Prometheus (`crate::metrics`, docs/metrics.md).
//!
//! It takes a bearer token of the listener's `http_tokens`, as the operator's endpoints do (a
//! scrape shows every client's traffic in sum; Prometheus sends a token with its scrape
//! config's `authorization` or `bearer_token_file`). With `metrics_anonymous = true` a request
//! without an `Authorization` header is answered too; one with a wrong token still is not.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::{admin, Api};
use crate::metrics::{exposition, process, render, Scrape};

/// `GET /metrics`.
pub(super) async fn metrics(State(api): State<Arc<Api>>, headers: HeaderMap) -> Result<Response, ApiError> {
    let anonymous = api.http.metrics_anonymous && !headers.contains_key(header::AUTHORIZATION);
    if !anonymous {
        admin::operator(&api, &headers)?;
    }
    let source = Arc::clone(&api.http.metrics);
    let mut sample = crate::sys::sample(&api.context.broker, source.store(), source.started()).await;
    sample.cluster = api.context.cluster.as_ref().map(|cluster| cluster.sample());
    // The listeners' counters take their locks briefly; `/proc/self/fd` has an entry per socket.
    let read = move || (source.listeners(), process::sample());
    let (listeners, process) =
        tokio::task::spawn_blocking(read).await.map_err(|_| ApiError::unavailable("the broker is shutting down"))?;
    let body = render(&Scrape { sample, listeners, process });
    Ok(([(header::CONTENT_TYPE, exposition::CONTENT_TYPE)], body).into_response())
}
