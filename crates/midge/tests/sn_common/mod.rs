//! What the MQTT-SN tests share (`mqtt_sn`, `mqtt_sn_scenarios`): a broker with an MQTT-SN
//! listener, a raw MQTT-SN client made of a UDP socket (its datagrams built and read with
//! midge-sn-codec), and a raw MQTT 3.1.1 client over TCP (midge-codec) on the other side.
//!
//! Nothing waits by sleeping: every wait is for a datagram, a packet or a log line, with a
//! timeout.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use midge_codec::{
    decode_packet, encode_packet, Connect as MqttConnect, MqttString, Packet, PacketId, Properties, ProtocolVersion,
    PubResponse, Publish as MqttPublish, QoS as MqttQoS, Subscribe as MqttSubscribe, Subscription, SubscriptionOptions,
    TopicFilter, TopicName as MqttTopicName,
};
use midge_sn_codec::{
    ClientId, Connect, Message, MsgId, PubAck, Publish, PublishTopic, QoS, RegAck, Register, ReturnCode,
    ShortTopicName, SubAck, Subscribe, SubscribeTopic, TopicId, TopicName,
};

use crate::support::{self, TestBroker};

/// How long any one expected datagram, packet or log line may take.
pub const WAIT: Duration = Duration::from_secs(10);

/// A broker with an MQTT listener (the harness's) and an MQTT-SN one.
pub struct Gateway {
    pub broker: TestBroker,
    pub sn: SocketAddr,
}

impl Gateway {
    /// `sn_listener` is added to the MQTT-SN listener's table, `extra` after it.
    pub fn start(sn_listener: &str, extra: &str) -> Self {
        let broker = TestBroker::start_midge_with(&format!("{}\n{extra}", support::mqtt_sn_listener(sn_listener)));
        let sn = broker.mqtt_sn_addr();
        Self { broker, sn }
    }

    pub fn client(&self) -> Sn {
        Sn::new(self.sn)
    }

    pub fn mqtt(&self, client_id: &str) -> Mqtt {
        Mqtt::connect(&self.broker, client_id)
    }
}

/// An MQTT-SN client made of a UDP socket.
pub struct Sn {
    pub socket: UdpSocket,
    pub gateway: SocketAddr,
    pub next_id: u16,
}

