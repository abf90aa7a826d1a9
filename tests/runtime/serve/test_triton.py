"""A real ``tritonserver`` (the nvidia-pytriton wheel's, in its own environment) serving the exported executor
repository on 127.0.0.1, called with tritonclient over HTTP and gRPC; answers compared with the SDK's faces.

The environment is ``.cache/venv-triton`` (``tools/install_triton.sh``) or ``$RETINAFACE_TRITON_VENV``.
"""

from __future__ import annotations

import json
import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from retinaface_trt.errors import RetinaFaceError
from tests.runtime.serve.conftest import PHOTOS, PIPELINE, b64, listening_addresses, missing, require_modules

REPO = Path(__file__).resolve().parents[3]
VENV = Path(os.environ.get("RETINAFACE_TRITON_VENV", REPO / ".cache" / "venv-triton"))
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def triton(tmp_path_factory, mnet_pth):
    """The server on a repository exported from the real weights at the tests' settings."""
    require_modules("tritonclient", "geventhttpclient", "grpc", extra="triton")
    from runtime.cli import main as cli
    from runtime.serve.triton.server import TritonInstall, TritonServer

    try:
        install = TritonInstall.find(VENV)
    except RetinaFaceError as error:
        missing(f"no Triton server to test with: {error}")
    folder = tmp_path_factory.mktemp("triton")
    width, height = PIPELINE["input_size"]
    assert cli.main(["export-triton", "--weights", str(mnet_pth), "-o", str(folder / "repo"), "--resize",
                     PIPELINE["resize"], "--input-size", f"{width}x{height}", "--max-batch", "8",
                     "--max-delay-ms", "50"]) == 0
    server = TritonServer(install, folder / "repo", folder / "work", extra_args=("--exit-timeout-secs=20",))
    with server:
        yield server
    assert server.process.returncode == 0, server.log_tail()


def _inputs(module, data_items: list[bytes]):
    image = module.InferInput("IMAGE", [len(data_items), 1], "BYTES")
    image.set_data_from_numpy(np.array([[d] for d in data_items], dtype=np.object_))
    return [image]


def _faces(result, index: int = 0):
    from runtime.serve.triton.steps import faces_from_outputs

    return faces_from_outputs(*(result.as_numpy(name)[index] for name in ("BOXES", "SCORES", "LANDMARKS", "COUNT")))


@pytest.fixture(scope="module")
def sdk_faces(sdk, photos) -> dict[str, list[dict]]:
    """The faces of the SDK's record of each photo (computed once)."""
    return {name: json.loads(sdk.infer(b64(data)))["faces"] for name, data in photos.items()}


def _assert_sdk_faces(faces, expected: list[dict]) -> None:
    """Faces equal to the SDK's ``expected`` ones: boxes and landmarks within 2e-3 px, scores within 1e-5."""
    assert [f.to_dict()["score"] for f in faces] == pytest.approx([f["score"] for f in expected], abs=1e-5)
    got = [[f.to_dict()["box"][k] for k in "xywh"] for f in faces]
    np.testing.assert_allclose(got, [[f["box"][k] for k in "xywh"] for f in expected], atol=2e-3)
    points = [[p[k] for p in f.to_dict()["landmarks"] for k in "xy"] for f in faces]
    np.testing.assert_allclose(points, [[p[k] for p in f["landmarks"] for k in "xy"] for f in expected], atol=2e-3)


@pytest.fixture
def http(triton):
    import tritonclient.http as client

    with client.InferenceServerClient(triton.http_url, concurrency=16) as connection:
        yield client, connection


@pytest.fixture
def grpc(triton):
    import tritonclient.grpc as client

    with client.InferenceServerClient(triton.grpc_url) as connection:
        yield client, connection


@pytest.mark.parametrize("name", PHOTOS)
def test_http_gives_the_sdk_faces(http, sdk_faces, photos, name):
    module, connection = http
    _assert_sdk_faces(_faces(connection.infer("retinaface", _inputs(module, [photos[name]]))), sdk_faces[name])


def test_grpc_gives_the_sdk_faces_for_a_client_batch(grpc, sdk_faces, photos):
    module, connection = grpc
    names = ["crowd_1024x624.jpg", "children_1024x768.jpg"]
    result = connection.infer("retinaface", _inputs(module, [photos[n] for n in names]))
    assert result.as_numpy("COUNT").shape == (2, 1)
    for index, name in enumerate(names):
        _assert_sdk_faces(_faces(result, index), sdk_faces[name])


def test_an_image_without_faces_gives_count_zero(http):
    import cv2

    module, connection = http
    blank = cv2.imencode(".png", np.full((200, 300, 3), 128, np.uint8))[1].tobytes()
    result = connection.infer("retinaface", _inputs(module, [blank]))
    assert result.as_numpy("COUNT").tolist() == [[0]] and result.as_numpy("BOXES").shape == (1, 0, 4)


def test_a_bad_image_fails_its_request_with_the_sdk_message(http, photos):
    from tritonclient.utils import InferenceServerException

    module, connection = http
    with pytest.raises(InferenceServerException, match="IMAGE: not a readable image"):
        connection.infer("retinaface", _inputs(module, [photos["crowd_1024x624.jpg"][:400]]))
    assert connection.is_server_ready() and connection.is_model_ready("retinaface")


def test_concurrent_requests_are_batched_and_answered(triton, http, sdk_faces, photos):
    module, connection = http
    before = _counts(triton)
    names = [PHOTOS[i % len(PHOTOS)] for i in range(16)]
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda n: connection.infer("retinaface", _inputs(module, [photos[n]])), names))
    for name, result in zip(names, results):
        _assert_sdk_faces(_faces(result), sdk_faces[name])
    after = _counts(triton)
    inferences = after["nv_inference_count"] - before["nv_inference_count"]
    executions = after["nv_inference_exec_count"] - before["nv_inference_exec_count"]
    assert inferences == len(names) and executions < inferences   # some executions ran a batch > 1


def _counts(triton) -> dict[str, float]:
    """Triton's Prometheus counters of the network model (images inferred, model executions)."""
    import urllib.request

    with urllib.request.urlopen(triton.metrics_url, timeout=10) as response:
        text = response.read().decode()
    counts = {}
    for metric in ("nv_inference_count", "nv_inference_exec_count"):
        match = re.search(rf'^{metric}\{{[^}}]*model="retinaface_net"[^}}]*\}} (\S+)$', text, re.MULTILINE)
        assert match, f"{metric} of retinaface_net not in Triton's metrics"
        counts[metric] = float(match.group(1))
    return counts


def test_the_server_listens_on_loopback_only(triton):
    addresses = listening_addresses(triton.process.pid)
    assert {port for _, port in addresses} == set(triton.ports.values())
    assert {host for host, _ in addresses} == {"127.0.0.1"}
