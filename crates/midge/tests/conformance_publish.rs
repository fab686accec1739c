//! Conformance of PUBLISH and the QoS 1 and 2 flows in both directions, over raw bytes, for MQTT
//! 3.1, 3.1.1 and 5.0 where the statement applies. Test names carry the 3.1.1 statement id;
//! where 5.0 numbers it differently the doc comment says so.

mod support;
#[macro_use]
mod conformance_wire;

use conformance_wire::{build, payloads, Client, Connect, Packet, Publish, Version};
use support::TestBroker;

versions! {
    /// A QoS 1 PUBLISH is answered with a PUBACK carrying its packet id (MQTT-4.3.2-2,
    /// MQTT-2.3.1-6; 5.0: MQTT-4.3.2-4, MQTT-2.2.1-5).
    fn publish_qos1_puback_same_id_mqtt_4_3_2_2(v) in [V3_1, V3_1_1, V5] {
        let broker = TestBroker::start();
        let mut client = Client::new(&broker, v, "pub1");
        client.send(&Publish::new("q1/t", b"x", 1).id(0x1234).encode(v));
        match client.recv() {
            Packet::Puback(ack) => {
                assert_eq!(ack.id, 0x1234);
                assert!(ack.reason < 0x80, "{ack:?}");
            }
            other => panic!("expected PUBACK, got {other:?}"),
        }
    }

    /// A QoS 2 PUBLISH is answered with PUBREC, and PUBREL with PUBCOMP, all with its packet id
    /// (MQTT-4.3.3-2; 5.0: MQTT-4.3.3-8, MQTT-4.3.3-11).
    fn publish_qos2_pubrec_pubrel_pubcomp_mqtt_4_3_3_2(v) in [V3_1, V3_1_1, V5] {
        let broker = TestBroker::start();
        let mut client = Client::new(&broker, v, "pub2");
        client.send(&Publish::new("q2/t", b"x", 2).id(0x0102).encode(v));
        match client.recv() {
            Packet::Pubrec(ack) => assert_eq!((ack.id, ack.reason < 0x80), (0x0102, true), "{ack:?}"),
            other => panic!("expected PUBREC, got {other:?}"),
        }
        client.send(&build::ack(build::PUBREL, v, 0x0102, 0));
        match client.recv() {
            Packet::Pubcomp(ack) => assert_eq!((ack.id, ack.reason), (0x0102, 0), "{ack:?}"),
            other => panic!("expected PUBCOMP, got {other:?}"),
        }
    }

    /// Until PUBREL, a re-sent QoS 2 PUBLISH with the same packet id is acknowledged with PUBREC
    /// again but not delivered again (MQTT-4.3.3-2; 5.0: MQTT-4.3.3-10).
    fn publish_qos2_duplicate_before_pubrel_delivered_once_mqtt_4_3_3_2(v) in [V3_1, V3_1_1, V5] {
        let broker = TestBroker::start();
        let mut sub = Client::new(&broker, v, "sub");
        assert_eq!(sub.subscribe("once/t", 2), 2);
        let mut publisher = Client::new(&broker, v, "pub");
        let first = Publish::new("once/t", b"once", 2).id(7);
        publisher.send(&first.encode(v));
        assert!(matches!(publisher.recv(), Packet::Pubrec(a) if a.id == 7));
        publisher.send(&first.clone().dup().encode(v));
        assert!(matches!(publisher.recv(), Packet::Pubrec(a) if a.id == 7));
        publisher.send(&build::ack(build::PUBREL, v, 7, 0));
        assert!(matches!(publisher.recv(), Packet::Pubcomp(a) if a.id == 7));
        publisher.publish_msg("once/t", b"end", 2);

        let got = sub.receive_until(b"end");
        assert_eq!(payloads(&got), [&b"once"[..], b"end"], "the duplicate was delivered");
    }

    /// A message is delivered at the minimum of its QoS and the QoS granted to the subscription
    /// (MQTT-3.8.4-6; 5.0: MQTT-3.8.4-8).
    fn publish_delivered_qos_is_min_of_published_and_granted_mqtt_3_8_4_6(v) in [V3_1, V3_1_1, V5] {
        let broker = TestBroker::start();
        let mut sub = Client::new(&broker, v, "sub");
        let suback = sub.subscribe_many(&[("min/0", 0), ("min/1", 1), ("min/2", 2)]);
        assert_eq!(suback.codes, [0, 1, 2]);
        let mut publisher = Client::new(&broker, v, "pub");
        for granted in 0..3u8 {
            for qos in 0..3u8 {
                publisher.publish_msg(&format!("min/{granted}"), &[qos], qos);
            }
        }
        publisher.publish_msg("min/2", b"end", 2);
        let mut got: Vec<(String, u8, u8)> = sub.receive_until(b"end")
            .into_iter()
            .filter(|p| p.payload != b"end")
            .map(|p| (p.topic, p.payload[0], p.qos))
            .collect();
        got.sort();
        let mut want = Vec::new();
        for granted in 0..3u8 {
            for qos in 0..3u8 {
                want.push((format!("min/{granted}"), qos, qos.min(granted)));
            }
        }
        assert_eq!(got, want, "(topic, published QoS, delivered QoS)");
    }

    /// The server sends a new QoS 1 message with DUP 0 and an unused non-zero packet id
    /// (MQTT-4.3.2-1, MQTT-2.3.1-2; 5.0: MQTT-4.3.2-1/-2, MQTT-2.2.1-4), keeps it until PUBACK,
    /// and does not send it again after the PUBACK.
    fn publish_server_qos1_flow_mqtt_4_3_2_1(v) in [V3_1, V3_1_1, V5] {
        let broker = TestBroker::start();
        let mut sub = Client::new(&broker, v, "sub");
        sub.subscribe("out1/t", 1);
        let mut publisher = Client::new(&broker, v, "pub");
        publisher.publish_msg("out1/t", b"a", 1);
        publisher.publish_msg("out1/t", b"b", 1);
        let a = sub.expect_publish();
        let b = sub.expect_publish();
        assert_eq!((a.qos, a.dup, b.qos, b.dup), (1, false, 1, false));
        assert_ne!(a.id, b.id, "two unacknowledged messages share a packet id");
        sub.acknowledge(&a);
        sub.acknowledge(&b);
        publisher.publish_msg("out1/t", b"c", 1);
        assert_eq!(sub.receive().payload, b"c", "an acknowledged message came again");
    }

    /// The server's QoS 2 flow: PUBLISH (DUP 0) → PUBREC → PUBREL with the same id and flags
    /// 0b0010 → PUBCOMP (MQTT-4.3.3-1, MQTT-3.6.1-1; 5.0: MQTT-4.3.3-2/-4).
    fn publish_server_qos2_flow_mqtt_4_3_3_1(v) in [V3_1, V3_1_1, V5] {
        let broker = TestBroker::start();
        let mut sub = Client::new(&broker, v, "sub");
        sub.subscribe("out2/t", 2);
        let mut publisher = Client::new(&broker, v, "pub");
        publisher.publish_msg("out2/t", b"x", 2);
        let publish = sub.expect_publish();
        assert_eq!((publish.qos, publish.dup), (2, false));
        sub.send(&build::ack(build::PUBREC, v, publish.id, 0));
        match sub.recv() {
            Packet::Pubrel(rel) => assert_eq!(rel.id, publish.id),
            other => panic!("expected PUBREL, got {other:?}"),
        }
        sub.send(&build::ack(build::PUBCOMP, v, publish.id, 0));
        publisher.publish_msg("out2/t", b"y", 2);
        assert_eq!(sub.receive().payload, b"y", "the first message came again after PUBCOMP");
    }

    /// On reconnection to a persistent session the server re-sends an unacknowledged QoS 1
    /// PUBLISH with its original packet id and DUP 1 (MQTT-4.4.0-1, MQTT-3.3.1-1).
    fn publish_unacked_qos1_resent_with_dup_on_reconnect_mqtt_4_4_0_1(v) in [V3_1, V3_1_1, V5] {
        let broker = TestBroker::start();
        let connect = Connect::new(v, "sub").persistent(60);
        let (mut sub, _) = Client::connect(&broker, &connect);
        sub.subscribe("resend/t", 1);
        let mut publisher = Client::new(&broker, v, "pub");
        publisher.publish_msg("resend/t", b"again", 1);
        let original = sub.expect_publish();
        sub.drop_connection();

        let (mut sub, connack) = Client::connect(&broker, &connect);
        if v != Version::V3_1 {
            assert!(connack.session_present);
        }
        let resent = sub.expect_publish();
        assert_eq!((resent.id, resent.dup, resent.qos), (original.id, true, 1));
        assert_eq!(resent.payload, b"again");
        sub.acknowledge(&resent);
    }

    /// A PUBREL the client has not answered with PUBCOMP is re-sent on reconnection with its
    /// original id, and the PUBLISH is not (MQTT-4.4.0-1, MQTT-4.3.3-1; 5.0: MQTT-4.3.3-6).
    fn publish_unacked_pubrel_resent_on_reconnect_mqtt_4_4_0_1(v) in [V3_1, V3_1_1, V5] {
        let broker = TestBroker::start();
        let connect = Connect::new(v, "sub").persistent(60);
        let (mut sub, _) = Client::connect(&broker, &connect);
        sub.subscribe("rel/t", 2);
        let mut publisher = Client::new(&broker, v, "pub");
        publisher.publish_msg("rel/t", b"x", 2);
        let publish = sub.expect_publish();
        sub.send(&build::ack(build::PUBREC, v, publish.id, 0));
        assert!(matches!(sub.recv(), Packet::Pubrel(a) if a.id == publish.id));
        sub.drop_connection();

        let (mut sub, _) = Client::connect(&broker, &connect);
        match sub.recv() {
            Packet::Pubrel(rel) => assert_eq!(rel.id, publish.id),
            other => panic!("expected the PUBREL again, got {other:?}"),
        }
        sub.send(&build::ack(build::PUBCOMP, v, publish.id, 0));
        sub.ping();
    }

    /// The DUP flag of an incoming PUBLISH is not propagated to subscribers (MQTT-3.3.1-3).
    fn publish_dup_not_propagated_mqtt_3_3_1_3(v) in [V3_1, V3_1_1, V5] {
        let broker = TestBroker::start();
        let mut sub = Client::new(&broker, v, "sub");
        sub.subscribe("dup/t", 1);
        let mut publisher = Client::new(&broker, v, "pub");
        publisher.publish(Publish::new("dup/t", b"x", 1).dup());
        let got = sub.receive();
        assert!(!got.dup, "DUP copied from the publisher: {got:?}");
    }

    /// Messages from one publisher on one topic at one QoS reach a subscriber in order
    /// (MQTT-4.6.0-6; 5.0: MQTT-4.6.0-5/-6).
    fn publish_ordered_topic_mqtt_4_6_0_6(v) in [V3_1, V3_1_1, V5] {
        let broker = TestBroker::start();
        let mut sub = Client::new(&broker, v, "sub");
        sub.subscribe("order/t", 1);
        let mut publisher = Client::new(&broker, v, "pub");
        for i in 0..20u8 {
            publisher.send(&Publish::new("order/t", &[i], 1).id(u16::from(i) + 1).encode(v));
        }
        for i in 0..20u8 {
            assert_eq!(sub.receive().payload, [i]);
        }
    }

    /// A Topic Name with a wildcard closes the publisher's connection and is not delivered
    /// (MQTT-3.3.2-2, MQTT-4.7.1-1; 5.0: MQTT-3.3.2-2, MQTT-4.7.0-1).
    fn publish_wildcard_topic_closes_mqtt_3_3_2_2(v) in [V3_1, V3_1_1, V5] {
        let broker = TestBroker::start();
        let mut sub = Client::new(&broker, v, "sub");
        sub.subscribe("#", 0);
        for topic in ["wild/+", "wild/#", "+", "#"] {
            let mut publisher = Client::new(&broker, v, "pub");
            publisher.send(&Publish::new(topic, b"bad", 0).encode(v));
            publisher.expect_error_close();
        }
        sub.publish_msg("wild/barrier", b"barrier", 0);
        assert_eq!(sub.expect_publish().topic, "wild/barrier");
    }

    /// A zero-length Topic Name closes the connection (MQTT-4.7.3-1; 5.0: a Protocol Error
    /// without a Topic Alias).
    fn publish_empty_topic_closes_mqtt_4_7_3_1(v) in [V3_1, V3_1_1, V5] {
        let broker = TestBroker::start();
        let mut publisher = Client::new(&broker, v, "pub");
        publisher.send(&Publish::new("", b"x", 0).encode(v));
        publisher.expect_error_close();
    }

    /// A PUBLISH with both QoS bits set closes the connection (MQTT-3.3.1-4; 5.0 names
    /// DISCONNECT 0x81, Malformed Packet).
    fn publish_qos3_closes_mqtt_3_3_1_4(v) in [V3_1, V3_1_1, V5] {
        let broker = TestBroker::start();
        let mut publisher = Client::new(&broker, v, "pub");
        publisher.send(&Publish::new("q3/t", b"x", 3).id(1).encode(v));
        if let Some(reason) = publisher.expect_error_close() {
            assert_eq!(reason, 0x81);
        }
    }

    /// A QoS 0 PUBLISH must have DUP 0 (MQTT-3.3.1-2); one with DUP 1 is a protocol violation
    /// that closes the connection (MQTT-4.8.0-1; 5.0: Malformed Packet, MQTT-4.13.1-1).
    fn publish_qos0_with_dup_closes_mqtt_3_3_1_2(v) in [V3_1_1, V5] {
        if conformance_wire::mosquitto_deviates("mosquitto 2.0.11 accepts a QoS 0 PUBLISH with DUP 1") {
            return;
        }
        let broker = TestBroker::start();
        let mut publisher = Client::new(&broker, v, "pub");
        publisher.send(&Publish::new("dup0/t", b"x", 0).dup().encode(v));
        publisher.expect_error_close();
    }

    /// A QoS 1 PUBLISH must carry a non-zero packet id (MQTT-2.3.1-1; 5.0: MQTT-2.2.1-3).
    fn publish_qos1_packet_id_0_closes_mqtt_2_3_1_1(v) in [V3_1_1, V5] {
        let broker = TestBroker::start();
        let mut publisher = Client::new(&broker, v, "pub");
        publisher.send(&Publish::new("id0/t", b"x", 1).id(0).encode(v));
        publisher.expect_error_close();
    }

    /// PUBREL flags must be 0b0010; others are malformed and close the connection
    /// (MQTT-3.6.1-1).
    fn publish_pubrel_bad_flags_closes_mqtt_3_6_1_1(v) in [V3_1_1, V5] {
        let broker = TestBroker::start();
        let mut publisher = Client::new(&broker, v, "pub");
        publisher.send(&Publish::new("rel/t", b"x", 2).id(5).encode(v));
        assert!(matches!(publisher.recv(), Packet::Pubrec(a) if a.id == 5));
        publisher.send(&build::ack(0x60, v, 5, 0));
        publisher.expect_error_close();
    }

    /// A PUBACK for a packet id the server never used is harmless: the connection stays up.
    fn publish_puback_for_unknown_id_is_harmless(v) in [V3_1, V3_1_1, V5] {
        let broker = TestBroker::start();
        let mut client = Client::new(&broker, v, "stray");
        client.send(&build::ack(build::PUBACK, v, 999, 0));
        client.ping();
    }
}
