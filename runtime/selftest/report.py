"""The selftest's output: one table line per case on stdout, and everything as JSON for an issue report.

JSON (``format`` 1): ``finished`` (False in the report rewritten after each case while the run goes on; an
interrupted run leaves the cases done so far), ``passed`` (every case that ran passed), ``summary`` (counts per
status), ``backend``, ``engines`` (what built them), ``environment`` (python, platform, torch and its CUDA, cuDNN,
numpy, OpenCV, ONNX, ONNX Runtime, TensorRT, GPU, compute capability, device, NVIDIA driver, project version),
``weights`` (backbone, source, sha256, random), ``rules`` (:func:`runtime.selftest.checks.rules`), ``seconds``,
``send_to`` and ``cases``: per case ``name``, ``backbone``, ``precision``, ``kind``, ``status`` ("passed" /
"failed" / "skipped"), ``reason``, ``step`` (where a failed case stopped), ``seconds`` and ``budget`` (how long
the case took, how long it could), ``build`` (seconds, engine bytes, the build options), ``runs`` (per input
shape: errors, faces, candidates, counts), ``replays`` (the same per call while a dynamic-batch case alternates
its shapes) and ``graphs`` (those calls were CUDA graph replays), ``errors`` / ``faces`` / ``candidates`` over the
runs, ``checks`` (name, value, limit, at_most, passed) and ``tensorrt_log`` (TensorRT's warnings and errors while
the case ran).
"""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path

from retinaface_trt import __version__
from runtime.selftest import checks

REPORT_FORMAT = 1
SEND_TO = ("open an issue in the project's tracker with this report attached (docs/tensorrt.md, "
           "\"Run selftest first\")")


# Environment ------------------------------------------------------------------------------------------
def environment(engines) -> dict:
    """Versions and devices of this machine, plus what ``engines`` report (TensorRT, GPU, device)."""
    import platform

    import cv2
    import numpy
    import torch

    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    return {"project_version": __version__, "python": platform.python_version(), "platform": platform.platform(),
            "torch": torch.__version__, "torch_cuda": torch.version.cuda, "cudnn": cudnn, "numpy": numpy.__version__,
            "opencv": cv2.__version__, "onnx": _module_version("onnx"), "onnxruntime": _module_version("onnxruntime"),
            "driver": driver_version(), **engines.environment()}


def _module_version(name: str) -> str | None:
    from importlib import metadata

    for distribution in (name, f"{name}-gpu"):
        try:
            return metadata.version(distribution)
        except metadata.PackageNotFoundError:
            continue
    return None


def driver_version() -> str | None:
    """The NVIDIA driver's version ("580.159"), from /proc/driver/nvidia/version or nvidia-smi; None without one."""
    try:
        found = re.search(r"Kernel Module(?: for \S+)?\s+(\d+(?:\.\d+)+)", Path("/proc/driver/nvidia/version").read_text())
        if found:
            return found.group(1)
    except OSError:
        pass
    return _nvidia_smi_driver()


def _nvidia_smi_driver() -> str | None:
    import shutil
    import subprocess

    if shutil.which("nvidia-smi") is None:
        return None
    try:
        done = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=20, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = done.stdout.split()
    return lines[0] if lines else None


# JSON -------------------------------------------------------------------------------------------------
def as_dict(result) -> dict:
    """The whole run as JSON-ready data (see the module docstring); a NaN or infinite number becomes its
    name ("nan", "inf"), so the file is strict JSON."""
    statuses = [r.status for r in result.results]
    return _finite({"format": REPORT_FORMAT, "tool": "retinaface-trt selftest", "finished": result.finished,
            "passed": result.passed,
            "summary": {s: statuses.count(s) for s in ("passed", "failed", "skipped")},
            "backend": result.backend, "engines": result.engines, "environment": result.environment,
            "weights": result.models, "rules": checks.rules(), "seconds": round(result.seconds, 3),
            "send_to": SEND_TO, "cases": [case_dict(r) for r in result.results]})


