"""Every difference between TensorRT 8.6, 10.x and 11.x that the project depends on, in one place.

All functions take the ``trt`` module as their first argument (the installed ``tensorrt``, or the real
bindings of one version in the conformance tests) and never import TensorRT themselves, except
:func:`import_tensorrt`.

How versions are told apart: what a version *can express* is an explicit fact of its major version
(:data:`VERSION_FACTS`, from TENSORRT_API.md §1.1, §1.2), never guessed from which names exist, so a
future release is refused with a clear message instead of silently building something else (an fp32 engine
labelled fp16, for example). Names that exist only in some versions are touched only inside an
``if hasattr(OBJ, "NAME")`` branch, whose else-branch fails loudly: the conformance scan
(``tests/conformance``) recognises exactly that form of guard.

=========  ================================  ==============================================================
version    network creation flags            FP16
=========  ================================  ==============================================================
8.6        ``1 << EXPLICIT_BATCH``           weak typing: ``BuilderFlag.FP16``
10.x       ``1 << STRONGLY_TYPED`` (opt-in)  strongly typed graph; or weak typing + ``BuilderFlag.FP16``
11.x       ``0`` (always strongly typed)     strongly typed graph only (``BuilderFlag.FP16`` is removed)
=========  ================================  ==============================================================

"Strongly typed graph" means the network itself casts the float32 input to float16, carries float16
weights and casts the outputs back to float32 (``populate_network(..., half=True)``). An ONNX model is
float32, so its FP16 build needs weak typing: 8.6 and 10.x only.

INT8 (docs/int8.md), hand-built network only:

=========  =======================================================  =============================================
version    explicit route (Q/DQ layers, the project's scales)       implicit route (TensorRT's calibrator)
=========  =======================================================  =============================================
8.6        weak typing + ``BuilderFlag.INT8`` (required for any    weak typing + ``BuilderFlag.INT8`` +
           quantization); two-argument ``add_quantize``             ``IInt8EntropyCalibrator2``
10.x       ``1 << STRONGLY_TYPED``, ``add_quantize(x, s, int8)``;   as 8.6 (deprecated since 10.1)
           no precision flag ("should not be specified")
11.x       strongly typed as 10.x                                   refused: calibrators were removed in 11.0
=========  =======================================================  =============================================

The float layers of an INT8 engine are float32 with TF32 cleared, as the executor that measures them computes.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from retinaface_trt.errors import RetinaFaceError
from retinaface_trt.extras import install_hint
from runtime.calibration import ROUTES

log = logging.getLogger("retinaface_trt.tensorrt")

INSTALL_COMMAND = (f"{install_hint('tensorrt')} (or `pip install tensorrt-cu12` / `tensorrt-cu13` to "
                   "match your CUDA)")
HARDWARE_COMPATIBILITY = ("none", "ampere+", "same-cc")


def import_tensorrt(without: str = ""):
    """Return the installed ``tensorrt`` module, or raise RetinaFaceError saying how to install it.

    ``without`` says what the current command can do without TensorRT (appended to the message), e.g.
    "`--backend torch` runs the network with PyTorch"; empty when nothing can.
    """
    try:
        import tensorrt
    except ImportError as error:
        tail = f"; {without}" if without else ""
        raise RetinaFaceError(f"TensorRT is not installed ({error}); install it with {INSTALL_COMMAND}{tail}") from None
    return tensorrt


def version_tuple(version: str) -> tuple[int, ...]:
    """"10.16.1.11" → (10, 16, 1, 11); non-numeric parts end the tuple."""
    parts = []
    for part in str(version).split("."):
        if not part.isdigit():
            break
        parts.append(int(part))
    return tuple(parts)


def major_version(trt) -> int:
    """The major version of ``trt`` (8, 10, 11, ...), from ``trt.__version__``."""
    return version_tuple(trt.__version__)[0]


@dataclass(frozen=True)
class VersionFacts:
    """What one TensorRT major version can express (TENSORRT_API.md §1.1, §1.2)."""

    explicit_batch_flag: bool    # create_network needs 1 << EXPLICIT_BATCH (else: implicit batch)
    strong_typing: str           # "never" (8.6), "opt-in" (10.x: STRONGLY_TYPED), "always" (11.x)
    fp16_flag: bool              # BuilderFlag.FP16 exists (weak typing)
    calibrator: bool             # IInt8EntropyCalibrator2 and BuilderFlag.INT8 exist (implicit INT8)


VERSION_FACTS = {
    8: VersionFacts(explicit_batch_flag=True, strong_typing="never", fp16_flag=True, calibrator=True),
    10: VersionFacts(explicit_batch_flag=False, strong_typing="opt-in", fp16_flag=True, calibrator=True),
    11: VersionFacts(explicit_batch_flag=False, strong_typing="always", fp16_flag=False, calibrator=False),
}


def version_facts(trt) -> VersionFacts:
    """The facts of ``trt``'s major version; RetinaFaceError for a version the project does not know."""
    version = version_tuple(trt.__version__)
    if not version or version[0] not in VERSION_FACTS or version[:2] < (8, 6):
        raise RetinaFaceError(f"TensorRT {trt.__version__} is not a version this project builds for (8.6, 10.x, "
                              "11.x): how it expresses explicit batch and FP16 is unknown; install one of those "
                              f"with {INSTALL_COMMAND}")
    return VERSION_FACTS[version[0]]


