"""What each backend is timed on: closures over the code users call, built once (allocations happen outside
the timed calls).

A suite is a list of :class:`Case` (metric, batch, fn, notes). For a real backend (``torch``, ``onnxruntime``,
``tensorrt``, built by :func:`runtime.backends.create_backend`) every case goes through the one pipeline:

* ``model_ms``: ``backend.infer`` alone on a network input already on the device (batch 1 and N), replayed
  from a CUDA graph where the pipeline replays it too;
* ``detect_ms``: :meth:`Detector.detect` of a host BGR image, at its original size and stretched to the input
  size;
* ``sdk_ms``: :meth:`Engine.infer` of the image file as base64 (decode, detection, JSON);
* ``images_per_s``: :meth:`Detector.detect_arrays` of a uint8 batch of N images already on the device (resize,
  network, decode, NMS, detections on the host);
* ``host_images_per_s`` / ``host_arrays_per_s``: :meth:`Detector.detect_batch` / ``detect_arrays`` of N host
  images (upload included); ``copy_bound_images_per_s``: a pinned host→device copy of the same bytes alone.

``baseline`` is the original-style pipeline (:mod:`runtime.benchmark.original`); ``compile`` the PyTorch model
under ``torch.compile(mode="reduce-overhead")``, model only (a reference for the executor's speed).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch


@dataclass
class Case:
    metric: str
    batch: int
    fn: Callable[[], object]
    notes: dict = field(default_factory=dict)


@dataclass
class Suite:
    """The cases of one suite, what releases what they hold, and the backend they time (if any)."""

    cases: list[Case]
    release: Callable[[], None] = lambda: None
    backend: object = None
    model_input: object = None       # the batch-1 network input of model_ms, for per-layer profiles


@dataclass
class Inputs:
    """The data every suite is timed on: BGR uint8 host images at their original sizes and their files' bytes."""

    weights_path: str
    device: torch.device
    precision: str
    batch: int
    input_size: tuple[int, int]
    images: list[np.ndarray]
    encoded: list[bytes]
    threads: int | None = None       # CPU threads of the backends (None: one per core)

    def host_batch(self, count: int) -> list[np.ndarray]:
        """``count`` images at the first image's size, cycling through the images of that size."""
        same = [im for im in self.images if im.shape == self.images[0].shape]
        return [same[i % len(same)] for i in range(count)]

    def device_batch(self, count: int) -> torch.Tensor:
        return torch.from_numpy(np.stack(self.host_batch(count))).to(self.device)


def backend_suite(name: str, inputs: Inputs) -> Suite:
    """The cases of backend ``name`` through the one pipeline."""
    from runtime.backends import create_backend
    from runtime.detector import Detector
    from runtime.sdk import Engine

    backend = create_backend(name, weights=inputs.weights_path, device=str(inputs.device),
                             precision=inputs.precision, input_size=inputs.input_size, threads=inputs.threads)
    original = Detector(backend, resize="original")
    stretch = Detector(backend, resize="stretch", input_size=inputs.input_size)
    engine = Engine(detector=Detector(backend, resize="original"))
    text = base64.b64encode(inputs.encoded[0]).decode("ascii")
    host, on_device = inputs.host_batch(inputs.batch), inputs.device_batch(inputs.batch)
    image, n = inputs.images[0], inputs.batch
    size = (image.shape[1], image.shape[0])
    for detector, batches in ((original, (1,)), (stretch, (1, n)), (engine.detector, (1,))):
        detector.prepare(size, batches)          # the steady state is timed, not cuDNN's planning
    notes = {"backend": backend.name, "cuda_graphs": original.cuda_graphs}
    cases = _model_cases(backend, inputs, notes)
    cases += [Case("detect_ms", 1, lambda: original.detect(image), {**notes, "resize": "original"}),
              Case("detect_ms", 1, lambda: stretch.detect(image), {**notes, "resize": "stretch"}),
              Case("sdk_ms", 1, lambda: engine.infer(text), {**notes, "input": "base64 of the image file"}),
              Case("images_per_s", n, lambda: stretch.detect_arrays(on_device), {**notes, "resize": "stretch"}),
              Case("host_images_per_s", n, lambda: stretch.detect_batch(host), {**notes, "api": "detect_batch"}),
              Case("host_arrays_per_s", n, lambda: stretch.detect_arrays(host), {**notes, "api": "detect_arrays"})]
    if inputs.device.type == "cuda":
        cases.append(_copy_bound(host, inputs.device))
    return Suite(cases, backend.close, backend, _float_batch(inputs, 1, backend))


