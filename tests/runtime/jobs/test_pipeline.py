"""detect_stream and its Batcher: batches of one canvas size, every task answered once, bounded memory."""

from __future__ import annotations

import numpy as np
import pytest

from retinaface_trt.errors import RetinaFaceError
from runtime.jobs.pipeline import Batcher, InProcess, detect_stream
from runtime.jobs.reader import Decoded, TaskList
from runtime.jobs.tasks import JobSettings, Task
from tests.runtime.jobs.fakes import FakeDetector, LiveCount, expected_record


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def item(index: int, width: int, height: int = 4) -> Decoded:
    return Decoded(Task(index, f"img_{index}"), np.zeros((height, width, 3), np.uint8))


def indexes(batch) -> list[int]:
    return [decoded.task.index for decoded in batch]


def by_width(shape):
    return shape[1]


# ---- Batcher ----------------------------------------------------------------------------------------------

def test_a_group_runs_when_it_holds_a_batch():
    batcher = Batcher(3, 6, by_width)
    assert batcher.add(item(0, 8)) is None and batcher.add(item(1, 9)) is None and batcher.add(item(2, 8)) is None
    assert indexes(batcher.add(item(3, 8))) == [0, 2, 3] and batcher.held == 1


def test_when_hold_is_reached_the_group_of_the_oldest_image_runs():
    batcher = Batcher(2, 3, by_width)
    batcher.add(item(0, 8))
    batcher.add(item(1, 9))
    assert indexes(batcher.add(item(2, 10))) == [0]
    assert batcher.held == 2


def test_the_wait_counts_from_the_latest_image():
    """A steady stream never runs a partial batch; a stalled one does, max_wait_s after its latest image."""
    clock = Clock()
    batcher = Batcher(4, 8, by_width, clock=clock)
    assert batcher.wait_s(0.01) is None                    # nothing waits: wait for the next image as long as it takes
    batcher.add(item(0, 8))
    clock.now = 0.004
    batcher.add(item(1, 9))
    assert batcher.wait_s(0.01) == pytest.approx(0.01)
    clock.now = 0.012                                      # past the oldest's 10 ms, not the latest's
    assert batcher.wait_s(0.01) == pytest.approx(0.002)
    clock.now = 0.05
    assert batcher.wait_s(0.01) == 0.0
    assert indexes(batcher.oldest()) == [0] and batcher.wait_s(0.01) == 0.0


def test_drain_gives_every_group_oldest_first():
    batcher = Batcher(4, 8, by_width)
    for index, width in enumerate([9, 8, 9, 7]):
        batcher.add(item(index, width))
    assert [indexes(batch) for batch in batcher.drain()] == [[0, 2], [1], [3]] and batcher.held == 0


# ---- detect_stream ----------------------------------------------------------------------------------------

SIZES = [(32, 24), (32, 24), (20, 30), (32, 24), (20, 30), (16, 16), (32, 24), (32, 24), (32, 24), (20, 30)]


class Images:
    """A read function over in-memory images named ``img_<i>``; optionally tracked (``live``)."""

    def __init__(self, sizes, live: LiveCount | None = None):
        self.sizes, self.live = sizes, live

    def image(self, index: int) -> np.ndarray:
        width, height = self.sizes[index % len(self.sizes)]
        return np.full((height, width, 3), 40 + 23 * index % 200, np.uint8)

    def __call__(self, path, max_pixels=0):
        image = self.image(int(path.split("_")[1]))
        return self.live.track(image) if self.live else image


def run(detector, count, settings, images=None) -> list:
    images = images or Images(SIZES)
    tasks = [Task(i, f"img_{i}") for i in range(count)]
    return list(detect_stream(detector, TaskList(tasks), settings, read=images))


@pytest.mark.parametrize("batch", [1, 3, 8])
def test_every_task_gets_the_record_of_its_own_image(batch):
    images, detector = Images(SIZES), FakeDetector()
    outcomes = run(detector, 30, JobSettings(batch=batch, read_threads=2), images)
    assert sorted(o.index for o in outcomes) == list(range(30))
    for outcome in outcomes:
        assert outcome.record == expected_record(f"img_{outcome.index}", images.image(outcome.index))


def test_batches_hold_one_image_size_and_at_most_batch_images():
    detector = FakeDetector()
    run(detector, 40, JobSettings(batch=3, read_threads=2))
    assert all(len(call) <= 3 and len(set(call)) == 1 for call in detector.calls)
    assert max(len(call) for call in detector.calls) == 3