@dataclass(frozen=True)
class PrecisionPlan:
    """How one build expresses its precision: network creation flags and what carries FP16 or INT8."""

    strongly_typed: bool         # the network is created strongly typed (or is so always, 11.x)
    half_graph: bool             # FP16 lives in the graph (populate_network(..., half=True))
    fp16_flag: bool              # FP16 is BuilderFlag.FP16 on a weakly typed network
    qdq_graph: bool = False      # INT8 lives in the graph: Q/DQ layers (explicit route)
    int8_flag: bool = False      # BuilderFlag.INT8 is set (8.6 explicit, and the implicit route)
    calibrator: bool = False     # TensorRT's entropy calibrator chooses the scales (implicit route)


def precision_plan(trt, precision: str, onnx: bool = False, int8_route: str = "explicit") -> PrecisionPlan:
    """The plan for ``precision`` ("fp32"/"fp16"/"int8") of the hand-built network, or of an ONNX model (float32).

    Hand-built: 8.6 weak + FP16 flag; 10.x and 11.x strongly typed with an FP16 graph. ONNX: float32
    strongly typed where possible; FP16 by weak typing + FP16 flag on 8.6 and 10.x; refused on 11.x.
    INT8 (hand-built only): see the module docstring.
    """
    from network.config import check_precision

    check_precision(precision)
    if precision == "int8":
        return _int8_plan(trt, onnx, int8_route)
    facts, half = version_facts(trt), precision == "fp16"
    if facts.strong_typing == "never":
        return PrecisionPlan(strongly_typed=False, half_graph=False, fp16_flag=half)
    if not (half and onnx):
        return PrecisionPlan(strongly_typed=True, half_graph=half, fp16_flag=False)
    if facts.fp16_flag:
        return PrecisionPlan(strongly_typed=False, half_graph=False, fp16_flag=True)
    raise RetinaFaceError(f"TensorRT {trt.__version__} builds an ONNX model only in the precision of the file "
                          "(float32 here; weak typing and BuilderFlag.FP16 were removed in 11.0); use "
                          "--precision fp32, or build FP16 from the weights (without --onnx)")


def _int8_plan(trt, onnx: bool, route: str) -> PrecisionPlan:
    if onnx:
        raise RetinaFaceError("INT8 is built from the weights, where the hand-built network carries the Q/DQ layers (or "
                              "TensorRT's calibrator gets the project's pre-processing); drop --onnx")
    if route not in ROUTES:
        raise RetinaFaceError(f"the INT8 route must be one of {', '.join(ROUTES)}, not {route!r}")
    facts = version_facts(trt)
    if route == "implicit":
        if not facts.calibrator:
            raise RetinaFaceError(f"TensorRT {trt.__version__} has no INT8 calibrator (implicit quantization was removed "
                                  "in 11.0); use --int8-route explicit, whose Q/DQ layers every version builds")
        return PrecisionPlan(strongly_typed=False, half_graph=False, fp16_flag=False, int8_flag=True, calibrator=True)
    strong = facts.strong_typing != "never"
    return PrecisionPlan(strongly_typed=strong, half_graph=False, fp16_flag=False, qdq_graph=True, int8_flag=not strong)


