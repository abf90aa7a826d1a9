"""The benchmark's driver: build each suite, time its cases, print the method and one line per row.

A suite that fails (a backend that is not installed, a GPU out of memory) is reported on one line and the
others still run; the rows already measured are kept (and written with ``--json``).
"""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from retinaface_trt.errors import RetinaFaceError
from runtime.benchmark.suites import Inputs, suite
from runtime.benchmark.timing import Row, environment, summarise, time_calls

UNITS = {"model_ms": "ms", "detect_ms": "ms", "sdk_ms": "ms", "images_per_s": "images/s",
         "host_images_per_s": "images/s", "host_arrays_per_s": "images/s", "copy_bound_images_per_s": "images/s"}


@dataclass(frozen=True)
class BenchmarkConfig:
    """What ``retinaface-trt benchmark`` runs (see its ``--help`` for each field's flag and default)."""

    weights: str
    device: torch.device
    backends: tuple[str, ...] = ("auto",)
    precisions: tuple[str, ...] = ("fp32",)
    batch: int = 128
    input_size: tuple[int, int] = (640, 640)
    images: tuple[str, ...] = ()
    baseline: bool = False
    compile_reference: bool = False
    layer_times: bool = False
    threads: int | None = None
    warmup: int = 20
    repeats: int = 100


@dataclass
class Report:
    env: dict
    rows: list[Row] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    layers: dict = field(default_factory=dict)        # backend name → {layer: mean ms}, TensorRT engines


def run_benchmark(config: BenchmarkConfig, report: Callable[[str], None] = print) -> Report:
    """Time every (backend, precision) of ``config``, then the references asked for."""
    images, encoded = _images(config.images)
    result = Report(environment(config.device, config.warmup, config.repeats))
    result.env["images"] = [os.path.basename(p) for p in config.images] or ["synthetic 1024x624 (few faces)"]
    _print_header(result.env, config, report)
    jobs = [(b, p) for b in config.backends for p in config.precisions]
    jobs += [("baseline", "fp32")] * config.baseline + [("compile", "fp16")] * config.compile_reference
    for backend, precision in jobs:
        inputs = Inputs(str(config.weights), config.device, precision, config.batch, config.input_size,
                        images, encoded, config.threads)
        try:
            _run_suite(backend, precision, inputs, config, result, report)
        except (RetinaFaceError, RuntimeError, ImportError) as error:
            result.failures.append(f"{backend} {precision}: {error}")
            report(f"{backend:11} {precision} failed: {str(error).splitlines()[0]}")
        gc.collect()
        if config.device.type == "cuda":
            torch.cuda.empty_cache()
    return result


def _run_suite(name: str, precision: str, inputs: Inputs, config: BenchmarkConfig, result: Report, report) -> None:
    timed = suite(name, inputs)
    try:
        for case in timed.cases:
            wall = case.metric != "model_ms"
            times = time_calls(case.fn, config.device, config.warmup, config.repeats, wall=wall)
            per_second = case.metric.endswith("_per_s")
            stats = summarise(times, per=case.batch, rate=True) if per_second else summarise(times)
            label = case.notes.get("backend", name)
            result.rows.append(Row(label, str(config.device), precision, case.batch, list(config.input_size),
                                   case.metric, notes=dict(case.notes), **stats))
            report(format_row(result.rows[-1]))
        if config.layer_times and timed.backend.profiles_layers:
            _layer_times(timed, precision, config, result, report)
    finally:
        timed.release()


def _layer_times(timed, precision: str, config: BenchmarkConfig, result: Report, report, shown: int = 15) -> None:
    """The engine's per-layer times (TensorRT's profiler) at batch 1, slowest first."""
    times = timed.backend.layer_times(timed.model_input, repeats=config.repeats)
    result.layers[f"{timed.backend.name} {precision}"] = times
    report(f"layer times ({timed.backend.name} {precision}, batch 1, mean of {config.repeats} runs), slowest first:")
    for layer, ms in sorted(times.items(), key=lambda item: -item[1])[:shown]:
        report(f"  {ms:8.4f} ms  {layer}")


def format_row(row: Row) -> str:
    extra = row.notes.get("resize") or row.notes.get("api") or ""
    return (f"{row.backend:11} {row.precision} batch {row.batch:4} {row.metric:24} {extra:13} median "
            f"{row.median:11.3f} {UNITS[row.metric]:8} (min {row.min:.3f}, max {row.max:.3f}, {row.repeats} repeats)")


def _print_header(env: dict, config: BenchmarkConfig, report) -> None:
    report(f"device: {env['device']}  torch {env['torch']}  CUDA {env.get('cuda', '-')}  "
           f"cuDNN {env.get('cudnn', '-')}  CPU threads {env['cpu_threads']}")
    report(f"method: {config.warmup} warm-up calls, {config.repeats} timed calls, median (min, max); "
           f"timer: {env['timer']}; input {config.input_size[0]}x{config.input_size[1]}, batch {config.batch}; "
           f"precisions {', '.join(config.precisions)}; images: {', '.join(env['images'])}")
    report("model_ms: backend.infer only; detect_ms: Detector.detect of a host BGR image; sdk_ms: Engine.infer of "
           "the base64 file; images_per_s: detect_arrays of a uint8 batch on the device; host_*: detect_batch / "
           "detect_arrays of host images (upload included); copy_bound: the pinned copy of those bytes alone")


def _images(paths: tuple[str, ...]) -> tuple[list[np.ndarray], list[bytes]]:
    """BGR images and their encoded bytes: the files given, or one synthetic 1024x624 image (JPEG)."""
    import cv2

    from runtime.image_io import read_image

    if not paths:
        image = synthetic_image()
        return [image], [cv2.imencode(".jpg", image)[1].tobytes()]
    images = [read_image(path) for path in paths]
    encoded = []
    for path in paths:
        with open(path, "rb") as handle:
            encoded.append(handle.read())
    return images, encoded


def synthetic_image(width: int = 1024, height: int = 624, seed: int = 0) -> np.ndarray:
    """A deterministic smooth BGR uint8 test image (few detections: prefer a real photo with --image)."""
    import cv2

    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(height // 16, width // 16, 3), dtype=np.uint8)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