impl Sn {
    pub fn new(gateway: SocketAddr) -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        socket.set_read_timeout(Some(WAIT)).expect("timeout");
        Self { socket, gateway, next_id: 0 }
    }

    pub fn send(&self, message: &Message) {
        let mut datagram = BytesMut::new();
        midge_sn_codec::encode(message, &mut datagram).expect("encode");
        self.send_raw(&datagram);
    }

    pub fn send_raw(&self, datagram: &[u8]) {
        self.socket.send_to(datagram, self.gateway).expect("send");
    }

    /// The next datagram from the gateway, decoded; panics after [`WAIT`].
    pub fn recv(&self) -> Message {
        let mut buffer = [0u8; 65_536];
        let (len, from) = self.socket.recv_from(&mut buffer).expect("a datagram from the gateway in time");
        assert_eq!(from, self.gateway);
        midge_sn_codec::decode(&buffer[..len]).expect("the gateway sent a valid message")
    }

    /// The next datagram if one comes within `wait`.
    pub fn try_recv(&self, wait: Duration) -> Option<Message> {
        self.socket.set_read_timeout(Some(wait)).expect("timeout");
        let mut buffer = [0u8; 65_536];
        let received = self.socket.recv_from(&mut buffer);
        self.socket.set_read_timeout(Some(WAIT)).expect("timeout");
        let (len, _) = received.ok()?;
        Some(midge_sn_codec::decode(&buffer[..len]).expect("the gateway sent a valid message"))
    }

    pub fn msg_id(&mut self) -> MsgId {
        self.next_id += 1;
        MsgId(self.next_id)
    }

    pub fn connect_with(&mut self, client_id: &str, clean_session: bool, duration: u16, will: bool) {
        let client_id = ClientId::new(client_id).unwrap();
        self.send(&Message::Connect(Connect { will, clean_session, duration, client_id }));
    }

    /// CONNECT with clean session and keep alive 60 s, and its CONNACK.
    pub fn connect(&mut self, client_id: &str) {
        self.connect_with(client_id, true, 60, false);
        assert_eq!(self.recv(), Message::ConnAck { return_code: ReturnCode::ACCEPTED });
    }

    /// REGISTER `topic`: its id.
    pub fn register(&mut self, topic: &str) -> TopicId {
        let msg_id = self.msg_id();
        let topic_name = TopicName::new(topic).unwrap();
        self.send(&Message::Register(Register { topic_id: TopicId(0), msg_id, topic_name }));
        let Message::RegAck(ack) = self.recv() else { panic!("expected REGACK") };
        assert_eq!((ack.msg_id, ack.return_code), (msg_id, ReturnCode::ACCEPTED));
        ack.topic_id
    }

    /// SUBSCRIBE and its SUBACK.
    pub fn subscribe(&mut self, topic: SubscribeTopic, qos: QoS) -> SubAck {
        let msg_id = self.msg_id();
        self.send(&Message::Subscribe(Subscribe { dup: false, qos, msg_id, topic }));
        let Message::SubAck(ack) = self.recv() else { panic!("expected SUBACK") };
        assert_eq!(ack.msg_id, msg_id);
        ack
    }

    pub fn publish(&mut self, topic: PublishTopic, qos: QoS, data: &str) -> MsgId {
        let msg_id = if matches!(qos, QoS::AtLeastOnce | QoS::ExactlyOnce) { self.msg_id() } else { MsgId(0) };
        let data = Bytes::copy_from_slice(data.as_bytes());
        self.send(&Message::Publish(Publish { dup: false, qos, retain: false, topic, msg_id, data }));
        msg_id
    }

    /// The next PUBLISH, acknowledged as its QoS asks (QoS 2 through PUBREC, PUBREL, PUBCOMP).
    pub fn recv_publish(&mut self) -> Publish {
        let Message::Publish(publish) = self.recv() else { panic!("expected PUBLISH") };
        match publish.qos {
            QoS::AtLeastOnce => self.send(&puback(&publish, ReturnCode::ACCEPTED)),
            QoS::ExactlyOnce => {
                self.send(&Message::PubRec { msg_id: publish.msg_id });
                assert_eq!(self.recv(), Message::PubRel { msg_id: publish.msg_id });
                self.send(&Message::PubComp { msg_id: publish.msg_id });
            }
            _ => {}
        }
        publish
    }

    /// Accepts the gateway's REGISTER for `topic`: its id.
    pub fn accept_register(&self, topic: &str) -> TopicId {
        let Message::Register(register) = self.recv() else { panic!("expected REGISTER for {topic}") };
        assert_eq!(register.topic_name.as_str(), topic);
        assert_ne!(register.topic_id, TopicId(0));
        self.send(&regack(&register, ReturnCode::ACCEPTED));
        register.topic_id
    }
}

pub fn puback(publish: &Publish, return_code: ReturnCode) -> Message {
    let topic_id = match publish.topic {
        PublishTopic::Normal(id) | PublishTopic::Predefined(id) => id,
        PublishTopic::Short(name) => TopicId(u16::from_be_bytes(name.0)),
    };
    Message::PubAck(PubAck { topic_id, msg_id: publish.msg_id, return_code })
}

pub fn regack(register: &Register, return_code: ReturnCode) -> Message {
    Message::RegAck(RegAck { topic_id: register.topic_id, msg_id: register.msg_id, return_code })
}

pub fn name(topic: &str) -> SubscribeTopic {
    SubscribeTopic::Name(TopicName::new(topic).unwrap())
}

pub fn short(topic: &str) -> ShortTopicName {
    ShortTopicName(topic.as_bytes().try_into().unwrap())
}

/// An MQTT 3.1.1 client over TCP, its packets built and read with midge-codec.
pub struct Mqtt {
    pub stream: TcpStream,
    pub buffer: BytesMut,
    pub next_id: u16,
}

