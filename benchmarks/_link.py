"""A network link with a round-trip time and a bandwidth, in front of a local server.

Benchmarks on loopback make every byte nearly free, which is not how users meet S3: from a
laptop or a campus network a 300 MB ``.mat`` takes seconds to download, and every request
waits a round trip. ``ShapedLink`` is a TCP relay in its own process (so it does not share the
benchmark's GIL): data in each direction waits half the round-trip time and goes through one
shared pipe of the given bandwidth (a token bucket: connections share it, as on one link);
opening a connection costs one round trip (the TCP handshake; TLS is not modelled, so a real
HTTPS link costs a little more per new connection).

Both sides of a comparison go through the same link.

>>> with ShapedLink("127.0.0.1", 8333, rtt_ms=20, mbit_s=200) as link:   # doctest: +SKIP
...     endpoint = link.endpoint   # http://127.0.0.1:<port>, use as the S3 endpoint

Run ``python benchmarks/_link.py UPSTREAM_HOST UPSTREAM_PORT RTT_MS MBIT_S``: prints the port,
then relays until killed.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from typing import Any

CHUNK = 64 * 1024


class _Pipe:
    """One direction of the link: a shared bandwidth, then half the round trip."""

    def __init__(self, delay_s: float, bytes_per_s: float) -> None:
        self.delay_s = delay_s
        self.bytes_per_s = bytes_per_s
        self.free_at = 0.0  # when the link has sent everything queued so far

    def departure(self, nbytes: int) -> float:
        now = time.monotonic()
        self.free_at = max(self.free_at, now) + nbytes / self.bytes_per_s
        return self.free_at + self.delay_s


async def _relay(src: asyncio.StreamReader, dst: asyncio.StreamWriter, pipe: _Pipe) -> None:
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def send() -> None:
        while True:
            at, data = await queue.get()
            if not data:
                break
            wait = at - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            dst.write(data)
            await dst.drain()
        try:
            dst.write_eof()
        except (OSError, RuntimeError):
            pass

    sender = asyncio.create_task(send())
    try:
        while data := await src.read(CHUNK):
            await queue.put((pipe.departure(len(data)), data))
    except (ConnectionError, OSError):
        pass
    await queue.put((0.0, b""))
    try:
        await sender
    except (ConnectionError, OSError):
        pass


async def serve(host: str, port: int, rtt_ms: float, mbit_s: float) -> None:
    rate = mbit_s * 1e6 / 8
    up, down = _Pipe(rtt_ms / 2000, rate), _Pipe(rtt_ms / 2000, rate)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await asyncio.sleep(rtt_ms / 1000)  # the TCP handshake
            up_reader, up_writer = await asyncio.open_connection(host, port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(_relay(reader, up_writer, up), _relay(up_reader, writer, down))
        for w in (writer, up_writer):
            w.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


class ShapedLink:
    """The relay as a child process: ``endpoint`` is its URL while the ``with`` block runs."""

    def __init__(self, host: str, port: int, *, rtt_ms: float, mbit_s: float) -> None:
        self.args = [host, str(port), str(rtt_ms), str(mbit_s)]
        self.rtt_ms, self.mbit_s = rtt_ms, mbit_s
        self.proc: subprocess.Popen[str] | None = None
        self.port = 0

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ShapedLink:
        self.proc = subprocess.Popen([sys.executable, __file__, *self.args], stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.strip().isdigit():
            self.proc.kill()
            raise RuntimeError(f"the link did not start: {line!r}")
        self.port = int(line)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()

    def __repr__(self) -> str:
        return f"ShapedLink({self.rtt_ms:g} ms round trip, {self.mbit_s:g} Mbit/s, {self.endpoint})"


if __name__ == "__main__":
    h, p, rtt, mbit = sys.argv[1:5]
    try:
        asyncio.run(serve(h, int(p), float(rtt), float(mbit)))
    except KeyboardInterrupt:
        pass
