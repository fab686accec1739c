#!/usr/bin/env python3
"""The publisher and the subscriber of bench/bridge.sh (paho-mqtt 2.x, MQTT 3.1.1).

    python3 bench/bridge_clients.py pub --port P --qos Q --count N --rate R --acked FILE
    python3 bench/bridge_clients.py sub --port P --qos Q --out FILE

pub: N messages on bench/seq, payload the sequence number (0 to N-1), one every 1/R s, at QoS
Q, with a persistent session (Clean Session 0), so that after an outage of the broker it
reconnects and sends again, with the same packet ids, every message not yet acknowledged (and
the PUBREL of every QoS 2 message already received): it goes on from its first unacknowledged
message. Prints `start` when the first message goes, appends to FILE the sequence number of
every message the broker acknowledged (PUBACK, or PUBCOMP at QoS 2), and prints a JSON summary
when all are acknowledged or --timeout seconds after the last one went.

sub: subscribes to bench/# at QoS Q with a persistent session, prints `ready` once the
subscription is acknowledged, and appends every payload received to FILE, one a line, until
SIGTERM or SIGINT. With --notify FILE it also subscribes to $SYS/broker/connection/# (the
bridges' link state, `1` up and `0` down) and appends `TIME TOPIC STATE` lines to FILE.
"""

import argparse
import json
import signal
import sys
import threading
import time

import paho.mqtt.client as mqtt

HOST = "127.0.0.1"


def client(client_id: str) -> mqtt.Client:
    c = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id,
        clean_session=False,
        protocol=mqtt.MQTTv311,
    )
    # Reconnect at once, then every second at most: the outages are seconds long.
    c.reconnect_delay_set(min_delay=1, max_delay=1)
    return c


def publish(args: argparse.Namespace) -> None:
    if args.count > 65000:
        sys.exit("--count: at most 65,000 (one packet id per message, never reused)")
    pub = client(args.client_id)
    pub.max_inflight_messages_set(args.inflight)
    # Every message stays queued in the client until acknowledged, however long the outage.
    pub.max_queued_messages_set(0)
    connected = threading.Event()
    done = threading.Event()
    lock = threading.Lock()
    seq_of: dict[int, int] = {}
    acked_mids: list[int] = []
    acked_set: set[int] = set()
    connects = [0]

    def on_connect(_c, _u, _flags, reason, _props):
        if not reason.is_failure:
            connects[0] += 1
            connected.set()

    def on_publish(_c, _u, mid, _reason, _props):
        with lock:
            acked_mids.append(mid)
            acked_set.add(mid)
            if len(acked_set) >= args.count:
                done.set()

    def on_disconnect(_c, _u, _flags, reason, _props):
        print(f"pub: disconnected ({reason}) at {time.monotonic() - started:.2f} s", file=sys.stderr, flush=True)

    started = time.monotonic()
    pub.on_connect = on_connect
    pub.on_disconnect = on_disconnect
    pub.on_publish = on_publish
    pub.connect_async(HOST, args.port, keepalive=5)
    pub.loop_start()
    if not connected.wait(20):
        sys.exit(f"pub: no connection to port {args.port}")

    print("start", flush=True)
    started = time.monotonic()
    for seq in range(args.count):
        delay = started + seq / args.rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        info = pub.publish(args.topic, str(seq).encode(), qos=args.qos)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            sys.exit(f"pub: publish of {seq} failed: {mqtt.error_string(info.rc)}")
        with lock:
            seq_of[info.mid] = seq
    sent_in = time.monotonic() - started
    done.wait(args.timeout)
    pub.disconnect()
    pub.loop_stop()

    with lock:
        acked = sorted({seq_of[mid] for mid in acked_mids if mid in seq_of})
    with open(args.acked, "w") as file:
        file.writelines(f"{seq}\n" for seq in acked)
    print(
        json.dumps(
            {
                "sent": args.count,
                "acked": len(acked),
                "sent_in_s": round(sent_in, 2),
                "acked_in_s": round(time.monotonic() - started, 2),
                "connects": connects[0],
            }
        ),
        flush=True,
    )


def subscribe(args: argparse.Namespace) -> None:
    sub = client(args.client_id)
    ready = threading.Event()
    stop = threading.Event()
    out = open(args.out, "a", buffering=1)

    notify = open(args.notify, "a", buffering=1) if args.notify else None

    def on_connect(c, _u, _flags, reason, _props):
        if not reason.is_failure:
            topics = [("bench/#", args.qos)]
            if notify:
                topics.append(("$SYS/broker/connection/#", 0))
            c.subscribe(topics)

    def on_subscribe(_c, _u, _mid, _reasons, _props):
        ready.set()

    def on_message(_c, _u, message):
        if message.topic.startswith("$SYS/"):
            if notify:
                state = message.payload.decode(errors="replace")
                notify.write(f"{time.time():.3f} {message.topic} {state}\n")
            return
        out.write(message.payload.decode(errors="replace") + "\n")

    sub.on_connect = on_connect
    sub.on_subscribe = on_subscribe
    sub.on_message = on_message
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    sub.connect_async(HOST, args.port, keepalive=30)
    sub.loop_start()
    if not ready.wait(20):
        sys.exit(f"sub: not subscribed at port {args.port}")
    print("ready", flush=True)
    while not stop.wait(0.5):
        pass
    sub.disconnect()
    sub.loop_stop()
    out.close()
    if notify:
        notify.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    pub = commands.add_parser("pub")
    pub.add_argument("--port", type=int, required=True)
    pub.add_argument("--qos", type=int, choices=(1, 2), required=True)
    pub.add_argument("--count", type=int, default=20000)
    pub.add_argument("--rate", type=float, default=2000)
    pub.add_argument("--topic", default="bench/seq")
    pub.add_argument("--client-id", default="bridge-bench-pub")
    # 20: paho's default and mosquitto's max_inflight_messages. mosquitto 2.0.11 acknowledges
    # QoS 2 messages from an MQTT 3.1.1 client past its 20 in flight and then drops some of them
    # (seen here: 6 of 3,000 at 100 in flight, straight to mosquitto, no bridge, no outage).
    pub.add_argument("--inflight", type=int, default=20)
    pub.add_argument("--acked", required=True)
    pub.add_argument("--timeout", type=float, default=60, help="seconds to wait for acknowledgements after the last message")
    sub = commands.add_parser("sub")
    sub.add_argument("--port", type=int, required=True)
    sub.add_argument("--qos", type=int, choices=(1, 2), required=True)
    sub.add_argument("--client-id", default="bridge-bench-sub")
    sub.add_argument("--out", required=True)
    sub.add_argument("--notify", help="also record the bridges' link states ($SYS/broker/connection/#) here")
    args = parser.parse_args()
    publish(args) if args.command == "pub" else subscribe(args)


if __name__ == "__main__":
    main()
