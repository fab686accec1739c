//! Conformance of SUBSCRIBE, UNSUBSCRIBE, topic matching and retained messages, over raw bytes,
//! for MQTT 3.1, 3.1.1 and 5.0 where the statement applies. Test names carry the 3.1.1
//! statement id; where 5.0 numbers it differently the doc comment says so.

mod support;
#[macro_use]
mod conformance_wire;

use conformance_wire::{build, payloads, Client, Packet, Publish, Subscribe, Version};
use support::TestBroker;

versions! {
    /// SUBACK carries the SUBSCRIBE's packet id and one return code per filter, in order,
    /// each the granted QoS (MQTT-3.8.4-1/-2/-5, MQTT-3.9.3-1; 5.0: MQTT-3.8.4-1/-2/-6/-7).
    fn subscribe_suback_id_and_code_per_filter_mqtt_3_8_4_1(v) in [V3_1, V3_1_1, V5] {
        let broker = TestBroker::start();
        let mut sub = Client::new(&broker, v, "sub");
        let filters = [("sa/zero", 0), ("sa/one/+", 1), ("sa/two/#", 2)];
        let suback = sub.subscribe_with(Subscribe::new(0x4242, &filters));
        assert_eq!(suback.codes, [0, 1, 2]);
    }

    /// A Topic Filter with a misplaced wildcard breaks MQTT-4.7.1-2/-3 (5.0: MQTT-4.7.1-1/-2), a
    /// protocol violation that closes the connection (MQTT-4.8.0-1; 5.0: MQTT-4.13.1-1, after an
    /// optional DISCONNECT 0x80 or above).
    fn subscribe_invalid_filter_closes_mqtt_4_7_1_2(v) in [V3_1, V3_1_1, V5] {
        let broker = TestBroker::start();
        for filter in ["bad/#/b", "bad#", "bad/b+", "bad/+b/c"] {
            let mut sub = Client::new(&broker, v, "sub");
            sub.send(&Subscribe::new(1, &[(filter, 0)]).encode(v));
            sub.expect_error_close();
        }
    }

    /// SUBSCRIBE fixed-header flags other than 0b0010 are malformed (MQTT-3.8.1-1).
    fn subscribe_bad_header_flags_closes_mqtt_3_8_1_1(v) in [V3_1_1, V5] {
        let broker = TestBroker::start();
        let mut sub = Client::new(&broker, v, "sub");
        let mut subscribe = Subscribe::new(1, &[("flags/t", 0)]);
        subscribe.header_flags = 0x00;
        sub.send(&subscribe.encode(v));
        sub.expect_error_close();
    }

    /// A SUBSCRIBE without a Topic Filter is a protocol violation (MQTT-3.8.3-3; 5.0:
    /// MQTT-3.8.3-2).
    fn subscribe_without_filters_closes_mqtt_3_8_3_3(v) in [V3_1_1, V5] {
        let broker = TestBroker::start();
        let mut sub = Client::new(&broker, v, "sub");
        sub.send(&Subscribe::new(1, &[]).encode(v));
        sub.expect_error_close();
    }

    /// Requested QoS 3 and reserved option bits are malformed (MQTT-3-8.3-4; 5.0: MQTT-3.8.3-5).
    fn subscribe_qos3_or_reserved_bits_close_mqtt_3_8_3_4(v) in [V3_1_1, V5] {
        let broker = TestBroker::start();
        for options in [0x03, 0x40, 0x80] {
            let mut sub = Client::new(&broker, v, "sub");
            sub.send(&Subscribe::new(1, &[("opts/t", options)]).encode(v));
            sub.expect_error_close();
        }
    }

    /// Overlapping subscriptions deliver the message respecting the maximum QoS of the matching
    /// subscriptions (MQTT-3.3.5-1; 5.0: MQTT-3.3.4-2). One copy per subscription is allowed.
    fn subscribe_overlapping_delivers_at_max_qos_mqtt_3_3_5_1(v) in [V3_1, V3_1_1, V5] {
        if v != Version::V5
            && conformance_wire::mosquitto_deviates(
                "mosquitto 2.0.11 sends a v3 client one copy at QoS 0 when 'ov/+' (QoS 0) and \
                 'ov/#' (QoS 2) match a QoS 2 message",
            )
        {
            return;
        }
        let broker = TestBroker::start();
        let mut sub = Client::new(&broker, v, "sub");
        assert_eq!(sub.subscribe_many(&[("ov/+", 0), ("ov/#", 2)]).codes, [0, 2]);
        let mut publisher = Client::new(&broker, v, "pub");
        publisher.publish_msg("ov/x", b"m", 2);
        // Copies at different QoS need not keep their order, so no barrier: wait for the copy at
        // QoS 2, then listen a moment for more; one copy per subscription at most.
        let mut copies = Vec::new();
        while copies.last() != Some(&2) {
            copies.push(sub.receive().qos);
            assert!(copies.len() <= 2, "copies of the message at QoS {copies:?}");
        }
        while let conformance_wire::Event::Packet(p) = sub.next(conformance_wire::QUIET) {
            let Packet::Publish(p) = p else { panic!("unexpected {p:?}") };
            sub.acknowledge(&p);
            copies.push(p.qos);
            assert!(copies.len() <= 2, "copies of the message at QoS {copies:?}");
        }
    }

    /// Filters starting with a wildcard do not match topics starting with '$' (MQTT-4.7.2-1),
    /// while a filter naming the '$' topic does.
    fn subscribe_dollar_topics_not_matched_by_wildcards_mqtt_4_7_2_1(v) in [V3_1, V3_1_1, V5] {
        let broker = TestBroker::start();
        let mut wild = Client::new(&broker, v, "wild");
        wild.subscribe_many(&[("#", 0), ("+/y", 0), ("+/#", 0)]);
        let mut exact = Client::new(&broker, v, "exact");
        exact.subscribe("$dt/y", 0);
        let mut publisher = Client::new(&broker, v, "pub");
        publisher.publish_msg("$dt/y", b"dollar", 1);
        publisher.publish_msg("dt/y", b"plain", 1);
        assert_eq!(exact.expect_publish().topic, "$dt/y");
        let first = wild.expect_publish();
        assert_eq!(first.topic, "dt/y", "a '$' topic matched a wildcard filter");
    }

    /// A SUBSCRIBE with a filter identical to an existing one replaces the subscription (new
    /// QoS, one copy per message) and re-sends the matching retained messages (MQTT-3.8.4-3;
    /// 5.0: MQTT-3.8.4-3/-4 with Retain Handling 0).
    fn subscribe_identical_filter_replaces_and_resends_retained_mqtt_3_8_4_3(v) in [V3_1, V3_1_1, V5] {
        let broker = TestBroker::start();
        let mut publisher = Client::new(&broker, v, "pub");
        publisher.publish(Publish::new("rep/t", b"kept", 1).retain());
        let mut sub = Client::new(&broker, v, "sub");
        assert_eq!(sub.subscribe("rep/t", 0), 0);
        let first = sub.receive();
        assert_eq!((first.payload.as_slice(), first.retain, first.qos), (&b"kept"[..], true, 0));
        assert_eq!(sub.subscribe("rep/t", 1), 1);
        let again = sub.receive();
        assert_eq!((again.payload.as_slice(), again.retain, again.qos), (&b"kept"[..], true, 1));
        publisher.publish_msg("rep/t", b"live", 1);
        publisher.publish_msg("rep/t", b"end", 1);
        let got = sub.receive_until(b"end");
        assert_eq!(payloads(&got), [&b"live"[..], b"end"], "the subscription was not replaced");
        assert!(got.iter().all(|p| p.qos == 1 && !p.retain), "{got:?}");
    }

    /// UNSUBSCRIBE is answered with an UNSUBACK carrying its packet id (MQTT-3.10.4-4), and no
    /// new message matching the removed filter is delivered (MQTT-3.10.4-2).
    fn subscribe_unsubscribe_acked_and_stops_delivery_mqtt_3_10_4_4(v) in [V3_1, V3_1_1, V5] {
        let broker = TestBroker::start();
        let mut sub = Client::new(&broker, v, "sub");
        sub.subscribe_many(&[("un/a", 1), ("un/b", 1)]);
        let unsuback = sub.unsubscribe(&["un/a"]);
        if v == Version::V5 {
            assert_eq!(unsuback.codes, [0x00]);
        }
        let mut publisher = Client::new(&broker, v, "pub");
        publisher.publish_msg("un/a", b"gone", 1);
        publisher.publish_msg("un/b", b"barrier", 1);
        assert_eq!(sub.receive().payload, b"barrier", "delivered after UNSUBSCRIBE");
    }

    /// Even when no subscription matches, UNSUBSCRIBE gets an UNSUBACK (MQTT-3.10.4-5); in 5.0
    /// with reason code 0x11, No subscription existed.
    fn subscribe_unsubscribe_unknown_filter_acked_mqtt_3_10_4_5(v) in [V3_1, V3_1_1, V5] {
        let broker = TestBroker::start();
        let mut sub = Client::new(&broker, v, "sub");
        let unsuback = sub.unsubscribe(&["never/subscribed"]);
        if v == Version::V5 {
            assert_eq!(unsuback.codes, [0x11]);
        }
    }

    /// UNSUBSCRIBE fixed-header flags other than 0b0010 are malformed (MQTT-3.10.1-1).
    fn subscribe_unsubscribe_bad_flags_closes_mqtt_3_10_1_1(v) in [V3_1_1, V5] {
        let broker = TestBroker::start();
        let mut sub = Client::new(&broker, v, "sub");
        let mut bytes = build::unsubscribe(v, 1, &["flags/t"]);
        bytes[0] = 0xA0;
        sub.send(&bytes);
        sub.expect_error_close();
    }

    /// A retained message is stored (MQTT-3.3.1-5) and sent to each new matching subscription
    /// with RETAIN 1 (MQTT-3.3.1-6/-8; 5.0: MQTT-3.3.1-9), at the minimum of its QoS and the
    /// granted QoS.
    fn subscribe_retained_sent_on_subscribe_mqtt_3_3_1_6(v) in [V3_1, V3_1_1, V5] {
        let broker = TestBroker::start();
        let mut publisher = Client::new(&broker, v, "pub");
        publisher.publish(Publish::new("ret/a", b"a", 1).retain());
        publisher.publish(Publish::new("ret/b/c", b"bc", 2).retain());
        let mut sub = Client::new(&broker, v, "sub");
        assert_eq!(sub.subscribe("ret/#", 1), 1);
        let mut got = vec![sub.receive(), sub.receive()];
        got.sort_by(|a, b| a.topic.cmp(&b.topic));
        assert_eq!(payloads(&got), [&b"a"[..], b"bc"]);
        assert!(got.iter().all(|p| p.retain && p.qos == 1), "{got:?}");
    }

    /// A retained PUBLISH with an empty payload is delivered as normal and removes the retained
    /// message, so later subscribers get none (MQTT-3.3.1-10/-11; 5.0: MQTT-3.3.1-6/-7).
    fn subscribe_empty_retained_payload_clears_mqtt_3_3_1_10(v) in [V3_1, V3_1_1, V5] {
        let broker = TestBroker::start();
        let mut publisher = Client::new(&broker, v, "pub");
        publisher.publish(Publish::new("clear/t", b"kept", 1).retain());
        let mut early = Client::new(&broker, v, "early");
        early.subscribe("clear/t", 1);
        assert_eq!(early.receive().payload, b"kept");
        publisher.publish(Publish::new("clear/t", b"", 1).retain());
        let cleared = early.receive();
        assert_eq!((cleared.payload.len(), cleared.retain), (0, false), "{cleared:?}");

        let mut late = Client::new(&broker, v, "late");
        late.subscribe("clear/t", 1);
        publisher.publish_msg("clear/t", b"barrier", 1);
        let first = late.receive();
        assert_eq!(first.payload, b"barrier", "a cleared retained message was sent: {first:?}");
    }

    /// A message delivered to an established subscription has RETAIN 0 whatever the publisher
    /// set (MQTT-3.3.1-9; 5.0: MQTT-3.3.1-12 with Retain As Published 0).
    fn subscribe_live_delivery_has_retain_0_mqtt_3_3_1_9(v) in [V3_1, V3_1_1, V5] {
        let broker = TestBroker::start();
        let mut sub = Client::new(&broker, v, "sub");
        sub.subscribe("live/t", 1);
        let mut publisher = Client::new(&broker, v, "pub");
        publisher.publish(Publish::new("live/t", b"x", 1).retain());
        assert!(!sub.receive().retain, "RETAIN 1 on a message to an established subscription");
    }

    /// A PUBLISH with RETAIN 0 neither stores nor removes the retained message, and a newer
    /// retained message replaces the older (MQTT-3.3.1-5/-12; 5.0: MQTT-3.3.1-5/-8).
    fn subscribe_retained_replaced_only_by_retained_mqtt_3_3_1_12(v) in [V3_1, V3_1_1, V5] {
        let broker = TestBroker::start();
        let mut publisher = Client::new(&broker, v, "pub");
        publisher.publish(Publish::new("keep/t", b"old", 1).retain());
        publisher.publish(Publish::new("keep/t", b"new", 1).retain());
        publisher.publish_msg("keep/t", b"not retained", 1);
        let mut sub = Client::new(&broker, v, "sub");
        sub.subscribe("keep/t", 1);
        publisher.publish_msg("keep/t", b"barrier", 1);
        let got = sub.receive_until(b"barrier");
        assert_eq!(payloads(&got), [&b"new"[..], b"barrier"]);
        assert!(got[0].retain);
    }
}
