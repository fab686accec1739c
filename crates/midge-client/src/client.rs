//! The async driver: owns the transport, the read and write buffers and the keep alive timer,
//! and feeds the [`Session`] state machine.
//!
//! There is no background task. Requests (`publish`, `subscribe`, ...) encode straight into the
//! write buffer and return; [`Client::poll`] writes what is buffered, reads, answers, keeps the
//! link alive and hands out one [`Event`] at a time. So many publishes cost one write syscall,
//! a published message is never copied into a channel, and a caller that wants concurrency
//! `select!`s on `poll` next to its own input.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use midge_codec::{
    decode_packet, ConnAck, Connect, Disconnect, MqttString, Packet, PacketId, Properties, PublishHeader, QoS,
    Subscription, TopicFilter, TopicName,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::{sleep_until, Instant};

use crate::error::Error;
use crate::options::ConnectOptions;
use crate::session::{Event, Session, Tracer};
use crate::transport::{self, Link};

/// Spare room kept in the read buffer before each read: one read takes up to this much, so a
/// burst of small packets is decoded from one syscall.
const READ_CHUNK: usize = 16 * 1024;

/// An MQTT connection to one broker. See the module documentation for how it is driven.
pub struct Client {
    /// How to connect, kept for reconnecting.
    options: ConnectOptions,
    /// Protocol state.
    session: Session,
    /// The transport while connected.
    link: Option<Link>,
    /// Bytes read and not yet decoded.
    read: BytesMut,
    /// Bytes encoded and not yet written. Lives here, not in a future, so a `poll` cancelled
    /// by `select!` loses nothing.
    write: BytesMut,
    /// The CONNACK of the current (or last) connection.
    connack: ConnAck,
    /// The keep alive in force: the broker's Server Keep Alive if it sent one (v5), else ours.
    keep_alive: Option<Duration>,
    /// When bytes were last written; a PINGREQ is due one keep alive after it (MQTT-3.1.2-23).
    last_sent: Instant,
    /// When the unanswered PINGREQ was sent.
    ping_sent: Option<Instant>,
    /// Wait before the next reconnection attempt (doubles per failure).
    next_delay: Option<Duration>,
    /// Set by `disconnect`: no reconnecting after it.
    closed: bool,
}

impl Client {
    /// Connects and completes the CONNECT/CONNACK exchange. A refusal is
    /// [`Error::Refused`] with the broker's reason code and reason string.
    pub async fn connect(options: ConnectOptions) -> Result<Self, Error> {
        Self::connect_traced(options, None).await
    }

    /// Like [`Client::connect`], with every packet sent and received (CONNECT included) passed
    /// to `tracer`.
    pub async fn connect_traced(options: ConnectOptions, tracer: Option<Tracer>) -> Result<Self, Error> {
        let alias_maximum = options.properties.topic_alias_maximum.unwrap_or(0);
        let mut session = Session::new(options.version, options.max_inflight, alias_maximum);
        session.set_tracer(tracer);
        session.set_relay(options.relay);
        let mut read = BytesMut::with_capacity(READ_CHUNK);
        let mut write = BytesMut::new();
        let (link, connack) = establish(&options, &mut session, &mut read, &mut write).await?;
        let mut client = Self {
            options,
            session,
            link: Some(link),
            read,
            write,
            connack: ConnAck::default(),
            keep_alive: None,
            last_sent: Instant::now(),
            ping_sent: None,
            next_delay: None,
            closed: false,
        };
        client.connected(connack)?;
        Ok(client)
    }

    /// The CONNACK of the current connection: session present, and in v5 the broker's limits
    /// and assigned client identifier.
    pub fn connack(&self) -> &ConnAck {
        &self.connack
    }

    /// The options connected with.
    pub fn options(&self) -> &ConnectOptions {
        &self.options
    }

    /// Whether the transport is up.
    pub fn is_connected(&self) -> bool {
        self.link.is_some()
    }

    /// Outbound QoS 1/2 messages not yet acknowledged (in flight or waiting for a slot).
    pub fn unacknowledged(&self) -> usize {
        self.session.unacknowledged()
    }

    /// SUBSCRIBE and UNSUBSCRIBE not yet acknowledged.
    pub fn pending_requests(&self) -> usize {
        self.session.pending_requests()
    }

    /// Replaces the tracer.
    pub fn set_tracer(&mut self, tracer: Option<Tracer>) {
        self.session.set_tracer(tracer);
    }

    /// Publishes without properties; see [`Client::publish_with`].
    pub fn publish(
        &mut self,
        topic: &TopicName,
        payload: impl Into<Bytes>,
        qos: QoS,
        retain: bool,
    ) -> Result<Option<PacketId>, Error> {
        self.publish_with(topic, &payload.into(), qos, retain, &Properties::default())
    }

