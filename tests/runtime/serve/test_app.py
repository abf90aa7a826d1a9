"""The HTTP service with a real uvicorn on 127.0.0.1 and a real HTTP client (httpx).

Answers are compared with the SDK (``Engine.infer``) over the same model and settings: byte for byte when
requests come one at a time (each then runs alone, as in the SDK), face by face within float tolerance
when concurrent requests share batches (a batch of N rounds a few convolutions differently).
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from retinaface_trt.errors import RetinaFaceError
from tests.runtime.serve.conftest import PHOTOS, PIPELINE, GatedDetector, b64, running

pytestmark = pytest.mark.usefixtures("serve_stack")

MEDIA = {".jpg": "image/jpeg", ".png": "image/png"}


@pytest.fixture(scope="module")
def client(detector):
    with running(detector, max_delay_ms=20) as client:
        yield client


def _media(name: str) -> str:
    return MEDIA[name[name.rindex("."):]]


@pytest.mark.parametrize("name", PHOTOS)
def test_base64_answer_is_the_sdk_record(client, sdk, photos, name):
    response = client.post("/v1/detect", json={"image": b64(photos[name])})
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    assert response.text == sdk.infer(b64(photos[name]))


def test_data_url_and_name(client, sdk, photos):
    data_url = "data:image/jpeg;base64," + b64(photos["crowd_1024x624.jpg"])
    response = client.post("/v1/detect", json={"image": data_url, "name": "crowd"})
    assert response.text == sdk.infer(b64(photos["crowd_1024x624.jpg"]), name="crowd")


@pytest.mark.parametrize("name", ["crowd_1024x624.jpg", "astronaut_512x512.png"])
def test_image_body_answer_is_the_sdk_record(client, sdk, photos, name):
    response = client.post("/v1/detect", content=photos[name], headers={"content-type": _media(name)},
                           params={"name": name})
    assert response.status_code == 200
    assert response.text == sdk.infer(b64(photos[name]), name=name)


def test_request_thresholds_equal_a_detector_run_with_them(client, mnet_pth, photos):
    """A higher confidence threshold and a lower keep_top_k, applied to the server's detections, give what a
    detector started with those settings computes (an independent run, not a filter)."""
    import cv2
    import numpy as np

    from runtime.detector import Detector
    from runtime.face import report, to_json

    data = photos["selfie_1600x898.jpg"]
    fields = {"vis_threshold": 0.3, "confidence_threshold": 0.5, "keep_top_k": 7}
    response = client.post("/v1/detect", json={"image": b64(data), **fields})
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    with Detector.from_options(weights=str(mnet_pth), backend="torch", device="cpu", confidence_threshold=0.5, keep_top_k=7,
                               **PIPELINE) as strict:
        expected = to_json(report(None, 1600, 898, strict.detect_arrays([bgr])[0], 0.3).record)
    assert response.status_code == 200 and len(response.json()["faces"]) == 7
    assert response.text == expected
    query = client.post("/v1/detect", content=data, headers={"content-type": "image/jpeg"},
                        params={key: str(value) for key, value in fields.items()})
    assert query.text == expected


def test_eight_concurrent_clients_get_their_own_faces(detector, sdk, photos):
    names = [PHOTOS[i % len(PHOTOS)] for i in range(24)]       # 8 clients × 3 requests
    expected = {name: json.loads(sdk.infer(b64(photos[name]), name=name)) for name in PHOTOS}
    with running(detector, max_batch=8, max_delay_ms=100) as client:
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda n: client.post("/v1/detect", json={"image": b64(photos[n]), "name": n}),
                                    names))
        metrics = client.get("/metrics").text
    for name, response in zip(names, answers):
        assert response.status_code == 200, response.text
        _assert_same_faces(response.json(), expected[name])
    assert _metric(metrics, "retinaface_batch_size_sum") == len(names)
    assert _metric(metrics, "retinaface_batch_size_count") < len(names)   # some requests shared a batch
    assert _metric(metrics, 'retinaface_requests_total{route="/v1/detect",status="200"}') == len(names)


def _assert_same_faces(record: dict, expected: dict) -> None:
    """Same image, size and faces; boxes and landmarks within 2e-3 px, scores within 1e-5."""
    assert (record["image"], record["width"], record["height"]) == (expected["image"], expected["width"],
                                                                     expected["height"])
    assert len(record["faces"]) == len(expected["faces"])
    for face, reference in zip(record["faces"], expected["faces"]):
        assert face["score"] == pytest.approx(reference["score"], abs=1e-5)
        assert [face["box"][k] for k in "xywh"] == pytest.approx([reference["box"][k] for k in "xywh"], abs=2e-3)
        points = [v for p in face["landmarks"] for v in (p["x"], p["y"])]
        assert points == pytest.approx([v for p in reference["landmarks"] for v in (p["x"], p["y"])], abs=2e-3)


def _metric(text: str, sample: str) -> float:
    for line in text.splitlines():
        if line.startswith(sample + " "):
            return float(line.split()[-1])
    raise AssertionError(f"no sample {sample} in the metrics")


def test_overload_gets_503_with_retry_after_not_a_hang(photos):
    gated = GatedDetector(open_gate=False)
    body = {"image": b64(photos["astronaut_512x512.png"])}
    with running(gated, max_queue=2, max_batch=1, max_delay_ms=0) as client:
        with ThreadPoolExecutor(2) as pool:
            held = [pool.submit(client.post, "/v1/detect", json=body) for _ in range(2)]
            _wait_until(lambda: client.app.state.service.admitted == 2)
            start = time.monotonic()
            refused = client.post("/v1/detect", json=body)
            elapsed = time.monotonic() - start
            gated.gate.set()
            assert [future.result().status_code for future in held] == [200, 200]
    assert refused.status_code == 503 and elapsed < 5
    assert refused.headers["retry-after"] == "1"
    assert "limit of 2 requests in flight (--max-queue)" in refused.json()["error"]


def _wait_until(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


@pytest.fixture(scope="module")
def small_limit():
    with running(GatedDetector(), max_body_mib=1) as client:
        yield client


def test_body_over_the_limit_gets_413(small_limit):
    response = small_limit.post("/v1/detect", json={"image": "A" * (3 << 19)})   # 1.5 MiB, Content-Length known
    assert response.status_code == 413
    assert "over the server's limit of 1 MiB (--max-body-mib)" in response.json()["error"]


def test_streamed_body_over_the_limit_gets_413(small_limit):
    chunks = iter([b"\xff" * (1 << 18)] * 6)   # 1.5 MiB sent chunked: no Content-Length to refuse it by
    response = small_limit.post("/v1/detect", content=chunks, headers={"content-type": "image/jpeg"})
    assert response.status_code == 413


def _sdk_message(text) -> str:
    from runtime.image_io import decode_base64

    with pytest.raises(RetinaFaceError) as error:
        decode_base64(text)
    return str(error.value)


MALFORMED = [
    (b"{not json", "the body is not valid JSON"),
    (b"[1, 2]", "expected a JSON object"),
    (b'{"name": "x"}', 'no "image" field'),
    (b'{"image": 7}', "base64 input: expected a base64 string, got int"),
    (b'{"image": "aGVsbG8gd29ybGQ="}', "base64 input: not a readable image"),
    (b'{"image": "", "vis_threshold": 0.5}', "base64 input: the base64 string is empty"),
    (b'{"image": "x", "colour": "red"}', "unknown field 'colour'"),
    (b'{"image": "x", "nms_threshold": 0.3}', "nms_threshold is fixed when the server starts (--nms-threshold)"),
    (b'{"image": "x", "vis_threshold": 2}', "vis_threshold must be a number in [0, 1], found 2"),
    (b'{"image": "x", "confidence_threshold": 0.01}', "confidence_threshold must be ≥ 0.02"),
    (b'{"image": "x", "keep_top_k": 5000}', "keep_top_k must be ≤ 750"),
    (b'{"image": "x", "name": 3}', "name must be a string, found int"),
]


@pytest.mark.parametrize("body, message", MALFORMED)
def test_malformed_json_gets_400_with_one_line(client, body, message):
    response = client.post("/v1/detect", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert message in error and "\n" not in error


def test_bad_base64_message_is_the_sdks(client):
    response = client.post("/v1/detect", json={"image": "@@@"})
    assert response.status_code == 400 and response.json()["error"] == _sdk_message("@@@")


def test_truncated_image_body_gets_400(client, photos):
    response = client.post("/v1/detect", content=photos["crowd_1024x624.jpg"][:300],
                           headers={"content-type": "image/jpeg"})
    assert response.status_code == 400
    assert response.json()["error"].startswith("request body: not a readable image")


def test_unsupported_content_type_gets_415(client):
    response = client.post("/v1/detect", content=b"hello", headers={"content-type": "text/plain"})
    assert response.status_code == 415 and "unsupported Content-Type 'text/plain'" in response.json()["error"]


def test_an_image_the_detector_refuses_fails_alone(photos):
    import cv2
    import numpy as np

    white = cv2.imencode(".png", np.full((8, 8, 3), 255, np.uint8))[1].tobytes()
    good = photos["astronaut_512x512.png"]
    gated = GatedDetector(open_gate=False)
    with running(gated, max_batch=4, max_delay_ms=3000) as client:   # the three arrive within the delay
        with ThreadPoolExecutor(3) as pool:
            futures = [pool.submit(client.post, "/v1/detect", content=data, headers={"content-type": "image/png"})
                       for data in (good, white, good)]
            _wait_until(lambda: client.app.state.service.admitted == 3)
            gated.gate.set()
            answers = [future.result() for future in futures]
    assert gated.batches == [3, 1, 1, 1]   # the failed batch, then each image alone
    assert [a.status_code for a in answers] == [200, 500, 200]
    assert "ValueError: refused image" in answers[1].json()["error"]
    assert answers[0].json()["faces"][0]["box"] == {"x": 0.0, "y": 0.0, "w": 512.0, "h": 512.0}


def test_health_ready_and_metrics(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready"}
    client.post("/v1/detect", content=b"", headers={"content-type": "image/png"})
    metrics = client.get("/metrics")
    assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")
    for name in ("retinaface_requests_total", "retinaface_request_seconds_bucket", "retinaface_batch_size_bucket",
                 "retinaface_queue_depth", "retinaface_in_flight"):
        assert name in metrics.text
    assert _metric(metrics.text, 'retinaface_requests_total{route="/v1/detect",status="400"}') >= 1


def test_not_ready_until_the_warmup_batch_ran():
    import numpy as np

    gated = GatedDetector(open_gate=False)
    with running(gated, warmup=np.zeros((4, 4, 3), np.uint8)) as client:
        assert client.get("/healthz").status_code == 200
        assert gated.calls.acquire(timeout=10)   # the warm-up batch started and is held at the gate
        not_ready = client.get("/readyz")
        gated.gate.set()
        _wait_until(lambda: client.get("/readyz").status_code == 200)
    assert not_ready.status_code == 503 and not_ready.json() == {"status": "warming up"}
    assert gated.batches[0] == 1


def test_failed_warmup_is_reported_by_readyz():
    import numpy as np

    with running(GatedDetector(), warmup=np.full((4, 4, 3), 255, np.uint8)) as client:
        _wait_until(lambda: client.get("/readyz").json()["status"] != "warming up")
        answer = client.get("/readyz")
    assert answer.status_code == 503
    assert answer.json() == {"status": "failed", "error": "warm-up failed: refused image"}
