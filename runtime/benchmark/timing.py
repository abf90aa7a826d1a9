"""Timing, with the method stated in the results.

Every measurement runs ``warmup`` untimed calls, then ``repeats`` timed ones, and reports median / min / max.
A call is timed by the host clock, the device synchronised before the clock stops (what a caller waits for),
except ``model_ms`` on a GPU: CUDA events around the asynchronous call (device time). Per-second metrics are
images / median seconds of one call of the batch. What each metric covers: :mod:`runtime.benchmark.suites`.
"""

from __future__ import annotations

import platform
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import torch


@dataclass
class Row:
    """One result row of ``--json`` (see docs/benchmarks.md)."""

    backend: str
    device: str
    precision: str
    batch: int
    input_size: list
    metric: str
    median: float
    min: float
    max: float
    repeats: int
    notes: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def time_calls(fn: Callable[[], object], device: torch.device, warmup: int, repeats: int,
               wall: bool = True) -> list[float]:
    """Milliseconds of each of ``repeats`` calls of ``fn`` after ``warmup`` untimed ones.

    ``wall``: host clock around the call, the device synchronised before the clock stops (what a caller
    waits); otherwise CUDA events on the current stream around it (device time of asynchronous work).
    """
    for _ in range(warmup):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        if not wall:
            return [_event_ms(fn) for _ in range(repeats)]
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append((time.perf_counter() - start) * 1000.0)
    return times


def _event_ms(fn) -> float:
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end)


def summarise(times_ms: list[float], per: float = 1.0, rate: bool = False) -> dict:
    """median/min/max of ``times_ms`` divided by ``per``; ``rate`` turns them into per-second counts."""
    values = [per * 1000.0 / t for t in times_ms] if rate else [t / per for t in times_ms]
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "repeats": len(values)}


def environment(device: torch.device, warmup: int, repeats: int) -> dict:
    """Versions, hardware and the timing method, for the report's header and ``env`` in the JSON."""
    env = {
        "python": platform.python_version(), "torch": torch.__version__, "cpu": platform.processor() or
        platform.machine(), "cpu_threads": torch.get_num_threads(), "warmup": warmup, "repeats": repeats,
        "timer": ("time.perf_counter, device synchronised (model_ms: CUDA events)" if device.type == "cuda"
                  else "time.perf_counter"),
        "statistic": "median, min, max over repeats",
    }
    if device.type == "cuda":
        env.update(device=torch.cuda.get_device_name(device), cuda=torch.version.cuda,
                   cudnn=torch.backends.cudnn.version())
    else:
        env["device"] = "cpu"
    env.update(_optional_versions())
    return env


def _optional_versions() -> dict:
    versions = {}
    for module in ("cv2", "numpy", "onnxruntime", "tensorrt"):
        try:
            versions[module] = __import__(module).__version__
        except ImportError:
            pass
    return versions
