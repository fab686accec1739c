#!/usr/bin/env python3
"""One crash round for an offline persistent session, with Eclipse paho-mqtt 2.x (MQTT 3.1.1).

Run by crates/midge/tests/crash_offline_queue.rs, which owns the broker process, as

    python3 crash_offline_queue.py --host 127.0.0.1 --port PORT --qos Q --kill-after K

1. A subscriber connects with CleanSession 0, subscribes to crash/q at QoS Q and disconnects.
2. A publisher sends MESSAGES numbered messages (payload "1" .. "3000") to crash/q at QoS Q, with
   INFLIGHT of them unacknowledged at a time, and records which ones the broker acknowledged
   (PUBACK for QoS 1, PUBCOMP for QoS 2).
3. After K acknowledgements it prints "KILL-NOW"; the caller kills the broker with SIGKILL. When
   the publisher's connection is gone, the script prints how many messages were acknowledged.
4. The caller restarts the broker on the same store and writes "PORT <port>" to stdin.
5. The subscriber reconnects with CleanSession 0 and must receive every acknowledged message: at
   QoS 1 at least once (a repeat only as a DUP resend), at QoS 2 exactly once, in publication
   order; nothing but the numbers 1..MESSAGES. A sentinel published after the reconnection ends
   the wait early in the normal case.

Exits 0 when the broker behaved, 1 with a message naming what went wrong otherwise. Every wait
is bounded (WAIT per step, WATCHDOG for the whole run); nothing sleeps to synchronise.
"""

import argparse
import os
import queue
import sys
import threading
import traceback

import paho.mqtt.client as mqtt

# How many numbered messages the publisher sends.
MESSAGES = 3000
# QoS 1/2 messages the publisher keeps unacknowledged, so it is not paced by round trips.
INFLIGHT = 100
# The longest one step may take (CONNACK, SUBACK, the next acknowledgement or message).
WAIT = 10.0
# How long the subscriber waits for more once the sentinel came but acknowledged messages are
# still missing: a broker that queues in order has delivered them all before the sentinel.
QUIET = 2.0
# The longest a whole round may take, whatever hangs; below the caller's own timeout.
WATCHDOG = 45.0
TOPIC = "crash/q"
SUBSCRIBER_ID = "crash-offline-sub"
# Published after the subscriber is back; it is queued behind everything the session holds.
SENTINEL = b"end"


class Failure(Exception):
    """The broker did not do what the spec says."""


def check(condition, message):
    if not condition:
        raise Failure(message)


def say(line):
    print(line, flush=True)