def network_flags(trt, plan: PrecisionPlan) -> int:
    """The ``flags`` for ``Builder.create_network``: explicit batch on 8.6, STRONGLY_TYPED on 10.x when
    the plan is strongly typed, 0 on 11.x (always strongly typed; its STRONGLY_TYPED flag is deprecated)."""
    facts = version_facts(trt)
    if facts.explicit_batch_flag:
        if hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH"):
            return 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
        raise RetinaFaceError(f"TensorRT {trt.__version__} lacks NetworkDefinitionCreationFlag.EXPLICIT_BATCH")
    if facts.strong_typing == "opt-in" and plan.strongly_typed:
        if hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
            return 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
        raise RetinaFaceError(f"TensorRT {trt.__version__} lacks NetworkDefinitionCreationFlag.STRONGLY_TYPED")
    return 0


def set_precision(trt, config, plan: PrecisionPlan, precision: str, constrained: bool = False) -> None:
    """Configure ``config`` (IBuilderConfig): TF32 off for fp32 and int8 (so float layers match float32 references),
    ``BuilderFlag.FP16`` / ``INT8`` where the plan needs them (an error, never a no-op, where they do not exist),
    and precision constraints obeyed where layers are kept in float32 (``constrained``, the implicit route)."""
    if precision in ("fp32", "int8"):
        config.clear_flag(trt.BuilderFlag.TF32)
    if plan.int8_flag:
        if hasattr(trt.BuilderFlag, "INT8"):
            config.set_flag(trt.BuilderFlag.INT8)
        else:
            raise RetinaFaceError(f"TensorRT {trt.__version__} has no BuilderFlag.INT8: it cannot build this INT8 "
                                  "network; use --int8-route explicit")
    if plan.calibrator or constrained:       # the layers kept in float32 (keep_float32) must stay so
        if hasattr(trt.BuilderFlag, "OBEY_PRECISION_CONSTRAINTS"):
            config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
        else:
            raise RetinaFaceError(f"TensorRT {trt.__version__} has no precision constraints; use --int8-route explicit")
    if plan.fp16_flag:
        if hasattr(trt.BuilderFlag, "FP16"):
            config.set_flag(trt.BuilderFlag.FP16)
        else:
            raise RetinaFaceError(f"TensorRT {trt.__version__} has no BuilderFlag.FP16: it cannot build this "
                                  "network in FP16; use --precision fp32")


def postprocess_constrained(plan: PrecisionPlan, postprocess: bool) -> bool:
    """Whether the post-processing inside a network of ``plan`` must be kept in float32 by precision constraints:
    on a weakly typed network with FP16 or INT8 allowed, where TensorRT may otherwise run it in fp16 (the
    compaction key K − k is not exact in fp16 above 2048; boxes would be rounded to 0.5 px or worse)."""
    return postprocess and not plan.strongly_typed and (plan.fp16_flag or plan.int8_flag)


_FLOAT_TYPES = ("FLOAT", "HALF")     # trt.DataType names of the float tensors a weakly typed network carries


def keep_float32(trt, layer) -> bool:
    """Constrain the float computation of ``layer`` (weakly typed network) to float32; True if it has any.

    Every float output gets type float32; the layer's precision is set only where every input is float too
    (a precision converts the inputs: never on shape layers, casts from integers, NMS, or gathers and scatters
    with integer indices, whose integer tensors must stay integers). A layer without float output is left alone.
    """
    if hasattr(trt.BuilderFlag, "OBEY_PRECISION_CONSTRAINTS"):     # weak typing: 8.6 and 10.x only
        outputs = [i for i in range(layer.num_outputs) if layer.get_output(i).dtype.name in _FLOAT_TYPES]
        if not outputs:
            return False
        inputs = (layer.get_input(i) for i in range(layer.num_inputs))
        if all(tensor is None or tensor.dtype.name in _FLOAT_TYPES for tensor in inputs):
            layer.precision = trt.float32
        for index in outputs:
            layer.set_output_type(index, trt.float32)
        return True
    raise RetinaFaceError(f"TensorRT {trt.__version__} has no per-layer precision (strong typing only)")


def keep_postprocess_float(trt, network, prefix: str = "postprocess.") -> list[str]:
    """:func:`keep_float32` on every layer of ``network`` named ``prefix``… (the in-network post-processing);
    return the names of those constrained."""
    if hasattr(trt.BuilderFlag, "OBEY_PRECISION_CONSTRAINTS"):     # weak typing: 8.6 and 10.x
        layers = (network.get_layer(i) for i in range(network.num_layers))
        return [layer.name for layer in layers if layer.name.startswith(prefix) and keep_float32(trt, layer)]
    raise RetinaFaceError(f"TensorRT {trt.__version__} has no per-layer precision (strong typing only)")


