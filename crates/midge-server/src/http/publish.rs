//! `POST /api/v1/publish`: one message, published by a short-lived client of the core and
//! answered once the core has acknowledged it as it would an MQTT publisher (for QoS 1 and 2,
//! after the store has committed it for every persistent session it was queued for), and once
//! the subscribers it reached that are over their queue bound have room (or the slow-consumer
//! policy has dealt with them), as an MQTT publisher is paced.
//!
//! The message is given either as the query (`topic`, `qos`, `retain`) with the body as the
//! payload, or, with `Content-Type: application/json`, as a JSON object
//! (`{"topic", "payload", "encoding", "qos", "retain"}`).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap};
use axum::Json;
use base64::Engine as _;
use bytes::Bytes;
use midge_broker::ports::access::Action;
use midge_codec::{Packet, PacketId, Properties, PubResponse, QoS, ReasonCode, TopicName};
use serde::Deserialize;

use super::caller::Credentials;
use super::client::{self, Session};
use super::error::ApiError;
use super::Api;

/// The query of a publish whose body is the payload.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Query {
    topic: Option<String>,
    qos: Option<u8>,
    retain: Option<bool>,
}

/// A publish as JSON.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonPublish {
    topic: String,
    #[serde(default)]
    payload: String,
    /// How `payload` is written: `"text"` (the default) or `"base64"`.
    #[serde(default)]
    encoding: Encoding,
    #[serde(default)]
    qos: u8,
    #[serde(default)]
    retain: bool,
}

/// How a payload is written in JSON.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum Encoding {
    /// As UTF-8 text.
    #[default]
    Text,
    /// As standard base64.
    Base64,
}

/// A message to publish, checked.
pub(super) struct Outgoing {
    pub(super) topic: TopicName,
    pub(super) qos: QoS,
    pub(super) retain: bool,
    pub(super) payload: Bytes,
}

/// Publishes the request's message; answers `{"topic", "qos", "retain", "reason_code",
/// "reason"}` once the core has acknowledged it.
pub(super) async fn publish(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Body,
) -> Result<Json<serde_json::Value>, ApiError> {
    let credentials = Credentials::from_headers(&headers)?;
    let limit = api.context.broker.limits().max_packet_size as usize;
    let announced = headers.get(header::CONTENT_LENGTH).and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
    if announced.is_some_and(|length| length > limit as u64) {
        return Err(too_large(limit));
    }
    let body = axum::body::to_bytes(body, limit).await.map_err(|error| {
        let over =
            std::error::Error::source(&error).is_some_and(|source| source.is::<http_body_util::LengthLimitError>());
        if over {
            too_large(limit)
        } else {
            ApiError::bad_request(format!("cannot read the body: {error}"))
        }
    })?;
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.trim_start().starts_with("application/json"));
    let message = if json { from_json(&body)? } else { from_query(query.as_deref(), body)? };
    let limits = api.context.broker.limits();
    if message.qos.as_u8() > limits.max_qos {
        return Err(ApiError::bad_request(format!(
            "qos {} is above the broker's max_qos {}",
            message.qos.as_u8(),
            limits.max_qos
        )));
    }
    if message.retain && !limits.retain_available {
        return Err(ApiError::bad_request("retained messages are not available (retain_available = false)"));
    }
    let (topic, qos, retain) = (message.topic.clone(), message.qos, message.retain);
    let reason = publish_once(api, credentials, message).await?;
    Ok(Json(serde_json::json!({
        "topic": topic.as_str(),
        "qos": qos.as_u8(),
        "retain": retain,
        "reason_code": reason.0,
        "reason": reason.to_string(),
    })))
}

/// Publishes `message` as a client of its own, connected as `credentials` say, and closes it;
/// the reason code the core acknowledged it with.
///
/// In a task of its own: a caller that goes away (hyper then drops its request's future) does
/// not leave the client connected, or its message half published.
pub(super) async fn publish_once(
    api: Arc<Api>,
    credentials: Credentials,
    message: Outgoing,
) -> Result<ReasonCode, ApiError> {
    let task = tokio::spawn(async move {
        let session = Session { client_id: None, clean_start: true, expiry: 0, keep_alive: 0 };
        let mut client = client::connect(&api, credentials, session).await?;
        let result = publish_as(&api, &mut client, &message).await;
        client.close();
        result
    });
    task.await.map_err(|error| ApiError::unavailable(format!("the publish did not finish: {error}")))?
}

