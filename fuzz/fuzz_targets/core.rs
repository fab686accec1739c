//! Drives the sans-I/O broker core (`midge_broker`) with sequences of operations from four
//! clients and a clock the input moves, as the server would drive it but without sockets, and
//! checks after each operation what must always hold:
//! - nothing panics, and everything the broker writes decodes;
//! - a session's queue stays within its bound plus the documented headroom: no drain hands a
//!   connection more messages than [`Limits::hard_queued_messages`], and with a store a session
//!   never has more deliveries stored than `max(hard_queued_messages, max_offline_messages)`
//!   plus its in-flight window;
//! - the store's references add up: no stored message without a delivery or retained topic
//!   naming it, no retained topic naming a missing message;
//! - a new PUBLISH never reuses the packet id of a message its client has not acknowledged, and a
//!   DUP resend carries the message it resends (MQTT-2.2.1-3, MQTT-4.3.3-1);
//! - a QoS 2 message reaches a session once per subscription path: a copy is sent again only as
//!   a DUP resend of the same packet id before the client's PUBREC (MQTT-4.3.3-6), a path is
//!   told apart by the v5 Subscription Identifiers the target subscribes with (for 3.1.1 the
//!   count is bounded by 1 plus the shared subscriptions the session ever held that match), and
//!   a QoS 2 message a shared subscription sent one member goes to no other (MQTT-4.8.2-5);
//! - a session resumed with messages its client has not acknowledged resends each of them
//!   (MQTT-4.4.0-1), so none is lost while the session lives.
//!
//! Every published message (and will) carries a unique payload, so deliveries can be counted
//! per message. Pacing is not honoured: a paced publisher goes on publishing, which is the
//! strictest test of the hard bound.
#![no_main]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use midge_broker::ports::auth::{AnonymousOnly, Authenticator, Decision};
use midge_broker::ports::durability::{Durability, QueueSource};
use midge_broker::{
    filters, Broker, ClientConnection, CloseKind, ConnectContext, ConnectOutcome, Flow, Limits, ReadBatch, Session,
    Signal,
};
use midge_codec::{
    decode_packet, Connect, Disconnect, MqttString, Packet, PacketId, Properties, ProtocolVersion, PubResponse,
    Publish, QoS, ReasonCode, Subscribe, Subscription, SubscriptionOptions, TopicFilter, TopicName, Unsubscribe, Will,
};
use midge_fuzz::core_ops::{AckKind, Expiry, Input, Linger, Op, Setup, WillSpec};
use midge_fuzz::durability::MemoryDurability;

/// Client identifiers: four clients share the topics below.
const CLIENTS: [&str; 4] = ["c0", "c1", "c2", "c3"];

/// Topics published to.
const TOPICS: [&str; 7] = ["a", "a/b", "a/c", "x/b", "s/1", "s/2", "$SYS/x"];

/// Filters subscribed to: exact, wildcard, overlapping, and shared in two groups (one of them
/// with two filters). A v5 client subscribes each with its own Subscription Identifier, its
/// index plus 1, so a delivery tells which subscription it came through.
const FILTERS: [&str; 11] =
    ["a", "a/b", "a/+", "a/#", "+/b", "#", "s/#", "$SYS/#", "$share/g/a/#", "$share/g/s/+", "$share/h/s/1"];

/// Operations per input, at most: enough for long histories, short enough to run fast.
const MAX_OPS: usize = 256;

/// Rounds of drain-and-acknowledge a drain does at most, so it always ends.
const MAX_DRAIN_ROUNDS: usize = 64;

fuzz_target!(|input: Input| {
    let mut world = World::new(&input.setup);
    for op in input.ops.iter().take(MAX_OPS) {
        trace(|| format!("{op:?}"));
        world.apply(op);
        world.close_kicked();
        world.check();
    }
});

/// The broker, the clients, and what the clients were sent.
struct World {
    limits: Limits,
    store: Option<Arc<MemoryDurability>>,
    broker: Arc<Broker>,
    now: Instant,
    clients: Vec<ClientState>,
    /// What each session (client, generation) was sent; see [`SessionModel`].
    sessions: HashMap<(usize, u64), SessionModel>,
    /// QoS 2 messages a shared subscription sent, by (filter, payload): the session it went to.
    shared_sent: HashMap<(usize, Bytes), (usize, u64)>,
    /// The subscribers the last publish was paced for.
    congested: Vec<Arc<Session>>,
    next_payload: u64,
}

/// One client: its current connection and its session's generation. A generation is a session
/// as the client sees it: a CONNACK without Session Present starts the next one.
struct ClientState {
    conn: Option<Conn>,
    generation: u64,
    next_packet_id: u16,
}

