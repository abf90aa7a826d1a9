"""runtime.budget: the pixel budget of what is decoded and batched at once, and where it bounds work."""

from __future__ import annotations

import numpy as np
import pytest

from runtime import backends, budget
from runtime.cli import main as cli
from runtime.jobs.pipeline import Batcher
from runtime.jobs.reader import Decoded
from runtime.jobs.tasks import Task


def test_the_budget_is_half_the_available_memory_over_the_bytes_a_pixel_takes(monkeypatch):
    monkeypatch.delenv(budget.ENVIRONMENT, raising=False)
    monkeypatch.setattr(budget, "_host_available", lambda: 8 << 30)
    assert budget.pixel_budget() == (8 << 30) // 2 // budget.BYTES_PER_PIXEL
    monkeypatch.setattr(budget, "_device_free", lambda device: 2 << 30)          # a GPU with less free memory
    assert budget.pixel_budget("cuda:0") == (2 << 30) // 2 // budget.BYTES_PER_PIXEL
    monkeypatch.setattr(budget, "_host_available", lambda: 1 << 20)              # never below one 640×640 image
    assert budget.pixel_budget("cuda:0") == budget.MIN_PIXEL_BUDGET


def test_workers_of_one_run_share_the_hosts_memory(monkeypatch):
    from runtime.jobs.tasks import JobSettings
    from runtime.jobs.workers import WorkerPool

    monkeypatch.delenv(budget.ENVIRONMENT, raising=False)
    monkeypatch.setattr(budget, "_host_available", lambda: 8 << 30)
    monkeypatch.setattr(budget, "_device_free", lambda device: None)
    assert budget.pixel_budget(host_share=4) == (8 << 30) // 4 // 2 // budget.BYTES_PER_PIXEL
    monkeypatch.setattr(budget, "_device_free", lambda device: 1 << 30)           # a device's memory is its own
    assert budget.pixel_budget("cuda:1", host_share=4) == (1 << 30) // 2 // budget.BYTES_PER_PIXEL
    assert WorkerPool(["cpu", "cpu", "cpu"], object, JobSettings()).settings.host_share == 3


def test_the_host_memory_read_here_is_positive_and_below_the_machine_total():
    import os

    available = budget._host_available()
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert available is not None and 0 < available <= total


def test_the_environment_replaces_the_machine_budget_and_is_checked(monkeypatch):
    monkeypatch.setenv(budget.ENVIRONMENT, "1000")
    assert budget.pixel_budget() == 1000
    monkeypatch.setenv(budget.ENVIRONMENT, "-3")
    with pytest.raises(Exception, match=budget.ENVIRONMENT):
        budget.pixel_budget()


def test_one_image_always_fits_more_only_within_the_budget():
    assert budget.batch_fits(10**9, 1, 100)
    assert budget.batch_fits(50, 2, 100) and not budget.batch_fits(51, 2, 100)


def _item(index: int, width: int, height: int) -> Decoded:
    return Decoded(Task(index, f"img_{index}"), np.zeros((height, width, 3), np.uint8))


def _canvas(shape):
    return shape[1], shape[0]


def test_a_batch_of_one_size_runs_before_one_more_image_would_exceed_the_budget():
    batcher = Batcher(16, 32, _canvas, budget=3 * 100)
    assert batcher.add(_item(0, 10, 10)) is None and batcher.add(_item(1, 10, 10)) is None
    assert [d.task.index for d in batcher.add(_item(2, 10, 10))] == [0, 1, 2]     # a fourth would not fit
    assert [d.task.index for d in batcher.add(_item(3, 20, 20))] == [3]           # over the budget: alone


def test_images_waiting_in_all_groups_stay_within_the_budget():
    batcher = Batcher(16, 32, _canvas, budget=250)
    assert batcher.add(_item(0, 10, 10)) is None                                  # 100 waiting
    assert batcher.add(_item(1, 11, 10)) is None                                  # 210 waiting
    assert [d.task.index for d in batcher.add(_item(2, 12, 10))] == [0]           # 330 > 250: the oldest runs
    assert batcher.held_pixels == 230


def test_detect_refuses_a_batch_beyond_the_budget_before_any_work(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(backends, "create_backend", pytest.fail)
    monkeypatch.setenv(budget.ENVIRONMENT, str(640 * 640 * 4))
    image = tmp_path / "a.jpg"
    image.write_bytes(b"")
    out = tmp_path / "o.json"
    assert cli.main(["detect", str(image), "--weights", "w.pth", "--batch", "5", "--resize", "stretch",
                     "--input-size", "640x640", "--json", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--batch 5:" in err and "use --batch 4 or less" in err
    assert not out.exists()
