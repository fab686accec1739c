//! The reader task of one MQTT-SN socket: every datagram is decoded here and handed to the task
//! of the client at its source address, or handled here when it needs no client (SEARCHGW, a
//! PUBLISH at QoS -1) or starts one (CONNECT).
//!
//! The reader never waits on a client: each client's task has a bounded channel of
//! [`SN_INBOX`] datagrams, and what does not fit is dropped and counted, as a lossy network
//! would drop it. Answers sent from here (GWINFO, a CONNACK refusing a client) are never longer
//! than what they answer, and malformed datagrams are never answered, so a forged source
//! address gets no more traffic than it sent.
//!
//! A forwarder (MQTT-SN 1.2 section 5.5) relays the messages of clients on a wireless network
//! that has no UDP, each inside an Encapsulated message with the client's Wireless Node Id. The
//! reader unwraps it and treats the node as a client of its own ([`Peer`]: the forwarder's
//! address and the node's id), whose every answer goes back to the forwarder encapsulated with
//! the same node id and Radius; the client's task never sees the difference.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use midge_broker::ports::access::{AccessCache, Action};
use midge_broker::ports::auth::{Credentials, Decision, Verdict};
use midge_codec::{Properties, QoS};
use midge_sn_codec::{Connect, Message, Publish, PublishTopic, QoS as SnQoS, ReturnCode};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use super::counters::SnCounters;
use super::{client, Link, Peer, Shared};
use crate::config::ListenerConfig;
use crate::gate::ConnectionGate;
use crate::limits::{SN_GWINFO_PER_SECOND, SN_INBOX, SN_MAX_DATAGRAM};
use crate::listener::{read, Counters, Current};
use crate::rate::TokenBucket;

/// The reader of one socket of an MQTT-SN listener.
pub(crate) struct Gateway {
    /// The listener's config as it started (its `bind`; `max_connections` is read from
    /// `current`, which a reload may change).
    pub(crate) config: ListenerConfig,
    pub(crate) socket: Arc<UdpSocket>,
    pub(crate) shared: Arc<Shared>,
    /// What new clients are given (the broker, the authenticator and authorizer, the store's
    /// writer); a reload swaps it.
    pub(crate) current: Arc<RwLock<Current>>,
    /// The listener's counters: clients accepted, refused at `max_connections`, receive errors.
    pub(crate) counters: Arc<Counters>,
    /// The listener's client tasks: their number is its count of open connections.
    pub(crate) connections: TaskTracker,
    /// The limits every listener shares.
    pub(crate) gate: Arc<ConnectionGate>,
}

/// A client task, as the reader knows it.
struct Entry {
    inbox: mpsc::Sender<Message>,
    /// Which task it is: an address's task that ended may already have been replaced.
    id: u64,
}

/// The reader's state besides its settings.
struct Clients {
    /// GWINFOs it may send now ([`SN_GWINFO_PER_SECOND`]).
    gwinfo: TokenBucket,
    by_peer: HashMap<Peer, Entry>,
    /// Where client tasks say they ended, and hand back what they were sent too late.
    events: mpsc::UnboundedSender<Event>,
    last_id: u64,
}

/// What a client's task tells the reader as it ends.
enum Event {
    /// Task `id` for `peer` is over: its entry goes (unless another task has the address now),
    /// which closes its channel.
    Ended { peer: Peer, id: u64 },
    /// A message from `peer` that reached its task after it had ended: handled as if the
    /// address had no client (a client that DISCONNECTs and CONNECTs again at once is served).
    /// `radius` is the Radius of its encapsulation, if a forwarder relayed it.
    Returned { peer: Peer, radius: u8, message: Message },
}

