"""Run inside a subprocess with ONE version of the real TensorRT bindings importable as ``tensorrt_bindings``.

    python -m tests.conformance.probe OUT.json WEIGHTS.pth

Writes JSON: ``version``; ``surface`` (every class → member → kind, signatures' argument names,
settable; every enum → members; module-level names); and per scenario (``builder``, ``runtime``,
``network``, ``executor``) the ``problems`` found and the TensorRT names ``used``. The scenarios run the
project's own code against the real module (enums, Weights, Dims, ILogger, IProgressMonitor are
real) with :mod:`tests.conformance.checked` stand-ins for the objects that need the native library.
"""

from __future__ import annotations

import inspect
import json
import sys
import tempfile
import traceback
import types
from pathlib import Path

import tensorrt_bindings as trt

from tests.conformance.checked import Checked, Context, Shim, factory
from tests.conformance.signatures import property_type, signatures


def surface() -> dict:
    classes, enums, module = {}, {}, {}
    for name, obj in vars(trt).items():
        if name.startswith("_"):
            continue
        module[name] = type(obj).__name__
        if isinstance(obj, type):
            _describe(name, obj, classes, enums)
    return {"classes": classes, "enums": enums, "module": module}


def _describe(name: str, cls: type, classes: dict, enums: dict) -> None:
    if hasattr(cls, "__members__"):
        enums[name] = sorted(cls.__members__)
    members = {}
    for attr in dir(cls):
        if attr.startswith("__") and attr != "__init__":
            continue
        member = getattr(cls, attr)
        if isinstance(member, type):
            _describe(f"{name}.{attr}", member, classes, enums)
        elif isinstance(member, property):
            members[attr] = {"kind": "property", "type": property_type(member), "settable": member.fset is not None}
        elif callable(member):
            members[attr] = {"kind": "method", "signatures": [
                [[p.name, p.default] for p in s.params] for s in signatures(member)]}
        else:
            members[attr] = {"kind": "value"}
    classes[name] = members


RUNTIME_RETURNS = {
    "ICudaEngine.num_io_tensors": lambda: 4,
    "ICudaEngine.get_tensor_name": lambda i: ["input", "loc", "conf", "landms"][i],
    "ICudaEngine.get_tensor_mode": lambda n: trt.TensorIOMode.INPUT if n == "input" else trt.TensorIOMode.OUTPUT,
    "ICudaEngine.get_tensor_dtype": lambda n: trt.DataType.FLOAT,
    "ICudaEngine.get_tensor_profile_shape": lambda n, i: [trt.Dims((1, 3, 640, 640))] * 2 + [trt.Dims((8, 3, 640, 640))],
    "IExecutionContext.get_tensor_shape": lambda n: trt.Dims((2, 16800, {"loc": 4, "conf": 2, "landms": 10}[n])),
    "EngineInspector.get_engine_information": lambda fmt: "{}",
}
BUILD_RETURNS = {
    "Builder.build_serialized_network": lambda network, config: b"serialized plan",
    "ITimingCache.serialize": lambda: b"timing cache",
}


def scenario_runtime(ctx: Context) -> None:
    from runtime.backends.tensorrt.compat import make_logger
    from runtime.backends.tensorrt.session import EngineSession

    shim = Shim(ctx, {"Runtime": factory(ctx, "Runtime")})
    session = EngineSession(shim, b"serialized plan", make_logger(shim))
    shapes = session.set_input_shape("input", (2, 3, 640, 640))
    session.execute({"input": 1 << 20, **{n: (i + 2) << 20 for i, n in enumerate(shapes)}}, 7)
    session.profile_shapes("input")
    session.layer_information(shim)
    session.close()


def scenario_builder(ctx: Context, populate, weights, cfg, network_factory=None) -> None:
    from runtime.backends.tensorrt.build import BuildOptions, build_serialized
    from runtime.backends.tensorrt.compat import make_logger

    shim = Shim(ctx, {"Builder": factory(ctx, "Builder")})
    logger = make_logger(shim)
    override_problems(ctx, logger, trt.ILogger)
    logger.log(trt.ILogger.Severity.WARNING, "conformance probe")
    if network_factory is not None:
        ctx.returns["Builder.create_network"] = lambda flags=0: Checked(ctx, "INetworkDefinition", network_factory())
    else:    # no network code yet: a made-up network with three outputs, so reading them is exercised
        ctx.returns.update({"INetworkDefinition.num_outputs": lambda: 3,
                            "ITensor.name": lambda: "loc", "ITensor.shape": lambda: trt.Dims((-1, 16800, 4))})
    with tempfile.TemporaryDirectory() as tmp:
        for precision in ("fp32", "fp16"):
            for sizes in ({}, {"min_size": (320, 320), "max_size": (1024, 1024)}):
                options = BuildOptions(precision=precision, timing_cache=Path(tmp) / "timing.cache", **sizes)
                build_serialized(shim, weights, cfg, options, logger, populate=populate)


