#!/usr/bin/env python3
"""Interoperability scenarios for Eclipse paho-mqtt 2.x against an MQTT broker.

Run by crates/midge/tests/interop_paho.rs as

    python3 interop.py --host 127.0.0.1 --port PORT SCENARIO [options]

Each scenario exits 0 when the broker behaved as the spec says, and 1 with a message otherwise.
Every wait is bounded (WAIT per step, WATCHDOG for the whole run); nothing sleeps to synchronise.
"""

import argparse
import os
import queue
import sys
import threading

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

# The longest one step (CONNACK, SUBACK, an acknowledgement, a message) may take.
WAIT = 5.0
# The longest a whole run may take, whatever hangs.
WATCHDOG = 30.0

PROTOCOLS = {"3.1": mqtt.MQTTv31, "3.1.1": mqtt.MQTTv311, "5": mqtt.MQTTv5}

# Not plain ASCII, so a broker that mangles bytes is caught.
PAYLOAD = b"paho \x00\xff\x80\n" + "ünïcødé €".encode()


class Failure(Exception):
    """The broker did not do what the spec says."""


def check(condition, message):
    if not condition:
        raise Failure(message)


class Peer:
    """A paho client whose network loop runs in its own thread.

    Callbacks record CONNACK, SUBACK and disconnection under one condition variable and put
    received messages on a queue, so the scenario waits on them with a timeout.
    """

    def __init__(self, args, client_id, protocol, clean=True, session_expiry=None):
        self.args = args
        self.protocol = protocol
        self.clean = clean
        self.session_expiry = session_expiry
        extra = {} if protocol == mqtt.MQTTv5 else {"clean_session": clean}
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=protocol,
            transport=args.transport,
            **extra,
        )
        if args.transport == "websockets":
            self.client.ws_set_options(path=args.ws_path)
        self.name = client_id
        self.cond = threading.Condition()
        self.connack = None
        self.subacks = {}
        self.disconnected = False
        self.messages = queue.Queue()
        if args.cafile:
            self.client.tls_set(ca_certs=args.cafile)
        if args.username:
            self.client.username_pw_set(args.username, args.password)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.on_disconnect = self._on_disconnect

    def _on_connect(self, _client, _userdata, flags, reason_code, _properties):
        with self.cond:
            self.connack = (flags.session_present, reason_code)
            self.cond.notify_all()

    def _on_subscribe(self, _client, _userdata, mid, reason_codes, _properties):
        with self.cond:
            self.subacks[mid] = [code.value for code in reason_codes]
            self.cond.notify_all()

    def _on_message(self, _client, _userdata, message):
        self.messages.put(message)

    def _on_disconnect(self, _client, _userdata, _flags, _reason_code, _properties):
        with self.cond:
            self.disconnected = True
            self.cond.notify_all()

    def _wait(self, predicate, what):
        with self.cond:
            check(self.cond.wait_for(predicate, timeout=WAIT), f"{self.name}: timed out waiting for {what}")

    def connect(self):
        """Connects, waits for a successful CONNACK and returns Session Present."""
        if self.protocol == mqtt.MQTTv5:
            properties = Properties(PacketTypes.CONNECT)
            if self.session_expiry is not None:
                properties.SessionExpiryInterval = self.session_expiry
            # clean_start must be given: paho's default is "clean on the first connect only".
            self.client.connect(
                self.args.host,
                self.args.port,
                keepalive=30,
                bind_address=self.args.bind_address,
                clean_start=self.clean,
                properties=properties,
            )
        else:
            self.client.connect(self.args.host, self.args.port, keepalive=30, bind_address=self.args.bind_address)
        self.client.loop_start()
        self._wait(lambda: self.connack is not None, "CONNACK")
        session_present, reason_code = self.connack
        check(not reason_code.is_failure, f"{self.name}: CONNACK refused: {reason_code}")
        return bool(session_present)

    def subscribe(self, topic, qos):
        """Subscribes and waits for the SUBACK; checks the granted QoS is the one asked for."""
        result, mid = self.client.subscribe(topic, qos)
        check(result == mqtt.MQTT_ERR_SUCCESS, f"{self.name}: subscribe not sent: {result}")
        self._wait(lambda: mid in self.subacks, f"SUBACK for {topic}")
        # 3.1.1 MQTT-3.8.4-5 / 5.0 MQTT-3.8.4-7; a broker with default settings grants what was asked.
        check(self.subacks[mid] == [qos], f"{self.name}: SUBACK for {topic}: {self.subacks[mid]}")

    def publish(self, topic, payload, qos, retain=False, properties=None):
        """Publishes and waits until the QoS flow is complete (PUBACK, PUBCOMP, or sent for QoS 0)."""
        info = self.client.publish(topic, payload, qos=qos, retain=retain, properties=properties)
        info.wait_for_publish(timeout=WAIT)
        check(info.is_published(), f"{self.name}: publish to {topic} at QoS {qos} not acknowledged")

    def receive(self):
        """The next message delivered to this client."""
        try:
            return self.messages.get(timeout=WAIT)
        except queue.Empty:
            raise Failure(f"{self.name}: no message within {WAIT}s") from None

    def disconnect(self):
        """Sends DISCONNECT and waits until paho reports the connection closed."""
        self.client.disconnect()
        self._wait(lambda: self.disconnected, "disconnection")
        self.client.loop_stop()


