#!/usr/bin/env python3
"""A paho-mqtt 2.x publisher or subscriber of numbered messages, for tests/cluster_durable.rs.

One MQTT connection (5, or 3.1.1 for a subscriber), driven line by line on stdin; each event is
one JSON line on stdout, so the test waits for events (with its own timeouts) instead of
sleeping. There is no automatic reconnect: the test says where to connect again.

Publisher (--role pub), clean start 1:
  commands  probe TOPIC          one QoS 0 message, payload "probe"
            pub FROM TO PACE_MS  the numbers FROM .. TO-1 at --qos, each on PREFIX/(n % 4) with
                                 the number as payload, --inflight at a time; PACE_MS > 0 puts
                                 that many milliseconds between two publishes (the load's shape)
  events    connack {rc, session_present} | published {to} (every one handed to paho) |
            acked {n, rc} (its PUBACK, or for QoS 2 its PUBCOMP, with a reason code below 0x80)
            | refused {n, rc} | closed | error {what}

Subscriber (--role sub), persistent: MQTT 5 (--protocol 5) with clean start 0 and Session Expiry
Interval --expiry, or MQTT 3.1.1 (--protocol 3.1.1) with clean session 0:
  commands  sub FILTER QOS | connect PORT (the same client object again, so the same session
            state: paho keeps the QoS 2 packet ids awaiting PUBREL across the reconnects of a
            session that is not clean) | hold (from the next message on, the network thread
            waits in on_message: nothing more is read from the socket) | release
  events    connack {rc, session_present} | suback {codes} |
            msg {topic, n, qos, mid, dup} (n: the number, null for a probe; QoS 2: on PUBREL,
            paho's method A of MQTT 4.3.3, so a message is passed on once) | closed | error {what}
"""

import argparse
import json
import os
import sys
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

# Longest the script lives: longer than any test, so a forgotten one goes by itself.
WATCHDOG_SECONDS = 120

out_lock = threading.Lock()


def emit(event, **fields):
    fields["ev"] = event
    with out_lock:
        sys.stdout.write(json.dumps(fields) + "\n")
        sys.stdout.flush()


def code(reason):
    """A paho ReasonCode (v5) or int as an int."""
    value = getattr(reason, "value", reason)
    return int(value)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--role", choices=["pub", "sub"], required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--id", required=True)
    parser.add_argument("--qos", type=int, default=1, help="publisher: the stream's QoS")
    parser.add_argument("--prefix", default="t", help="publisher: topic prefix of the stream")
    parser.add_argument("--inflight", type=int, default=20, help="publisher: QoS 1/2 in flight")
    parser.add_argument("--expiry", type=int, default=300, help="subscriber: Session Expiry")
    parser.add_argument("--protocol", choices=["3.1.1", "5"], default="5")
    args = parser.parse_args()

    def watchdog():
        emit("error", what="watchdog")
        os._exit(3)

    timer = threading.Timer(WATCHDOG_SECONDS, watchdog)
    timer.daemon = True
    timer.start()

    v5 = args.protocol == "5"
    if v5:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=args.id, protocol=mqtt.MQTTv5)
    else:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=args.id, protocol=mqtt.MQTTv311,
                             clean_session=args.role == "pub")
    client.max_inflight_messages_set(args.inflight)
    # paho's default queue bound is unlimited (0); said so, since the flood relies on it.
    client.max_queued_messages_set(0)

    def on_connect(_client, _userdata, flags, reason_code, _properties):
        emit("connack", rc=code(reason_code), session_present=bool(flags.session_present))

    client.on_connect = on_connect

    # Publisher: packet id -> number. An acknowledgement may be handled (on the network
    # thread) before publish() has returned the packet id here: it waits in `early`.
    lock = threading.Lock()
    number_of = {}
    early = {}

    def acknowledged(n, rc):
        emit("acked" if rc < 0x80 else "refused", n=n, rc=rc)

    def on_publish(_client, _userdata, mid, reason_code, _properties):
        rc = code(reason_code)
        with lock:
            n = number_of.pop(mid, None)
            if n is None:
                early[mid] = rc
                return
        acknowledged(n, rc)

    client.on_publish = on_publish

    def publish_range(first, end, pace_ms):
        for n in range(first, end):
            info = client.publish("%s/%d" % (args.prefix, n % 4), str(n), args.qos)
            with lock:
                rc = early.pop(info.mid, None)
                if rc is None:
                    number_of[info.mid] = n
            if rc is not None:
                acknowledged(n, rc)
            if pace_ms > 0:
                time.sleep(pace_ms / 1000.0)
        emit("published", to=end)

    # Subscriber: set while messages may be passed on.
    flowing = threading.Event()
    flowing.set()

    def on_message(_client, _userdata, message):
        flowing.wait()
        payload = message.payload.decode("utf-8", "replace")
        n = int(payload) if payload.isdigit() else None
        emit("msg", topic=message.topic, n=n, qos=message.qos, mid=message.mid, dup=bool(message.dup))

    def on_subscribe(_client, _userdata, _mid, reason_codes, _properties):
        emit("suback", codes=[code(c) for c in reason_codes])

    client.on_message = on_message
    client.on_subscribe = on_subscribe

    def connect(port):
        try:
            if v5:
                properties = Properties(PacketTypes.CONNECT)
                if args.role == "sub":
                    properties.SessionExpiryInterval = args.expiry
                client.connect(args.host, port, keepalive=60, clean_start=args.role == "pub",
                               properties=properties)
            else:
                client.connect(args.host, port, keepalive=60)
        except OSError as error:
            emit("error", what="connect to %d: %s" % (port, error))
            return

        def network():
            # paho's own loop_start reconnects; this loop ends with the connection.
            while client.loop(timeout=0.05) == mqtt.MQTT_ERR_SUCCESS:
                pass
            emit("closed")

        threading.Thread(target=network, daemon=True).start()

    connect(args.port)

    for line in sys.stdin:
        words = line.rstrip("\n").split(" ")
        if words[0] == "probe":
            client.publish(words[1], "probe", 0)
        elif words[0] == "pub":
            batch = (int(words[1]), int(words[2]), int(words[3]))
            threading.Thread(target=publish_range, args=batch, daemon=True).start()
        elif words[0] == "sub":
            client.subscribe(words[1], int(words[2]))
        elif words[0] == "connect":
            connect(int(words[1]))
        elif words[0] == "hold":
            flowing.clear()
        elif words[0] == "release":
            flowing.set()
        elif words[0]:
            emit("error", what="unknown command " + words[0])
    # stdin closed: the test is done with this client.
    os._exit(0)


if __name__ == "__main__":
    main()
