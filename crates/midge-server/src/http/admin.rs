//! The operator's endpoints: clients (list, show, kick), sessions, subscriptions, retained
//! messages (list, get, delete), the counters, and a reload of the config. They take a bearer token of the listener's
//! `http_tokens` and nothing else: they show and act on every client, beyond what any one
//! client's ACL lets it see.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::Json;
use base64::Engine as _;
use bytes::Bytes;
use midge_broker::{Message, SessionView};
use midge_codec::{QoS, TopicFilter, TopicName};
use serde::Deserialize;
use serde_json::{json, Value};

use super::caller::Credentials;
use super::error::ApiError;
use super::publish::{publish_once, Outgoing};
use super::Api;

/// How many items a list gives when the query does not say.
const DEFAULT_LIMIT: usize = 1_000;

/// A list's query.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    limit: Option<usize>,
    filter: Option<String>,
}

/// `GET /api/v1/clients`: the connected clients.
pub(super) async fn clients(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    operator(&api, &headers)?;
    let query = list_query(query.as_deref())?;
    let sessions = api.context.broker.sessions(true, query.limit.unwrap_or(DEFAULT_LIMIT));
    Ok(Json(json!({ "clients": sessions.iter().map(|view| session_json(view, false)).collect::<Vec<_>>() })))
}

/// `GET /api/v1/sessions`: every session, connected or not.
pub(super) async fn sessions(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    operator(&api, &headers)?;
    let query = list_query(query.as_deref())?;
    let sessions = api.context.broker.sessions(false, query.limit.unwrap_or(DEFAULT_LIMIT));
    Ok(Json(json!({ "sessions": sessions.iter().map(|view| session_json(view, false)).collect::<Vec<_>>() })))
}

/// `GET /api/v1/clients/{client_id}`: one client's session, with its subscriptions.
pub(super) async fn client(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    client_id: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    operator(&api, &headers)?;
    let client_id = path(client_id)?;
    let view = api
        .context
        .broker
        .session(&client_id)
        .ok_or_else(|| ApiError::not_found(format!("no client {client_id:?}")))?;
    Ok(Json(session_json(&view, true)))
}

/// `DELETE /api/v1/clients/{client_id}`: disconnects a client (v5: DISCONNECT 0x98
/// Administrative action); its session stays as its expiry says.
pub(super) async fn kick(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    client_id: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let user = operator(&api, &headers)?;
    let client_id = path(client_id)?;
    if !api.context.broker.kick_client(&client_id) {
        return Err(ApiError::not_found(format!("no connected client {client_id:?}")));
    }
    tracing::info!(peer = %api.peer, %user, %client_id, "http: client kicked");
    Ok(Json(json!({ "client_id": client_id, "kicked": true })))
}

/// `GET /api/v1/subscriptions`: every session's subscriptions, up to `limit`.
pub(super) async fn subscriptions(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    operator(&api, &headers)?;
    let query = list_query(query.as_deref())?;
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    let mut found = Vec::new();
    for view in api.context.broker.sessions(false, usize::MAX) {
        for subscription in &view.subscriptions {
            if found.len() == limit {
                break;
            }
            found.push(json!({
                "client_id": &*view.client_id,
                "filter": &*subscription.filter,
                "qos": subscription.qos.as_u8(),
            }));
        }
    }
    Ok(Json(json!({ "subscriptions": found })))
}

/// `GET /api/v1/retained`: the retained messages whose topics match `filter` (default `#`).
pub(super) async fn retained_list(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    operator(&api, &headers)?;
    let query = list_query(query.as_deref())?;
    let filter = query.filter.unwrap_or_else(|| "#".to_owned());
    TopicFilter::new(&filter).map_err(|error| ApiError::bad_request(format!("filter {filter:?}: {error}")))?;
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    let found = api.context.broker.retained_matching(&filter, Instant::now(), limit);
    Ok(Json(json!({ "retained": found.iter().map(|message| retained_json(message)).collect::<Vec<_>>() })))
}

/// `GET /api/v1/retained/{topic}`: one topic's retained message.
pub(super) async fn retained_get(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    topic: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    operator(&api, &headers)?;
    let topic = topic_name(&path(topic)?)?;
    let found = api.context.broker.retained_matching(topic.as_str(), Instant::now(), 1);
    let message = found.first().ok_or_else(|| ApiError::not_found(format!("no retained message on {topic}")))?;
    Ok(Json(retained_json(message)))
}

/// `DELETE /api/v1/retained/{topic}`: clears a topic's retained message as an empty retained
/// PUBLISH does (so its subscribers get the empty message too, as MQTT has it), published as
/// the token's user, under the ACL; answered once it is stored.
pub(super) async fn retained_delete(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    topic: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    operator(&api, &headers)?;
    let topic = topic_name(&path(topic)?)?;
    if api.context.broker.retained_matching(topic.as_str(), Instant::now(), 1).is_empty() {
        return Err(ApiError::not_found(format!("no retained message on {topic}")));
    }
    let credentials = Credentials::from_headers(&headers)?;
    let message = Outgoing { topic: topic.clone(), qos: QoS::AtLeastOnce, retain: true, payload: Bytes::new() };
    publish_once(Arc::clone(&api), credentials, message).await?;
    Ok(Json(json!({ "topic": topic.as_str(), "deleted": true })))
}

/// `GET /api/v1/stats`: the broker's counters and what it holds.
pub(super) async fn stats(State(api): State<Arc<Api>>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    operator(&api, &headers)?;
    let broker = &api.context.broker;
    let stats = broker.stats().snapshot();
    Ok(Json(json!({
        "connections_accepted": stats.connections_accepted,
        "messages_received": stats.messages_received,
        "messages_sent": stats.messages_sent,
        "messages_dropped": stats.messages_dropped,
        "wills_published": stats.wills_published,
        "sessions": broker.session_count(),
        "retained_messages": broker.retained_count(),
        "retained_bytes": broker.retained_bytes(),
    })))
}

