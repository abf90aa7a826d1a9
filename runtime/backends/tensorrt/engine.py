"""Run a RetinaFace TensorRT engine on PyTorch CUDA tensors, and keep a cache of engines built from weights.

Device memory and streams are PyTorch's (``tensor.data_ptr()``, ``torch.cuda.Stream``), so no CUDA
context is created besides PyTorch's own: no ``pycuda.autoinit`` and no crash at interpreter exit.
Before TensorRT sees an engine, its sidecar is checked against the running TensorRT version and GPU,
and the file's size and sha256 against the sidecar (:mod:`runtime.backends.tensorrt.sidecar`).

``infer`` takes a float32 CUDA batch [N, 3, H, W] (BGR minus mean, as the network expects) and returns
``loc`` [N, P, 4], ``conf`` [N, P, 2] (softmax), ``landms`` [N, P, 10], float32 CUDA tensors that are
reused: they are overwritten by the next call with the same input shape.
"""

from __future__ import annotations

import hashlib
import json
import weakref
from pathlib import Path

from retinaface_trt.errors import RetinaFaceError
from runtime.backends.tensorrt import compat as trt_compat
from runtime.backends.tensorrt.sidecar import check_compatible, read_engine_bytes, read_sidecar, sidecar_path

OUTPUT_NAMES = ("loc", "conf", "landms")


class TensorRTRunner:
    """Context manager over one engine. ``backbone``, ``precision``, ``info`` (the sidecar) and
    ``fixed_input_size`` ((W, H), or None for an engine with dynamic height and width)."""

    def __init__(self, engine_path: str | Path, device_index: int = 0, trt=None):
        import torch

        from runtime.backends.tensorrt.device import current_device
        from runtime.backends.tensorrt.session import EngineSession

        self.info = read_sidecar(engine_path)
        trt = trt or trt_compat.import_tensorrt()
        check_compatible(self.info, engine_path, str(trt.__version__), current_device(device_index))
        plan = read_engine_bytes(engine_path, self.info)
        self._trt = trt
        self.device = torch.device("cuda", device_index)
        with torch.cuda.device(self.device):
            self._session = EngineSession(trt, plan, trt_compat.make_logger(trt))
            self._stream = torch.cuda.Stream(self.device)
        self._buffers: dict[tuple, dict] = {}
        self._shape_set: tuple | None = None
        self.backbone = self.info["backbone"]
        self.precision = self.info["precision"]
        h, w = self.info["input_shape"][2:]
        self.fixed_input_size = (w, h) if w > 0 and h > 0 else None
        # Release TensorRT objects before PyTorch's CUDA state goes away at interpreter exit.
        self._finalizer = weakref.finalize(self, self._session.close)

    def __enter__(self) -> "TensorRTRunner":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Free the buffers and the TensorRT objects; the runner cannot be used afterwards."""
        self._buffers.clear()
        self._finalizer()

    def layer_information(self) -> str:
        """TensorRT's per-layer description of the engine (JSON text)."""
        return self._session.layer_information(self._trt)

    def infer(self, batch):
        """Run ``batch`` (float32 CUDA [N, 3, H, W]); return (loc, conf, landms), see the module docstring."""
        import torch

        self._check_batch(batch)
        batch = batch.contiguous()
        outputs = self._outputs_for(tuple(batch.shape))
        name = self._session.inputs[0]
        if self._shape_set != tuple(batch.shape):
            self._session.set_input_shape(name, tuple(batch.shape))
            self._shape_set = tuple(batch.shape)
        producer = torch.cuda.current_stream(self.device)
        self._stream.wait_stream(producer)          # the batch may still be being written on the caller's stream
        addresses = {name: batch.data_ptr(), **{n: t.data_ptr() for n, t in outputs.items()}}
        self._session.execute(addresses, self._stream.cuda_stream)
        producer.wait_stream(self._stream)
        batch.record_stream(self._stream)
        return tuple(outputs[n] for n in OUTPUT_NAMES)

    def _check_batch(self, batch) -> None:
        import torch

        if not (isinstance(batch, torch.Tensor) and batch.dim() == 4 and batch.shape[1] == 3
                and batch.dtype == torch.float32 and batch.device == self.device):
            found = (f"{tuple(batch.shape)} {batch.dtype} on {batch.device}" if isinstance(batch, torch.Tensor)
                     else type(batch).__name__)
            raise RetinaFaceError(f"the TensorRT backend expects a float32 tensor [N, 3, H, W] on {self.device}, "
                                  f"found {found}")
        if self.fixed_input_size and tuple(batch.shape[2:]) != self.fixed_input_size[::-1]:
            w, h = self.fixed_input_size
            raise RetinaFaceError(f"this engine was built for {w}x{h} inputs, found {batch.shape[3]}x"
                                  f"{batch.shape[2]}; resize to {w}x{h} or rebuild with --min-size/--max-size")

    def _outputs_for(self, shape: tuple) -> dict:
        """Output buffers for input ``shape``, allocated on first use and reused afterwards."""
        import torch

        if shape not in self._buffers:
            shapes = self._session.set_input_shape(self._session.inputs[0], shape)
            self._shape_set = shape
            self._buffers[shape] = {n: torch.empty(shapes[n], dtype=torch.float32, device=self.device)
                                    for n in OUTPUT_NAMES}
        return self._buffers[shape]


