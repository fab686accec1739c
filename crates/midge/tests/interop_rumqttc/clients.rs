//! rumqttc 3.1.1 and 5.0 clients behind one small trait, so each scenario is written once and run
//! for both protocol versions.
//!
//! Each client's event loop runs in its own task and reports every event into a channel; the test
//! awaits the events it needs, each wait bounded by [`WAIT`]. Publishes that arrive while a test
//! waits for something else (an acknowledgement, say) are kept in an inbox for [`Client::recv`].

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use rumqttc::v5;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{timeout_at, Instant};

/// The longest any single wait (CONNACK, SUBACK, an acknowledgement, a message) may take. A
/// loopback broker answers in milliseconds; this only bounds a broken one.
pub const WAIT: Duration = Duration::from_secs(5);

/// A message as a subscriber received it, whichever protocol version carried it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub topic: String,
    /// `Bytes` rather than `Vec<u8>` for its readable `Debug` (`b"..."`).
    pub payload: Bytes,
    pub qos: u8,
    pub retain: bool,
}

impl Message {
    /// A message, for comparing with a received one.
    pub fn new(topic: &str, payload: &[u8], qos: u8, retain: bool) -> Self {
        Self { topic: topic.to_owned(), payload: Bytes::copy_from_slice(payload), qos, retain }
    }
}

/// A will message set on CONNECT.
#[derive(Debug, Clone)]
pub struct Will {
    pub topic: String,
    pub payload: Vec<u8>,
    pub qos: u8,
    pub retain: bool,
}

/// How a client connects.
#[derive(Debug, Clone, Default)]
pub struct Connect {
    /// 3.1.1: CleanSession = 0. 5.0: Clean Start = 0 and Session Expiry Interval = 300 s.
    pub persistent: bool,
    pub will: Option<Will>,
    /// Over WebSocket instead of TCP (rumqttc's `websocket` feature).
    pub websocket: Option<WebSocket>,
}

/// MQTT over WebSocket: the path asked for, and for wss the CA (PEM) to trust.
#[derive(Debug, Clone)]
pub struct WebSocket {
    pub path: String,
    pub ca: Option<Vec<u8>>,
}

impl WebSocket {
    /// The URL rumqttc connects to (its broker address) and its transport.
    fn transport(&self, addr: SocketAddr) -> (String, rumqttc::Transport) {
        match &self.ca {
            None => (format!("ws://{addr}{}", self.path), rumqttc::Transport::Ws),
            Some(ca) => (format!("wss://{addr}{}", self.path), rumqttc::Transport::wss(ca.clone(), None, None)),
        }
    }
}

/// What the scenarios need from a client, implemented for both protocol versions.
pub trait Client: Sized {
    /// Connects and waits for a successful CONNACK; returns the client and Session Present.
    async fn connect(addr: SocketAddr, id: &str, how: Connect) -> (Self, bool);
    /// Subscribes to one filter and waits for the SUBACK; returns the granted QoS (panics on a
    /// failure code).
    async fn subscribe(&mut self, filter: &str, qos: u8) -> u8;
    /// Publishes and waits until the QoS flow is complete: written (QoS 0), PUBACK (QoS 1),
    /// PUBREC then PUBCOMP (QoS 2).
    async fn publish(&mut self, topic: &str, payload: &[u8], qos: u8, retain: bool);
    /// The next message delivered to this client.
    async fn recv(&mut self) -> Message;
    /// Sends DISCONNECT and waits until the broker closes the connection.
    async fn disconnect(self);
    /// Drops the TCP connection without sending DISCONNECT.
    async fn kill(self);
}

/// An event loop's output: an event, or the error that ended the connection.
type Report<E> = Result<E, String>;

/// Waits for the next report, panicking with `what` when `deadline` passes.
async fn next_report<E>(rx: &mut mpsc::UnboundedReceiver<Report<E>>, deadline: Instant, what: &str) -> Report<E> {
    match timeout_at(deadline, rx.recv()).await {
        Ok(Some(report)) => report,
        Ok(None) => Err("event loop task ended".to_owned()),
        Err(_) => panic!("timed out after {WAIT:?} waiting for {what}"),
    }
}

