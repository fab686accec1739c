//! `--sn-port`: a publisher that speaks MQTT-SN 1.2 over UDP to the broker's gateway, so a run
//! measures sensors publishing through the gateway to MQTT subscribers.
//!
//! It connects (CONNECT/CONNACK, Clean Session), registers its topic (REGISTER/REGACK) and
//! publishes with the topic id: QoS 0 as datagrams that nothing acknowledges (UDP drops what a
//! full socket buffer cannot take; the subscribers count it as lost), QoS 1 keeping `--inflight`
//! messages unacknowledged and sending again, with the DUP flag, one not acknowledged within
//! [`RETRY`] (MQTT-SN 1.2 6.13's Tretry). Every wait for the gateway is bounded.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use midge_client::codec::QoS;
use midge_sn_codec::{
    decode, encode, ClientId, Connect, Message, MsgId, PubAck, Publish, PublishTopic, QoS as SnQoS, RegAck, Register,
    TopicId, TopicName,
};
use tokio::net::UdpSocket;
use tokio::time::{sleep_until, timeout, Instant};

use super::payload;
use super::publisher::Link;

/// How long a QoS 1 message waits for its PUBACK before it is sent again.
const RETRY: Duration = Duration::from_secs(2);
/// How long the gateway may take to answer CONNECT or REGISTER, per attempt.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(3);
/// Attempts at CONNECT and REGISTER before giving up.
const ATTEMPTS: usize = 3;
/// The largest datagram it reads: gateways answer with a few bytes.
const RECEIVE_BUFFER: usize = 1500;

/// A QoS 1 message sent and not yet acknowledged.
struct InFlight {
    msg_id: u16,
    /// The bench's sequence number in the payload.
    seq: u32,
    sent_at: Instant,
    datagram: Bytes,
}

/// An MQTT-SN client publishing on one registered topic.
pub struct SnLink {
    socket: UdpSocket,
    topic_id: TopicId,
    next_msg_id: u16,
    /// Datagrams queued by `publish`, sent by `flush`.
    queued: VecDeque<Bytes>,
    /// QoS 1 messages awaiting PUBACK, oldest first.
    in_flight: VecDeque<InFlight>,
    buffer: BytesMut,
    receive: Vec<u8>,
}

impl SnLink {
    /// Connects as `client_id` to the gateway at `host:port` and registers `topic`.
    pub async fn connect(host: &str, port: u16, client_id: String, topic: &str) -> Result<Self, String> {
        let gateway = tokio::net::lookup_host((host, port))
            .await
            .ok()
            .and_then(|mut addresses| addresses.next())
            .ok_or_else(|| format!("cannot resolve {host}"))?;
        let local: SocketAddr =
            if gateway.is_ipv4() { (Ipv4Addr::UNSPECIFIED, 0).into() } else { (Ipv6Addr::UNSPECIFIED, 0).into() };
        let socket = UdpSocket::bind(local).await.map_err(|error| format!("UDP socket: {error}"))?;
        socket.connect(gateway).await.map_err(|error| format!("gateway {gateway}: {error}"))?;
        let mut link = Self {
            socket,
            topic_id: TopicId(0),
            next_msg_id: 0,
            queued: VecDeque::new(),
            in_flight: VecDeque::new(),
            buffer: BytesMut::new(),
            receive: vec![0; RECEIVE_BUFFER],
        };
        let client_id = ClientId::new(client_id).ok_or("client id too long for MQTT-SN")?;
        let connect = Message::Connect(Connect { will: false, clean_session: true, duration: 600, client_id });
        link.ask(&connect, |message| match message {
            Message::ConnAck { return_code } if return_code.is_accepted() => Some(Ok(())),
            Message::ConnAck { return_code } => Some(Err(format!("CONNECT refused: {return_code}"))),
            _ => None,
        })
        .await?;
        let msg_id = link.msg_id();
        let topic_name = TopicName::new(topic).ok_or("topic too long for MQTT-SN")?;
        let register = Message::Register(Register { topic_id: TopicId(0), msg_id: MsgId(msg_id), topic_name });
        link.topic_id = link
            .ask(&register, |message| match message {
                Message::RegAck(RegAck { topic_id, msg_id: MsgId(id), return_code }) if id == msg_id => {
                    Some(if return_code.is_accepted() {
                        Ok(topic_id)
                    } else {
                        Err(format!("REGISTER refused: {return_code}"))
                    })
                }
                _ => None,
            })
            .await?;
        Ok(link)
    }

