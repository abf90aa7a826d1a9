"""The parallel job pipeline against the sequential way, and its memory bound in pixels (runtime.budget)."""

from __future__ import annotations

import json
import threading
import time
import weakref

import cv2
import numpy as np
import pytest

from runtime.budget import PixelBudget
from runtime.jobs.pipeline import detect_stream
from runtime.jobs.reader import TaskList
from runtime.jobs.tasks import JobSettings, Task
from tests.runtime.jobs.fakes import FakeDetector

# ---- PixelBudget ------------------------------------------------------------------------------------------


def test_pixels_are_taken_while_they_fit_and_given_back():
    budget = PixelBudget(100)
    assert budget.try_take(60) and not budget.try_take(41) and budget.try_take(40)
    budget.give(60)
    assert budget.taken == 40 and budget.peak == 100 and budget.try_take(60)


def test_an_image_larger_than_the_budget_runs_alone():
    budget = PixelBudget(100)
    assert budget.try_take(500) and budget.peak == 500 and not budget.try_take(1)
    budget.give(500)
    assert not budget.try_take(101) or budget.taken == 101      # alone again: taken


def test_a_waiting_take_gets_its_pixels_when_they_are_given_back():
    budget = PixelBudget(10)
    budget.try_take(8)
    assert not budget.take(5, timeout=0.01)
    threading.Timer(0.05, budget.give, (8,)).start()
    assert budget.take(5, timeout=5) and budget.taken == 5


def test_giving_back_more_than_was_taken_is_a_bug_reported():
    budget = PixelBudget(10)
    budget.try_take(3)
    with pytest.raises(RuntimeError, match="more pixels given back"):
        budget.give(4)


# ---- memory of a folder of large images ----------------------------------------------------------------------

class LivePixels:
    """Wraps a read function: ``peak`` is the most pixels of the images it returned alive at once."""

    def __init__(self, read):
        self.read, self.alive, self.peak, self._lock = read, 0, 0, threading.Lock()

    def __call__(self, path, max_pixels=0):
        image = self.read(path, max_pixels=max_pixels)
        pixels = image.shape[0] * image.shape[1]
        with self._lock:
            self.alive += pixels
            self.peak = max(self.peak, self.alive)
        weakref.finalize(image, self._gone, pixels)
        return image

    def _gone(self, pixels):
        with self._lock:
            self.alive -= pixels


@pytest.fixture
def large_images(tmp_path):
    """24 large PNGs (flat colours: small files, 2 to 6 megapixels decoded), one of them larger than the budget."""
    folder = tmp_path / "large"
    folder.mkdir()
    sizes = [(2000, 1000), (1600, 1500), (3000, 2000)] * 8
    for i, (width, height) in enumerate(sizes):
        cv2.imwrite(str(folder / f"{i:02d}.png"), np.full((height, width, 3), 10 * i, np.uint8))
    return sorted(folder.iterdir())


@pytest.mark.parametrize("batch", [1, 4])
def test_decoded_pixels_stay_within_the_budget_on_a_folder_of_large_images(large_images, batch):
    """The count bound of these settings allows 16 or more of the images (at least 32 megapixels) at once; the
    budget of 5 megapixels allows two (the 6-megapixel ones alone)."""
    from runtime.image_io import read_image

    settings = JobSettings(batch=batch, read_threads=4, pixel_budget=5_000_000)
    assert settings.image_bound() >= 16
    live = LivePixels(read_image)
    detector = FakeDetector(delay_s=0.01)
    tasks = [Task(i, str(path)) for i, path in enumerate(large_images)]
    outcomes = list(detect_stream(detector, TaskList(tasks), settings, read=live))
    assert sorted(o.index for o in outcomes) == list(range(len(tasks)))
    assert all(not o.failed for o in outcomes)
    assert 2_000_000 <= live.peak <= 6_000_000, live.peak          # the largest image (6 MP) alone at most
    assert live.alive == 0


def test_images_whose_header_says_nothing_are_counted_once_decoded():
    """A read function over names (no file to measure): each image's pixels are taken once it is decoded."""
    images = {f"img_{i}": np.full((1000, 1000, 3), i, np.uint8) for i in range(12)}
    live = LivePixels(lambda path, max_pixels=0: images[path].copy())
    settings = JobSettings(batch=2, read_threads=4, pixel_budget=3_000_000)
    outcomes = list(detect_stream(FakeDetector(delay_s=0.01), TaskList([Task(i, f"img_{i}") for i in range(12)]),
                                  settings, read=live))
    assert len(outcomes) == 12 and live.alive == 0
    # taken only after decoding, so up to read_threads decodes may overshoot the budget, never more
    assert live.peak <= 3_000_000 + settings.read_threads * 1_000_000


