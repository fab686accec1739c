//! Conformance of CONNECT, CONNACK, keep alive, PINGREQ and DISCONNECT, over raw bytes, for
//! MQTT 3.1, 3.1.1 and 5.0 where the statement applies. Test names carry the 3.1.1 statement id;
//! where 5.0 numbers it differently the doc comment says so.

mod support;
#[macro_use]
mod conformance_wire;

use std::time::{Duration, Instant};

use conformance_wire::{build, prop, Client, Connect, Packet, Props, Publish, Version, WAIT};
use support::TestBroker;

/// The first packet on a connection must be CONNECT; anything else closes it, and a v5 server
/// must not answer with DISCONNECT before a CONNACK (MQTT-3.14.0-1).
#[test]
fn connect_first_packet_must_be_connect_mqtt_3_1_0_1() {
    let broker = TestBroker::start();
    let mut client = Client::open(&broker, Version::V3_1_1);
    client.send(&build::pingreq());
    assert_eq!(client.expect_closed(WAIT), None);

    let mut client = Client::open(&broker, Version::V5);
    client.send(&Publish::new("a", b"x", 0).encode(Version::V5));
    assert_eq!(client.expect_closed(WAIT), None);
}

versions! {
    /// A second CONNECT on the same connection is a protocol violation that closes it.
    fn connect_second_connect_is_protocol_violation_mqtt_3_1_0_2(v) in [V3_1, V3_1_1, V5] {
        let broker = TestBroker::start();
        let mut client = Client::new(&broker, v, "twice");
        client.send(&Connect::new(v, "twice").encode());
        client.expect_error_close();
    }

    /// A CONNECT whose protocol name is not "MQTT" is not processed as MQTT: the server closes
    /// (a 5.0 server MAY send CONNACK 0x84 first, MQTT-3.1.2-1 of 5.0).
    fn connect_bad_protocol_name_closes_mqtt_3_1_2_1(v) in [V3_1_1, V5] {
        let broker = TestBroker::start();
        let mut connect = Connect::new(v, "badname");
        connect.protocol_name = "MQTX".into();
        let mut client = Client::open(&broker, v);
        client.send(&connect.encode());
        client.expect_refused(|code| v == Version::V5 && code == 0x84);
    }

    /// The reserved bit of the connect flags must be 0; otherwise the server closes without a
    /// CONNACK (3.1.1, MQTT-3.1.4-1) or with a CONNACK 0x80 or above (5.0: Malformed Packet).
    fn connect_reserved_flag_closes_mqtt_3_1_2_3(v) in [V3_1_1, V5] {
        let broker = TestBroker::start();
        let mut connect = Connect::new(v, "reserved");
        connect.extra_flags = 0x01;
        let mut client = Client::open(&broker, v);
        client.send(&connect.encode());
        client.expect_refused(|code| v == Version::V5 && code >= 0x80);
    }

    /// Will QoS without the Will Flag is malformed (MQTT-3.1.2-13; 5.0: MQTT-3.1.2-11).
    fn connect_will_qos_without_will_flag_closes_mqtt_3_1_2_13(v) in [V3_1_1, V5] {
        let broker = TestBroker::start();
        let mut connect = Connect::new(v, "willqos");
        connect.extra_flags = 0x08;
        let mut client = Client::open(&broker, v);
        client.send(&connect.encode());
        client.expect_refused(|code| v == Version::V5 && code >= 0x80);
    }

    /// Will QoS 3 is malformed (MQTT-3.1.2-14; 5.0: MQTT-3.1.2-12).
    fn connect_will_qos_3_closes_mqtt_3_1_2_14(v) in [V3_1_1, V5] {
        let broker = TestBroker::start();
        let connect = Connect::new(v, "willqos3")
            .will(conformance_wire::Will::new("w", b"x").qos(3));
        let mut client = Client::open(&broker, v);
        client.send(&connect.encode());
        client.expect_refused(|code| v == Version::V5 && code >= 0x80);
    }

    /// A ClientId of 1 to 23 alphanumeric bytes must be accepted (MQTT-3.1.3-5).
    fn connect_23_byte_client_id_accepted_mqtt_3_1_3_5(v) in [V3_1, V3_1_1, V5] {
        let broker = TestBroker::start();
        let mut client = Client::new(&broker, v, "0123456789abcdefghijXYZ");
        client.ping();
    }

    /// A second connection with the same ClientId makes the server close the first
    /// (MQTT-3.1.4-2); a 5.0 server first sends it DISCONNECT 0x8E, Session taken over
    /// (MQTT-3.1.4-3 of 5.0).
    fn connect_same_client_id_takes_over_mqtt_3_1_4_2(v) in [V3_1, V3_1_1, V5] {
        if v == Version::V5
            && conformance_wire::mosquitto_deviates("mosquitto 2.0.11 closes the old v5 connection without DISCONNECT 0x8E")
        {
            return;
        }
        let broker = TestBroker::start();
        let mut first = Client::new(&broker, v, "same");
        let mut second = Client::new(&broker, v, "same");
        if v == Version::V5 {
            first.expect_disconnect(0x8E);
        } else {
            assert_eq!(first.expect_closed(WAIT), None);
        }
        second.ping();
    }

    /// Keep alive 1 s and silence: the server closes within one and a half times the keep alive
    /// (MQTT-3.1.2-24; 5.0: MQTT-3.1.2-22), optionally after a v5 DISCONNECT 0x8D. The upper
    /// bound allows a second for a server that checks keep alive once a second.
    fn connect_keep_alive_silence_closes_mqtt_3_1_2_24(v) in [V3_1, V3_1_1, V5] {
        if conformance_wire::mosquitto_deviates(
            "mosquitto 2.0.11 checks keep alive coarsely: with keep alive 1 s it closed silent clients \
             after 1.1 s to 6 s",
        ) {
            return;
        }
        let broker = TestBroker::start();
        let (mut client, _) = Client::connect(&broker, &Connect::new(v, "sleepy").keep_alive(1));
        let start = Instant::now();
        let disconnect = client.expect_closed(Duration::from_millis(2_500));
        let elapsed = start.elapsed();
        assert!(elapsed >= Duration::from_millis(900), "closed after {elapsed:?}, before the keep alive");
        if let Some(d) = disconnect {
            assert_eq!(d.reason, 0x8D, "DISCONNECT for a keep alive timeout: {d:?}");
        }
    }

    /// Every PINGREQ gets a PINGRESP (MQTT-3.12.4-1), and PINGREQs keep a 1 s keep alive
    /// connection open well past one and a half times the keep alive.
    fn connect_pingreq_answered_and_keeps_alive_mqtt_3_12_4_1(v) in [V3_1, V3_1_1, V5] {
        let broker = TestBroker::start();
        let (mut client, _) = Client::connect(&broker, &Connect::new(v, "pinger").keep_alive(1));
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(2_400) {
            client.send(&build::pingreq());
            match client.recv() {
                Packet::Pingresp => {}
                other => panic!("expected PINGRESP, got {other:?}"),
            }
            client.expect_silence(Duration::from_millis(600));
        }
    }

    /// A clean session always gets Session Present 0, even when a stored session existed
    /// (MQTT-3.2.2-1; 5.0: MQTT-3.2.2-2).
    fn connect_clean_session_present_0_mqtt_3_2_2_1(v) in [V3_1_1, V5] {
        let broker = TestBroker::start();
        let (mut client, connack) = Client::connect(&broker, &Connect::new(v, "store").persistent(60));
        assert!(!connack.session_present);
        client.subscribe("store/t", 1);
        client.disconnect();
        let (_client, connack) = Client::connect(&broker, &Connect::new(v, "store"));
        assert!(!connack.session_present, "clean session acknowledged with Session Present 1");
    }

    /// A persistent session gets Session Present 0 the first time (MQTT-3.2.2-3) and 1 when the
    /// server holds its state (MQTT-3.2.2-2; 5.0: MQTT-3.2.2-3).
    fn connect_stored_session_present_1_mqtt_3_2_2_2(v) in [V3_1_1, V5] {
        let broker = TestBroker::start();
        let connect = Connect::new(v, "keeper").persistent(60);
        let (mut client, connack) = Client::connect(&broker, &connect);
        assert!(!connack.session_present, "no session was stored yet");
        client.subscribe("keeper/t", 1);
        client.disconnect();
        let (_client, connack) = Client::connect(&broker, &connect);
        assert!(connack.session_present, "stored session acknowledged with Session Present 0");
    }

    /// DISCONNECT with reserved fixed-header bits set closes the connection (MQTT-3.14.1-1).
    fn connect_disconnect_reserved_bits_close_mqtt_3_14_1_1(v) in [V3_1_1, V5] {
        let broker = TestBroker::start();
        let mut client = Client::new(&broker, v, "badbye");
        client.send(&[0xE1, 0x00]);
        client.expect_error_close();
    }

    /// Once the server rejects a CONNECT it must not process anything sent after it
    /// (MQTT-3.1.4-5; 5.0: MQTT-3.1.4-6): a retained PUBLISH sent in the same write as a
    /// malformed CONNECT must not be stored.
    fn connect_rejected_connect_stops_processing_mqtt_3_1_4_5(v) in [V3_1_1, V5] {
        let broker = TestBroker::start();
        let mut connect = Connect::new(v, "rejected");
        connect.extra_flags = 0x01;
        let mut bytes = connect.encode();
        bytes.extend(Publish::new("rejected/t", b"must not be kept", 0).retain().encode(v));
        let mut client = Client::open(&broker, v);
        client.send(&bytes);
        client.expect_refused(|code| v == Version::V5 && code >= 0x80);

        let mut sub = Client::new(&broker, v, "observer");
        sub.subscribe("rejected/t", 0);
        sub.publish_msg("rejected/t", b"barrier", 0);
        let first = sub.expect_publish();
        assert_eq!(first.payload, b"barrier", "a retained message from the rejected connection");
    }
}