    /// Sends `message` until `answer` recognises a reply, [`ATTEMPTS`] times at most.
    async fn ask<T>(
        &mut self,
        message: &Message,
        answer: impl Fn(Message) -> Option<Result<T, String>>,
    ) -> Result<T, String> {
        let datagram = self.encode(message)?;
        for _ in 0..ATTEMPTS {
            self.socket.send(&datagram).await.map_err(|error| error.to_string())?;
            let deadline = Instant::now() + ANSWER_TIMEOUT;
            while let Ok(received) = timeout(deadline - Instant::now(), self.socket.recv(&mut self.receive)).await {
                let length = received.map_err(|error| error.to_string())?;
                if let Some(result) = decode(&self.receive[..length]).ok().and_then(&answer) {
                    return result;
                }
            }
        }
        Err(format!("no answer from the gateway to {} after {ATTEMPTS} attempts", message.msg_type().name()))
    }

    fn encode(&mut self, message: &Message) -> Result<Bytes, String> {
        encode(message, &mut self.buffer).map_err(|error| error.to_string())?;
        Ok(self.buffer.split().freeze())
    }

    /// The next message id: 1..=65535, never 0.
    fn msg_id(&mut self) -> u16 {
        self.next_msg_id = self.next_msg_id.checked_add(1).unwrap_or(1);
        self.next_msg_id
    }

    /// Sends again, with the DUP flag, every QoS 1 message older than [`RETRY`].
    async fn retransmit(&mut self) -> Result<(), String> {
        let now = Instant::now();
        for entry in self.in_flight.iter_mut().take_while(|entry| now >= entry.sent_at + RETRY) {
            let mut datagram = BytesMut::from(&entry.datagram[..]);
            // The Flags octet follows the Length (one octet, or 0x01 and two more: 5.2.1) and
            // the MsgType; DUP is its top bit.
            let flags = if datagram[0] == 0x01 { 4 } else { 2 };
            datagram[flags] |= 0x80;
            self.socket.send(&datagram).await.map_err(|error| error.to_string())?;
            entry.sent_at = now;
        }
        // Keep the queue ordered by send time: the resent ones move to the back.
        let resent = self.in_flight.iter().take_while(|entry| entry.sent_at == now).count();
        self.in_flight.rotate_left(resent);
        Ok(())
    }
}

impl Link for SnLink {
    fn publish(&mut self, payload: Bytes, qos: QoS) -> Result<(), String> {
        let (qos, msg_id) = match qos {
            QoS::AtMostOnce => (SnQoS::AtMostOnce, 0),
            QoS::AtLeastOnce => (SnQoS::AtLeastOnce, self.msg_id()),
            QoS::ExactlyOnce => return Err("MQTT-SN publishers publish at QoS 0 or 1".into()),
        };
        let seq = payload::parse(&payload).map_or(0, |header| header.seq);
        let publish = Message::Publish(Publish {
            dup: false,
            qos,
            retain: false,
            topic: PublishTopic::Normal(self.topic_id),
            msg_id: MsgId(msg_id),
            data: payload,
        });
        let datagram = self.encode(&publish)?;
        if msg_id != 0 {
            self.in_flight.push_back(InFlight { msg_id, seq, sent_at: Instant::now(), datagram: datagram.clone() });
        }
        self.queued.push_back(datagram);
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), String> {
        // One at a time, removed once sent: a flush cancelled half-way loses nothing.
        while let Some(datagram) = self.queued.front() {
            self.socket.send(datagram).await.map_err(|error| error.to_string())?;
            self.queued.pop_front();
        }
        Ok(())
    }

    async fn acknowledged(&mut self) -> Result<bool, String> {
        self.flush().await?;
        loop {
            let retry = self.in_flight.front().map(|entry| entry.sent_at + RETRY);
            tokio::select! {
                received = self.socket.recv(&mut self.receive) => {
                    let length = received.map_err(|error| error.to_string())?;
                    match decode(&self.receive[..length]) {
                        Ok(Message::PubAck(PubAck { msg_id: MsgId(id), return_code, .. })) => {
                            if let Some(position) = self.in_flight.iter().position(|entry| entry.msg_id == id) {
                                self.in_flight.remove(position);
                                return Ok(!return_code.is_accepted());
                            }
                        }
                        Ok(Message::Disconnect { .. }) => return Err("the gateway sent DISCONNECT".into()),
                        _ => {}
                    }
                }
                () = sleep_until(retry.unwrap_or_else(Instant::now)), if retry.is_some() => self.retransmit().await?,
            }
        }
    }

    fn unacknowledged(&self) -> usize {
        self.in_flight.len()
    }

    fn unacknowledged_seqs(&self) -> Vec<u32> {
        self.in_flight.iter().map(|entry| entry.seq).collect()
    }

    async fn close(&mut self) {
        if let Ok(datagram) = self.encode(&Message::Disconnect { duration: None }) {
            let _ = self.socket.send(&datagram).await;
        }
    }
}
