//! Drives the broker core without sockets: a test client builds packets, hands them to its
//! `ClientConnection` with an explicit clock, and decodes what the broker wrote back. A store in
//! memory ([`MemoryDurability`]) stands behind the durability port.
#![allow(dead_code)]
// A refused CONNACK is returned by value for readable tests; its size does not matter here.
#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use midge_broker::ports::auth::{AnonymousOnly, Authenticator, Decision, Verdict};
use midge_broker::ports::durability::{
    Change, Changes, Durability, QueueReadError, QueueSource, QueuedRecord, Recovered, RecoveredSession,
    StoredDelivery, StoredMessage, StoredSession, StoredSubscription, Ticket,
};
use midge_broker::{
    Broker, ClientConnection, CloseKind, Congestion, ConnectContext, ConnectOutcome, Flow, Limits, ReadBatch, Violation,
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
        Self::with(Limits::default())
    }

    pub fn with(limits: Limits) -> Self {
        Self { broker: Broker::new(limits), now: Instant::now() }
    }

    /// A broker keeping its durable state in `store`, with what `store` holds restored.
    pub fn with_store(store: &Arc<MemoryDurability>) -> Self {
        let broker = Broker::with_store(Limits::default(), Arc::clone(store) as Arc<dyn Durability>);
        let now = Instant::now();
        broker.restore(store.recovered(), now);
        Self { broker, now }
    }

    /// A broker keeping its durable state in `store`, offline queues there too (read back
    /// through the store as a `QueueSource`), with `limits` and what `store` holds restored.
    pub fn with_queues_in(store: &Arc<MemoryDurability>, limits: Limits) -> Self {
        let broker = Broker::with_store_and_queues(
            limits,
            Arc::clone(store) as Arc<dyn Durability>,
            Arc::clone(store) as Arc<dyn QueueSource>,
        );
        let now = Instant::now();
        broker.restore(store.recovered(), now);
        Self { broker, now }
    }

    pub fn advance(&mut self, by: Duration) {
        self.now += by;
        self.broker.tick(self.now);
    }

    pub fn connect(&self, connect: Connect) -> Result<(Client, ConnAck), ConnAck> {
        self.connect_through(connect, &AnonymousOnly { allow_anonymous: true }, &ConnectContext::default())
    }

    /// Connects in the two steps the server takes: the broker checks the CONNECT, then
    /// `authenticator` decides (a later verdict is awaited), then the connection is accepted.
    pub fn connect_through(
        &self,
        connect: Connect,
        authenticator: &dyn Authenticator,
        context: &ConnectContext,
    ) -> Result<(Client, ConnAck), ConnAck> {
        let version = connect.protocol;
        let request = self.broker.check_connect(Box::new(connect)).map_err(|refusal| refusal.connack)?;
        let verdict = match authenticator.authenticate(&request.credentials("test")) {
            Decision::Now(verdict) => verdict,
            Decision::Later(later) => block_on(later),
        };
        match ClientConnection::accept(&self.broker, request, verdict, context, self.now) {
            ConnectOutcome::Accepted { mut connection, connack } => {
                let mut out = BytesMut::new();
                connection.resume(self.now, &mut out);
                Ok((Client { connection: Some(connection), version, out, next_id: 1 }, connack))
            }
            ConnectOutcome::Refused(refusal) => Err(refusal.connack),
        }
    }

    /// Connects a client that must be accepted.
    pub fn client(&self, connect: Connect) -> Client {
        self.connect(connect).expect("connection accepted").0
    }
}