def keep_layers_float(trt, network, patterns=()) -> list[str]:
    """Constrain to float32 the layers of a weakly typed ``network`` (implicit INT8) that ``network.quantize``
    keeps (its DEFAULT_KEEP and ``patterns``, ``!`` negations included, on the layer names: module paths), with the
    BatchNorm scale and activation that follow each of them; return their names. Only float computation is
    constrained (:func:`keep_float32`): a matching shape layer or integer gather is left as it is.
    RetinaFaceError for a pattern that matches no layer, and on a version without per-layer precision (11.x:
    strong typing only)."""
    from network.quantize import QuantizationPlan, check_keep_patterns

    plan, kept, outputs, names = QuantizationPlan({}, tuple(patterns)), [], set(), []
    if hasattr(trt.BuilderFlag, "OBEY_PRECISION_CONSTRAINTS"):     # weak typing: 8.6 and 10.x
        for index in range(network.num_layers):
            layer = network.get_layer(index)
            names.append(layer.name)
            follows = layer.type in (trt.LayerType.SCALE, trt.LayerType.ACTIVATION) \
                and layer.get_input(0).name in outputs
            if (plan.kept(layer.name) or follows) and keep_float32(trt, layer):
                kept.append(layer.name)
                outputs.add(layer.get_output(0).name)
    else:
        raise RetinaFaceError(f"TensorRT {trt.__version__} has no per-layer precision (strong typing only); use "
                              "--int8-route explicit")
    check_keep_patterns(patterns, names)
    return kept


def attach_calibrator(trt, builder, config, calibrator, shape) -> None:
    """Give ``config`` TensorRT's calibrator and a calibration profile of ``shape`` (NCHW, min = opt = max):
    TensorRT calibrates a network with dynamic dimensions at a profile's optimum, one batch at a time."""
    from network import INPUT_NAME

    profile = builder.create_optimization_profile()
    profile.set_shape(INPUT_NAME, shape, shape, shape)
    if hasattr(trt, "IInt8EntropyCalibrator2"):          # 8.6 and 10.x
        config.int8_calibrator = calibrator
        accepted = config.set_calibration_profile(profile)
    else:
        raise RetinaFaceError(f"TensorRT {trt.__version__} has no INT8 calibrator; use --int8-route explicit")
    if not accepted:
        raise RetinaFaceError(f"TensorRT refused the calibration profile {shape} (its log above says why)")


def set_workspace(trt, config, workspace_bytes: int) -> None:
    """Limit the builder's scratch memory to ``workspace_bytes`` (all versions: memory pool WORKSPACE)."""
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_bytes))


def set_portability(trt, config, version_compatible: bool, hardware: str, device_cc: str) -> None:
    """Version compatibility (lean runtime embedded in the plan) and the hardware compatibility level.

    ``hardware``: "none" (this GPU's architecture only), "ampere+" (any Ampere or newer GPU; must be built on
    one) or "same-cc" (GPUs of this compute capability; TensorRT 10.10+). Both are always set explicitly.
    """
    if version_compatible:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
        config.clear_flag(trt.BuilderFlag.EXCLUDE_LEAN_RUNTIME)   # the plan carries its own lean runtime
    else:
        config.clear_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
    config.hardware_compatibility_level = hardware_level(trt, hardware, device_cc)


def hardware_level(trt, hardware: str, device_cc: str):
    """The ``trt.HardwareCompatibilityLevel`` member for ``hardware``; RetinaFaceError where it cannot apply."""
    if hardware == "none":
        return trt.HardwareCompatibilityLevel.NONE
    if hardware == "ampere+":
        if version_tuple(device_cc) < (8, 0):
            raise RetinaFaceError(f"--hardware-compatibility ampere+ must be built on an Ampere or newer GPU "
                                  f"(compute capability 8.0+), this one has {device_cc}; build on such a GPU "
                                  "or without the option")
        return trt.HardwareCompatibilityLevel.AMPERE_PLUS
    if hardware == "same-cc":
        if hasattr(trt.HardwareCompatibilityLevel, "SAME_COMPUTE_CAPABILITY"):
            return trt.HardwareCompatibilityLevel.SAME_COMPUTE_CAPABILITY
        raise RetinaFaceError(f"TensorRT {trt.__version__} has no same-compute-capability level (added in "
                              "10.10); use --hardware-compatibility ampere+ or a newer TensorRT")
    raise RetinaFaceError(f"--hardware-compatibility must be one of {', '.join(HARDWARE_COMPATIBILITY)}, "
                          f"not {hardware!r}")