def scenario_onnx(ctx: Context) -> None:
    """The ONNX-parser route (runtime.backends.tensorrt.build_onnx): a refused model (errors read), then a parsed one built."""
    from runtime.backends.tensorrt.build import BuildOptions
    from runtime.backends.tensorrt.compat import make_logger
    from runtime.backends.tensorrt.build_onnx import build_serialized_from_onnx
    from retinaface_trt.errors import RetinaFaceError

    shim = Shim(ctx, {"Builder": factory(ctx, "Builder"), "OnnxParser": factory(ctx, "OnnxParser")})
    logger = make_logger(shim)
    ctx.returns.update({"OnnxParser.parse": lambda data: False, "OnnxParser.num_errors": lambda: 1,
                        "OnnxParser.get_error": lambda index: Checked(ctx, "ParserError")})
    try:
        build_serialized_from_onnx(shim, b"onnx model", BuildOptions(), logger)
        ctx.problems.append("a refused ONNX model did not raise RetinaFaceError")
    except RetinaFaceError:
        pass
    ctx.returns["OnnxParser.parse"] = lambda data: True
    with tempfile.TemporaryDirectory() as tmp:
        options = BuildOptions(timing_cache=Path(tmp) / "timing.cache", min_size=(320, 320), max_size=(1024, 1024))
        build_serialized_from_onnx(shim, b"onnx model", options, logger)


def scenario_progress(ctx: Context) -> None:
    from runtime.backends.tensorrt.compat import attach_progress

    target = types.SimpleNamespace(progress_monitor=None)
    attach_progress(Shim(ctx, {}), Checked(ctx, "IBuilderConfig", target), report=lambda *a: None)
    if hasattr(trt, "IProgressMonitor"):
        monitor = target.progress_monitor
        override_problems(ctx, monitor, trt.IProgressMonitor)
        monitor.phase_start("Building", None, 20)
        [monitor.step_complete("Building", s) for s in range(20)]
        monitor.phase_finish("Building")


class _Recorder:
    """A target that records the calls made on it: [(method, [argument reprs])]."""

    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        return lambda *args: self.calls.append([name, [getattr(a, "name", repr(a)) for a in args]])


def compat_facts(ctx: Context) -> dict:
    """What runtime.backends.tensorrt.compat decides for this version: creation flags and the precision calls."""
    from runtime.backends.tensorrt import compat as trt_compat

    shim = Shim(ctx, {})
    facts = {"network_flags": trt_compat.network_flags(shim), "strong_typing": trt_compat.uses_strong_typing(shim),
             "major": trt_compat.major_version(shim), "precision_calls": {}}
    for precision in ("fp32", "fp16"):
        recorder = _Recorder()
        trt_compat.set_precision(shim, Checked(ctx, "IBuilderConfig", recorder), precision)
        facts["precision_calls"][precision] = recorder.calls
    return facts


def override_problems(ctx: Context, obj, base: type) -> None:
    """Each method ``obj``'s class overrides must exist on ``base`` with the same argument names."""
    for name, func in vars(type(obj)).items():
        if name.startswith("_") or not callable(func):
            continue
        real = getattr(base, name, None)
        ctx.used.add(f"{base.__name__}.{name}")
        ours = list(inspect.signature(func).parameters)[1:]
        theirs = [s.names() for s in signatures(real)] if real is not None else []
        if ours not in theirs:
            ctx.problems.append(f"{type(obj).__name__}.{name}{tuple(ours)} overrides nothing in "
                                f"{base.__name__} of TensorRT {trt.__version__} (real: {theirs})")


