"""Build a TensorRT engine from an ONNX model with TensorRT's ONNX parser (``build --onnx``).

The sibling of :mod:`runtime.backends.tensorrt.build` (the hand-built route): the same
:class:`~runtime.backends.tensorrt.build.BuildOptions`, the same builder configuration (precision,
workspace, portability, timing cache, one optimization profile), the same sidecar, plus
``"source": "onnx"`` and ``onnx_sha256``. Like the rest of the TensorRT code it takes the ``trt``
module as a parameter, so the conformance tests can run it against the real bindings of each version.

Parser errors become one RetinaFaceError line per error with the node index, and, where the bindings
have them (10.x, 11.x), the node's name and operator.

FP16: an ONNX model from ``export-onnx`` is float32. TensorRT 8.6 and 10.x lower it to FP16 on a weakly
typed network with ``BuilderFlag.FP16``; 11.x has no weak typing, so ``fp16`` is refused there
(:func:`runtime.backends.tensorrt.compat.precision_plan`). In-network post-processing is not available on
this route (it is added by the hand-built network).
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

from retinaface_trt.errors import RetinaFaceError
from runtime.backends.tensorrt import compat as trt_compat
from runtime.backends.tensorrt import sidecar
from runtime.backends.tensorrt.build import BuildOptions, prepare_output, serialize_network, sidecar_info, write_engine


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


def build_serialized_from_onnx(trt, data: bytes, options: BuildOptions, device: sidecar.DeviceInfo) -> tuple[bytes, dict]:
    """Parse and build on the current CUDA device; return (plan bytes, {"outputs", "input_shape"}) as
    :func:`runtime.backends.tensorrt.build.build_serialized` does."""
    if options.postprocess is not None:
        raise RetinaFaceError("--with-postprocess is built into the hand-built network only; build from the "
                              "weights (without --onnx)")
    plan = trt_compat.precision_plan(trt, options.precision, onnx=True)
    logger = trt_compat.tensorrt_logger(trt)
    builder = trt.Builder(logger)
    network = builder.create_network(trt_compat.network_flags(trt, plan))
    parser = parse_onnx(trt, network, data, logger)
    built = serialize_network(trt, builder, network, options, plan, device, "the engine from the ONNX model")
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
                           force: bool = False, trt=None, device_index: int = 0) -> Path:
    """Build ``onnx_path`` on CUDA device ``device_index`` into ``engine_path`` plus its sidecar."""
    from wts_export.onnx_export import read_model_facts

    options.validate()
    engine_path = prepare_output(engine_path, force)
    data, facts = read_model_facts(onnx_path)
    options = options_for_model(options, facts["input_shape"])
    options.validate()
    trt = trt or trt_compat.import_tensorrt()
    device = sidecar.current_device(device_index)
    with sidecar.device_scope(device_index):
        plan, built = build_serialized_from_onnx(trt, data, options, device)
    info = sidecar_info(trt, options, built, facts["backbone"], facts["weights_sha256"], plan, device)
    return write_engine(engine_path, plan, {**info, "source": "onnx", "onnx_sha256": hashlib.sha256(data).hexdigest()})