class Peer:
    """A paho 3.1.1 client whose network loop runs in its own thread and never reconnects.

    Callbacks record CONNACK, SUBACK, acknowledgements of our publications and disconnection
    under one condition variable, and put received messages on a queue.
    """

    def __init__(self, name, clean, on_acked=None):
        self.name = name
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=name,
            protocol=mqtt.MQTTv311,
            clean_session=clean,
            # A dead broker ends the loop thread instead of starting a reconnection loop.
            reconnect_on_failure=False,
        )
        self.cond = threading.Condition()
        self.connack = None
        self.subacks = {}
        self.disconnected = False
        # Packet ids (mids) the broker acknowledged; mapped to message numbers by the caller,
        # because on_publish can run before publish() has returned the mid.
        self.acked_mids = set()
        self.on_acked = on_acked
        self.messages = queue.Queue()
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_publish = self._on_publish
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

    def _on_publish(self, _client, _userdata, mid, _reason_code, _properties):
        # paho calls this on PUBACK (QoS 1) or PUBCOMP (QoS 2), once per message.
        with self.cond:
            self.acked_mids.add(mid)
            count = len(self.acked_mids)
            self.cond.notify_all()
        if self.on_acked is not None:
            self.on_acked(count)

    def _on_message(self, _client, _userdata, message):
        self.messages.put(message)

    def _on_disconnect(self, _client, _userdata, _flags, _reason_code, _properties):
        with self.cond:
            self.disconnected = True
            self.cond.notify_all()

    def wait(self, predicate, what, timeout=WAIT):
        with self.cond:
            check(self.cond.wait_for(predicate, timeout=timeout), f"{self.name}: timed out waiting for {what}")

    def connect(self, host, port):
        """Connects, waits for a successful CONNACK and returns Session Present."""
        self.client.connect(host, port, keepalive=30)
        self.client.loop_start()
        self.wait(lambda: self.connack is not None, "CONNACK")
        session_present, reason_code = self.connack
        check(not reason_code.is_failure, f"{self.name}: CONNACK refused: {reason_code}")
        return bool(session_present)

    def subscribe(self, topic, qos):
        result, mid = self.client.subscribe(topic, qos)
        check(result == mqtt.MQTT_ERR_SUCCESS, f"{self.name}: subscribe not sent: {result}")
        self.wait(lambda: mid in self.subacks, f"SUBACK for {topic}")
        check(self.subacks[mid] == [qos], f"{self.name}: SUBACK for {topic}: {self.subacks[mid]}")

    def disconnect(self):
        """Sends DISCONNECT and waits until paho reports the connection closed."""
        self.client.disconnect()
        self.wait(lambda: self.disconnected, "disconnection")
        self.client.loop_stop()

    def receive(self, timeout=WAIT):
        """The next message, or None when none came within `timeout`."""
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            return None


def publish_until_killed(args):
    """Publishes the numbered messages; returns the sorted numbers the broker acknowledged."""
    killed = threading.Event()

    def on_acked(count):
        if count == args.kill_after:
            # Printed from paho's thread as the acknowledgement arrives; publishing goes on
            # until the caller's SIGKILL lands, so the crash hits the stream mid-flight.
            say("KILL-NOW")
            killed.set()

    publisher = Peer("crash-offline-pub", clean=True, on_acked=on_acked)
    publisher.client.max_inflight_messages_set(INFLIGHT)
    publisher.connect(args.host, args.port)
    number_of_mid = {}
    for number in range(1, MESSAGES + 1):
        info = publisher.client.publish(TOPIC, str(number).encode(), qos=args.qos)
        # Queued by paho (and sent as the window allows) even if the broker is already gone.
        check(info.rc in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN), f"publish {number}: {info.rc}")
        number_of_mid[info.mid] = number
    check(killed.wait(WATCHDOG), f"only {len(publisher.acked_mids)} of {args.kill_after} acknowledgements came")
    # The broker is being killed; paho notices the closed socket and its loop thread ends.
    publisher.wait(lambda: publisher.disconnected, "the publisher's disconnection after the kill")
    publisher.client.loop_stop()
    with publisher.cond:
        return sorted(number_of_mid[mid] for mid in publisher.acked_mids)


def read_new_port():
    """The caller's "PORT <port>" line, written once the broker is back (the watchdog bounds it)."""
    line = sys.stdin.readline()
    check(line.startswith("PORT "), f"expected 'PORT <port>' on stdin, got {line!r}")
    return int(line.split()[1])


