//! `/healthz` (the process answers) and `/readyz` (it serves: every listener accepting, the
//! store open, not shutting down), for a supervisor or a load balancer. Neither needs
//! credentials: they say nothing about clients or messages.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;

use super::error::ApiError;
use super::Api;

/// Alive: answers while the process runs.
pub(super) async fn alive() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "alive" }))
}

/// Ready: 200 once every listener accepts (the store is opened before any does), 503 before
/// and from the moment shutdown begins.
pub(super) async fn ready(State(api): State<Arc<Api>>) -> Result<Json<serde_json::Value>, ApiError> {
    if *api.context.shutdown.borrow() || !api.http.readiness.is_up() {
        return Err(ApiError::unavailable("not ready: starting or shutting down"));
    }
    Ok(Json(serde_json::json!({
        "status": "ready",
        "persistence": api.context.store.is_some(),
        "listener": api.http.index,
    })))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::http::StatusCode;
    use axum::response::IntoResponse;

    use super::*;
    use crate::config::default_listener;
    use crate::http::{HttpListener, Readiness};
    use crate::metrics::Source;
    use crate::test_support::listener_context;

    async fn status(api: &Arc<Api>) -> StatusCode {
        ready(State(Arc::clone(api))).await.into_response().status()
    }

    #[tokio::test]
    async fn ready_once_every_listener_accepts_and_until_shutdown_begins() {
        let (context, shutdown) = listener_context();
        let readiness = Arc::new(Readiness::default());
        let http = Arc::new(HttpListener::new(
            1,
            &default_listener(0),
            Arc::clone(&readiness),
            Arc::new(Source::new(None)),
            None,
        ));
        let api = Arc::new(Api { http, context: Arc::new(context), peer: ([127, 0, 0, 1], 1).into() });
        assert_eq!(status(&api).await, StatusCode::SERVICE_UNAVAILABLE, "listeners still starting");
        readiness.set(true);
        assert_eq!(status(&api).await, StatusCode::OK);
        shutdown.send(true).unwrap();
        assert_eq!(status(&api).await, StatusCode::SERVICE_UNAVAILABLE, "shutting down");
        readiness.set(false);
        shutdown.send(false).unwrap();
        assert_eq!(status(&api).await, StatusCode::SERVICE_UNAVAILABLE, "the server's shutdown began");
    }
}
