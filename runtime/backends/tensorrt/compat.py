"""Every difference between TensorRT 8.6, 10.x and 11.x that the project depends on, in one place.

All functions take the ``trt`` module as their first argument (the installed ``tensorrt``, or the real
bindings of one version in the conformance tests) and never import TensorRT themselves, except
:func:`import_tensorrt`.

How versions are told apart: by *feature*, with ``hasattr`` on the real enum or module, never by
comparing version numbers, so that a guarded name is only ever touched where it exists. The
conformance scan (``tests/conformance``) recognises exactly this form of guard: an ``if`` whose test
calls ``hasattr(OBJ, "NAME")``; the names used inside that branch need to exist only where the test
is true. The facts (TENSORRT_API.md §1.1, §1.2):

=========  ==============================================  =========================================
version    network creation flags                          FP16
=========  ==============================================  =========================================
8.6        ``1 << EXPLICIT_BATCH`` (no STRONGLY_TYPED)     weak typing: ``BuilderFlag.FP16``
10.x       ``1 << STRONGLY_TYPED`` (EXPLICIT_BATCH ignored) strongly typed graph (FP16 flag deprecated)
11.x       ``0`` (always strongly typed; no BuilderFlag.FP16) strongly typed graph
=========  ==============================================  =========================================

"Strongly typed graph" means the network itself casts the float32 input to float16, carries float16
weights and casts the outputs back to float32 (``populate_network(..., half=True)``).
"""

from __future__ import annotations

import logging
import time

from retinaface_trt.errors import RetinaFaceError

log = logging.getLogger("retinaface_trt.tensorrt")

INSTALL_HINT = ("install it with `pip install 'retinaface-trt[tensorrt]'` (or `pip install tensorrt-cu12` / "
                "`tensorrt-cu13` to match your CUDA); `--backend torch` works without it")


def import_tensorrt():
    """Return the installed ``tensorrt`` module, or raise RetinaFaceError saying how to install it."""
    try:
        import tensorrt
    except ImportError as error:
        raise RetinaFaceError(f"TensorRT is not installed ({error}); {INSTALL_HINT}") from None
    return tensorrt


def major_version(trt) -> int:
    """The major version of ``trt`` (8, 10, 11, ...), from ``trt.__version__``."""
    return int(str(trt.__version__).split(".")[0])


def uses_strong_typing(trt) -> bool:
    """True where FP16 is expressed in the graph (10.x and 11.x), False where it is a builder flag (8.6)."""
    return hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED")


def network_flags(trt) -> int:
    """The ``flags`` for ``Builder.create_network``: explicit batch on 8.6, strongly typed on 10.x, 0 on 11.x."""
    flags = 0
    if hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH") and not uses_strong_typing(trt):
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)   # 8.6: else implicit batch
    if hasattr(trt.BuilderFlag, "FP16") and hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
        # 10.x: strong typing is opt-in; 11.x: always on, and the flag is deprecated, so left out
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    return flags


def set_precision(trt, config, precision: str) -> None:
    """Configure ``config`` (IBuilderConfig) for ``precision`` "fp32" or "fp16".

    fp32 clears TF32 (on by default) so that results match float32 references. fp16 sets the FP16
    builder flag where the network is weakly typed (8.6); elsewhere the graph itself is float16.
    """
    if precision not in ("fp32", "fp16"):
        raise RetinaFaceError(f"precision must be 'fp32' or 'fp16', not {precision!r}")
    if precision == "fp32":
        config.clear_flag(trt.BuilderFlag.TF32)
    elif not uses_strong_typing(trt):
        if hasattr(trt.BuilderFlag, "FP16"):
            config.set_flag(trt.BuilderFlag.FP16)


def set_workspace(trt, config, workspace_bytes: int) -> None:
    """Limit the builder's scratch memory to ``workspace_bytes`` (all versions: memory pool WORKSPACE)."""
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_bytes))


def attach_timing_cache(config, cache_bytes: bytes):
    """Create a timing cache from ``cache_bytes`` (b"" for a new one), attach it and return it."""
    cache = config.create_timing_cache(cache_bytes)
    config.set_timing_cache(cache, True)   # ignore_mismatch: a cache from another GPU is just not used
    return cache


def serialize_timing_cache(config) -> bytes:
    """The current timing cache of ``config`` as bytes."""
    return bytes(config.get_timing_cache().serialize())


_SEVERITY_LEVELS = {"INTERNAL_ERROR": logging.CRITICAL, "ERROR": logging.ERROR, "WARNING": logging.WARNING,
                    "INFO": logging.INFO, "VERBOSE": logging.DEBUG}


def make_logger(trt, target: logging.Logger = log):
    """A ``trt.ILogger`` that forwards TensorRT's messages to ``target`` at the matching logging level."""

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