def _finite(value):
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def case_dict(r) -> dict:
    case = r.case
    return {"name": case.name, "backbone": case.backbone, "precision": case.precision, "kind": case.kind,
            "status": r.status, "reason": r.reason, "step": r.step, "seconds": r.seconds, "budget": r.budget,
            "build": {"seconds": r.build_seconds, "engine_bytes": r.engine_bytes, "options": _plain(case.build),
                      "onnx": case.onnx},
            "runs": [run.as_dict() for run in r.runs], "replays": [run.as_dict() for run in r.replays],
            "graphs": r.graphs, "errors": r.errors,
            "faces": r.faces.as_dict() if r.faces else None,
            "candidates": r.candidates.as_dict() if r.candidates else None,
            "checks": [dataclasses.asdict(c) for c in r.checks], "tensorrt_log": r.log}


def _plain(value):
    """Build options as JSON values (tuples as lists, settings as dictionaries)."""
    if hasattr(value, "as_dict"):
        return value.as_dict()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value


# The table ---------------------------------------------------------------------------------------------
COLUMNS = ("case", "result", "build s", "MiB", "loc", "conf", "landms", "faces", "agree", "cand.", "note")


def format_table(result) -> str:
    """The header (engines, weights, rules), one line per case, and the summary."""
    rows = [COLUMNS] + [_row(r) for r in result.results]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS) - 1)]
    table = ["  ".join(cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
             + "  " + row[-1] for row in rows]
    statuses = [r.status for r in result.results]
    env = result.environment
    head = [f"retinaface-trt selftest {__version__}: {result.engines}",
            f"environment: NVIDIA driver {env.get('driver') or 'none'}, PyTorch {env.get('torch')} (CUDA "
            f"{env.get('torch_cuda') or 'none'}), Python {env.get('python')}",
            *(f"weights: {m['backbone']} from {m['source']}" for m in result.models),
            "loc, conf, landms: max abs error against the executor (float32); faces: reference/engine faces; "
            "agree: faces matched; cand.: candidates agreeing before NMS; *: what the case is judged by",
            *("rules: " + line for line in checks.rules_text().splitlines()), ""]
    budgets = {r.budget for r in result.results if r.budget is not None}
    tail = ["", f"{statuses.count('passed')} passed, {statuses.count('failed')} failed, "
                f"{statuses.count('skipped')} skipped (skipped cases do not fail the run) in {result.seconds:.0f} s"
                + (f", each case within a budget of {max(budgets):g} s" if budgets else "")]
    if statuses and statuses.count("skipped") == len(statuses):
        tail.append("nothing was tested: every selected case was skipped (exit status 1)")
    return "\n".join(head + [line.rstrip() for line in table] + tail)


_JUDGED_COLUMN = {"loc max abs": COLUMNS.index("loc"), "conf max abs": COLUMNS.index("conf"),
                  "landms max abs": COLUMNS.index("landms"), "faces matched": COLUMNS.index("agree"),
                  "candidates agreeing": COLUMNS.index("cand.")}


def _row(r) -> tuple[str, ...]:
    """One table line; the cells a case is judged by end with "*"."""
    errors = r.errors["abs"] if r.errors else {}
    faces, candidates = r.faces, r.candidates
    cells = [r.case.name, r.status, _number(r.build_seconds, "{:.1f}"),
             _number(r.engine_bytes and r.engine_bytes / 2 ** 20, "{:.1f}"),
             *(_number(errors.get(name), "{:.1e}") for name in ("loc", "conf", "landms")),
             f"{faces.reference}/{faces.engine}" if faces else "-",
             _number(faces and faces.ratio, "{:.1%}"), _number(candidates and candidates.ratio, "{:.1%}"),
             _one_line(r.reason or "")]
    for check in r.checks:
        if check.name in _JUDGED_COLUMN:
            cells[_JUDGED_COLUMN[check.name]] += "*"
    return tuple(cells)


def _number(value, form: str) -> str:
    return "-" if value is None else form.format(value)


def _one_line(text: str, limit: int = 240) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1] + "…"