fn qos_from_u8(qos: u8) -> rumqttc::QoS {
    match qos {
        0 => rumqttc::QoS::AtMostOnce,
        1 => rumqttc::QoS::AtLeastOnce,
        2 => rumqttc::QoS::ExactlyOnce,
        _ => panic!("no QoS {qos}"),
    }
}

fn v5_qos_from_u8(qos: u8) -> v5::mqttbytes::QoS {
    match qos {
        0 => v5::mqttbytes::QoS::AtMostOnce,
        1 => v5::mqttbytes::QoS::AtLeastOnce,
        2 => v5::mqttbytes::QoS::ExactlyOnce,
        _ => panic!("no QoS {qos}"),
    }
}

/// A rumqttc MQTT 3.1.1 client.
pub struct V311 {
    client: rumqttc::AsyncClient,
    events: mpsc::UnboundedReceiver<Report<rumqttc::Event>>,
    /// Publishes received while waiting for something else.
    inbox: VecDeque<rumqttc::Publish>,
    task: JoinHandle<()>,
}

impl V311 {
    /// Waits until `pick` accepts an event; publishes it passes over go to the inbox.
    async fn wait_for<T>(&mut self, what: &str, mut pick: impl FnMut(&rumqttc::Event) -> Option<T>) -> T {
        let deadline = Instant::now() + WAIT;
        loop {
            let event = next_report(&mut self.events, deadline, what)
                .await
                .unwrap_or_else(|e| panic!("connection ended while waiting for {what}: {e}"));
            if let Some(found) = pick(&event) {
                return found;
            }
            if let rumqttc::Event::Incoming(rumqttc::Packet::Publish(publish)) = event {
                self.inbox.push_back(publish);
            }
        }
    }
}

impl Client for V311 {
    async fn connect(addr: SocketAddr, id: &str, how: Connect) -> (Self, bool) {
        let mut options = rumqttc::MqttOptions::new(id, addr.ip().to_string(), addr.port());
        if let Some(websocket) = &how.websocket {
            let (url, transport) = websocket.transport(addr);
            options = rumqttc::MqttOptions::new(id, url, addr.port());
            options.set_transport(transport);
        }
        options.set_clean_session(!how.persistent);
        if let Some(will) = how.will {
            options.set_last_will(rumqttc::LastWill::new(will.topic, will.payload, qos_from_u8(will.qos), will.retain));
        }
        let (client, mut eventloop) = rumqttc::AsyncClient::new(options, 16);
        let (tx, events) = mpsc::unbounded_channel();
        // The task owns the event loop, so aborting it drops the socket. It stops at the first
        // error instead of letting rumqttc reconnect: a closed connection stays closed.
        let task = tokio::spawn(async move {
            loop {
                let report = eventloop.poll().await.map_err(|e| e.to_string());
                let stop = report.is_err();
                if tx.send(report).is_err() || stop {
                    break;
                }
            }
        });
        let mut this = Self { client, events, inbox: VecDeque::new(), task };
        let session_present = this
            .wait_for("CONNACK", |event| match event {
                rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(ack)) => Some(ack.session_present),
                _ => None,
            })
            .await;
        (this, session_present)
    }

    async fn subscribe(&mut self, filter: &str, qos: u8) -> u8 {
        self.client.subscribe(filter, qos_from_u8(qos)).await.expect("queue SUBSCRIBE");
        let codes = self
            .wait_for("SUBACK", |event| match event {
                rumqttc::Event::Incoming(rumqttc::Packet::SubAck(ack)) => Some(ack.return_codes.clone()),
                _ => None,
            })
            .await;
        match codes.as_slice() {
            [rumqttc::SubscribeReasonCode::Success(granted)] => *granted as u8,
            other => panic!("SUBACK for {filter:?}: {other:?}"),
        }
    }

    async fn publish(&mut self, topic: &str, payload: &[u8], qos: u8, retain: bool) {
        self.client.publish(topic, qos_from_u8(qos), retain, payload.to_vec()).await.expect("queue PUBLISH");
        let pkid = self
            .wait_for("PUBLISH to be sent", |event| match event {
                rumqttc::Event::Outgoing(rumqttc::Outgoing::Publish(pkid)) => Some(*pkid),
                _ => None,
            })
            .await;
        match qos {
            0 => {}
            1 => {
                self.wait_for("PUBACK", |event| match event {
                    rumqttc::Event::Incoming(rumqttc::Packet::PubAck(ack)) if ack.pkid == pkid => Some(()),
                    _ => None,
                })
                .await
            }
            _ => {
                self.wait_for("PUBREC", |event| match event {
                    rumqttc::Event::Incoming(rumqttc::Packet::PubRec(rec)) if rec.pkid == pkid => Some(()),
                    _ => None,
                })
                .await;
                self.wait_for("PUBCOMP", |event| match event {
                    rumqttc::Event::Incoming(rumqttc::Packet::PubComp(comp)) if comp.pkid == pkid => Some(()),
                    _ => None,
                })
                .await;
            }
        }
    }

    async fn recv(&mut self) -> Message {
        let publish = match self.inbox.pop_front() {
            Some(publish) => publish,
            None => {
                self.wait_for("a PUBLISH", |event| match event {
                    rumqttc::Event::Incoming(rumqttc::Packet::Publish(publish)) => Some(publish.clone()),
                    _ => None,
                })
                .await
            }
        };
        Message {
            topic: publish.topic.clone(),
            payload: publish.payload,
            qos: publish.qos as u8,
            retain: publish.retain,
        }
    }

    async fn disconnect(mut self) {
        self.client.disconnect().await.expect("queue DISCONNECT");
        wait_closed(&mut self.events, "the broker to close the connection after DISCONNECT").await;
    }

    async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// Waits until the connection's event loop reports that the connection ended.
