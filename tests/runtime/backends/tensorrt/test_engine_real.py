"""Real TensorRT on an NVIDIA GPU: build MobileNet-0.25 engines and check them against PyTorch and the executor.

Skipped (with the reason) without ``import tensorrt`` or a CUDA device; nothing here has run on real
TensorRT yet (see docs/tensorrt.md, "What has been verified"). Run on a GPU machine with TensorRT:

    python -m pytest -q -m tensorrt tests/runtime/backends/tensorrt/test_engine_real.py

Engines are built once per session (about a minute each): fp32, fp16, dynamic size, with post-processing
inside, and version-compatible (+ ampere+ where the GPU is Ampere or newer).
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from retinaface_trt.errors import RetinaFaceError

from tests.helpers import require_tensorrt_and_gpu

pytestmark = pytest.mark.tensorrt
torch, trt = require_tensorrt_and_gpu()

from retinaface_trt.thresholds import Thresholds  # noqa: E402
from runtime.backends.tensorrt.build import BuildOptions, build_engine_file, timing_cache_file  # noqa: E402
from runtime.backends.tensorrt.cache import ensure_engine  # noqa: E402
from runtime.backends.tensorrt.engine import TensorRTBackend  # noqa: E402
from runtime.backends.tensorrt.sidecar import current_device, read_sidecar, sidecar_path  # noqa: E402

AMPERE = tuple(torch.cuda.get_device_capability(0)) >= (8, 0)


@pytest.fixture(scope="session")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("engines")


@pytest.fixture(scope="session")
def engines(mnet_pth, folder) -> dict:
    caches = folder / "timing"
    caches.mkdir()
    variants = {
        "fp32": BuildOptions(timing_cache_dir=caches),
        "fp16": BuildOptions(precision="fp16", timing_cache_dir=caches),
        "dynamic": BuildOptions(min_size=(160, 160), max_size=(1024, 1024), max_batch=4, timing_cache_dir=caches),
        "postprocess": BuildOptions(postprocess=Thresholds().in_engine(), max_batch=2, timing_cache_dir=caches),
        "portable": BuildOptions(version_compatible=True, hardware_compatibility="ampere+" if AMPERE else "none",
                                 timing_cache_dir=caches),
    }
    return {name: build_engine_file(mnet_pth, folder / f"mnet-{name}.engine", options) for name, options in variants.items()}


@pytest.fixture(scope="session")
def crowd_input(crowd_reference):
    return torch.from_numpy(crowd_reference["input_640x640_bgr_minus_mean"]).cuda()


def _run(engine, batch, **kwargs):
    with TensorRTBackend(engine, **kwargs) as backend:
        return [t.cpu().numpy().copy() for t in backend.infer(batch)]


def _faces(loc, conf, priors, threshold=0.5):
    """Decoded (x1, y1, x2, y2) boxes in [0, 1] and scores after NMS 0.4, for one image."""
    centers = priors[:, :2] + loc[:, :2] * 0.1 * priors[:, 2:]
    sizes = priors[:, 2:] * np.exp(loc[:, 2:] * 0.2)
    boxes = np.concatenate([centers - sizes / 2, centers + sizes / 2], axis=1)
    keep = conf[:, 1] >= threshold
    boxes, scores = boxes[keep], conf[keep, 1]
    order, chosen = np.argsort(-scores), []
    while order.size:
        chosen.append(order[0])
        order = order[1:][_iou(boxes[order[0]], boxes[order[1:]]) <= 0.4]
    return boxes[chosen], scores[chosen]


def _iou(box, boxes):
    lt, rb = np.maximum(box[:2], boxes[:, :2]), np.minimum(box[2:], boxes[:, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
    area = lambda b: np.prod(b[..., 2:] - b[..., :2], axis=-1)  # noqa: E731
    return inter / (area(box) + area(boxes) - inter)


def test_fp32_outputs_match_pytorch(engines, crowd_input, crowd_reference):
    for name, ours in zip(("loc_640", "conf_640", "landms_640"), _run(engines["fp32"], crowd_input)):
        np.testing.assert_allclose(ours, crowd_reference[name], atol=1e-3, rtol=0, err_msg=name)


def test_fp16_faces_match_fp32_faces(engines, crowd_input, crowd_reference):
    priors = crowd_reference["priors_640"]
    f32 = _faces(*[o[0] for o in _run(engines["fp32"], crowd_input)[:2]], priors)[0]
    # fp16 scores may cross 0.5 for borderline faces: candidates from 0.45, every fp32 face must be matched.
    f16 = _faces(*[o[0] for o in _run(engines["fp16"], crowd_input)[:2]], priors, threshold=0.45)[0]
    assert len(f32) > 20 and all(_iou(box, f16).max() >= 0.9 for box in f32)


def test_dynamic_batch_gives_the_same_per_image_results(engines, crowd_input):
    images = torch.cat([crowd_input, crowd_input.flip(3), crowd_input.flip(2), crowd_input * 0.5])
    with TensorRTBackend(engines["fp32"]) as backend:
        singles = [backend.infer(img[None])[1].cpu().numpy().copy() for img in images]
        for n in range(1, 9):
            conf = backend.infer(images[torch.arange(n) % 4])[1].cpu().numpy()
            for i in range(n):
                np.testing.assert_allclose(conf[i], singles[i % 4][0], atol=1e-4, err_msg=f"batch {n}, image {i}")


def test_output_buffers_stay_put_over_many_shapes(engines):
    """Audit item 3: a dynamic-size engine over varied inputs no longer allocates per shape."""
    shapes = [(1, 160, 160), (4, 1024, 1024), (2, 480, 640), (3, 1000, 200), (1, 333, 777)] * 4
    with TensorRTBackend(engines["dynamic"]) as backend:
        first = [t.data_ptr() for t in backend.infer(torch.zeros(1, 3, 640, 640, device="cuda"))]
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        for n, h, w in shapes:
            assert [t.data_ptr() for t in backend.infer(torch.zeros(n, 3, h, w, device="cuda"))] == first
        torch.cuda.synchronize()
        assert torch.cuda.memory_allocated() - before < 64 << 20    # the inputs' own allocations only


def test_an_unaligned_input_gives_the_same_result(engines, crowd_input):
    flat = torch.empty(crowd_input.numel() + 1, device="cuda")
    unaligned = flat[1:].view_as(crowd_input).copy_(crowd_input)
    assert unaligned.data_ptr() % 256 != 0
    expected, got = _run(engines["fp32"], crowd_input), _run(engines["fp32"], unaligned)
    for a, b in zip(expected, got):
        np.testing.assert_array_equal(a, b)


def test_infer_can_be_captured_in_a_cuda_graph(engines, crowd_input):
    """After one run with the shape set, infer is captured; replays follow new data in the same input."""
    flipped = crowd_input.flip(3).contiguous()
    with TensorRTBackend(engines["fp32"]) as backend:
        assert backend.capturable
        expected = [t.clone() for t in backend.infer(flipped)]
        static = crowd_input.clone()
        backend.infer(static)                                        # the run before capture
        torch.cuda.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            outputs = backend.infer(static)
        static.copy_(flipped)
        graph.replay()
        torch.cuda.synchronize()
        for got, want in zip(outputs, expected):
            torch.testing.assert_close(got, want, rtol=0, atol=0)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_an_engine_for_device_1_is_built_and_run_there(mnet_pth, folder, crowd_input, crowd_reference):
    """Audit item 1: any GPU other than 0 failed (device 0 current during infer; built on device 0)."""
    engine = build_engine_file(mnet_pth, folder / "mnet-device1.engine", BuildOptions(), device_index=1)
    info = read_sidecar(engine)
    assert info["device_index"] == 1 and info["gpu_name"] == current_device(1).name
    loc = _run(engine, crowd_input.to("cuda:1"), device="cuda:1")[0]
    np.testing.assert_allclose(loc, crowd_reference["loc_640"], atol=1e-3, rtol=0)


def test_timing_caches_are_named_by_version_and_gpu(engines, folder):
    assert timing_cache_file(folder / "timing", trt.__version__, current_device(0)).stat().st_size > 0


def test_engine_with_postprocessing_matches_the_executor(engines, crowd_input, mnet_pth):
    from network import populate_network
    from network.executor import Program
    from network.executor import trt as executor
    from runtime.priors import prior_boxes
    from wts_export.weights import load_weights

    with TensorRTBackend(engines["postprocess"]) as backend:
        assert backend.postprocess_in_network and backend.fixed_input_size == (640, 640)
        dets, count = (t.cpu() for t in backend.infer(crowd_input))
    network = executor.Builder(executor.Logger()).create_network(0)
    weights = load_weights(mnet_pth)
    keep = populate_network(executor, network, weights, input_shape=(-1, 3, 640, 640),  # noqa: F841
                            postprocess=Thresholds().in_engine(), priors=prior_boxes(backend.cfg, 640, 640))
    expected = Program(network)({"input": crowd_input.cpu()})
    ours, theirs = dets[0, :count[0]], expected["dets"][0, :expected["count"][0]]
    strong = lambda d: d[d[:, 4] >= 0.5]  # noqa: E731
    assert len(strong(ours)) == len(strong(theirs)) > 20
    torch.testing.assert_close(strong(ours), strong(theirs), rtol=0, atol=0.05)   # pixels, scores, landmarks
    assert not dets[0, count[0]:].any()


def test_layer_times_cover_the_engine_layers(engines, crowd_input):
    with TensorRTBackend(engines["fp32"]) as backend:
        times = backend.layer_times(crowd_input, repeats=5)
    assert len(times) > 10 and all(t >= 0 for t in times.values()) and sum(times.values()) > 0


def test_inspect_layers_shows_precisions_and_tactics(engines):
    out = subprocess.run([sys.executable, "-m", "retinaface_trt", "inspect", str(engines["fp16"]), "--layers"],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    header = next(i for i, line in enumerate(out) if line.split()[:4] == ["layer", "type", "precision", "tactic"])
    rows = [line.split() for line in out[header + 1:]]
    assert len(rows) > 10 and any("fp16" in row for row in rows) and "names only" not in " ".join(out)


def test_version_compatible_engine_is_recorded_and_runs(engines, crowd_input, crowd_reference):
    info = read_sidecar(engines["portable"])
    assert info["version_compatible"] is True
    loc = _run(engines["portable"], crowd_input)[0]
    np.testing.assert_allclose(loc, crowd_reference["loc_640"], atol=1e-3, rtol=0)


def test_engine_from_another_tensorrt_version_is_refused_with_rebuild_hint(engines, tmp_path):
    engine = tmp_path / "old.engine"
    engine.write_bytes(engines["fp32"].read_bytes())
    info = json.loads(sidecar_path(engines["fp32"]).read_text())
    sidecar_path(engine).write_text(json.dumps({**info, "tensorrt_version": "8.6.1"}))
    with pytest.raises(RetinaFaceError, match="rebuild it on this machine"):
        TensorRTBackend(engine)


def test_truncated_engine_is_a_clear_error(engines, tmp_path):
    engine = tmp_path / "cut.engine"
    engine.write_bytes(engines["fp32"].read_bytes()[:4096])
    sidecar_path(engine).write_text(sidecar_path(engines["fp32"]).read_text())
    with pytest.raises(RetinaFaceError, match="truncated"):
        TensorRTBackend(engine)


def test_engine_cache_is_reused(mnet_pth, tmp_path):
    first = ensure_engine(mnet_pth, tmp_path, max_batch=2)
    stamp = first.stat().st_mtime_ns
    assert ensure_engine(mnet_pth, tmp_path, max_batch=2) == first and first.stat().st_mtime_ns == stamp