/// This node's cluster; a 404 on a node that is not one.
fn node_cluster(api: &Api) -> Result<&Arc<crate::cluster::Cluster>, ApiError> {
    api.context.cluster.as_ref().ok_or_else(|| ApiError::not_found("this broker is not a node of a cluster"))
}

/// `GET /api/v1/cluster`: this node's cluster: its name, its NATS link, the nodes alive and
/// its counters (docs/cluster.md). 404 on a node that is not one of a cluster.
pub(super) async fn cluster(State(api): State<Arc<Api>>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    operator(&api, &headers)?;
    let cluster = node_cluster(&api)?;
    let sample = cluster.sample();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    let mut nodes = vec![json!({ "node": sample.node, "self": true })];
    nodes.extend(cluster.peers().into_iter().map(
        |(node, renewed)| json!({ "node": node, "self": false, "lease_renewed_ms_ago": now.saturating_sub(renewed) }),
    ));
    let counts = sample.counts;
    Ok(Json(json!({
        "node": sample.node,
        "connected": sample.connected,
        "fenced": sample.fenced,
        "nodes": nodes,
        "filters": sample.filters,
        "messages_sent": counts.sent,
        "messages_received": counts.received,
        "messages_dropped": counts.dropped_outbound,
        "messages_unreadable": counts.unreadable,
        "retained_dropped": counts.dropped_retained,
        "wills_dropped": counts.dropped_wills,
        "sessions_taken_over": counts.takeovers,
        "orphan_wills_published": counts.orphan_wills,
        "times_fenced": counts.fenced,
    })))
}

/// `GET /api/v1/cluster/clients/{client_id}`: which node holds a client id's session, as the
/// cluster records it (404 if none does).
pub(super) async fn cluster_client(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    client_id: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    operator(&api, &headers)?;
    let client_id = path(client_id)?;
    let cluster = node_cluster(&api)?;
    match cluster.owner(&client_id).await {
        Ok(Some(node)) => Ok(Json(json!({ "client_id": client_id, "node": node }))),
        Ok(None) => Err(ApiError::not_found(format!("no node holds a session for {client_id:?}"))),
        Err(error) => Err(ApiError::unavailable(format!("the cluster's session bucket: {error}"))),
    }
}

/// `POST /api/v1/reload`: reads the config file again and applies it, as SIGHUP does; answers
/// once it has run, with what changed and what waits for a restart, or (422) why nothing
/// changed, naming the file and line where known.
pub(super) async fn reload(State(api): State<Arc<Api>>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    let user = operator(&api, &headers)?;
    tracing::info!(peer = %api.peer, %user, "http: reload asked for");
    let Some(requests) = &api.http.reload else {
        return Err(ApiError::unavailable("this server does not reload its config"));
    };
    match requests.reload().await {
        Some(Ok(report)) => Ok(Json(json!({
            "reloaded": true,
            "changes": report.changes,
            "restart_needed": report.restart_needed,
        }))),
        Some(Err(crate::ReloadError::ShuttingDown)) | None => Err(ApiError::unavailable("the server is shutting down")),
        Some(Err(error)) => Err(ApiError::new(
            axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            "reload_failed",
            format!("nothing changed: {}", crate::error_chain(&error)),
        )),
    }
}

/// The operator a request is: a bearer token's user. Anything else is a 401.
pub(super) fn operator(api: &Api, headers: &HeaderMap) -> Result<Arc<str>, ApiError> {
    match Credentials::from_headers(headers)? {
        Credentials::Bearer(token) => {
            api.http.user_of(&token).ok_or_else(|| ApiError::unauthorized("unknown bearer token"))
        }
        _ => Err(ApiError::unauthorized("this endpoint takes a bearer token of the listener's http_tokens")),
    }
}

/// A path parameter, or the JSON error for one axum cannot decode (bad percent-encoding).
fn path(extracted: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    extracted.map(|Path(value)| value).map_err(|rejection| ApiError::bad_request(rejection.body_text()))
}

fn list_query(query: Option<&str>) -> Result<ListQuery, ApiError> {
    serde_urlencoded::from_str(query.unwrap_or("")).map_err(|error| ApiError::bad_request(format!("query: {error}")))
}

fn topic_name(topic: &str) -> Result<TopicName, ApiError> {
    TopicName::new(topic).map_err(|error| ApiError::bad_request(format!("topic {topic:?}: {error}")))
}

fn session_json(view: &SessionView, with_subscriptions: bool) -> Value {
    let mut value = json!({
        "client_id": &*view.client_id,
        "connected": view.connected,
        "protocol_level": view.protocol.level(),
        "session_expiry": view.expiry_interval,
        "subscription_count": view.subscriptions.len(),
        "queued": view.queued,
        "inflight": view.inflight,
    });
    if with_subscriptions {
        value["subscriptions"] = view
            .subscriptions
            .iter()
            .map(|subscription| json!({ "filter": &*subscription.filter, "qos": subscription.qos.as_u8() }))
            .collect();
    }
    value
}

fn retained_json(message: &Message) -> Value {
    let (payload, encoding) = match std::str::from_utf8(&message.payload) {
        Ok(text) => (text.to_owned(), "text"),
        Err(_) => (base64::engine::general_purpose::STANDARD.encode(&message.payload), "base64"),
    };
    json!({
        "topic": message.topic.as_str(),
        "qos": message.qos.as_u8(),
        "payload": payload,
        "encoding": encoding,
    })
}
