"""Export the project's PyTorch RetinaFace (:mod:`wts_export.model`) to ONNX.

Conventions of the exported file:

* input ``input``: float32 [N, 3, H, W], BGR minus (104, 117, 123), as every backend takes it;
* outputs ``loc`` [N, P, 4], ``conf`` [N, P, 2] (after softmax), ``landms`` [N, P, 10], float32;
* fixed size: N, H, W are fixed (N = 1); ``dynamic=True``: N, H and W are symbolic (``batch``,
  ``height``, ``width``). The FPN's nearest upsample takes its output size from the lateral tensor
  (``Shape`` → ``Slice`` → ``Resize(sizes=...)``), so every input size is exact, not only multiples of 32;
* opset 17 by default; 11 is the lowest accepted (opset 9 has no ``Resize`` with output sizes);
* ``metadata_props``: ``retinaface.backbone`` ("mobilenet0.25" / "resnet50") and, when exported from a
  file, ``retinaface.weights_sha256``, so that a backend knows the prior configuration of the model.

The TorchScript exporter (``torch.onnx.export(..., dynamo=False)``) is used: the dynamo exporter needs
``onnxscript``, which the project does not depend on. ``simplify=True`` runs ``onnxslim`` (see docs/onnx.md).
"""

from __future__ import annotations

import io
import os
from pathlib import Path

from network import INPUT_NAME, OUTPUT_NAMES
from retinaface_trt.errors import RetinaFaceError
from retinaface_trt.fileio import check_writable, write_bytes_atomic

DEFAULT_OPSET = 17
MIN_OPSET = 11
BACKBONE_KEY = "retinaface.backbone"
SHA256_KEY = "retinaface.weights_sha256"


def torch_model(weights):
    """A ``.pth`` / ``.wts`` path or a name → array mapping → :class:`wts_export.model.RetinaFace` in eval mode."""
    import numpy as np
    import torch

    from wts_export.model import RetinaFace, build_model

    if isinstance(weights, RetinaFace):
        return weights.eval()
    if isinstance(weights, (str, os.PathLike)):
        from wts_export.weights import check_weights_file, load_weights

        check_weights_file(weights)
        weights = load_weights(weights)
    state = {k: torch.as_tensor(np.asarray(v)) for k, v in weights.items()}
    return build_model(_shaped_like_model(state))


def _shaped_like_model(state: dict):
    """Arrays from a ``.wts`` file are flat: give each the shape the model expects (sizes are checked
    later). Missing ``num_batches_tracked`` counters are left to :func:`wts_export.model.build_model`."""
    import torch

    from network.config import config_for_weights
    from wts_export.model import RetinaFace

    with torch.device("meta"):
        shapes = {k: v.shape for k, v in RetinaFace(config_for_weights(state.keys())).state_dict().items()}
    return {k: v.reshape(shapes[k]) if k in shapes and v.numel() == shapes[k].numel() else v
            for k, v in state.items()}


def onnx_bytes(model, input_size: tuple[int, int] = (640, 640), dynamic: bool = False,
               opset: int = DEFAULT_OPSET, batch: int = 1) -> bytes:
    """Export ``model`` (RetinaFace) to serialized ONNX. ``input_size`` is (W, H); with ``dynamic`` it is
    only the size traced with (N, H, W are symbolic in the file)."""
    import torch

    check_opset(opset)
    width, height = input_size
    example = torch.zeros(batch, 3, height, width)
    axes = {INPUT_NAME: {0: "batch", 2: "height", 3: "width"}, **{n: {0: "batch", 1: "priors"} for n in OUTPUT_NAMES}}
    buffer = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(model.eval(), (example,), buffer, input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES),
                          opset_version=opset, dynamic_axes=axes if dynamic else None, dynamo=False,
                          do_constant_folding=True)
    return buffer.getvalue()


