#!/usr/bin/env python3
"""The publisher and the subscriber of bench/bridge.sh (paho-mqtt 2.x, MQTT 3.1.1).

    python3 bench/bridge_clients.py pub --port P --qos Q --count N --rate R --acked FILE
    python3 bench/bridge_clients.py sub --port P --qos Q --out FILE

pub: N messages on bench/seq, payload the sequence number (0 to N-1), one every 1/R s, at QoS
Q, with a persistent session (Clean Session 0), so that after an outage of the broker it
reconnects and sends again, with the same packet ids, every message not yet acknowledged (and
the PUBREL of every QoS 2 message already received): it goes on from its first unacknowledged
message. Nothing new is sent while the broker is away, nor after it returns until what was sent
before is acknowledged, so that the broker receives the messages in order; the messages due
meanwhile then go at once. When nothing is acknowledged for --stuck seconds (a broker that
closes every reconnection of the session), the publisher throws the session away (Clean Session
1 once) and sends every message not yet acknowledged again, in order, as new messages (at most 3
times; the summary lists them). Prints `start` when the first message goes, appends to FILE the sequence number of
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


class Client(mqtt.Client):
    """paho's client, less two bugs of paho-mqtt 2.2.0 in its reconnections.

    Each reconnection attempt resets the state of the QoS 2 messages in flight: one whose PUBREC
    came becomes "resend PUBREL". A second attempt before a CONNACK (the broker still down after
    the first) finds that state, which the reset does not expect, and makes it "publish": paho
    then sends the PUBLISH again, DUP 0, after its PUBREL, and the broker must take it for a new
    message (MQTT 3.1.1 4.3.3: no PUBLISH again after the PUBREL). Seen here: duplicates at
    REMOTE of messages whose PUBLISH went twice through the proxy, the second time with a new
    packet id from LOCAL, after a restart of LOCAL that paho had tried to reach twice."""

    def _messages_reconnect_reset_out(self) -> None:
        with self._out_message_mutex:
            for message in self._out_messages.values():
                if message.qos == 2 and message.state == mqtt.mqtt_ms_resend_pubrel:
                    message.state = mqtt.mqtt_ms_wait_for_pubcomp
        super()._messages_reconnect_reset_out()
        # The same reset puts every message it finds, however many, in flight (its count of
        # them stays at 0), so a reconnection would send them all at once, past the broker's
        # limit (mosquitto closes the connection: "PUBREC rc151", quota exceeded). The window
        # again: the first --inflight go at the CONNACK, the others wait their turn.
        with self._out_message_mutex:
            in_flight = 0
            for message in self._out_messages.values():
                if message.state == mqtt.mqtt_ms_resend_pubrel:
                    in_flight += 1
                elif message.state == mqtt.mqtt_ms_publish and message.qos > 0:
                    if in_flight < self._max_inflight_messages:
                        in_flight += 1
                    else:
                        message.state = mqtt.mqtt_ms_queued


def client(client_id: str) -> mqtt.Client:
    c = Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id,
        clean_session=False,
        protocol=mqtt.MQTTv311,
    )
    # Reconnect at once, then every second at most: the outages are seconds long.
    c.reconnect_delay_set(min_delay=1, max_delay=1)
    return c


class Publisher:
    """A paho client with a persistent session, replaced by a fresh one when stuck."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.lock = threading.Lock()
        self.connected = threading.Event()
        self.generation = 0
        self.client: mqtt.Client | None = None
        # (generation, packet id) of every acknowledgement, and of every message sent.
        self.acks: list[tuple[int, int]] = []
        self.seq_of: dict[tuple[int, int], int] = {}
        self.resolved = 0
        self.unresolved: list[tuple[int, int]] = []
        self.acked: set[int] = set()
        self.published = 0
        self.connects = 0
        self.disconnects = 0
        self.fresh_sessions: list[str] = []
        self.last_progress = time.monotonic()
        # paho's packet log (--log), to follow a message that went missing.
        self.log = open(args.log, "a", buffering=1) if args.log else None

    def start(self, clean_first: bool = False) -> None:
        args = self.args
        if clean_first:
            # Throw the broker's copy of the session away: connect once with Clean Session 1.
            fresh = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=args.client_id, clean_session=True)
            try:
                fresh.connect(HOST, args.port, keepalive=5)
                fresh.loop_start()
                time.sleep(0.5)
                fresh.disconnect()
                fresh.loop_stop()
            except OSError:
                pass
        self.generation += 1
        generation = self.generation
        c = client(args.client_id)
        c.max_inflight_messages_set(args.inflight)
        # Every message stays queued in the client until acknowledged, however long the outage.
        c.max_queued_messages_set(0)

        def on_connect(_c, _u, _flags, reason, _props):
            if not reason.is_failure and generation == self.generation:
                self.connects += 1
                self.connected.set()

        def on_disconnect(_c, _u, _flags, reason, _props):
            if generation == self.generation:
                self.disconnects += 1
                self.connected.clear()
                print(f"pub: disconnected ({reason}) at {time.monotonic() - STARTED:.2f} s", file=sys.stderr, flush=True)

        def on_publish(_c, _u, mid, _reason, _props):
            with self.lock:
                self.acks.append((generation, mid))

        c.on_connect = on_connect
        c.on_disconnect = on_disconnect
        c.on_publish = on_publish
        if self.log is not None:
            c.on_log = lambda _c, _u, _level, text: self.log.write(f"{time.time():.6f} g{generation} {text}\n")
        c.connect_async(HOST, args.port, keepalive=5)
        c.loop_start()
        self.client = c

    def stop(self) -> None:
        if self.client is not None:
            self.client.disconnect()
            self.client.loop_stop()

    def send(self, seq: int) -> None:
        info = self.client.publish(self.args.topic, str(seq).encode(), qos=self.args.qos)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            sys.exit(f"pub: publish of {seq} failed: {mqtt.error_string(info.rc)}")
        with self.lock:
            self.seq_of[(self.generation, info.mid)] = seq

    def resolve(self) -> int:
        """Turns the acknowledgements received so far into sequence numbers; how many are acked."""
        with self.lock:
            new = self.unresolved + self.acks[self.resolved :]
            self.resolved = len(self.acks)
            self.unresolved = []
            before = len(self.acked)
            for key in new:
                seq = self.seq_of.get(key)
                if seq is None:
                    self.unresolved.append(key)
                else:
                    self.acked.add(seq)
        if len(self.acked) > before:
            self.last_progress = time.monotonic()
        return len(self.acked)

    def settle(self, deadline: float) -> bool:
        """Waits until connected and every message sent so far is acknowledged, so that what
        follows reaches the broker after them, in order; starts a fresh session when nothing
        moves for --stuck seconds. False at the deadline."""
        while time.monotonic() < deadline:
            if self.connected.is_set() and self.resolve() >= self.published:
                return True
            if time.monotonic() - self.last_progress > self.args.stuck and len(self.fresh_sessions) < 3:
                self.fresh_start()
            time.sleep(0.01)
        return False

    def fresh_start(self) -> None:
        """The broker keeps refusing the session: a fresh one, and everything not yet
        acknowledged sent again, in order, as new messages."""
        self.resolve()
        missing = [seq for seq in range(self.published) if seq not in self.acked]
        note = f"at {time.monotonic() - STARTED:.1f} s, after {self.disconnects} disconnections, {len(missing)} unacknowledged sent again"
        print(f"pub: fresh session {note}", file=sys.stderr, flush=True)
        self.fresh_sessions.append(note)
        self.stop()
        self.connected.clear()
        self.start(clean_first=True)
        # Sent once connected, so that paho keeps them within its window (sent while
        # disconnected, all would go at once at the CONNACK).
        self.connected.wait(10)
        for seq in missing:
            self.send(seq)
        self.last_progress = time.monotonic()