impl Gateway {
    /// Reads until told to stop (or the listener's handle is dropped). Client tasks end when
    /// their channel closes with the reader.
    pub(crate) async fn run(self, mut stop: watch::Receiver<bool>) {
        let (events, mut events_rx) = mpsc::unbounded_channel();
        let gwinfo = TokenBucket::new(SN_GWINFO_PER_SECOND, Instant::now());
        let mut clients = Clients { gwinfo, by_peer: HashMap::new(), events, last_id: 0 };
        // One datagram at most; reused for every one.
        let mut buffer = vec![0u8; SN_MAX_DATAGRAM + 1];
        loop {
            tokio::select! {
                received = self.socket.recv_from(&mut buffer) => match received {
                    Ok((len, peer)) => self.datagram(&buffer[..len], peer, &mut clients),
                    Err(error) => {
                        self.counters.accept_errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        tracing::debug!(listener = self.shared.listener, %error, "mqtt-sn: receive failed");
                    }
                },
                Some(event) = events_rx.recv() => match event {
                    Event::Ended { peer, id } => {
                        if clients.by_peer.get(&peer).is_some_and(|entry| entry.id == id) {
                            clients.by_peer.remove(&peer);
                        }
                    }
                    Event::Returned { peer, radius, message } => self.dispatch(message, peer, radius, &mut clients),
                },
                _ = stop.changed() => break,
            }
        }
        info!(listener = self.shared.listener, bind = %self.config.bind, "listener closed");
    }

    /// One datagram from `addr`: a client's message, or one a forwarder relays for a client
    /// behind it (5.5), unwrapped.
    fn datagram(&self, datagram: &[u8], addr: SocketAddr, clients: &mut Clients) {
        // Counted as an MQTT connection's reads are ($SYS bytes and packets, /metrics).
        let stats = self.gate.broker().stats();
        stats.bytes_received.add(datagram.len() as u64);
        stats.packets_received.add(1);
        match midge_sn_codec::decode(datagram) {
            Ok(Message::Encapsulated(encapsulated)) => {
                let peer = Peer { addr, node: Some(encapsulated.wireless_node_id) };
                self.dispatch(*encapsulated.message, peer, encapsulated.radius, clients)
            }
            Ok(message) => self.dispatch(message, Peer::direct(addr), 0, clients),
            Err(error) => {
                SnCounters::drop(&self.shared.counters.malformed, "malformed datagram dropped", &addr, &error)
            }
        }
    }

    /// One message from `peer` (relayed by a forwarder with `radius`, if `peer` has a node):
    /// to its client's task, or handled here.
    fn dispatch(&self, mut message: Message, peer: Peer, radius: u8, clients: &mut Clients) {
        let counters = &self.shared.counters;
        if let Message::SearchGw { .. } = message {
            // 6.1: answered by the gateway itself (GwAdd empty), whoever asks, within the bound.
            let now = Instant::now();
            if clients.gwinfo.available(now) == 0 {
                return SnCounters::drop(
                    &counters.searches_limited,
                    "SEARCHGW over the GWINFO rate dropped",
                    &peer,
                    &"",
                );
            }
            clients.gwinfo.take(1, now);
            let gw_id = self.shared.settings.gateway_id;
            return self.reply(&Message::GwInfo { gw_id, gw_add: bytes::Bytes::new() }, &peer, radius);
        }
        if let Some(entry) = clients.by_peer.get(&peer) {
            match entry.inbox.try_send(message) {
                Ok(()) => return,
                Err(mpsc::error::TrySendError::Full(dropped)) => {
                    let kind = dropped.msg_type();
                    return SnCounters::drop(&counters.inbox_full, "client busy, message dropped", &peer, &kind);
                }
                Err(mpsc::error::TrySendError::Closed(returned)) => {
                    // Its task is ending: the message is for whatever comes next.
                    clients.by_peer.remove(&peer);
                    message = returned;
                }
            }
        }
        match message {
            Message::Connect(connect) => self.admit(connect, peer, radius, clients),
            Message::Publish(publish) if publish.qos == SnQoS::MinusOne => self.publish_minus_one(publish, &peer),
            other => {
                let kind = other.msg_type();
                SnCounters::drop(&counters.unconnected, "message from an address without a connection", &peer, &kind)
            }
        }
    }

