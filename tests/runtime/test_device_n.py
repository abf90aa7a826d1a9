"""Device N end to end: the pipeline, the executor, TensorRT and ``detect --devices`` work on the device asked for
and leave the others alone.

Needs two CUDA devices: skipped (with the reason) elsewhere; not run yet (the development machine has no GPU).
Each probe runs in a fresh Python process, so that "nothing happened on device 0" is about that work only:
no memory allocated there by PyTorch, and no CUDA context created there (where this PyTorch can tell).

    python -m pytest -q tests/runtime/test_device_n.py          # on a machine with two GPUs
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from runtime.face import faces_from_array
from tests.runtime.test_end_to_end import _assert_same_faces

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices (PyTorch sees "
                                                                      f"{torch.cuda.device_count()})")]

PROBE = textwrap.dedent("""
    import json, sys
    import cv2, numpy as np, torch
    from runtime.detector import Detector

    image_path, weights, backend, resize, out, cache = sys.argv[1:7]
    image = cv2.imread(image_path)
    with Detector.from_options(weights=weights, backend=backend, device="cuda:1", resize=resize,
                               engine_cache=cache) as detector:
        runs = [detector.detect_arrays([image])[0] for _ in range(3)]       # eager, captured, replayed
        torch.cuda.synchronize(1)
        np.save(out, runs[-1])
        has_context = getattr(torch._C, "_cuda_hasPrimaryContext", None)
        print(json.dumps({"device": str(detector.device), "allocated_on_0": torch.cuda.memory_allocated(0),
                          "context_on_0": has_context(0) if has_context else None,
                          "repeatable": all(np.array_equal(run, runs[0]) for run in runs)}))
""")


def probe(backend: str, resize: str, shared_dir, mnet_pth, tmp_path) -> tuple[dict, np.ndarray]:
    """Detect the crowd photo on cuda:1 in a fresh process: (what it saw of the devices, the detections)."""
    out = tmp_path / "dets.npy"
    done = subprocess.run([sys.executable, "-c", PROBE, str(shared_dir / "images" / "crowd_1024x624.jpg"),
                           str(mnet_pth), backend, resize, str(out), str(tmp_path / "engines")],
                          capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1]), np.load(out)


def _assert_device_0_untouched(facts: dict) -> None:
    assert facts["device"] == "cuda:1" and facts["repeatable"]
    assert facts["allocated_on_0"] == 0
    assert facts["context_on_0"] is not True, "a CUDA context was created on device 0"


def test_the_executor_works_on_device_1_only(shared_dir, mnet_pth, tmp_path, crowd_reference):
    facts, dets = probe("torch", "original", shared_dir, mnet_pth, tmp_path)
    _assert_device_0_untouched(facts)
    reference = crowd_reference["dets_origin"]
    _assert_same_faces(faces_from_array(dets), reference, min_score=0.02)
    assert np.abs(dets[:, 4] - reference[:, 4]).max() <= 1e-4


@pytest.mark.tensorrt
def test_tensorrt_builds_and_runs_on_device_1_only(shared_dir, mnet_pth, tmp_path, crowd_reference):
    pytest.importorskip("tensorrt", reason="TensorRT is not installed (pip install '.[tensorrt]' in the clone)")
    from runtime.backends.tensorrt.sidecar import read_sidecar

    facts, dets = probe("tensorrt", "stretch", shared_dir, mnet_pth, tmp_path)     # the cached 640×640 engine
    _assert_device_0_untouched(facts)
    [engine] = (tmp_path / "engines").glob("*.engine")
    assert read_sidecar(engine)["device_index"] == 1
    _assert_same_faces(faces_from_array(dets), crowd_reference["dets_640_in_origin_coords"], min_score=0.5)


def test_detect_on_two_gpus_finds_the_faces_of_one(shared_dir, mnet_pth, tmp_path):
    from runtime.cli import main as cli

    common = ["detect", str(shared_dir / "images"), "--weights", str(mnet_pth), "--backend", "torch", "-q"]
    assert cli.main([*common, "--device", "cuda:0", "--json", str(tmp_path / "one.json")]) == 0
    assert cli.main([*common, "--devices", "cuda:0,cuda:1", "--json", str(tmp_path / "two.json")]) == 0
    one, two = (json.loads((tmp_path / name).read_text()) for name in ("one.json", "two.json"))
    assert [r["image"] for r in two] == [r["image"] for r in one]          # in input order
    for mine, theirs in zip(two, one):
        assert len(mine["faces"]) == len(theirs["faces"])
        scores = np.array([[f["score"] for f in r["faces"]] for r in (mine, theirs)])
        assert np.abs(scores[0] - scores[1]).max(initial=0) <= 1e-4    # cuDNN may pick other algorithms per GPU