/// Publishes `message` through `client` and waits for the core's acknowledgement; the reason
/// code it gives (success or no matching subscribers), or the error it is.
async fn publish_as(api: &Api, client: &mut client::Connected, message: &Outgoing) -> Result<ReasonCode, ApiError> {
    // QoS 0 has no acknowledgement to carry a refusal: the ACL is asked first, so a caller is
    // told 403 whatever the QoS. The core asks it again, as for any client.
    if !client.allows(api, Action::Publish, message.topic.as_str()) {
        return Err(ApiError::forbidden(format!("not authorized to publish to {}", message.topic.as_str())));
    }
    let packet_id = PacketId::new(1).expect("1 is not 0");
    let packet = midge_codec::Publish {
        dup: false,
        qos: message.qos,
        retain: message.retain,
        topic: message.topic.clone(),
        packet_id: (message.qos != QoS::AtMostOnce).then_some(packet_id),
        properties: Properties::default(),
        payload: message.payload.clone(),
    };
    let mut reason = ReasonCode::SUCCESS;
    for answer in client.core(api, Packet::Publish(packet)).await? {
        match answer {
            Packet::PubAck(ack) => reason = ack.reason,
            Packet::PubRec(rec) => {
                reason = rec.reason;
                if !rec.reason.is_error() {
                    // Exactly once: the id is released as a client's PUBREL releases it.
                    client.core(api, Packet::PubRel(PubResponse::success(packet_id))).await?;
                }
            }
            _ => {}
        }
    }
    if reason.is_error() {
        return Err(client::refused(reason, &"the broker refused the message"));
    }
    client.wait_for_room().await;
    Ok(reason)
}

/// The message of a request whose query names it and whose body is the payload.
fn from_query(query: Option<&str>, payload: Bytes) -> Result<Outgoing, ApiError> {
    let query: Query = serde_urlencoded::from_str(query.unwrap_or(""))
        .map_err(|error| ApiError::bad_request(format!("query: {error}")))?;
    let topic = query.topic.ok_or_else(|| ApiError::bad_request("topic is missing from the query"))?;
    checked(&topic, query.qos.unwrap_or(0), query.retain.unwrap_or(false), payload)
}

/// The message of a JSON request.
fn from_json(body: &[u8]) -> Result<Outgoing, ApiError> {
    let request: JsonPublish =
        serde_json::from_slice(body).map_err(|error| ApiError::bad_request(format!("JSON body: {error}")))?;
    let payload = match request.encoding {
        Encoding::Text => Bytes::from(request.payload.into_bytes()),
        Encoding::Base64 => base64::engine::general_purpose::STANDARD
            .decode(request.payload.as_bytes())
            .map(Bytes::from)
            .map_err(|error| ApiError::bad_request(format!("payload is not base64: {error}")))?,
    };
    checked(&request.topic, request.qos, request.retain, payload)
}

fn checked(topic: &str, qos: u8, retain: bool, payload: Bytes) -> Result<Outgoing, ApiError> {
    let topic = TopicName::new(topic).map_err(|error| ApiError::bad_request(format!("topic {topic:?}: {error}")))?;
    let qos = QoS::from_u8(qos).ok_or_else(|| ApiError::bad_request(format!("qos {qos}: use 0, 1 or 2")))?;
    Ok(Outgoing { topic, qos, retain, payload })
}

fn too_large(limit: usize) -> ApiError {
    ApiError::too_large(format!("the body is over {limit} bytes ([mqtt] max_packet_size)"))
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;

    use super::*;

    #[test]
    fn the_query_and_json_forms() {
        let message = from_query(Some("topic=a%2Fb&qos=1&retain=true"), Bytes::from_static(b"hi")).unwrap();
        assert_eq!((message.topic.as_str(), message.qos, message.retain), ("a/b", QoS::AtLeastOnce, true));
        let message = from_json(br#"{"topic":"t","payload":"aGk=","encoding":"base64","qos":2}"#).unwrap();
        assert_eq!((message.payload.as_ref(), message.qos, message.retain), (&b"hi"[..], QoS::ExactlyOnce, false));
        for bad in [None, Some("topic=a/%2B"), Some("topic=a&qos=3"), Some("topic=a&qos=x"), Some("topic=a&what=1")] {
            let error = from_query(bad, Bytes::new()).err().unwrap();
            assert_eq!(error.status(), StatusCode::BAD_REQUEST, "{bad:?}");
        }
        for bad in [&b"{"[..], br#"{"payload":"x"}"#, br#"{"topic":"t","payload":"!","encoding":"base64"}"#] {
            assert_eq!(from_json(bad).err().unwrap().status(), StatusCode::BAD_REQUEST);
        }
    }
}
