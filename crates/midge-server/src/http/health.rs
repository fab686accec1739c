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