def _model_cases(backend, inputs: Inputs, notes: dict) -> list[Case]:
    from runtime.device import GraphCache

    dtype = backend.input_dtype
    graphed = backend.capturable and inputs.device.type == "cuda"
    infer = GraphCache(backend.infer, capture_after=1) if graphed else None
    cases = []
    for count in (1, inputs.batch):
        x = _float_batch(inputs, count, backend)
        backend.settle(tuple(x.shape))
        fn = (lambda x=x: infer(tuple(x.shape), x)) if graphed else (lambda x=x: backend.infer(x))
        cases.append(Case("model_ms", count, fn, {**notes, "input": f"{dtype}".replace("torch.", "")}))
    return cases


def _copy_bound(host: list[np.ndarray], device: torch.device) -> Case:
    """The pinned host→device copy of the batch's bytes alone: the most any pipeline fed from the host can do."""
    pinned = torch.from_numpy(np.stack(host)).pin_memory()
    target = torch.empty_like(pinned, device=device)
    return Case("copy_bound_images_per_s", len(host), lambda: target.copy_(pinned, non_blocking=True),
                {"what": f"pinned copy of {pinned.numel() / 1e6:.1f} MB"})


def baseline_suite(inputs: Inputs) -> Suite:
    from runtime.benchmark.original import OriginalPipeline
    from wts_export.checkpoint import load_state_dict
    from wts_export.model import build_model

    model = build_model(load_state_dict(inputs.weights_path)).to(inputs.device)
    detector = OriginalPipeline(model, model.cfg, inputs.device, inputs.input_size)
    forward = torch.no_grad()(model)
    image = inputs.images[0]
    notes = {"model": "wts_export RetinaFace, eager float32", "postprocess": "NumPy on the CPU, loop-built priors"}
    cases = [Case("model_ms", count, lambda x=_float_batch(inputs, count): forward(x), notes)
             for count in (1, inputs.batch)]
    cases.append(Case("detect_ms", 1, lambda: detector.detect(image), {**notes, "resize": "stretch"}))
    return Suite(cases)


def compile_suite(inputs: Inputs) -> Suite:
    """The PyTorch model in float16 under torch.compile(mode="reduce-overhead"), model only."""
    from wts_export.checkpoint import load_state_dict
    from wts_export.model import build_model

    model = build_model(load_state_dict(inputs.weights_path)).to(inputs.device).half()
    model = model.to(memory_format=torch.channels_last)
    forward = torch.no_grad()(torch.compile(model, mode="reduce-overhead"))
    notes = {"model": "wts_export RetinaFace, float16, channels-last, torch.compile(mode='reduce-overhead')"}
    cases = []
    for count in (1, inputs.batch):
        x = _float_batch(inputs, count).half().contiguous(memory_format=torch.channels_last)
        cases.append(Case("model_ms", count, lambda x=x: forward(x), notes))
    return Suite(cases)


def _float_batch(inputs: Inputs, count: int, backend=None) -> torch.Tensor:
    """``count`` images stretched to the input size as a network input (in ``backend``'s format, if given; the
    default backend's otherwise)."""
    from runtime.backends.base import Backend
    from runtime.preprocess import layout, network_input, place

    backend = backend or Backend

    plan = layout((inputs.images[0].shape[1], inputs.images[0].shape[0]), "stretch", inputs.input_size)
    return network_input(place(inputs.device_batch(count), plan), backend.input_dtype,
                         backend.input_channels_last)


SUITES = {"baseline": baseline_suite, "compile": compile_suite}


def suite(name: str, inputs: Inputs):
    """The :class:`Suite` of ``name``: a backend of :mod:`runtime.backends`, ``baseline`` or ``compile``."""
    return SUITES[name](inputs) if name in SUITES else backend_suite(name, inputs)
