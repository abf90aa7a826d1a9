"""``export-triton``: the repository's files and configs (parsed with Triton's own schema), its checks and
its atomic write; the Python models' computations against the Detector. No server here (see test_triton)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from runtime.cli import main as cli
from tests.runtime.serve.conftest import PIPELINE, require_modules

MODELS = ("retinaface", "retinaface_pre", "retinaface_net", "retinaface_post")


@pytest.fixture(scope="session")
def parse_config():
    """config.pbtxt → Triton's ModelConfig message (tritonclient ships the schema); unknown fields fail."""
    require_modules("tritonclient", extra="triton")
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    return lambda path: text_format.Parse(Path(path).read_text(), model_config_pb2.ModelConfig())


def fake_engine(folder: Path, **build) -> Path:
    """Random plan bytes with the sidecar `retinaface-trt build` writes for ``build`` options (no TensorRT)."""
    from runtime.backends.tensorrt.build import BuildOptions, sidecar_info
    from runtime.backends.tensorrt.sidecar import DeviceInfo, write_sidecar

    options = BuildOptions(**build)
    priors = -1 if options.dynamic_size else 16800 * (options.input_size[0] * options.input_size[1]) // (640 * 640)
    built = {"input_shape": list(options.input_shape()),
             "outputs": {"loc": [-1, priors, 4], "conf": [-1, priors, 2], "landms": [-1, priors, 10]}}
    plan = np.random.default_rng(0).bytes(4096)
    engine = folder / "mnet.engine"
    engine.write_bytes(plan)
    info = sidecar_info(SimpleNamespace(__version__="10.16.1.11"), options, built, "mobilenet0.25",
                        "0" * 64, plan, DeviceInfo("NVIDIA H200", "9.0"))
    write_sidecar(engine, info)
    return engine


def _export(*args) -> int:
    return cli.main(["export-triton", *args])


def test_executor_repository(tmp_path, mnet_pth, parse_config):
    repo = tmp_path / "repo"
    assert _export("--weights", str(mnet_pth), "-o", str(repo), "--input-size", "320x320", "--max-batch", "4",
                   "--max-delay-ms", "5", "--vis-threshold", "0.5", "--nms-threshold", "0.3") == 0
    configs = {model: parse_config(repo / model / "config.pbtxt") for model in MODELS}
    assert {model: c.name for model, c in configs.items()} == {m: m for m in MODELS}
    assert all(c.max_batch_size == 4 for c in configs.values())
    net = configs["retinaface_net"]
    assert net.backend == "python" and net.instance_group[0].kind == net.instance_group[0].KIND_CPU
    assert {k: v.string_value for k, v in net.parameters.items()}["backend"] == "torch"
    assert [list(o.dims) for o in net.output] == [[4200, 4], [4200, 2], [4200, 10]]   # priors at 320×320
    assert (repo / "retinaface_net/1/weights.pth").read_bytes() == mnet_pth.read_bytes()
    post = {key: value.string_value for key, value in configs["retinaface_post"].parameters.items()}
    assert post["vis_threshold"] == "0.5" and post["nms_threshold"] == "0.3" and post["backbone"] == "mobilenet0.25"
    assert configs["retinaface_pre"].dynamic_batching.max_queue_delay_microseconds == 5000
    assert (repo / "retinaface/1").is_dir() and [p.name for p in (repo / "retinaface/1").iterdir()] == []
    for model in ("retinaface_pre", "retinaface_net", "retinaface_post"):
        assert "class TritonPythonModel" in (repo / model / "1/model.py").read_text()