impl Mqtt {
    pub fn connect(broker: &TestBroker, client_id: &str) -> Self {
        let stream = broker.connect();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let mut mqtt = Self { stream, buffer: BytesMut::new(), next_id: 0 };
        mqtt.send(&Packet::Connect(Box::new(MqttConnect {
            protocol: ProtocolVersion::V311,
            clean_start: true,
            keep_alive: 60,
            client_id: MqttString::new(client_id).unwrap(),
            will: None,
            username: None,
            password: None,
            properties: Properties::default(),
            bridge: false,
        })));
        assert!(matches!(mqtt.recv(), Packet::ConnAck(ack) if ack.reason.0 == 0));
        mqtt
    }

    pub fn send(&mut self, packet: &Packet) {
        let mut out = BytesMut::new();
        encode_packet(packet, ProtocolVersion::V311, &mut out).unwrap();
        self.stream.write_all(&out).unwrap();
    }

    pub fn recv(&mut self) -> Packet {
        loop {
            if let Some(packet) = decode_packet(&mut self.buffer, ProtocolVersion::V311, usize::MAX).unwrap() {
                return packet;
            }
            let mut chunk = [0u8; 4096];
            let n = self.stream.read(&mut chunk).expect("a packet from the broker in time");
            assert!(n > 0, "the broker closed the connection");
            self.buffer.extend_from_slice(&chunk[..n]);
        }
    }

    pub fn id(&mut self) -> PacketId {
        self.next_id += 1;
        PacketId::new(self.next_id).unwrap()
    }

    pub fn subscribe(&mut self, filter: &str, qos: MqttQoS) {
        let packet_id = self.id();
        let options = SubscriptionOptions { qos, ..SubscriptionOptions::default() };
        let subscriptions = vec![Subscription { filter: TopicFilter::new(filter).unwrap(), options }];
        self.send(&Packet::Subscribe(MqttSubscribe { packet_id, subscriptions, properties: Properties::default() }));
        assert!(matches!(self.recv(), Packet::SubAck(_)));
    }

    /// Publishes and waits for its acknowledgement (QoS 2: through PUBCOMP).
    pub fn publish(&mut self, topic: &str, payload: &str, qos: MqttQoS, retain: bool) {
        let packet_id = (qos != MqttQoS::AtMostOnce).then(|| self.id());
        self.send(&Packet::Publish(MqttPublish {
            dup: false,
            qos,
            retain,
            topic: MqttTopicName::new(topic).unwrap(),
            packet_id,
            properties: Properties::default(),
            payload: Bytes::copy_from_slice(payload.as_bytes()),
        }));
        match qos {
            MqttQoS::AtMostOnce => {}
            MqttQoS::AtLeastOnce => assert!(matches!(self.recv(), Packet::PubAck(_))),
            MqttQoS::ExactlyOnce => {
                assert!(matches!(self.recv(), Packet::PubRec(_)));
                self.send(&Packet::PubRel(PubResponse::success(packet_id.unwrap())));
                assert!(matches!(self.recv(), Packet::PubComp(_)));
            }
        }
    }

    /// The next PUBLISH, acknowledged: its topic, payload and QoS.
    pub fn recv_publish(&mut self) -> (String, String, MqttQoS) {
        let Packet::Publish(publish) = self.recv() else { panic!("expected PUBLISH") };
        match (publish.qos, publish.packet_id) {
            (MqttQoS::AtLeastOnce, Some(id)) => self.send(&Packet::PubAck(PubResponse::success(id))),
            (MqttQoS::ExactlyOnce, Some(id)) => {
                self.send(&Packet::PubRec(PubResponse::success(id)));
                assert!(matches!(self.recv(), Packet::PubRel(_)));
                self.send(&Packet::PubComp(PubResponse::success(id)));
            }
            _ => {}
        }
        let payload = String::from_utf8_lossy(&publish.payload).into_owned();
        (publish.topic.to_string(), payload, publish.qos)
    }
}
