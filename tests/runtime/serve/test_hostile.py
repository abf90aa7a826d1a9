"""The service against hostile clients: slow senders, deep JSON, bombs, many pixels at once; and its answers
equal to ``Engine.infer`` whatever batch a request would have joined."""

from __future__ import annotations

import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlparse

import cv2
import numpy as np
import pytest

from tests.runtime.serve.conftest import PHOTOS, GatedDetector, b64, running
from tests.runtime.test_hostile_images import gif_bomb, webp_bomb

pytestmark = pytest.mark.usefixtures("serve_stack")


def _connect(client) -> socket.socket:
    url = urlparse(str(client.base_url))
    return socket.create_connection((url.hostname, url.port), timeout=30)


def _closed_within(sock: socket.socket, seconds: float) -> tuple[bool, bytes]:
    """Whether the server closed ``sock`` within ``seconds``, and what it sent before."""
    sock.settimeout(seconds)
    received = b""
    try:
        while chunk := sock.recv(4096):
            received += chunk
    except socket.timeout:
        return False, received
    return True, received


def _wait_until(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def test_slow_bodies_are_answered_408_and_free_their_place(photos):
    body = json.dumps({"image": b64(photos["astronaut_512x512.png"])}).encode()
    with running(GatedDetector(), max_queue=2, body_timeout_s=1) as client:
        slow = [_connect(client) for _ in range(2)]
        for sock in slow:       # headers and 10 bytes of a declared 1,000-byte body, then nothing
            sock.sendall(b"POST /v1/detect HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 1000\r\n\r\n" + b"{" * 10)
        _wait_until(lambda: client.app.state.service.admitted == 2)
        saturated = client.get("/readyz")
        answers = [_closed_within(sock, 10) for sock in slow]
        _wait_until(lambda: client.app.state.service.admitted == 0)
        after = client.post("/v1/detect", content=body, headers={"content-type": "application/json"})
    assert saturated.status_code == 503 and saturated.json()["status"] == "saturated"
    for closed, received in answers:
        assert closed and received.startswith(b"HTTP/1.1 408") and b"--body-timeout" in received
    assert after.status_code == 200


def test_connections_that_never_finish_their_headers_are_closed():
    with running(GatedDetector(), header_timeout_s=1) as client:
        sock = _connect(client)
        sock.sendall(b"POST /v1/detect HTTP/1.1\r\nHost: x\r\n")        # and never the blank line
        start = time.monotonic()
        closed, _ = _closed_within(sock, 10)
        elapsed = time.monotonic() - start
        assert client.get("/healthz").status_code == 200
    assert closed and 0.5 < elapsed < 5


def test_a_keep_alive_connection_gets_its_answers_before_the_header_timeout_closes_it():
    with running(GatedDetector(), header_timeout_s=1) as client:
        sock = _connect(client)
        sock.settimeout(10)
        for _ in range(2):
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = b""
            while not answer.endswith(b'{"status":"ok"}'):    # headers and body may come in two pieces
                chunk = sock.recv(4096)
                assert chunk, "the connection closed before its answer"
                answer += chunk
            assert answer.startswith(b"HTTP/1.1 200")
        closed, _ = _closed_within(sock, 10)    # idle afterwards: closed
    assert closed


def test_deeply_nested_json_gets_400(photos):
    with running(GatedDetector()) as client:
        response = client.post("/v1/detect", content=b"[" * 100_000, headers={"content-type": "application/json"})
    assert response.status_code == 400 and "nests JSON arrays or objects too deeply" in response.json()["error"]


@pytest.mark.parametrize("value", ["true", "false"])
def test_a_boolean_threshold_is_refused(value):
    with running(GatedDetector()) as client:
        response = client.post("/v1/detect", content=f'{{"image": "x", "vis_threshold": {value}}}'.encode(),
                               headers={"content-type": "application/json"})
    assert response.status_code == 400 and "vis_threshold must be a number in [0, 1]" in response.json()["error"]


@pytest.mark.parametrize("make", [webp_bomb, gif_bomb])
def test_a_bomb_gets_400_not_500(make):
    with running(GatedDetector()) as client:
        response = client.post("/v1/detect", content=make(), headers={"content-type": "image/webp"})
    assert response.status_code == 400 and "declares a frame" in response.json()["error"]


def test_images_beyond_the_pixel_budget_wait_their_turn_with_503():
    """The budget holds one 100×100 image: a second one, arriving while the first is held, gets 503 (and is never
    decoded); a larger image alone still runs."""
    gated = GatedDetector(open_gate=False)
    small = cv2.imencode(".png", np.zeros((100, 100, 3), np.uint8))[1].tobytes()
    large = cv2.imencode(".png", np.zeros((300, 300, 3), np.uint8))[1].tobytes()
    with running(gated, pixel_budget=100 * 100, max_batch=4, max_delay_ms=0) as client:
        with ThreadPoolExecutor(1) as pool:
            held = pool.submit(client.post, "/v1/detect", content=small, headers={"content-type": "image/png"})
            assert gated.calls.acquire(timeout=10)
            refused = client.post("/v1/detect", content=small, headers={"content-type": "image/png"})
            ready = client.get("/readyz")
            gated.gate.set()
            assert held.result().status_code == 200
        alone = client.post("/v1/detect", content=large, headers={"content-type": "image/png"})
        assert client.app.state.service.pixels.taken == 0
    assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
    assert "10000 pixels" in refused.json()["error"] and ready.json()["status"] == "saturated"
    assert alone.status_code == 200 and gated.batches == [1, 1]


def test_concurrent_answers_equal_engine_infer_byte_for_byte(detector, sdk, photos):
    """Default settings on a CPU: each image runs alone, whatever arrives with it, so every answer is the SDK's
    exactly (batches of several images round some convolutions differently)."""
    names = [PHOTOS[i % len(PHOTOS)] for i in range(16)]
    expected = {name: sdk.infer(b64(photos[name]), name=name) for name in PHOTOS}
    with running(detector, max_delay_ms=50) as client:
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda n: client.post("/v1/detect", json={"image": b64(photos[n]), "name": n}),
                                    names))
    assert [a.text for a in answers] == [expected[name] for name in names]
