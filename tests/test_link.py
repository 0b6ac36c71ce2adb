"""The benchmarks' shaped network link (``benchmarks/_link.py``) really delays and throttles."""

from __future__ import annotations

import http.server
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
from _link import ShapedLink  # noqa: E402


@pytest.fixture
def http_server(tmp_path):
    (tmp_path / "big").write_bytes(b"x" * 2_000_000)
    (tmp_path / "small").write_bytes(b"y" * 10)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **k):
            super().__init__(*a, directory=str(tmp_path), **k)

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()


def fetch(url: str) -> tuple[float, bytes]:
    t = time.perf_counter()
    with urllib.request.urlopen(url, timeout=30) as r:
        body = r.read()
    return time.perf_counter() - t, body


def test_link_adds_round_trips_and_limits_bandwidth(http_server):
    direct_small, _ = fetch(f"http://127.0.0.1:{http_server}/small")
    with ShapedLink("127.0.0.1", http_server, rtt_ms=100, mbit_s=40) as link:
        assert "100 ms" in repr(link)
        small_t, small = fetch(f"{link.endpoint}/small")
        big_t, big = fetch(f"{link.endpoint}/big")
    assert small == b"y" * 10 and big == b"x" * 2_000_000  # every byte relayed, in order
    assert small_t >= 0.2 > direct_small  # connect (one round trip) + request/response (one more)
    assert big_t >= 2_000_000 * 8 / 40e6 + 0.2  # 0.4 s at 40 Mbit/s, plus the round trips
    assert big_t < 5