# ---- the parallel pipeline writes what the sequential way writes ----------------------------------------

def test_parallel_detect_writes_the_sequential_records_in_input_order(mnet_pth, shared_dir, tmp_path):
    """The real network on the CPU: ``detect`` with 4 reading threads, batches of 4 and two batches in flight
    writes, byte for byte, the records of reading and detecting one image after the other (each image of its
    own size, so every batch has one image whatever finishes first: no batch-size rounding differences); two
    unreadable inputs in between."""
    from runtime.cli import main as cli
    from runtime.detector import Detector
    from runtime.face import error_record, report, to_json
    from runtime.image_io import read_image

    folder = tmp_path / "mixed"
    folder.mkdir()
    photo = cv2.imread(str(shared_dir / "images" / "crowd_1024x624.jpg"))
    for i in range(10):
        size = (200 + 17 * i, 150 + 11 * i)
        cv2.imwrite(str(folder / f"{i:02d}.jpg"), cv2.resize(photo, size, interpolation=cv2.INTER_AREA))
    (folder / "03b.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    (folder / "07b.png").write_bytes(b"")
    store = tmp_path / "parallel.jsonl"
    argv = ["detect", str(folder), "--weights", str(mnet_pth), "--backend", "torch", "--device", "cpu",
            "--vis-threshold", "0.3", "-q", "--json-lines", str(store)]
    assert cli.main([*argv, "--batch", "4", "--read-threads", "4"]) == 1            # two inputs failed

    expected = []
    with Detector.from_options(weights=str(mnet_pth), backend="torch", device="cpu") as detector:
        for path in sorted(folder.iterdir()):
            try:
                image = read_image(path)
            except Exception:                                                        # noqa: BLE001
                expected.append(str(path))
                continue
            dets = detector.detect_arrays([image])[0]
            expected.append(to_json(report(str(path), image.shape[1], image.shape[0], dets, 0.3).record))
    lines = store.read_text().splitlines()
    assert len(lines) == 12 and sum(json.loads(line)["faces"] != [] for line in lines) >= 5
    for line, want in zip(lines, expected):
        record = json.loads(line)
        if "error" in record:
            assert record["image"] == want and record == error_record(want, record["error"])
        else:
            assert line == want


def test_a_partial_batch_never_starts_while_the_detector_is_busy():
    """Images come every 15 ms (slower than max_wait_s): a partial batch runs only when no batch is being detected
    (on a GPU every new batch size is a new shape, planned by cuDNN); meanwhile images gather into larger ones."""
    class Timed(FakeDetector):
        def __init__(self):
            super().__init__(delay_s=0.06)
            self.spans, self._lock = [], threading.Lock()

        def detect_arrays(self, images):
            start = time.monotonic()
            found = super().detect_arrays(images)
            with self._lock:
                self.spans.append((start, time.monotonic(), len(images)))
            return found

    detector = Timed()
    settings = JobSettings(batch=8, read_threads=1, max_wait_s=0.01)
    outcomes = list(detect_stream(detector, _tasks(40), settings, read=_read_every(0.015)))
    assert len(outcomes) == 40
    spans = sorted(detector.spans)
    for start, _, size in spans[:-1]:             # the last one is what is left at the end
        if size < 8:
            assert not any(s < start < e for s, e, _ in spans), spans
    assert len(spans) <= 40 / 3, spans              # gathered while busy: a third of one per image at most


def test_a_steady_stream_runs_full_batches_however_fast_the_detector():
    """Images every 3 ms, a detector that takes no time: each batch of 16 takes 48 ms to fill, longer than
    max_wait_s (30 ms), yet no image gap is that long, so every batch but the last is full (a partial batch is a
    new shape on a GPU: untuned kernels, then seconds of cuDNN planning in float16)."""
    detector = FakeDetector()
    settings = JobSettings(batch=16, read_threads=1, max_wait_s=0.03)
    outcomes = list(detect_stream(detector, _tasks(72), settings, read=_read_every(0.003)))
    assert len(outcomes) == 72
    assert [len(call) for call in detector.calls] == [16, 16, 16, 16, 8]


def _tasks(count: int) -> TaskList:
    return TaskList([Task(i, f"img_{i}") for i in range(count)])


def _read_every(seconds: float):
    """A reader of one 8×8 grey image per call, each taking ``seconds`` (images arrive at that pace)."""
    def read(path, max_pixels=0):
        time.sleep(seconds)
        return np.full((8, 8, 3), 100, np.uint8)
    return read