def attach_timing_cache(config, cache_bytes: bytes, where: str = "the timing cache"):
    """Create a timing cache from ``cache_bytes`` (b"" for a new one), attach it with mismatches refused,
    and return it. A cache TensorRT does not accept (another GPU or version, or damaged) is discarded
    with a warning naming ``where``, and a new one is used instead; nothing is ignored silently."""
    cache = _accepted_cache(config, cache_bytes) if cache_bytes else None
    if cache is not None:
        return cache
    if cache_bytes:
        log.warning("%s was not accepted by TensorRT (made by another GPU or TensorRT version, or damaged); "
                    "discarding it and timing from scratch", where)
    cache = _accepted_cache(config, b"")
    if cache is None:
        raise RetinaFaceError("TensorRT could not create an empty timing cache (its log above says why)")
    return cache


def _accepted_cache(config, cache_bytes: bytes):
    """The attached cache, or None when TensorRT returns None, refuses it, or raises on the bytes."""
    try:
        cache = config.create_timing_cache(cache_bytes)
    except (RuntimeError, TypeError, ValueError):
        return None
    if cache is None or not config.set_timing_cache(cache, False):    # ignore_mismatch=False: refuse them
        return None
    return cache


def serialize_timing_cache(config) -> bytes:
    """The current timing cache of ``config`` as bytes."""
    return bytes(config.get_timing_cache().serialize())


_SEVERITY_LEVELS = {"INTERNAL_ERROR": logging.CRITICAL, "ERROR": logging.ERROR, "WARNING": logging.WARNING,
                    "INFO": logging.INFO, "VERBOSE": logging.DEBUG}
_LOGGERS: dict = {}


def tensorrt_logger(trt):
    """The one ``trt.ILogger`` of this process for ``trt``, created on first use and kept forever.

    TensorRT keeps a single logger pointer for the whole process (the first one given to a Builder or
    Runtime), so every Builder and Runtime must get the same object, and it must outlive them all.
    """
    if id(trt) not in _LOGGERS:
        _LOGGERS[id(trt)] = (trt, make_logger(trt))      # the module is kept too, so its id stays unique
    return _LOGGERS[id(trt)][1]


def make_logger(trt, target: logging.Logger = log):
    """A new ``trt.ILogger`` forwarding TensorRT's messages to ``target`` (use :func:`tensorrt_logger`)."""

    class LoggingBridge(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)

        def log(self, severity, msg):
            target.log(_SEVERITY_LEVELS.get(severity.name, logging.INFO), "%s", msg)

    return LoggingBridge()


def attach_progress(trt, config, report=log.info) -> None:
    """Show build progress: a ``trt.IProgressMonitor`` where it exists (10.x, 11.x), else one line."""
    if hasattr(trt, "IProgressMonitor"):
        config.progress_monitor = _progress_monitor(trt.IProgressMonitor, report)
    else:
        report("building the engine (TensorRT %s reports no progress; this takes a minute)", trt.__version__)


def _progress_monitor(base: type, report):
    """An instance of a ``base`` (``trt.IProgressMonitor``) subclass that logs through ``report``."""

    class ProgressLog(base):
        """Reports each top-level phase and every 10% of its steps; never cancels the build."""

        def __init__(self):
            base.__init__(self)
            self._steps = {}
            self._start = time.monotonic()

        def phase_start(self, phase_name, parent_phase, num_steps):
            self._steps[phase_name] = max(int(num_steps), 1)
            if parent_phase is None:
                report("build phase %s (%d steps)", phase_name, num_steps)

        def step_complete(self, phase_name, step):
            total = self._steps.get(phase_name, 1)
            if total >= 10 and (step + 1) % max(total // 10, 1) == 0:
                report("  %s: %d/%d (%.0f s)", phase_name, step + 1, total, time.monotonic() - self._start)
            return True

        def phase_finish(self, phase_name):
            self._steps.pop(phase_name, None)

    return ProgressLog()