/// A CONNECT for a persistent session (clean start 0, expiry an hour).
pub fn persistent(version: ProtocolVersion, client_id: &str) -> Connect {
    let mut packet = connect(version, client_id);
    packet.clean_start = false;
    packet.properties.session_expiry_interval = Some(3600);
    packet
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
        bridge: false,
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

    /// Sends one packet as a read of its own: its read batch ends before this returns.
    pub fn send(&mut self, packet: Packet, now: Instant) -> Result<Flow, Violation> {
        let mut batch = ReadBatch::new();
        let result = self.send_in(packet, now, &mut batch);
        self.conn().broker().end_batch(&mut batch);
        result
    }

    /// Sends one PUBLISH (given a packet id if its QoS needs one) as a read of its own, and
    /// returns the congestion the read ran into: whom the server would pace this client for.
    /// Acknowledgements stay unread.
    pub fn publish_read(&mut self, mut publish: Publish, now: Instant) -> Congestion {
        if publish.qos != QoS::AtMostOnce && publish.packet_id.is_none() {
            publish.packet_id = Some(self.next_id());
        }
        let mut batch = ReadBatch::new();
        self.send_in(Packet::Publish(publish), now, &mut batch).unwrap();
        self.conn().broker().end_batch(&mut batch);
        batch.take_congestion()
    }

    /// Sends one packet within `batch`, a read the caller ends.
    pub fn send_in(&mut self, packet: Packet, now: Instant, batch: &mut ReadBatch) -> Result<Flow, Violation> {
        let mut out = std::mem::take(&mut self.out);
        let result = self.conn().handle(packet, now, batch, &mut out);
        self.out = out;
        result
    }

    /// The store ticket the responses to the last packet wait for.
    pub fn hold(&mut self) -> Option<Ticket> {
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
            loop {
                self.conn().drain(now, &mut out, usize::MAX);
                // As the server's driver does: a spilled session's queue is read back from the
                // store when it runs low (every ticket of this store is durable at once).
                let Some(request) = self.conn().read_back() else { break };
                let batch = request.read();
                self.conn().append_read_back(batch).expect("the store in memory cannot fail");
            }
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

/// Runs a future to its end on a runtime of its own (a later authentication verdict).
pub fn block_on<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime").block_on(future)
}

/// A store in memory behind the durability port: applies each submission at once (so every
/// ticket is durable when returned) and gives back what it holds as a restart would read it.
#[derive(Debug, Default)]
pub struct MemoryDurability {
    state: Mutex<Model>,
}

#[derive(Debug, Default)]
struct Model {
    submissions: u64,
    messages: BTreeMap<u64, StoredMessage>,
    retained: BTreeMap<String, u64>,
    sessions: BTreeMap<String, SessionModel>,
}

#[derive(Debug, Default)]
struct SessionModel {
    record: Option<StoredSession>,
    subscriptions: BTreeMap<String, StoredSubscription>,
    deliveries: BTreeMap<u64, StoredDelivery>,
    inbound_qos2: BTreeSet<u16>,
    topic_ids: BTreeMap<u16, String>,
}

impl Durability for MemoryDurability {
    fn submit(&self, changes: Changes) -> Ticket {
        let mut model = self.state.lock().unwrap();
        for change in changes {
            model.apply(change);
        }
        model.submissions += 1;
        Ticket(model.submissions)
    }
}

impl Model {
    fn apply(&mut self, change: Change) {
        match change {
            Change::PutMessage { id, record } => {
                self.messages.insert(id, record);
            }
            Change::DeleteMessage(id) => {
                self.messages.remove(&id);
            }
            Change::PutRetained { topic, message } => {
                self.retained.insert(topic, message);
            }
            Change::DeleteRetained(topic) => {
                self.retained.remove(&topic);
            }
            Change::PutSession { client_id, record } => {
                self.sessions.entry(client_id).or_default().record = Some(record);
            }
            Change::DeleteSession(client_id) => {
                self.sessions.remove(&client_id);
            }
            Change::PutSubscription { client_id, filter, record } => {
                self.sessions.entry(client_id).or_default().subscriptions.insert(filter, record);
            }
            Change::DeleteSubscription { client_id, filter } => {
                self.sessions.entry(client_id).or_default().subscriptions.remove(&filter);
            }
            Change::PutDelivery { client_id, seq, record } => {
                self.sessions.entry(client_id).or_default().deliveries.insert(seq, record);
            }
            Change::DeleteDelivery { client_id, seq } => {
                self.sessions.entry(client_id).or_default().deliveries.remove(&seq);
            }
            Change::PutInboundQos2 { client_id, packet_id } => {
                self.sessions.entry(client_id).or_default().inbound_qos2.insert(packet_id);
            }
            Change::DeleteInboundQos2 { client_id, packet_id } => {
                self.sessions.entry(client_id).or_default().inbound_qos2.remove(&packet_id);
            }
            Change::PutTopicId { client_id, topic_id, topic } => {
                self.sessions.entry(client_id).or_default().topic_ids.insert(topic_id, topic);
            }
        }
    }
}

impl QueueSource for MemoryDurability {
    fn read_queue(&self, client_id: &str, from_seq: u64, limit: usize) -> Result<Vec<QueuedRecord>, QueueReadError> {
        let model = self.state.lock().unwrap();
        let Some(session) = model.sessions.get(client_id) else { return Ok(Vec::new()) };
        Ok(session
            .deliveries
            .range(from_seq..)
            .take(limit)
            .map(|(seq, delivery)| QueuedRecord {
                seq: *seq,
                delivery: delivery.clone(),
                message: model.messages.get(&delivery.message).cloned(),
            })
            .collect())
    }
}

impl MemoryDurability {
    /// Messages stored.
    pub fn message_count(&self) -> usize {
        self.state.lock().unwrap().messages.len()
    }

    /// Deliveries stored for `client_id`.
    pub fn delivery_count(&self, client_id: &str) -> usize {
        self.state.lock().unwrap().sessions.get(client_id).map_or(0, |s| s.deliveries.len())
    }

    /// Deletes a message's record, as expiry's reclaiming will.
    pub fn forget_message(&self, id: u64) {
        self.state.lock().unwrap().messages.remove(&id);
    }

    /// Ids of the stored messages.
    pub fn message_ids(&self) -> Vec<u64> {
        self.state.lock().unwrap().messages.keys().copied().collect()
    }

    /// How many submissions it took.
    pub fn submissions(&self) -> u64 {
        self.state.lock().unwrap().submissions
    }

    /// A store holding what this one holds, as a restarted process would find it.
    pub fn reopened(&self) -> Self {
        let held = self.state.lock().unwrap();
        let sessions = held
            .sessions
            .iter()
            .map(|(id, s)| {
                let copy = SessionModel {
                    record: s.record.clone(),
                    subscriptions: s.subscriptions.clone(),
                    deliveries: s.deliveries.clone(),
                    inbound_qos2: s.inbound_qos2.clone(),
                    topic_ids: s.topic_ids.clone(),
                };
                (id.clone(), copy)
            })
            .collect();
        let model =
            Model { submissions: 0, messages: held.messages.clone(), retained: held.retained.clone(), sessions };
        Self { state: Mutex::new(model) }
    }

    /// What a restart would read.
    pub fn recovered(&self) -> Recovered {
        let model = self.state.lock().unwrap();
        Recovered {
            messages: model.messages.iter().map(|(id, m)| (*id, m.clone())).collect(),
            retained: model.retained.iter().map(|(t, id)| (t.clone(), *id)).collect(),
            sessions: model
                .sessions
                .iter()
                .filter_map(|(client_id, s)| {
                    Some(RecoveredSession {
                        client_id: client_id.clone(),
                        record: s.record.clone()?,
                        subscriptions: s.subscriptions.iter().map(|(f, r)| (f.clone(), *r)).collect(),
                        deliveries: s.deliveries.iter().map(|(seq, d)| (*seq, d.clone())).collect(),
                        inbound_qos2: s.inbound_qos2.iter().copied().collect(),
                        topic_ids: s.topic_ids.iter().map(|(id, topic)| (*id, topic.clone())).collect(),
                    })
                })
                .collect(),
        }
    }
}

/// An authenticator that answers later, as a password hash off the runtime or an HTTP call
/// would: it allows `user` with password `secret`, as user "user", and denies everyone else.
#[derive(Debug)]
pub struct LaterAuthenticator;

impl Authenticator for LaterAuthenticator {
    fn authenticate(&self, credentials: &midge_broker::ports::auth::Credentials<'_>) -> Decision {
        let good = credentials.username == Some("user") && credentials.password == Some(b"secret".as_slice());
        Decision::Later(Box::pin(async move {
            tokio::task::yield_now().await; // answered after a turn of the runtime, not at once
            if good {
                Verdict::Allow(midge_broker::ports::auth::Identity { username: Some(Arc::from("user")), grants: None })
            } else {
                Verdict::Deny {
                    reason: ReasonCode::BAD_USER_NAME_OR_PASSWORD,
                    detail: "wrong user name or password".into(),
                }
            }
        }))
    }
}