def test_ensemble_wires_pre_net_post(tmp_path, mnet_pth, parse_config):
    repo = tmp_path / "repo"
    assert _export("--weights", str(mnet_pth), "-o", str(repo)) == 0
    ensemble = parse_config(repo / "retinaface/config.pbtxt")
    steps = ensemble.ensemble_scheduling.step
    assert [s.model_name for s in steps] == ["retinaface_pre", "retinaface_net", "retinaface_post"]
    produced = {"IMAGE"}
    for step in steps:   # every step reads only what the ensemble's input or an earlier step produced
        assert set(step.input_map.values()) <= produced
        produced |= set(step.output_map.values())
    assert {o.name for o in ensemble.output} <= produced
    assert [(i.name, list(i.dims)) for i in ensemble.input] == [("IMAGE", [1])]


def test_plan_repository_takes_names_dims_and_batch_from_the_sidecar(tmp_path, parse_config):
    engine = fake_engine(tmp_path, precision="fp16", max_batch=8)
    repo = tmp_path / "repo"
    assert _export("--engine", str(engine), "-o", str(repo), "--instances", "2") == 0
    net = parse_config(repo / "retinaface_net/config.pbtxt")
    assert net.platform == "tensorrt_plan" and net.max_batch_size == 8
    assert net.instance_group[0].kind == net.instance_group[0].KIND_GPU and net.instance_group[0].count == 2
    assert [(i.name, list(i.dims)) for i in net.input] == [("input", [3, 640, 640])]
    assert [(o.name, list(o.dims)) for o in net.output] == [("loc", [16800, 4]), ("conf", [16800, 2]),
                                                             ("landms", [16800, 10])]
    assert (repo / "retinaface_net/1/model.plan").read_bytes() == engine.read_bytes()
    assert "TensorRT 10.16.1.11" in (repo / "retinaface_net/config.pbtxt").read_text().splitlines()[1]
    assert parse_config(repo / "retinaface/config.pbtxt").max_batch_size == 8


def test_dynamic_size_engine_keeps_its_wildcards(tmp_path, parse_config):
    engine = fake_engine(tmp_path, min_size=(320, 320), input_size=(640, 640), max_size=(1024, 1024))
    repo = tmp_path / "repo"
    assert _export("--engine", str(engine), "-o", str(repo), "--input-size", "800x800") == 0
    net = parse_config(repo / "retinaface_net/config.pbtxt")
    assert list(net.input[0].dims) == [3, -1, -1]
    pre = parse_config(repo / "retinaface_pre/config.pbtxt")
    assert {p: v.string_value for p, v in pre.parameters.items()}["input_width"] == "800"


@pytest.mark.parametrize("args, message", [
    (["--input-size", "320x320"], "takes 640x640 inputs, but input size 320x320 was asked for; pass --input-size 640x640"),
    (["--max-batch", "16"], "built for batches up to 8, but --max-batch 16 was asked for"),
    (["--resize", "original"], "use --resize letterbox or stretch, not original"),
])
def test_plan_mismatches_are_refused(tmp_path, capsys, args, message):
    engine = fake_engine(tmp_path)
    assert _export("--engine", str(engine), "-o", str(tmp_path / "repo"), *args) == 1
    assert message in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mnet.engine", "mnet.engine.json"]   # nothing written


def test_a_corrupt_engine_leaves_nothing_behind(tmp_path, capsys):
    engine = fake_engine(tmp_path)
    engine.write_bytes(engine.read_bytes()[:-1] + b"\x00")
    assert _export("--engine", str(engine), "-o", str(tmp_path / "repo")) == 1
    assert "does not match the sha256 in its sidecar" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mnet.engine", "mnet.engine.json"]


def test_bad_weights_leave_nothing_behind(tmp_path, capsys):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    assert _export("--weights", str(bad), "-o", str(tmp_path / "repo")) == 1
    assert capsys.readouterr().err.startswith("retinaface-trt export-triton: error: ")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.pth"]


def test_exactly_one_model(tmp_path, capsys, mnet_pth):
    engine = fake_engine(tmp_path)
    assert _export("-o", str(tmp_path / "repo")) == 1
    assert _export("--engine", str(engine), "--weights", str(mnet_pth), "-o", str(tmp_path / "repo")) == 1
    assert capsys.readouterr().err.count("needs exactly one model") == 2