def check_opset(opset: int) -> None:
    if opset < MIN_OPSET:
        raise RetinaFaceError(f"opset {opset} cannot express the FPN's resize to the lateral tensor's size; "
                              f"pass --opset {MIN_OPSET} or higher (default {DEFAULT_OPSET})")


def finish_model(data: bytes, backbone: str, weights_sha256: str | None = None, simplify: bool = False):
    """Parse ``data``, optionally simplify, add the metadata, run ``onnx.checker``; return the ModelProto."""
    import onnx

    model = onnx.load_from_string(data)
    if simplify:
        model = simplify_model(model)
    metadata = {BACKBONE_KEY: backbone, **({SHA256_KEY: weights_sha256} if weights_sha256 else {})}
    del model.metadata_props[:]
    for key, value in metadata.items():
        model.metadata_props.add(key=key, value=value)
    model.producer_name = "retinaface-trt"
    onnx.checker.check_model(model, full_check=True)
    return model


def simplify_model(model):
    """Constant folding and redundant-node removal with ``onnxslim`` (pure Python, maintained)."""
    from retinaface_trt.extras import require

    return require("onnxslim", "onnx", "--simplify").slim(model)


def export_onnx(weights, output: str | os.PathLike, input_size: tuple[int, int] = (640, 640),
                dynamic: bool = False, opset: int = DEFAULT_OPSET, simplify: bool = False,
                force: bool = False) -> Path:
    """Export ``weights`` (.pth/.wts path, state_dict or RetinaFace) to ``output`` atomically; return its path.

    ``input_size`` (W, H) fixes the input shape (batch 1) unless ``dynamic`` is true. RetinaFaceError when the
    ``onnx`` extra is missing (checked first), or for a bad opset or output.
    """
    from retinaface_trt.extras import require

    require("onnx", "onnx", "export-onnx")   # torch.onnx.export needs it too, and would fail with a traceback
    check_opset(opset)
    output = check_writable(output, force)
    sha = None
    if isinstance(weights, (str, os.PathLike)):
        from wts_export.weights import sha256_file
        sha = sha256_file(weights) if Path(weights).is_file() else None
    model = torch_model(weights)
    proto = finish_model(onnx_bytes(model, input_size, dynamic, opset), model.cfg.name, sha, simplify)
    write_bytes_atomic(output, proto.SerializeToString(), force=True)
    return output


def model_backbone(proto) -> str | None:
    """The ``retinaface.backbone`` metadata of an ONNX ModelProto, or None for a file from elsewhere."""
    return next((p.value for p in proto.metadata_props if p.key == BACKBONE_KEY), None)


def read_model_facts(path: str | os.PathLike) -> tuple[bytes, dict]:
    """An exported model's bytes and facts: ``backbone``, ``weights_sha256`` ("" if unknown), ``input_shape``
    ([N, 3, H, W], None where dynamic). RetinaFaceError for a file ``export-onnx`` did not write."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise RetinaFaceError(f"ONNX model {path} not found; write one with `retinaface-trt export-onnx`")
    data = path.read_bytes()
    try:
        proto = onnx.load_from_string(data)
    except Exception as error:   # noqa: BLE001 - protobuf raises several types for a damaged file
        raise RetinaFaceError(f"{path} is not a readable ONNX model ({error}); re-export it") from None
    backbone = model_backbone(proto)
    names = ([i.name for i in proto.graph.input], [o.name for o in proto.graph.output])
    if backbone is None or names != ([INPUT_NAME], list(OUTPUT_NAMES)):
        raise RetinaFaceError(f"{path} is not a RetinaFace model from `retinaface-trt export-onnx` (expected input "
                              f"'{INPUT_NAME}', outputs {', '.join(OUTPUT_NAMES)} and '{BACKBONE_KEY}' metadata; "
                              f"found {names[0]}, {names[1]}, backbone {backbone}); re-export it")
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    shape = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    sha = next((p.value for p in proto.metadata_props if p.key == SHA256_KEY), "")
    return data, {"backbone": backbone, "weights_sha256": sha, "input_shape": shape}
