"""The load tool's measurement (runtime.serve.load) against a real server with a fast stand-in detector."""

from __future__ import annotations

import pytest

from runtime.serve.load import LoadResult, markdown_table, percentiles_ms, run_level, run_level_asyncio
from tests.runtime.serve.conftest import GatedDetector, running

pytestmark = pytest.mark.usefixtures("serve_stack")


def test_a_level_sends_exactly_its_requests(photos):
    gated = GatedDetector()
    with running(gated, max_batch=4, max_delay_ms=5) as client:
        result = run_level(f"{client.base_url}/v1/detect", photos["astronaut_512x512.png"], "image/png",
                           clients=4, requests=20)
        bad = run_level(f"{client.base_url}/v1/detect", b"not an image", "image/png", clients=2, requests=3)
    assert (result.clients, result.requests, result.failed) == (4, 20, 0)
    assert sum(gated.batches) == 20
    assert result.requests_per_s == pytest.approx(20 / result.seconds)
    assert 0 < result.p50_ms <= result.p99_ms < result.seconds * 1000
    assert (bad.requests, bad.failed) == (3, 3)


def test_the_asyncio_client_sends_exactly_its_requests_and_checks_the_answers(photos):
    import base64
    import json

    gated = GatedDetector()
    body = json.dumps({"image": base64.b64encode(photos["astronaut_512x512.png"]).decode()}).encode()
    seen = []
    with running(gated, max_batch=4, max_delay_ms=5) as client:
        url = f"{client.base_url}/v1/detect"
        result = run_level_asyncio(url, body, "application/json", clients=5, requests=23,
                                   check=lambda status, data: seen.append(json.loads(data)) or len(seen) % 2 == 0)
        bad = run_level_asyncio(url, b"not an image", "image/png", clients=2, requests=3)
    assert (result.clients, result.requests, result.failed) == (5, 23, 12) and sum(gated.batches) == 23
    assert all(record["width"] == 512 and "faces" in record for record in seen) and len(seen) == 23
    assert 0 < result.p50_ms <= result.p99_ms < result.seconds * 1000
    assert (bad.requests, bad.failed) == (3, 3)


def test_percentiles_interpolate_between_samples():
    assert percentiles_ms([0.001 * i for i in range(1, 101)]) == pytest.approx([50.5, 99.01])
    assert percentiles_ms([0.2]) == pytest.approx([200.0, 200.0])


def test_markdown_table_rows():
    table = markdown_table([LoadResult(1, 50, 10.0, 5.0, 190.4, 240.6, 0), LoadResult(16, 50, 5.0, 10.0, 1500, 2100, 1)])
    assert table.splitlines()[2] == "| 1 | 50 | 5.00 | 190 | 241 | 0 |"
    assert table.splitlines()[3] == "| 16 | 50 | 10.00 | 1500 | 2100 | 1 |"


def _face(x, score, shift=0.0):
    box = {"x": x + shift, "y": 10.0, "w": 50.0, "h": 60.0}
    return {"score": score, "box": box,
            "landmarks": [{"id": i, "x": x + 10 + i + shift, "y": 30.0} for i in range(5)]}


def _record(*faces):
    return {"image": None, "width": 640, "height": 480, "faces": list(faces)}


@pytest.mark.parametrize("precision, got, same", [
    ("fp32", _record(_face(0, 0.9), _face(100, 0.7)), True),
    ("fp32", _record(_face(0, 0.9005), _face(100, 0.7)), True),              # within 1e-3
    ("fp32", _record(_face(0, 0.905), _face(100, 0.7)), False),              # a score 5e-3 away
    ("fp16", _record(_face(0, 0.905), _face(100, 0.7)), True),               # float16 rounding
    ("fp16", _record(_face(0, 0.9, shift=0.5), _face(100, 0.7)), True),      # half a pixel: IoU 0.98
    ("fp16", _record(_face(0, 0.9, shift=5.0), _face(100, 0.7)), False),     # ten per cent of the box
    ("fp16", _record(_face(0, 0.9)), False),                                 # a face well above 0.6 missing
    ("fp16", _record(), False),                                              # no face at all
    ("fp16", _record(_face(0, 0.9), _face(100, 0.7), _face(300, 0.65)), False),   # one more, well above 0.6
    ("fp16", _record(_face(0, 0.9), _face(100, 0.7), _face(300, 0.605)), True),   # one more, at the threshold
    ("fp16", {**_record(_face(0, 0.9), _face(100, 0.7)), "width": 641}, False),
])
def test_same_answer_allows_the_precisions_rounding_and_nothing_more(precision, got, same):
    from runtime.serve.load import same_answer

    want = _record(_face(0, 0.9), _face(100, 0.7))
    assert same_answer(got, want, precision, vis_threshold=0.6) is same