/// A protocol level the server does not support is refused with CONNACK 0x01, unacceptable
/// protocol level, then the connection closes (MQTT-3.1.2-2). A server that speaks 5.0 may
/// answer in the 5.0 form, 0x84 Unsupported Protocol Version (MQTT-3.1.2-2 of 5.0): the
/// client's level is unknown, so either is accepted.
#[test]
fn connect_unsupported_level_refused_mqtt_3_1_2_2() {
    let broker = TestBroker::start();
    for level in [6, 0] {
        let mut connect = Connect::new(Version::V3_1_1, "level");
        connect.level = level;
        // Parsing as 5.0 reads both a two-byte 3.1.1 CONNACK and a 5.0 one.
        let mut client = Client::open(&broker, Version::V5);
        client.send(&connect.encode());
        let code = client.expect_refused(|code| code == 0x01 || code == 0x84);
        assert!(code.is_some(), "level {level}: closed without CONNACK 0x01");
    }
}

/// 3.1.1 lets the server accept a zero-length ClientId only with CleanSession 1: with 0 it
/// answers CONNACK 0x02 with Session Present 0 and closes (MQTT-3.1.3-8, MQTT-3.2.2-4/-5).
#[test]
fn connect_empty_client_id_persistent_rejected_mqtt_3_1_3_8() {
    let broker = TestBroker::start();
    let mut client = Client::open(&broker, Version::V3_1_1);
    client.send(&Connect::new(Version::V3_1_1, "").clean(false).encode());
    assert_eq!(client.expect_refused(|code| code == 0x02), Some(0x02));
}

