"""The ``onnxruntime`` backend: an ONNX model (from ``export-onnx``, or exported on the fly) in ONNX Runtime.

Providers: ``CPUExecutionProvider`` for ``device="cpu"``; ``CUDAExecutionProvider`` for a CUDA device,
which needs the ``onnxruntime-gpu`` package (a RetinaFaceError says so otherwise). Inputs and outputs
cross as numpy arrays (one host copy each way); outputs come back as torch tensors on ``device``.
"""

from __future__ import annotations

import os
from pathlib import Path

from retinaface_trt.errors import RetinaFaceError
from runtime.backends.base import Backend
from runtime.device import cpu_cores, resolve_device

ONNX_SUFFIX = ".onnx"


class OnnxRuntimeBackend(Backend):
    """A backend over one ``onnxruntime.InferenceSession``.

    model: an ``.onnx`` file, or ``.pth`` / ``.wts`` weights (exported in memory with dynamic N, H, W)
    ``fixed_input_size`` is (W, H) for a model exported at one size, None for a dynamic one.
    """

    name = "onnxruntime"
    resize_hint = "export with --dynamic"

    def __init__(self, model: str | os.PathLike, device: str | None = "cpu", threads: int = 0):
        ort = _import_onnxruntime()
        self.device = resolve_device(device)
        proto = load_onnx_model(model)
        self.cfg = onnx_config(proto, model)
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(threads) or cpu_cores()
        # Idle ONNX Runtime threads spin by default, and steal the cores PyTorch and OpenCV use between calls.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self._session = ort.InferenceSession(proto.SerializeToString(), options, providers=self._providers(ort))
        self._input = self._session.get_inputs()[0]
        self._outputs = _output_names(self._session)
        self.fixed_input_size = input_size_of(self._input.shape)

    def _providers(self, ort) -> list[str]:
        if self.device.type == "cpu":
            return ["CPUExecutionProvider"]
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise RetinaFaceError("ONNX Runtime has no CUDA provider here; install onnxruntime-gpu "
                                  "(pip install onnxruntime-gpu) or use --device cpu")
        return [("CUDAExecutionProvider", {"device_id": self.device.index or 0})]

    def infer_impl(self, batch):
        """float32 [N, 3, H, W] → (loc [N, P, 4], conf [N, P, 2], landms [N, P, 10]) on ``device``."""
        import torch

        self._check(batch)
        array = batch.detach().to("cpu", torch.float32).contiguous().numpy()
        outputs = self._session.run(self._outputs, {self._input.name: array})
        return tuple(torch.from_numpy(o).to(self.device) for o in outputs)

    def _check(self, batch) -> None:
        fixed_batch = self._input.shape[0]
        if isinstance(fixed_batch, int) and fixed_batch != batch.shape[0]:
            raise RetinaFaceError(f"this ONNX model takes batches of {fixed_batch}, found {batch.shape[0]}; "
                                  "export with --dynamic for other batch sizes")

    def close_impl(self) -> None:
        self._session = None


def _import_onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise RetinaFaceError("ONNX Runtime is not installed: pip install onnxruntime "
                              "(or onnxruntime-gpu for CUDA)") from None
    return onnxruntime


def load_onnx_model(model):
    """An ONNX file → ModelProto; weights → exported in memory (dynamic N, H, W)."""
    import onnx


    path = Path(model)
    if not path.is_file():
        raise RetinaFaceError(f"model file {path} not found; expected an .onnx file (or .pth / .wts weights)")
    if path.suffix.lower() != ONNX_SUFFIX:
        path = exported_onnx(path)
    try:
        return onnx.load(str(path))
    except Exception as error:   # noqa: BLE001 - protobuf raises several types for a damaged file
        raise RetinaFaceError(f"{path} is not a readable ONNX model ({error}); re-export it with "
                              "`retinaface-trt export-onnx`") from None


def exported_onnx(weights: Path) -> Path:
    """The dynamic ONNX export of ``weights``, from the cache (:mod:`runtime.cache`) or made there now.

    Exporting takes seconds; the entry is keyed by the weights' sha256 and the project, torch and opset versions.
    """
    import torch

    from retinaface_trt import __version__
    from runtime.cache import cache_root, entry_key
    from wts_export.weights import sha256_file
    from wts_export.onnx_export import DEFAULT_OPSET, export_onnx

    key = entry_key(sha256_file(weights), __version__, torch.__version__, DEFAULT_OPSET, "dynamic")
    target = cache_root() / "onnx" / f"{weights.stem}-{key}.onnx"
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        export_onnx(weights, target, dynamic=True, force=True)
    return target


def onnx_config(proto, model):
    """The RetinaFace configuration named in the model's metadata (written by ``export-onnx``)."""
    from network.config import get_config
    from wts_export.onnx_export import BACKBONE_KEY, model_backbone

    backbone = model_backbone(proto)
    if backbone is None:
        raise RetinaFaceError(f"{model} carries no '{BACKBONE_KEY}' metadata, so its prior configuration is "
                              "unknown; export it with `retinaface-trt export-onnx`")
    return get_config(backbone)


def _output_names(session) -> list[str]:
    from network import OUTPUT_NAMES

    names = [o.name for o in session.get_outputs()]
    if sorted(names) != sorted(OUTPUT_NAMES):
        raise RetinaFaceError(f"expected ONNX outputs {', '.join(OUTPUT_NAMES)}, found {', '.join(names)}; "
                              "export the model with `retinaface-trt export-onnx`")
    return list(OUTPUT_NAMES)


def input_size_of(shape) -> tuple[int, int] | None:
    """(W, H) when both are fixed integers in the input shape [N, 3, H, W], else None."""
    height, width = shape[2], shape[3]
    return (width, height) if isinstance(height, int) and isinstance(width, int) else None
