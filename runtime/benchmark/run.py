"""The benchmark's driver: build each suite, time its cases, print the method and one line per row."""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from retinaface_trt.errors import RetinaFaceError
from runtime.benchmark.timing import Row, environment, summarise, time_calls
from runtime.benchmark.suites import Inputs, suite


@dataclass(frozen=True)
class BenchmarkConfig:
    """What ``retinaface-trt benchmark`` runs (see its ``--help`` for each field's flag and default)."""

    weights: str
    device: torch.device
    backends: tuple[str, ...] = ("fast",)
    precisions: tuple[str, ...] = ("fp32",)
    batch: int = 128
    input_size: tuple[int, int] = (640, 640)
    images: tuple[str, ...] = ()
    baseline: bool = False
    warmup: int = 20
    repeats: int = 100


def run_benchmark(config: BenchmarkConfig, report: Callable[[str], None] = print) -> tuple[dict, list[Row]]:
    """Time every (backend, precision) of ``config``, then the baseline if asked: (env dict, rows)."""
    from wts_export.weights import load_weights

    weights = load_weights(config.weights)
    images = [_read(path) for path in config.images] or [synthetic_image()]
    env = environment(config.device, config.warmup, config.repeats)
    env["images"] = [os.path.basename(p) for p in config.images] or ["synthetic 1024x624"]
    _print_header(env, config, report)
    jobs = [(b, p) for b in config.backends for p in config.precisions]
    jobs += [("baseline", "fp32")] if config.baseline else []
    rows = []
    for backend, precision in jobs:
        inputs = Inputs(weights, str(config.weights), config.device, precision, config.batch, config.input_size, images)
        for case in suite(backend, inputs):
            rows.append(_measure(backend, precision, case, inputs, config))
            report(format_row(rows[-1]))
        gc.collect()
        if config.device.type == "cuda":
            torch.cuda.empty_cache()
    return env, rows


def _measure(backend: str, precision: str, case, inputs: Inputs, config: BenchmarkConfig) -> Row:
    times = time_calls(case.fn, config.device, config.warmup, config.repeats)
    if case.metric == "images_per_s":
        stats = summarise(times, per=case.batch, rate=True)
    elif case.metric == "e2e_ms_per_image":
        stats = summarise(times, per=case.batch)
    else:
        stats = summarise(times)
    return Row(backend, str(config.device), precision, case.batch, list(config.input_size), case.metric,
               notes=dict(case.notes), **stats)


def format_row(row: Row) -> str:
    unit = {"model_ms": "ms", "e2e_ms_per_image": "ms/image", "images_per_s": "images/s"}[row.metric]
    return (f"{row.backend:9} {row.precision} batch {row.batch:4} {row.metric:17} median {row.median:10.3f} "
            f"{unit:8} (min {row.min:.3f}, max {row.max:.3f}, {row.repeats} repeats)")


def _print_header(env: dict, config: BenchmarkConfig, report) -> None:
    report(f"device: {env['device']}  torch {env['torch']}  CUDA {env.get('cuda', '-')}  "
           f"cuDNN {env.get('cudnn', '-')}  CPU threads {env['cpu_threads']}")
    report(f"method: {config.warmup} warm-up calls, {config.repeats} timed calls, median (min, max); "
           f"timer: {env['timer']}; input {config.input_size[0]}x{config.input_size[1]}, batch {config.batch}; "
           f"images: {', '.join(env['images'])}")
    report("model_ms: network only, float32 input on the device; images_per_s: uint8 batch on the device -> "
           "resize, network, decode, NMS; e2e_ms_per_image: host BGR image -> list of faces")


def _read(path: str) -> np.ndarray:
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise RetinaFaceError(f"cannot read image {path}: expected an image file (jpg, png, ...); check the path")
    return image


def synthetic_image(width: int = 1024, height: int = 624, seed: int = 0) -> np.ndarray:
    """A deterministic smooth BGR uint8 test image (few detections: prefer a real photo with --image)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(height // 16, width // 16, 3), dtype=np.uint8)
    import cv2

    return cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