async fn wait_closed<E>(events: &mut mpsc::UnboundedReceiver<Report<E>>, what: &str) {
    let deadline = Instant::now() + WAIT;
    while next_report(events, deadline, what).await.is_ok() {}
}

/// A rumqttc MQTT 5.0 client.
pub struct V5 {
    client: v5::AsyncClient,
    events: mpsc::UnboundedReceiver<Report<v5::Event>>,
    /// Publishes received while waiting for something else.
    inbox: VecDeque<v5::mqttbytes::v5::Publish>,
    task: JoinHandle<()>,
}

impl V5 {
    /// Waits until `pick` accepts an event; publishes it passes over go to the inbox.
    async fn wait_for<T>(&mut self, what: &str, mut pick: impl FnMut(&v5::Event) -> Option<T>) -> T {
        let deadline = Instant::now() + WAIT;
        loop {
            let event = next_report(&mut self.events, deadline, what)
                .await
                .unwrap_or_else(|e| panic!("connection ended while waiting for {what}: {e}"));
            if let Some(found) = pick(&event) {
                return found;
            }
            if let v5::Event::Incoming(v5::Incoming::Publish(publish)) = event {
                self.inbox.push_back(publish);
            }
        }
    }

    /// Publishes with properties and waits until the QoS flow is complete.
    pub async fn publish_with_properties(
        &mut self,
        topic: &str,
        payload: &[u8],
        qos: u8,
        retain: bool,
        properties: v5::mqttbytes::v5::PublishProperties,
    ) {
        self.client
            .publish_with_properties(topic, v5_qos_from_u8(qos), retain, payload.to_vec(), properties)
            .await
            .expect("queue PUBLISH");
        self.complete_publish(qos).await;
    }

    /// The next PUBLISH delivered to this client, as rumqttc decoded it (with its properties).
    pub async fn recv_publish(&mut self) -> v5::mqttbytes::v5::Publish {
        match self.inbox.pop_front() {
            Some(publish) => publish,
            None => {
                self.wait_for("a PUBLISH", |event| match event {
                    v5::Event::Incoming(v5::Incoming::Publish(publish)) => Some(publish.clone()),
                    _ => None,
                })
                .await
            }
        }
    }