def test_an_existing_repository_is_kept_without_force(tmp_path, capsys, mnet_pth):
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "old.txt").write_text("old")
    assert _export("--weights", str(mnet_pth), "-o", str(repo)) == 1
    assert "already exists; pass --force" in capsys.readouterr().err and (repo / "old.txt").exists()
    assert _export("--weights", str(mnet_pth), "-o", str(repo), "--force") == 0
    assert not (repo / "old.txt").exists() and (repo / "retinaface_net/1/weights.pth").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["repo"]   # no staging or retired folder left


def test_failure_while_writing_removes_the_staging_folder(tmp_path, monkeypatch, mnet_pth):
    from runtime.serve.triton import repository

    def fail(staging, output):
        raise OSError("disk full")
    monkeypatch.setattr(repository, "_replace", fail)
    with pytest.raises(OSError, match="disk full"):
        repository.write_repository(tmp_path / "repo", weights=mnet_pth)
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def letterboxed(shared_dir):
    """The crowd photo's bytes, and the network outputs of its 320×320 letterboxed input."""
    from runtime.serve.triton.steps import prepare

    data = (shared_dir / "images" / "crowd_1024x624.jpg").read_bytes()
    batch, transforms = prepare([data, data], "letterbox", (320, 320), 40_000_000)
    return data, batch, transforms


def test_prepare_gives_the_detectors_input_and_transform(letterboxed):
    import cv2

    from runtime.preprocess import MEAN_BGR, resize_image

    data, batch, transforms = letterboxed
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    image, transform = resize_image(bgr, "letterbox", (320, 320))
    expected = (image.astype(np.float32) - np.array(MEAN_BGR, np.float32)).transpose(2, 0, 1)
    assert batch.shape == (2, 3, 320, 320) and batch.dtype == np.float32
    np.testing.assert_array_equal(batch[1], expected)
    assert transforms[0].tolist() == [transform.scale_x, transform.scale_y, transform.offset_x, transform.offset_y]


def test_postprocess_gives_the_detectors_faces(letterboxed, detector):
    """Raw outputs of the executor through the post model's steps = the Detector's visible faces."""
    import cv2
    import torch

    from runtime.face import reported_faces
    from retinaface_trt.thresholds import Thresholds
    from runtime.serve.triton.steps import faces_from_outputs, pad, postprocess

    data, batch, transforms = letterboxed
    outputs = tuple(t.numpy() for t in detector.backend.infer(torch.from_numpy(batch)))
    per_image = postprocess(outputs, transforms, detector.backend.cfg, PIPELINE["input_size"], Thresholds(), 0.6)
    boxes, scores, landmarks, counts = pad(per_image)
    expected = reported_faces(detector.detect_arrays([cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)])[0], 0.6)
    assert counts.tolist() == [[len(expected)], [len(expected)]] and len(expected) > 10
    got = faces_from_outputs(boxes[1], scores[1], landmarks[1], counts[1])
    np.testing.assert_allclose([f.box for f in got], [f.box for f in expected], atol=2e-3)
    np.testing.assert_allclose([f.score for f in got], [f.score for f in expected], atol=1e-5)
    np.testing.assert_allclose([f.landmarks for f in got], [f.landmarks for f in expected], atol=2e-3)


def test_pad_fills_past_each_count_with_zeros():
    from runtime.serve.triton.steps import pad

    one = (np.ones((1, 4), np.float32), np.ones(1, np.float32), np.ones((1, 10), np.float32))
    three = (np.full((3, 4), 2, np.float32), np.full(3, 2, np.float32), np.full((3, 10), 2, np.float32))
    empty = (np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 10), np.float32))
    boxes, scores, landmarks, counts = pad([one, three, empty])
    assert boxes.shape == (3, 3, 4) and scores.shape == (3, 3) and landmarks.shape == (3, 3, 10)
    assert counts.dtype == np.int32 and counts.tolist() == [[1], [3], [0]]
    assert scores.tolist() == [[1, 0, 0], [2, 2, 2], [0, 0, 0]]
    assert pad([empty])[0].shape == (1, 0, 4)


