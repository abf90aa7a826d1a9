"""The backend contract: what runs the network, and every capability the pipeline may ask it for.

:class:`Backend` declares every attribute a backend has, with its default, so callers read
``backend.capturable`` or ``backend.max_batch`` and never probe. Its public :meth:`Backend.infer` does the
checks every backend needs (not closed, the fixed input size) once, then calls the subclass's
:meth:`Backend.infer_impl`; :meth:`Backend.close` releases once through :meth:`Backend.close_impl`
(Polygraphy's ``BaseRunner.infer`` / ``infer_impl`` split).

A new backend subclasses :class:`Backend`, sets ``name``, ``cfg`` and ``device`` (and any capability that
differs from the default) in its ``__init__``, implements ``infer_impl`` and ``close_impl``, and is
registered in :mod:`runtime.backends` (``BACKENDS``); nothing else in the project changes.
"""

from __future__ import annotations

import torch

from retinaface_trt.errors import RetinaFaceError


class Backend:
    """What :class:`runtime.detector.Detector` runs. The attributes, with their defaults:

    name:                   the backend's name, as ``--backend`` spells it
    cfg:                    the :class:`network.config.RetinaFaceConfig` of the model (priors, variances)
    device:                 the ``torch.device`` its inputs and outputs live on
    precision:              "fp32", "fp16" or "int8": what the model computes in
    fixed_input_size:       (W, H) of a model built for one input size, or None (any size)
    max_batch:              the largest batch it takes in one call, or None (any)
    capturable:             ``infer`` may be captured in a CUDA graph (the pipeline replays it)
    input_dtype:            the dtype the pipeline hands over (float32, or float16 for a float16 executor)
    input_channels_last:    the pipeline hands over NHWC-strided input (a channels-last network)
    postprocess_in_network: decoding and NMS are inside the model: ``infer`` returns detections
    postprocess_settings:   the :class:`retinaface_trt.thresholds.Thresholds` inside the model, or None
    profiles_layers:        it has ``layer_times(batch, repeats) -> {layer: ms}`` (TensorRT's profiler)
    resize_hint:            how to make a model of another fixed size (the end of the size error's line)

    ``infer(batch)``: float [N, 3, H, W] (BGR minus mean) on ``device`` → (loc [N, P, 4], conf [N, P, 2]
    after softmax, landms [N, P, 10]) float32 tensors on ``device``; with ``postprocess_in_network``,
    (dets [N, D, 15], count [N]). ``close()``: release what it holds (GPU memory included); safe twice.
    """

    name: str = "backend"
    cfg = None
    device: torch.device = torch.device("cpu")
    precision: str = "fp32"
    fixed_input_size: tuple[int, int] | None = None
    max_batch: int | None = None
    capturable: bool = False
    input_dtype: torch.dtype = torch.float32
    input_channels_last: bool = False
    postprocess_in_network: bool = False
    postprocess_settings = None
    profiles_layers: bool = False
    resize_hint: str = "use a model made for this size"
    _closed: bool = False

    # The contract ----------------------------------------------------------------------------------------
    def infer(self, batch):
        """Check ``batch`` against the contract, then run it (:meth:`infer_impl`)."""
        self.check_batch(batch)
        return self.infer_impl(batch)

    def close(self) -> None:
        """Release the model (:meth:`close_impl`) once; later calls do nothing."""
        if not self._closed:
            self._closed = True
            self.close_impl()

    @property
    def closed(self) -> bool:
        return self._closed

    def check_batch(self, batch) -> None:
        """RetinaFaceError if this backend was closed, or ``batch`` [N, 3, H, W] is not its fixed size."""
        if self._closed:
            raise RetinaFaceError(f"this {self.name} backend was closed; create a new one")
        shape = tuple(getattr(batch, "shape", ()))
        if self.fixed_input_size and len(shape) == 4 and shape[2:] != tuple(self.fixed_input_size[::-1]):
            w, h = self.fixed_input_size
            raise RetinaFaceError(f"this {self.name} model was built for {w}x{h} inputs, found {shape[3]}x"
                                  f"{shape[2]}; resize to {w}x{h} or {self.resize_hint}")

    def settled(self, shape: tuple) -> bool:
        """Whether ``infer`` of a batch of ``shape`` [N, 3, H, W] runs from now on as it will for good (a graph
        captured now keeps the fast path). True unless the backend still chooses its kernels by use, as the
        executor does (:class:`runtime.device.TuneAfter`)."""
        return True

    def settle(self, shape: tuple) -> None:
        """Choose the final kernels of ``shape`` at its next ``infer`` (a warm-up that knows the shapes to
        come); a no-op where :meth:`settled` is always True."""

    # What a subclass implements --------------------------------------------------------------------------
    def infer_impl(self, batch):
        raise NotImplementedError

    def close_impl(self) -> None:
        """Release what the backend holds (the default holds nothing)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
