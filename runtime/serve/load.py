"""A bounded closed-loop load on the HTTP service: ``clients`` clients, each sending its next request as soon
as the previous one is answered, until ``requests`` requests were sent in all (``tools/serve_load.py``).

Two clients: :func:`run_level_asyncio` (default of the tool), ``clients`` coroutines of one asyncio loop, each
with its own kept-alive HTTP/1.1 connection written and read with asyncio streams (no per-request Python thread,
so the generator itself stays far below the server's rate: it is what measures the service on a GPU); and
:func:`run_level` (httpx, one thread per client).

Reported per level: requests/s (answered requests over the wall time of the level), the 50th and 99th
percentiles of the per-request latency (send to full answer, in ms; numpy's linear interpolation), and
the number of answers that were not 200. Only addresses of this machine are meant as targets.
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass

import numpy as np

from retinaface_trt.errors import RetinaFaceError


@dataclass(frozen=True)
class LoadResult:
    """One level of load: ``clients`` concurrent clients, ``requests`` in all."""

    clients: int
    requests: int
    seconds: float          # wall time of the level
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    failed: int             # answers other than 200

    def to_dict(self) -> dict:
        return asdict(self)


# How far an answer's scores may be from the SDK's for the same image (see same_answer): a micro-batch sums the
# convolutions in another order than the SDK's batch of one. In float32 that moves a score by about 1e-7; in
# float16 (unit roundoff u = 2^-11) each of the network's ~30 layers may round its outputs one unit apart, up to
# ~30u = 1.5e-2 on a logit, at most a quarter of that on a softmax score (4e-3): 1e-2 leaves a margin of 2.5.
# INT8 is float32 arithmetic between quantization steps; one activation rounded across a step moves a score by
# more, hence 2e-2.
SCORE_TOLERANCE = {"fp32": 1e-3, "fp16": 1e-2, "int8": 2e-2}


def same_answer(got: dict, want: dict, precision: str, vis_threshold: float) -> bool:
    """Whether record ``got`` (the service's) is record ``want`` (``Engine.infer``'s for the same image) up to
    the rounding of ``precision``: the same image size, and the same faces: each matched one to one (box IoU ≥
    0.95, scores within :data:`SCORE_TOLERANCE`, landmarks within 2 % of the box width), except that a face
    whose score is within the tolerance of ``vis_threshold`` may be reported by one side only."""
    from runtime.postprocess import box_iou

    tolerance = SCORE_TOLERANCE[precision]
    if (got.get("width"), got.get("height")) != (want.get("width"), want.get("height")):
        return False
    theirs, ours = want["faces"], list(got.get("faces", []))
    iou = box_iou(_corners(theirs), _corners(ours))
    free = np.ones(len(ours), bool)
    for i, face in enumerate(theirs):
        candidates = np.where(free, iou[i], -1.0)
        j = int(np.argmax(candidates)) if len(ours) else -1
        if j < 0 or candidates[j] < 0.95:
            if face["score"] < vis_threshold + tolerance:
                continue
            return False
        match, reach = ours[j], 0.02 * face["box"]["w"]
        if abs(match["score"] - face["score"]) > tolerance or any(
                abs(a["x"] - b["x"]) > reach or abs(a["y"] - b["y"]) > reach
                for a, b in zip(face["landmarks"], match["landmarks"])):
            return False
        free[j] = False
    return all(face["score"] < vis_threshold + tolerance for face, left in zip(ours, free) if left)


def _corners(faces: list) -> np.ndarray:
    """Record boxes {x, y, w, h} → [K, 4] (x1, y1, x2, y2)."""
    boxes = np.array([[f["box"]["x"], f["box"]["y"], f["box"]["w"], f["box"]["h"]] for f in faces],
                     np.float64).reshape(-1, 4)
    boxes[:, 2:] += boxes[:, :2]
    return boxes


def percentiles_ms(latencies_s, points=(50, 99)) -> list[float]:
    """Latencies in seconds → the given percentiles in ms (linear interpolation between samples)."""
    return [float(v) * 1000 for v in np.percentile(np.asarray(latencies_s, dtype=np.float64), points)]


def run_level(url: str, body: bytes, content_type: str, clients: int, requests: int,
              timeout_s: float = 120.0) -> LoadResult:
    """Send ``requests`` POSTs of ``body`` to ``url`` from ``clients`` threads; measure them."""
    import httpx

    latencies: list[float] = []
    failed = [0]
    remaining = [requests]
    lock = threading.Lock()

    def take() -> bool:
        with lock:
            remaining[0] -= 1
            return remaining[0] >= 0

    def client() -> None:
        with httpx.Client(timeout=timeout_s, headers={"content-type": content_type}) as session:
            while take():
                start = time.perf_counter()
                response = session.post(url, content=body)
                elapsed = time.perf_counter() - start
                with lock:
                    latencies.append(elapsed)
                    failed[0] += response.status_code != 200

    threads = [threading.Thread(target=client, name=f"load-{i}") for i in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - start
    p50, p99 = percentiles_ms(latencies)
    return LoadResult(clients, len(latencies), seconds, len(latencies) / seconds, p50, p99, failed[0])


def run_level_asyncio(url: str, body: bytes, content_type: str, clients: int, requests: int,
                      timeout_s: float = 120.0, check=None) -> LoadResult:
    """:func:`run_level` with ``clients`` asyncio connections (see the module doc); ``check(status, answer
    bytes)`` (optional) is called on every answer and counts it as failed when it returns False."""
    import asyncio
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise RetinaFaceError(f"{url}: expected an http:// URL of this machine")
    head = (f"POST {parts.path or '/'}{'?' + parts.query if parts.query else ''} HTTP/1.1\r\n"
            f"Host: {parts.netloc}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    latencies: list[float] = []
    failed = 0
    remaining = requests

    async def answer(reader) -> tuple[int, bytes]:
        status = int((await reader.readline()).split()[1])
        length = 0
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return status, await reader.readexactly(length)

    async def client() -> None:
        nonlocal remaining, failed
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port or 80)
        try:
            while remaining > 0:
                remaining -= 1
                start = time.perf_counter()
                writer.write(head + body)
                status, data = await asyncio.wait_for(answer(reader), timeout_s)
                latencies.append(time.perf_counter() - start)
                failed += status != 200 or (check is not None and not check(status, data))
        finally:
            writer.close()

    async def level() -> float:
        start = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        return time.perf_counter() - start

    seconds = asyncio.run(level())
    p50, p99 = percentiles_ms(latencies)
    return LoadResult(clients, len(latencies), seconds, len(latencies) / seconds, p50, p99, failed)


def markdown_table(results: list[LoadResult]) -> str:
    """The results as the table of docs/serving.md."""
    lines = ["| clients | requests | requests/s | p50 ms | p99 ms | failed |", "| ---: | ---: | ---: | ---: | ---: | ---: |"]
    lines += [f"| {r.clients} | {r.requests} | {r.requests_per_s:.2f} | {r.p50_ms:.0f} | {r.p99_ms:.0f} | {r.failed} |"
              for r in results]
    return "\n".join(lines)


class ServerProcess:
    """``retinaface-trt serve ARGS --port 0`` as a child process (this interpreter, ``cwd`` as given).

    ``url`` is where it listens, read from its "listening on" line; ``wait_ready()`` polls ``/readyz``;
    ``stop()`` sends SIGTERM (the server drains) and returns the exit status. stderr lines are kept.
    """

    def __init__(self, args, cwd: str | os.PathLike | None = None, timeout_s: float = 120.0):
        command = [sys.executable, "-m", "retinaface_trt", "serve", *args, "--port", "0"]
        self.process = subprocess.Popen(command, cwd=cwd, stderr=subprocess.PIPE, text=True)
        self._lines: queue.Queue = queue.Queue()
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        self.url = self._wait_for_url(timeout_s)

    def _read(self) -> None:
        for line in self.process.stderr:
            self._lines.put(line)
        self._lines.put(None)

    def _next_line(self, deadline: float) -> str | None:
        line = self._lines.get(timeout=max(0.1, deadline - time.monotonic()))
        if line is not None:
            self.lines.append(line)
        return line

    def _wait_for_url(self, timeout_s: float) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            line = self._next_line(deadline)
            if line is None:
                raise RetinaFaceError(f"the server exited with status {self.process.wait()} before listening: "
                                      f"{''.join(self.lines).strip()}")
            if "listening on " in line:
                return line.split("listening on ")[1].split()[0]
        raise RetinaFaceError(f"the server did not listen within {timeout_s:g} s")

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        import httpx

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/readyz", timeout=5).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RetinaFaceError(f"the server at {self.url} was not ready within {timeout_s:g} s")

    def stop(self, timeout_s: float = 60.0) -> int:
        """SIGTERM, wait for the drain (SIGKILL after ``timeout_s``); the exit status."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.process.wait()

    def stderr(self, timeout_s: float = 30.0) -> str:
        """Everything the server wrote on stderr, once it has exited."""
        deadline = time.monotonic() + timeout_s
        while self._next_line(deadline) is not None:
            pass
        return "".join(self.lines)

    def __enter__(self) -> "ServerProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