def scenario_executor(ctx: Context, executor) -> None:
    """Every public name of the executor's namespace exists in this version, with the real argument names
    and defaults, enum members and class members."""
    for name in sorted(n for n in dir(executor) if not n.startswith("_")):
        ours, real = getattr(executor, name), getattr(trt, name, None)
        ctx.used.add(f"trt.{name}")
        if real is None:
            ctx.problems.append(f"executor defines trt.{name}, absent from TensorRT {trt.__version__}")
        elif isinstance(ours, type) and isinstance(real, type):
            _compare_class(ctx, name, ours, real)
        elif callable(ours) and not isinstance(ours, type):
            _compare_callable(ctx, f"trt.{name}", ours, real)


def _compare_class(ctx: Context, name: str, ours: type, real: type) -> None:
    if hasattr(real, "__members__"):
        extra = sorted(set(getattr(ours, "__members__", {})) - set(real.__members__))
        if extra:
            ctx.problems.append(f"executor enum {name} has members {extra} that TensorRT {trt.__version__} lacks")
        return
    for attr in sorted(a for a in vars(ours) if not a.startswith("_") or a == "__init__"):
        member, real_member = vars(ours)[attr], getattr(real, attr, None)
        if real_member is None:
            ctx.problems.append(f"executor {name}.{attr} is absent from the real {name}")
        elif isinstance(member, property) and not isinstance(real_member, property):
            ctx.problems.append(f"executor {name}.{attr} is a property, the real one is not")
        elif inspect.isfunction(member) and not isinstance(real_member, property):
            _compare_callable(ctx, f"{name}.{attr}", member, real_member, skip_self=True)
        elif isinstance(real_member, property) and isinstance(member, property):
            if member.fset is not None and real_member.fset is None:
                ctx.problems.append(f"executor {name}.{attr} is settable, the real one is read-only")


def _compare_callable(ctx: Context, where: str, ours, real, skip_self: bool = False) -> None:
    try:
        params = list(inspect.signature(ours).parameters.values())[int(skip_self):]
    except (TypeError, ValueError):
        return
    if any(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params):
        return                      # a pass-through (*args, **kwargs): nothing of its own to compare
    mine = [(p.name, p.default is not p.empty) for p in params]
    theirs = [[(p.name, p.default is not None) for p in s.params] for s in signatures(real)]
    if theirs and mine not in theirs:
        ctx.problems.append(f"executor {where}{tuple(n for n, _ in mine)} (defaults {[n for n, d in mine if d]}) "
                            f"matches no real signature: {[[n for n, _ in t] for t in theirs]}")


def _network_code():
    """(populate_network, executor namespace) from the project, or (None, None) before they exist."""
    try:
        from network import populate_network
        from network.executor import trt as executor
    except ImportError:
        return None, None
    return populate_network, executor


def _load_weights(path: str) -> dict:
    try:
        from wts_export.weights import load_weights
    except ImportError:      # before the .wts helper lands: the checkpoint's float32 arrays directly
        import torch

        state = torch.load(path, map_location="cpu", weights_only=True)
        return {k: v.numpy() for k, v in state.items() if not k.endswith("num_batches_tracked")}
    return load_weights(path)


def run(weights_path: str) -> dict:
    from network.config import config_for_weights

    result = {"version": trt.__version__, "surface": surface(), "scenarios": {}}
    populate, executor = _network_code()
    weights = _load_weights(weights_path)
    cfg = config_for_weights(weights)
    make_net = (lambda: executor.Builder(executor.Logger()).create_network(0)) if executor else None
    scenarios = {
        "runtime": scenario_runtime,
        "progress": scenario_progress,
        "onnx": scenario_onnx,
        "builder": lambda ctx: scenario_builder(ctx, populate or (lambda *a, **k: None), weights, cfg, make_net),
    }
    if executor is not None:
        scenarios["executor"] = lambda ctx: scenario_executor(ctx, executor)
    facts_ctx = Context(trt)
    result["compat"] = compat_facts(facts_ctx)
    result["scenarios"]["compat"] = {"problems": facts_ctx.problems, "used": sorted(facts_ctx.used)}
    for name, body in scenarios.items():
        ctx = Context(trt, dict(RUNTIME_RETURNS, **BUILD_RETURNS))
        try:
            body(ctx)
        except Exception:          # noqa: BLE001 - reported, not hidden: the test fails on it
            ctx.problems.append("raised:\n" + traceback.format_exc())
        result["scenarios"][name] = {"problems": ctx.problems, "used": sorted(ctx.used)}
    result["network_checked"] = populate is not None
    return result


if __name__ == "__main__":
    Path(sys.argv[1]).write_text(json.dumps(run(sys.argv[2]), indent=1))
