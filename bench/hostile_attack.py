#!/usr/bin/env python3
"""Hostile MQTT clients for bench/hostile.sh: one attack per run, from raw sockets.

Every packet is built here byte by byte (no MQTT library), so an attack can send what no client
library would. An attack connects from the loopback source addresses given (`--sources`,
127.0.0.2 by default: not the canary's 127.0.0.1, so a limit per source address can tell them
apart), sets itself up (connections opened, subscriptions made), writes the time to the
`--ready` file, runs for `--duration` seconds (or until SIGTERM) and stops by itself, closing
everything it opened. Setting up is bounded by `--setup-timeout`; every loop is bounded by the
duration and by a count. What the attacker observed (answers, reason codes, closes and when) is
printed as one JSON object on stdout, with a one-line `summary`. Python 3.11 or later, the
standard library alone.

    hostile_attack.py malformed --port 1883 --duration 10
    hostile_attack.py slowloris --port 1883 --sockets 10000 --trickle 100 --duration 25

Attacks (see `ATTACKS` at the bottom): malformed, slowloris, connect-storm, auth-storm,
sub-storm, sub-churn, publish-void, publish-fanout, stalled-subscribers, max-length, takeover.
"""

import argparse
import asyncio
import collections
import errno
import itertools
import json
import signal
import socket
import struct
import sys
import time

# Protocol levels, as in CONNECT.
V31, V311, V5 = 3, 4, 5
VERSION_NAMES = {V31: "3.1", V311: "3.1.1", V5: "5.0"}
VERSIONS = (V31, V311, V5)

# Packet types (the fixed header's upper nibble).
CONNACK, PUBACK, SUBACK, UNSUBACK, DISCONNECT = 2, 4, 9, 11, 14
TYPE_NAMES = {1: "CONNECT", 2: "CONNACK", 3: "PUBLISH", 4: "PUBACK", 5: "PUBREC", 6: "PUBREL",
              7: "PUBCOMP", 8: "SUBSCRIBE", 9: "SUBACK", 10: "UNSUBSCRIBE", 11: "UNSUBACK",
              12: "PINGREQ", 13: "PINGRESP", 14: "DISCONNECT", 15: "AUTH"}

# Linux socket options Python may not name: connect() picks the source port, not bind(), so a
# source address holds one port per (source, destination) pair instead of one overall.
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
# tcpi_state of TCP_INFO: the peer closed (FIN received, CLOSE_WAIT) or reset the connection.
TCP_CLOSE, TCP_CLOSE_WAIT = 7, 8
# How long a connection attempt or an awaited CONNACK may take.
CONNECT_TIMEOUT = 5.0
# The largest Remaining Length the protocol can express (four 7-bit groups).
MAX_REMAINING_LENGTH = 268_435_455


# --- Encoding -------------------------------------------------------------------------------

def varint(value):
    """Variable Byte Integer (MQTT 1.5.5)."""
    out = bytearray()
    while True:
        byte, value = value % 128, value // 128
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def text(value):
    """A length-prefixed string; bytes are sent as they are (malformed UTF-8 included)."""
    raw = value.encode() if isinstance(value, str) else value
    return struct.pack(">H", len(raw)) + raw


def packet(first_byte, body):
    return bytes([first_byte]) + varint(len(body)) + body


def props(version, content=b""):
    """A property block in v5; nothing in 3.x."""
    return varint(len(content)) + content if version == V5 else b""


def connect_body(version, client_id="h", *, flags=0x02, keepalive=0, properties=None, payload=b"",
                 name=None, level=None):
    """CONNECT's variable header and payload. `properties` given for a 3.x version puts a
    property block where 3.x has none; `payload` follows the client id (will, user, password)."""
    name = name if name is not None else (b"MQIsdp" if version == V31 else b"MQTT")
    level = version if level is None else level
    body = text(name) + bytes([level, flags]) + struct.pack(">H", keepalive)
    if properties is not None:
        body += properties
    elif version == V5:
        body += b"\x00"
    return body + text(client_id) + payload


def connect(version, client_id="h", **options):
    return packet(0x10, connect_body(version, client_id, **options))


def publish(version, topic, payload, qos=0, packet_id=1):
    body = text(topic) + (struct.pack(">H", packet_id) if qos else b"") + props(version) + payload
    return packet(0x30 | (qos << 1), body)


def subscribe(version, packet_id, filters, qos=0):
    body = struct.pack(">H", packet_id) + props(version)
    for topic_filter in filters:
        body += text(topic_filter) + bytes([qos])
    return packet(0x82, body)


def unsubscribe(version, packet_id, filters):
    body = struct.pack(">H", packet_id) + props(version)
    for topic_filter in filters:
        body += text(topic_filter)
    return packet(0xA2, body)


def disconnect(version):
    return b"\xe0\x01\x00" if version == V5 else b"\xe0\x00"


# --- Decoding -------------------------------------------------------------------------------

class Garbage(Exception):
    """The broker sent bytes that are not an MQTT packet."""