STARTED = time.monotonic()


def publish(args: argparse.Namespace) -> None:
    global STARTED
    if args.count > 65000:
        sys.exit("--count: at most 65,000 (one packet id per message, never reused)")
    pub = Publisher(args)
    pub.start()
    if not pub.connected.wait(20):
        sys.exit(f"pub: no connection to port {args.port}")

    print("start", flush=True)
    STARTED = started = time.monotonic()
    pub.last_progress = started
    for seq in range(args.count):
        delay = started + seq / args.rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        if not pub.connected.is_set():
            # The broker went away: nothing new until it is back and has what was sent before.
            if not pub.settle(time.monotonic() + args.timeout):
                break
        pub.send(seq)
        pub.published = seq + 1
    sent_in = time.monotonic() - started
    pub.settle(time.monotonic() + args.timeout)
    pub.stop()
    pub.resolve()

    with open(args.acked, "w") as file:
        file.writelines(f"{seq}\n" for seq in sorted(pub.acked))
    print(
        json.dumps(
            {
                "sent": pub.published,
                "acked": len(pub.acked),
                "sent_in_s": round(sent_in, 2),
                "acked_in_s": round(time.monotonic() - started, 2),
                "connects": pub.connects,
                "fresh_sessions": pub.fresh_sessions,
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
    pub.add_argument("--log", help="paho's log of every packet sent and received, into this file")
    pub.add_argument("--stuck", type=float, default=10, help="seconds without an acknowledgement before a fresh session")
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