def expect_message(message, topic, payload, qos, retain=False):
    got = (message.topic, message.payload, message.qos, bool(message.retain))
    want = (topic, payload, qos, retain)
    check(got == want, f"received {got}, expected {want}")


def scenario_roundtrip(args):
    """A message published at QoS q to a subscription at QoS q arrives once, unaltered."""
    protocol = PROTOCOLS[args.protocol]
    topic = f"paho/rt/{args.protocol}/qos{args.qos}"
    subscriber = Peer(args, "paho-rt-sub", protocol)
    subscriber.connect()
    subscriber.subscribe(topic, args.qos)
    publisher = Peer(args, "paho-rt-pub", protocol)
    publisher.connect()
    publisher.publish(topic, PAYLOAD, args.qos)
    publisher.publish(topic, b"end", args.qos)
    # 3.1.1 MQTT-3.8.4-6 / 5.0 MQTT-3.8.4-8: at min(published, granted) QoS; 3.1.1 MQTT-3.3.1-9 /
    # 5.0 MQTT-3.3.1-12: RETAIN 0. MQTT-4.6.0-6: in order, so "end" proves there was no duplicate.
    expect_message(subscriber.receive(), topic, PAYLOAD, args.qos)
    expect_message(subscriber.receive(), topic, b"end", args.qos)
    publisher.disconnect()
    subscriber.disconnect()


def publish_properties():
    properties = Properties(PacketTypes.PUBLISH)
    properties.UserProperty = [("k1", "v1"), ("k2", "v2"), ("k1", "v1 again"), ("ünï", "cødé €")]
    properties.ContentType = "application/json; charset=utf-8"
    properties.ResponseTopic = "paho/props/reply"
    properties.CorrelationData = b"\x00\x01\xfe\xffcorr"
    properties.PayloadFormatIndicator = 1
    properties.MessageExpiryInterval = 300
    return properties


def scenario_properties(args):
    """v5 application properties reach the subscriber unaltered, for QoS 0, 1 and 2."""
    topic = "paho/props"
    subscriber = Peer(args, "paho-props-sub", mqtt.MQTTv5)
    subscriber.connect()
    subscriber.subscribe(topic, 2)
    publisher = Peer(args, "paho-props-pub", mqtt.MQTTv5)
    publisher.connect()
    sent = publish_properties()
    for qos in (0, 1, 2):
        body = f'{{"qos": {qos}}}'.encode()
        publisher.publish(topic, body, qos, properties=sent)
        message = subscriber.receive()
        expect_message(message, topic, body, qos)
        got = message.properties
        check(got is not None, "the forwarded PUBLISH has no properties")
        # MQTT-3.3.2-17, MQTT-3.3.2-18: all user properties, unaltered and in order.
        user = [tuple(pair) for pair in getattr(got, "UserProperty", [])]
        check(user == sent.UserProperty, f"user properties {user}, sent {sent.UserProperty}")
        # MQTT-3.3.2-20, -15, -16, -4: content type, response topic, correlation data and payload
        # format indicator unaltered.
        for name in ("ContentType", "ResponseTopic", "CorrelationData", "PayloadFormatIndicator"):
            value = getattr(got, name, None)
            check(value == getattr(sent, name), f"{name} {value!r}, sent {getattr(sent, name)!r}")
        # MQTT-3.3.2-6: the sent expiry minus the time the message waited in the broker.
        expiry = getattr(got, "MessageExpiryInterval", None)
        check(expiry is not None, "message expiry interval not forwarded")
        check(270 <= expiry <= sent.MessageExpiryInterval, f"message expiry {expiry}, sent 300")
    publisher.disconnect()
    subscriber.disconnect()