class TensorRTBackend:
    """The ``tensorrt`` backend of :mod:`runtime.backends`: a :class:`TensorRTRunner` on one CUDA device.

    ``infer`` returns the runner's reused output buffers; the detector consumes them before the next call.
    """

    name = "tensorrt"

    def __init__(self, engine_path: str | Path, device="cuda", trt=None):
        from network.config import get_config
        from runtime.backends import resolve_device

        device = resolve_device("cuda" if device in (None, "auto") else device)
        if device.type != "cuda":
            raise RetinaFaceError(f"the tensorrt backend runs on an NVIDIA GPU, not on {device}; "
                                  "use --device cuda (or --backend torch for the CPU)")
        self._runner = TensorRTRunner(engine_path, device_index=device.index or 0, trt=trt)
        self.device = self._runner.device
        self.cfg = get_config(self._runner.backbone)
        self.precision = self._runner.precision
        self.fixed_input_size = self._runner.fixed_input_size

    def infer(self, batch):
        if self._runner is None:
            raise RetinaFaceError("this backend was closed; create a new one")
        return self._runner.infer(batch)

    def close(self) -> None:
        import torch

        if self._runner is not None:
            self._runner.close()
            self._runner = None
            torch.cuda.empty_cache()


def default_engine_cache() -> Path:
    """Where engines built automatically from weights are kept: $RETINAFACE_TRT_CACHE or ~/.cache/retinaface-trt."""
    import os

    return Path(os.environ.get("RETINAFACE_TRT_CACHE", Path.home() / ".cache" / "retinaface-trt"))


def engine_cache_key(weights_sha256: str, tensorrt_version: str, gpu: str, precision: str,
                     input_size: tuple[int, int], max_batch: int) -> str:
    """16 hex digits identifying one cached engine (weights, TensorRT version, GPU, precision, shape)."""
    text = json.dumps([weights_sha256, tensorrt_version, gpu, precision, list(input_size), max_batch])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def ensure_engine(weights: str | Path, cache_dir: str | Path, precision: str = "fp32",
                  input_size: tuple[int, int] = (640, 640), max_batch: int = 8, device_index: int = 0,
                  trt=None) -> Path:
    """Return a usable engine for ``weights`` from ``cache_dir``, building it there first if needed.

    The cache file name carries :func:`engine_cache_key`, so a new TensorRT version, another GPU or other
    settings get their own engine; a cached engine whose bytes do not match its sidecar is rebuilt.
    """
    from runtime.backends.tensorrt.build import BuildOptions, build_engine_file
    from runtime.backends.tensorrt.device import current_device
    from wts_export.weights import sha256_file

    trt = trt or trt_compat.import_tensorrt()
    device = current_device(device_index)
    key = engine_cache_key(sha256_file(weights), str(trt.__version__), f"{device.name} sm{device.compute_capability}",
                           precision, tuple(input_size), max_batch)
    path = Path(cache_dir) / f"retinaface-{precision}-{input_size[0]}x{input_size[1]}-{key}.engine"
    if path.exists() and sidecar_path(path).exists():
        try:
            read_engine_bytes(path, read_sidecar(path))
            return path
        except RetinaFaceError:
            pass   # damaged cache entry: rebuilt below
    path.parent.mkdir(parents=True, exist_ok=True)
    options = BuildOptions(precision=precision, input_size=tuple(input_size), max_batch=max_batch,
                           timing_cache=path.parent / "timing.cache")
    return build_engine_file(weights, path, options, force=True, trt=trt, device=device)
