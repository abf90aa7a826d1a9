"""Stand-ins for the detector in job tests; importable by spawned worker processes (so: no pytest fixtures).

A :class:`FakeDetector` finds one "face" per image, the whole image, scoring its mean grey level / 255, so that the
expected record of any image is known without a network (:func:`expected_record`).
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass, field

import numpy as np

from network.config import MOBILENET_0_25
from retinaface_trt.errors import RetinaFaceError


def fake_dets(image: np.ndarray) -> np.ndarray:
    """float32 [1, 15]: the box of the whole image, its mean / 255 as score, landmarks at the centre."""
    height, width = image.shape[:2]
    row = [0.0, 0.0, float(width), float(height), float(image.mean()) / 255.0] + [width / 2, height / 2] * 5
    return np.asarray([row], dtype=np.float32)


def expected_record(path: str, image: np.ndarray, vis_threshold: float = 0.6) -> dict:
    from runtime.face import image_record, reported_faces

    dets = fake_dets(image)
    return image_record(path, image.shape[1], image.shape[0], reported_faces(dets, vis_threshold))


class FakeBackend:
    name = "fake"
    cfg = MOBILENET_0_25
    precision = "fp32"


class FakeDetector:
    """``detect_arrays`` as the Detector's (one call per batch, recorded in ``calls`` as the images' shapes)."""

    def __init__(self, device="cpu", resize="original", input_size=(640, 640), max_pixels=40_000_000,
                 refuse_width=None, die_on_width=None, die_by="exit", delay_s=0.0, peers=None):
        self.device, self.resize, self.input_size, self.max_pixels = device, resize, input_size, max_pixels
        self.backend = FakeBackend()
        self.refuse_width, self.die_on_width, self.die_by, self.delay_s = refuse_width, die_on_width, die_by, delay_s
        self.calls: list[list[tuple]] = []
        self.closed = False
        self.peers = peers          # (folder, n): detect nothing before n detectors exist (one file each there)
        if peers:
            open(os.path.join(peers[0], str(os.getpid())), "w").close()

    def detect_arrays(self, images):
        if self.peers:
            deadline = time.monotonic() + 60
            while len(os.listdir(self.peers[0])) < self.peers[1] and time.monotonic() < deadline:
                time.sleep(0.01)
        self.calls.append([image.shape for image in images])
        for image in images:
            if image.shape[1] == self.die_on_width:
                os.kill(os.getpid(), signal.SIGKILL) if self.die_by == "kill" else os._exit(3)
            if image.shape[1] == self.refuse_width:
                raise RetinaFaceError(f"the fake engine takes no {image.shape[1]}-pixel-wide image")
        time.sleep(self.delay_s)
        return [fake_dets(image) for image in images]

    def close(self):
        self.closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


@dataclass(frozen=True)
class FakeFactory:
    """Picklable: a worker builds ``FakeDetector(device, **options)``; ``startup_error`` fails the build."""

    options: dict = field(default_factory=dict)
    startup_error: str | None = None

    def __call__(self, device):
        if self.startup_error:
            raise RetinaFaceError(self.startup_error)
        return FakeDetector(device, **self.options)


def write_images(folder, sizes, grey=lambda i: 60 + 37 * i % 190) -> list[str]:
    """PNG files ``img_000.png``, … of the given (W, H) sizes, each of one grey level; their paths, in order."""
    import cv2

    os.makedirs(folder, exist_ok=True)
    paths = []
    for i, (width, height) in enumerate(sizes):
        path = os.path.join(str(folder), f"img_{i:03d}.png")
        cv2.imwrite(path, np.full((height, width, 3), grey(i), np.uint8))
        paths.append(path)
    return paths


class LiveCount:
    """Counts objects alive (weak references: ndarrays, dict subclasses); ``peak`` is the most at once."""

    def __init__(self):
        import threading

        self.alive = self.peak = 0
        self._lock = threading.Lock()

    def track(self, obj):
        import weakref

        with self._lock:
            self.alive += 1
            self.peak = max(self.peak, self.alive)
        weakref.finalize(obj, self._gone)
        return obj

    def _gone(self):
        with self._lock:
            self.alive -= 1
