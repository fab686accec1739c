#!/usr/bin/env python3
"""One paho-mqtt 2.x connection driven line by line, for tests/cluster_sessions.rs.

The connection is opened from the arguments; then each line on stdin is a command and each event
is one JSON line on stdout, so the test waits for an event (with its own timeout) instead of
sleeping. There is no automatic reconnect: a connection the broker closes stays closed (a client
taken over must not take its session back).

Commands:  sub TOPIC QOS | pub TOPIC QOS PAYLOAD | ack MID QOS | disconnect
Events:    connack {rc, session_present} | suback {codes} | published {mid} |
           message {topic, payload, qos, mid, dup, retain} |
           disconnect {rc, from_server} (rc: the reason code of the broker's DISCONNECT, or of
           the close as paho reports it) | closed | error {what}
"""

import argparse
import json
import os
import sys
import threading

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
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--id", required=True)
    parser.add_argument("--protocol", choices=["3.1.1", "5"], default="5")
    parser.add_argument("--clean", choices=["0", "1"], default="1")
    parser.add_argument("--expiry", type=int, default=None, help="v5 Session Expiry Interval")
    parser.add_argument("--manual-ack", action="store_true", help="acknowledge only on `ack`")
    parser.add_argument("--will-topic")
    parser.add_argument("--will-payload", default="will")
    parser.add_argument("--will-qos", type=int, default=0)
    parser.add_argument("--will-delay", type=int, default=None, help="v5 Will Delay Interval")
    args = parser.parse_args()

    def watchdog():
        emit("error", what="watchdog")
        os._exit(3)

    timer = threading.Timer(WATCHDOG_SECONDS, watchdog)
    timer.daemon = True
    timer.start()

    v5 = args.protocol == "5"
    clean = args.clean == "1"
    if v5:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=args.id, protocol=mqtt.MQTTv5,
                             manual_ack=args.manual_ack)
    else:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=args.id, protocol=mqtt.MQTTv311,
                             clean_session=clean, manual_ack=args.manual_ack)

    def on_connect(_client, _userdata, flags, reason_code, _properties):
        emit("connack", rc=code(reason_code), session_present=bool(flags.session_present))

    def on_subscribe(_client, _userdata, _mid, reason_codes, _properties):
        emit("suback", codes=[code(c) for c in reason_codes])

    def on_publish(_client, _userdata, mid, _reason_code, _properties):
        emit("published", mid=mid)

    def on_message(_client, _userdata, message):
        emit("message", topic=message.topic, payload=message.payload.decode("utf-8", "replace"),
             qos=message.qos, mid=message.mid, dup=bool(message.dup), retain=bool(message.retain))

    def on_disconnect(_client, _userdata, flags, reason_code, _properties):
        emit("disconnect", rc=code(reason_code), from_server=bool(flags.is_disconnect_packet_from_server))

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_publish = on_publish
    client.on_message = on_message
    client.on_disconnect = on_disconnect

    if args.will_topic:
        properties = None
        if v5 and args.will_delay is not None:
            properties = Properties(PacketTypes.WILLMESSAGE)
            properties.WillDelayInterval = args.will_delay
        client.will_set(args.will_topic, args.will_payload, args.will_qos, False, properties)

    if v5:
        properties = None
        if args.expiry is not None:
            properties = Properties(PacketTypes.CONNECT)
            properties.SessionExpiryInterval = args.expiry
        client.connect(args.host, args.port, keepalive=60, clean_start=clean, properties=properties)
    else:
        client.connect(args.host, args.port, keepalive=60)

    def network():
        # paho's own loop_start reconnects; this loop ends with the connection.
        while client.loop(timeout=0.05) == mqtt.MQTT_ERR_SUCCESS:
            pass
        emit("closed")

    threading.Thread(target=network, daemon=True).start()

    for line in sys.stdin:
        words = line.rstrip("\n").split(" ", 3)
        if words[0] == "sub":
            client.subscribe(words[1], int(words[2]))
        elif words[0] == "pub":
            client.publish(words[1], words[3], int(words[2]))
        elif words[0] == "ack":
            client.ack(int(words[1]), int(words[2]))
        elif words[0] == "disconnect":
            client.disconnect()
        elif words[0]:
            emit("error", what="unknown command " + words[0])
    # stdin closed: the test is done with this client.
    os._exit(0)


if __name__ == "__main__":
    main()