/// A client's network connection, as the server's driver holds it.
struct Conn {
    connection: Box<ClientConnection>,
    /// Bytes the broker wrote that the client has not read.
    out: BytesMut,
    version: ProtocolVersion,
    generation: u64,
    /// The in-flight window the broker gives it (its Receive Maximum and ours).
    window: usize,
}

/// What one session was sent and has not finished, as its client keeps it.
#[derive(Default)]
struct SessionModel {
    /// QoS 1/2 messages sent to the client and not yet acknowledged, by packet id.
    unacked: BTreeMap<u16, Unacked>,
    /// Every QoS 2 copy sent, by payload.
    qos2: HashMap<Bytes, Vec<Qos2Copy>>,
    /// Shared filters the session ever subscribed to (the paths a 3.1.1 delivery may take).
    shared_filters: BTreeSet<usize>,
    /// The client's own QoS 2 PUBLISHes not yet released (PUBREL).
    unreleased: Vec<Publish>,
    /// PUBRECs the client sent for ids it holds no QoS 2 message for: each is answered with a
    /// PUBREL (0x92 in v5; 3.1.1 has no reason code to tell it from a real one).
    stray_pubrecs: BTreeMap<u16, usize>,
}

/// A QoS 1/2 message sent to a client and not yet acknowledged.
struct Unacked {
    payload: Bytes,
    qos: QoS,
    /// PUBREC sent: the broker owes a PUBREL, never the PUBLISH again.
    pubrec_sent: bool,
    /// The broker's PUBREL came: the client owes PUBCOMP.
    pubrel_seen: bool,
}

/// One copy of a QoS 2 message sent to a session.
struct Qos2Copy {
    packet_id: u16,
    route: Route,
    pubrec_sent: bool,
}

/// The subscription a delivery came through, as its Subscription Identifiers tell it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Route {
    Direct,
    Shared(usize),
    Unknown,
}

impl World {
    fn new(setup: &Setup) -> Self {
        let limits = Limits {
            max_queued_messages: 8,
            max_inflight_messages: 4,
            receive_maximum: 4,
            max_offline_messages: usize::from(setup.max_offline % 24) + 1,
            max_queued_bytes: if setup.byte_bounds { 64 } else { 0 },
            max_offline_bytes: if setup.byte_bounds { 256 } else { 0 },
            pace_qos0: setup.pace_qos0,
            queue_qos0_messages: setup.queue_qos0_messages,
            max_session_expiry_interval: if setup.short_expiry { 30 } else { u32::MAX },
            max_subscriptions_per_client: 6,
            topic_alias_maximum: 2,
            ..Limits::default()
        };
        limits.validate().expect("valid limits");
        let store = setup.store.then(|| Arc::new(MemoryDurability::default()));
        let broker = build_broker(&limits, store.as_ref());
        let now = Instant::now();
        let clients =
            (0..CLIENTS.len()).map(|_| ClientState { conn: None, generation: 0, next_packet_id: 1 }).collect();
        Self {
            limits,
            store,
            broker,
            now,
            clients,
            sessions: HashMap::new(),
            shared_sent: HashMap::new(),
            congested: Vec::new(),
            next_payload: 0,
        }
    }