/// MQTT 3.1 requires a ClientId of 1 to 23 characters and answers an empty one with CONNACK
/// 0x02, Identifier rejected (3.1, section 3.1, "Client Identifier").
#[test]
fn connect_v3_1_empty_client_id_rejected() {
    let broker = TestBroker::start();
    let mut client = Client::open(&broker, Version::V3_1);
    client.send(&Connect::new(Version::V3_1, "").encode());
    assert_eq!(client.expect_refused(|code| code == 0x02), Some(0x02));
}

/// With a zero-length ClientId and CleanSession 1 the server assigns a unique ClientId
/// (MQTT-3.1.3-6; midge allows it by default): two such clients do not take each other over.
#[test]
fn connect_empty_client_id_gets_unique_id_mqtt_3_1_3_6() {
    let broker = TestBroker::start();
    let mut first = Client::new(&broker, Version::V3_1_1, "");
    let mut second = Client::new(&broker, Version::V3_1_1, "");
    second.ping();
    first.ping();
}

/// A v5 client with a zero-length ClientId gets an Assigned Client Identifier in the CONNACK,
/// not used by any other session (MQTT-3.2.2-16).
#[test]
fn connect_v5_empty_client_id_assigned_identifier_mqtt_3_2_2_16() {
    let broker = TestBroker::start();
    let (mut first, a) = Client::connect(&broker, &Connect::new(Version::V5, ""));
    let (mut second, b) = Client::connect(&broker, &Connect::new(Version::V5, ""));
    let a = a.props.text(prop::ASSIGNED_CLIENT_IDENTIFIER).expect("Assigned Client Identifier");
    let b = b.props.text(prop::ASSIGNED_CLIENT_IDENTIFIER).expect("Assigned Client Identifier");
    assert!(!a.is_empty() && !b.is_empty());
    assert_ne!(a, b, "two sessions were assigned the same ClientId");
    first.ping();
    second.ping();
}

/// A v5 client that sets a Session Expiry Interval of 0 on CONNECT may not set a non-zero one on
/// DISCONNECT: that is a Protocol Error (5.0 section 3.14.2.2.2), answered with DISCONNECT 0x82.
#[test]
fn connect_v5_disconnect_cannot_raise_zero_session_expiry() {
    let broker = TestBroker::start();
    let mut client = Client::new(&broker, Version::V5, "raiser");
    let props = Props::new().four(prop::SESSION_EXPIRY_INTERVAL, 60);
    client.send(&build::disconnect(Version::V5, 0, &props));
    client.expect_disconnect(0x82);
}

/// A client that opens TCP and sends nothing is closed after `connect_timeout_ms` (midge).
#[test]
fn connect_silent_tcp_closed_after_connect_timeout() {
    if conformance_wire::not_midge() {
        return;
    }
    let broker = TestBroker::start_midge_with("[mqtt]\nconnect_timeout_ms = 500\n");
    let mut client = Client::open(&broker, Version::V3_1_1);
    let start = Instant::now();
    assert_eq!(client.expect_closed(Duration::from_millis(2_000)), None);
    let elapsed = start.elapsed();
    assert!(elapsed >= Duration::from_millis(400), "closed after {elapsed:?}, before the timeout");
}