    /// Queues a PUBLISH; it is written by the next [`Client::poll`] or [`Client::flush`].
    ///
    /// QoS 1 and 2 return the packet identifier that the matching [`Event::Published`] carries.
    /// Beyond the in-flight window (the client's `max_inflight` and the broker's Receive
    /// Maximum) messages wait in the client, in order. `topic` and `payload` are reference
    /// counted, so keeping them for a resend does not copy them.
    pub fn publish_with(
        &mut self,
        topic: &TopicName,
        payload: &Bytes,
        qos: QoS,
        retain: bool,
        properties: &Properties,
    ) -> Result<Option<PacketId>, Error> {
        self.ensure_usable()?;
        self.session.publish(topic, payload, qos, retain, properties, &mut self.write)
    }

    /// Relay mode ([`ConnectOptions::relay`]): queues `packet` (a PUBACK, PUBREC, PUBREL or
    /// PUBCOMP) as it is; written by the next [`Client::poll`] or [`Client::flush`].
    pub fn send(&mut self, packet: &Packet) -> Result<(), Error> {
        self.ensure_usable()?;
        self.session.send(packet, &mut self.write)
    }

    /// Relay mode ([`ConnectOptions::relay`]): queues a PUBLISH written from `header` and
    /// `payload` as they are (the caller's packet identifier and DUP flag); nothing is kept
    /// for resending, and its acknowledgement comes as [`Event::Relayed`].
    pub fn send_publish(&mut self, header: &PublishHeader<'_>, payload: &[u8]) -> Result<(), Error> {
        self.ensure_usable()?;
        self.session.relay_publish(header, payload, &mut self.write)
    }

    /// Bytes queued and not yet written: a relay stops taking more while this is high.
    pub fn write_backlog(&self) -> usize {
        self.write.len()
    }

    /// Queues a SUBSCRIBE; its SUBACK arrives as [`Event::Subscribed`] with the same identifier.
    pub fn subscribe(&mut self, subscriptions: Vec<Subscription>, properties: Properties) -> Result<PacketId, Error> {
        self.ensure_usable()?;
        self.session.subscribe(subscriptions, properties, &mut self.write)
    }

    /// Queues an UNSUBSCRIBE; its UNSUBACK arrives as [`Event::Unsubscribed`].
    pub fn unsubscribe(&mut self, filters: Vec<TopicFilter>, properties: Properties) -> Result<PacketId, Error> {
        self.ensure_usable()?;
        self.session.unsubscribe(filters, properties, &mut self.write)
    }

    /// Drives the connection until the next event.
    ///
    /// An error means the connection is gone (or was never usable). With automatic
    /// reconnection configured, calling `poll` again reconnects, after the backoff delay, and
    /// yields [`Event::Reconnected`]; a failed attempt is returned as its error and the next
    /// call tries again after a longer delay. Without it, later calls return
    /// [`Error::NotConnected`].
    ///
    /// # Cancel safety
    /// Cancel safe: buffered bytes and the write position live in the client, so dropping the
    /// future (e.g. in `select!`) and calling `poll` again loses nothing. A reconnection
    /// attempt that is cancelled starts over.
    pub async fn poll(&mut self) -> Result<Event, Error> {
        loop {
            if let Some(event) = self.session.next_event() {
                return Ok(event);
            }
            if self.link.is_none() {
                match self.options.reconnect {
                    Some(backoff) if !self.closed => {
                        let delay = self.next_delay.unwrap_or(backoff.initial);
                        tokio::time::sleep(delay).await;
                        self.next_delay = Some(delay.saturating_mul(2).min(backoff.max));
                        self.reconnect().await?;
                        continue;
                    }
                    _ => return Err(Error::NotConnected),
                }
            }
            if let Err(error) = self.step().await {
                self.link = None;
                self.ping_sent = None;
                return Err(error);
            }
        }
    }

    /// Writes everything queued.
    ///
    /// # Cancel safety
    /// Cancel safe: what was not written stays queued.
    pub async fn flush(&mut self) -> Result<(), Error> {
        let link = self.link.as_mut().ok_or(Error::NotConnected)?;
        let result = async {
            link.writer.write_all_buf(&mut self.write).await?;
            link.writer.flush().await
        }
        .await;
        if let Err(error) = result {
            self.link = None;
            return Err(error.into());
        }
        self.last_sent = Instant::now();
        Ok(())
    }

    /// Sends DISCONNECT (Normal disconnection), flushes and closes. Unacknowledged messages
    /// stay in the broker's session if it is persistent.
    pub async fn disconnect(&mut self) -> Result<(), Error> {
        self.disconnect_with(Disconnect::default()).await
    }

    /// Sends `disconnect` (v5: a reason such as Disconnect with Will Message, or a new Session
    /// Expiry Interval), flushes and closes. No reconnection follows.
    pub async fn disconnect_with(&mut self, disconnect: Disconnect) -> Result<(), Error> {
        self.closed = true;
        if self.link.is_none() {
            return Err(Error::NotConnected);
        }
        self.session.disconnect(disconnect, &mut self.write)?;
        let result = self.flush().await;
        if let Some(mut link) = self.link.take() {
            let _ = link.writer.shutdown().await;
        }
        result
    }

