#!/usr/bin/env python3
"""A TCP proxy on 127.0.0.1 that a script controls, for outage tests (bench/bridge.sh).

    python3 bench/tcp_proxy.py UPSTREAM_PORT [LISTEN_PORT]

Listens on 127.0.0.1:LISTEN_PORT (0 or absent: a free port) and forwards every connection to
127.0.0.1:UPSTREAM_PORT. Prints `port N` on stdout once it listens, then reads commands from
stdin, one a line, and answers each with `ok COMMAND` on stdout:

    cut     closes every connection and stops listening, so that new ones are refused
    stall   stops forwarding in both directions, keeping the sockets open (the peers see silence)
    resume  listens again after a cut, forwards again after a stall
    quit    closes everything and exits (so does the end of stdin)

Only loopback addresses are used: both ends are 127.0.0.1.
"""

import asyncio
import sys

HOST = "127.0.0.1"


class Proxy:
    def __init__(self, upstream: int, port: int) -> None:
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
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(HOST, self.upstream)
        except OSError:
            client_writer.close()
            return
        pair = {client_writer, upstream_writer}
        self.writers |= pair
        try:
            await asyncio.gather(
                self.pipe(client_reader, upstream_writer),
                self.pipe(upstream_reader, client_writer),
            )
        finally:
            for writer in pair:
                self.writers.discard(writer)
                writer.close()

    async def pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
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
    upstream = int(sys.argv[1])
    port = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    proxy = Proxy(upstream, port)
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
