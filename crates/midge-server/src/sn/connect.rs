//! A client's CONNECT (MQTT-SN 1.2 sections 6.2 and 6.3): the will dialogue when the Will flag
//! is set (WILLTOPICREQ, WILLTOPIC, WILLMSGREQ, WILLMSG), then the same two steps as an MQTT
//! client's CONNECT: the broker's checks, then the listener's authenticator. The whole of it
//! within the connect timeout.
//!
//! The client is presented to the core as an MQTT 3.1.1 client (MQTT-SN 1.2 follows 3.1.1's
//! semantics): its ClientId, CleanSession flag, Duration as keep alive, and its will; no user
//! name or password (MQTT-SN has none), so the listener's authenticator sees an anonymous
//! client. Its Receive Maximum is 1: a gateway has one QoS 1 or 2 PUBLISH outstanding to a
//! client at a time (6.13), so the session keeps the rest queued, where its bounds apply.

use std::time::Instant;

use midge_broker::ports::auth::Verdict;
use midge_broker::{ClientConnection, ConnectContext, ConnectOutcome};
use midge_codec::{MqttString, Properties, ProtocolVersion, QoS, ReasonCode, Will};
use midge_sn_codec::{Connect, Message, QoS as SnQoS, ReturnCode, WillTopic};
use tokio::sync::mpsc;
use tracing::info;

use super::Link;
use crate::conn::connect::verdict_by;
use crate::conn::ListenerContext;

/// Runs the CONNECT phase from `connect`. Answers with CONNACK either way; `None` when the
/// client was refused (or went silent, or the server is shutting down).
pub(super) async fn accept(
    connect: Connect,
    link: &Link,
    inbox: &mut mpsc::Receiver<Message>,
    context: &ListenerContext,
) -> Option<Box<ClientConnection>> {
    let broker = &context.broker;
    let deadline = tokio::time::Instant::now() + broker.limits().connect_timeout();
    let mut shutdown = context.shutdown.clone();
    let peer = &link.peer;
    let dialogue = async {
        let mut connect = connect;
        let will = loop {
            if !connect.will {
                break None;
            }
            match will_dialogue(link, inbox).await? {
                Dialogue::Will(will) => break Some(will),
                Dialogue::NoWill => break None,
                Dialogue::Restart(again) => connect = again,
            }
        };
        Some((connect, will))
    };
    let (connect, will) = tokio::select! {
        done = dialogue => done?,
        _ = tokio::time::sleep_until(deadline) => {
            if let Some(report) = broker.stats().limits.connect_timeout.hit(Instant::now()) {
                info!(%peer, closed = report.since_last, total = report.total,
                    "limit reached: connect_timeout_ms: MQTT-SN will dialogue not finished within the connect timeout");
            }
            return None;
        }
        _ = shutdown.changed() => return None,
    };
    let refuse = |code: ReturnCode, why: &dyn std::fmt::Display| {
        info!(%peer, client_id = %connect.client_id, code = %code, reason = %why, "mqtt-sn: connection refused");
        Message::ConnAck { return_code: code }
    };
    let will = match will.map(mqtt_will).transpose() {
        Ok(will) => will,
        Err(why) => {
            link.send(&refuse(ReturnCode::REJECTED_NOT_SUPPORTED, &why)).await;
            return None;
        }
    };
    let Ok(client_id) = MqttString::new(connect.client_id.as_str()) else {
        link.send(&refuse(ReturnCode::REJECTED_NOT_SUPPORTED, &"client id is not an MQTT string")).await;
        return None;
    };
    let packet = midge_codec::Connect {
        protocol: ProtocolVersion::V311,
        clean_start: connect.clean_session,
        keep_alive: connect.duration,
        client_id,
        will,
        username: None,
        password: None,
        // One QoS 1 or 2 message outstanding to the client at a time (6.13).
        properties: Properties { receive_maximum: Some(1), ..Properties::default() },
        bridge: false,
    };
    // Step 1: the protocol and the limits.
    let mut request = match broker.check_connect(Box::new(packet)) {
        Ok(request) => request,
        Err(refusal) => {
            link.send(&refuse(return_code(refusal.connack.reason), &refusal.reason)).await;
            return None;
        }
    };
    // Step 2: who the client is, within what is left of the connect timeout.
    let peer_text = peer.to_string();
    let decision = context.authenticator.authenticate(&request.credentials(&peer_text));
    let verdict = verdict_by(decision, deadline, &mut shutdown).await?;
    let clean_session = request.clean_start();
    // On a node of a cluster, the session is this node's before the client is admitted (as for
    // an MQTT client: `conn/connect.rs`); held until it is.
    let _claim = match (&context.cluster, &verdict) {
        (Some(cluster), Verdict::Allow(_)) if !request.assigned() => {
            match tokio::time::timeout_at(deadline, cluster.claim(request.client_id(), clean_session)).await {
                Ok(Ok(guard)) => Some(guard),
                outcome => {
                    let why = match outcome {
                        Ok(Err(error)) => error.to_string(),
                        _ => "cluster: claiming the session took longer than the connect timeout".to_owned(),
                    };
                    link.send(&refuse(ReturnCode::REJECTED_CONGESTION, &why)).await;
                    return None;
                }
            }
        }
        _ => None,
    };
    if context.cluster.is_some() {
        // Its feed runs beside the connection (`sn::client::serve`).
        request.feed_from_fabric();
    }
    let connect_context = ConnectContext { peer: peer_text, authorizer: context.authorizer.clone() };
    match ClientConnection::accept(broker, request, verdict, &connect_context, Instant::now()) {
        ConnectOutcome::Accepted { connection, connack } => {
            info!(
                %peer, client_id = %connection.client_id(), protocol = "mqtt-sn", clean_session,
                keep_alive = connection.keep_alive(), session_present = connack.session_present, "client connected"
            );
            link.send(&Message::ConnAck { return_code: ReturnCode::ACCEPTED }).await;
            Some(connection)
        }
        ConnectOutcome::Refused(refusal) => {
            link.send(&refuse(return_code(refusal.connack.reason), &refusal.reason)).await;
            None
        }
    }
}