def scenario_session(args):
    """A persistent session keeps its subscription and queues QoS 1/2 messages while offline."""
    protocol = PROTOCOLS[args.protocol]
    topic = f"paho/session/{args.protocol}"
    expiry = 300 if protocol == mqtt.MQTTv5 else None
    subscriber = Peer(args, "paho-sess-sub", protocol, clean=False, session_expiry=expiry)
    # 3.1.1 MQTT-3.2.2-3 / 5.0 MQTT-3.2.2-3: no session existed yet.
    check(not subscriber.connect(), "Session Present on the first connection")
    subscriber.subscribe(topic, 1)
    subscriber.disconnect()

    publisher = Peer(args, "paho-sess-pub", protocol)
    publisher.connect()
    publisher.publish(topic, b"queued 1", 1)
    publisher.publish(topic, b"queued 2", 2)

    subscriber = Peer(args, "paho-sess-sub", protocol, clean=False, session_expiry=expiry)
    # 3.1.1 MQTT-3.2.2-2 / 5.0 MQTT-3.2.2-3: the session was kept.
    check(subscriber.connect(), "no Session Present on reconnection")
    # 3.1.1 MQTT-3.1.2-5 / 5.0 MQTT-3.1.2-23: messages published while offline were stored and
    # are delivered in order, at the subscription's QoS.
    expect_message(subscriber.receive(), topic, b"queued 1", 1)
    expect_message(subscriber.receive(), topic, b"queued 2", 1)
    # 3.1.1 MQTT-3.1.2-4 / 5.0 MQTT-3.1.2-5: the subscription itself was resumed.
    publisher.publish(topic, b"live", 1)
    expect_message(subscriber.receive(), topic, b"live", 1)
    publisher.disconnect()
    subscriber.disconnect()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cafile", help="TLS, trusting the CA certificates in this PEM file")
    parser.add_argument(
        "--transport",
        choices=("tcp", "websockets"),
        default="tcp",
        help="MQTT over TCP, or over paho's own WebSocket client (MQTT section 6)",
    )
    parser.add_argument("--ws-path", default="/mqtt", help="the WebSocket request path")
    parser.add_argument(
        "--bind-address", default="", help="the local address to connect from (e.g. 127.0.0.2, to be told apart)"
    )
    parser.add_argument("--username")
    parser.add_argument("--password")
    scenarios = parser.add_subparsers(dest="scenario", required=True)
    roundtrip = scenarios.add_parser("roundtrip", help=scenario_roundtrip.__doc__)
    roundtrip.add_argument("--protocol", choices=sorted(PROTOCOLS), required=True)
    roundtrip.add_argument("--qos", type=int, choices=(0, 1, 2), required=True)
    scenarios.add_parser("properties", help=scenario_properties.__doc__)
    session = scenarios.add_parser("session", help=scenario_session.__doc__)
    session.add_argument("--protocol", choices=("3.1.1", "5"), required=True)
    args = parser.parse_args()

    def give_up():
        print(f"FAIL: {args.scenario} still running after {WATCHDOG}s", file=sys.stderr, flush=True)
        os._exit(3)

    watchdog = threading.Timer(WATCHDOG, give_up)
    watchdog.daemon = True
    watchdog.start()
    run = {"roundtrip": scenario_roundtrip, "properties": scenario_properties, "session": scenario_session}
    try:
        run[args.scenario](args)
    except Failure as failure:
        print(f"FAIL: {args.scenario}: {failure}", file=sys.stderr, flush=True)
        os._exit(1)
    print(f"OK: {args.scenario}", flush=True)
    # os._exit: paho's loop threads may still be winding down; the result is known.
    os._exit(0)


if __name__ == "__main__":
    main()