    /// A CONNECT from an address without a client: a task for it, unless the listener has
    /// `max_connections` clients or the shared limits say no (then CONNACK "rejected:
    /// congestion", shorter than the CONNECT).
    fn admit(&self, connect: Connect, peer: Peer, radius: u8, clients: &mut Clients) {
        let now = Instant::now();
        let max_connections = read(&self.current).config.max_connections;
        if let Some(max) = max_connections.get() {
            if self.connections.len() >= max {
                self.gate.broker().stats().limits.listener_max_connections.hit(now);
                if let Some(report) = self.counters.refused_max_connections.hit(now) {
                    warn!(
                        listener = self.shared.listener, bind = %self.config.bind, max_connections = max,
                        refused = report.since_last, total = report.total, %peer,
                        "listener full: refusing new MQTT-SN clients (max_connections)"
                    );
                }
                return self.reply(&Message::ConnAck { return_code: ReturnCode::REJECTED_CONGESTION }, &peer, radius);
            }
        }
        // The shared limits count a forwarder's nodes as its address's.
        if !self.gate.admit(peer.addr, now) {
            return self.reply(&Message::ConnAck { return_code: ReturnCode::REJECTED_CONGESTION }, &peer, radius);
        }
        self.counters.accepted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (inbox, inbox_rx) = mpsc::channel(SN_INBOX);
        clients.last_id += 1;
        let id = clients.last_id;
        clients.by_peer.insert(peer.clone(), Entry { inbox, id });
        let context = Arc::clone(&read(&self.current).context);
        let broker = Arc::clone(self.gate.broker());
        let link = Link { socket: Arc::clone(&self.socket), peer: peer.clone(), radius, broker };
        let events = clients.events.clone();
        let shared = Arc::clone(&self.shared);
        self.connections.spawn(async move {
            let mut inbox = client::serve(connect, link, inbox_rx, shared, context).await;
            // Its entry goes first, then what was sent to it meanwhile comes back: nothing sent
            // to the address is lost to a task that was ending.
            let _ = events.send(Event::Ended { peer: peer.clone(), id });
            while let Some(message) = inbox.recv().await {
                let _ = events.send(Event::Returned { peer: peer.clone(), radius, message });
            }
        });
    }

    /// 6.8: a PUBLISH at QoS -1 needs no connection, only a predefined topic id or a short
    /// topic name; it is published at QoS 0 as an anonymous client's, if the listener lets
    /// anonymous clients publish to its topic. Never answered.
    fn publish_minus_one(&self, publish: Publish, peer: &Peer) {
        let counter = &self.shared.counters.minus_one_refused;
        let name = match &publish.topic {
            PublishTopic::Predefined(id) => self.shared.predefined.name(id.0),
            PublishTopic::Short(name) => name.as_str(),
            PublishTopic::Normal(_) => None,
        };
        let Some(topic) = name.and_then(|name| midge_codec::TopicName::new(name).ok()) else {
            let topic = publish.topic;
            return SnCounters::drop(
                counter,
                "QoS -1 PUBLISH to an unknown topic dropped",
                peer,
                &format!("{topic:?}"),
            );
        };
        let context = Arc::clone(&read(&self.current).context);
        let peer_text = peer.to_string();
        let credentials =
            Credentials { client_id: "", username: None, password: None, peer: &peer_text, certificate_subject: None };
        let identity = match context.authenticator.authenticate(&credentials) {
            Decision::Now(Verdict::Allow(identity)) => identity,
            _ => return SnCounters::drop(counter, "QoS -1 PUBLISH refused: anonymous clients may not", peer, &topic),
        };
        if let Some(mut access) = AccessCache::new(context.authorizer.clone(), identity, Arc::from("")) {
            if !access.allows(Action::Publish, &topic) {
                return SnCounters::drop(counter, "QoS -1 PUBLISH refused by the ACL", peer, &topic);
            }
        }
        let message = midge_codec::Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: publish.retain,
            topic,
            packet_id: None,
            properties: Properties::default(),
            payload: publish.data,
        };
        if let Err(why) = context.broker.publish_unconnected(&message, &peer_text, Instant::now()) {
            SnCounters::drop(counter, "QoS -1 PUBLISH refused", peer, &why);
        }
    }

    /// Sends an answer from the reader without waiting (encapsulated for a client behind a
    /// forwarder: no longer than the message it answers, encapsulated alike): a datagram the
    /// socket cannot take now is lost, as the network may lose any.
    fn reply(&self, message: &Message, peer: &Peer, radius: u8) {
        if let Some(datagram) = super::datagram(message, peer, radius) {
            match self.socket.try_send_to(&datagram, peer.addr) {
                Ok(sent) => super::count_sent(self.gate.broker(), sent),
                Err(error) => tracing::debug!(%peer, %error, "mqtt-sn: answer not sent"),
            }
        }
    }
}
