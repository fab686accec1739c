#!/usr/bin/env python3
"""A TCP proxy on 127.0.0.1 that a script controls, for outage tests (bench/bridge.sh).

    python3 bench/tcp_proxy.py UPSTREAM_PORT [LISTEN_PORT] [--trace FILE]

Listens on 127.0.0.1:LISTEN_PORT (0 or absent: a free port) and forwards every connection to
127.0.0.1:UPSTREAM_PORT. Prints `port N` on stdout once it listens, then reads commands from
stdin, one a line, and answers each with `ok COMMAND` on stdout:

    cut     closes every connection and stops listening, so that new ones are refused
    stall   stops forwarding in both directions, keeping the sockets open (the peers see silence)
    resume  listens again after a cut, forwards again after a stall
    quit    closes everything and exits (so does the end of stdin)

With --trace FILE it also writes one line per MQTT packet forwarded, with the time, the
connection's number, the direction (`>` to upstream, `<` back), the packet's type, its packet id
and, for a PUBLISH, its flags and payload (at most 20 bytes), to find where a message was lost.

Only loopback addresses are used: both ends are 127.0.0.1.
"""

import asyncio
import sys
import time

HOST = "127.0.0.1"
TYPES = {1: "CONNECT", 2: "CONNACK", 3: "PUBLISH", 4: "PUBACK", 5: "PUBREC", 6: "PUBREL", 7: "PUBCOMP",
         8: "SUBSCRIBE", 9: "SUBACK", 10: "UNSUBSCRIBE", 11: "UNSUBACK", 12: "PINGREQ", 13: "PINGRESP",
         14: "DISCONNECT", 15: "AUTH"}


class Tracer:
    """Splits one direction's bytes into MQTT packets and writes a line for each."""

    def __init__(self, file, connection: int, direction: str) -> None:
        self.file, self.connection, self.direction = file, connection, direction
        self.buffer = bytearray()

    def feed(self, data: bytes) -> None:
        self.buffer += data
        while True:
            length, multiplier, i = 0, 1, 1
            while i < len(self.buffer) and i <= 4:
                byte = self.buffer[i]
                length += (byte & 0x7F) * multiplier
                multiplier *= 128
                i += 1
                if not byte & 0x80:
                    break
            else:
                return
            if len(self.buffer) < i + length:
                return
            header, body = self.buffer[0], bytes(self.buffer[i : i + length])
            del self.buffer[: i + length]
            self.write(header, body)

    def write(self, header: int, body: bytes) -> None:
        kind = header >> 4
        text = TYPES.get(kind, str(kind))
        if kind == 3:
            qos, topic_len = (header >> 1) & 3, int.from_bytes(body[:2], "big")
            at = 2 + topic_len
            pid = int.from_bytes(body[at : at + 2], "big") if qos else 0
            payload = body[at + (2 if qos else 0) :]
            # MQTT 5 properties are not skipped: this proxy's test speaks 3.1.1.
            text += f" id={pid} q{qos} d{(header >> 3) & 1} r{header & 1} {body[2:at].decode(errors='replace')} {payload[:20].decode(errors='replace')!r}"
        elif kind in (4, 5, 6, 7, 9, 11):
            text += f" id={int.from_bytes(body[:2], 'big')}"
        elif kind == 2:
            text += f" sp={body[0] & 1} rc={body[1]}"
        self.file.write(f"{time.time():.6f} c{self.connection} {self.direction} {text}\n")


class Proxy:
    def __init__(self, upstream: int, port: int, trace=None) -> None:
        self.trace = trace
        self.upstream = upstream
        self.port = port
        self.server: asyncio.base_events.Server | None = None
        # Set while forwarding; cleared by `stall`.
        self.flowing = asyncio.Event()
        self.flowing.set()
        # The writers of every open connection, both sides, so that `cut` can close them.
        self.writers: set[asyncio.StreamWriter] = set()
        self.accepted = 0

    async def listen(self) -> None:
        # start_server sets SO_REUSEADDR, so the port is taken again after a cut.
        self.server = await asyncio.start_server(self.accept, HOST, self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        number = self.accepted
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(HOST, self.upstream)
        except OSError:
            client_writer.close()
            return
        pair = {client_writer, upstream_writer}
        self.writers |= pair
        try:
            await asyncio.gather(
                self.pipe(client_reader, upstream_writer, self.tracer(number, ">")),
                self.pipe(upstream_reader, client_writer, self.tracer(number, "<")),
            )
        finally:
            for writer in pair:
                self.writers.discard(writer)
                writer.close()

    def tracer(self, number: int, direction: str) -> Tracer | None:
        if self.trace is None:
            return None
        if direction == ">":
            self.trace.write(f"{time.time():.6f} c{number} connected\n")
        return Tracer(self.trace, number, direction)

    async def pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, tracer: Tracer | None) -> None:
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                # Stalled: the bytes read are held here, and the socket buffers fill behind them.
                await self.flowing.wait()
                if writer.is_closing():
                    break
                writer.write(data)
                if tracer is not None:
                    tracer.feed(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            # Either side ending ends the pair, as a cable pulled would.
            writer.close()

    async def cut(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None
        for writer in list(self.writers):
            transport = writer.transport
            # An abortive close (RST): the peers learn at once that the link is gone.
            transport.abort()
        self.writers.clear()

    async def resume(self) -> None:
        self.flowing.set()
        if self.server is None:
            await self.listen()


async def main() -> None:
    args = sys.argv[1:]
    trace = None
    if "--trace" in args:
        at = args.index("--trace")
        trace = open(args[at + 1], "a", buffering=1)
        del args[at : at + 2]
    upstream = int(args[0])
    port = int(args[1]) if len(args) > 1 else 0
    proxy = Proxy(upstream, port, trace)
    await proxy.listen()
    print(f"port {proxy.port}", flush=True)
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        command = line.strip()
        if not line or command == "quit":
            break
        if command == "cut":
            await proxy.cut()
        elif command == "stall":
            proxy.flowing.clear()
        elif command == "resume":
            await proxy.resume()
        elif command:
            print(f"unknown {command}", flush=True)
            continue
        else:
            continue
        print(f"ok {command}", flush=True)
    await proxy.cut()
    print("ok quit", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
