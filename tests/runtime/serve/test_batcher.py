"""The micro-batcher on its own: how it gathers batches, isolates failures, warms up and drains."""

from __future__ import annotations

import time

import numpy as np
import pytest

from runtime.serve.batcher import MicroBatcher, ShuttingDown
from tests.runtime.serve.conftest import GatedDetector


def _image(width: int) -> np.ndarray:
    """A BGR image told apart by its width."""
    return np.zeros((4, width, 3), np.uint8)


def _widths(futures, timeout: float = 30.0) -> list[float]:
    return [float(future.result(timeout)[0, 2]) for future in futures]


def test_batches_are_gathered_up_to_max_batch():
    gated = GatedDetector(open_gate=False)
    batcher = MicroBatcher(gated, max_batch=3, max_delay_s=0.5).start()
    futures = [batcher.submit(_image(10 + i)) for i in range(5)]
    gated.gate.set()
    assert _widths(futures) == [10, 11, 12, 13, 14]   # every answer belongs to its own image
    batcher.stop(10)
    assert gated.batches == [3, 2]


def test_a_lone_request_waits_at_most_max_delay():
    gated = GatedDetector()
    batcher = MicroBatcher(gated, max_batch=16, max_delay_s=0.2).start()
    start = time.monotonic()
    assert _widths([batcher.submit(_image(5))]) == [5]
    elapsed = time.monotonic() - start
    batcher.stop(10)
    assert 0.2 <= elapsed < 5 and gated.batches == [1]


def test_a_failing_batch_is_rerun_one_image_at_a_time():
    gated = GatedDetector(open_gate=False)
    batcher = MicroBatcher(gated, max_batch=8, max_delay_s=0.5).start()
    bad = np.full((4, 7, 3), 255, np.uint8)
    futures = [batcher.submit(image) for image in (_image(3), bad, _image(4))]
    gated.gate.set()
    assert futures[0].result(30)[0, 2] == 3 and futures[2].result(30)[0, 2] == 4
    with pytest.raises(ValueError, match="refused image"):
        futures[1].result(30)
    batcher.stop(10)
    assert gated.batches == [3, 1, 1, 1]


def test_cancelled_requests_are_not_run():
    gated = GatedDetector(open_gate=False)
    batcher = MicroBatcher(gated, max_batch=1, max_delay_s=0).start()
    first = batcher.submit(_image(1))
    assert gated.calls.acquire(timeout=10)   # the first image is in detect_arrays, held at the gate
    second = batcher.submit(_image(2))
    assert second.cancel()
    gated.gate.set()
    assert _widths([first]) == [1]
    batcher.stop(10)
    assert gated.batches == [1]


def test_stop_finishes_what_was_submitted_then_refuses():
    gated = GatedDetector(open_gate=False)
    batcher = MicroBatcher(gated, max_batch=2, max_delay_s=0).start()
    futures = [batcher.submit(_image(20 + i)) for i in range(5)]
    gated.gate.set()
    batcher.stop(30)
    assert all(future.done() for future in futures) and _widths(futures) == [20, 21, 22, 23, 24]
    assert not batcher.running
    with pytest.raises(ShuttingDown, match="shutting down"):
        batcher.submit(_image(1))


def test_warmup_sets_ready_and_a_failed_one_is_reported():
    detector = GatedDetector()
    good = MicroBatcher(detector, max_batch=5, warmup=_image(2)).start()
    assert good.ready.wait(10) and good.warmup_error is None
    good.stop(10)
    height, width = _image(2).shape[:2]
    assert detector.prepared == [((width, height), [1, 2, 3, 4, 5])] and detector.batches[0] == 1
    failing = MicroBatcher(GatedDetector(), warmup=np.full((2, 2, 3), 255, np.uint8)).start()
    answer = failing.submit(_image(6))   # still served after a failed warm-up
    assert _widths([answer]) == [6]
    failing.stop(10)
    assert not failing.ready.is_set() and failing.warmup_error == "warm-up failed: refused image"


@pytest.mark.usefixtures("serve_stack")
def test_metrics_record_batches_and_queue_depth():
    from runtime.serve.metrics import ServeMetrics

    metrics, gated = ServeMetrics(), GatedDetector(open_gate=False)
    batcher = MicroBatcher(gated, max_batch=4, max_delay_s=0.3, metrics=metrics).start()
    futures = [batcher.submit(_image(i + 1)) for i in range(6)]
    depth_while_held = metrics.registry.get_sample_value("retinaface_queue_depth")
    gated.gate.set()
    _widths(futures)
    batcher.stop(10)
    assert depth_while_held >= 2   # the first batch of four can be taken at most
    assert metrics.registry.get_sample_value("retinaface_batch_size_count") == 2
    assert metrics.registry.get_sample_value("retinaface_batch_size_sum") == 6
    assert metrics.registry.get_sample_value("retinaface_queue_depth") == 0


class _Crash(BaseException):
    """Not an Exception: it ends the worker thread."""


class _CrashingDetector:
    def detect_arrays(self, images):
        raise _Crash()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_crashed_worker_answers_every_request_and_refuses_new_ones():
    batcher = MicroBatcher(_CrashingDetector(), max_batch=2, max_delay_s=0.2)
    futures = [batcher.submit(_image(i + 1)) for i in range(3)]   # queued before the worker starts
    batcher.start()
    for future in futures:
        with pytest.raises(ShuttingDown, match="the batch worker stopped"):
            future.result(30)
    batcher.stop(10)
    assert not batcher.running
    with pytest.raises(ShuttingDown):
        batcher.submit(_image(1))