async def read_packet(reader):
    """One packet: (type, flags, body). Raises IncompleteReadError at end of stream."""
    first = (await reader.readexactly(1))[0]
    length, shift = 0, 0
    for _ in range(4):
        byte = (await reader.readexactly(1))[0]
        length += (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    else:
        raise Garbage("remaining length over 4 bytes")
    body = await reader.readexactly(length) if length else b""
    return first >> 4, first & 0x0F, body


def reason_codes(version, kind, body):
    """The reason or return codes of CONNACK, DISCONNECT, SUBACK and UNSUBACK."""
    if kind == CONNACK:
        return [body[1]] if len(body) >= 2 else []
    if kind == DISCONNECT:
        return [body[0] if body else 0]
    if kind in (SUBACK, UNSUBACK):
        if version != V5:
            return list(body[2:]) if kind == SUBACK else []
        rest = body[2:]
        length, shift, used = 0, 0, 0
        for byte in rest[:4]:
            used += 1
            length += (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        return list(rest[used + length:])
    return []


def describe(version, kind, body):
    """A packet the broker sent, short: `CONNACK 0x84`, `DISCONNECT 0x81`, `SUBACK 0x80`."""
    name = TYPE_NAMES.get(kind, f"type {kind}")
    codes = sorted(set(reason_codes(version, kind, body)))
    return f"{name} {'/'.join(f'0x{code:02x}' for code in codes)}" if codes else name


async def answers(reader, version, wait=None):
    """What the broker did within `wait` seconds (None: until it closes): the packets it sent,
    then `close`, `reset` or `open` (still open, nothing more came)."""
    seen = []
    try:
        async with deadline(wait):
            while True:
                kind, _, body = await read_packet(reader)
                seen.append(describe(version, kind, body))
                if len(seen) > 4:
                    seen.append("...")
                    break
    except asyncio.IncompleteReadError as error:
        seen.append("close" if not error.partial else "close mid-packet")
    except (ConnectionResetError, BrokenPipeError):
        seen.append("reset")
    except TimeoutError:
        seen.append("open")
    except Garbage:
        seen.append("garbage")
    return ", ".join(seen)


def deadline(seconds):
    """A timeout for a block (None: none). asyncio.timeout, not wait_for: wait_for runs the
    awaited coroutine as a task of its own, and Python 3.11's can lose a cancellation."""
    return asyncio.timeout(seconds)


async def with_timeout(awaitable, seconds):
    async with deadline(seconds):
        return await awaitable


async def stop(tasks):
    """Cancels tasks until every one has ended (a loop may catch one cancellation)."""
    pending = set(tasks)
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=1.0)


# --- Sockets --------------------------------------------------------------------------------

class Attack:
    """What every attack shares: where to connect from and to, the time budget, counters."""

    def __init__(self, args):
        self.args = args
        self.sources = itertools.cycle(args.sources.split(","))
        self.ready = asyncio.Event()
        self.started = time.monotonic()
        self.ready_at = None
        self.stopping = False
        self.told_to_stop = asyncio.Event()
        self.connect_errors = collections.Counter()

    def elapsed(self):
        return time.monotonic() - (self.ready_at or self.started)

    async def run(self, tasks):
        """Waits for the set-up (at most --setup-timeout), writes the ready file, lets the attack
        run for --duration seconds (or until its tasks end by themselves), then stops it. Returns
        the seconds it ran."""
        try:
            await with_timeout(self.ready.wait(), self.args.setup_timeout)
            self.setup_complete = True
        except TimeoutError:
            self.setup_complete = False
            self.ready.set()  # what waits for the set-up goes ahead with what there is
        self.ready_at = time.monotonic()
        self.setup_s = self.ready_at - self.started
        if self.args.ready:
            with open(self.args.ready, "w") as file:
                file.write(f"{time.time()}\n")
        # Until the tasks end by themselves, the time is up, or SIGTERM asks to stop early.
        everything = asyncio.ensure_future(asyncio.wait(tasks))
        told = asyncio.ensure_future(self.told_to_stop.wait())
        await asyncio.wait([everything, told], timeout=self.args.duration, return_when=asyncio.FIRST_COMPLETED)
        everything.cancel()
        told.cancel()
        elapsed = time.monotonic() - self.ready_at
        self.stopping = True
        # Loops also check `stopping`, should they catch the cancellation.
        await stop(tasks)
        results = [task.exception() if not task.cancelled() else None for task in tasks]
        self.errors = collections.Counter(type(result).__name__ for result in results
                                          if isinstance(result, BaseException)
                                          and not isinstance(result, asyncio.CancelledError))
        return elapsed

    async def open(self, limit=2 ** 16):
        """A connection to the broker from the next source address, or None (counted)."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.bind((next(self.sources), 0))
            sock.setblocking(False)
            loop = asyncio.get_running_loop()
            await with_timeout(loop.sock_connect(sock, (self.args.host, self.args.port)), CONNECT_TIMEOUT)
            return await asyncio.open_connection(sock=sock, limit=limit)
        except TimeoutError:
            self.connect_errors["timeout"] += 1
        except OSError as error:
            self.connect_errors[type(error).__name__ if not error.errno else errno_name(error.errno)] += 1
        except BaseException:
            sock.close()
            raise
        sock.close()
        return None

    async def session(self, version, client_id, **options):
        """A connection that sent CONNECT and read a successful CONNACK, or None (counted)."""
        opened = await self.open()
        if opened is None:
            return None
        reader, writer = opened
        writer.write(connect(version, client_id, **options))
        try:
            kind, _, body = await with_timeout(read_packet(reader), CONNECT_TIMEOUT)
            if kind == CONNACK and len(body) >= 2 and body[1] == 0:
                return reader, writer
            self.connect_errors[describe(version, kind, body)] += 1
        except TimeoutError:
            self.connect_errors["no CONNACK"] += 1
        except (asyncio.IncompleteReadError, OSError, Garbage):
            self.connect_errors["closed before CONNACK"] += 1
        except BaseException:
            writer.transport.abort()
            raise
        writer.transport.abort()
        return None


def errno_name(number):
    return errno.errorcode.get(number, str(number))


def close(writer):
    if writer is not None:
        writer.transport.abort()


def seconds(values):
    """min / median / max of a list of durations, for the summary."""
    if not values:
        return None
    ordered = sorted(values)
    return {"min": round(ordered[0], 2), "p50": round(ordered[len(ordered) // 2], 2),
            "max": round(ordered[-1], 2)}


def spread(values):
    stats = seconds(values)
    return f"{stats['min']}/{stats['p50']}/{stats['max']} s" if stats else "–"


def counts(counter):
    return ", ".join(f"{key} {value:,}" for key, value in counter.most_common()) or "none"


# --- 1. Malformed packets -------------------------------------------------------------------

def malformed_cases():
    """(name, after_connect, {version: build}): every decoder error class, per version, where
    build(client_id) makes the bytes (a CONNECT that a version allows gets a client id of its own,
    so attempts do not take each other over). A case absent for a version has nothing to say
    there."""
    def per_version(build, only=VERSIONS):
        takes_id = build.__code__.co_argcount == 2
        return {version: (lambda cid, v=version: build(v, cid) if takes_id else build(v)) for version in only}

    will = lambda v: props(v) + text("w") + text("x")  # noqa: E731
    before = [
        ("reserved packet type 0", per_version(lambda v: b"\x00\x00")),
        ("packet type 15 first (v5: AUTH)", per_version(lambda v: b"\xf0\x00")),
        ("remaining length over 4 bytes", per_version(lambda v: b"\x10\xff\xff\xff\xff\x01")),
        ("first packet not CONNECT (PINGREQ)", per_version(lambda v: b"\xc0\x00")),
        ("CONNECT fixed header flags 0x1", per_version(lambda v, cid: packet(0x11, connect_body(v, cid)))),
        ("CONNECT reserved flag set", per_version(lambda v, cid: connect(v, cid, flags=0x03))),
        ("CONNECT protocol name MQTX", per_version(lambda v, cid: connect(v, cid, name=b"MQTX"))),
        ("CONNECT protocol level 9", per_version(lambda v, cid: connect(v, cid, level=9))),
        ("CONNECT client id not UTF-8", per_version(lambda v: connect(v, b"h\xc3\x28"))),
        ("CONNECT client id with U+0000", per_version(lambda v: connect(v, b"h\x00x"))),
        ("CONNECT empty client id, clean 0", per_version(lambda v: connect(v, "", flags=0x00))),
        ("CONNECT password without user name", per_version(
            lambda v, cid: connect(v, cid, flags=0x42, payload=text("pw")))),
        ("CONNECT will QoS 3", per_version(lambda v, cid: connect(v, cid, flags=0x02 | 0x04 | 0x18, payload=will(v)))),
        ("CONNECT truncated (client id overruns)", per_version(
            lambda v: packet(0x10, connect_body(v, "")[:-2] + b"\x00\xc8abc"))),
        ("CONNECT properties in 3.x / bad property id in 5", per_version(
            lambda v, cid: connect(v, cid, properties=b"\x02\x7f\x00") if v == V5
            else connect(v, cid, properties=b"\x05\x11\x00\x00\x00\x0a"))),
    ]
    sub = lambda v, options=b"\x00", topic_filter="a/b", head=0x82, properties=None: packet(  # noqa: E731
        head, b"\x00\x01" + (props(v) if properties is None else properties) + text(topic_filter) + options)
    after = [
        ("second CONNECT", per_version(lambda v, cid: connect(v, cid + "b"))),
        ("PUBLISH QoS 3", per_version(lambda v: packet(0x36, text("a") + b"\x00\x01" + props(v) + b"x"))),
        ("PUBLISH topic not UTF-8", per_version(lambda v: packet(0x30, text(b"a/\xff") + props(v) + b"x"))),
        ("PUBLISH topic with U+0000", per_version(lambda v: packet(0x30, text(b"a\x00b") + props(v) + b"x"))),
        ("PUBLISH topic with a wildcard", per_version(lambda v: packet(0x30, text("a/+") + props(v) + b"x"))),
        ("PUBLISH empty topic (no alias)", per_version(lambda v: packet(0x30, text("") + props(v) + b"x"))),
        ("PUBLISH QoS 1 packet id 0", per_version(lambda v: packet(0x32, text("a") + b"\x00\x00" + props(v) + b"x"))),
        ("PUBLISH truncated (topic overruns)", per_version(lambda v: packet(0x30, b"\x00\x64abc"))),
        ("PUBLISH bad property id (v5)", per_version(lambda v: packet(0x30, text("a") + b"\x02\x7f\x00x"), (V5,))),
        ("PUBLISH duplicate property (v5)", per_version(
            lambda v: packet(0x30, text("a") + b"\x04\x01\x00\x01\x00x"), (V5,))),
        ("PUBLISH topic alias 0 (v5)", per_version(lambda v: packet(0x30, text("a") + b"\x03\x23\x00\x00x"), (V5,))),
        ("SUBSCRIBE fixed header flags 0x0", per_version(lambda v: sub(v, head=0x80))),
        ("SUBSCRIBE with no filters", per_version(lambda v: packet(0x82, b"\x00\x01" + props(v)))),
        ("SUBSCRIBE QoS 3", per_version(lambda v: sub(v, options=b"\x03"))),
        ("SUBSCRIBE reserved option bits", per_version(lambda v: sub(v, options=b"\xc0"))),
        ("SUBSCRIBE filter a/#/b", per_version(lambda v: sub(v, topic_filter="a/#/b"))),
        ("SUBSCRIBE filter not UTF-8", per_version(lambda v: sub(v, topic_filter=b"a/\xed\xa0\x80"))),
        ("SUBSCRIBE properties in 3.x / bad property id in 5", per_version(
            lambda v: sub(v, properties=b"\x02\x7f\x00") if v == V5 else sub(v, properties=b"\x00"))),
        ("SUBSCRIBE subscription id 0 (v5)", per_version(lambda v: sub(v, properties=b"\x02\x0b\x00"), (V5,))),
        ("UNSUBSCRIBE with no filters", per_version(lambda v: packet(0xA2, b"\x00\x01" + props(v)))),
        ("UNSUBSCRIBE fixed header flags 0x0", per_version(
            lambda v: packet(0xA0, b"\x00\x01" + props(v) + text("a")))),
        ("PUBREL fixed header flags 0x0", per_version(lambda v: packet(0x60, b"\x00\x01"))),
        ("PINGREQ with a body", per_version(lambda v: b"\xc0\x01\x00")),
        ("DISCONNECT fixed header flags 0x1", per_version(lambda v: b"\xe1\x00")),
        ("CONNACK from the client", per_version(lambda v: packet(0x20, b"\x00\x00" + props(v)))),
        ("reserved packet type 0 after CONNECT", per_version(lambda v: b"\x00\x00")),
        ("type 15 after CONNECT (v5: AUTH, no method)", per_version(lambda v: b"\xf0\x00")),
        ("remaining length over 4 bytes after CONNECT", per_version(lambda v: b"\x30\xff\xff\xff\xff\x01")),
    ]
    return [(name, False, by_version) for name, by_version in before] + \
           [(name, True, by_version) for name, by_version in after]


async def malformed(attack):
    """Workers open connection after connection, each sending one malformed packet (after a
    valid CONNECT for the cases that need one), and record what the broker did."""
    args = attack.args
    cases = [(name, after, version, build) for name, after, by_version in malformed_cases()
             for version, build in by_version.items()]
    order = [f"{name}|{VERSION_NAMES[version]}" for name, _, version, _ in cases]
    outcomes = collections.defaultdict(collections.Counter)
    attempts = itertools.count()
    done = [0]
    attack.ready.set()

    async def worker(index):
        while not attack.stopping:
            number = next(attempts)
            if number >= args.max_attempts:
                return
            name, after, version, build = cases[number % len(cases)]
            key = f"{name}|{VERSION_NAMES[version]}"
            client_id = f"hm{index}-{number % 100000}"
            data = build(client_id)
            if after:
                opened = await attack.session(version, client_id, keepalive=60)
            else:
                opened = await attack.open()
            if opened is None:
                outcomes[key]["could not connect"] += 1
                await asyncio.sleep(0.1)
                continue
            reader, writer = opened
            try:
                writer.write(data)
                outcomes[key][await answers(reader, version, args.answer_timeout)] += 1
                done[0] += 1
            finally:
                close(writer)

    tasks = [asyncio.create_task(worker(index)) for index in range(args.workers)]
    await attack.run(tasks)
    total = collections.Counter()
    for counter in outcomes.values():
        for outcome, count in counter.items():
            total[terminal(outcome)] += count
    codes = collections.Counter()
    for counter in outcomes.values():
        for outcome, count in counter.items():
            for part in outcome.split(", "):
                if "0x" in part:
                    codes[part] += count
    return {
        "attempts": done[0],
        "cases": {key: dict(outcomes[key]) for key in order if key in outcomes},
        "by_end": dict(total),
        "codes": dict(codes),
        "summary": f"{done[0]:,} bad packets ({len(cases)} cases x versions): ended {counts(total)}; "
                   f"answers {counts(codes)}",
    }


def terminal(outcome):
    """How an answer ended: close, reset, open (nothing within the wait)..."""
    last = outcome.split(", ")[-1]
    return "left open" if last == "open" else last


# --- 2. Slowloris ---------------------------------------------------------------------------

async def slowloris(attack):
    """`--sockets` connections that send nothing, and `--trickle` that send a valid CONNECT one
    byte a second. When the broker closes one, it is opened again (the attacker insists)."""
    args = attack.args
    stats = {kind: {"opened": 0, "closed": [], "reset": 0, "open_at_end": 0, "connack": 0,
                    "bytes_when_closed": []} for kind in ("idle", "trickle")}
    first_round = [0]
    gate = asyncio.Semaphore(args.concurrency)

    async def one(kind, index):
        record = stats[kind]
        counted = False
        while not attack.stopping:
            async with gate:
                opened = await attack.open()
            if not counted:
                counted = True
                first_round[0] += 1
                if first_round[0] >= args.sockets + args.trickle:
                    attack.ready.set()
            if opened is None:
                await asyncio.sleep(1)
                continue
            record["opened"] += 1
            reader, writer = opened
            began = time.monotonic()
            sent = 0
            try:
                if kind == "idle":
                    data = await reader.read(1)
                    if data:  # the broker said something to a client that said nothing
                        record.setdefault("answered", 0)
                        record["answered"] += 1
                        await reader.read()
                else:
                    message = connect(V311, f"slow-{index}", keepalive=60)
                    reading = asyncio.ensure_future(read_packet(reader))
                    try:
                        while not reading.done() and sent < len(message):
                            writer.write(message[sent:sent + 1])
                            sent += 1
                            await asyncio.wait([reading], timeout=1.0)
                        kind_seen, _, _ = await reading
                        if kind_seen == CONNACK:
                            record["connack"] += 1
                            await reader.read()  # connected: hold it until closed or the end
                    finally:
                        reading.cancel()
                record["closed"].append(time.monotonic() - began)
                record["bytes_when_closed"].append(sent)
            except (asyncio.IncompleteReadError, ConnectionResetError, BrokenPipeError):
                record["closed"].append(time.monotonic() - began)
                record["bytes_when_closed"].append(sent)
                record["reset"] += 1
            except asyncio.CancelledError:
                record["open_at_end"] += 1
                raise
            finally:
                close(writer)

    tasks = [asyncio.create_task(one("idle", index)) for index in range(args.sockets)]
    tasks += [asyncio.create_task(one("trickle", index)) for index in range(args.trickle)]
    await attack.run(tasks)
    result = {}
    for kind, record in stats.items():
        result[kind] = {
            "opened": record["opened"], "closed_by_broker": len(record["closed"]),
            "reset": record["reset"], "close_after_s": seconds(record["closed"]),
            "open_at_end": record["open_at_end"], "connack": record["connack"],
            "answered": record.get("answered", 0),
            "bytes_when_closed": seconds(record["bytes_when_closed"]),
        }
    idle, trickle = result["idle"], result["trickle"]
    result["summary"] = (
        f"idle: {idle['opened']:,} opened, {idle['closed_by_broker']:,} closed by the broker after "
        f"{spread(stats['idle']['closed'])} (min/median/max), {idle['open_at_end']:,} open at the end; "
        f"1 byte/s CONNECT: {trickle['opened']:,} opened, {trickle['closed_by_broker']:,} closed after "
        f"{spread(stats['trickle']['closed'])}, {trickle['connack']:,} completed CONNECT; "
        f"connect errors: {counts(attack.connect_errors)}")
    return result


# --- 3. Connect storm -----------------------------------------------------------------------

async def connect_storm(attack):
    """`--concurrency` workers: connect, CONNECT, CONNACK, DISCONNECT, wait for the close, again."""
    args = attack.args
    connacks = collections.Counter()
    ends = collections.Counter()
    number = itertools.count()
    attack.ready.set()

    async def worker():
        while not attack.stopping:
            index = next(number)
            if index >= args.max_attempts:
                return
            version = VERSIONS[index % 3] if args.version == 0 else args.version
            opened = await attack.open()
            if opened is None:
                await asyncio.sleep(0.05)
                continue
            reader, writer = opened
            try:
                writer.write(connect(version, f"hc{index}", keepalive=60))
                kind, _, body = await with_timeout(read_packet(reader), CONNECT_TIMEOUT)
                connacks[describe(version, kind, body)] += 1
                if kind == CONNACK and body[1:2] == b"\x00":
                    writer.write(disconnect(version))
                    ends[await answers(reader, version, 1.0)] += 1
            except TimeoutError:
                connacks["no CONNACK in 5 s"] += 1
            except (asyncio.IncompleteReadError, OSError, Garbage):
                connacks["closed before CONNACK"] += 1
            finally:
                close(writer)

    tasks = [asyncio.create_task(worker()) for _ in range(args.concurrency)]
    elapsed = await attack.run(tasks)
    accepted = sum(count for key, count in connacks.items() if key in ("CONNACK", "CONNACK 0x00"))
    return {
        "connacks": dict(connacks), "after_disconnect": dict(ends),
        "connect_errors": dict(attack.connect_errors),
        "connects_per_s": round(accepted / elapsed) if elapsed else None,
        "summary": f"{sum(connacks.values()):,} CONNECTs ({accepted / elapsed:,.0f}/s accepted): {counts(connacks)}; "
                   f"connect errors: {counts(attack.connect_errors)}",
    }


async def auth_storm(attack):
    """`--concurrency` workers: connect, CONNECT with user name `--username` and the wrong
    password `--password`, read the refusal (3.x: CONNACK return code 4 or 5; 5.0: reason code
    0x86 or 0x87) and then the close, again. MQTT 3.1, 3.1.1 and 5.0 in turn, as connect-storm.
    A CONNECT that is accepted after all is counted and disconnected."""
    args = attack.args
    connacks = collections.Counter()
    ends = collections.Counter()
    number = itertools.count()
    credentials = text(args.username) + text(args.password)
    sent = [0]
    attack.ready.set()

    async def worker():
        while not attack.stopping:
            index = next(number)
            if index >= args.max_attempts:
                return
            version = VERSIONS[index % 3] if args.version == 0 else args.version
            opened = await attack.open()
            if opened is None:
                await asyncio.sleep(0.05)
                continue
            reader, writer = opened
            name = VERSION_NAMES[version]
            try:
                # Flags: user name, password, clean session.
                writer.write(connect(version, f"ha{index}", flags=0xC2, keepalive=60, payload=credentials))
                sent[0] += 1
                kind, _, body = await with_timeout(read_packet(reader), CONNECT_TIMEOUT)
                connacks[f"{name} {describe(version, kind, body)}"] += 1
                if kind == CONNACK and body[1:2] == b"\x00":
                    writer.write(disconnect(version))
                # What came after the answer: the close, within a second.
                ends[await answers(reader, version, 1.0)] += 1
            except TimeoutError:
                connacks[f"{name} no CONNACK in 5 s"] += 1
            except (asyncio.IncompleteReadError, OSError, Garbage):
                connacks[f"{name} closed before CONNACK"] += 1
            finally:
                close(writer)

    tasks = [asyncio.create_task(worker()) for _ in range(args.concurrency)]
    elapsed = await attack.run(tasks)
    refused = sum(count for key, count in connacks.items()
                  if "CONNACK 0x" in key and not key.endswith("CONNACK 0x00"))
    return {
        "sent": sent[0], "connacks": dict(connacks), "after_connack": dict(ends),
        "connect_errors": dict(attack.connect_errors),
        "refused_per_s": round(refused / elapsed) if elapsed else None,
        "summary": f"{sent[0]:,} CONNECTs as {args.username} with a wrong password ({refused / elapsed:,.0f}/s "
                   f"refused): {counts(connacks)}; then {counts(ends)}; "
                   f"connect errors: {counts(attack.connect_errors)}",
    }


# --- 4. Subscription storms -----------------------------------------------------------------

async def sub_storm(attack):
    """One v5 client subscribes `--filters` distinct filters, one per SUBSCRIBE, `--window`
    unacknowledged at a time, then unsubscribes them all; again until the time is up."""
    args = attack.args
    version = V5
    opened = await attack.session(version, "hostile-subscriber", keepalive=0)
    if opened is None:
        return {"summary": f"could not connect: {counts(attack.connect_errors)}"}
    reader, writer = opened
    attack.ready.set()
    rounds = []
    suback_codes = collections.Counter()
    unsuback_codes = collections.Counter()
    fate = {"end": "open at the end"}

    async def run_rounds():
        window = asyncio.Semaphore(args.window)
        phase = {"acks": 0, "expected": 0}
        finished = asyncio.Event()

        async def read_acks():
            try:
                while True:
                    kind, _, body = await read_packet(reader)
                    if kind in (SUBACK, UNSUBACK):
                        if not rounds:
                            target = suback_codes if kind == SUBACK else unsuback_codes
                            for code in reason_codes(version, kind, body):
                                target[f"0x{code:02x}"] += 1
                        window.release()
                        phase["acks"] += 1
                        if phase["acks"] == phase["expected"]:
                            finished.set()
                    else:
                        fate["end"] = describe(version, kind, body)
            except (asyncio.IncompleteReadError, OSError, Garbage):
                fate["end"] = f"{fate['end'] if fate['end'] != 'open at the end' else ''} closed by the broker".strip()
                finished.set()
                raise

        reading = asyncio.create_task(read_acks())
        packet_id = itertools.cycle(range(1, 65536))
        try:
            for _ in range(args.max_rounds):
                began = time.monotonic()
                for build in (lambda i: subscribe(version, next(packet_id), [f"hostile/sub/{i}"]),
                              lambda i: unsubscribe(version, next(packet_id), [f"hostile/sub/{i}"])):
                    finished.clear()
                    phase.update(acks=0, expected=args.filters)
                    for index in range(args.filters):
                        await window.acquire()
                        writer.write(build(index))
                        if index % 64 == 63:
                            await writer.drain()
                    await writer.drain()
                    await finished.wait()
                    if reading.done() or attack.stopping:
                        return
                rounds.append(time.monotonic() - began)
        finally:
            reading.cancel()

    await attack.run([asyncio.create_task(run_rounds())])
    close(writer)
    return {
        "rounds": len(rounds), "round_s": seconds(rounds), "suback_first_round": dict(suback_codes),
        "unsuback_first_round": dict(unsuback_codes), "connection": fate["end"],
        "summary": f"{len(rounds)} rounds of {args.filters:,} SUBSCRIBE + UNSUBSCRIBE (round {spread(rounds)}); "
                   f"first round SUBACK {counts(suback_codes)}; UNSUBACK {counts(unsuback_codes)}; "
                   f"connection {fate['end']}",
    }


async def sub_churn(attack):
    """`--clients` v5 clients, each subscribing to a filter of its own and unsubscribing it,
    one packet awaited at a time, in a loop."""
    args = attack.args
    version = V5
    operations = collections.Counter()
    codes = collections.Counter()
    connected = [0]
    ended = collections.Counter()

    async def client(index):
        opened = await attack.session(version, f"hostile-churn-{index}", keepalive=0)
        connected[0] += 1
        if connected[0] >= args.clients:
            attack.ready.set()
        if opened is None:
            return
        reader, writer = opened
        await attack.ready.wait()
        try:
            for round_number in range(args.max_rounds):
                if attack.stopping:
                    break
                topic_filter = f"hostile/churn/{index}/{round_number % 10}"
                for kind, build in ((SUBACK, subscribe), (UNSUBACK, unsubscribe)):
                    writer.write(build(version, 1 + round_number % 65535, [topic_filter]))
                    got, _, body = await read_packet(reader)
                    operations[TYPE_NAMES.get(got, str(got))] += 1
                    for code in reason_codes(version, got, body):
                        codes[f"{TYPE_NAMES[got]} 0x{code:02x}"] += 1
        except (asyncio.IncompleteReadError, OSError, Garbage):
            ended["closed by the broker"] += 1
        finally:
            close(writer)

    tasks = [asyncio.create_task(client(index)) for index in range(args.clients)]
    elapsed = await attack.run(tasks)
    total = operations["SUBACK"] + operations["UNSUBACK"]
    return {
        "clients": args.clients, "acks": dict(operations), "codes": dict(codes), "ended": dict(ended),
        "connect_errors": dict(attack.connect_errors),
        "summary": f"{args.clients:,} clients, {total:,} SUBSCRIBE/UNSUBSCRIBE answered ({total / elapsed:,.0f}/s): "
                   f"{counts(codes)}; {ended['closed by the broker']:,} closed by the broker; "
                   f"connect errors: {counts(attack.connect_errors)}",
    }


# --- 5. Publishers at full speed ------------------------------------------------------------

class Timeline:
    """Messages a publisher got out in each second since the attack was set up."""

    def __init__(self, attack):
        self.attack = attack
        self.per_second = []

    async def run(self, total):
        """Samples total() every second until cancelled."""
        await self.attack.ready.wait()
        last = total()
        while True:
            await asyncio.sleep(1.0)
            now = total()
            self.per_second.append(now - last)
            last = now

    def describe(self):
        rates = self.per_second
        if not rates:
            return "no whole second"
        stalled = sum(1 for rate in rates if rate == 0)
        return f"{stalled} of {len(rates)} seconds with none, last second {rates[-1]:,}"


class Flood:
    """A QoS 0 publisher writing pre-built PUBLISH packets as fast as the broker takes them."""

    def __init__(self, attack, topic, version=V311):
        self.attack, self.topic, self.version = attack, topic, version
        self.message = publish(version, topic, b"p" * attack.args.size)
        self.per_chunk = max(1, 65536 // len(self.message))
        self.chunk = self.message * self.per_chunk
        self.sent = 0
        self.longest_wait = 0.0
        self.fate = "open at the end"
        self.timeline = Timeline(attack)

    async def run(self):
        opened = await self.attack.session(self.version, "hostile-publisher", keepalive=0)
        if opened is None:
            self.fate = "could not connect"
            return
        reader, writer = opened
        watching = asyncio.create_task(self.watch(reader))
        ticking = asyncio.create_task(self.timeline.run(lambda: self.sent))
        try:
            while not watching.done() and not self.attack.stopping:
                writer.write(self.chunk)
                began = time.monotonic()
                await writer.drain()
                self.longest_wait = max(self.longest_wait, time.monotonic() - began)
                self.sent += self.per_chunk
        except (ConnectionResetError, BrokenPipeError):
            self.fate = "reset by the broker"
        finally:
            watching.cancel()
            ticking.cancel()
            close(writer)

    async def watch(self, reader):
        try:
            while True:
                kind, _, body = await read_packet(reader)
                self.fate = describe(self.version, kind, body)
        except (asyncio.IncompleteReadError, OSError, Garbage):
            self.fate = "closed by the broker" if self.fate == "open at the end" else self.fate + ", closed"


async def publish_void(attack):
    """One QoS 0 publisher at full speed to a topic nobody subscribes to."""
    flood = Flood(attack, "hostile/void")
    attack.ready.set()
    elapsed = await attack.run([asyncio.create_task(flood.run())])
    return {
        "published": flood.sent, "per_s": round(flood.sent / elapsed),
        "longest_write_wait_s": round(flood.longest_wait, 2),
        "publisher": flood.fate,
        "summary": f"{flood.sent:,} messages written ({flood.sent / elapsed:,.0f}/s), longest wait to write "
                   f"{flood.longest_wait:.2f} s; publisher {flood.fate}",
    }


async def publish_fanout(attack):
    """`--subscribers` clients read a topic (and discard what they read) while one QoS 0
    publisher writes to it at full speed."""
    args = attack.args
    flood = Flood(attack, "hostile/fan")
    received = [0]
    connected = [0]
    ended = collections.Counter()

    async def reader_client(index):
        opened = await attack.session(V311, f"hostile-fan-{index}", keepalive=0)
        if opened is not None:
            reader, writer = opened
            writer.write(subscribe(V311, 1, ["hostile/fan"]))
            try:
                kind, _, _ = await with_timeout(read_packet(reader), CONNECT_TIMEOUT)
            except (TimeoutError, asyncio.IncompleteReadError, OSError):
                kind = None
        connected[0] += 1
        if connected[0] >= args.subscribers:
            attack.ready.set()
        if opened is None or kind != SUBACK:
            return
        try:
            while True:
                data = await reader.read(1 << 20)
                if not data:
                    ended["closed by the broker"] += 1
                    return
                received[0] += len(data)
        except OSError:
            ended["reset by the broker"] += 1
        finally:
            close(writer)

    async def publisher():
        await attack.ready.wait()  # once every reader is in
        await flood.run()

    readers = [asyncio.create_task(reader_client(index)) for index in range(args.subscribers)]
    elapsed = await attack.run(readers + [asyncio.create_task(publisher())])
    delivered = received[0] // len(flood.message)
    return {
        "subscribers": args.subscribers, "published": flood.sent, "delivered": delivered,
        "publisher": flood.fate, "readers_ended": dict(ended), "connect_errors": dict(attack.connect_errors),
        "summary": f"{flood.sent:,} messages written ({flood.sent / elapsed:,.0f}/s) to {args.subscribers:,} readers, "
                   f"{delivered:,} deliveries read ({delivered / elapsed:,.0f}/s); publisher {flood.fate}; "
                   f"readers closed: {counts(ended)}; connect errors: {counts(attack.connect_errors)}",
    }


# --- 6. Subscribers that never read ---------------------------------------------------------

async def stalled_subscribers(attack):
    """`--subscribers` clients subscribe to `--topic` at `--qos` and never read their socket
    again (their TCP receive window fills) while one publisher sends to that topic at full speed
    at that QoS (QoS 1: `--inflight` unacknowledged at a time). With `--no-publisher` the traffic
    is someone else's: `--topic midge-bench/#` puts them on the canary's topic."""
    args = attack.args
    topic = args.topic
    sockets = []
    closed_at = {}
    connected = [0]

    async def stalled(index):
        opened = await attack.session(V311, f"hostile-stalled-{index}", keepalive=0)
        if opened is not None:
            reader, writer = opened
            writer.write(subscribe(V311, 1, [topic], qos=args.qos))
            try:
                kind, _, _ = await with_timeout(read_packet(reader), CONNECT_TIMEOUT)
                if kind == SUBACK:
                    writer.transport.pause_reading()  # never read again
                    sockets.append((index, writer))
            except (TimeoutError, asyncio.IncompleteReadError, OSError):
                close(writer)
        connected[0] += 1
        if connected[0] >= args.subscribers:
            attack.ready.set()

    async def watch_states():
        while True:
            for index, writer in sockets:
                if index in closed_at:
                    continue
                sock = writer.get_extra_info("socket")
                try:
                    state = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0]
                except OSError:
                    state = TCP_CLOSE
                if state in (TCP_CLOSE, TCP_CLOSE_WAIT):
                    closed_at[index] = attack.elapsed()
            await asyncio.sleep(0.5)

    await asyncio.gather(*(stalled(index) for index in range(args.subscribers)))
    tasks = [asyncio.create_task(watch_states())]
    publisher = None
    if args.publisher:
        publisher = Flood(attack, topic) if args.qos == 0 else AckedPublisher(attack, topic, args.inflight)
        tasks.append(asyncio.create_task(publisher.run()))
    elapsed = await attack.run(tasks)
    for _, writer in sockets:
        close(writer)
    result = {
        "qos": args.qos, "topic": topic, "subscribers": len(sockets), "closed_by_broker": len(closed_at),
        "closed_after_s": seconds(list(closed_at.values())),
    }
    closed = (f"{len(closed_at):,} of them closed by the broker after {spread(list(closed_at.values()))}"
              if closed_at else "none closed by the broker")
    if publisher is None:
        result["summary"] = f"{len(sockets):,} subscribers to {topic} never reading, QoS {args.qos}; {closed}"
        return result
    result.update({
        "published": publisher.sent, "publisher": publisher.fate,
        "longest_publisher_wait_s": round(publisher.longest_wait, 2),
        "publisher_per_second": publisher.timeline.per_second,
    })
    acked = f", {publisher.acked:,} acknowledged" if args.qos else ""
    result["summary"] = (
        f"{len(sockets):,} subscribers never reading, QoS {args.qos}: {publisher.sent:,} messages written "
        f"({publisher.sent / elapsed:,.0f}/s; {publisher.timeline.describe()}){acked}, publisher's longest wait "
        f"{publisher.longest_wait:.2f} s ({publisher.fate}); {closed}")
    return result


class AckedPublisher:
    """A QoS 1 publisher at full speed: `inflight` messages unacknowledged at a time."""

    def __init__(self, attack, topic, inflight, version=V311):
        self.attack, self.topic, self.inflight, self.version = attack, topic, inflight, version
        self.sent = self.acked = 0
        self.longest_wait = 0.0
        self.fate = "open at the end"
        self.timeline = Timeline(attack)

    async def run(self):
        opened = await self.attack.session(self.version, "hostile-publisher", keepalive=0)
        if opened is None:
            self.fate = "could not connect"
            return
        reader, writer = opened
        window = asyncio.Semaphore(self.inflight)
        payload = b"p" * self.attack.args.size
        ids = itertools.cycle(range(1, 65536))

        async def read_acks():
            try:
                while True:
                    kind, _, body = await read_packet(reader)
                    if kind == PUBACK:
                        self.acked += 1
                        window.release()
                    else:
                        self.fate = describe(self.version, kind, body)
            except (asyncio.IncompleteReadError, OSError, Garbage):
                self.fate = "closed by the broker" if self.fate == "open at the end" else self.fate + ", closed"

        reading = asyncio.create_task(read_acks())
        ticking = asyncio.create_task(self.timeline.run(lambda: self.acked))
        try:
            while not reading.done() and not self.attack.stopping:
                began = time.monotonic()
                await window.acquire()
                self.longest_wait = max(self.longest_wait, time.monotonic() - began)
                writer.write(publish(self.version, self.topic, payload, qos=1, packet_id=next(ids)))
                self.sent += 1
                if self.sent % 32 == 0:
                    await writer.drain()
        except (ConnectionResetError, BrokenPipeError):
            self.fate = "reset by the broker"
        finally:
            reading.cancel()
            ticking.cancel()
            close(writer)


# --- 7. Maximum remaining length ------------------------------------------------------------

async def max_length(attack):
    """`--sockets` connections announce a packet of the largest Remaining Length (268,435,455
    bytes) and send nothing more: half as their first packet (a CONNECT), half as a PUBLISH
    after a valid CONNECT (3.1.1 and 5.0 in turn). Closed ones are opened again."""
    args = attack.args
    header = lambda kind: bytes([kind]) + varint(MAX_REMAINING_LENGTH)  # noqa: E731
    kinds = {"first packet": None, "after CONNECT 3.1.1": V311, "after CONNECT 5.0": V5}
    stats = {name: {"opened": 0, "closed": [], "answers": collections.Counter(), "open_at_end": 0} for name in kinds}
    first_round = [0]
    gate = asyncio.Semaphore(args.concurrency)

    async def one(index):
        name = "first packet" if index % 2 == 0 else ("after CONNECT 3.1.1" if index % 4 == 1 else "after CONNECT 5.0")
        version = kinds[name]
        record = stats[name]
        counted = False
        while not attack.stopping:
            async with gate:
                if version is None:
                    opened = await attack.open()
                else:
                    opened = await attack.session(version, f"hostile-max-{index}", keepalive=0)
            if not counted:
                counted = True
                first_round[0] += 1
                if first_round[0] >= args.sockets:
                    attack.ready.set()
            if opened is None:
                await asyncio.sleep(1)
                continue
            record["opened"] += 1
            reader, writer = opened
            began = time.monotonic()
            try:
                writer.write(header(0x10 if version is None else 0x30) + (b"\x00\x04MQTT" if version is None else b""))
                outcome = await answers(reader, version or V311)
                record["answers"][outcome] += 1
                record["closed"].append(time.monotonic() - began)
            except asyncio.CancelledError:
                record["open_at_end"] += 1
                raise
            finally:
                close(writer)

    tasks = [asyncio.create_task(one(index)) for index in range(args.sockets)]
    await attack.run(tasks)
    result = {name: {"opened": record["opened"], "closed_by_broker": len(record["closed"]),
                     "closed_after_s": seconds(record["closed"]), "answers": dict(record["answers"]),
                     "open_at_end": record["open_at_end"]} for name, record in stats.items()}
    parts = [f"{name}: {record['opened']:,} opened, {len(record['closed']):,} closed "
             f"({counts(record['answers'])}) after {spread(record['closed'])}, "
             f"{record['open_at_end']:,} open at the end"
             for name, record in stats.items()]
    result["summary"] = "; ".join(parts) + f"; connect errors: {counts(attack.connect_errors)}"
    return result


# --- 8. Client id takeover ------------------------------------------------------------------

async def takeover(attack):
    """`--loops` tight loops connect with one client id (v5, Clean Start 0, a session that
    outlives the connection): each new connection takes the session over from the last."""
    args = attack.args
    version = V5
    connacks = collections.Counter()
    old_fates = collections.Counter()
    watchers = set()
    number = itertools.count()
    session_properties = b"\x05\x11\x00\x00\x01\x2c"  # Session Expiry Interval 300 s
    attack.ready.set()

    async def watch(reader, writer):
        try:
            old_fates[await answers(reader, version)] += 1
        except asyncio.CancelledError:
            old_fates["open at the end"] += 1
            raise
        finally:
            close(writer)

    async def loop():
        while not attack.stopping:
            index = next(number)
            if index >= args.max_attempts:
                return
            while len(watchers) >= args.max_open:
                await asyncio.sleep(0.01)
            opened = await attack.open()
            if opened is None:
                await asyncio.sleep(0.05)
                continue
            reader, writer = opened
            writer.write(connect(version, "hostile-takeover", flags=0x00, keepalive=0, properties=session_properties))
            try:
                kind, _, body = await with_timeout(read_packet(reader), CONNECT_TIMEOUT)
                connacks[describe(version, kind, body)] += 1
            except TimeoutError:
                connacks["no CONNACK in 5 s"] += 1
                close(writer)
                continue
            except (asyncio.IncompleteReadError, OSError, Garbage):
                connacks["closed before CONNACK"] += 1
                close(writer)
                continue
            writer.write(subscribe(version, 1, [f"hostile/takeover/{index % 100}"], qos=1))
            task = asyncio.create_task(watch(reader, writer))
            watchers.add(task)
            task.add_done_callback(watchers.discard)

    loops = [asyncio.create_task(loop()) for _ in range(args.loops)]
    elapsed = await attack.run(loops)
    await stop(list(watchers))
    total = sum(connacks.values())
    # Each connection sent one CONNECT and one SUBSCRIBE: a second CONNACK, or a second SUBACK,
    # was meant for another connection (or sent twice).
    extra = sum(count for fate, count in old_fates.items() if "CONNACK" in fate or fate.count("SUBACK") > 1)
    return {
        "connacks": dict(connacks), "taken_over": dict(old_fates), "connect_errors": dict(attack.connect_errors),
        "extra_packets": extra,
        "summary": f"{total:,} CONNECTs with one client id ({total / elapsed:,.0f}/s): {counts(connacks)}; "
                   f"the connection taken over saw: {counts(old_fates)}; {extra:,} connections got a second "
                   f"CONNACK or SUBACK",
    }


# --- Running --------------------------------------------------------------------------------

ATTACKS = {
    "malformed": malformed,
    "slowloris": slowloris,
    "connect-storm": connect_storm,
    "auth-storm": auth_storm,
    "sub-storm": sub_storm,
    "sub-churn": sub_churn,
    "publish-void": publish_void,
    "publish-fanout": publish_fanout,
    "stalled-subscribers": stalled_subscribers,
    "max-length": max_length,
    "takeover": takeover,
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("attack", choices=sorted(ATTACKS))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--sources", default="127.0.0.2", help="comma-separated source addresses, used in turn")
    parser.add_argument("--duration", type=float, default=10, help="seconds the attack runs once set up")
    parser.add_argument("--setup-timeout", type=float, default=60, help="seconds the set-up may take at most")
    parser.add_argument("--ready", help="file to write when set up")
    parser.add_argument("--workers", type=int, default=50, help="malformed: connections at once")
    parser.add_argument("--answer-timeout", type=float, default=1.0, help="malformed: seconds to wait for an answer")
    parser.add_argument("--max-attempts", type=int, default=10_000_000,
                        help="connections at most (malformed, connect-storm, auth-storm, takeover)")
    parser.add_argument("--sockets", type=int, default=10_000, help="slowloris, max-length: connections held")
    parser.add_argument("--trickle", type=int, default=100,
                        help="slowloris: connections sending CONNECT a byte a second")
    parser.add_argument("--concurrency", type=int, default=100, help="connection attempts at once")
    parser.add_argument("--version", type=int, default=0,
                        help="connect-storm, auth-storm: 3, 4 or 5 (0: each in turn)")
    parser.add_argument("--username", default="canary", help="auth-storm: the user name of every CONNECT")
    parser.add_argument("--password", default="wrong-password", help="auth-storm: the wrong password it gives")
    parser.add_argument("--filters", type=int, default=100_000, help="sub-storm: filters per round")
    parser.add_argument("--window", type=int, default=1000, help="sub-storm: SUBSCRIBEs unacknowledged at once")
    parser.add_argument("--max-rounds", type=int, default=1_000_000, help="sub-storm, sub-churn: rounds at most")
    parser.add_argument("--clients", type=int, default=1000, help="sub-churn: clients")
    parser.add_argument("--subscribers", type=int, default=1000,
                        help="publish-fanout, stalled-subscribers: subscribers")
    parser.add_argument("--qos", type=int, default=0, choices=(0, 1), help="stalled-subscribers: QoS")
    parser.add_argument("--topic", default="hostile/stalled", help="stalled-subscribers: their filter")
    parser.add_argument("--no-publisher", dest="publisher", action="store_false",
                        help="stalled-subscribers: no publisher of our own (the traffic is others')")
    parser.add_argument("--inflight", type=int, default=100, help="stalled-subscribers, QoS 1: unacknowledged at once")
    parser.add_argument("--size", type=int, default=64, help="payload bytes of the floods")
    parser.add_argument("--loops", type=int, default=4, help="takeover: loops at once")
    parser.add_argument("--max-open", type=int, default=1000, help="takeover: connections not yet taken over, at most")
    args = parser.parse_args()

    async def go():
        attack = Attack(args)
        # SIGTERM ends the attack early, with its results printed (the canary is done).
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, attack.told_to_stop.set)
        result = await ATTACKS[args.attack](attack)
        result.update({
            "attack": args.attack, "setup_s": round(getattr(attack, "setup_s", 0), 2),
            "setup_complete": getattr(attack, "setup_complete", None),
            "ran_s": round(attack.elapsed(), 2), "task_errors": dict(getattr(attack, "errors", {})),
        })
        return result

    result = asyncio.run(go())
    json.dump(result, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