def test_with_stretch_images_of_every_size_share_a_batch():
    detector = FakeDetector(resize="stretch", input_size=(64, 64))
    run(detector, 24, JobSettings(batch=8, read_threads=2, max_wait_s=1.0))
    assert sum(len(set(call)) > 1 for call in detector.calls) > 0 and max(map(len, detector.calls)) == 8


def test_default_batch_is_one_on_the_cpu():
    detector = FakeDetector(device="cpu")
    run(detector, 6, JobSettings(read_threads=2))
    assert all(len(call) == 1 for call in detector.calls)


def test_an_image_the_engine_refuses_fails_alone_and_names_its_input():
    detector = FakeDetector(resize="stretch", input_size=(64, 64), refuse_width=20)
    outcomes = {o.index: o for o in run(detector, 10, JobSettings(batch=8, read_threads=2, max_wait_s=1.0))}
    refused = {i for i, (width, _) in enumerate(SIZES) if width == 20}
    assert {i for i, o in outcomes.items() if o.failed} == refused
    assert outcomes[2].record["error"] == "img_2: the fake engine takes no 20-pixel-wide image"
    assert all(outcomes[i].record["faces"] == expected_record("", Images(SIZES).image(i))["faces"]
               for i in outcomes if i not in refused)


def test_unreadable_inputs_become_error_outcomes():
    tasks = [Task(0, "img_0"), Task(1, "missing.jpg", error="missing.jpg: no such file; check the path")]
    outcomes = list(detect_stream(FakeDetector(), TaskList(tasks), JobSettings(read_threads=1), read=Images(SIZES)))
    assert [o.record.get("error") for o in sorted(outcomes, key=lambda o: o.index)] == [
        None, "missing.jpg: no such file; check the path"]


def test_annotated_copies_are_the_drawn_image_encoded():
    import cv2

    from runtime.draw import draw_faces
    from runtime.face import reported_faces
    from tests.runtime.jobs.fakes import fake_dets

    images = Images([(40, 30)])
    bright = next(i for i in range(10) if images.image(i).mean() / 255 >= 0.6)
    settings = JobSettings(read_threads=2, annotate=True)
    [outcome] = list(detect_stream(FakeDetector(), TaskList([Task(bright, f"img_{bright}.png")]), settings,
                                   read=lambda path, max_pixels=0: images.image(bright)))
    faces = reported_faces(fake_dets(images.image(bright)), 0.6)
    drawn = cv2.imdecode(np.frombuffer(outcome.annotated, np.uint8), cv2.IMREAD_COLOR)
    assert len(faces) == 1 and np.array_equal(drawn, draw_faces(images.image(bright), faces))   # PNG: lossless


@pytest.mark.parametrize("count", [30, 300])
def test_decoded_images_alive_stay_within_the_bound_whatever_the_number_of_tasks(count):
    live = LiveCount()
    settings = JobSettings(batch=4, read_threads=2)
    outcomes = 0
    for _ in detect_stream(FakeDetector(delay_s=0.001), TaskList([Task(i, f"img_{i}") for i in range(count)]),
                           settings, read=Images(SIZES, live)):
        outcomes += 1
    assert outcomes == count and live.peak <= settings.image_bound()
    assert settings.image_bound() == 4 + 1 + 4 + 1 + 8 + 3 * 4


def test_in_process_runner_closes_its_detector():
    detector = FakeDetector()
    with InProcess(detector, JobSettings(read_threads=1)) as runner:
        assert runner.cfg.name == "mobilenet0.25"
    assert detector.closed


def test_a_detector_error_that_is_not_the_inputs_stops_the_stream():
    class Broken(FakeDetector):
        def detect_arrays(self, images):
            raise RuntimeError("CUDA error: an illegal memory access was encountered")

    with pytest.raises(RuntimeError, match="illegal memory access"):
        run(Broken(), 5, JobSettings(read_threads=1))


def test_refused_single_image_is_not_retried_for_ever():
    class Refusing(FakeDetector):
        def detect_arrays(self, images):
            self.calls.append(len(images))
            raise RetinaFaceError("no")

    detector = Refusing()
    outcomes = run(detector, 4, JobSettings(batch=4, read_threads=1, max_wait_s=1.0), Images([(8, 8)]))
    assert all(o.failed for o in outcomes) and detector.calls == [4, 1, 1, 1, 1]