    /// Waits for the acknowledgements of the PUBLISH just queued.
    async fn complete_publish(&mut self, qos: u8) {
        let pkid = self
            .wait_for("PUBLISH to be sent", |event| match event {
                v5::Event::Outgoing(rumqttc::Outgoing::Publish(pkid)) => Some(*pkid),
                _ => None,
            })
            .await;
        match qos {
            0 => {}
            1 => {
                self.wait_for("PUBACK", |event| match event {
                    v5::Event::Incoming(v5::Incoming::PubAck(ack)) if ack.pkid == pkid => Some(()),
                    _ => None,
                })
                .await
            }
            _ => {
                self.wait_for("PUBREC", |event| match event {
                    v5::Event::Incoming(v5::Incoming::PubRec(rec)) if rec.pkid == pkid => Some(()),
                    _ => None,
                })
                .await;
                self.wait_for("PUBCOMP", |event| match event {
                    v5::Event::Incoming(v5::Incoming::PubComp(comp)) if comp.pkid == pkid => Some(()),
                    _ => None,
                })
                .await;
            }
        }
    }
}

impl Client for V5 {
    async fn connect(addr: SocketAddr, id: &str, how: Connect) -> (Self, bool) {
        let mut options = v5::MqttOptions::new(id, addr.ip().to_string(), addr.port());
        if let Some(websocket) = &how.websocket {
            let (url, transport) = websocket.transport(addr);
            options = v5::MqttOptions::new(id, url, addr.port());
            options.set_transport(transport);
        }
        options.set_clean_start(!how.persistent);
        if how.persistent {
            let mut properties = v5::mqttbytes::v5::ConnectProperties::new();
            properties.session_expiry_interval = Some(300);
            options.set_connect_properties(properties);
        }
        if let Some(will) = how.will {
            options.set_last_will(v5::mqttbytes::v5::LastWill::new(
                will.topic,
                will.payload,
                v5_qos_from_u8(will.qos),
                will.retain,
                None,
            ));
        }
        let (client, mut eventloop) = v5::AsyncClient::new(options, 16);
        let (tx, events) = mpsc::unbounded_channel();
        // As for 3.1.1: the task owns the event loop and stops at the first error.
        let task = tokio::spawn(async move {
            loop {
                let report = eventloop.poll().await.map_err(|e| e.to_string());
                let stop = report.is_err();
                if tx.send(report).is_err() || stop {
                    break;
                }
            }
        });
        let mut this = Self { client, events, inbox: VecDeque::new(), task };
        let session_present = this
            .wait_for("CONNACK", |event| match event {
                v5::Event::Incoming(v5::Incoming::ConnAck(ack)) => Some(ack.session_present),
                _ => None,
            })
            .await;
        (this, session_present)
    }

    async fn subscribe(&mut self, filter: &str, qos: u8) -> u8 {
        self.client.subscribe(filter, v5_qos_from_u8(qos)).await.expect("queue SUBSCRIBE");
        let codes = self
            .wait_for("SUBACK", |event| match event {
                v5::Event::Incoming(v5::Incoming::SubAck(ack)) => Some(ack.return_codes.clone()),
                _ => None,
            })
            .await;
        match codes.as_slice() {
            [v5::mqttbytes::v5::SubscribeReasonCode::Success(granted)] => *granted as u8,
            other => panic!("SUBACK for {filter:?}: {other:?}"),
        }
    }

    async fn publish(&mut self, topic: &str, payload: &[u8], qos: u8, retain: bool) {
        self.client.publish(topic, v5_qos_from_u8(qos), retain, payload.to_vec()).await.expect("queue PUBLISH");
        self.complete_publish(qos).await;
    }

    async fn recv(&mut self) -> Message {
        let publish = self.recv_publish().await;
        Message {
            topic: String::from_utf8(publish.topic.to_vec()).expect("UTF-8 topic"),
            payload: publish.payload,
            qos: publish.qos as u8,
            retain: publish.retain,
        }
    }

    async fn disconnect(mut self) {
        self.client.disconnect().await.expect("queue DISCONNECT");
        wait_closed(&mut self.events, "the broker to close the connection after DISCONNECT").await;
    }

    async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// Payloads that are not plain ASCII, so a broker that mangles bytes is caught.
pub fn payload(label: &str) -> Vec<u8> {
    let mut bytes = label.as_bytes().to_vec();
    bytes.extend_from_slice(&[0x00, 0xff, 0x80, b'\n']);
    bytes.extend_from_slice("€ ünïcødé".as_bytes());
    bytes
}
