"""One case, and the whole selftest: build → serialize → deserialize → run → compare → judge.

Every step runs the same code for TensorRT and for the dry run's stand-in (:mod:`runtime.selftest.engines`);
what happens to one case never ends the run: a build TensorRT rejects, an engine that does not load or a
run that raises makes that case *failed*, with the step, TensorRT's own error lines (the logger bridge,
``retinaface_trt.tensorrt``, is listened to while the case runs) and the project's message.
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from retinaface_trt.errors import RetinaFaceError
from runtime.selftest import checks
from runtime.selftest.cases import Case, Sizes, chosen_cases

BACKENDS = ("tensorrt", "executor", "torch")   # real TensorRT, or the dry run on the executor (torch: its old name)
DEFAULT_BUDGET = 600.0               # seconds one case may take (build included) before the run stops


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
    replays: list = field(default_factory=list)  # RunResult per call alternating the shapes (Case.replays)
    graphs: bool = False                     # the replays came from CUDA graphs (else: eager calls)
    seconds: float | None = None             # how long the case took
    budget: float | None = None              # how long it was allowed to take
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


def run_case(case: Case, engines, model, references: References, folder: Path,
             result: CaseResult | None = None) -> CaseResult:
    """Build, write, load, run and judge ``case`` with ``engines`` (into ``result``, whose ``step`` says where it
    is); never raises for the case's own failures."""
    result = result or CaseResult(case, "failed")
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
        result.step = "replay"
        result.graphs, result.replays = _replays(engine, case, engines.device, references, model)
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


def _replays(engine, case: Case, device, references: References, model) -> tuple[bool, list]:
    """(graphs used, a RunResult per call) of ``case.replays``: the shapes alternating, from CUDA graphs
    (:class:`runtime.device.GraphCache`, the detector's, capturing a shape at its first call) where the engine
    is capturable on a GPU, else eagerly; every call compared with the reference on the same images."""
    import torch

    from runtime.device import GraphCache
    from runtime.selftest.inputs import network_batch
    from runtime.selftest.measure import compare_outputs, on_cpu

    graphs = GraphCache(engine.infer, capture_after=1) if engine.capturable and \
        torch.device(device).type == "cuda" else None
    runs = []
    for n, h, w, index in case.replays:
        batch = network_batch(n, h, w, device=device, first=index * n)
        outputs = on_cpu(graphs((n, h, w), batch) if graphs is not None else engine.infer(batch))
        runs.append(compare_outputs((n, h, w), outputs, references((n, h, w, index), batch), model.cfg))
    return graphs is not None and len(graphs) > 0, runs


def _summarise(result: CaseResult) -> None:
    """Errors: the worst over the runs and replays; faces and candidates: summed over them."""
    result.faces, result.candidates = checks.Faces(), checks.Candidates()
    for run in result.runs + result.replays:
        result.faces = result.faces.add(run.faces)
        result.candidates = result.candidates.add(run.candidates)
    measured = [run.errors for run in result.runs + result.replays if run.errors is not None]
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
    finished: bool = True            # False in the reports written while the run goes on

    @property
    def passed(self) -> bool:
        """True when no case failed (skipped ones do not count) and at least one case ran."""
        ran = [r for r in self.results if r.status != "skipped"]
        return bool(ran) and all(r.status == "passed" for r in ran)


