"""Build a TensorRT engine from an ONNX model with TensorRT's ONNX parser (``build --onnx``).

The counterpart of :mod:`runtime.backends.tensorrt.build` (the hand-built route): same :class:`BuildOptions`, same
builder configuration (precision, workspace, timing cache, one optimization profile), same sidecar, plus
``"source": "onnx"`` and ``onnx_sha256``. Like the rest of the TensorRT code it takes the ``trt``
module as a parameter, so the conformance tests can run it against the real bindings of each version.

Parser errors become one RetinaFaceError line per error with the node index, and, where the bindings
have them (10.x, 11.x), the node's name and operator.

FP16: an ONNX model from ``export-onnx`` is float32. TensorRT 8.6 lowers it with the FP16 builder flag;
on 10.x and 11.x (strongly typed networks) the precision is that of the file, so ``fp16`` is refused there.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from pathlib import Path

from retinaface_trt.errors import RetinaFaceError
from retinaface_trt.fileio import check_writable, write_bytes_atomic
from runtime.backends.tensorrt import compat as trt_compat
from runtime.backends.tensorrt.build import BuildOptions, serialize_network, sidecar_info
from runtime.backends.tensorrt.sidecar import DeviceInfo, write_sidecar

log = logging.getLogger("retinaface_trt")


def parser_error_lines(trt, parser) -> list[str]:
    """One line per error recorded by ``parser`` (a ``trt.OnnxParser``): where it happened and why."""
    named = hasattr(trt.ParserError, "node_name")      # 10.x and 11.x name the node and its operator
    return [_error_line(parser.get_error(index), named) for index in range(parser.num_errors)]


def _error_line(error, named: bool) -> str:
    where = f"node {error.node()}"
    if named and hasattr(error, "node_name"):
        where += f" '{error.node_name()}' ({error.node_operator()})"
    return f"{where}: {error.desc()}"


def parse_onnx(trt, network, data: bytes, logger):
    """Fill ``network`` from the serialized ONNX ``data``; return the parser (keep it until the build ends)."""
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(data):
        details = "; ".join(parser_error_lines(trt, parser)) or "no details given"
        raise RetinaFaceError(f"TensorRT's ONNX parser refused the model: {details}; re-export it with "
                              "`retinaface-trt export-onnx` (opset 17)")
    return parser


def build_serialized_from_onnx(trt, data: bytes, options: BuildOptions, logger) -> tuple[bytes, dict]:
    """Parse and build; return (plan bytes, {"outputs": {name: shape}, "input_shape": [...]}) as
    :func:`runtime.backends.tensorrt.build.build_serialized` does."""
    if options.precision == "fp16" and trt_compat.uses_strong_typing(trt):
        raise RetinaFaceError(f"TensorRT {trt.__version__} builds an ONNX model in the precision of the file "
                              "(float32 here); use --precision fp32, or build FP16 from the weights (without --onnx)")
    builder = trt.Builder(logger)
    network = builder.create_network(trt_compat.network_flags(trt))
    parser = parse_onnx(trt, network, data, logger)
    built = serialize_network(trt, builder, network, options, "the engine from the ONNX model")
    del parser   # the network refers to weights the parser owns: only now may it go
    return built


def options_for_model(options: BuildOptions, shape: list) -> BuildOptions:
    """Fit ``options`` to the ONNX input ``shape`` [N, 3, H, W] (ints fixed, None dynamic).

    A fixed batch sets the profile's batches; a fixed size must equal ``options.input_size`` and
    excludes ``min_size``/``max_size``.
    """
    batch, height, width = shape[0], shape[2], shape[3]
    if batch is not None:
        options = dataclasses.replace(options, min_batch=batch, opt_batch=batch, max_batch=batch)
    if height is None or width is None:
        return options
    if options.dynamic_size or tuple(options.input_size) != (width, height):
        raise RetinaFaceError(f"this ONNX model takes {width}x{height} inputs only, but the build asked for "
                              f"{options.input_size[0]}x{options.input_size[1]}"
                              f"{' with --min-size/--max-size' if options.dynamic_size else ''}; pass "
                              f"--input-size {width}x{height} without --min-size/--max-size, or export with --dynamic")
    return options


def build_engine_from_onnx(onnx_path: str | Path, engine_path: str | Path, options: BuildOptions = BuildOptions(),
                           force: bool = False, trt=None, device: DeviceInfo | None = None) -> Path:
    """Build ``onnx_path`` into ``engine_path`` plus its sidecar; return ``engine_path``."""
    from wts_export.onnx_export import read_model_facts
    from runtime.backends.tensorrt.device import current_device

    options.validate()
    engine_path = check_writable(engine_path, force)
    data, facts = read_model_facts(onnx_path)
    options = options_for_model(options, facts["input_shape"])
    options.validate()
    trt = trt or trt_compat.import_tensorrt()
    device = device or current_device()
    plan, built = build_serialized_from_onnx(trt, data, options, trt_compat.make_logger(trt))
    write_bytes_atomic(engine_path, plan, force=True)
    info = sidecar_info(trt, options, built, facts["backbone"], facts["weights_sha256"], plan, device)
    write_sidecar(engine_path, {**info, "source": "onnx", "onnx_sha256": hashlib.sha256(data).hexdigest()})
    return engine_path
