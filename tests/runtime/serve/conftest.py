"""Fixtures of the serving tests: real servers on 127.0.0.1, started and stopped by the tests themselves.

Tests that need an optional server or client (the ASGI stack, httpx, tritonserver, tritonclient) skip with
the reason when it is not installed, and fail instead under ``RETINAFACE_REQUIRE_SERVERS=1`` (set by
``.ci/run``, which installs them). The model runs on the CPU executor at 320×320 (letterbox) to keep the
tests short; the SDK over the same settings is the reference the answers are compared with.
"""

from __future__ import annotations

import base64
import contextlib
import importlib.util
import os
import threading

import numpy as np
import pytest


REQUIRE_ENV = "RETINAFACE_REQUIRE_SERVERS"
PIPELINE = {"resize": "letterbox", "input_size": (320, 320)}
PHOTOS = ("astronaut_512x512.png", "children_1024x768.jpg", "crowd_1024x624.jpg", "selfie_1600x898.jpg")


def listening_addresses(pid: int) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket process ``pid`` listens on (Linux /proc); IPv4-mapped IPv6
    addresses (gRPC's dual-stack sockets) are given as IPv4."""
    import ipaddress

    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    found = set()
    for table in ("tcp", "tcp6"):
        with open(f"/proc/net/{table}") as lines:
            for line in list(lines)[1:]:
                fields = line.split()
                if fields[3] == "0A" and fields[9] in inodes:   # 0A: LISTEN
                    address, port = fields[1].split(":")
                    raw = bytes.fromhex(address)
                    raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))   # per 32-bit word
                    ip = ipaddress.ip_address(raw)
                    found.add((str(getattr(ip, "ipv4_mapped", None) or ip), int(port, 16)))
    return found


def missing(reason: str):
    """Fail under RETINAFACE_REQUIRE_SERVERS=1 (CI), skip otherwise."""
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{reason} ({REQUIRE_ENV}=1)")
    pytest.skip(reason)


def require_modules(*names: str, extra: str) -> None:
    absent = [name for name in names if importlib.util.find_spec(name) is None]
    if absent:
        missing(f"{', '.join(absent)} not installed: pip install '.[{extra}]' in the retinaface-trt checkout")


@pytest.fixture(scope="session")
def serve_stack():
    require_modules("starlette", "uvicorn", "prometheus_client", "httpx", extra="serve,dev")


@pytest.fixture(scope="session")
def photos(shared_dir) -> dict[str, bytes]:
    """The shared photos' file bytes, by file name."""
    return {name: (shared_dir / "images" / name).read_bytes() for name in PHOTOS}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture(scope="session")
def detector(mnet_pth):
    """The real MobileNet-0.25 on the CPU executor, shared by the servers of this session."""
    from runtime.detector import Detector

    with Detector.from_options(weights=str(mnet_pth), backend="torch", device="cpu", **PIPELINE) as detector:
        yield detector


@pytest.fixture(scope="session")
def sdk(mnet_pth):
    """The SDK over the same model and settings: what every answer is compared with."""
    from runtime import Engine

    with Engine(weights=str(mnet_pth), backend="torch", device="cpu", **PIPELINE) as engine:
        yield engine


class GatedDetector:
    """A stand-in detector whose ``detect_arrays`` waits for ``gate``; records the batch sizes it ran.

    Each image gets one face covering it, scored 0.9, so an answer shows which image it came from.
    Images whose first pixel is 255 raise, to model an image the backend refuses.
    """

    max_pixels = 40_000_000
    device = "cpu"

    def __init__(self, open_gate: bool = True):
        self.gate = threading.Event()
        if open_gate:
            self.gate.set()
        self.batches: list[int] = []
        self.prepared: list[tuple] = []       # (size, batches) of each prepare call
        self.calls = threading.Semaphore(0)   # released once per detect_arrays call

    def prepare(self, size, batches):
        self.prepared.append((size, list(batches)))

    def detect_arrays(self, images):
        self.calls.release()
        if not self.gate.wait(30):
            raise TimeoutError("the test never opened the gate")
        self.batches.append(len(images))
        if any(image.flat[0] == 255 for image in images):
            raise ValueError("refused image")
        return [np.array([[0.0, 0.0, image.shape[1], image.shape[0], 0.9] + [0.0] * 10], np.float32)
                for image in images]


@contextlib.contextmanager
def running(detector, warmup=None, **settings):
    """A real uvicorn server of the app on 127.0.0.1 (free port) in a thread, and an httpx client of it."""
    import httpx

    from runtime.serve.app import create_app
    from runtime.serve.server import BackgroundServer, bind, uvicorn_server
    from runtime.serve.settings import ServeSettings

    checked = ServeSettings(**settings)
    app = create_app(detector, checked, warmup=warmup)
    server = BackgroundServer(uvicorn_server(app, shutdown_timeout_s=10, header_timeout_s=checked.header_timeout_s),
                              bind("127.0.0.1", 0))
    with server, httpx.Client(base_url=server.url, timeout=60) as client:
        client.app = app
        yield client
