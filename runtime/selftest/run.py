"""One case, and the whole selftest: build → serialize → deserialize → run → compare → judge.

Every step runs the same code for TensorRT and for the dry run's stand-in (:mod:`runtime.selftest.engines`);
what happens to one case never ends the run: a build TensorRT rejects, an engine that does not load or a
run that raises makes that case *failed*, with the step, TensorRT's own error lines (the logger bridge,
``retinaface_trt.tensorrt``, is listened to while the case runs) and the project's message.
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from retinaface_trt.errors import RetinaFaceError
from runtime.selftest import checks
from runtime.selftest.cases import Case, Sizes, plan_cases, select

BACKENDS = ("tensorrt", "torch")     # real TensorRT, or the dry run on the executor


@dataclass
class CaseResult:
    """What one case did: ``status`` "passed", "failed" or "skipped", and why (``reason``)."""

    case: Case
    status: str
    reason: str | None = None
    step: str | None = None                  # the step that failed: check, build, write, load, run, compare
    build_seconds: float | None = None
    engine_bytes: int | None = None
    runs: list = field(default_factory=list)     # RunResult per shape (runtime.selftest.measure)
    errors: dict | None = None               # {"abs": {output: max}, "rel": {...}} over the runs, raw outputs only
    faces: checks.Faces | None = None
    candidates: checks.Candidates | None = None
    checks: list = field(default_factory=list)
    log: list = field(default_factory=list)  # TensorRT's warnings and errors while the case ran


class References:
    """The executor in float32 on the inputs of each shape (cached): the reference of every case of one model."""

    def __init__(self, model, device):
        self._model, self._device = model, device
        self._backend = None        # made at the first call, inside a case (so that its failure is the case's)
        self._outputs: dict = {}

    def __call__(self, key: tuple, batch) -> tuple:
        """(loc, conf, landms) float32 on the CPU for ``batch``, cached by ``key`` (N, H, W, batch index)."""
        from runtime.backends.executor import ExecutorBackend

        if self._backend is None:
            # The reference mode: every layer as TensorRT documents it, BatchNorm not folded, IEEE float32.
            self._backend = ExecutorBackend(self._model.arrays, device=str(self._device), precision="fp32",
                                            fold_batchnorm=False, channels_last=False)
        if key not in self._outputs:
            self._outputs[key] = tuple(t.detach().float().cpu() for t in self._backend.infer(batch))
        return self._outputs[key]

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()


class _TensorRTLog(logging.Handler):
    """Collects TensorRT's warnings and errors from the logger bridge while a case runs."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.levelname}: {record.getMessage()}")

    def __enter__(self):
        from runtime.backends.tensorrt.compat import log

        log.addHandler(self)
        return self

    def __exit__(self, *exc) -> None:
        from runtime.backends.tensorrt.compat import log

        log.removeHandler(self)

    def errors(self) -> list[str]:
        return [line for line in self.lines if not line.startswith("WARNING")]


def run_case(case: Case, engines, model, references: References, folder: Path) -> CaseResult:
    """Build, write, load, run and judge ``case`` with ``engines``; never raises for the case's own failures."""
    result = CaseResult(case, "failed")
    with _TensorRTLog() as log:
        try:
            result.step = "check"
            reason = engines.unsupported(case)
            if reason:
                return CaseResult(case, "skipped", reason)
            _steps(case, engines, model, references, folder, result)
        except Exception as error:          # noqa: BLE001 - one case's failure is reported, the run goes on
            result.reason = _failure(result.step, error, log.errors())
        result.log = log.lines
    if result.reason is None:
        result.checks = checks.judge(case.precision, case.postprocess, model.random, result.errors, result.faces,
                                     result.candidates)
        result.status = "passed" if all(c.passed for c in result.checks) else "failed"
        result.reason = "; ".join(c.text() for c in result.checks if not c.passed) or None
    return result


def _steps(case, engines, model, references, folder: Path, result: CaseResult) -> None:
    from runtime.backends.tensorrt.build import write_engine

    result.step = "build"
    start = time.monotonic()
    plan, info = engines.build(case, model)
    result.build_seconds, result.engine_bytes = time.monotonic() - start, len(plan)
    result.step = "write"
    path = write_engine(folder / f"{case.name.replace('/', '-')}.engine", plan, info)
    result.step = "load"
    with engines.open(path) as engine:
        result.step = "run"
        result.runs = [_run(engine, case, shape, engines.device, references, model) for shape in case.runs]
    result.step = "compare"
    _summarise(result)
    result.step = None