def test_pbtxt_writes_text_format(parse_config, tmp_path):
    from runtime.serve.triton.pbtxt import Enum, to_pbtxt

    text = to_pbtxt({"name": 'a "quoted" name', "max_batch_size": 2,
                     "input": [{"name": "x", "data_type": Enum("TYPE_FP32"), "dims": [3, -1]}],
                     "dynamic_batching": {"preserve_ordering": True}}, header="first\nsecond")
    assert text.startswith("# first\n# second\n")
    path = tmp_path / "config.pbtxt"
    path.write_text(text)
    config = parse_config(path)
    assert config.name == 'a "quoted" name' and list(config.input[0].dims) == [3, -1]
    assert config.dynamic_batching.preserve_ordering is True


def test_onnxruntime_and_gpu_instances_for_the_python_network(tmp_path, mnet_pth, parse_config):
    repo = tmp_path / "repo"
    assert _export("--weights", str(mnet_pth), "-o", str(repo), "--backend", "onnxruntime", "--device", "cuda",
                   "--input-size", "320x320") == 0
    net = parse_config(repo / "retinaface_net/config.pbtxt")
    assert {k: v.string_value for k, v in net.parameters.items()}["backend"] == "onnxruntime"
    assert net.instance_group[0].kind == net.instance_group[0].KIND_GPU
    assert parse_config(repo / "retinaface_pre/config.pbtxt").instance_group[0].kind == net.instance_group[0].KIND_CPU


@pytest.mark.parametrize("args, message", [
    (["--backend", "onnxruntime", "--precision", "fp16"], "the onnxruntime backend runs the float32 export"),
    (["--backend", "tensorrt"], "TensorRT is not installed"),
])
def test_what_the_backend_refuses_is_refused_before_writing(tmp_path, capsys, mnet_pth, args, message):
    pytest.importorskip("onnxruntime")
    if "tensorrt" in args:
        from runtime.backends import tensorrt_available

        if tensorrt_available():
            pytest.skip("TensorRT is installed here: the engine would be built")
    assert _export("--weights", str(mnet_pth), "-o", str(tmp_path / "repo"), *args) == 1
    assert message in capsys.readouterr().err and not (tmp_path / "repo").exists()


def test_an_engine_goes_to_tensorrt_only(tmp_path, capsys):
    engine = fake_engine(tmp_path)
    assert _export("--engine", str(engine), "-o", str(tmp_path / "repo"), "--backend", "torch") == 1
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"x")
    assert _export("--engine", str(onnx), "-o", str(tmp_path / "repo")) == 1
    err = capsys.readouterr().err
    assert "--backend torch needs --weights instead" in err
    assert "is an ONNX model, not a TensorRT engine; export it for Triton's Python backend with --weights" in err


def test_weights_with_backend_tensorrt_go_through_the_engine_cache(monkeypatch, tmp_path, mnet_pth):
    """Where TensorRT is installed, the plan is the engine cache's (stood in for here): the call must reach it."""
    import torch

    import runtime.backends
    from runtime.backends.tensorrt import cache
    from runtime.serve.triton import repository
    from runtime.serve.triton.repository import ExportOptions

    asked = []
    monkeypatch.setattr(runtime.backends, "tensorrt_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)      # one GPU, as far as the checks go
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(cache, "ensure_engine", lambda *a, **k: asked.append((a, k)) or tmp_path / "e.engine")
    options = ExportOptions(precision="fp16", max_batch=4)
    assert repository._built_engine(mnet_pth, "cuda:0", tmp_path, options) == tmp_path / "e.engine"
    [(args, kwargs)] = asked
    assert args == (mnet_pth, tmp_path, "fp16", options.input_size, 4) and kwargs == {"device_index": 0}