def receive_after_restart(args, port, acked):
    """Reconnects the subscriber and checks what it receives against `acked`."""
    subscriber = Peer(SUBSCRIBER_ID, clean=False)
    # MQTT-3.1.2-4, MQTT-3.2.2-2: CleanSession 0 resumes the session the crash must not lose.
    check(subscriber.connect(args.host, port), "no Session Present after the restart: the session was lost")
    sentinel = Peer("crash-offline-end", clean=True)
    sentinel.connect(args.host, port)
    info = sentinel.client.publish(TOPIC, SENTINEL, qos=1)
    info.wait_for_publish(timeout=WAIT)
    check(info.is_published(), "the sentinel was not acknowledged")

    want = set(acked)
    first_seen = []  # numbers in order of first delivery
    seen = set()
    sentinel_seen = False
    while not (sentinel_seen and want <= seen):
        message = subscriber.receive(QUIET if sentinel_seen else WAIT)
        if message is None:
            break
        check(message.topic == TOPIC, f"message on {message.topic!r}")
        if message.payload == SENTINEL:
            sentinel_seen = True
            continue
        # 3.1.1 MQTT-3.8.4-6: at min(published, granted) QoS, both the tested one.
        check(message.qos == args.qos, f"message {message.payload!r} at QoS {message.qos}, expected {args.qos}")
        try:
            number = int(message.payload)
        except ValueError:
            raise Failure(f"payload {message.payload!r} is not a message number") from None
        check(1 <= number <= MESSAGES, f"message {number} was never published")
        if number in seen:
            # MQTT-4.3.3-2: QoS 2 is delivered exactly once. At QoS 1 a repeat is allowed only
            # as a resend, which carries DUP (MQTT-3.3.1-1).
            check(args.qos == 1, f"QoS 2 message {number} delivered twice")
            check(message.dup, f"QoS 1 message {number} delivered again without DUP")
            continue
        # MQTT-4.6.0-6: one publisher's messages to one topic reach each subscriber in order.
        if first_seen:
            check(number > first_seen[-1], f"message {number} delivered after {first_seen[-1]} (out of order)")
        first_seen.append(number)
        seen.add(number)

    # MQTT-3.1.2-5: messages published while the session was offline were stored in it, and an
    # acknowledged one must survive the crash.
    missing = sorted(want - seen)
    if missing:
        raise Failure(
            f"{len(missing)} of {len(acked)} acknowledged messages never delivered; first missing {missing[0]}; "
            f"delivered {len(seen)} distinct ({min(seen, default='none')}..{max(seen, default='none')})"
        )
    check(sentinel_seen, f"the sentinel published after the restart never arrived (after {len(seen)} messages)")
    say(f"delivered {len(seen)} distinct messages, all {len(acked)} acknowledged ones among them, in order")
    subscriber.disconnect()
    sentinel.disconnect()


def run(args):
    subscriber = Peer(SUBSCRIBER_ID, clean=False)
    check(not subscriber.connect(args.host, args.port), "Session Present on the first connection")
    subscriber.subscribe(TOPIC, args.qos)
    subscriber.disconnect()

    acked = publish_until_killed(args)
    check(len(acked) >= args.kill_after, f"{len(acked)} acknowledged, fewer than {args.kill_after}")
    say(f"acknowledged {len(acked)} of {MESSAGES} before the kill (highest {acked[-1]})")
    # Every acknowledged number was published, so this is a subset of 1..MESSAGES.
    receive_after_restart(args, read_new_port(), acked)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--qos", type=int, choices=(1, 2), required=True)
    parser.add_argument("--kill-after", type=int, required=True, help="acknowledgements before KILL-NOW")
    args = parser.parse_args()
    if not 1 <= args.kill_after < MESSAGES:
        parser.error(f"--kill-after must be in 1..{MESSAGES - 1}")

    def give_up():
        print(f"FAIL: still running after {WATCHDOG}s", file=sys.stderr, flush=True)
        os._exit(3)

    watchdog = threading.Timer(WATCHDOG, give_up)
    watchdog.daemon = True
    watchdog.start()
    try:
        run(args)
    except Failure as failure:
        print(f"FAIL: {failure}", file=sys.stderr, flush=True)
        os._exit(1)
    except Exception as error:  # a bug in this script, not the broker: say so, with the trace
        traceback.print_exc()
        print(f"FAIL: the script itself failed: {error!r}", file=sys.stderr, flush=True)
        os._exit(2)
    say("OK")
    # os._exit: paho's loop threads may still be winding down; the result is known.
    os._exit(0)


if __name__ == "__main__":
    main()