/// The CONNACK return code for the core's refusal: congestion when the broker is full or
/// cannot decide now (the client may try again later), "not supported" for everything else
/// (MQTT-SN has no code for a bad client id or a refused identity).
fn return_code(reason: ReasonCode) -> ReturnCode {
    match reason {
        ReasonCode::QUOTA_EXCEEDED | ReasonCode::SERVER_UNAVAILABLE | ReasonCode::SERVER_BUSY => {
            ReturnCode::REJECTED_CONGESTION
        }
        _ => ReturnCode::REJECTED_NOT_SUPPORTED,
    }
}

/// How the will dialogue ended.
enum Dialogue {
    /// The will topic, QoS, retain flag and message.
    Will((WillTopic, bytes::Bytes)),
    /// An empty WILLTOPIC: no will (5.4.7).
    NoWill,
    /// The client sent its CONNECT again (it missed our request): start over with it.
    Restart(Connect),
}

/// 6.2: asks for the will topic, then the will message. Anything else the client sends
/// meanwhile is ignored, but a WILLTOPIC or CONNECT sent again is answered again (our request
/// was lost). `None` when the listener closed.
async fn will_dialogue(link: &Link, inbox: &mut mpsc::Receiver<Message>) -> Option<Dialogue> {
    link.send(&Message::WillTopicReq).await;
    let topic = loop {
        match inbox.recv().await? {
            Message::WillTopic { will: None } => return Some(Dialogue::NoWill),
            Message::WillTopic { will: Some(topic) } => break topic,
            Message::Connect(again) => return Some(Dialogue::Restart(again)),
            _ => {}
        }
    };
    let mut topic = topic;
    link.send(&Message::WillMsgReq).await;
    loop {
        match inbox.recv().await? {
            Message::WillMsg { will_msg } => return Some(Dialogue::Will((topic, will_msg))),
            Message::WillTopic { will: Some(again) } => {
                topic = again;
                link.send(&Message::WillMsgReq).await;
            }
            Message::WillTopic { will: None } => return Some(Dialogue::NoWill),
            Message::Connect(again) => return Some(Dialogue::Restart(again)),
            _ => {}
        }
    }
}

/// The MQTT will of an MQTT-SN one; a will at QoS -1 is published at QoS 0.
fn mqtt_will((topic, payload): (WillTopic, bytes::Bytes)) -> Result<Will, String> {
    let qos = match topic.qos {
        SnQoS::AtMostOnce | SnQoS::MinusOne => QoS::AtMostOnce,
        SnQoS::AtLeastOnce => QoS::AtLeastOnce,
        SnQoS::ExactlyOnce => QoS::ExactlyOnce,
    };
    let name = midge_codec::TopicName::new(topic.topic.as_str())
        .map_err(|error| format!("will topic {:?}: {error}", topic.topic.as_str()))?;
    Ok(Will { topic: name, payload, qos, retain: topic.retain, properties: Properties::default() })
}
