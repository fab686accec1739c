//! Drives the broker core without sockets: a test client builds packets, hands them to its
//! `ClientConnection` with an explicit clock, and decodes what the broker wrote back.
#![allow(dead_code)]
// A refused CONNACK is returned by value for readable tests; its size does not matter here.
#![allow(clippy::result_large_err)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use midge_broker::{
    Broker, BrokerConfig, ClientConnection, CloseKind, ConnectContext, ConnectOutcome, Flow, Violation,
};
use midge_codec::{
    decode_packet, ConnAck, Connect, MqttString, Packet, PacketId, Properties, ProtocolVersion, PubResponse, Publish,
    QoS, ReasonCode, Subscribe, Subscription, SubscriptionOptions, TopicFilter, TopicName, Will,
};

pub const V311: ProtocolVersion = ProtocolVersion::V311;
pub const V5: ProtocolVersion = ProtocolVersion::V5;

/// A broker and a clock the test moves by hand.
pub struct World {
    pub broker: Arc<Broker>,
    pub now: Instant,
}

impl World {
    pub fn new() -> Self {
        Self::with(BrokerConfig::default())
    }

    pub fn with(config: BrokerConfig) -> Self {
        Self { broker: Broker::new(config), now: Instant::now() }
    }

    /// A broker writing through `journal`, with the state `snapshot` restored.
    pub fn with_journal(journal: midge_broker::journal::Journal, snapshot: midge_store::Snapshot) -> Self {
        let broker = Broker::with_journal(BrokerConfig::default(), Some(journal));
        let now = Instant::now();
        broker.restore(snapshot, now);
        Self { broker, now }
    }

    pub fn advance(&mut self, by: Duration) {
        self.now += by;
        self.broker.tick(self.now);
    }

    pub fn connect(&self, connect: Connect) -> Result<(Client, ConnAck), ConnAck> {
        let context = ConnectContext { peer: "test".into(), allow_anonymous: true };
        let version = connect.protocol;
        match self.broker.connect(Box::new(connect), &context, self.now) {
            ConnectOutcome::Accepted { mut connection, connack } => {
                let mut out = BytesMut::new();
                connection.resume(self.now, &mut out);
                Ok((Client { connection: Some(connection), version, out, next_id: 1 }, connack))
            }
            ConnectOutcome::Refused { connack, .. } => Err(connack),
        }
    }

    /// Connects a client that must be accepted.
    pub fn client(&self, connect: Connect) -> Client {
        self.connect(connect).expect("connection accepted").0
    }
}

pub fn connect(version: ProtocolVersion, client_id: &str) -> Connect {
    Connect {
        protocol: version,
        clean_start: true,
        keep_alive: 60,
        client_id: MqttString::new(client_id).unwrap(),
        will: None,
        username: None,
        password: None,
        properties: Properties::default(),
    }
}

pub fn will(topic: &str, payload: &str, qos: QoS, retain: bool) -> Will {
    Will {
        topic: TopicName::new(topic).unwrap(),
        payload: Bytes::copy_from_slice(payload.as_bytes()),
        qos,
        retain,
        properties: Properties::default(),
    }
}

pub fn publish(topic: &str, payload: &str, qos: QoS, retain: bool) -> Publish {
    Publish {
        dup: false,
        qos,
        retain,
        topic: TopicName::new(topic).unwrap(),
        packet_id: None,
        properties: Properties::default(),
        payload: Bytes::copy_from_slice(payload.as_bytes()),
    }
}

pub fn sub(filter: &str, qos: QoS) -> Subscription {
    Subscription {
        filter: TopicFilter::new(filter).unwrap(),
        options: SubscriptionOptions { qos, ..Default::default() },
    }
}

pub fn pid(id: u16) -> PacketId {
    PacketId::new(id).unwrap()
}

/// One simulated client.
#[derive(Debug)]
pub struct Client {
    pub connection: Option<Box<ClientConnection>>,
    pub version: ProtocolVersion,
    /// Bytes the broker wrote that the test has not read yet.
    pub out: BytesMut,
    next_id: u16,
}

impl Client {
    fn conn(&mut self) -> &mut ClientConnection {
        self.connection.as_mut().expect("connected")
    }

    pub fn send(&mut self, packet: Packet, now: Instant) -> Result<Flow, Violation> {
        let mut out = std::mem::take(&mut self.out);
        let result = self.conn().handle(packet, now, &mut out);
        self.out = out;
        result
    }

    /// The store ticket the responses to the last packet wait for.
    pub fn hold(&mut self) -> Option<midge_store::Ticket> {
        self.conn().take_hold()
    }

    pub fn next_id(&mut self) -> PacketId {
        let id = pid(self.next_id);
        self.next_id += 1;
        id
    }

    pub fn subscribe(
        &mut self,
        subscriptions: Vec<Subscription>,
        properties: Properties,
        now: Instant,
    ) -> Vec<ReasonCode> {
        let packet_id = self.next_id();
        self.send(Packet::Subscribe(Subscribe { packet_id, subscriptions, properties }), now).unwrap();
        match self.recv(now).expect("SUBACK") {
            Packet::SubAck(ack) => {
                assert_eq!(ack.packet_id, packet_id);
                ack.reasons
            }
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }

    /// Publishes; returns the acknowledgement for QoS 1 (PUBACK) or 2 (PUBREC), if any.
    pub fn publish(&mut self, mut publish: Publish, now: Instant) -> Option<PubResponse> {
        if publish.qos != QoS::AtMostOnce && publish.packet_id.is_none() {
            publish.packet_id = Some(self.next_id());
        }
        let qos = publish.qos;
        self.send(Packet::Publish(publish), now).unwrap();
        match qos {
            QoS::AtMostOnce => None,
            QoS::AtLeastOnce => match self.recv(now) {
                Some(Packet::PubAck(ack)) => Some(ack),
                other => panic!("expected PUBACK, got {other:?}"),
            },
            QoS::ExactlyOnce => match self.recv(now) {
                Some(Packet::PubRec(ack)) => Some(ack),
                other => panic!("expected PUBREC, got {other:?}"),
            },
        }
    }

    /// The next packet the broker has for this client: written responses first, then queued
    /// messages drained as the connection driver would.
    pub fn recv(&mut self, now: Instant) -> Option<Packet> {
        if self.out.is_empty() {
            let mut out = std::mem::take(&mut self.out);
            self.conn().drain(now, &mut out, usize::MAX);
            self.out = out;
        }
        decode_packet(&mut self.out, self.version, usize::MAX).expect("broker wrote a valid packet")
    }

    /// Every packet available now.
    pub fn recv_all(&mut self, now: Instant) -> Vec<Packet> {
        std::iter::from_fn(|| self.recv(now)).collect()
    }

    /// Only the PUBLISH packets available now.
    pub fn publishes(&mut self, now: Instant) -> Vec<Publish> {
        self.recv_all(now)
            .into_iter()
            .filter_map(|p| match p {
                Packet::Publish(p) => Some(p),
                _ => None,
            })
            .collect()
    }

    pub fn close(&mut self, how: CloseKind, now: Instant) {
        self.connection.take().expect("connected").close(how, now);
    }
}

pub fn payloads(publishes: &[Publish]) -> Vec<String> {
    publishes.iter().map(|p| String::from_utf8_lossy(&p.payload).into_owned()).collect()
}