def _run(engine, case: Case, shape, device, references: References, model):
    """One input shape, on ``case.batches`` batches of different images: the engine and the reference on the
    same batches, measured (a RunResult)."""
    from runtime.selftest.inputs import network_batch
    from runtime.selftest.measure import compare_detections, compare_outputs, on_cpu

    measured = None
    for index in range(case.batches):
        batch = network_batch(*shape, device=device, first=index * shape[0])
        outputs = on_cpu(engine.infer(batch))
        reference = references((*shape, index), batch)
        if engine.postprocess_in_network:
            run = compare_detections(shape, outputs, reference, model.cfg, case.build["postprocess"])
        else:
            run = compare_outputs(shape, outputs, reference, model.cfg)
        measured = run if measured is None else measured.add(run)
    return measured


def _summarise(result: CaseResult) -> None:
    """Errors: the worst over the runs; faces and candidates: summed over them."""
    result.faces, result.candidates = checks.Faces(), checks.Candidates()
    for run in result.runs:
        result.faces = result.faces.add(run.faces)
        result.candidates = result.candidates.add(run.candidates)
    measured = [run.errors for run in result.runs if run.errors is not None]
    if measured:
        result.errors = {kind: {name: max(e[kind][name] for e in measured) for name in measured[0][kind]}
                         for kind in ("abs", "rel")}


def _failure(step: str | None, error: Exception, tensorrt_errors: list[str]) -> str:
    """One line: the step, TensorRT's error lines (if any) and the error itself."""
    message = str(error) if isinstance(error, RetinaFaceError) else f"{type(error).__name__}: {error}"
    said = f"TensorRT said: {' | '.join(tensorrt_errors)}; " if tensorrt_errors else ""
    return " ".join(f"{step or 'run'} failed: {said}{message}".split())


@dataclass
class SelftestResult:
    """Everything the run found; :mod:`runtime.selftest.report` formats it."""

    engines: str                     # the label of what built the engines
    backend: str                     # "tensorrt" or "torch" (the dry run)
    models: list
    environment: dict
    results: list[CaseResult]
    seconds: float

    @property
    def passed(self) -> bool:
        """True when no case failed (skipped ones do not count) and at least one case ran."""
        ran = [r for r in self.results if r.status != "skipped"]
        return bool(ran) and all(r.status == "passed" for r in ran)


def run_selftest(weights=None, backend: str = "tensorrt", device: str = "auto", precisions=("fp32", "fp16"),
                 patterns=None, sizes: Sizes = Sizes(), progress: Callable[[str], None] = lambda line: None,
                 engines_factory: Callable | None = None) -> SelftestResult:
    """Run every case matching ``patterns`` for ``weights`` (a checkpoint, or None for random weights of both
    backbones) on ``backend`` ("tensorrt", or "torch": the dry run). ``engines_factory(work_dir)`` replaces
    the engines (tests); ``progress`` receives one line per step."""
    from runtime.selftest.engines import ExecutorStandIn, TensorRTEngines
    from runtime.selftest.model import BACKBONES, load_models
    from runtime.selftest.report import environment

    _check_arguments(backend, precisions)
    cases = select(plan_cases(BACKBONES, precisions, sizes), patterns)    # the patterns are checked first
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="retinaface-selftest-") as work:
        work = Path(work)
        if engines_factory is not None:
            engines = engines_factory(work)
        else:
            engines = TensorRTEngines(work, device) if backend == "tensorrt" else ExecutorStandIn(device)
        models = load_models(weights, sorted({case.backbone for case in cases}, key=BACKBONES.index))
        todo = [(case, model) for model in models for case in cases if case.backbone == model.cfg.name]
        if not todo:
            raise RetinaFaceError(f"no selected case is for the {models[0].cfg.name} backbone of the weights; "
                                  f"drop --cases or pick cases named {models[0].cfg.name}/...")
        results = _run_all(todo, engines, work, progress)
    return SelftestResult(engines.label, backend, [m.describe() for m in models], environment(engines),
                          results, time.monotonic() - start)


def _check_arguments(backend: str, precisions) -> None:
    from runtime.backends import FLOAT_PRECISIONS

    if backend not in BACKENDS:
        raise RetinaFaceError(f"selftest runs on the tensorrt backend or the torch dry run, not {backend!r}")
    bad = [p for p in precisions if p not in FLOAT_PRECISIONS]
    if bad or not precisions:
        raise RetinaFaceError(f"precisions must be some of {', '.join(FLOAT_PRECISIONS)}, found {list(precisions)}")


def _run_all(todo, engines, work: Path, progress) -> list[CaseResult]:
    results, references = [], {}
    try:
        for index, (case, model) in enumerate(todo, start=1):
            progress(f"[{index}/{len(todo)}] {case.name} ...")
            if model.sha256 not in references:
                references[model.sha256] = References(model, engines.device)
            result = run_case(case, engines, model, references[model.sha256], work)
            progress(f"[{index}/{len(todo)}] {case.name}: {result.status}"
                     + (f" ({result.reason})" if result.reason else ""))
            results.append(result)
    finally:
        for reference in references.values():
            reference.close()
    return results