    fn apply(&mut self, op: &Op) {
        match *op {
            Op::Connect { client, v5, clean, expiry, keep_alive, ref will, receive_maximum, linger } => self.connect(
                client_index(client),
                v5,
                clean,
                expiry,
                keep_alive,
                will.as_ref(),
                receive_maximum,
                linger,
            ),
            Op::Subscribe { client, ref filters } => self.subscribe(client_index(client), filters),
            Op::Unsubscribe { client, ref filters } => {
                let c = client_index(client);
                let Some(packet_id) = self.packet_id(c) else { return };
                let filters: Vec<TopicFilter> =
                    filters.iter().take(4).map(|&f| TopicFilter::new(FILTERS[filter_index(f)]).unwrap()).collect();
                if filters.is_empty() {
                    return;
                }
                let packet = Packet::Unsubscribe(Unsubscribe { packet_id, filters, properties: Properties::default() });
                self.send(c, packet);
            }
            Op::Publish { client, topic, qos, retain, expiry, empty } => {
                let c = client_index(client);
                let Some(conn) = &self.clients[c].conn else { return };
                let v5 = conn.version.is_v5();
                let payload = if empty { Bytes::new() } else { self.payload("m") };
                let mut publish = publish(topic, qos, payload);
                publish.retain = retain;
                if v5 && expiry.is_some() {
                    publish.properties.message_expiry_interval = expiry.map(|e| u32::from(e % 30) + 1);
                }
                self.publish(c, vec![publish]);
            }
            Op::Burst { client, topic, qos, count } => {
                let c = client_index(client);
                if self.clients[c].conn.is_none() {
                    return;
                }
                let publishes = (0..count).map(|_| publish(topic, qos, self.payload("m"))).collect();
                self.publish(c, publishes);
            }
            Op::Ack { client, which } => {
                let c = client_index(client);
                let Some(generation) = self.clients[c].conn.as_ref().map(|conn| conn.generation) else { return };
                let model = self.sessions.entry((c, generation)).or_default();
                let due: Vec<(u16, AckKind)> =
                    model.unacked.iter().filter_map(|(&id, u)| Some((id, u.next_ack()?))).collect();
                if due.is_empty() {
                    return;
                }
                let (id, kind) = due[usize::from(which) % due.len()];
                self.ack(c, kind, id);
            }
            Op::Release { client, which } => {
                let c = client_index(client);
                let Some(generation) = self.clients[c].conn.as_ref().map(|conn| conn.generation) else { return };
                let unreleased = &self.sessions.entry((c, generation)).or_default().unreleased;
                if unreleased.is_empty() {
                    return;
                }
                let id = unreleased[usize::from(which) % unreleased.len()].packet_id.expect("QoS 2");
                self.ack(c, AckKind::PubRel, id.get());
            }
            Op::Resend { client, which } => {
                let c = client_index(client);
                let Some(generation) = self.clients[c].conn.as_ref().map(|conn| conn.generation) else { return };
                let unreleased = &self.sessions.entry((c, generation)).or_default().unreleased;
                if unreleased.is_empty() {
                    return;
                }
                let mut again = unreleased[usize::from(which) % unreleased.len()].clone();
                again.dup = true;
                self.publish(c, vec![again]);
            }
            Op::Bogus { client, kind, id } => self.ack(client_index(client), kind, id.max(1)),
            Op::Drain { client, ack } => self.drain(client_index(client), ack),
            Op::Ping { client } => self.send(client_index(client), Packet::PingReq),
            Op::Disconnect { client, with_will, expiry } => {
                let c = client_index(client);
                let Some(conn) = &self.clients[c].conn else { return };
                let v5 = conn.version.is_v5();
                let mut disconnect = Disconnect { reason: ReasonCode::SUCCESS, properties: Properties::default() };
                if v5 {
                    if with_will {
                        disconnect.reason = ReasonCode::DISCONNECT_WITH_WILL;
                    }
                    disconnect.properties.session_expiry_interval = expiry.map(Expiry::seconds);
                }
                self.send(c, Packet::Disconnect(disconnect));
            }
            Op::Drop { client } => {
                let c = client_index(client);
                if let Some(conn) = self.clients[c].conn.take() {
                    self.end(c, conn, CloseKind::Abnormal);
                }
            }
            Op::Advance(step) => {
                self.now += step.duration();
                self.broker.tick(self.now);
                self.broker.sweep_keep_alives(self.now);
            }
            Op::Shed { disconnect } => {
                for session in self.congested.drain(..) {
                    session.shed(disconnect);
                }
            }
            Op::StoreFull(full) => {
                self.broker.set_store_full(full);
            }
            Op::Restart => self.restart(),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn connect(
        &mut self,
        c: usize,
        v5: bool,
        clean: bool,
        expiry: Expiry,
        keep_alive: bool,
        will: Option<&WillSpec>,
        receive_maximum: Option<u8>,
        linger: Option<Linger>,
    ) {
        let version = if v5 { ProtocolVersion::V5 } else { ProtocolVersion::V311 };
        let mut connect = Connect {
            protocol: version,
            clean_start: clean,
            keep_alive: if keep_alive { 10 } else { 0 },
            client_id: MqttString::new(CLIENTS[c]).unwrap(),
            will: None,
            username: None,
            password: None,
            properties: Properties::default(),
        };
        if v5 {
            connect.properties.session_expiry_interval = Some(expiry.seconds()).filter(|&s| s > 0);
            connect.properties.receive_maximum = receive_maximum.map(|r| u16::from(r % 8) + 1);
        } else {
            // 3.1.1: a persistent session is clean session 0, and never expires.
            connect.clean_start = clean;
        }
        if let Some(spec) = will {
            let mut properties = Properties::default();
            if v5 {
                properties.will_delay_interval = spec.delay.map(|d| u32::from(d % 40));
            }
            connect.will = Some(Will {
                topic: TopicName::new(TOPICS[usize::from(spec.topic) % TOPICS.len()]).unwrap(),
                payload: self.payload("w"),
                qos: qos(spec.qos),
                retain: spec.retain,
                properties,
            });
        }
        let client_maximum = connect.properties.receive_maximum.unwrap_or(u16::MAX);
        let request = match self.broker.check_connect(Box::new(connect)) {
            Ok(request) => request,
            Err(_) => return,
        };
        let anonymous = AnonymousOnly { allow_anonymous: true };
        let verdict = match anonymous.authenticate(&request.credentials("fuzz")) {
            Decision::Now(verdict) => verdict,
            Decision::Later(_) => unreachable!("anonymous access is decided at once"),
        };
        let (connection, connack) =
            match ClientConnection::accept(&self.broker, request, verdict, &ConnectContext::default(), self.now) {
                ConnectOutcome::Accepted { connection, connack } => (connection, connack),
                ConnectOutcome::Refused(_) => return,
            };
        let client = &mut self.clients[c];
        if !connack.session_present {
            client.generation += 1;
        }
        let generation = client.generation;
        self.sessions.entry((c, generation)).or_default();
        let window = self.limits.outbound_window(client_maximum);
        let old = client.conn.replace(Conn { connection, out: BytesMut::new(), version, generation, window });
        // The connection taken over acts once more before it notices, then closes.
        if let Some(mut old) = old {
            if let Some(linger) = linger {
                self.linger(c, &mut old, linger);
            }
            self.read_out(c, &mut old);
            let kind = kicked_as(&old.connection).unwrap_or(CloseKind::TakenOver);
            self.end(c, old, kind);
        }
        // What the client holds unacknowledged: all of it is owed again.
        let owed: BTreeMap<u16, Bytes> = self.sessions[&(c, generation)]
            .unacked
            .iter()
            .map(|(&id, unacked)| (id, unacked.payload.clone()))
            .collect();
        let mut conn = self.clients[c].conn.take().expect("just connected");
        conn.connection.resume(self.now, &mut conn.out);
        let resent = self.read_out(c, &mut conn);
        self.clients[c].conn = Some(conn);
        if connack.session_present {
            self.check_resent(c, generation, &owed, resent);
        }
    }

    /// MQTT-4.4.0-1: every message the client has not acknowledged is sent again when its
    /// session resumes, from memory at once (`resume`) or, after a restart, from the queue it
    /// was restored into (the next drains), as far as the client's window allows.
    fn check_resent(&mut self, c: usize, generation: u64, owed: &BTreeMap<u16, Bytes>, mut resent: BTreeSet<u16>) {
        if owed.keys().all(|id| resent.contains(id)) {
            return;
        }
        for _ in 0..MAX_DRAIN_ROUNDS {
            let Some(mut conn) = self.clients[c].conn.take() else { return };
            let more = conn.connection.drain(self.now, &mut conn.out, usize::MAX);
            let mut read_back = false;
            if let Some(request) = conn.connection.read_back() {
                conn.connection.append_read_back(request.read()).expect("the store in memory cannot fail");
                read_back = true;
            }
            resent.extend(self.read_out(c, &mut conn));
            self.clients[c].conn = Some(conn);
            if !more && !read_back {
                break;
            }
        }
        let window = self.clients[c].conn.as_ref().map_or(0, |conn| conn.window);
        let missing: Vec<u16> = owed.keys().filter(|id| !resent.contains(id)).copied().collect();
        if owed.len() <= window {
            assert!(
                missing.is_empty(),
                "session {c}/{generation} resumed without resending {missing:?} (MQTT-4.4.0-1)"
            );
        }
    }

    fn linger(&mut self, c: usize, old: &mut Conn, linger: Linger) {
        match linger {
            Linger::Drain => {
                old.connection.drain(self.now, &mut old.out, usize::MAX);
            }
            Linger::AckAll => {
                self.read_out(c, old);
                let model = self.sessions.entry((c, old.generation)).or_default();
                let due: Vec<(u16, AckKind)> =
                    model.unacked.iter().filter_map(|(&id, u)| Some((id, u.next_ack()?))).collect();
                for (id, kind) in due {
                    let packet = self.note_ack(c, old.generation, kind, id);
                    let mut batch = ReadBatch::new();
                    let _ = old.connection.handle(packet, self.now, &mut batch, &mut old.out);
                    self.broker.end_batch(&mut batch);
                }
            }
            Linger::Publish { topic, qos: q } => {
                let mut publish = publish(topic, q, self.payload("m"));
                if publish.qos != QoS::AtMostOnce {
                    publish.packet_id = PacketId::new(60_000); // outside the ids the client model uses
                }
                let mut batch = ReadBatch::new();
                let _ = old.connection.handle(Packet::Publish(publish), self.now, &mut batch, &mut old.out);
                self.broker.end_batch(&mut batch);
            }
        }
    }

    fn subscribe(&mut self, c: usize, filters: &[(u8, u8, bool)]) {
        for &(f, q, no_local) in filters.iter().take(3) {
            let Some(conn) = &self.clients[c].conn else { return };
            let (v5, generation) = (conn.version.is_v5(), conn.generation);
            let Some(packet_id) = self.packet_id(c) else { return };
            let index = filter_index(f);
            let filter = FILTERS[index];
            if filter.starts_with("$share/") {
                self.sessions.entry((c, generation)).or_default().shared_filters.insert(index);
            }
            let mut properties = Properties::default();
            if v5 {
                properties.subscription_identifiers = vec![index as u32 + 1];
            }
            let options = SubscriptionOptions { qos: qos(q), no_local: v5 && no_local, ..Default::default() };
            let subscription = Subscription { filter: TopicFilter::new(filter).unwrap(), options };
            self.send(c, Packet::Subscribe(Subscribe { packet_id, subscriptions: vec![subscription], properties }));
        }
    }

    /// Sends `publishes` from client `c` in one read batch, giving each a packet id if it needs
    /// one and has none.
    fn publish(&mut self, c: usize, publishes: Vec<Publish>) {
        let Some(mut conn) = self.clients[c].conn.take() else { return };
        let mut batch = ReadBatch::new();
        let mut ended = None;
        for mut publish in publishes {
            if publish.qos != QoS::AtMostOnce && publish.packet_id.is_none() {
                publish.packet_id = Some(self.next_packet_id(c, conn.generation));
            }
            let new_qos2 = publish.qos == QoS::ExactlyOnce && !publish.dup;
            let kept = new_qos2.then(|| publish.clone());
            match conn.connection.handle(Packet::Publish(publish), self.now, &mut batch, &mut conn.out) {
                Ok(_) => {
                    // Accepted: the client holds it until it releases it.
                    let model = self.sessions.entry((c, conn.generation)).or_default();
                    model.unreleased.extend(kept);
                }
                Err(violation) => {
                    conn.connection.write_disconnect(violation.reason, Some(violation.detail), &mut conn.out);
                    ended = Some(CloseKind::Abnormal);
                    break;
                }
            }
        }
        self.broker.end_batch(&mut batch);
        conn.connection.heard(self.now);
        let congestion = batch.take_congestion();
        if !congestion.is_empty() {
            self.congested = congestion.subscribers;
        }
        self.read_out(c, &mut conn);
        match ended {
            Some(kind) => self.end(c, conn, kind),
            None => self.clients[c].conn = Some(conn),
        }
    }

    /// Sends one packet from client `c` as a read of its own.
    fn send(&mut self, c: usize, packet: Packet) {
        let Some(mut conn) = self.clients[c].conn.take() else { return };
        let mut batch = ReadBatch::new();
        let result = conn.connection.handle(packet, self.now, &mut batch, &mut conn.out);
        self.broker.end_batch(&mut batch);
        conn.connection.heard(self.now);
        self.read_out(c, &mut conn);
        match result {
            Ok(Flow::Continue) => self.clients[c].conn = Some(conn),
            Ok(Flow::Disconnect { with_will }) => {
                let kind = if with_will { CloseKind::NormalWithWill } else { CloseKind::Normal };
                self.end(c, conn, kind);
            }
            Err(violation) => {
                conn.connection.write_disconnect(violation.reason, Some(violation.detail), &mut conn.out);
                self.read_out(c, &mut conn);
                self.end(c, conn, CloseKind::Abnormal);
            }
        }
    }

    /// Client `c` sends the acknowledgement `kind` for packet id `id`, whatever it stands for.
    fn ack(&mut self, c: usize, kind: AckKind, id: u16) {
        let Some(generation) = self.clients[c].conn.as_ref().map(|conn| conn.generation) else { return };
        let packet = self.note_ack(c, generation, kind, id);
        self.send(c, packet);
    }

    /// Records in the client's model what sending `kind` for `id` does, and builds the packet.
    fn note_ack(&mut self, c: usize, generation: u64, kind: AckKind, id: u16) -> Packet {
        let model = self.sessions.entry((c, generation)).or_default();
        let response = PubResponse::success(PacketId::new(id).expect("non-zero"));
        match kind {
            AckKind::PubAck => {
                if model.unacked.get(&id).is_some_and(|u| u.qos == QoS::AtLeastOnce) {
                    model.unacked.remove(&id);
                }
                Packet::PubAck(response)
            }
            AckKind::PubRec => {
                match model.unacked.get_mut(&id).filter(|u| u.qos == QoS::ExactlyOnce) {
                    Some(unacked) => {
                        unacked.pubrec_sent = true;
                        if let Some(copies) = model.qos2.get_mut(&unacked.payload) {
                            for copy in copies.iter_mut().filter(|copy| copy.packet_id == id) {
                                copy.pubrec_sent = true;
                            }
                        }
                    }
                    None => *model.stray_pubrecs.entry(id).or_default() += 1,
                }
                Packet::PubRec(response)
            }
            AckKind::PubComp => {
                if model.unacked.get(&id).is_some_and(|u| u.pubrec_sent) {
                    model.unacked.remove(&id);
                }
                Packet::PubComp(response)
            }
            AckKind::PubRel => {
                model.unreleased.retain(|p| p.packet_id.map(PacketId::get) != Some(id));
                Packet::PubRel(response)
            }
        }
    }

    /// The client takes what its session has queued, reading back from the store as the
    /// server does; with `ack`, it acknowledges everything as it comes, until nothing more
    /// comes. Each drain must hand over no more than a queue can hold.
    fn drain(&mut self, c: usize, ack: bool) {
        let hard = self.limits.hard_queued_messages();
        for _ in 0..MAX_DRAIN_ROUNDS {
            let Some(mut conn) = self.clients[c].conn.take() else { return };
            let generation = conn.generation;
            self.read_out(c, &mut conn);
            conn.connection.drain(self.now, &mut conn.out, usize::MAX);
            let sent = count_publishes(&conn.out, conn.version);
            assert!(sent <= hard, "one drain handed over {sent} messages, above the hard bound {hard}");
            let mut read_back = false;
            if let Some(request) = conn.connection.read_back() {
                conn.connection.append_read_back(request.read()).expect("the store in memory cannot fail");
                read_back = true;
            }
            self.read_out(c, &mut conn);
            self.clients[c].conn = Some(conn);
            let due: Vec<(u16, AckKind)> = if ack {
                let model = self.sessions.entry((c, generation)).or_default();
                model.unacked.iter().filter_map(|(&id, u)| Some((id, u.next_ack()?))).collect()
            } else {
                Vec::new()
            };
            if sent == 0 && !read_back && due.is_empty() {
                return;
            }
            for (id, kind) in due {
                self.ack(c, kind, id);
            }
        }
    }

    /// Decodes and checks everything the broker wrote to `conn`; returns the packet ids it
    /// resent (DUP PUBLISHes and PUBRELs), for [`World::check_resent`].
    fn read_out(&mut self, c: usize, conn: &mut Conn) -> BTreeSet<u16> {
        let mut resent = BTreeSet::new();
        loop {
            let packet = match decode_packet(&mut conn.out, conn.version, usize::MAX) {
                Ok(Some(packet)) => packet,
                Ok(None) => {
                    assert!(conn.out.is_empty(), "the broker wrote a partial packet");
                    break;
                }
                Err(error) => panic!("the broker wrote a packet that does not decode: {error}"),
            };
            trace(|| format!("  {c}/{} <- {packet:?}", conn.generation));
            match packet {
                Packet::Publish(publish) => {
                    if publish.dup {
                        resent.extend(publish.packet_id.map(PacketId::get));
                    }
                    self.received(c, conn.generation, conn.version, &publish);
                }
                Packet::PubRel(release) => {
                    let id = release.packet_id.get();
                    let model = self.sessions.entry((c, conn.generation)).or_default();
                    if let Some(stray) = model.stray_pubrecs.get_mut(&id) {
                        *stray -= 1;
                        if *stray == 0 {
                            model.stray_pubrecs.remove(&id);
                        }
                        continue; // the answer to a PUBREC for an id the broker did not send
                    }
                    resent.insert(id);
                    match model.unacked.get_mut(&id) {
                        Some(unacked) if unacked.pubrec_sent => unacked.pubrel_seen = true,
                        _ => panic!("PUBREL {id} to session {c}/{} that sent no PUBREC for it", conn.generation),
                    }
                }
                Packet::PubRec(rec) if rec.reason.is_error() => {
                    let model = self.sessions.entry((c, conn.generation)).or_default();
                    model.unreleased.retain(|p| p.packet_id != Some(rec.packet_id));
                }
                _ => {}
            }
        }
        resent
    }

    /// Checks a PUBLISH the broker sent to session (c, generation) and records it.
    fn received(&mut self, c: usize, generation: u64, version: ProtocolVersion, publish: &Publish) {
        let model = self.sessions.entry((c, generation)).or_default();
        let session = format!("session {c}/{generation}");
        if let Some(id) = publish.packet_id.map(PacketId::get) {
            match model.unacked.get(&id) {
                Some(_) if !publish.dup => {
                    panic!("{session}: new PUBLISH with packet id {id}, still held by an unacknowledged message")
                }
                Some(held) => {
                    assert_eq!(held.payload, publish.payload, "{session}: DUP resend {id} carries another message");
                    assert!(!held.pubrec_sent, "{session}: PUBLISH {id} resent after its PUBREC (MQTT-4.3.3-6)");
                }
                None => {
                    model.unacked.insert(id, Unacked::sent(publish));
                }
            }
        }
        if publish.qos != QoS::ExactlyOnce || publish.retain || publish.payload.is_empty() {
            return;
        }
        let id = publish.packet_id.expect("QoS 2 has a packet id").get();
        let route = if version.is_v5() {
            let ids = &publish.properties.subscription_identifiers;
            let shared = ids
                .iter()
                .filter_map(|&s| (s as usize).checked_sub(1))
                .find(|&f| FILTERS.get(f).is_some_and(|filter| filter.starts_with("$share/")));
            match shared {
                Some(shared) => Route::Shared(shared),
                None if ids.is_empty() => Route::Unknown,
                None => Route::Direct,
            }
        } else {
            Route::Unknown
        };
        let topic = &publish.topic;
        let paths = 1 + model
            .shared_filters
            .iter()
            .filter(|&&f| filters::matches(FILTERS[f].splitn(3, '/').nth(2).expect("a shared filter"), topic))
            .count();
        let copies = model.qos2.entry(publish.payload.clone()).or_default();
        if publish.dup && copies.iter().any(|copy| copy.packet_id == id && !copy.pubrec_sent) {
            return; // a resend before PUBREC
        }
        let payload = String::from_utf8_lossy(&publish.payload);
        assert!(
            !copies.iter().any(|copy| copy.packet_id == id && copy.pubrec_sent),
            "{session}: QoS 2 message {payload} sent again after its PUBREC"
        );
        assert!(
            route == Route::Unknown || !copies.iter().any(|copy| copy.route == route),
            "{session}: QoS 2 message {payload} sent twice through one subscription ({route:?})"
        );
        assert!(
            copies.len() < paths,
            "{session}: QoS 2 message {payload} sent {} times, over {paths} paths",
            copies.len() + 1
        );
        copies.push(Qos2Copy { packet_id: id, route, pubrec_sent: false });
        if let Route::Shared(filter) = route {
            let first = *self.shared_sent.entry((filter, publish.payload.clone())).or_insert((c, generation));
            assert_eq!(
                first,
                (c, generation),
                "QoS 2 message {payload} of {} sent to session {c}/{generation} after session {}/{} (MQTT-4.8.2-5)",
                FILTERS[filter],
                first.0,
                first.1
            );
        }
    }

    /// Ends a connection as the server would after `kind`.
    fn end(&mut self, c: usize, mut conn: Conn, kind: CloseKind) {
        self.read_out(c, &mut conn);
        conn.connection.close(kind, self.now);
    }

    /// Closes the connections the broker kicked (taken over, keep alive, shed), as their
    /// drivers would when they see the kick.
    fn close_kicked(&mut self) {
        for c in 0..self.clients.len() {
            let kind = self.clients[c].conn.as_ref().and_then(|conn| kicked_as(&conn.connection));
            if let Some(kind) = kind {
                let conn = self.clients[c].conn.take().expect("checked");
                self.end(c, conn, kind);
            }
        }
    }

    /// Stops the broker (every connection closes as at shutdown) and starts a new one from what
    /// the store holds.
    fn restart(&mut self) {
        let Some(store) = self.store.clone() else { return };
        self.broker.shut_down();
        for c in 0..self.clients.len() {
            if let Some(conn) = self.clients[c].conn.take() {
                self.end(c, conn, CloseKind::ServerShutdown);
            }
        }
        self.congested.clear();
        self.broker = build_broker(&self.limits, Some(&store));
        self.broker.restore(store.recovered(), self.now);
    }

    /// The invariants that hold between operations.
    fn check(&self) {
        assert!(self.broker.session_count() <= CLIENTS.len(), "more sessions than clients");
        let Some(store) = &self.store else { return };
        let bound = self.limits.hard_queued_messages().max(self.limits.max_offline_messages)
            + usize::from(self.limits.max_inflight_messages);
        for client in CLIENTS {
            let stored = store.delivery_count(client);
            assert!(stored <= bound, "{client} has {stored} deliveries stored, above {bound}");
        }
        let unreferenced = store.unreferenced_messages();
        assert!(unreferenced.is_empty(), "stored messages nothing refers to: {unreferenced:?}");
        let dangling = store.dangling_retained();
        assert!(dangling.is_empty(), "retained topics whose message is not stored: {dangling:?}");
    }

    /// A packet id for client `c` that none of its unreleased QoS 2 messages holds.
    fn packet_id(&mut self, c: usize) -> Option<PacketId> {
        let generation = self.clients[c].conn.as_ref()?.generation;
        Some(self.next_packet_id(c, generation))
    }

    /// The next packet id of client `c` in session `generation` that none of its unreleased
    /// QoS 2 messages holds.
    fn next_packet_id(&mut self, c: usize, generation: u64) -> PacketId {
        let unreleased = &self.sessions.entry((c, generation)).or_default().unreleased;
        let client = &mut self.clients[c];
        loop {
            let id = PacketId::new(client.next_packet_id).expect("non-zero");
            client.next_packet_id = client.next_packet_id.checked_add(1).filter(|&n| n < 60_000).unwrap_or(1);
            if !unreleased.iter().any(|p| p.packet_id == Some(id)) {
                return id;
            }
        }
    }

    /// A payload no other message has.
    fn payload(&mut self, prefix: &str) -> Bytes {
        self.next_payload += 1;
        Bytes::from(format!("{prefix}{}", self.next_payload))
    }
}

impl Unacked {
    /// The client's record of `publish`, just received.
    fn sent(publish: &Publish) -> Self {
        Self { payload: publish.payload.clone(), qos: publish.qos, pubrec_sent: false, pubrel_seen: false }
    }

    /// The acknowledgement the client owes next, if it owes one now.
    fn next_ack(&self) -> Option<AckKind> {
        match (self.qos, self.pubrec_sent, self.pubrel_seen) {
            (QoS::AtLeastOnce, _, _) => Some(AckKind::PubAck),
            (QoS::ExactlyOnce, false, _) => Some(AckKind::PubRec),
            (QoS::ExactlyOnce, true, true) => Some(AckKind::PubComp),
            _ => None,
        }
    }
}

/// Prints what `line` says when `MIDGE_FUZZ_TRACE` is set: to follow a reproducer.
fn trace(line: impl FnOnce() -> String) {
    static ON: OnceLock<bool> = OnceLock::new();
    if *ON.get_or_init(|| std::env::var_os("MIDGE_FUZZ_TRACE").is_some()) {
        eprintln!("{}", line());
    }
}

fn build_broker(limits: &Limits, store: Option<&Arc<MemoryDurability>>) -> Arc<Broker> {
    match store {
        Some(store) => Broker::with_store_and_queues(
            limits.clone(),
            Arc::clone(store) as Arc<dyn Durability>,
            Arc::clone(store) as Arc<dyn QueueSource>,
        ),
        None => Broker::new(limits.clone()),
    }
}

/// How the server closes a kicked connection (`conn/driver.rs`), or `None` if it was not kicked.
fn kicked_as(connection: &ClientConnection) -> Option<CloseKind> {
    if !connection.kick().is_kicked() {
        return None;
    }
    let mut cx = Context::from_waker(Waker::noop());
    let reason = match connection.kick().poll_signal(&mut cx) {
        Poll::Ready(Signal::Kicked(reason)) => reason,
        // The kick's ring was taken by an earlier poll; the reason stays set.
        _ => ReasonCode::ADMINISTRATIVE_ACTION,
    };
    Some(match reason {
        ReasonCode::SESSION_TAKEN_OVER => CloseKind::TakenOver,
        ReasonCode::SERVER_SHUTTING_DOWN => CloseKind::ServerShutdown,
        _ => CloseKind::Abnormal,
    })
}

fn count_publishes(out: &BytesMut, version: ProtocolVersion) -> usize {
    let mut copy = out.clone();
    std::iter::from_fn(|| decode_packet(&mut copy, version, usize::MAX).ok().flatten())
        .filter(|p| matches!(p, Packet::Publish(_)))
        .count()
}

fn publish(topic: u8, q: u8, payload: Bytes) -> Publish {
    Publish {
        dup: false,
        qos: qos(q),
        retain: false,
        topic: TopicName::new(TOPICS[usize::from(topic) % TOPICS.len()]).unwrap(),
        packet_id: None,
        properties: Properties::default(),
        payload,
    }
}

fn qos(q: u8) -> QoS {
    QoS::from_u8(q % 3).expect("0, 1 or 2")
}

fn client_index(client: u8) -> usize {
    usize::from(client) % CLIENTS.len()
}

fn filter_index(filter: u8) -> usize {
    usize::from(filter) % FILTERS.len()
}