    /// One round: handle a buffered packet, or wait for the socket or the keep alive timer.
    async fn step(&mut self) -> Result<(), Error> {
        let version = self.session.version();
        if let Some(packet) = decode_packet(&mut self.read, version, self.options.max_packet_size)? {
            self.session.trace_received(&packet);
            if packet == Packet::PingResp {
                self.ping_sent = None;
            }
            return self.session.handle(packet, &mut self.write);
        }
        if self.read.capacity() - self.read.len() < READ_CHUNK / 4 {
            self.read.reserve(READ_CHUNK);
        }
        let deadline = self.keep_alive_deadline();
        let Some(link) = self.link.as_mut() else { return Err(Error::NotConnected) };
        tokio::select! {
            // Writing first: acknowledgements and queued messages go out before more is read.
            biased;
            written = link.writer.write_buf(&mut self.write), if !self.write.is_empty() => {
                if written? == 0 {
                    return Err(Error::ConnectionClosed);
                }
                self.last_sent = Instant::now();
            }
            read = link.reader.read_buf(&mut self.read) => {
                if read? == 0 {
                    return Err(Error::ConnectionClosed);
                }
            }
            () = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                self.keep_alive_due()?;
            }
        }
        Ok(())
    }

    /// When the keep alive next needs attention: a PINGREQ due, or the PINGRESP overdue.
    fn keep_alive_deadline(&self) -> Option<Instant> {
        let interval = self.keep_alive?;
        Some(self.ping_sent.unwrap_or(self.last_sent) + interval)
    }

    /// The keep alive deadline passed: PINGREQ, or a dead link if one is unanswered.
    fn keep_alive_due(&mut self) -> Result<(), Error> {
        let interval = self.keep_alive.unwrap_or_default();
        if self.ping_sent.is_some() {
            return Err(Error::KeepAliveTimeout(interval));
        }
        self.session.ping(&mut self.write)?;
        self.ping_sent = Some(Instant::now());
        Ok(())
    }

    /// One reconnection attempt.
    async fn reconnect(&mut self) -> Result<(), Error> {
        let (link, connack) = establish(&self.options, &mut self.session, &mut self.read, &mut self.write).await?;
        self.link = Some(link);
        self.next_delay = None;
        self.session.push_event(Event::Reconnected { session_present: connack.session_present });
        self.connected(connack)
    }

    /// Adopts a successful CONNACK.
    fn connected(&mut self, connack: ConnAck) -> Result<(), Error> {
        let seconds = connack.properties.server_keep_alive.unwrap_or(self.options.keep_alive);
        self.keep_alive = (seconds > 0).then(|| Duration::from_secs(u64::from(seconds)));
        self.last_sent = Instant::now();
        self.ping_sent = None;
        let receive_maximum = connack.properties.receive_maximum;
        self.session.resume(connack.session_present, receive_maximum, &mut self.write)?;
        self.connack = connack;
        Ok(())
    }

    /// Requests need a connection, or one that will come back by itself.
    fn ensure_usable(&self) -> Result<(), Error> {
        if self.closed || (self.link.is_none() && self.options.reconnect.is_none()) {
            return Err(Error::NotConnected);
        }
        Ok(())
    }
}

/// Opens the transport, sends CONNECT and waits for a successful CONNACK, all within the
/// connect timeout. Clears both buffers first: bytes of a lost connection mean nothing now.
async fn establish(
    options: &ConnectOptions,
    session: &mut Session,
    read: &mut BytesMut,
    write: &mut BytesMut,
) -> Result<(Link, ConnAck), Error> {
    let timeout = options.connect_timeout;
    let exchange = async {
        let mut link = transport::open(&options.server, options.nodelay, options.local_address).await?;
        read.clear();
        write.clear();
        session.connect(connect_packet(options)?, write)?;
        link.writer.write_all_buf(write).await?;
        loop {
            if let Some(packet) = decode_packet(read, options.version, options.max_packet_size)? {
                session.trace_received(&packet);
                return match packet {
                    Packet::ConnAck(connack) if connack.reason.is_error() => Err(Error::Refused {
                        reason: connack.reason,
                        reason_string: connack.properties.reason_string.map(|text| text.to_string()),
                        version: options.version,
                    }),
                    Packet::ConnAck(connack) => Ok((link, connack)),
                    // MQTT-3.2.0-1: the first packet from the server is CONNACK.
                    _ => Err(Error::Protocol("the first packet from the broker is not CONNACK")),
                };
            }
            read.reserve(READ_CHUNK);
            if link.reader.read_buf(read).await? == 0 {
                return Err(Error::ConnectionClosed);
            }
        }
    };
    tokio::time::timeout(timeout, exchange).await.map_err(|_| Error::ConnectTimeout(timeout))?
}

/// The CONNECT for `options`.
fn connect_packet(options: &ConnectOptions) -> Result<Packet, Error> {
    let string = |what, text: &str| MqttString::new(text).map_err(|source| Error::Invalid { what, source });
    Ok(Packet::Connect(Box::new(Connect {
        protocol: options.version,
        clean_start: options.clean_start,
        keep_alive: options.keep_alive,
        client_id: string("client identifier", &options.client_id)?,
        will: options.will.clone(),
        username: options.username.as_deref().map(|name| string("user name", name)).transpose()?,
        password: options.password.clone(),
        properties: options.properties.clone(),
        bridge: options.bridge,
    })))
}
