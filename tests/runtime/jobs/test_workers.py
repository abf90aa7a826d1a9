"""WorkerPool: real spawned processes on CPU "devices", with a stand-in detector built in each of them."""

from __future__ import annotations

import time

import cv2
import pytest

from retinaface_trt.errors import RetinaFaceError
from runtime.jobs.tasks import JobSettings, Task
from runtime.jobs.workers import WorkerLost, WorkerPool
from tests.runtime.jobs.fakes import FakeFactory, expected_record, write_images

SIZES = [(32, 24), (20, 30), (32, 24), (16, 16)] * 6


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return write_images(tmp_path_factory.mktemp("images"), SIZES)


def tasks_of(paths) -> list[Task]:
    return [Task(i, path) for i, path in enumerate(paths)]


def test_two_workers_answer_every_task_with_its_own_record(images, tmp_path):
    settings = JobSettings(batch=2, read_threads=1)     # the first worker holds at most `credit` < 24 tasks
    with WorkerPool(["cpu", "cpu"], FakeFactory({"peers": (str(tmp_path), 2)}), settings) as pool:
        assert pool.cfg.name == "mobilenet0.25" and pool.info.backend == "fake"
        outcomes = list(pool.run(tasks_of(images)))
        answered = pool.answered
    assert sorted(o.index for o in outcomes) == list(range(len(images)))
    assert sum(answered) == len(images) and min(answered) > 0, answered     # both did some
    for outcome in outcomes:
        path = images[outcome.index]
        assert outcome.record == expected_record(path, cv2.imread(path))


def test_a_worker_that_is_killed_is_one_error_not_a_hang(images):
    """The worker that meets a 16-pixel-wide image dies by SIGKILL (as the kernel's OOM killer does)."""
    started = time.monotonic()
    with pytest.raises(WorkerLost, match=r"the worker on cpu ended unexpectedly \(killed by SIGKILL: out of "
                                         r"memory\?\) with \d+ image\(s\) not answered"):
        with WorkerPool(["cpu", "cpu"], FakeFactory({"die_on_width": 16, "die_by": "kill"}),
                        JobSettings(batch=1, read_threads=1)) as pool:
            list(pool.run(tasks_of(images)))
    assert time.monotonic() - started < 60


def test_a_worker_that_exits_is_named_with_its_status(images):
    with pytest.raises(WorkerLost, match=r"ended unexpectedly \(exit status 3\)"):
        with WorkerPool(["cpu"], FakeFactory({"die_on_width": 16}), JobSettings(read_threads=1)) as pool:
            list(pool.run(tasks_of(images)))


def test_a_worker_that_cannot_build_its_detector_gives_its_message(images):
    with pytest.raises(RetinaFaceError, match=r"^weights file w.pth not found; expected a .pth or .wts file "
                                              r"\(worker on cpu\)$"):
        with WorkerPool(["cpu", "cpu"], FakeFactory(startup_error="weights file w.pth not found; expected a .pth or "
                                                                   ".wts file"), JobSettings(read_threads=1)):
            pass


def test_no_device_is_refused():
    with pytest.raises(RetinaFaceError, match="no device to run on"):
        WorkerPool([], FakeFactory(), JobSettings())