def run_selftest(weights=None, backend: str = "tensorrt", device: str = "auto", precisions=("fp32", "fp16"),
                 patterns=None, sizes: Sizes = Sizes(), progress: Callable[[str], None] = lambda line: None,
                 engines_factory: Callable | None = None, full: bool = False, budget: float = DEFAULT_BUDGET,
                 on_result: Callable[[SelftestResult], None] = lambda result: None) -> SelftestResult:
    """Run the cases for ``weights`` (a checkpoint, or None for seeded random weights) on ``backend``
    ("tensorrt", or "torch": the dry run): those matching ``patterns``, else every case with ``full``, else the
    default set (:func:`runtime.selftest.cases.chosen_cases`). ``engines_factory(work_dir)`` replaces the
    engines (tests); ``progress`` receives one line as each case starts and one as it finishes;
    ``on_result`` the result so far after each case (``finished`` False until the last). A case gets ``budget``
    seconds: one that takes longer fails, and the run ends there (a step may be stuck in the GPU driver)."""
    from runtime.selftest.engines import ExecutorStandIn, TensorRTEngines
    from runtime.selftest.model import BACKBONES, load_models
    from runtime.selftest.report import environment

    _check_arguments(backend, precisions, budget)
    cases = chosen_cases(BACKBONES, precisions, sizes, patterns, full)    # the patterns are checked first
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="retinaface-selftest-") as work:
        work = Path(work)
        if engines_factory is not None:
            engines = engines_factory(work)
        else:
            engines = TensorRTEngines(work, device) if backend == "tensorrt" else ExecutorStandIn(device)
        models = load_models(weights, sorted({case.backbone for case in cases}, key=BACKBONES.index))
        if weights is not None and not patterns:          # the default set or --full of the checkpoint's backbone
            cases = chosen_cases([models[0].cfg.name], precisions, sizes, full=full)
        todo = [(case, model) for model in models for case in cases if case.backbone == model.cfg.name]
        if not todo:
            raise RetinaFaceError(f"no selected case is for the {models[0].cfg.name} backbone of the weights; "
                                  f"drop --cases or pick cases named {models[0].cfg.name}/...")
        so_far = SelftestResult(engines.label, backend, [m.describe() for m in models], environment(engines),
                                [], 0.0, finished=False)

        def report(results, finished=False):
            nonlocal so_far
            so_far = dataclasses.replace(so_far, results=list(results), seconds=time.monotonic() - start,
                                         finished=finished)
            on_result(so_far)

        _run_all(todo, engines, work, progress, budget, report)
    return so_far


def _within_budget(work: Callable[[], CaseResult], budget: float) -> CaseResult | None:
    """``work()`` on a daemon thread, waited for at most ``budget`` seconds; None if it has not finished (the
    thread is abandoned: a call stuck in the GPU driver cannot be interrupted, and must not keep the process)."""
    done: list = []
    thread = threading.Thread(target=lambda: done.append(work()), name="selftest case", daemon=True)
    thread.start()
    thread.join(budget)
    return done[0] if done else None


def _check_arguments(backend: str, precisions, budget: float) -> None:
    from runtime.backends import FLOAT_PRECISIONS

    if not budget > 0:
        raise RetinaFaceError(f"the time budget of a case must be a positive number of seconds, found {budget}")

    if backend not in BACKENDS:
        raise RetinaFaceError(f"selftest runs on the tensorrt backend or the executor dry run (--backend executor, "
                              f"or torch), not {backend!r}")
    bad = [p for p in precisions if p not in FLOAT_PRECISIONS]
    if bad or not precisions:
        raise RetinaFaceError(f"precisions must be some of {', '.join(FLOAT_PRECISIONS)}, found {list(precisions)}")


def _run_all(todo, engines, work: Path, progress, budget: float, report) -> list[CaseResult]:
    results, references = [], {}
    try:
        for index, (case, model) in enumerate(todo, start=1):
            progress(f"[{index}/{len(todo)}] {case.name} ...")
            if model.sha256 not in references:
                references[model.sha256] = References(model, engines.device)
            result = _timed_case(case, engines, model, references[model.sha256], work, budget)
            progress(f"[{index}/{len(todo)}] {case.name}: {result.status} in {result.seconds:.1f} s of its "
                     f"{budget:g} s budget" + (f" ({result.reason})" if result.reason else ""))
            results.append(result)
            if result.seconds > budget:
                reason = f"not run: {case.name} did not finish within its budget, so the run stopped there"
                results += [CaseResult(later, "skipped", reason, budget=budget) for later, _ in todo[index:]]
                break
            if index < len(todo):
                report(results)
        report(results, finished=True)
    finally:
        for reference in references.values():
            if all(r.seconds is None or r.seconds <= budget for r in results):
                reference.close()         # never under an abandoned case, which may still use it
    return results


def _timed_case(case: Case, engines, model, references: References, work: Path, budget: float) -> CaseResult:
    """:func:`run_case` within ``budget`` seconds; past it, a failed result naming the step it was in."""
    start, running = time.monotonic(), CaseResult(case, "failed")
    finished = _within_budget(lambda: run_case(case, engines, model, references, work, running), budget)
    seconds = time.monotonic() - start
    if finished is not None:
        finished.seconds, finished.budget = seconds, budget
        return finished
    step = running.step or "run"
    return CaseResult(case, "failed", f"{step} did not finish within its budget of {budget:g} s (stuck, or "
                                      "too slow here: rerun with a larger --case-budget)", step=step,
                      seconds=seconds, budget=budget)
