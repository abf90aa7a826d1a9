"""The TensorRT-plan repository on a real GPU: a real engine, exported, run the way the ensemble runs it.

Triton's TensorRT backend is not in the nvidia-pytriton wheel, so here the plan copied into the repository
is run by the project's TensorRT runner between the repository's own pre and post steps, checking that
the config's tensors are the engine's and that the faces are the SDK's (same engine). Serving the
repository with Triton's container is described in docs/serving.md. Skipped (with the reason) without
``import tensorrt`` or a CUDA device; run on a GPU machine with:

    python -m pytest -q -m tensorrt tests/runtime/serve/test_triton_plan_real.py
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.helpers import require_tensorrt_and_gpu

pytestmark = pytest.mark.tensorrt
torch, trt = require_tensorrt_and_gpu()

from tests.runtime.serve.conftest import PHOTOS, b64  # noqa: E402


@pytest.fixture(scope="module")
def plan_repository(mnet_pth, tmp_path_factory):
    from runtime.backends.tensorrt.build import BuildOptions, build_engine_file
    from runtime.cli import main as cli

    folder = tmp_path_factory.mktemp("plan")
    engine = build_engine_file(mnet_pth, folder / "mnet.engine", BuildOptions(max_batch=4))
    assert cli.main(["export-triton", "--engine", str(engine), "-o", str(folder / "repo")]) == 0
    return engine, folder / "repo"


def test_the_plan_runs_between_the_repositorys_pre_and_post_steps(plan_repository, shared_dir, tmp_path):
    import shutil

    from network.config import MOBILENET_0_25
    from runtime import Engine
    from runtime.backends.tensorrt.engine import TensorRTBackend
    from retinaface_trt.thresholds import Thresholds
    from runtime.serve.triton.steps import faces_from_outputs, pad, postprocess, prepare

    engine, repo = plan_repository
    copy = tmp_path / "copy.engine"   # the repository's plan, with the sidecar of the engine it came from
    shutil.copyfile(repo / "retinaface_net/1/model.plan", copy)
    shutil.copyfile(f"{engine}.json", f"{copy}.json")
    data = [(shared_dir / "images" / name).read_bytes() for name in PHOTOS]
    batch, transforms = prepare(data, "letterbox", (640, 640), 40_000_000)
    with TensorRTBackend(copy) as runner:
        outputs = tuple(t.cpu().numpy() for t in runner.infer(torch.from_numpy(batch).cuda()))
    config = (repo / "retinaface_net/config.pbtxt").read_text()
    for output in outputs:
        assert f"dims: [{', '.join(str(d) for d in output.shape[1:])}]" in config
    faces = pad(postprocess(outputs, transforms, MOBILENET_0_25, (640, 640), Thresholds(), 0.6))
    with Engine(engine=str(engine), backend="tensorrt", device="cuda", resize="letterbox") as sdk:
        for index, item in enumerate(data):
            expected = json.loads(sdk.infer(b64(item)))["faces"]
            got = faces_from_outputs(*(array[index] for array in faces))
            assert len(got) == len(expected)
            np.testing.assert_allclose([f.score for f in got], [f["score"] for f in expected], atol=1e-4)



def test_weights_with_backend_tensorrt_build_the_plan(mnet_pth, tmp_path):
    from runtime.cli import main as cli

    repo = tmp_path / "repo"
    assert cli.main(["export-triton", "--weights", str(mnet_pth), "--backend", "tensorrt", "--device", "cuda",
                     "--max-batch", "4", "--engine-cache", str(tmp_path / "cache"), "-o", str(repo)]) == 0
    config = (repo / "retinaface_net/config.pbtxt").read_text()
    assert 'platform: "tensorrt_plan"' in config and "max_batch_size: 4" in config
    assert (repo / "retinaface_net/1/model.plan").stat().st_size > 0
