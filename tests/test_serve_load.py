"""A bounded load on a real `dermcli serve`: every answer right, memory flat, and a burst over the queue bound
refused with 503s while the server goes on. No timing is asserted (benchmarks/serve.py measures it)."""

import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from tests.served import EXAMPLES, read_all, serving

pytestmark = pytest.mark.slow  # real servers: left out of the quick `-m "not slow"` subset

RSS_GROWTH_LIMIT_MB = 50  # over 200 requests after warming up: a leak of one 28x28 batch per request would pass, of an upload would not


def rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1]) / 1024


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.getbasetemp() / "cache"


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads the server's memory from /proc")
def test_200_requests_at_concurrency_8_all_answer_right_and_memory_stays_flat(cache):
    with serving("--model", "cnn", cache=cache) as server:
        expected = {path.name: server.predict(path)[1] for path in EXAMPLES}
        for i in range(40):  # warm-up: the allocator and ONNX Runtime's arenas settle
            server.predict(EXAMPLES[i % len(EXAMPLES)])
        before = rss_mb(server.process.pid)
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda i: server.predict(EXAMPLES[i % len(EXAMPLES)]), range(200)))
        after = rss_mb(server.process.pid)
        assert server.healthy()
    assert [status for status, _ in answers] == [200] * 200
    assert all(answer == expected[answer["image"]] for _, answer in answers)
    assert after - before < RSS_GROWTH_LIMIT_MB, f"RSS grew {after - before:.1f} MB ({before:.0f} -> {after:.0f} MB)"


def test_a_burst_over_the_queue_bound_gets_503s_and_the_server_goes_on(cache):
    """24 clients send their headers at once, then their bodies: 2 are admitted, the others refused at once."""
    body = EXAMPLES[0].read_bytes()
    with serving("--model", "cnn", "--queue", "2", cache=cache) as server:
        heads_sent = threading.Barrier(24)
        head = (f"POST /v1/predict HTTP/1.1\r\nHost: {server.host}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n").encode()

        def client(_):
            with socket.create_connection((server.host, int(server.port)), timeout=60) as sock:
                sock.sendall(head)
                heads_sent.wait()
                time.sleep(0.3)
                try:
                    sock.sendall(body)
                except OSError:  # refused and closed already
                    pass
                return int(read_all(sock).split(b" ", 2)[1])

        with ThreadPoolExecutor(24) as pool:
            statuses = list(pool.map(client, range(24)))
        assert server.healthy() and server.predict(EXAMPLES[0])[0] == 200
    assert set(statuses) == {200, 503} and statuses.count(503) >= 12, statuses
